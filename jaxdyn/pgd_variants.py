"""Few-step PGD with the attack's variant as *traced* values: one compiled function for every
(norm, ε, α, clip) of Appendix D instead of one per (norm, clip) (docs/performance.md).

:func:`variant_attack` is :func:`jaxdyn.attacks.attack` for ``norm`` in ``{"l2", "linf"}``, an
ε-ball projection, no random start, the cross-entropy and no trajectory, with the norm, ε, α and
the clip range given by :func:`variant` as JAX values: both directions and both projections are
computed and ``jnp.where`` picks one (exact selection, a few extra element-wise operations per
step). The same steps in the same order as the static attack, so the results agree to float64
rounding (tests/test_pgd_variants.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdyn import _checks
from jaxdyn.attacks import _TINY, AttackResult, _invalid_to_nan, _mean_hessian
from jaxdyn.gating import GATINGS, freeze
from jaxdyn.losses import hessian_z, is_success, loss

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


def _direction(g, l2):
    return jnp.where(l2, g / jnp.maximum(jnp.linalg.norm(g), _TINY), jnp.sign(g))


def _project(x, d, v):
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
    a = v["alpha"]

    def evaluate(d):
        def obj(d):
            z = fz(x + d)
            return loss(z, y), z

        (l, z), g = jax.value_and_grad(obj, has_aux=True)(d)
        return l, z, g

    d0 = jnp.zeros_like(x)
    C = jax.eval_shape(fz, x).shape[0]

    def body(carry, t):
        d, prev_step, hsum, wsum, succ, eff = carry
        l, z, g = evaluate(d)
        hz = hessian_z(z, y)
        hsum = hsum + prev_step * hz
        wsum = wsum + prev_step
        succ = jnp.where((succ < 0) & is_success(z, y), t, succ)
        dirn = _direction(g, v["l2"])
        sigma = g / jnp.maximum(jnp.linalg.norm(g), _TINY)
        eff = eff + a * jnp.vdot(sigma, dirn) * sigma
        d_new = _project(x, d + a * dirn, v)
        return (d_new, jnp.linalg.norm(d_new - d), hsum, wsum, succ, eff), None

    init = (d0, jnp.zeros((), x.dtype), jnp.zeros((C, C), x.dtype), jnp.zeros((), x.dtype),
            jnp.array(-1, jnp.int32), jnp.zeros_like(x))
    (d, _, hsum, wsum, succ, eff), _ = jax.lax.scan(body, init, jnp.arange(steps, dtype=jnp.int32))
    _, z, _ = evaluate(d)
    succ = jnp.where((succ < 0) & is_success(z, y), jnp.int32(steps), succ)
    hbar = _mean_hessian(hsum, wsum, hessian_z(fz(x + d0), y))
    return _invalid_to_nan(AttackResult(delta=d, hbar_z=hbar, success_step=succ, delta_effective=eff), y, n_classes, x)
