"""Engine functions of ``jaxdyn.theory`` used by the tables and the appendix: ``prepare`` (the
network at a clean input) and ``match_beta`` (Appendix D)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.gating import input_jacobian
from jaxdyn.losses import grad_z
from jaxdyn.theory import match_beta, predict, prepare, theorem2
from tests.helpers import small_input, small_label, small_net


def test_prepare_is_the_clean_jacobian_logits_and_loss_gradient():
    _, _, f = small_net()
    x, y = small_input(), small_label(4)
    J, z, gz = jax.jit(prepare, static_argnums=0)(f, x, y)
    np.testing.assert_allclose(J, input_jacobian(f, x), rtol=1e-12)
    np.testing.assert_allclose(z, f(x), rtol=1e-12)
    np.testing.assert_allclose(gz, grad_z(f(x), y), rtol=1e-12)
    # what Theorem 2 needs: predict's g_x is Jᵀ g_z
    np.testing.assert_allclose(predict(f, x, y, beta=1e-3)["g_x"].ravel(), J.T @ gz, rtol=1e-12)
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
