"""Figure 2's summaries and rules (conclusion C.2): per (network, gating, attack) the medians of the
growth fits (:func:`summarize_run`) and the classification of a cell's growth
(:func:`classify_cell`) that the verdicts rest on.

A curve is called exponential when its log is a straight line in ``t``: the log-linear fit has
``R² ≥`` :data:`R2_EXP` and beats a linear fit for at least half of the digits, **and** the rate is
constant: the median ratio of the log-linear rate of ``||g||`` on the second half of the window to
that on the first half lies within ``[1/RATE_CONST, RATE_CONST]``. A ratio above ``RATE_CONST`` is
growth faster than exponential, below ``1/RATE_CONST`` slower.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["R2_EXP", "RATE_CONST", "RATE_FACTOR", "RATE_FACTOR_LOOSE", "summarize_run", "classify_cell",
           "growth_verdict", "rate_verdict"]

#: an R² of the log-linear fit at least this high is needed for "exponential"
R2_EXP = 0.9
#: a constant rate: the late/early rate ratio of log||g|| within [1/RATE_CONST, RATE_CONST]
RATE_CONST = 1.5
#: measured / Theorem-2 rate within this factor counts as agreement
RATE_FACTOR = 2.0
#: ... and within this one as rough agreement ("holds partly")
RATE_FACTOR_LOOSE = 4.0


def _nanmedian(a):
    a = np.asarray(a, np.float64)[np.isfinite(np.asarray(a, np.float64))]
    return float(np.median(a)) if a.size else float("nan")


def summarize_run(run: dict) -> dict:
    """Medians over the successful samples of one (model, gating, attack) run."""
    ok = np.asarray(run["success_step"]) > 0
    s = dict(n=run["n"], n_success=run["n_success"],
             median_success_step=_nanmedian(np.asarray(run["success_step"], float)[ok]),
             median_growth_grad=_nanmedian(run["growth_grad"]))
    for key in ("delta", "grad"):
        fit = run["fits"][key]
        r2 = np.asarray(fit["r2"], float)[ok]
        r2l = np.asarray(fit["r2_linear"], float)[ok]
        s[f"{key}_rate"] = _nanmedian(np.asarray(fit["rate"], float)[ok])
        s[f"{key}_r2"] = _nanmedian(r2)
        s[f"{key}_r2_linear"] = _nanmedian(r2l)
        late_early = np.asarray(fit["rate_late"], float)[ok] / np.asarray(fit["rate_early"], float)[ok]
        s[f"{key}_rate_late_over_early"] = _nanmedian(late_early)
        both = np.isfinite(r2) & np.isfinite(r2l)
        s[f"{key}_frac_exp_better"] = float(np.mean(r2[both] > r2l[both])) if both.any() else float("nan")
    if "theory" in run:
        th = run["theory"]
        for key in ("delta", "grad"):
            meas = np.asarray(run["fits"][key]["rate"], float)[ok]
            pred = np.asarray(th[f"rate_fit_{key}"], float)[ok]
            ratio = meas / pred
            good = np.isfinite(ratio) & (ratio > 0)
            s[f"{key}_rate_theory"] = _nanmedian(pred)
            s[f"{key}_rate_ratio"] = _nanmedian(ratio)
            s[f"{key}_rate_ratio_t1"] = _nanmedian(meas / np.asarray(th[f"rate_fit_{key}_t1"], float)[ok])
            clean = np.asarray(th[f"rate_fit_{key}_clean"], float)[ok]
            s[f"{key}_rate_theory_clean"] = _nanmedian(clean)
            lo, hi = np.minimum(clean, pred), np.maximum(clean, pred)
            s[f"{key}_frac_rate_between"] = float(np.mean((meas >= lo) & (meas <= hi))) if len(meas) else float("nan")
            within = (ratio[good] < RATE_FACTOR) & (ratio[good] > 1 / RATE_FACTOR)
            s[f"{key}_frac_rate_within_factor"] = float(np.mean(within)) if good.any() else float("nan")
        s["rate_asymptotic"] = _nanmedian(np.asarray(th["rate_asymptotic"], float)[ok])
        if "grad_late_over_early" in th:
            s["grad_rate_late_over_early_theory"] = _nanmedian(np.asarray(th["grad_late_over_early"], float)[ok])
    return s


def classify_cell(s: dict | None) -> str:
    """The growth of one (network, gating) cell of the raw attack from its :func:`summarize_run`:
    ``"exponential"``, ``"faster than exponential"``, ``"slower than exponential"`` (the rate
    test fails), ``"not exponential"`` (the log-linear fit fails: ``R² < R2_EXP`` or no better than
    linear for half of the digits, or the rate cannot be measured) or ``"no successful attack"``."""
    if not s or not s.get("n_success"):
        return "no successful attack"
    if not all(s[f"{k}_r2"] >= R2_EXP and s[f"{k}_frac_exp_better"] >= 0.5 for k in ("delta", "grad")):
        return "not exponential"
    r = s.get("grad_rate_late_over_early", float("nan"))
    if not (isinstance(r, (int, float)) and math.isfinite(r)):
        return "not exponential"
    if r > RATE_CONST:
        return "faster than exponential"
    if r < 1 / RATE_CONST:
        return "slower than exponential"
    return "exponential"


def growth_verdict(labels) -> str:
    """``holds``: every cell exponential; ``holds partly``: every cell exponential or faster (none
    fails the fit, none slower, none without success) and at least half exponential; else (or no
    cell) ``does not hold``."""
    labels = list(labels)
    if not labels:
        return "does not hold"
    exp = sum(lb == "exponential" for lb in labels)
    if exp == len(labels):
        return "holds"
    if all(lb in ("exponential", "faster than exponential") for lb in labels) and 2 * exp >= len(labels):
        return "holds partly"
    return "does not hold"


def rate_verdict(ratios) -> str:
    """Measured / predicted rates per cell (``nan`` for a cell without one): ``holds`` when every
    ratio is within :data:`RATE_FACTOR` of 1, ``holds partly`` when every one is within
    :data:`RATE_FACTOR_LOOSE`, else (or no cell) ``does not hold``."""
    r = [float(x) for x in ratios]
    if not r or not all(math.isfinite(x) and x > 0 for x in r):
        return "does not hold"
    if all(1 / RATE_FACTOR < x < RATE_FACTOR for x in r):
        return "holds"
    return "holds partly" if all(1 / RATE_FACTOR_LOOSE < x < RATE_FACTOR_LOOSE for x in r) else "does not hold"

