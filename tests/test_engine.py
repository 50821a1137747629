"""Attacks, gating, Hessians and Theorems 1-2: implementations checked against each other and
against analytic cases, in float64."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from jaxdyn import attacks, gating, hessian, metrics, models, theory
from tests.helpers import SHAPE, small_input, small_label, small_net

C_CHOICES = (1, 3, 10)


def _quadratic_loss(A, c):
    """A loss in logit space with constant Hessian ``A`` (PSD)."""

    def loss_fn(z, y):
        d = z - c
        return 0.5 * d @ A @ d

    return loss_fn


# --- Jacobians and Hessians -------------------------------------------------------------

@pytest.mark.parametrize("C", C_CHOICES)
def test_structured_hessian_equals_autodiff_hessian(C):
    _, _, f = small_net(1, C)
    x, y = small_input(1), small_label(C, 1)
    H_exact = hessian.input_hessian(f, x, y)
    H_struct = hessian.input_hessian_structured(f, x, y)
    scale = np.abs(H_exact).max()
    assert scale > 0
    np.testing.assert_allclose(H_struct, H_exact, atol=1e-12 * scale)


def test_hvp_and_hbar_x_dense():
    _, _, f = small_net(2, 3)
    x, y = small_input(2), small_label(3, 2)
    v = jax.random.normal(jax.random.key(3), SHAPE, jnp.float64)
    H = hessian.input_hessian(f, x, y)
    np.testing.assert_allclose(hessian.hvp(f, x, y, v).ravel(), H @ v.ravel(), atol=1e-12)
    hb = jnp.asarray([[2.0, 0.3, 0.0], [0.3, 1.0, 0.1], [0.0, 0.1, 0.5]])
    J = gating.input_jacobian(f, x)
    np.testing.assert_allclose(hessian.hbar_x_dense(f, x, hb), J.T @ hb @ J, atol=1e-12)


def test_param_hessian_top_eigenvalue_matches_dense():
    net, variables, _ = small_net(4, 3, hidden=(5,))
    x = jax.random.uniform(jax.random.key(5), (8,) + SHAPE, jnp.float64)
    y = jnp.arange(8) % 3

    def loss_p(p):
        z = net.apply(p, x)
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, y[:, None], 1)[:, 0])

    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(variables)
    H = jax.jit(jax.hessian(lambda t: loss_p(unravel(t))))(flat)
    ev = np.linalg.eigvalsh(np.asarray(H))
    top = ev[np.argmax(np.abs(ev))]
    top_eig = jax.jit(lambda p: hessian.param_hessian_top_eigenvalue(loss_p, p, key=jax.random.key(0), num_iters=300)[0])
    lam = top_eig(variables)
    np.testing.assert_allclose(lam, top, rtol=1e-4)


# --- Gating --------------------------------------------------------------------------------

def test_frozen_network_is_the_linearisation_and_gates_count():
    net, variables, f = small_net(6, 4)
    x = small_input(6)
    d = 1e-3 * jax.random.normal(jax.random.key(7), SHAPE, jnp.float64)
    fz = gating.freeze(f, x)
    J = gating.input_jacobian(f, x)
    np.testing.assert_allclose(fz(x + d), f(x) + J @ d.ravel(), atol=1e-12)
    assert gating.flip_fraction(net.apply, variables, x, x) == 0
    big = x + 5.0 * jax.random.normal(jax.random.key(8), SHAPE, jnp.float64)
    assert gating.flip_fraction(net.apply, variables, x, big) > 0


# --- Attacks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("C", C_CHOICES)
@pytest.mark.parametrize("norm", ["raw", "l2"])
def test_frozen_attack_equals_logit_space_attack(C, norm):
    _, _, f = small_net(9, C)
    x, y = small_input(9), small_label(C, 9)
    r1 = attacks.attack(f, x, y, beta=0.5, steps=50, norm=norm, gating="frozen", record=True)
    r2 = attacks.logit_space_attack(f, x, y, beta=0.5, steps=50, norm=norm, record=True)
    scale = np.linalg.norm(r1.delta)
    np.testing.assert_allclose(r2.delta, r1.delta, atol=1e-12 * scale)
    np.testing.assert_allclose(r2.hbar_z, r1.hbar_z, atol=1e-13)
    for k in ("delta_norm", "grad_norm", "step_norm", "loss"):
        np.testing.assert_allclose(r2.trajectory[k], r1.trajectory[k], rtol=1e-9, atol=1e-15)
    assert r1.success_step == r2.success_step


def test_frozen_equals_free_when_no_gate_flips():
    net, variables, f = small_net(10, 3)
    x, y = small_input(10), small_label(3, 10)
    free = attacks.attack(f, x, y, beta=1e-3, steps=20, gating="free")
    frozen = attacks.attack(f, x, y, beta=1e-3, steps=20, gating="frozen")
    assert gating.flip_fraction(net.apply, variables, x, x + free.delta) == 0
    np.testing.assert_allclose(free.delta, frozen.delta, atol=1e-13 * np.linalg.norm(free.delta))
    # ... and they do differ once gates flip (the check above is not vacuous).
    free_big = attacks.attack(f, x, y, beta=200.0, steps=20, gating="free")
    frozen_big = attacks.attack(f, x, y, beta=200.0, steps=20, gating="frozen")
    assert gating.flip_fraction(net.apply, variables, x, x + free_big.delta) > 0
    assert np.linalg.norm(free_big.delta - frozen_big.delta) > 1e-6 * np.linalg.norm(free_big.delta)


def test_hbar_z_is_the_spec_weighted_mean_of_the_trajectory():
    _, _, f = small_net(11, 3)
    x, y = small_input(11), small_label(3, 11)
    r = attacks.attack(f, x, y, beta=2.0, steps=30, gating="free", record=True)
    tr = r.trajectory
    # H_z^(t), t = 1..m-1 weighted by ||Δx^(t)|| = ||δ^(t) - δ^(t-1)||: first m entries.
    ref = theory.hbar_z_weighted(tr["H_z"][:30], tr["step_norm"][:30])
    np.testing.assert_allclose(r.hbar_z, ref, atol=1e-14)
    # raw steps: ||Δx^(t)|| = α ||g^(t-1)||
    np.testing.assert_allclose(tr["step_norm"][1:], (2.0 / 30) * tr["grad_norm"][:-1], rtol=1e-12)


def test_vmap_equals_loop():
    _, _, f = small_net(12, 4)
    xs = jnp.stack([small_input(s) for s in range(4)])
    ys = jnp.stack([small_label(4, s) for s in range(4)])

    @jax.jit
    def one(x, y):
        r = attacks.attack(f, x, y, beta=0.3, steps=25, gating="frozen")
        return r.delta, theory.predict(f, x, y, r.hbar_z, beta=0.3)["delta_hat"]

    d_b, p_b = jax.jit(jax.vmap(one))(xs, ys)
    for i in range(4):
        d_i, p_i = one(xs[i], ys[i])
        np.testing.assert_allclose(d_b[i], d_i, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(p_b[i], p_i, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_respects_ball_and_box(norm):
    _, _, f = small_net(13, 3)
    eps = 0.3 if norm == "linf" else 1.0
    keys = jax.random.split(jax.random.key(0), 6)
    xs = jnp.stack([small_input(s) for s in range(6)])
    ys = jnp.stack([small_label(3, s) for s in range(6)])
    d = jax.jit(jax.vmap(lambda x, y, k: attacks.pgd(f, x, y, eps=eps, alpha=0.1, steps=10, norm=norm, key=k)))(xs, ys, keys)
    adv = xs + d
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    if norm == "linf":
        assert float(jnp.abs(d).max()) <= eps + 1e-12
    else:
        assert float(metrics.per_sample_norm(d).max()) <= eps + 1e-12
    assert float(metrics.per_sample_norm(d).min()) > 0


def test_l2_random_start_is_uniform_in_the_ball():
    x = jnp.zeros((4, 4, 1), jnp.float64)  # n = 16
    pts = jax.jit(jax.vmap(lambda k: attacks.sample_ball(k, x, 2.0, "l2")))(jax.random.split(jax.random.key(1), 4000))
    r = np.asarray(metrics.per_sample_norm(pts))
    assert r.max() <= 2.0 + 1e-12
    # Uniform in the ball: P(r <= s*eps) = s^n. For s = 0.9, n = 16: 0.185 (a sphere would give 0).
    frac = np.mean(r <= 0.9 * 2.0)
    assert abs(frac - 0.9**16) < 0.03


# --- Theorems 1 and 2 --------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _both_paths(C):
    """One jitted function per head size C, so hypothesis' draws do not recompile."""
    net, _, _ = small_net(0, C)

    @jax.jit
    def run(variables, x, y, beta):
        f = models.logits_fn(net, variables)
        r = attacks.attack(f, x, y, beta=beta, steps=20, gating="frozen")
        p = theory.predict(f, x, y, r.hbar_z, beta=beta)
        p1 = theory.predict(f, x, y, r.hbar_z, beta=beta, steps=20)
        Hx = hessian.hbar_x_dense(f, x, r.hbar_z)
        ref = theory.theorem2_eig(p["g_x"].ravel(), Hx, beta)
        ref1 = theory.theorem1_eig(p["g_x"].ravel(), Hx, beta / 20, 20)
        lam_s, V_s = theory.structured_eigenpairs(p["J"], r.hbar_z)
        lam_d, V_d = hessian.top_eigenpairs(Hx, C)
        return p, p1, ref, ref1, (lam_s, V_s, lam_d, V_d)

    return run


