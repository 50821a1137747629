"""Few-step PGD with the attack's variant as *traced* values: one compiled function for every
(norm, ε, α, clip) of Appendix D instead of one per (norm, clip) (docs/performance.md).

:func:`variant_attack` is :func:`jaxdyn.attacks.multistep.attack` for ``norm`` in ``{"l2", "linf"}``, an
ε-ball projection, no random start, the cross-entropy and no trajectory, with the norm, ε, α and
the clip range given by :func:`variant` as JAX values: both directions and both projections are
computed and ``jnp.where`` picks one (exact selection, a few extra element-wise operations per
step). The same steps in the same order as the static attack, so the results agree to float64
rounding (tests/test_pgd_variants.py).
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxdyn._internal import checks as _checks
from jaxdyn.attacks._loop import TINY as _TINY, run as _run
from jaxdyn.attacks.multistep import AttackResult, invalid_to_nan
from jaxdyn.core.gating import GATINGS, freeze
from jaxdyn.core.losses import hessian_z, loss

__all__ = ["variant", "variant_attack"]


def variant(norm: str, eps, alpha, clip=None) -> dict:
    """The traced description of one PGD attack: ``norm`` ``"l2"``/``"linf"``, ``eps`` > 0,
    ``alpha`` > 0, ``clip`` ``(lo, hi)`` or ``None`` (float64 scalars and booleans)."""
    _checks.check_choice("norm", norm, ("l2", "linf"))
    _checks.check_positive("eps", eps)
    _checks.check_positive("alpha", alpha)
    if clip is not None and (len(clip) != 2 or not clip[0] < clip[1]):
        raise ValueError(f"clip must be None or (lo, hi) with lo < hi, got {clip!r}")
    lo, hi = (0.0, 1.0) if clip is None else clip
    f64 = lambda v: jnp.asarray(v, jnp.float64)  # noqa: E731
    return dict(l2=jnp.asarray(norm == "l2"), eps=f64(eps), alpha=f64(alpha), clip=jnp.asarray(clip is not None),
                lo=f64(lo), hi=f64(hi))


def direction(g, l2):
    return jnp.where(l2, g / jnp.maximum(jnp.linalg.norm(g), _TINY), jnp.sign(g))


def project(x, d, v):
    d = jnp.where(v["l2"], d * jnp.minimum(1.0, v["eps"] / jnp.maximum(jnp.linalg.norm(d), _TINY)),
                  jnp.clip(d, -v["eps"], v["eps"]))
    return jnp.where(v["clip"], jnp.clip(x + d, v["lo"], v["hi"]) - x, d)


def variant_attack(f, x, y, v: dict, *, steps: int, gating: str = "free") -> AttackResult:
    """The ``steps``-step PGD attack :func:`variant` ``v`` describes on one example (see the
    module docstring; ``steps`` and ``gating`` static, ``v`` traced)."""
    steps = _checks.check_steps(steps)
    _checks.check_choice("gating", gating, GATINGS)
    n_classes = _checks.check_call(f, x, y)
    fz = freeze(f, x) if gating == "frozen" else f
    d, hbar, succ, eff, _ = _run(fz, x, y, steps=steps, alpha=v["alpha"], direction=lambda g: direction(g, v["l2"]),
                                 project=lambda d: project(x, d, v), d0=jnp.zeros_like(x), loss_fn=loss,
                                 hessian_z_=hessian_z)
    return invalid_to_nan(AttackResult(delta=d, hbar_z=hbar, success_step=succ, delta_effective=eff), y, n_classes, x)
