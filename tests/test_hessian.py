"""jaxdyn.core.hessian: the structured input Hessian, Hessian-vector products and H̄_x against
jax.hessian, on random piecewise-affine networks (float64)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from hypothesis import given, strategies as st

import jaxdyn.testing as T
from jaxdyn.core import gating
from jaxdyn.core import hessian
from jaxdyn.testing import strategies as S
from tests import _props
from tests.helpers import small_net

# float64: a dense Hessian is a few hundred products of O(1) numbers, agreement ~1e-14 relative
RTOL = 1e-12


@functools.lru_cache(maxsize=None)
def _curvature(apply):
    @jax.jit
    def run(variables, x, y, v, hb):
        f = functools.partial(apply, variables)
        J = gating.input_jacobian(f, x)
        return dict(exact=hessian.input_hessian(f, x, y), struct=hessian.input_hessian_structured(f, x, y),
                    hvp=hessian.hvp(f, x, y, v), hbar=hessian.hbar_x_dense(f, x, hb), JhJ=J.T @ hb @ J)

    return run


def _psd(seed, C):
    B = jax.random.normal(jax.random.key(seed), (C, C), jnp.float64)
    return B @ B.T


@given(_props.problems(), st.integers(0, 99))
def test_property_structured_hessian_hvp_and_hbar_x_equal_autodiff(p, seed):
    """H_x = Jᵀ H_z J == jax.hessian; hvp(v) == H_x v; hbar_x_dense(H̄) == Jᵀ H̄ J."""
    v = jax.random.normal(jax.random.key(seed), p.x.shape, jnp.float64)
    hb = _psd(seed, p.spec.num_classes)
    r = _curvature(p.apply)(p.variables, p.x, p.y, v, hb)
    T.assert_close(r["struct"], r["exact"], RTOL, "J^T H_z J != jax.hessian")
    assert np.abs(r["exact"]).max() > 0
    T.assert_close(r["hvp"].ravel(), r["exact"] @ v.ravel(), RTOL, "hvp != H v")
    T.assert_close(r["hbar"], r["JhJ"], RTOL, "hbar_x_dense != J^T H_bar J")


@given(_props.problems())
def test_property_networks_are_piecewise_affine(p):
    """Every drawn Flax network is affine around its input and Jᵀ H_z J is its input Hessian."""
    T.assert_piecewise_affine(p.apply, p.x, p.y, params=p.variables, radius=1e-2 * p.kink_margin)


@given(S.seeds, st.sampled_from((1, 3)), S.inputs())
def test_property_plain_jax_mlp_is_piecewise_affine(seed, C, x):
    """The same for a network written as a plain JAX function."""
    f, params = T.plain_mlp(seed, num_classes=C)
    T.assert_piecewise_affine(f, x, params=params, radius=1e-6)


@given(st.lists(st.floats(-3, 3), min_size=4, max_size=4), st.integers(1, 4))
def test_property_top_eigenpairs_descending_and_eigen(vals, k):
    """top_eigenpairs: descending eigenvalues, H v = λ v, k of them."""
    Q, _ = np.linalg.qr(np.random.default_rng(len(vals)).normal(size=(4, 4)))
    H = jnp.asarray(Q @ np.diag(vals) @ Q.T)
    lam, V = hessian.top_eigenpairs(H, k)
    assert lam.shape == (k,) and V.shape == (4, k)
    assert np.all(np.diff(np.asarray(lam)) <= 1e-12)
    T.assert_close(H @ V, V * lam[None, :], 1e-12, "H v != lambda v")
    np.testing.assert_allclose(lam, np.sort(vals)[::-1][:k], atol=1e-12)


def test_param_hessian_top_eigenvalue_matches_dense():
    """Power iteration on Hessian-vector products finds the top |eigenvalue| of the dense Hessian."""
    net, variables, _ = small_net(4, 3, hidden=(5,))
    x = jax.random.uniform(jax.random.key(5), (8, 6, 6, 1), jnp.float64)
    y = jnp.arange(8) % 3

    def loss_p(p):
        z = net.apply(p, x)
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, y[:, None], 1)[:, 0])

    flat, unravel = ravel_pytree(variables)
    H = jax.jit(jax.hessian(lambda t: loss_p(unravel(t))))(flat)
    ev = np.linalg.eigvalsh(np.asarray(H))
    top = ev[np.argmax(np.abs(ev))]
    top_eig = jax.jit(lambda p: hessian.param_hessian_top_eigenvalue(loss_p, p, key=jax.random.key(0),
                                                                     num_iters=300)[0])
    # power iteration after 300 steps: converged to ~1e-6 for this gap, hence 1e-4
    np.testing.assert_allclose(top_eig(variables), top, rtol=1e-4)
