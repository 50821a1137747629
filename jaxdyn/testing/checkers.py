"""Property checkers for any logits function ``f``: each raises ``AssertionError`` naming the
property when it does not hold.

Every checker takes ``f(x) -> z`` (one example), or ``f(params, x) -> z`` together with
``params=``: then the numerical core is jitted once per ``f`` and reused across draws of the
parameters (pass :func:`jaxdyn.testing.nets.apply_fn` or your ``model.apply`` wrapper, not a new
closure per draw). ``loss_fn`` is the cross-entropy by default, or any ``(z, y) -> scalar``; a
:class:`~jaxdyn.testing.nets.QuadraticLoss` travels through ``jit`` as data.

Tolerances are relative to the size of what is compared, per dtype (:data:`RTOL`): float64
results of a few hundred operations agree to ~1e-13; eigendecompositions and matrix exponentials
lose up to two digits more, hence 1e-10.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.attacks import multistep as attacks

from jaxdyn.core import gating

from jaxdyn.core import hessian

from jaxdyn.core import losses

from jaxdyn.core import theory
from jaxdyn.testing.nets import QuadraticLoss

__all__ = ["RTOL", "rtol_for", "assert_close", "assert_piecewise_affine", "assert_theorem2_paths_agree",
           "assert_frozen_equals_logit_space", "assert_in_ball", "assert_batch_equals_loop",
           "assert_no_retrace"]

#: default relative tolerance per dtype (see the module docstring)
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


def rtol_for(a) -> float:
    return RTOL.get(np.dtype(jnp.result_type(a)), 1e-4)


def assert_close(actual, desired, rtol, what: str, *, atol_rel=None):
    """``|actual - desired| <= rtol * max|desired|`` elementwise (a scale-aware tolerance)."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    scale = float(np.max(np.abs(desired))) if desired.size else 0.0
    err = float(np.max(np.abs(actual - desired))) if desired.size else 0.0
    if actual.shape != desired.shape or not err <= rtol * max(scale, 1e-300):
        raise AssertionError(f"{what}: max error {err:.3e} > {rtol:.1e} x scale {scale:.3e} "
                             f"(shapes {actual.shape} vs {desired.shape})")


def bind_params(f, params):
    return f if params is None else functools.partial(f, params)


def _split_loss(loss_fn):
    """``(static, dynamic)``: a QuadraticLoss is data (traced); any other loss is static."""
    if loss_fn is None:
        return losses.loss, None
    if isinstance(loss_fn, QuadraticLoss):
        return None, loss_fn
    return loss_fn, None


def jit_static(static=()):
    return functools.partial(jax.jit, static_argnames=("f", "loss_static") + tuple(static))


# --- piecewise affinity ------------------------------------------------------------------------

@jit_static()
def _pwa_core(f, params, x, y, d, loss_static, loss_dyn):
    fx = bind_params(f, params)
    lf = loss_dyn if loss_dyn is not None else loss_static
    z, lin = jax.linearize(fx, x)
    moved = jax.vmap(lambda dd: fx(x + dd) - z)(d)
    predicted = jax.vmap(lin)(d)
    J = gating.input_jacobian(fx, x)
    Hz = jax.hessian(lf)(z, y)
    Hx = jax.hessian(lambda xf: lf(fx(xf.reshape(x.shape)), y))(x.ravel())
    return z, moved, predicted, J.T @ Hz @ J, Hx


def assert_piecewise_affine(f, x, y=None, *, params=None, loss_fn=None, radius=1e-4, num_dirs=4,
                            key=None, rtol=None):
    """``f`` is affine around ``x``: ``f(x + d) - f(x) == J d`` for ``num_dirs`` random ``d`` of
    norm ``radius`` (choose it below the kink margin, :func:`~jaxdyn.testing.nets.kink_margin`),
    and ``Jᵀ H_z J == jax.hessian(L ∘ f)`` at ``x`` (``y`` a valid label; default: 0 / +1).

    A smooth non-affine ``f`` fails the first check by ``O(radius)`` relative and the second by
    the ``g_zᵀ ∂²z/∂x²`` term."""
    C = jax.eval_shape(bind_params(f, params), x).shape[0]
    if y is None:
        y = jnp.asarray(1.0, x.dtype) if C == 1 else jnp.int32(0)
    key = jax.random.key(0) if key is None else key
    d = jax.random.normal(key, (num_dirs,) + x.shape, x.dtype)
    d = radius * d / jnp.linalg.norm(d.reshape(num_dirs, -1), axis=1).reshape((-1,) + (1,) * x.ndim)
    ls, ld = _split_loss(loss_fn)
    z, moved, predicted, struct, exact = _pwa_core(f, params, x, y, d, ls, ld)
    # f(x + d) - f(x) cancels |z| down to |J d| ~ radius: its rounding is ~eps |z|, not eps |J d|
    scale = max(float(jnp.max(jnp.abs(predicted))), 1e-300)  # 0 where f is constant near x (dead ReLUs)
    tol = rtol if rtol is not None else 1e3 * float(jnp.finfo(x.dtype).eps) * (1 + float(jnp.max(jnp.abs(z))) / scale)
    assert_close(moved, predicted, tol, "piecewise affine: f(x + d) - f(x) != J d")
    assert_close(struct, exact, rtol or rtol_for(x), "piecewise affine: J^T H_z J != jax.hessian(L o f)")


