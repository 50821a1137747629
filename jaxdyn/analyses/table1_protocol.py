"""Table 1's measurement (:mod:`jaxdyn.experiments.table1` orchestrates it): the jitted builders of
the paper protocol (the theory's inputs at the clean digits, the A2 attack through the network and
in logit space), the protocol's columns from per-digit numbers, the κ(m) study, whether a regime
grid spans its flip range, and conclusion C.3's per-digit turn statistic.

The regime grid itself and the ODE reference are :func:`jaxdyn.analyses.regimes.sweep` and
:func:`jaxdyn.analyses.regimes.convergence`.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.analyses import regimes as R
from jaxdyn.attacks.multistep import attack
from jaxdyn.core.models import logits_fn
from jaxdyn.core.theory import prepare

__all__ = ["make_prep_fn", "make_network_attack_fn", "make_logit_space_fn", "paper_protocol", "kappa_vs_m",
           "regime_range", "c3_turns", "C3_MAX_COS", "C3_MIN_DIGITS"]

#: C.3's defaults: the clean-point alignment ``|cos(g_x, v₁)|`` above which a digit cannot show
#: C.3's turn, and the fewest such digits a network needs for an interval of their median
C3_MAX_COS, C3_MIN_DIGITS = 0.9, 4


def make_prep_fn(model):
    """Jitted ``(variables, x [B,28,28,1], y [B]) -> (J [B,C,n], z [B,C], g_z [B,C])`` at the clean
    digits (:func:`jaxdyn.core.theory.prepare`): everything the theory needs from the network (A2
    freezes it at ``x``)."""
    return jax.jit(jax.vmap(lambda v, x, y: prepare(logits_fn(model, v), x, y), in_axes=(None, 0, 0)))


def make_network_attack_fn(model, steps: int):
    """Jitted ``(variables, x, y, J, g_z, beta) -> per-digit numbers``: the A2 raw attack
    (``α = β/m``, ``m = steps``) run through the network (:func:`jaxdyn.attacks.multistep.attack` with
    ``gating="frozen"``) against the theory (:func:`jaxdyn.analyses.regimes.compare`), and ``success``."""

    def one(variables, x, y, J, gz, beta):
        f = logits_fn(model, variables)
        res = attack(f, x, y, steps=steps, beta=beta, norm="raw", gating="frozen")
        return dict(delta=res.delta.ravel(), success=res.success_step >= 0,
                    **R.compare(res.delta.ravel(), res.hbar_z, J, gz, beta, steps=steps))

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0, 0, None)))


def make_logit_space_fn(steps: int | None, with_delta: bool = False):
    """Jitted ``(J, z, g_z, y, beta) -> per-digit numbers`` of the exact A2 attack in logit space
    (:func:`jaxdyn.analyses.regimes.frozen_example`): no pass through the network, so ``m`` can reach 10⁵
    cheaply. ``steps=None``: ``m`` is a last argument, a JAX integer (traced: one compile for any ``m``)."""
    if steps is None:
        return jax.jit(jax.vmap(lambda J, z, gz, y, b, m: R.frozen_example(J, z, gz, y, b, steps=m,
                                                                           with_delta=with_delta),
                                in_axes=(0, 0, 0, 0, None, None)))
    return jax.jit(jax.vmap(lambda J, z, gz, y, b: R.frozen_example(J, z, gz, y, b, steps=steps,
                                                                    with_delta=with_delta),
                            in_axes=(0, 0, 0, 0, None)))


def paper_protocol(p: dict, beta: float) -> dict:
    """The paper protocol's columns from per-digit numbers (:func:`jaxdyn.analyses.regimes.compare`):
    κ, Theorem 1, first order, and the strength: ``beta_lambda1_weighted = E[||δ*|| βλ_1] / E||δ*||``
    (κ is a ratio of sums dominated by the digits with the largest perturbations, so this weighted
    mean is the strength κ sees), ``mean_beta_lambda1``, ``mean_delta_norm``."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    s = R.summarize(p, np.ones(len(p["norm"]), bool))
    return dict(kappa=s["kappa"], kappa_theorem1=s["kappa_theorem1"], kappa_first_order=s["kappa_first_order"],
                mean_beta_lambda1=float(np.mean(p["beta_lam"])),
                beta_lambda1_weighted=float(np.sum(p["norm"] * p["beta_lam"]) / np.sum(p["norm"])),
                mean_delta_norm=float(np.mean(p["norm"])))


def kappa_vs_m(J, z, g_z, y, beta: float, m_grid: Sequence[int]) -> list[dict]:
    """κ(m) at ``beta`` (float64 scalar) of the exact A2 attack in logit space, Theorem 2 and Theorem 1
    at the same ``m``: ``[{steps, kappa, kappa_theorem1}]`` (``m`` traced: one compile for the grid)."""
    fn, out = make_logit_space_fn(None), []
    for m in m_grid:
        s = paper_protocol(fn(J, z, g_z, y, beta, jnp.asarray(m, jnp.int32)), beta)
        out.append(dict(steps=int(m), kappa=s["kappa"], kappa_theorem1=s["kappa_theorem1"]))
    return out


def regime_range(regimes: list, flip_range) -> dict:
    """Whether the regime grid spans ``flip_range`` for both gatings (the sweep's cap may stop it)."""
    lo, hi = flip_range
    first, last = regimes[0], regimes[-1]
    fl = lambda r: [r.get(k) for k in ("flip_fraction", "flip_fraction_free") if r.get(k) is not None]  # noqa: E731
    return dict(lo=lo, hi=hi, first_flip=fl(first), last_flip=fl(last),
                reached=bool(fl(first) and fl(last) and max(fl(first)) <= lo and min(fl(last)) >= hi))


def c3_turns(lo: dict, hi: dict, sfx: str, max_cos: float) -> tuple[np.ndarray, int]:
    """``(t, n_digits)``: per eligible digit (``|cos(g_x, v₁)| < max_cos`` at ``x``) with finite numbers,
    ``t = min(cos(δ*, g_x) − |cos(δ*, v₁)| at the smallest β, |cos(δ*, v₁)| − cos(δ*, g_x) at the
    largest)`` from the rows' ``c3_per_digit`` (``sfx`` ``""`` frozen, ``"_free"`` free); C.3 holds on
    a digit with margin ``M`` when ``t ≥ M``. ``n_digits``: all digits recorded."""
    a, b = lo["c3_per_digit"], hi["c3_per_digit"]
    arr = lambda d, k: np.asarray([np.nan if v is None else v for v in d[k]], np.float64)  # noqa: E731
    align = arr(a, "cos_gx_v1_clean")
    t = np.minimum(arr(a, "cos_delta_gx" + sfx) - arr(a, "cos_delta_v1" + sfx),
                   arr(b, "cos_delta_v1" + sfx) - arr(b, "cos_delta_gx" + sfx))
    keep = (align < max_cos) & np.isfinite(t)
    return t[keep], int(align.size)
