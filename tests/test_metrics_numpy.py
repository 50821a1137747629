"""jaxdyn.analyses.metrics against independent NumPy formulas (float64)."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from jaxdyn.analyses import metrics

# the same sums in a different order: ~1e-15 relative; 1e-12 still sees a 1e-6 bug
RTOL = 1e-12
finite = st.floats(-10, 10, allow_subnormal=False)
batches = st.sampled_from(((3, 4), (5, 2, 3))).flatmap(lambda s: st.tuples(
    hnp.arrays(np.float64, s, elements=finite), hnp.arrays(np.float64, s, elements=finite)))


def _nonzero(a):
    return a + (np.linalg.norm(a.reshape(len(a), -1), axis=1) == 0).reshape((-1,) + (1,) * (a.ndim - 1))


@given(batches)
def test_property_kappa_equals_numpy(ab):
    """κ = mean ||δ* − δ̂|| / mean ||δ*||; the first-order κ is κ of β g_x."""
    a, b = ab
    a = _nonzero(a)
    n = lambda v: np.linalg.norm(v.reshape(len(v), -1), axis=1)  # noqa: E731
    want = n(a - b).mean() / n(a).mean()
    np.testing.assert_allclose(metrics.kappa(jnp.asarray(a), jnp.asarray(b)), want, rtol=RTOL)
    np.testing.assert_allclose(metrics.kappa_first_order(jnp.asarray(a), jnp.asarray(b), 0.3),
                               n(a - 0.3 * b).mean() / n(a).mean(), rtol=RTOL)
    np.testing.assert_allclose(metrics.per_sample_norm(jnp.asarray(a)), n(a), rtol=RTOL)


@given(hnp.arrays(np.float64, 6, elements=finite), hnp.arrays(np.float64, 6, elements=finite))
def test_property_kappa_prime_equals_numpy(a, b):
    """κ′ = mean |φ* − φ̂| / mean |φ*|."""
    a = a + (np.abs(a).sum() == 0)
    np.testing.assert_allclose(metrics.kappa_prime(jnp.asarray(a), jnp.asarray(b)),
                               np.abs(a - b).mean() / np.abs(a).mean(), rtol=RTOL)


@given(batches)
def test_property_cosines_equal_numpy(ab):
    """cosine of flattened arrays and the per-sample 1 − cos."""
    a, b = map(_nonzero, ab)
    A, B = a.reshape(len(a), -1), b.reshape(len(b), -1)
    cos = (A * B).sum(1) / (np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1))
    # 1 - cos near 0 cancels: compare with an absolute tolerance on the cosine's scale (1)
    np.testing.assert_allclose(metrics.one_minus_cos(jnp.asarray(a), jnp.asarray(b)), 1 - cos, atol=1e-14)
    np.testing.assert_allclose(metrics.cosine(jnp.asarray(a), jnp.asarray(b)),
                               A.ravel() @ B.ravel() / (np.linalg.norm(A) * np.linalg.norm(B)), rtol=RTOL, atol=1e-15)


@given(st.floats(-2, 2), st.floats(-3, 3), hnp.arrays(np.float64, 12, elements=st.floats(-1e-3, 1e-3)))
def test_property_log_linear_fit_equals_numpy_polyfit(rate, c, noise):
    """fit_log_linear == np.polyfit on log v; an exact exponential is recovered with R² = 1."""
    t = np.linspace(0, 1, 12)
    v = np.exp(c + rate * t + noise)
    r, a, r2 = metrics.fit_log_linear(jnp.asarray(t), jnp.asarray(v))
    slope, icpt = np.polyfit(t, np.log(v), 1)
    np.testing.assert_allclose([r, a], [slope, icpt], rtol=1e-9, atol=1e-12)
    exact = metrics.fit_log_linear(jnp.asarray(t), jnp.asarray(np.exp(c + rate * t)))
    np.testing.assert_allclose(exact[0], rate, atol=1e-12)
    if abs(rate) > 0.1:
        np.testing.assert_allclose(exact[2], 1.0, atol=1e-12)


def test_kappa_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        metrics.kappa(jnp.ones((2, 3)), jnp.ones((3, 2)))
