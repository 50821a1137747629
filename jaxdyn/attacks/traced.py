"""Attacks whose norm is a traced argument: one compile for the raw, ℓ2 and ℓ∞ attacks.

Figure 2 runs the three free-gating attacks of :data:`jaxdyn.attacks.multistep.NORMS` on the same
digits; with the norm a traced index the three share one compiled graph instead of three, the same
numbers to float64 rounding (``jnp.where`` selects the direction exactly).
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxdyn._internal import checks
from jaxdyn.attacks._loop import TINY, run
from jaxdyn.attacks.multistep import AttackResult, invalid_to_nan
from jaxdyn.core.losses import hessian_z, loss

__all__ = ["TRACE_KEYS", "free_attack_traced_norm"]

#: the per-step records the traced attack returns (a subset of the attack's trajectory)
TRACE_KEYS = ("delta_norm", "grad_norm", "step_norm", "H_z")


def free_attack_traced_norm(f, x, y, *, steps: int, alpha, norm_index):
    """:func:`jaxdyn.attacks.multistep.attack` ``(f, x, y, steps=steps, alpha=alpha, norm=NORMS[norm_index],
    gating="free", record=True)`` (no projection, no clip, the cross-entropy) with the norm a traced
    index into :data:`jaxdyn.attacks.multistep.NORMS`: the three directions are computed and ``jnp.where``
    picks one (exact selection), so Fig. 2's raw, ℓ2 and ℓ∞ attacks share one compile instead of
    three. Returns ``(success_step, {"delta_norm", "grad_norm", "step_norm", "H_z"})``, the
    trajectory as the attack records it (``success_step`` -2 for invalid input or a non-finite
    result, as the attack's)."""
    n_classes = checks.check_call(f, x, y)

    def direction(g):  # NORMS[norm_index], selected exactly
        return jnp.where(norm_index == 0, g, jnp.where(norm_index == 1, g / jnp.maximum(jnp.linalg.norm(g), TINY),
                                                       jnp.sign(g)))

    d, hbar, succ, _, traj = run(f, x, y, steps=steps, alpha=alpha, direction=direction, project=lambda d: d,
                                 d0=jnp.zeros_like(x), loss_fn=loss, hessian_z_=hessian_z, record=True)
    r = invalid_to_nan(AttackResult(delta=d, hbar_z=hbar, success_step=succ, delta_effective=d), y, n_classes, x)
    return r.success_step, {k: traj[k] for k in TRACE_KEYS}
