"""``jaxdyn.core.theory`` beyond the Theorem 1/2 reference tests (float64): ``prepare`` (the network at
a clean input), ``match_beta`` (Appendix D), the Theorem 1/2 norm curves of Fig. 2 against the
norms of the C x C path, and the masked H̄_z average.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.attacks import multistep as attacks

from jaxdyn.core import theory
from jaxdyn.core.gating import input_jacobian
from jaxdyn.core.losses import grad_z
from jaxdyn.core.theory import match_beta, predict, prepare, theorem2
from tests.helpers import small_input, small_label, small_net


def test_prepare_is_the_clean_jacobian_logits_and_loss_gradient():
    _, _, f = small_net()
    x, y = small_input(), small_label(4)
    J, z, gz = jax.jit(prepare, static_argnums=0)(f, x, y)
    np.testing.assert_allclose(J, input_jacobian(f, x), rtol=1e-12)
    np.testing.assert_allclose(z, f(x), rtol=1e-12)
    np.testing.assert_allclose(gz, grad_z(f(x), y), rtol=1e-12)
    # what Theorem 2 needs: predict's g_x is Jᵀ g_z
    np.testing.assert_allclose(predict(f, x, y, beta=1e-3).g_x.ravel(), J.T @ gz, rtol=1e-12)
    # another loss, and a batch by vmap
    sq = lambda z, y: 0.5 * jnp.sum(z**2)  # noqa: E731
    np.testing.assert_allclose(prepare(f, x, y, loss_fn=sq)[2], f(x), rtol=1e-12)
    xs = jnp.stack([small_input(0), small_input(1)])
    Jb, _, _ = jax.vmap(lambda xx: prepare(f, xx, y))(xs)
    assert Jb.shape == (2, 4, x.size)
    with pytest.raises(ValueError):
        prepare(f, x, jnp.array([1, 2]))


@pytest.mark.parametrize("seed", [0, 1])
def test_match_beta_solves_the_norm_equation(seed):
    rng = np.random.default_rng(seed)
    C, n = 4, 30
    J = jnp.asarray(rng.normal(size=(C, n)))
    gz = jnp.asarray(rng.normal(size=C))
    P = rng.normal(size=(C, C))
    hbar = jnp.asarray(P @ P.T / C)
    target = 3.0 * float(jnp.linalg.norm(J.T @ gz)) * 0.7
    match = jax.jit(match_beta)
    beta = match(J, gz, hbar, target)
    np.testing.assert_allclose(float(jnp.linalg.norm(theorem2(J, gz, hbar, beta).delta)), target, rtol=1e-10)
    # no curvature: δ̂ = β g_x exactly
    b0 = match(J, gz, jnp.zeros((C, C)), target)
    np.testing.assert_allclose(float(b0), target / float(jnp.linalg.norm(J.T @ gz)), rtol=1e-10)
    assert float(beta) < float(b0)  # curvature only makes δ̂ longer


def _problem(seed, C=4, n=36):
    rng = np.random.default_rng(seed)
    J = jnp.asarray(rng.normal(size=(C, n)))
    P = rng.normal(size=(C, C))
    hz = jnp.asarray(P @ P.T / C)  # PSD, as Lemma 1 says H̄_z is
    gz = jnp.asarray(rng.normal(size=C))
    return J, gz, hz


@pytest.mark.parametrize("seed", [0, 1])
def test_norm_curves_equal_the_norms_of_the_cxc_path(seed):
    J, gz, hz = _problem(seed)
    gx = J.T @ gz
    betas = jnp.asarray([1e-3, 0.05, 0.2])
    t2 = theory.theorem2_norms(J, gx, hz, betas)
    for i, b in enumerate(np.asarray(betas)):
        pred = theory.theorem2(J, gz, hz, float(b))
        np.testing.assert_allclose(float(t2.grad[i]), float(jnp.linalg.norm(pred.grad)), rtol=1e-9)
        np.testing.assert_allclose(float(t2.delta[i]), float(jnp.linalg.norm(pred.delta)), rtol=1e-9)
    alpha, t = 0.01, jnp.arange(0, 9)
    t1 = theory.theorem1_norms(J, gx, hz, alpha, t)
    np.testing.assert_allclose(float(t1.delta[0]), 0.0, atol=1e-300)
    np.testing.assert_allclose(float(t1.grad[0]), float(jnp.linalg.norm(gx)), rtol=1e-12)
    for k in (1, 4, 8):
        pred = theory.theorem1(J, gz, hz, alpha, k)
        np.testing.assert_allclose(float(t1.grad[k]), float(jnp.linalg.norm(pred.grad)), rtol=1e-9)
        np.testing.assert_allclose(float(t1.delta[k]), float(jnp.linalg.norm(pred.delta)), rtol=1e-9)
    # many small steps approach the flow: Theorem 1 at m → Theorem 2 at β = α m
    t1_fine = theory.theorem1_norms(J, gx, hz, 0.05 / 4000, jnp.asarray([4000]))
    np.testing.assert_allclose(float(t1_fine.grad[0]), float(t2.grad[1]), rtol=5e-3)  # O(α) apart


def test_hbar_z_weighted_mask_and_fallback():
    _, _, f = small_net(21, 3)
    x, y = small_input(21), small_label(3, 21)
    r = attacks.attack(f, x, y, beta=2.0, steps=30, gating="free", record=True)
    H, w = r.trajectory["H_z"], r.trajectory["step_norm"]
    t = jnp.arange(31)
    # the mask 1 <= t <= m_s - 1 equals passing the first m_s entries
    for ms in (5, 30):
        np.testing.assert_allclose(theory.hbar_z_weighted(H, w, (t >= 1) & (t <= ms - 1)),
                                   theory.hbar_z_weighted(H[:ms], w[:ms]), rtol=1e-13)
    np.testing.assert_allclose(theory.hbar_z_weighted(H[:30], w[:30]), r.hbar_z, atol=1e-14)
    # no step has weight (an attack that never succeeded, m_s = -1): H_z at x
    np.testing.assert_array_equal(theory.hbar_z_weighted(H, w, t <= -2), H[0])
    np.testing.assert_array_equal(theory.hbar_z_weighted(H[:1], w[:1]), H[0])
    jitted = jax.jit(lambda ms: theory.hbar_z_weighted(H, w, (t >= 1) & (t <= ms - 1)))
    np.testing.assert_allclose(jitted(jnp.int64(5)), theory.hbar_z_weighted(H[:5], w[:5]), rtol=1e-13)
