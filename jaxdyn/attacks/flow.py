"""The infinite-step limit of the raw attack (A3): the gradient flow ``dδ/dt = g_{x+δ}``.

As ``m → ∞`` with ``α = β/m`` the raw attack ``δ ← δ + α g_{x+δ}`` (A1) is Euler's method for the
ODE ``dδ/dt = g_{x+δ}``, ``δ(0) = 0``, ``t ∈ [0, β]``, with a global error ``O(β/m)``. Theorem 2
(Eq. 6) describes this flow (with ``H_z`` replaced by an average ``H̄_z``), so the flow — not an
``m``-step attack — is the reference that separates the theory's own error from the Euler gap.

The flow is solved by diffrax (``diffrax.diffeqsolve``): ``Dopri5`` (Dormand–Prince 5(4), the
method this module always used, so Table 1's protocol text still names it; ``Tsit5`` has the same
order and cost and no advantage here) with a ``PIDController`` (the error
``‖(y5 − y4) / (atol + rtol max(|y_n|, |y_{n+1}|))‖_RMS ≤ 1`` to accept; a PI controller,
``pcoeff=0.4, icoeff=0.3``, diffrax's advice for right-hand sides with jumps: on the free flow of a
ReLU network, whose gradient jumps at every gate flip, it takes fewer attempted steps than the plain I
controller, e.g. 40 instead of 82 on a digit of the tiny Table 1 whose old solve took 49) and a minimum
step ``dtmin`` (a vanishing step is a failure, never a forced step). ``jit``/``vmap``-able,
``β`` traced: one compile per shape. ``tests/test_flow.py`` checks it against closed forms (a
quadratic loss on an affine model, where the flow is Theorem 2's δ̂ exactly).

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

``t_success``: the time the label flips along the flow — the logit margin ``z_y − max_{j≠y} z_j`` of
the network the flow runs through crosses zero — located by a diffrax event (Newton on the
solver's dense interpolant). diffrax's events end a solve, so the flow runs in two legs: to the
flip (or ``β``), then on from it to ``β``; ``max_steps`` bounds the two legs together.

Never a silent wrong answer: a solve that does not reach ``t = β`` (``max_steps`` attempted
steps, a vanishing step, non-finite values, an invalid label under ``jit``) returns NaN for
``delta``/``hbar_z``/``t_success`` and a non-zero ``status`` (:class:`FlowStatus`).
"""

from __future__ import annotations

import enum
from typing import Callable, NamedTuple, Optional

import diffrax as dfx
import jax
import jax.numpy as jnp
import optimistix as optx

from jaxdyn._internal import checks as _checks
from jaxdyn.attacks.multistep import hessian_for
from jaxdyn.core.gating import GATINGS, freeze, logit_frame
from jaxdyn.core.losses import loss

__all__ = ["FlowStatus", "FlowResult", "gradient_flow", "logit_space_flow"]


class FlowStatus(enum.IntEnum):
    """``FlowResult.status`` (an int32 array holding these values; JSON keeps the ints)."""

    #: reached ``t = β``
    OK = 0
    #: ``max_steps`` attempted steps used first
    MAX_STEPS = 1
    #: the step size vanished (below ``dtmin``) or the state became non-finite
    FAILED = 2
    #: invalid input found under ``jit`` (label outside the head, NaN ``x``)
    INVALID = 3

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {FlowStatus.OK: "ok", FlowStatus.MAX_STEPS: "max_steps reached",
             FlowStatus.FAILED: "step size vanished or non-finite state", FlowStatus.INVALID: "invalid input"}
# the former int constants, kept as names of the enum's members (``flow.OK is FlowStatus.OK``)
OK, MAX_STEPS, FAILED, INVALID = FlowStatus


class FlowResult(NamedTuple):
    """One example's gradient flow to ``t = β``.

    Attributes:
      delta: ``δ(β)``, shape of ``x`` (NaN unless ``status == OK``).
      hbar_z: ``[C, C]`` the flow's ``H̄_z = ∫ ‖g‖ H_z dt / ∫ ‖g‖ dt`` (NaN unless OK).
      accepted, rejected: the solver's step counts (both legs); status: a :class:`FlowStatus` value
        (int32); t: the time reached.
      t_success: the first ``t`` in ``[0, β]`` where the label's logit margin reaches zero (``0`` when
        ``x`` is misclassified already, ``inf`` when the label does not flip by ``β``, NaN unless OK).
    """

    delta: jax.Array
    hbar_z: jax.Array
    accepted: jax.Array
    rejected: jax.Array
    status: jax.Array
    t: jax.Array
    t_success: jax.Array


