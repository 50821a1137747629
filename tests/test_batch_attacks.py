"""Batch attacks (jaxdyn.attacks.batch), APGD (jaxdyn.attacks.apgd_attack), the public robust_accuracy and the
range check of the per-example attacks: against the per-example engine bit for bit, against hand
computations, and on a small trained network (the checks the field runs on a new attack)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdyn as jd
from jaxdyn.attacks import apgd_attack
from jaxdyn.attacks import multistep as attacks
from jaxdyn.attacks import batch
from jaxdyn.core import models
from tests.helpers import SHAPE, small_input, small_net


@pytest.fixture(scope="module")
def trained(data_dir):
    """An undefended MLP (one hidden layer of 64) trained for 2 epochs on 4000 digits (float32),
    and 100 test digits it classifies."""
    xt, yt = jd.subset(*jd.load_mnist("train", data_dir=data_dir), 4000, seed=0)
    xs, ys = jd.subset(*jd.load_mnist("test", data_dir=data_dir), 100, seed=1)
    model = models.MLP(features=(64,), num_classes=10)
    params = model.init(jax.random.key(0), jnp.zeros((1,) + xt.shape[1:], jnp.float32))["params"]
    opt = optax.adam(3e-3)
    state = opt.init(params)


    @jax.jit
    def step(p, s, xb, yb):
        g = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, xb),
                                                                               yb).mean())(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes dtypes
        for _ in range(2):
            for i in range(0, len(xt), 100):
                params, state = step(params, state, jnp.asarray(xt[i:i + 100]), jnp.asarray(yt[i:i + 100]))
    return model, {"params": params}, jnp.asarray(xs), jnp.asarray(ys)


def _batch(n=6, seed=0, num_classes=4):
    x = jnp.stack([small_input(seed + i) for i in range(n)])
    return x, jnp.arange(n, dtype=jnp.int32) % num_classes


# --- the batch entry points against the per-example engine --------------------------------------
def _counted(f, traces):
    def g(x):
        traces.append(1)
        return f(x)

    return g


def test_pgd_batch_is_vmap_of_pgd_bit_for_bit_and_an_eps_sweep_traces_once():
    _, _, f = small_net()
    x, y = _batch()
    key = jax.random.key(3)
    traces = []
    g = _counted(f, traces)
    r = jd.pgd_batch(g, x, y, eps=0.1, alpha=0.03, steps=3, key=key)
    n = len(traces)
    r2 = jd.pgd_batch(g, x, y, eps=0.2, alpha=0.05, steps=3, key=key)
    assert n > 1 and len(traces) == n + 1  # ε, α traced: the kernel is not traced again (1: the eager shape check)
    keys = batch.example_keys(key, len(x))
    ref = jax.jit(jax.vmap(lambda xi, yi, ki, e, a: attacks.pgd(f, xi, yi, eps=e, alpha=a, steps=3, key=ki),
                           in_axes=(0, 0, 0, None, None)))
    d = ref(x, y, keys, 0.1, 0.03)
    np.testing.assert_array_equal(np.asarray(r.delta), np.asarray(d))
    np.testing.assert_array_equal(np.asarray(r.x_adv), np.asarray(x + d))
    np.testing.assert_array_equal(np.asarray(r2.delta), np.asarray(ref(x, y, keys, 0.2, 0.05)))
    z = jax.vmap(f)(x + d)
    np.testing.assert_array_equal(np.asarray(r.success), np.asarray(jnp.argmax(z, -1).astype(jnp.int32) != y))
    assert float(jnp.max(jnp.abs(r2.delta))) > 0.1  # the second ε was used
    # every example its own random start: two copies of one example end apart
    assert not np.allclose(r.delta[0], jd.pgd_batch(g, x[::-1], y[::-1], eps=0.1, alpha=0.03, steps=3,
                                                    key=key).delta[-1])


def test_apgd_batch_is_vmap_of_the_per_example_engine_and_an_eps_sweep_traces_once():
    _, _, f = small_net()
    x, y = _batch()
    key = jax.random.key(4)
    traces = []
    g = _counted(f, traces)
    r = jd.apgd(g, x, y, eps=0.1, loss="dlr", steps=10, key=key)
    n = len(traces)
    jd.apgd(g, x, y, eps=0.2, loss="dlr", steps=10, key=key)
    assert n > 1 and len(traces) == n + 1  # as for PGD
    keys = batch.example_keys(key, len(x))
    ref = jax.jit(jax.vmap(lambda xi, yi, ki, e: apgd_attack.apgd_restarts(f, xi, yi, ki, e, steps=10, norm="linf",
                                                                           loss="dlr"), in_axes=(0, 0, 0, None)))(
        x, y, keys, jnp.float64(0.1))
    np.testing.assert_array_equal(np.asarray(r.x_adv), np.asarray(ref.x_adv))
    np.testing.assert_array_equal(np.asarray(r.success), np.asarray(ref.success))


def test_pgd_targeted_loss_fn_and_return_adv():
    _, _, f = small_net()
    x, target = small_input(0), jnp.int32(2)
    assert int(jnp.argmax(f(x))) != 2
    r = attacks.attack(f, x, target, steps=12, alpha=0.2, norm="linf", eps=2.0, clip=None, targeted=True)
    assert int(jnp.argmax(f(x + r.delta))) == 2 and int(r.success_step) > 0
    # the same steps as ascending -CE(target) with loss_fn, returned as the adversarial image
    xa = attacks.pgd(f, x, target, eps=2.0, alpha=0.2, steps=12, random_start=False, clip=None, unroll=1,
                     loss_fn=lambda z, t: -jd.loss(z, t), return_adv=True)
    np.testing.assert_allclose(xa, x + r.delta, rtol=0, atol=1e-12)


# --- the range check ----------------------------------------------------------------------------
def test_x_outside_clip_raises_eagerly_and_is_flagged_under_jit():
    _, _, f = small_net()
    x = (small_input(0) - 0.1307) / 0.3081  # torchvision-normalised: outside [0, 1]
    with pytest.raises(ValueError, match="clip=None"):
        attacks.pgd(f, x, jnp.int32(0), eps=0.3, alpha=0.01, steps=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="clip=None"):
        jd.pgd_batch(f, x[None], jnp.zeros(1, jnp.int32), eps=0.3, alpha=0.01, steps=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="clip=None"):
        jd.robust_accuracy(f, x[None], jnp.zeros(1, jnp.int32), eps=0.3, progress=False)
    r = jax.jit(lambda x: attacks.attack(f, x, jnp.int32(0), steps=2, alpha=0.01, norm="linf", eps=0.3,
                                         clip=(0.0, 1.0)))(x)
    assert bool(jnp.all(jnp.isnan(r.delta))) and int(r.success_step) == attacks.SuccessStep.INVALID
    # clip=None: the ball holds
    d = attacks.pgd(f, x, jnp.int32(0), eps=0.3, alpha=0.1, steps=5, key=jax.random.key(0), clip=None)
    assert float(jnp.max(jnp.abs(d))) <= 0.3 + 1e-12


# --- APGD ---------------------------------------------------------------------------------------
def test_dlr_losses_by_hand():
    z = jnp.array([1.0, 4.0, -2.0, 3.0, 0.5])  # sorted: 4, 3, 1, 0.5, -2
    np.testing.assert_allclose(apgd_attack.dlr_loss(z, 3), -(3.0 - 4.0) / (4.0 - 1.0 + 1e-12))
    np.testing.assert_allclose(apgd_attack.dlr_loss(z, 1), -(4.0 - 3.0) / (4.0 - 1.0 + 1e-12))
    np.testing.assert_allclose(apgd_attack.dlr_loss_targeted(z, 1, 2),
                               -(4.0 - (-2.0)) / (4.0 - (1.0 + 0.5) / 2 + 1e-12))
    # invariant to a shift and a positive scaling of the logits
    np.testing.assert_allclose(apgd_attack.dlr_loss(3 * z + 7, 3), apgd_attack.dlr_loss(z, 3), rtol=1e-12)


def test_checkpoints_follow_the_paper():
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    want = [round(q * 100) - 1 for q in p[1:] if round(q * 100) <= 100]
    assert apgd_attack.checkpoints(100) == want


def test_apgd_l2_stays_in_ball_and_box():
    net, variables, f = small_net()
    x, y = _batch()
    r = jd.apgd(f, x, y, eps=0.5, norm="l2", steps=10, key=jax.random.key(0))
    norms = np.linalg.norm(np.asarray(r.delta).reshape(len(x), -1), axis=1)
    assert np.all(norms <= 0.5 * (1 + 1e-9)) and np.all(norms > 0)
    assert float(r.x_adv.min()) >= 0 and float(r.x_adv.max()) <= 1
    with pytest.raises(ValueError, match="at least 3 classes"):
        jd.apgd(*small_net(num_classes=1)[2:], x, jnp.ones(len(x)), eps=0.1, loss="dlr", key=jax.random.key(0))


@pytest.mark.slow
def test_apgd_and_pgd_on_an_undefended_network(trained):
    """ε = 0.3: both reach 0 %; at a small ε APGD (CE and DLR, worst case) is at least as strong as PGD-40."""
    model, variables, x, y = trained
    ra = jd.robust_accuracy(model, x, y, eps=[0.02, 0.3], attack="apgd", variables=variables, steps=50,
                            progress=False)
    rp = jd.robust_accuracy(model, x, y, eps=[0.02, 0.3], attack="pgd", variables=variables, alpha=0.01,
                            progress=False)
    assert ra.clean == rp.clean > 0.8
    assert rp.robust[1] == 0.0 and ra.robust[1] == 0.0
    assert ra.robust[0] <= rp.robust[0] < ra.clean
    assert "robust (apgd" in str(ra) and len(str(ra).splitlines()) == 3


def test_robust_accuracy_with_a_callable_and_a_module():
    net, variables, f = small_net()
    x, y = _batch()

    def fgsm(xb, yb, eps, key):
        g = jax.vmap(jax.grad(lambda xi, yi: jd.loss(f(xi), yi)))(xb, yb)
        return jnp.clip(xb + eps * jnp.sign(g), 0, 1)

    r = jd.robust_accuracy(net, x, y, eps=[0.05, 0.5], attack=fgsm, variables=variables, progress=False)
    z0, z1 = jax.vmap(f)(x), jax.vmap(f)(fgsm(x, y, 0.5, None))
    ok0 = np.asarray(jnp.argmax(z0, -1).astype(jnp.int32) == y)
    assert r.eps == (0.05, 0.5) and r.attack == "fgsm" and r.clean == ok0.mean()
    assert r.robust[1] == (ok0 & np.asarray(jnp.argmax(z1, -1).astype(jnp.int32) == y)).mean()
    assert "robust (fgsm" in str(r) and len(str(r).splitlines()) == 3
    with pytest.raises(ValueError, match="left the linf ball"):
        jd.robust_accuracy(f, x, y, eps=0.1, attack=lambda xb, yb, e, k: jnp.clip(xb + 2 * e, 0, 1), progress=False)
    with pytest.raises(ValueError, match="variables"):
        jd.robust_accuracy(net, x, y, eps=0.1, progress=False)
    with pytest.raises(ValueError, match="attack must be one of"):
        jd.robust_accuracy(f, x, y, eps=0.1, attack="cw", progress=False)


def test_shapes_refused():
    _, _, f = small_net()
    x, y = _batch()
    with pytest.raises(ValueError, match="batch"):
        jd.pgd_batch(f, x[0, :, 0, 0], y, eps=0.1, alpha=0.01, steps=1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="key"):
        jd.apgd(f, x, y, eps=0.1, steps=2)
    assert functools.reduce(lambda a, b: a and b, [n in jd.__all__ for n in ("pgd_batch", "apgd", "robust_accuracy",
                                                                             "load_run")])
    assert SHAPE == tuple(x.shape[1:])