@given(st.integers(0, 50), st.sampled_from(C_CHOICES), st.floats(1e-3, 3.0))
def test_cxc_path_equals_nxn_eigendecomposition(seed, C, beta):
    _, variables, _ = small_net(seed, C)
    x, y = small_input(seed), small_label(C, seed)
    p, p1, ref, ref1, (lam_s, V_s, lam_d, V_d) = _both_paths(C)(variables, x, y, jnp.float64(beta))
    # float64 with eigendecompositions of 36 x 36 matrices: agreement to ~1e-13 is typical.
    np.testing.assert_allclose(p["delta_hat"].ravel(), ref.delta, atol=1e-10 * np.linalg.norm(ref.delta))
    np.testing.assert_allclose(p["grad_hat"].ravel(), ref.grad, atol=1e-10 * np.linalg.norm(ref.grad))
    np.testing.assert_allclose(p1["delta_hat"].ravel(), ref1.delta, atol=1e-10 * np.linalg.norm(ref1.delta))
    np.testing.assert_allclose(lam_s, lam_d, atol=1e-10 * max(float(lam_d[0]), 1e-300))
    assert abs(abs(float(V_s[:, 0] @ V_d[:, 0])) - 1) < 1e-8


@pytest.mark.parametrize("C", [1, 4])
def test_quadratic_loss_theorem1_exact_and_theorem2_is_the_flow(C):
    """Constant H_z + frozen gating: the m-step attack IS Theorem 1 (to rounding), and its gap
    to Theorem 2 (the gradient flow) is Theorem 1's residual, O(1/m)."""
    _, _, f = small_net(14, C)
    x = small_input(14)
    k1, k2 = jax.random.split(jax.random.key(2))
    B = jax.random.normal(k1, (C, C), jnp.float64)
    A = B @ B.T + 0.5 * jnp.eye(C)
    c = jax.random.normal(k2, (C,), jnp.float64) + 3.0
    loss_fn = _quadratic_loss(A, c)
    beta = 0.5
    kappas = []
    for m in (50, 500, 5000):
        r = attacks.logit_space_attack(f, x, 0, beta=beta, steps=m, loss_fn=loss_fn)
        np.testing.assert_allclose(r.hbar_z, A, atol=1e-12)
        t1 = theory.predict(f, x, 0, A, beta=beta, steps=m, loss_fn=loss_fn)["delta_hat"]
        np.testing.assert_allclose(r.delta, t1, atol=1e-10 * np.linalg.norm(t1))
        t2 = theory.predict(f, x, 0, A, beta=beta, loss_fn=loss_fn)["delta_hat"]
        kappas.append(float(metrics.kappa(r.delta[None], t2[None])))
    assert kappas[0] > 1e-4  # curvature is strong enough for the test to mean something
    for a, b in zip(kappas, kappas[1:]):
        assert 8.0 < a / b < 12.0  # O(1/m): ten times the steps, a tenth of the error
    # The network path agrees with the logit-space path for this loss too.
    r_net = attacks.attack(f, x, 0, beta=beta, steps=50, gating="frozen", loss_fn=loss_fn)
    r_log = attacks.logit_space_attack(f, x, 0, beta=beta, steps=50, loss_fn=loss_fn)
    np.testing.assert_allclose(r_net.delta, r_log.delta, atol=1e-12 * np.linalg.norm(r_log.delta))