def _check_tolerances(rtol, atol, max_steps) -> int:
    for name, v in (("rtol", rtol), ("atol", atol)):
        _checks.check_positive(name, v)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a Python int >= 1, got {max_steps!r}")
    return max_steps


def _margin(z: jax.Array, y) -> jax.Array:
    """The logit margin ``z_y − max_{j≠y} z_j`` (positive while ``y`` is predicted)."""
    y = jnp.asarray(y)
    other = jnp.where(jnp.arange(z.shape[-1], dtype=y.dtype) == y, -jnp.inf, z)
    return z[y] - jnp.max(other)


def _solve(rhs: Callable, margin_of: Callable, state0, beta, rtol, atol, max_steps: int):
    """``ds/dt = rhs(s)`` from ``s(0) = state0`` to ``t = β``, with the event ``margin_of(s) = 0``.

    Leg 1 runs from 0 with the event armed (when the margin starts positive) and stops at the flip or
    at ``β``; leg 2 runs on from there to ``β`` with it disarmed (zero length when leg 1 reached ``β``
    or failed). One ``diffeqsolve`` traced, run twice (a 2-step ``fori_loop``). Returns the state at
    the end, the time reached, ``t_success``, the step counts and the status (int32)."""
    dt = jax.tree_util.tree_leaves(state0)[0].dtype
    t1 = jnp.asarray(beta, dt)
    eps = jnp.finfo(dt).eps
    term = dfx.ODETerm(lambda t, s, armed: rhs(s))
    event = dfx.Event(lambda t, y, args, **_: jnp.where(args, margin_of(y), 1.0),  # diffrax passes keywords
                      root_finder=optx.Newton(rtol=rtol, atol=atol))
    ctrl = dfx.PIDController(rtol=rtol, atol=atol, pcoeff=0.4, icoeff=0.3, dtmin=8e-3 * eps * t1, force_dtmin=False)
    m0 = margin_of(state0)

    def leg(_, c):
        t0, s0, armed, t_succ, n_acc, n_rej, code, t_reached = c
        sol = dfx.diffeqsolve(term, dfx.Dopri5(), t0, t1, None, s0, args=armed, saveat=dfx.SaveAt(t1=True),
                              stepsize_controller=ctrl, max_steps=max_steps, event=event, throw=False)
        flipped = sol.result == dfx.RESULTS.event_occurred
        new = jnp.where((sol.result == dfx.RESULTS.successful) | flipped, OK,
                        jnp.where(sol.result == dfx.RESULTS.max_steps_reached, MAX_STEPS, FAILED))
        running = code == OK  # a failed leg 1 leaves leg 2 a zero-length solve from t = β
        t_end = sol.ts[-1]
        return (jnp.where(running & (new == OK) & flipped, t_end, t1), jax.tree_util.tree_map(lambda a: a[-1], sol.ys),
                jnp.zeros_like(armed), jnp.where(running & flipped, t_end, t_succ),
                n_acc + sol.stats["num_accepted_steps"].astype(jnp.int32),
                n_rej + sol.stats["num_rejected_steps"].astype(jnp.int32),
                jnp.where(running, new, code).astype(jnp.int32), jnp.where(running, t_end, t_reached))

    i0, zero = jnp.zeros((), jnp.int32), jnp.zeros((), dt)
    t_succ0 = jnp.where(m0 > 0, jnp.inf, jnp.where(m0 <= 0, zero, jnp.nan)).astype(dt)  # NaN margin: NaN
    init = (zero, state0, m0 > 0, t_succ0, i0, i0, jnp.asarray(OK, jnp.int32), zero)
    _, s, _, t_succ, n_acc, n_rej, code, t = jax.lax.fori_loop(0, 2, leg, init)
    code = jnp.where((code == OK) & (n_acc + n_rej > max_steps), MAX_STEPS, code).astype(jnp.int32)
    return s, t, t_succ, n_acc, n_rej, code


