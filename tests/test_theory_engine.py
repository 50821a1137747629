"""Theorems 1 and 2 (jaxdyn.core.theory): the C x C path against the n x n eigendecomposition, the
exact case of a loss quadratic in z, the limits of conclusion C.3 and κ on the cross-entropy
(float64). The lead merges this file with tests/test_theory.py."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import jaxdyn.testing as T
from jaxdyn.attacks import multistep as attacks
from jaxdyn.core import gating
from jaxdyn.core import losses
from jaxdyn.analyses import metrics
from jaxdyn.core import theory
from jaxdyn.testing import strategies as S
from tests import _props
from tests.helpers import small_input, small_label, small_net


@functools.lru_cache(maxsize=None)
def _lam_max(apply):
    """Largest eigenvalue of A J Jᵀ (the rate of Theorem 2's exponential), to scale β."""

    @jax.jit
    def run(variables, x, A):
        J = gating.input_jacobian(functools.partial(apply, variables), x)
        return jnp.max(jnp.real(jnp.linalg.eigvals(A @ J @ J.T)))

    return run


def _beta(p, h, s):
    """β = s / λ_max(H̄_z J Jᵀ), so that e^{βλ} stays O(e^s); a draw where the network is dead
    at x (J = 0, nothing to predict) is rejected."""
    lam = float(_lam_max(p.apply)(p.variables, p.x, h))
    assume(lam > 1e-8)
    return s / lam


def _random_psd(seed, C):
    B = jax.random.normal(jax.random.key(seed), (C, C), jnp.float64)
    return B @ B.T / C


@given(_props.problems(), st.floats(0.05, 5.0), st.booleans(), S.seeds)
def test_property_theorem2_cxc_path_equals_nxn_eigendecomposition(p, s, own_hz, seed):
    """Theorem 2: δ̂ and g_{x+δ̂} of the C x C path == the n x n eigendecomposition of Jᵀ H̄_z J;
    structured eigenpairs == dense ones. β = s / λ_max so that e^{βλ} stays O(e^5)."""
    hbar = None if own_hz else _random_psd(seed, p.spec.num_classes)
    h = hbar if hbar is not None else losses.hessian_z(p.f(p.x), p.y)
    beta = _beta(p, h, s)
    T.assert_theorem2_paths_agree(p.apply, p.x, p.y, hbar, params=p.variables, beta=beta)


@given(_props.problems(), st.floats(0.05, 5.0))
def test_property_theorem1_cxc_path_equals_nxn_eigendecomposition(p, s):
    """Theorem 1 (m = 20 steps): the C x C path == the n x n eigendecomposition."""
    h = losses.hessian_z(p.f(p.x), p.y)
    beta = _beta(p, h, s)
    T.assert_theorem2_paths_agree(p.apply, p.x, p.y, params=p.variables, beta=beta, steps=20)


@given(S.seeds, S.inputs(), st.floats(0.05, 3.0))
def test_property_theorem2_paths_agree_on_a_plain_function(seed, x, beta):
    f, params = T.plain_mlp(seed, num_classes=3)
    T.assert_theorem2_paths_agree(f, x, jnp.int32(seed % 3), params=params, beta=beta)


@given(_props.problems(), S.seeds, st.floats(0.2, 2.0))
def test_property_quadratic_loss_theorem1_exact_and_theorem2_gap_is_o_1_over_m(p, seed, s):
    """Constant H_z = A under A2: the m-step attack IS Theorem 1; its gap to Theorem 2 is O(1/m)."""
    quad = T.QuadraticLoss.random(seed, p.spec.num_classes)
    beta = _beta(p, quad.A, s)
    T.assert_quadratic_loss_exact(p.apply, p.x, quad, beta=beta, params=p.variables, steps=(50, 500))


@pytest.mark.slow  # default-suite time: the same property is test_property_quadratic_loss_theorem1_exact_...
@pytest.mark.parametrize("C", [1, 4])
def test_quadratic_loss_theorem1_exact_and_theorem2_is_the_flow(C):
    """The same at fixed β = 0.5 over m = 50, 500, 5000, with a gap large enough to mean something."""
    net, variables, _ = small_net(14, C)
    quad = T.QuadraticLoss.random(2, C)
    apply = functools.partial(lambda net, v, x: net.apply(v, x[None])[0], net)
    gaps = T.assert_quadratic_loss_exact(apply, small_input(14), quad, beta=0.5, params=variables,
                                         steps=(50, 500, 5000))
    assert gaps[0] > 1e-4  # curvature is strong enough for the O(1/m) check to mean something
    assert all(g > 1e-6 for g in gaps[:-1])  # every ratio was checked


@given(_props.problems())
def test_property_c3_limits(p):
    """C.3: H̄_z = 0 gives β g_x; small β: δ̂ ∥ g_x; large β: δ̂ ∥ v_1."""
    T.assert_c3_limits(p.f, p.x, p.y)


def test_c3_limits_are_different_directions():
    _, _, f = small_net(16, 4)
    x, y = small_input(16), small_label(4, 16)
    T.assert_c3_limits(f, x, y)
    J = gating.input_jacobian(f, x)
    gz, hz = losses.grad_z(f(x), y), losses.hessian_z(f(x), y)
    lam, V = theory.structured_eigenpairs(J, hz)
    small = theory.theorem2(J, gz, hz, 1e-6).delta
    big = theory.theorem2(J, gz, hz, 60.0 / float(lam[0])).delta
    assert 1 - abs(metrics.cosine(big, V[:, 0])) < 1e-8
    assert 1 - abs(metrics.cosine(small, V[:, 0])) > 1e-3  # the two limits are different directions


def test_kappa_small_on_cross_entropy_and_below_first_order():
    """κ of Theorem 2 against a 2000-step A2 attack is 10x below the first-order baseline β g_x."""
    _, _, f = small_net(15, 10)
    x, y = small_input(15), small_label(10, 15)
    beta = 1e-1
    r = attacks.logit_space_attack(f, x, y, beta=beta, steps=2000)
    p = theory.predict(f, x, y, r.hbar_z, beta=beta)
    k = float(metrics.kappa(r.delta[None], p.delta_hat[None]))
    k1 = float(metrics.kappa_first_order(r.delta[None], p.g_x[None], beta))
    assert k < k1 / 10


@given(st.floats(-50, 50))
def test_property_phi_is_expm1_over_s(s):
    """φ(s) = (e^s − 1)/s, φ(0) = 1, accurate near 0."""
    got = float(theory.phi(jnp.float64(s)))
    want = 1.0 if s == 0 else float(np.expm1(s) / s)
    np.testing.assert_allclose(got, want, rtol=1e-14)


@given(st.lists(st.floats(0, 5), min_size=3, max_size=6), S.seeds)
def test_property_hbar_z_weighted_is_the_weighted_mean(w, seed):
    """The trajectory-averaged H̄_z of docs/spec.md, Σ w_t H_t / Σ w_t, against NumPy."""
    w = np.asarray(w)
    if w.sum() == 0:
        w[0] = 1.0
    H = np.random.default_rng(seed % 2**32).normal(size=(len(w), 3, 3))
    got = theory.hbar_z_weighted(jnp.asarray(H), jnp.asarray(w))
    np.testing.assert_allclose(got, np.einsum("t,tij->ij", w, H) / w.sum(), rtol=1e-12, atol=1e-15)