def test_kappa_small_on_cross_entropy_and_below_first_order():
    _, _, f = small_net(15, 10)
    x, y = small_input(15), small_label(10, 15)
    beta = 1e-1
    r = attacks.logit_space_attack(f, x, y, beta=beta, steps=2000)
    p = theory.predict(f, x, y, r.hbar_z, beta=beta)
    k = float(metrics.kappa(r.delta[None], p["delta_hat"][None]))
    k1 = float(metrics.kappa_first_order(r.delta[None], p["g_x"][None], beta))
    assert k < k1 / 10


def test_limits_c3():
    _, _, f = small_net(16, 4)
    x, y = small_input(16), small_label(4, 16)
    z = f(x)
    J = gating.input_jacobian(f, x)
    from jaxdyn.losses import grad_z, hessian_z

    gz, hz = grad_z(z, y), hessian_z(z, y)
    gx = J.T @ gz
    # λ -> 0: with H̄_z = 0 Theorem 2 is exactly β g_x.
    p0 = theory.theorem2(J, gz, jnp.zeros_like(hz), 0.7)
    np.testing.assert_allclose(p0.delta, 0.7 * gx, rtol=1e-12)
    # small β: δ̂ ∥ g_x; large β: δ̂ ∥ v_1.
    lam, V = theory.structured_eigenpairs(J, hz)
    v1 = V[:, 0]
    small = theory.theorem2(J, gz, hz, 1e-6).delta
    assert 1 - metrics.cosine(small, gx) < 1e-8
    beta_big = 60.0 / float(lam[0])
    big = theory.theorem2(J, gz, hz, beta_big).delta
    assert 1 - abs(metrics.cosine(big, v1)) < 1e-8
    assert 1 - abs(metrics.cosine(small, v1)) > 1e-3  # the two limits are different directions