# --- Theorems 1 and 2: the C x C path against the n x n eigendecomposition ------------------

@jit_static(("steps",))
def _paths_core(f, params, x, y, hbar_z, beta, steps, loss_static, loss_dyn):
    fx = bind_params(f, params)
    lf = loss_dyn if loss_dyn is not None else loss_static
    p = theory.predict(fx, x, y, hbar_z, beta=beta, steps=steps, loss_fn=lf)
    Hx = hessian.hbar_x_dense(fx, x, hbar_z)
    g = p.g_x.ravel()
    ref = theory.theorem2_eig(g, Hx, beta) if steps is None else theory.theorem1_eig(g, Hx, beta / steps, steps)
    lam_s, V_s = theory.structured_eigenpairs(p.J, hbar_z)
    lam_d, V_d = hessian.top_eigenpairs(Hx, hbar_z.shape[0])
    return p.delta_hat.ravel(), p.grad_hat.ravel(), ref, lam_s, V_s, lam_d, V_d


def assert_theorem2_paths_agree(f, x, y, hbar_z=None, *, beta, steps=None, params=None, loss_fn=None,
                                rtol=None):
    """Theorem 2 (or Theorem 1 with ``steps``) by the ``C x C`` path (:func:`jaxdyn.core.theory.predict`)
    equals the ``n x n`` eigendecomposition of ``H̄_x = Jᵀ H̄_z J`` (from ``jax.hessian``), for
    ``δ̂`` and ``g_{x+δ̂}``; the structured eigenpairs equal the dense ones (top eigenvector up
    to sign). ``hbar_z``: ``[C, C]`` PSD (default ``H_z`` at ``x``)."""
    ls, ld = _split_loss(loss_fn)
    if hbar_z is None:
        lf = ld if ld is not None else ls
        hbar_z = jax.hessian(lf)(bind_params(f, params)(x), y)
    delta, grad, ref, lam_s, V_s, lam_d, V_d = _paths_core(f, params, x, y, hbar_z, jnp.asarray(beta, x.dtype),
                                                           steps, ls, ld)
    tol = rtol or rtol_for(x)
    name = "Theorem 2" if steps is None else "Theorem 1"
    assert_close(delta, ref.delta, tol, f"{name}: C x C delta_hat != n x n eigendecomposition")
    assert_close(grad, ref.grad, tol, f"{name}: C x C g_(x+delta_hat) != n x n eigendecomposition")
    assert_close(lam_s, lam_d, tol, "structured eigenvalues != dense eigenvalues")
    if float(lam_d[0]) > 0 and (lam_d.shape[0] == 1 or float(lam_d[0] - lam_d[1]) > 1e-6 * float(lam_d[0])):
        cos = abs(float(V_s[:, 0] @ V_d[:, 0]))
        if not abs(cos - 1) < 1e3 * tol:
            raise AssertionError(f"top eigenvector of the C x C path differs: |cos| = {cos!r}")


# --- A2: the frozen network attack equals the logit-space attack ------------------------------

@jit_static(("steps", "norm"))
def _frozen_core(f, params, x, y, beta, steps, norm, loss_static, loss_dyn):
    fx = bind_params(f, params)
    lf = loss_dyn if loss_dyn is not None else loss_static
    r1 = attacks.attack(fx, x, y, beta=beta, steps=steps, norm=norm, gating="frozen", record=True, loss_fn=lf)
    r2 = attacks.logit_space_attack(fx, x, y, beta=beta, steps=steps, norm=norm, record=True, loss_fn=lf)
    return r1, r2


