import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, strategies as st

from jaxdyn import hessian, losses, theory

logits = st.lists(st.floats(-8, 8), min_size=2, max_size=2).map(lambda v: v)


@given(st.lists(st.floats(-10, 10), min_size=5, max_size=5), st.integers(0, 4))
def test_softmax_hz_is_psd_and_matches_autodiff(z, y):
    z = jnp.asarray(z, jnp.float64)
    H = losses.hessian_z(z, y)
    np.testing.assert_allclose(H, hessian.hessian_z_autodiff(z, y), atol=1e-12)
    assert np.linalg.eigvalsh(np.asarray(H)).min() >= -1e-12  # Lemma 1, softmax


@given(st.floats(-30, 30), st.sampled_from([-1.0, 1.0]))
def test_sigmoid_lemma1(z, y):
    z = jnp.asarray([z], jnp.float64)
    H = losses.hessian_z(z, y)
    np.testing.assert_allclose(H, hessian.hessian_z_autodiff(z, y), atol=1e-12)
    margin = theory.lemma1_sigmoid_margin(z, y)
    if y * float(z[0]) > 0:
        assert margin >= -1e-15  # H_z >= g_z^2 while the attack has not succeeded
    assert H[0, 0] >= 0


def test_lemma1_can_fail_when_misclassified():
    # The inequality is specific to y z > 0: on the wrong side it is violated.
    z = jnp.asarray([-3.0], jnp.float64)
    assert theory.lemma1_sigmoid_margin(z, 1.0) < 0


def test_binary_loss_and_success():
    z = jnp.asarray([2.0], jnp.float64)
    np.testing.assert_allclose(losses.loss(z, 1.0), np.log1p(np.exp(-2.0)), rtol=1e-12)
    assert not losses.is_success(z, 1.0) and losses.is_success(z, -1.0)
    z3 = jnp.asarray([0.1, 2.0, -1.0], jnp.float64)
    np.testing.assert_allclose(losses.loss(z3, 1), jax.nn.logsumexp(z3) - 2.0, rtol=1e-12)
    assert losses.is_success(z3, 0) and not losses.is_success(z3, 1)
