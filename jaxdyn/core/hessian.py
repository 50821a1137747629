"""Curvature: per-sample ``H_z``, the input Hessian ``H_x`` (exact and structured), products,
eigenpairs, and the top eigenvalue of the loss Hessian in the parameters.

For a ReLU network ``H_x = J^T H_z J`` almost everywhere (the network is piecewise affine, so
``d^2 z/dx^2 = 0`` off the kinks). The dense ``n x n`` Hessians here are references: for MNIST
``n = 784`` they are cheap enough, for larger inputs use :func:`hvp` or the ``C x C`` path of
:mod:`jaxdyn.core.theory`.
"""

from __future__ import annotations

import warnings
from typing import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, ScalarLike

from jaxdyn.core.gating import input_jacobian
from jaxdyn.core.losses import hessian_z, loss

__all__ = [
    "hessian_z",
    "hessian_z_autodiff",
    "input_jacobian",
    "input_hessian",
    "input_hessian_structured",
    "hbar_x_dense",
    "hvp",
    "top_eigenpairs",
    "param_hessian_top_eigenvalue",
]

DENSE_WARN_N = 20_000


def _warn_dense(n: int) -> None:
    if n > DENSE_WARN_N:
        warnings.warn(
            f"materialising a dense {n}x{n} Hessian ({n * n * 8 / 2**30:.1f} GiB in float64); "
            "prefer hvp() or the C x C path (jaxdyn.core.theory)",
            stacklevel=3,
        )


def hessian_z_autodiff(z: Float[Array, " C"], y: ScalarLike) -> Float[Array, "C C"]:
    """``H_z`` by ``jax.hessian`` (reference for the closed form :func:`hessian_z`)."""
    return jax.hessian(loss)(z, y)


def input_hessian(f: Callable, x: Float[Array, "*x"], y: ScalarLike) -> Float[Array, "n n"]:
    """Exact input Hessian ``d^2 L(f(x), y)/dx dx^T`` by ``jax.hessian``: ``[n, n]``.

    The slow reference (``n`` forward-over-reverse passes); ``x`` is flattened.
    """
    _warn_dense(x.size)
    shape = x.shape

    def loss_flat(xf):
        return loss(f(xf.reshape(shape)), y)

    return jax.hessian(loss_flat)(x.ravel())


def input_hessian_structured(f: Callable, x: Float[Array, "*x"], y: ScalarLike) -> Float[Array, "n n"]:
    """``H_x = J^T H_z J`` at ``x`` (exact for ReLU networks away from kinks): ``[n, n]``."""
    _warn_dense(x.size)
    J = input_jacobian(f, x)
    return J.T @ hessian_z(f(x), y) @ J


def hbar_x_dense(f: Callable, x: Float[Array, "*x"], hbar_z: Float[Array, "C C"]) -> Float[Array, "n n"]:
    """``H̄_x = W~ H̄_z W~^T`` as a dense ``[n, n]`` matrix by ``jax.hessian``.

    Computed as the Hessian at ``x`` of ``q(x') = ½ (z(x') - z(x))ᵀ H̄_z (z(x') - z(x))``,
    which for a piecewise-affine ``z`` is exactly ``J^T H̄_z J`` — an autodiff reference that
    never forms ``J`` explicitly.
    """
    _warn_dense(x.size)
    shape = x.shape
    z0 = jax.lax.stop_gradient(f(x))

    def q(xf):
        dz = f(xf.reshape(shape)) - z0
        return 0.5 * dz @ hbar_z @ dz

    return jax.hessian(q)(x.ravel())


def hvp(f: Callable, x: Float[Array, "*x"], y: ScalarLike, v: Float[Array, "*x"]) -> Float[Array, "*x"]:
    """Input Hessian-vector product ``H_x v`` (forward-over-reverse), shape of ``x``."""

    def g(x_):
        return jax.grad(lambda t: loss(f(t), y))(x_)

    return jax.jvp(g, (x,), (v,))[1]


def top_eigenpairs(H: Float[Array, "n n"], k: int | None = None) -> tuple[Float[Array, " k"], Float[Array, "n k"]]:
    """Eigenpairs of a symmetric matrix in descending order of eigenvalue.

    Returns ``(lam: [k], V: [n, k])`` with ``V[:, i]`` the ``i``-th eigenvector.
    """
    lam, V = jnp.linalg.eigh(0.5 * (H + H.T))
    lam, V = lam[::-1], V[:, ::-1]
    if k is not None:
        lam, V = lam[:k], V[:, :k]
    return lam, V


def param_hessian_top_eigenvalue(loss_of_params: Callable, params: PyTree[Float[Array, "..."]], *, key: PRNGKeyArray,
                                 num_iters: int = 20) -> tuple[Float[Array, ""], PyTree[Float[Array, "..."]]]:
    """Largest-magnitude eigenvalue of ``d^2 loss / dθ dθ^T`` by power iteration on
    Hessian-vector products (no dense Hessian).

    Args:
      loss_of_params: ``params -> scalar`` (batch closed over).
      params: a pytree.
      key: PRNG key for the starting vector.
      num_iters: power iterations (static; a ``lax.fori_loop``).

    Returns:
      ``(eigenvalue, eigenvector)``; the eigenvalue is the Rayleigh quotient at the last iterate.
    """
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    v = jax.tree.unflatten(treedef, [jax.random.normal(k, p.shape, p.dtype) for k, p in zip(keys, leaves)])

    def norm(t):
        return jnp.sqrt(sum(jnp.vdot(a, a) for a in jax.tree.leaves(t)))

    def hv(t):
        return jax.jvp(jax.grad(loss_of_params), (params,), (t,))[1]

    def body(_, v):
        w = hv(v)
        return jax.tree.map(lambda a: a / norm(w), w)

    v = jax.tree.map(lambda a: a / norm(v), v)
    v = jax.lax.fori_loop(0, num_iters, body, v)
    w = hv(v)
    lam = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(w)))
    return lam, v