def assert_frozen_equals_logit_space(f, x, y, *, beta, steps, norm="raw", params=None, loss_fn=None,
                                     rtol=None):
    """Under frozen gating (A2) the network attack and the ``C``-dimensional logit-space attack
    are the same iteration: equal ``δ``, ``H̄_z``, trajectories and success step."""
    ls, ld = _split_loss(loss_fn)
    r1, r2 = _frozen_core(f, params, x, y, jnp.asarray(beta, x.dtype), steps, norm, ls, ld)
    tol = rtol or rtol_for(x)
    assert_close(r2.delta, r1.delta, tol, "A2: logit-space delta != frozen-network delta")
    assert_close(r2.hbar_z, r1.hbar_z, tol, "A2: logit-space H_bar_z != frozen-network H_bar_z")
    for k in ("delta_norm", "grad_norm", "step_norm", "loss"):
        assert_close(r2.trajectory[k], r1.trajectory[k], tol, f"A2: trajectory {k} differs")
    # a success step can move by one where the margin is within rounding of 0 at that step
    if int(r1.success_step) != int(r2.success_step):
        raise AssertionError(f"A2: success step {int(r1.success_step)} != {int(r2.success_step)}")


# --- balls, batches, compilation ----------------------------------------------------------------

def assert_in_ball(delta, eps, norm, clip=None, x=None, *, batched=False, atol=None):
    """``δ`` lies in the closed ``norm``-ball (``"linf"`` or ``"l2"``) of radius ``eps`` and, with
    ``clip=(lo, hi)`` and ``x``, ``x + δ`` lies in the box. ``batched``: leading axis = examples
    (each checked). ``atol``: slack for rounding (default ``10 eps`` of the dtype times ``eps``)."""
    delta = np.asarray(delta)
    atol = 10 * float(np.finfo(delta.dtype).eps) * float(eps) if atol is None else atol
    flat = delta.reshape(delta.shape[0], -1) if batched else delta.reshape(1, -1)
    if norm == "linf":
        size = np.max(np.abs(flat), axis=1)
    elif norm == "l2":
        size = np.linalg.norm(flat, axis=1)
    else:
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if not np.all(size <= eps + atol):
        raise AssertionError(f"delta outside its {norm} ball: norm {size.max():.17g} > eps {eps!r}")
    if clip is not None:
        if x is None:
            raise ValueError("the box check needs x")
        adv = np.asarray(x) + delta
        lo, hi = clip
        if not (adv.min() >= lo - atol and adv.max() <= hi + atol):
            raise AssertionError(f"x + delta outside the box {clip}: [{adv.min()!r}, {adv.max()!r}]")


@functools.lru_cache(maxsize=64)
def _batched_and_one(fn, n_shared):
    return jax.jit(lambda shared, batched: jax.vmap(lambda *b: fn(*shared, *b))(*batched)), \
        jax.jit(lambda shared, one: fn(*shared, *one))


def assert_batch_equals_loop(fn: Callable, *batched_args, shared=(), rtol=None):
    """``vmap(fn)`` over the leading axis of ``batched_args`` equals ``fn`` applied to each
    example in a Python loop (every output leaf). ``fn(*shared, *one_example)``; ``shared``
    (parameters, β: traced, not batched) go first. Both are jitted once per ``fn``."""
    batched, one = _batched_and_one(fn, len(shared))
    out_b = batched(tuple(shared), tuple(batched_args))
    B = jax.tree.leaves(batched_args)[0].shape[0]
    for i in range(B):
        out_i = one(tuple(shared), tuple(jax.tree.map(lambda a: a[i], batched_args)))
        for lb, li in zip(jax.tree.leaves(out_b), jax.tree.leaves(out_i)):
            if not jnp.issubdtype(li.dtype, jnp.floating):
                np.testing.assert_array_equal(lb[i], li, err_msg="vmap != loop")
            else:
                assert_close(lb[i], li, rtol or rtol_for(li), f"vmap != loop at example {i}")


def assert_no_retrace(fn: Callable, calls: Sequence[tuple], *, static_argnames=(), max_traces: int = 1):
    """``jit(fn)`` traces at most ``max_traces`` times over ``calls`` (argument tuples that differ
    only in traced values, e.g. a β/ε/α sweep): sweeping a value never recompiles."""
    count = [0]

    @functools.wraps(fn)
    def counted(*a, **k):
        count[0] += 1
        return fn(*a, **k)

    jitted = jax.jit(counted, static_argnames=static_argnames)
    for args in calls:
        jax.block_until_ready(jitted(*args))
    if count[0] > max_traces:
        raise AssertionError(f"{fn.__name__} traced {count[0]} times over {len(calls)} calls "
                             f"(at most {max_traces} allowed): a swept value is static")
