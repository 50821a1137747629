"""Theorems 3-5 (Eqs. 9-11), the measurement of φ* and its jvp generalisation (float64).

The analytic case: under frozen gating (A2) the network above the first layer is affine, and with
a loss that is *quadratic* in the logit (constant ``H_z = H̄_z``) Theorem 2's δ̂ is the exact
gradient flow and ``g_z(x + δ̂) = e^A g_z`` exactly, so Eqs. 9, 10 and 11 must hold to rounding.
``A`` is made O(1) so that a wrong sign, a missing factor or ``e^A`` replaced by ``1 + A`` would
fail by orders of magnitude more than the tolerance.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.analyses import real_attack
from jaxdyn.attacks.multistep import attack
from jaxdyn.core import influence, theory
from jaxdyn.core.gating import input_jacobian
from jaxdyn.core.losses import hessian_z, loss
from jaxdyn.core.models import cast, get_model, init_variables

pytestmark = pytest.mark.timeout(300)

# float64 rounding through a few hundred operations on O(1) numbers: ~1e-14 relative; the
# Jacobian-vector products on a 784-dimensional input lose about two more digits.
EXACT_RTOL = 1e-10

# (model name, width): a dense first layer (two_layer, mlp3) and a conv first layer (cnn3, rescnn4)
NETS = [("two_layer", 0.2), ("mlp3", 1 / 32), ("cnn3", 1 / 8), ("rescnn4", 1 / 8)]
# the default run keeps the dense first layers (the conv generalisation is tested against explicit
# convolutions below, and by the property tests of jaxdyn.testing); the conv nets are `slow`
NETS_EXACT = [NETS[0], NETS[1], pytest.param(*NETS[2], marks=pytest.mark.slow),
              pytest.param(*NETS[3], marks=pytest.mark.slow)]


def _binary_net(name, width, seed=0):
    model = get_model(name, num_classes=1, width=width)
    variables = cast(init_variables(model, jax.random.key(seed)), jnp.float64)
    return model, variables


def _image(seed):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=(28, 28, 1)))


def _quadratic_loss(s, c=0.3):
    """``L(z) = c (z + y s)²/2``: ``g_z = c (z + y s)``, ``H_z = c`` everywhere. With
    ``s = |z(x)|`` and ``y = sign z(x)``, ``g_z = 2 c z`` and both terms of Eq. 9 are O(1)."""

    def quad(z, y):
        return 0.5 * c * (z[0] + y * s) ** 2

    return quad, c


@pytest.mark.parametrize("name,width", NETS_EXACT)
def test_eqs_9_10_11_exact_for_quadratic_loss_under_a2(name, width):
    model, variables = _binary_net(name, width, seed=1)
    z_of, W, _ = influence.first_layer_fn(model, variables)
    x, eta = _image(2), 0.05
    z0 = float(z_of(W, x)[0])
    quad, c = _quadratic_loss(abs(z0))
    y = float(np.sign(z0))
    measure = jax.jit(influence.measure, static_argnums=0, static_argnames=("gating", "loss_fn"))

    def f(x):
        return z_of(W, x)

    J = input_jacobian(f, x)
    gz = jax.grad(quad)(f(x), y)
    gx_norm2 = float(jnp.sum(J**2))
    beta = 0.6 / (c * gx_norm2)  # A = 0.6: e^A and 1 + A differ by 20 %
    hbar = jnp.full((1, 1), c)
    delta_hat = theory.theorem2(J, gz, hbar, beta).delta.reshape(x.shape)

    m = measure(z_of, W, x, y, delta_hat, eta=eta, gating="frozen", loss_fn=quad)
    A = influence.influence_A(beta, c, m.gx_norm2)
    np.testing.assert_allclose(float(A), 0.6, rtol=1e-12)
    np.testing.assert_allclose(float(m.g_z), float(gz[0]), rtol=1e-14)
    common = dict(A=A, phi_ori=m.phi_ori, g_z=m.g_z, hbar_z=c, q=m.q, eta=eta)

    phi9 = influence.theorem3(**common)
    np.testing.assert_allclose(float(m.phi), float(phi9), rtol=EXACT_RTOL)
    # both terms of Eq. 9 matter here, and the first-order version is clearly wrong
    first, second = float(jnp.expm1(A) * m.phi_ori), float(phi9 - jnp.expm1(A) * m.phi_ori)
    assert min(abs(first), abs(second)) > 1e-2 * abs(float(m.phi))
    assert abs(float(influence.theorem3(**common, first_order=True) - m.phi)) > 1e-2 * abs(float(m.phi))

    np.testing.assert_allclose(float(m.phi_adv), float(influence.theorem4(**common)), rtol=EXACT_RTOL)
    # Eq. 10 = Eq. 9 + φ^(ori) (g_W^(adv) alone vs g_W^(adv) - g_W)
    np.testing.assert_allclose(float(m.phi_adv - m.phi), float(m.phi_ori), rtol=EXACT_RTOL)

    dn = float(jnp.linalg.norm(delta_hat))
    for C in (0.3 * dn, 2.5 * dn):
        mn = measure(z_of, W, x, y, C * delta_hat / dn, eta=eta, gating="frozen", loss_fn=quad)
        np.testing.assert_allclose(float(mn.phi), float(influence.theorem5(**common, c=C, delta_norm=dn)),
                                   rtol=EXACT_RTOL)
    # C = ||δ̂|| is Eq. 9
    np.testing.assert_allclose(float(influence.theorem5(**common, c=dn, delta_norm=dn)), float(phi9), rtol=1e-13)


def test_eq9_not_exact_for_sigmoid_and_error_is_second_order():
    """With the sigmoid loss, g_z(x + δ̂) departs from e^A g_z at second order; with H̄_z the
    mean H_z along the path the relative error of Eq. 9 falls like β² (A ∝ β)."""
    model, variables = _binary_net("two_layer", 0.2, seed=3)
    z_of, W, _ = influence.first_layer_fn(model, variables)
    x, eta = _image(4), 0.05
    y = float(jnp.sign(z_of(W, x)[0]))  # correctly classified: y z > 0

    def f(x):
        return z_of(W, x)

    gx_norm2 = float(jnp.sum(jax.grad(lambda x: f(x)[0])(x) ** 2))
    hz0 = float(jax.nn.sigmoid(f(x)[0]) * jax.nn.sigmoid(-f(x)[0]))
    errs = []
    for A in (0.5, 0.05):
        beta = A / (hz0 * gx_norm2)
        res = attack(f, x, y, beta=beta, steps=4000, gating="frozen")
        pred = theory.predict(f, x, y, res.hbar_z, beta=beta)
        m = influence.measure(z_of, W, x, y, pred.delta_hat, eta=eta)
        hz = res.hbar_z[0, 0]
        phi_hat = influence.theorem3(A=influence.influence_A(beta, hz, m.gx_norm2), phi_ori=m.phi_ori,
                                     g_z=m.g_z, hbar_z=hz, q=m.q, eta=eta)
        errs.append(abs(float((m.phi - phi_hat) / m.phi)))
    assert errs[0] > 1e-9  # not exact: the test can see the sigmoid's third derivative
    assert errs[1] < errs[0] / 30, errs  # ~ /100 for a β² law


@pytest.mark.parametrize("name,width", [("two_layer", 0.2), ("mlp3", 1 / 32)])
@pytest.mark.parametrize("gating", ["free", "frozen"])
def test_jvp_form_equals_dense_formula(name, width, gating):
    """For a dense first layer, the jvp of ``W ↦ g̃_x(W)`` along ``-ηΔg_W`` is ``-ηΔg_W g̃_h``
    and ``q = ||g̃_h||²``; ``g̃_h`` and ``Δg_W`` are computed independently here."""
    model, variables = _binary_net(name, width, seed=5)
    z_of, W, path = influence.first_layer_fn(model, variables)
    x, eta = _image(6), 0.1
    delta = 0.3 * jnp.asarray(np.random.default_rng(7).normal(size=x.shape))
    y = -1.0
    m = influence.measure(z_of, W, x, y, delta, eta=eta, gating=gating)

    gh = influence.first_layer_output_grad(model, variables, x, path=path)
    gx = jax.grad(lambda x: model.apply(variables, x[None])[0, 0])(x)

    def gW(x2, W_):
        if gating == "frozen":  # gates at x: z(W, x) + J(W, x)(x2 - x)
            return jax.grad(lambda w: loss(z_of(w, x) + jax.jvp(lambda t: z_of(w, t), (x,), (x2 - x,))[1], y))(W_)
        return jax.grad(lambda w: loss(model.apply(influence.set_param(variables, path, w), x2[None])[0], y))(W_)

    dgW = gW(x + delta, W) - gW(x, W)
    np.testing.assert_allclose(float(m.phi), float(influence.phi_dense(gx, dgW, gh, eta=eta)), rtol=1e-11)
    np.testing.assert_allclose(float(m.phi_ori), float(influence.phi_dense(gx, gW(x, W), gh, eta=eta)), rtol=1e-11)
    np.testing.assert_allclose(float(m.q), float(jnp.sum(gh**2)), rtol=1e-12)
    np.testing.assert_allclose(float(m.gx_norm2), float(jnp.sum(gx**2)), rtol=1e-13)
    np.testing.assert_allclose(float(m.dgw_norm), float(jnp.linalg.norm(dgW)), rtol=1e-12)
    # measure returns the Δg_W it computes
    np.testing.assert_allclose(np.asarray(m.dgw), np.asarray(dgW), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("name,width", [("cnn3", 1 / 8), ("rescnn4", 1 / 8)])
def test_conv_generalisation_against_explicit_convolution(name, width):
    """For a conv first layer ``h = conv(x, W) + b``: ``u(a) = ∇_W ⟨g̃_h, conv(a, W)⟩`` computed
    with ``lax.conv`` directly; ``q = ||u(g̃_x)||²/||g̃_x||²`` and ``φ* = ⟨u(g̃_x), -ηΔg_W⟩``."""
    model, variables = _binary_net(name, width, seed=8)
    z_of, W, path = influence.first_layer_fn(model, variables)
    assert W.ndim == 4
    x, eta, y = _image(9), 0.1, 1.0
    delta = 0.2 * jnp.asarray(np.random.default_rng(10).normal(size=x.shape))
    m = influence.measure(z_of, W, x, y, delta, eta=eta, gating="free")

    gh = influence.first_layer_output_grad(model, variables, x, path=path)  # [28, 28, c_out]
    gx = jax.grad(lambda x: z_of(W, x)[0])(x)

    def conv(a, w):  # the zoo's convs: 3x3, stride 1, SAME
        return jax.lax.conv_general_dilated(a[None], w, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]

    # the conv really is the first layer: g̃_x = conv(·, W)ᵀ g̃_h
    np.testing.assert_allclose(np.asarray(jax.grad(lambda a: jnp.vdot(gh, conv(a, W)))(x)),
                               np.asarray(gx), rtol=1e-10, atol=1e-14)
    u = jax.grad(lambda w: jnp.vdot(gh, conv(gx, w)))(W)
    np.testing.assert_allclose(float(m.q), float(jnp.vdot(u, u) / jnp.vdot(gx, gx)), rtol=1e-11)
    gW = lambda x2: jax.grad(lambda w: loss(z_of(w, x2), y))(W)  # noqa: E731
    np.testing.assert_allclose(float(m.phi), float(-eta * jnp.vdot(u, gW(x + delta) - gW(x))), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(influence.u_map(z_of, W, x, gx)), np.asarray(u), rtol=1e-10,
                               atol=1e-14)


def test_dense_layer_written_as_conv_gives_the_same_phi():
    """The conv generalisation reduces to the dense formula: a 28x28 'VALID' conv on the image is
    a dense layer; both parametrisations give the same φ*, φ^(ori) and q."""
    D = 7

    class DenseNet(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Dense(D, name="first")(x.reshape((x.shape[0], -1)))
            return nn.Dense(1, name="head")(nn.relu(h))

    class ConvNet(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Conv(D, (28, 28), padding="VALID", name="first")(x).reshape((x.shape[0], -1))
            return nn.Dense(1, name="head")(nn.relu(h))

    dn, cn = DenseNet(), ConvNet()
    vd = cast(dn.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1), jnp.float32)), jnp.float64)
    vc = jax.tree.map(lambda a: a, vd)
    vc = influence.set_param(vc, ("first",), vd["params"]["first"]["kernel"].reshape(28, 28, 1, D))
    x, eta, y = _image(11), 0.2, 1.0
    delta = 0.5 * jnp.asarray(np.random.default_rng(12).normal(size=x.shape))
    out = []
    for model, v in ((dn, vd), (cn, vc)):
        z_of, W, path = influence.first_layer_fn(model, v)
        assert path == ("first",)
        out.append(influence.measure(z_of, W, x, y, delta, eta=eta))
    np.testing.assert_allclose(float(out[0].phi), float(out[1].phi), rtol=1e-11)
    np.testing.assert_allclose(float(out[0].phi_ori), float(out[1].phi_ori), rtol=1e-11)
    np.testing.assert_allclose(float(out[0].q), float(out[1].q), rtol=1e-11)


def test_measure_vmaps_and_jits():
    model, variables = _binary_net("two_layer", 0.2, seed=13)
    z_of, W, _ = influence.first_layer_fn(model, variables)
    xs = jnp.stack([_image(s) for s in range(3)])
    ys = jnp.array([1.0, -1.0, 1.0])
    ds = 0.1 * xs[::-1]
    batched = jax.jit(jax.vmap(lambda x, y, d: influence.measure(z_of, W, x, y, d, eta=0.1)))(xs, ys, ds)
    for i in range(3):
        one = influence.measure(z_of, W, xs[i], ys[i], ds[i], eta=0.1)
        for a, b in zip(one, batched):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b[i]), rtol=1e-12)


def test_bad_input():
    model, variables = _binary_net("two_layer", 0.2)
    z_of, W, _ = influence.first_layer_fn(model, variables)
    x = _image(0)
    with pytest.raises(ValueError, match="gating"):
        influence.measure(z_of, W, x, 1.0, x, eta=0.1, gating="sometimes")
    with pytest.raises(ValueError, match="shape of x"):
        influence.measure(z_of, W, x, 1.0, x[:10], eta=0.1)
    m10 = get_model("two_layer", num_classes=10, width=0.2)
    z10, W10, _ = influence.first_layer_fn(m10, cast(init_variables(m10, jax.random.key(0)), jnp.float64))
    with pytest.raises(ValueError, match="binary"):
        influence.measure(z10, W10, x, 1.0, x, eta=0.1)
    with pytest.raises(ValueError, match=r"\[n, D\]"):
        influence.phi_dense(jnp.ones(784), jnp.ones((784, 3)), jnp.ones(4), eta=0.1)


def test_influence_A_clean_is_beta_times_the_top_eigenvalue_of_H_x():
    """For one logit, ``H_x = g̃_x H_z g̃_xᵀ`` has the single eigenvalue ``H_z ||g̃_x||²``: the
    clean-input ``A`` per unit β, computed here from the structured eigenpairs instead."""
    model, variables = _binary_net("cnn3", 1 / 8, seed=14)
    z_of, W, _ = influence.first_layer_fn(model, variables)
    f = lambda t: z_of(W, t)  # noqa: E731
    x, y = _image(15), -1.0
    lam, _ = theory.structured_eigenpairs(input_jacobian(f, x), hessian_z(f(x), y))
    np.testing.assert_allclose(float(influence.influence_A_clean(f, x, y)), float(lam[0]), rtol=1e-10)
    np.testing.assert_allclose(float(influence.influence_A_clean(f, x, y, beta=0.3)), 0.3 * float(lam[0]), rtol=1e-10)
    m10 = get_model("two_layer", num_classes=10, width=0.2)
    v10 = cast(init_variables(m10, jax.random.key(0)), jnp.float64)
    with pytest.raises(ValueError, match="binary"):
        influence.influence_A_clean(lambda t: m10.apply(v10, t[None])[0], x, 1.0)


@pytest.mark.parametrize("gating", ["frozen", "free"])
def test_attack_influence_against_the_attack_and_explicit_gradients(gating):
    """Per-sample Figs. 3-4 quantities: Δg_W is the difference of the first layer's loss gradients
    at ``x + δ`` (of the same raw attack, recomputed here) and at ``x``; under A2 ``Â = A`` exactly
    (``g̃`` is constant along the attack); ``H̄_z`` is the attack's."""
    model, variables = _binary_net("cnn3", 1 / 16, seed=16)
    z_of, W, _ = influence.first_layer_fn(model, variables)
    f = lambda t: z_of(W, t)  # noqa: E731
    x = _image(17)
    y = float(jnp.sign(f(x)[0]))
    beta, steps, eta = 0.5, 5, 1e-2
    q = real_attack.attack_influence(z_of, W, x, y, beta=beta, steps=steps, eta=eta, gating=gating)
    r = attack(f, x, y, beta=beta, steps=steps, norm="raw", gating=gating)
    if gating == "frozen":
        def z_at(Wk, x2):
            z, dz = jax.jvp(lambda t: z_of(Wk, t), (x,), (x2 - x,))
            return z + dz
        np.testing.assert_allclose(float(q["A_hat"]), float(q["A"]), rtol=1e-9)
    else:
        z_at = z_of
    gw = jax.grad(lambda Wk, x2: loss(z_at(Wk, x2), y))
    dgw = gw(W, x + r.delta) - gw(W, x)
    np.testing.assert_allclose(np.asarray(q["dgw"]), np.asarray(dgw), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(float(q["dgw_norm"]), float(jnp.linalg.norm(dgw)), rtol=1e-10)
    np.testing.assert_allclose(float(q["hbar_z"]), float(r.hbar_z[0, 0]), rtol=1e-12)
    np.testing.assert_allclose(float(q["hbar_z_gx2"]), float(q["hbar_z"] * q["gx2"]), rtol=1e-13)
    np.testing.assert_allclose(float(q["A"]), beta * float(q["hbar_z_gx2"]), rtol=1e-13)
    assert float(q["A_hat"]) > 0 and bool(q["success"]) == bool(r.success_step >= 0)


@pytest.mark.parametrize("name,width", [NETS[1], NETS[2]])
def test_paper_protocol_is_one_scalar(name, width):
    """Under A2, at Theorem 2's δ̂ (∥ g̃_x) and with the sigmoid loss, the measured φ* is Eq. 9
    with e^A replaced by the one scalar r = g_z(z + g̃_xᵀδ̂)/g_z (docs/theory.md)."""
    model, variables = _binary_net(name, width, seed=5)
    z_of, W, _ = influence.first_layer_fn(model, variables)
    x, eta = _image(6), 0.05
    y = float(jnp.sign(z_of(W, x)[0]))
    f = lambda t: z_of(W, t)  # noqa: E731
    gt = jax.grad(lambda t: f(t)[0])(x)
    A_unit = float(influence.influence_A_clean(f, x, y))
    for A0 in (1e-3, 0.5):
        beta, hbar = A0 / A_unit, jnp.full((1, 1), 0.2)
        dh = theory.predict(f, x, y, hbar, beta=beta).delta_hat
        m = influence.measure(z_of, W, x, y, dh, eta=eta, gating="frozen")
        r = jax.grad(loss)(f(x) + jnp.vdot(gt, dh), y)[0] / m.g_z
        common = dict(A=influence.influence_A(beta, 0.2, m.gx_norm2), phi_ori=m.phi_ori, g_z=m.g_z, hbar_z=0.2,
                      q=m.q, eta=eta)
        np.testing.assert_allclose(float(influence.phi_one_scalar(r=r, **common)), float(m.phi), rtol=1e-11)
        e = jnp.exp(common["A"])  # r = e^A is Eq. 9
        np.testing.assert_allclose(float(influence.phi_one_scalar(r=e, **common)),
                                   float(influence.theorem3(**common)), rtol=1e-10)


def test_real_attack_phi_measures_at_the_attack():
    model, variables = _binary_net("mlp3", 1 / 32, seed=7)
    z_of, W, _ = influence.first_layer_fn(model, variables)
    x = _image(8)
    y = float(jnp.sign(z_of(W, x)[0]))
    for gating in ("free", "frozen"):
        q = real_attack.real_attack_phi(z_of, W, x, y, beta=2.0, steps=5, eta=0.1, gating=gating)
        d = attack(lambda t: z_of(W, t), x, y, steps=5, beta=2.0, gating=gating).delta
        m = influence.measure(z_of, W, x, y, d, eta=0.1, gating=gating)
        np.testing.assert_allclose(float(q["phi"]), float(m.phi), rtol=1e-12)
        np.testing.assert_allclose(float(q["A"]), 2.0 * float(q["hbar_z"] * q["gx_norm2"]), rtol=1e-12)
        np.testing.assert_allclose(float(q["delta_l2"]), float(jnp.linalg.norm(d)), rtol=1e-12)
