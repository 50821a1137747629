"""The infinite-step limit of the raw attack (A3): the gradient flow ``dδ/dt = g_{x+δ}``.

As ``m → ∞`` with ``α = β/m`` the raw attack ``δ ← δ + α g_{x+δ}`` (A1) is Euler's method for the
ODE ``dδ/dt = g_{x+δ}``, ``δ(0) = 0``, ``t ∈ [0, β]``, with a global error ``O(β/m)``. Theorem 2
(Eq. 6) describes this flow (with ``H_z`` replaced by an average ``H̄_z``), so the flow — not an
``m``-step attack — is the reference that separates the theory's own error from the Euler gap.

The flow is solved by an adaptive embedded Runge–Kutta method written in JAX (:func:`dopri5`:
Dormand–Prince 5(4), FSAL, the standard error control of Hairer, Nørsett & Wanner, *Solving ODEs I*,
II.4, with ``rtol``/``atol``, a ``lax.while_loop`` of at most ``max_steps`` attempted steps;
``jit``/``vmap``-able, ``t1`` traced). diffrax's ``Dopri5`` with a ``PIDController`` would do the
same; jaxdyn does not depend on it, and ``tests/test_flow.py`` checks this solver against closed
forms instead (a quadratic loss on an affine model, where the flow is Theorem 2's δ̂ exactly).

Two gatings, as :mod:`jaxdyn.attacks.multistep`:

* :func:`gradient_flow` with ``gating="free"``: the real network (one forward and backward pass
  per right-hand side; a ReLU network's gradient jumps where a gate flips, and the solver
  shortens its steps there);
* ``gating="frozen"`` (A2, gates fixed at ``x``): the network is affine around ``x``,
  ``z = z_0 + J δ``, so ``δ = Jᵀ a`` with ``da/dt = g_z(z_0 + G a)`` (``G = J Jᵀ``) — a
  ``C``-dimensional ODE after one Jacobian (:func:`logit_space_flow`, the flow of
  :func:`jaxdyn.attacks.multistep.logit_space_attack`); through the network with ``frozen_through=True``.

Along the flow the step-length-weighted mean logit Hessian of docs/spec.md, in the limit
``H̄_z = ∫ ‖g(t)‖ H_z(t) dt / ∫ ‖g(t)‖ dt``, is integrated with the state (the continuous
version of the attack's ``Σ ‖Δx^(t)‖ H_z^(t) / Σ ‖Δx^(t)‖``), so Theorem 2 can be evaluated with
the flow's own ``H̄_z`` as it is with an attack's.

Never a silent wrong answer: a solve that does not reach ``t = β`` (``max_steps`` attempted
steps, a vanishing step, non-finite values, an invalid label under ``jit``) returns NaN for
``delta``/``hbar_z`` and a non-zero ``status`` (:data:`STATUS`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxdyn._internal import checks as _checks
from jaxdyn.attacks.multistep import hessian_for
from jaxdyn.core.gating import GATINGS, freeze, logit_frame
from jaxdyn.core.losses import loss

__all__ = ["ODESolution", "FlowResult", "dopri5", "gradient_flow", "logit_space_flow", "STATUS", "OK", "MAX_STEPS",
           "FAILED", "INVALID"]

#: ``status`` codes: reached ``t1``; ``max_steps`` attempts used first; the step size vanished or
#: the state became non-finite; invalid input found under ``jit`` (label outside the head, NaN x)
OK, MAX_STEPS, FAILED, INVALID = 0, 1, 2, 3
STATUS = {OK: "ok", MAX_STEPS: "max_steps reached", FAILED: "step size vanished or non-finite state",
          INVALID: "invalid input"}

# Dormand–Prince 5(4) tableau (Hairer, Nørsett & Wanner, Table II.5.2); FSAL: row 7 = b5
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(b5 - b4 for b5, b4 in zip(_B5, _B4))
_SAFETY, _FAC_MIN, _FAC_MAX = 0.9, 0.2, 10.0


class ODESolution(NamedTuple):
    """``y``: the state at ``t1`` (NaN unless ``status == OK``); ``t``: the time reached;
    ``accepted``/``rejected``: step counts; ``status``: :data:`STATUS` code (int32)."""

    y: jax.Array
    t: jax.Array
    accepted: jax.Array
    rejected: jax.Array
    status: jax.Array


def _check_tolerances(rtol, atol, max_steps) -> int:
    for name, v in (("rtol", rtol), ("atol", atol)):
        _checks.check_positive(name, v)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a Python int >= 1, got {max_steps!r}")
    return max_steps


def _rms(e, y0, y1, rtol, atol):
    scale = atol + rtol * jnp.maximum(jnp.abs(y0), jnp.abs(y1))
    return jnp.sqrt(jnp.mean((e / scale) ** 2))


def dopri5(fun: Callable, y0: jax.Array, t1, *, rtol=1e-6, atol=1e-9, max_steps: int = 4096) -> ODESolution:
    """Solve ``dy/dt = fun(t, y)`` from ``y(0) = y0`` (a 1-D array) to ``t = t1 > 0``, Dormand–Prince 5(4).

    Local extrapolation (the 5th-order solution is kept), FSAL, error
    ``‖(y5 − y4) / (atol + rtol max(|y_n|, |y_{n+1}|))‖_RMS ≤ 1`` to accept, step factor
    ``0.9 err^{-1/5}`` clipped to ``[0.2, 10]`` (no growth right after a rejection), Hairer's
    starting step, the last step cut to land on ``t1``. ``max_steps`` bounds the attempted
    (accepted + rejected) steps, so the cost is bounded; ``t1`` is traced (no recompile).
    """
    max_steps = _check_tolerances(rtol, atol, max_steps)
    y0 = jnp.asarray(y0)
    if y0.ndim != 1:
        raise ValueError(f"dopri5 integrates a 1-D state, got shape {y0.shape} (ravel it)")
    dt = y0.dtype
    t1 = jnp.asarray(t1, dt)
    rtol, atol = jnp.asarray(rtol, dt), jnp.asarray(atol, dt)
    f0 = fun(jnp.zeros((), dt), y0)

    # Hairer's starting step (Solving ODEs I, II.4): h from ‖y0‖/‖f0‖ and a 2nd-derivative estimate
    sc = atol + rtol * jnp.abs(y0)
    d0, d1 = jnp.sqrt(jnp.mean((y0 / sc) ** 2)), jnp.sqrt(jnp.mean((f0 / sc) ** 2))
    h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / jnp.where(d1 > 0, d1, 1.0))
    h0 = jnp.minimum(h0, t1)
    f1 = fun(h0, y0 + h0 * f0)
    d2 = jnp.sqrt(jnp.mean(((f1 - f0) / sc) ** 2)) / h0
    big = jnp.maximum(d1, d2)
    h1 = jnp.where(big <= 1e-15, jnp.maximum(1e-6, h0 * 1e-3), (0.01 / jnp.where(big > 0, big, 1.0)) ** 0.2)
    h = jnp.minimum(jnp.minimum(100 * h0, h1), t1)
    h = jnp.where(jnp.isfinite(h) & (h > 0), h, t1 * 1e-6)
    eps = jnp.finfo(dt).eps

    def step(t, y, k1, h):
        ks = [k1]
        for i in range(1, 7):
            yi = y + h * sum(a * k for a, k in zip(_A[i], ks) if a != 0.0)
            ks.append(fun(t + _C[i] * h, yi))
        y5 = y + h * sum(b * k for b, k in zip(_B5, ks) if b != 0.0)
        err = h * sum(e * k for e, k in zip(_E, ks) if e != 0.0)
        return y5, ks[6], err

    def cond(s):
        t, _, _, _, n_acc, n_rej, status, _ = s
        return (status == -1) & (n_acc + n_rej < max_steps)

    def body(s):
        t, y, k1, h, n_acc, n_rej, status, rejected_last = s
        h = jnp.minimum(h, t1 - t)
        y5, k7, e = step(t, y, k1, h)
        err = _rms(e, y, y5, rtol, atol)
        finite = jnp.isfinite(err) & jnp.all(jnp.isfinite(y5))
        accept = finite & (err <= 1.0)
        fac = jnp.where(finite, _SAFETY * jnp.where(err > 0, err, 1e-10) ** -0.2, _FAC_MIN)
        fac = jnp.clip(fac, _FAC_MIN, jnp.where(rejected_last, 1.0, _FAC_MAX))
        t_new = jnp.where(accept, jnp.where(t1 - (t + h) <= 4 * eps * t1, t1, t + h), t)
        h_new = h * fac
        done = accept & (t_new >= t1)
        tiny = h_new <= 8 * eps * jnp.maximum(t_new, 1e-3 * t1)  # t + h == t, or shrinking on NaN
        status = jnp.where(done, OK, jnp.where(~done & tiny, FAILED, -1)).astype(jnp.int32)
        return (t_new, jnp.where(accept, y5, y), jnp.where(accept, k7, k1), h_new, n_acc + accept.astype(jnp.int32),
                n_rej + (~accept).astype(jnp.int32), status, ~accept)

    i0 = jnp.zeros((), jnp.int32)
    status0 = jnp.where(jnp.all(jnp.isfinite(f0)) & jnp.all(jnp.isfinite(y0)) & (t1 > 0), -1, FAILED)
    init = (jnp.zeros((), dt), y0, f0, h, i0, i0, status0.astype(jnp.int32), jnp.asarray(False))
    t, y, _, _, n_acc, n_rej, status, _ = jax.lax.while_loop(cond, body, init)
    status = jnp.where(status == -1, MAX_STEPS, status).astype(jnp.int32)
    return ODESolution(jnp.where(status == OK, y, jnp.nan), t, n_acc, n_rej, status)


class FlowResult(NamedTuple):
    """One example's gradient flow to ``t = β``.

    Attributes:
      delta: ``δ(β)``, shape of ``x`` (NaN unless ``status == OK``).
      hbar_z: ``[C, C]`` the flow's ``H̄_z = ∫ ‖g‖ H_z dt / ∫ ‖g‖ dt`` (NaN unless OK).
      accepted, rejected: the solver's step counts; status: :data:`STATUS` code; t: time reached.
    """

    delta: jax.Array
    hbar_z: jax.Array
    accepted: jax.Array
    rejected: jax.Array
    status: jax.Array
    t: jax.Array


def _finish(sol: ODESolution, unravel, to_delta, y, C, n_classes, *inputs) -> FlowResult:
    d, hsum, wsum = unravel(sol.y)
    hbar = jnp.where(wsum > 0, hsum / jnp.where(wsum > 0, wsum, 1.0), jnp.nan)
    ok = _checks.valid(y, n_classes, *inputs)
    status = jnp.where(ok, sol.status, INVALID).astype(jnp.int32)
    nan = lambda a: jnp.where(status == OK, a, jnp.nan)  # noqa: E731
    return FlowResult(nan(to_delta(d)), nan(hbar), sol.accepted, sol.rejected, status, sol.t)


def gradient_flow(f: Callable[[jax.Array], jax.Array], x: jax.Array, y, *, beta, gating: str = "free",
                  rtol=1e-6, atol=1e-9, max_steps: int = 4096, loss_fn: Callable = loss) -> FlowResult:
    """The gradient flow ``dδ/dt = g_{x+δ}``, ``δ(0) = 0``, to ``t = β`` through the network (one example).

    Args:
      f: per-example logits function (:func:`jaxdyn.core.models.logits_fn`); x: the clean example; y: its label.
      beta: the end time (the attack's total strength; traced).
      gating: ``"free"`` (the real network) or ``"frozen"`` (A2, :func:`jaxdyn.core.gating.freeze`,
        solved in input space; :func:`logit_space_flow` gives the same in ``C`` dimensions).
      rtol, atol: the solver's tolerances (:func:`dopri5`), on δ and the ``H̄_z`` integrals.
      max_steps: at most this many attempted steps (then ``status == MAX_STEPS`` and NaN).
      loss_fn: ``(z, y) -> scalar`` (default the cross-entropy); any other gets ``H_z`` by ``jax.hessian``.
    Returns:
      :class:`FlowResult`.
    """
    _checks.check_choice("gating", gating, GATINGS)
    n_classes = _checks.check_call(f, x, y, labels=loss_fn is loss)
    _checks.check_positive("beta", beta)
    max_steps = _check_tolerances(rtol, atol, max_steps)
    fz = freeze(f, x) if gating == "frozen" else f
    C = jax.eval_shape(fz, x).shape[0]
    hz_fn = hessian_for(loss_fn)
    state0, unravel = ravel_pytree((jnp.zeros_like(x), jnp.zeros((C, C), x.dtype), jnp.zeros((), x.dtype)))

    def obj(d):
        z = fz(x + d)
        return loss_fn(z, y), z

    def rhs(t, s):
        d, _, _ = unravel(s)
        (_, z), g = jax.value_and_grad(obj, has_aux=True)(d)
        w = jnp.linalg.norm(g)
        return ravel_pytree((g, w * hz_fn(z, y), w))[0]

    sol = dopri5(rhs, state0, beta, rtol=rtol, atol=atol, max_steps=max_steps)
    return _finish(sol, unravel, lambda d: d, y, C, n_classes, x)


def logit_space_flow(f: Callable[[jax.Array], jax.Array], x: jax.Array, y, *, beta, rtol=1e-6, atol=1e-9,
                     max_steps: int = 4096, jacobian: Optional[jax.Array] = None,
                     loss_fn: Callable = loss) -> FlowResult:
    """The A2 (frozen-gating) gradient flow in ``C``-dimensional logit space after one Jacobian.

    With ``z = z_0 + J δ`` and ``δ = Jᵀ a``: ``da/dt = g_z(z_0 + G a)``, ``G = J Jᵀ``; ``‖g‖ =
    sqrt(g_zᵀ G g_z)``. Equals ``gradient_flow(..., gating="frozen")`` up to the tolerances (the
    error control sees ``a`` instead of δ) at ``O(C²)`` per right-hand side. ``jacobian``: a
    precomputed ``J`` (``[C, n]``); the other arguments as :func:`gradient_flow`.
    """
    n_classes = _checks.check_call(f, x, y, labels=loss_fn is loss)
    _checks.check_positive("beta", beta)
    max_steps = _check_tolerances(rtol, atol, max_steps)
    z0, J, G, C = logit_frame(f, x, jacobian)
    hz_fn = hessian_for(loss_fn)
    state0, unravel = ravel_pytree((jnp.zeros(C, z0.dtype), jnp.zeros((C, C), z0.dtype), jnp.zeros((), z0.dtype)))

    def rhs(t, s):
        a, _, _ = unravel(s)
        z = z0 + G @ a
        gz = jax.grad(loss_fn)(z, y)
        w = jnp.sqrt(jnp.maximum(gz @ G @ gz, 0.0))
        return ravel_pytree((gz, w * hz_fn(z, y), w))[0]

    sol = dopri5(rhs, state0, beta, rtol=rtol, atol=atol, max_steps=max_steps)
    return _finish(sol, unravel, lambda a: (J.T @ a).reshape(x.shape), y, C, n_classes, z0, J)