# --- Compilation -------------------------------------------------------------------------------

def test_beta_eps_alpha_sweep_does_not_recompile():
    _, variables, _ = small_net(17, 3)
    net = models.MLP(features=(12, 8), num_classes=3)
    traces = {"n": 0}

    @jax.jit
    def run(variables, xs, ys, beta, eps):
        traces["n"] += 1
        f = models.logits_fn(net, variables)
        d = jax.vmap(lambda x, y: attacks.attack(f, x, y, beta=beta, steps=5, eps=eps, norm="linf").delta)(xs, ys)
        return d

    xs = jnp.stack([small_input(s) for s in range(3)])
    ys = jnp.arange(3)
    for beta, eps in [(0.1, 0.1), (0.2, 0.3), (1.0, 0.05), (1e-4, 1.0)]:
        run(variables, xs, ys, jnp.float64(beta), jnp.float64(eps)).block_until_ready()
    assert traces["n"] == 1


# --- Bad input ---------------------------------------------------------------------------------

def test_bad_input_raises_clear_errors():
    _, _, f = small_net(18, 3)
    x = small_input(18)
    with pytest.raises(ValueError, match="beta"):
        attacks.attack(f, x, 0, beta=0.0, steps=5)
    with pytest.raises(ValueError, match="beta"):
        attacks.attack(f, x, 0, beta=-1.0, steps=5)
    with pytest.raises(ValueError, match="steps"):
        attacks.attack(f, x, 0, beta=1.0, steps=0)
    with pytest.raises(ValueError, match="steps"):
        attacks.attack(f, x, 0, beta=1.0, steps=2.5)
    with pytest.raises(ValueError, match="NaN"):
        attacks.attack(f, x.at[0, 0, 0].set(jnp.nan), 0, beta=1.0, steps=5)
    with pytest.raises(ValueError, match="scalar label"):
        attacks.attack(f, x, jnp.zeros(3, jnp.int32), beta=1.0, steps=5)
    with pytest.raises(ValueError, match="norm"):
        attacks.attack(f, x, 0, beta=1.0, steps=5, norm="l3")
    with pytest.raises(ValueError, match="gating"):
        attacks.attack(f, x, 0, beta=1.0, steps=5, gating="half")
    with pytest.raises(ValueError, match="exactly one"):
        attacks.attack(f, x, 0, beta=1.0, alpha=0.1, steps=5)
    with pytest.raises(ValueError, match="beta"):
        theory.predict(f, x, 0, beta=-0.1)
    with pytest.raises(ValueError, match="shape"):
        metrics.kappa(jnp.ones((2, 3)), jnp.ones((3, 2)))
    from jaxdyn import _checks
    with pytest.raises(ValueError, match=r"\[B, 28, 28, 1\]"):
        _checks.check_batch(np.zeros((2, 28, 28)), np.zeros(2))
