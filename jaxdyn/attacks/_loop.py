"""The one scan of the m-step gradient attack, shared by :func:`jaxdyn.attacks.multistep.attack`,
:func:`jaxdyn.attacks.variants.variant_attack` (the variant's norm, ε and clip traced) and
:func:`jaxdyn.attacks.traced.free_attack_traced_norm` (the norm traced). They differ only in the step's
direction and the projection, which :func:`run` takes as functions; the bookkeeping (the mean
``H_z`` weighted by the step lengths, the first successful step, the effective perturbation, the
trajectory) is written once here. Private: the public attacks validate their input first.
"""

from __future__ import annotations

import enum
from typing import Callable

import jax
import jax.numpy as jnp

from jaxdyn._internal import checks as _checks
from jaxdyn.core.losses import is_success

TINY = 1e-30


class SuccessStep(enum.IntEnum):
    """The special values of ``AttackResult.success_step`` (every other value ``t`` in ``0..m`` is the
    first step whose point is misclassified). An ``IntEnum``: the values are plain ints in results
    and JSON, compared with ``==`` against the attack's ``int32`` arrays."""

    #: no point of the attack, ``x + d^(m)`` included, is misclassified
    NEVER = -1
    #: invalid input found under ``jit`` (NaN/inf values, a label outside the head, ``x`` outside
    #: ``clip``): ``delta`` and ``hbar_z`` are NaN (:data:`jaxdyn._internal.checks.INVALID_STEP`)
    INVALID = _checks.INVALID_STEP


def record_step(delta_norm, grad_norm, step_norm, lv, z, hz) -> dict:
    """One step of the trajectory (see :class:`jaxdyn.attacks.multistep.AttackResult`)."""
    return dict(delta_norm=delta_norm, grad_norm=grad_norm, step_norm=step_norm, loss=lv, logits=z, H_z=hz)


def append(traj: dict, last: dict) -> dict:
    return jax.tree.map(lambda s, e: jnp.concatenate([s, e[None]]), traj, last)


def mean_hessian(hsum, wsum, fallback):
    """``hsum / wsum``, or ``fallback`` when no step was taken (``steps == 1``)."""
    return jnp.where(wsum > 0, hsum / jnp.where(wsum > 0, wsum, 1.0), fallback)


def run(fz: Callable, x, y, *, steps: int, alpha, direction: Callable, project: Callable, d0, loss_fn: Callable,
        hessian_z_: Callable, record: bool = False, unroll: int | bool = 1, success: Callable = is_success):
    """``steps`` steps ``d ← project(d + alpha · direction(g))`` from ``d0``, ``g`` the gradient of
    ``loss_fn(fz(x + d), y)`` in ``d``, as one ``lax.scan``. Returns ``(d, hbar_z, success_step,
    delta_effective, trajectory or None)``: ``hbar_z`` the mean of ``hessian_z_`` over the visited
    points weighted by the length of the step taken from each (``H_z(x + d0)`` if none),
    ``success_step`` the first step whose point is misclassified (``steps`` if only the last one is,
    :attr:`SuccessStep.NEVER` if none; ``success(z, y)`` decides, default :func:`~jaxdyn.core.losses.is_success`),
    ``delta_effective`` the sum of each step's component along the gradient."""
    def evaluate(d):
        def obj(d):
            z = fz(x + d)
            return loss_fn(z, y), z

        (lv, z), g = jax.value_and_grad(obj, has_aux=True)(d)
        return lv, z, g

    C = jax.eval_shape(fz, x).shape[0]

    def body(carry, t):
        d, prev_step, hsum, wsum, succ, eff = carry
        lv, z, g = evaluate(d)
        hz = hessian_z_(z, y)
        hsum = hsum + prev_step * hz
        wsum = wsum + prev_step
        succ = jnp.where((succ == SuccessStep.NEVER) & success(z, y), t, succ)
        dirn = direction(g)
        sigma = g / jnp.maximum(jnp.linalg.norm(g), TINY)
        eff = eff + alpha * jnp.vdot(sigma, dirn) * sigma
        d_new = project(d + alpha * dirn)
        step = jnp.linalg.norm(d_new - d)
        rec = record_step(jnp.linalg.norm(d), jnp.linalg.norm(g), prev_step, lv, z, hz) if record else None
        return (d_new, step, hsum, wsum, succ, eff), rec

    init = (d0, jnp.zeros((), x.dtype), jnp.zeros((C, C), x.dtype), jnp.zeros((), x.dtype),
            jnp.array(SuccessStep.NEVER, jnp.int32), jnp.zeros_like(x))
    (d, last_step, hsum, wsum, succ, eff), traj = jax.lax.scan(body, init, jnp.arange(steps, dtype=jnp.int32),
                                                                unroll=unroll)
    lv, z, g = evaluate(d)
    succ = jnp.where((succ == SuccessStep.NEVER) & success(z, y), jnp.int32(steps), succ)
    hbar = mean_hessian(hsum, wsum, hessian_z_(fz(x + d0), y))
    if record:
        traj = append(traj, record_step(jnp.linalg.norm(d), jnp.linalg.norm(g), last_step, lv, z, hessian_z_(z, y)))
    return d, hbar, succ, eff, traj if record else None