def _finish(out, to_delta, y, n_classes, *inputs) -> FlowResult:
    (d, hsum, wsum), t, t_succ, n_acc, n_rej, code = out
    hbar = jnp.where(wsum > 0, hsum / jnp.where(wsum > 0, wsum, 1.0), jnp.nan)
    ok = _checks.valid(y, n_classes, *inputs)
    status = jnp.where(ok, code, INVALID).astype(jnp.int32)
    nan = lambda a: jnp.where(status == OK, a, jnp.nan)  # noqa: E731
    return FlowResult(nan(to_delta(d)), nan(hbar), n_acc, n_rej, status, t, nan(t_succ))


def gradient_flow(f: Callable[[jax.Array], jax.Array], x: jax.Array, y, *, beta, gating: str = "free",
                  rtol=1e-6, atol=1e-9, max_steps: int = 4096, loss_fn: Callable = loss) -> FlowResult:
    """The gradient flow ``dδ/dt = g_{x+δ}``, ``δ(0) = 0``, to ``t = β`` through the network (one example).

    Args:
      f: per-example logits function (:func:`jaxdyn.core.models.logits_fn`); x: the clean example; y: its label.
      beta: the end time (the attack's total strength; traced).
      gating: ``"free"`` (the real network) or ``"frozen"`` (A2, :func:`jaxdyn.core.gating.freeze`,
        solved in input space; :func:`logit_space_flow` gives the same in ``C`` dimensions). ``t_success``
        is the flip of the network the flow runs through (free: the real one).
      rtol, atol: the solver's tolerances (diffrax ``PIDController``), on δ and the ``H̄_z`` integrals;
        also the Newton tolerances of ``t_success``.
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
    state0 = (jnp.zeros_like(x), jnp.zeros((C, C), x.dtype), jnp.zeros((), x.dtype))

    def obj(d):
        z = fz(x + d)
        return loss_fn(z, y), z

    def rhs(s):
        (_, z), g = jax.value_and_grad(obj, has_aux=True)(s[0])
        w = jnp.linalg.norm(g)
        return g, w * hz_fn(z, y), w

    out = _solve(rhs, lambda s: _margin(fz(x + s[0]), y), state0, beta, rtol, atol, max_steps)
    return _finish(out, lambda d: d, y, n_classes, x)


def logit_space_flow(f: Callable[[jax.Array], jax.Array], x: jax.Array, y, *, beta, rtol=1e-6, atol=1e-9,
                     max_steps: int = 4096, jacobian: Optional[jax.Array] = None,
                     loss_fn: Callable = loss) -> FlowResult:
    """The A2 (frozen-gating) gradient flow in ``C``-dimensional logit space after one Jacobian.

    With ``z = z_0 + J δ`` and ``δ = Jᵀ a``: ``da/dt = g_z(z_0 + G a)``, ``G = J Jᵀ``; ``‖g‖ =
    sqrt(g_zᵀ G g_z)``. Equals ``gradient_flow(..., gating="frozen")`` up to the tolerances (the
    error control sees ``a`` instead of δ) at ``O(C²)`` per right-hand side; ``t_success`` is the flip
    of ``z_0 + G a``. ``jacobian``: a precomputed ``J`` (``[C, n]``); the other arguments as
    :func:`gradient_flow`.
    """
    n_classes = _checks.check_call(f, x, y, labels=loss_fn is loss)
    _checks.check_positive("beta", beta)
    max_steps = _check_tolerances(rtol, atol, max_steps)
    z0, J, G, C = logit_frame(f, x, jacobian)
    hz_fn = hessian_for(loss_fn)
    state0 = (jnp.zeros(C, z0.dtype), jnp.zeros((C, C), z0.dtype), jnp.zeros((), z0.dtype))

    def rhs(s):
        z = z0 + G @ s[0]
        gz = jax.grad(loss_fn)(z, y)
        w = jnp.sqrt(jnp.maximum(gz @ G @ gz, 0.0))
        return gz, w * hz_fn(z, y), w

    out = _solve(rhs, lambda s: _margin(z0 + G @ s[0], y), state0, beta, rtol, atol, max_steps)
    return _finish(out, lambda a: (J.T @ a).reshape(x.shape), y, n_classes, z0, J)
