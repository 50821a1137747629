"""jaxdyn.attacks.multistep: A2 attacks in logit space, PGD's ball and box, the ℓ∞ step, the ℓ2 random
start, vmap against a loop, H̄_z's definition and compile counts (float64)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import jaxdyn.testing as T
from jaxdyn.attacks import multistep as attacks
from jaxdyn.core import gating
from jaxdyn.core import models
from jaxdyn.core import theory
from jaxdyn.testing import strategies as S
from tests import _props
from tests.helpers import SHAPE, small_input, small_label, small_net


@given(_props.problems(), S.norms(("raw", "l2")), S.betas(1e-2, 2.0))
def test_property_frozen_attack_equals_logit_space_attack(p, norm, beta):
    """A2: the frozen-network attack and the C-dimensional logit-space attack are one iteration."""
    T.assert_frozen_equals_logit_space(p.apply, p.x, p.y, params=p.variables, beta=beta, steps=20, norm=norm)


@given(S.seeds, S.inputs(), S.betas(1e-2, 2.0))
def test_property_frozen_equals_logit_space_on_a_plain_function(seed, x, beta):
    f, params = T.plain_mlp(seed, num_classes=3)
    T.assert_frozen_equals_logit_space(f, x, jnp.int32(seed % 3), params=params, beta=beta, steps=20)


@functools.lru_cache(maxsize=None)
def _free_frozen(apply):
    @jax.jit
    def run(variables, x, y, beta):
        f = functools.partial(apply, variables)
        free = attacks.attack(f, x, y, beta=beta, steps=20, gating="free")
        frozen = attacks.attack(f, x, y, beta=beta, steps=20, gating="frozen")
        return free.delta, frozen.delta

    return run


@given(_props.problems(), S.betas(1e-4, 1e-2))
def test_property_frozen_equals_free_when_no_gate_flips(p, beta):
    """A2 is exact while no gate flips: the free and frozen attacks coincide."""
    free, frozen = _free_frozen(p.apply)(p.variables, p.x, p.y, jnp.float64(beta))
    assume(float(gating.flip_fraction(p.model.apply, p.variables, p.x, p.x + free)) == 0)
    # max pools: no argmax may change either; a changed argmax shows up as a large difference
    T.assert_close(frozen, free, 1e-11, "free != frozen without gate flips")


def test_frozen_differs_from_free_once_gates_flip():
    net, variables, _ = small_net(10, 3)
    x, y = small_input(10), small_label(3, 10)

    @jax.jit  # both attacks in one program, β traced: one compile (four eager calls compiled four times)
    def run(variables, x, y, beta):
        f = models.logits_fn(net, variables)
        return tuple(attacks.attack(f, x, y, beta=beta, steps=20, gating=g).delta for g in ("free", "frozen"))

    free, frozen = run(variables, x, y, jnp.float64(1e-3))
    assert gating.flip_fraction(net.apply, variables, x, x + free) == 0
    np.testing.assert_allclose(free, frozen, atol=1e-13 * np.linalg.norm(free))
    free_big, frozen_big = run(variables, x, y, jnp.float64(200.0))
    assert gating.flip_fraction(net.apply, variables, x, x + free_big) > 0
    assert np.linalg.norm(free_big - frozen_big) > 1e-6 * np.linalg.norm(free_big)


@functools.lru_cache(maxsize=None)
def _recorded(apply):
    @jax.jit
    def run(variables, x, y, beta):
        return attacks.attack(functools.partial(apply, variables), x, y, beta=beta, steps=30, record=True)

    return run


@given(_props.problems(), S.betas(1e-2, 3.0))
def test_property_hbar_z_is_the_spec_weighted_mean_of_the_trajectory(p, beta):
    """H̄_z = Σ_{t=1}^{m-1} ||Δx^(t)|| H_z^(t) / Σ ||Δx^(t)||, and raw steps have ||Δx^(t)|| = α ||g^(t-1)||."""
    r = _recorded(p.apply)(p.variables, p.x, p.y, jnp.float64(beta))
    tr = r.trajectory
    ref = theory.hbar_z_weighted(tr["H_z"][:30], tr["step_norm"][:30])
    T.assert_close(r.hbar_z, ref, 1e-12, "H_bar_z != weighted mean of the trajectory")
    T.assert_close(tr["step_norm"][1:], (beta / 30) * tr["grad_norm"][:-1], 1e-12, "raw step != alpha ||g||")


@functools.lru_cache(maxsize=None)
def _attack_and_predict(apply):
    def one(variables, beta, x, y):
        f = functools.partial(apply, variables)
        r = attacks.attack(f, x, y, beta=beta, steps=25, gating="frozen")
        return r.delta, theory.predict(f, x, y, r.hbar_z, beta=beta).delta_hat

    return one


@given(_props.problems(), S.betas(1e-2, 1.0))
def test_property_vmap_equals_loop(p, beta):
    """vmap(attack + Theorem 2) == a loop over examples."""
    xs = jnp.stack([p.x, 1 - p.x, 0.5 * p.x])
    ys = jnp.stack([p.y] * 3)
    T.assert_batch_equals_loop(_attack_and_predict(p.apply), xs, ys, shared=(p.variables, jnp.float64(beta)),
                               rtol=1e-12)


@functools.lru_cache(maxsize=None)
def _pgd(apply, norm):
    @jax.jit
    def run(variables, xs, ys, keys, eps, alpha):
        f = functools.partial(apply, variables)
        return jax.vmap(lambda x, y, k: attacks.pgd(f, x, y, eps=eps, alpha=alpha, steps=10, norm=norm, key=k))(
            xs, ys, keys)

    return run


@given(_props.problems(), S.norms(("linf", "l2")), st.floats(0.01, 1.0), st.floats(0.01, 0.5), S.seeds)
def test_property_pgd_respects_ball_and_box(p, norm, eps_frac, alpha, seed):
    """PGD: ||δ|| <= ε in its norm, x + δ in [0, 1], and δ != 0."""
    eps = eps_frac * (1.0 if norm == "linf" else 3.0)
    xs = jnp.stack([p.x, 1 - p.x])
    d = _pgd(p.apply, norm)(p.variables, xs, jnp.stack([p.y] * 2), jax.random.split(jax.random.key(seed), 2),
                            jnp.float64(eps), jnp.float64(alpha))
    T.assert_in_ball(d, eps, norm, clip=(0.0, 1.0), x=xs, batched=True, atol=1e-12)
    assert float(jnp.min(jnp.linalg.norm(d.reshape(2, -1), axis=1))) > 0


@given(_props.problems(), st.floats(1e-3, 0.1), st.sampled_from((2, 3)))
def test_property_linf_step_is_exactly_alpha_sign(p, alpha, steps):
    """An unprojected ℓ∞ step moves every coordinate by exactly ±α."""
    T.assert_linf_steps_exact(p.apply, p.x, p.y, params=p.variables, alpha=alpha, steps=steps)


@given(st.sampled_from(((4, 4, 1), (6, 6, 1))), st.floats(0.1, 3.0), S.seeds)
def test_property_l2_random_start_is_uniform_in_the_ball(shape, eps, seed):
    """sample_ball(l2): radius CDF (r/ε)^n (KS test) and isotropic directions, never outside."""
    x = jnp.zeros(shape, jnp.float64)
    T.assert_l2_start_uniform(lambda k: attacks.sample_ball(k, x, eps, "l2").ravel(), x.size, eps,
                              key=jax.random.key(seed))


def test_l2_random_start_is_not_on_the_sphere():
    x = jnp.zeros((4, 4, 1), jnp.float64)  # n = 16
    pts = jax.jit(jax.vmap(lambda k: attacks.sample_ball(k, x, 2.0, "l2")))(jax.random.split(jax.random.key(1), 4000))
    r = np.linalg.norm(np.asarray(pts).reshape(4000, -1), axis=1)
    assert r.max() <= 2.0 + 1e-12
    # Uniform in the ball: P(r <= s*eps) = s^n. For s = 0.9, n = 16: 0.185 (a sphere would give 0).
    assert abs(np.mean(r <= 0.9 * 2.0) - 0.9**16) < 0.03


@settings(max_examples=2)  # each example compiles once (that is what it checks): keep it to two
@given(st.lists(st.tuples(S.betas(1e-4, 1.0), st.floats(0.01, 1.0)), min_size=3, max_size=3))
def test_property_beta_eps_alpha_sweep_does_not_retrace(sweep):
    """Sweeping β, ε and α under jit never recompiles the attack."""
    _, variables, _ = small_net(17, 3)
    net = models.MLP(features=(12, 8), num_classes=3)
    xs = jnp.stack([small_input(s) for s in range(3)])
    ys = jnp.arange(3)

    def run(variables, xs, ys, beta, eps, alpha):
        f = models.logits_fn(net, variables)
        d = jax.vmap(lambda x, y: attacks.attack(f, x, y, beta=beta, steps=5, eps=eps, norm="linf").delta)(xs, ys)
        d2 = jax.vmap(lambda x, y: attacks.attack(f, x, y, alpha=alpha, steps=5, eps=eps, norm="l2").delta)(xs, ys)
        return d, d2

    calls = [(variables, xs, ys, jnp.float64(b), jnp.float64(e), jnp.float64(b / 5)) for b, e in sweep]
    T.assert_no_retrace(run, calls)


def test_calibrate_raw_alpha_hits_the_target_step():
    """The calibrated α makes each sample succeed by ``target`` under A2 (checked with the network
    attack with frozen gates, not the logit-space attack the bisection uses), and half of it does
    not (the bisection brackets the boundary)."""
    _, _, f = small_net(31, 4)
    xs = jax.random.uniform(jax.random.key(32), (5,) + SHAPE, jnp.float64)
    ys = jnp.argmax(jax.vmap(f)(xs), axis=1).astype(jnp.int32)  # correctly classified by definition
    g0 = np.asarray(jax.vmap(lambda x, y: jnp.linalg.norm(attacks.attack(f, x, y, steps=1, alpha=1.0).delta))(xs, ys))
    target, m = 8, 30
    cal = attacks.calibrate_raw_alpha(f, xs, ys, target=target, max_steps=m, alpha0=0.1 / g0)
    assert cal["alpha"].shape == (5,) and np.all(cal["success_step"] >= 1) and np.all(cal["success_step"] <= target)
    np.testing.assert_allclose(cal["jacobian"][2], jax.jacrev(f)(xs[2]).reshape(cal["jacobian"].shape[1], -1),
                               rtol=1e-10)

    def succ(alpha):
        return np.asarray(jax.vmap(lambda x, y, a: attacks.attack(f, x, y, steps=m, alpha=a, norm="raw",
                                                                  gating="frozen").success_step)(xs, ys, alpha))

    s = succ(jnp.asarray(cal["alpha"]))
    np.testing.assert_array_equal(s, cal["success_step"])
    s_half = succ(jnp.asarray(cal["alpha"] / 2))
    assert np.all((s_half > target) | (s_half < 0)), s_half


def test_traced_steps_logit_space_attack_and_theorem1_match_static_steps():
    """A traced m (one compile for any m, as Table 1's κ(m) grid uses) gives the static-m numbers:
    the logit-space attack (δ, H̄_z, success step) and Theorem 1's C×C power; record refuses it."""
    f, params = T.plain_mlp(0, num_classes=3)
    x = jnp.linspace(0.0, 1.0, 36, dtype=jnp.float64).reshape(6, 6, 1)  # plain_mlp's default input shape
    g = functools.partial(f, params)
    J = gating.input_jacobian(g, x)
    gz = jax.grad(lambda z: attacks.loss(z, 1))(g(x))

    @jax.jit
    def traced(m):
        r = attacks.logit_space_attack(g, x, 1, steps=m, beta=2.0, jacobian=J)
        return r.delta, r.hbar_z, r.success_step, theory.theorem1(J, gz, r.hbar_z, 0.01, m).delta

    for m in (1, 7, 40):
        r = attacks.logit_space_attack(g, x, 1, steps=m, beta=2.0, jacobian=J)
        want = (r.delta, r.hbar_z, r.success_step, theory.theorem1(J, gz, r.hbar_z, 0.01, m).delta)
        for a, b in zip(traced(jnp.int32(m)), want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert traced._cache_size() == 1
    with pytest.raises(ValueError, match="record"):
        attacks.logit_space_attack(g, x, 1, steps=jnp.int32(3), beta=1.0, record=True)
