"""Figure 2's statistics and rules (conclusion C.2): per digit, over every trained network (seed).

The unit of evidence is one digit of one network: the raw attack's trajectory on that digit up to its
own ``m_success`` (the paper's window; a digit the attack never flips has none and is counted apart).
Per digit (:func:`digit_values`):

* ``dr2`` — C.2's statistic: ``ΔR² = R²(log-linear) − R²(linear)`` of the same window, the smaller of
  the two for ``||δ||`` and ``||g||`` (C.2 says both grow exponentially). It decides exactly the
  contrast C.2 draws: a curvature-free (first-order) attack keeps ``||g||`` constant and grows ``||δ||``
  linearly, an exponential one makes ``log ||·||`` the straight line. Both fits have two parameters,
  so the threshold is 0 without an offset, and ``ΔR²`` is scale-free (digits differ in ``||g_x||`` by
  orders of magnitude). It cannot tell an exponential from a faster growth: that is the next one.
* ``log_late_early`` — the curvature of ``log ||g||``: ``|ln(rate on the 2nd half / rate on the 1st
  half)|`` of the window; an exponential has a constant rate (0), Theorem 2's curve with one ``H̄_z``
  gives ``≈ 0``. Threshold ``ln`` :data:`RATE_CONST` (a rate that changes by less than ×1.5).
* ``rate_ratio`` — the extension: the measured log-linear rate of ``||g||`` over the same fit to
  Theorem 2's curve (``H̄_z`` of docs/spec.md, averaged over the digit's own trajectory). Claim: within
  a factor :data:`RATE_FACTOR` either side (a band; the side of 1 is reported beside it).

Each statistic is summarised by the median over digits with the hierarchical bootstrap interval
(networks, then digits: :func:`jaxdyn.analyses.verdicts.hierarchical_bootstrap`). The verdict of a
claim is a family of tests, one per (architecture, gating) cell (different architectures are different
populations), each a bootstrap test of the cell's median against the threshold in both directions,
Holm over every one-sided p-value of the family (:func:`jaxdyn.analyses.verdicts.holm_verdicts`), the
cells combined by :func:`jaxdyn.analyses.verdicts.combine` (:func:`cell_family`). The bootstrap
p-value of a side is the share of resamples on the other side of the threshold, so for one cell the
rule is that of the 95 % interval.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from jaxdyn.analyses.verdicts import Verdict, combine, hierarchical_bootstrap, holm_verdicts

__all__ = ["DR2_THRESHOLD", "RATE_CONST", "RATE_FACTOR", "N_RESAMPLES", "summarize_run", "digit_values",
           "bootstrap_test", "cell_family", "finite_count"]

#: C.2: the median ΔR² (log-linear minus linear) lies above this
DR2_THRESHOLD = 0.0
#: constant rate: the median |ln(late / early rate)| of log||g|| lies below ln(RATE_CONST)
RATE_CONST = 1.5
#: extension: the median measured / Theorem-2 rate lies within [1/RATE_FACTOR, RATE_FACTOR]
RATE_FACTOR = 2.0
#: bootstrap resamples per test
N_RESAMPLES = 2000


def _nanmedian(a):
    a = np.asarray(a, np.float64)[np.isfinite(np.asarray(a, np.float64))]
    return float(np.median(a)) if a.size else float("nan")


def summarize_run(run: dict) -> dict:
    """Medians over the successful samples of one (network, gating, attack) run (descriptive; the
    verdicts rest on :func:`digit_values`)."""
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
        s[f"{key}_rate_late_over_early"] = _nanmedian(np.asarray(fit["rate_late"], float)[ok]
                                                      / np.asarray(fit["rate_early"], float)[ok])
    if "theory" in run:
        th = run["theory"]
        for key in ("delta", "grad"):
            meas = np.asarray(run["fits"][key]["rate"], float)[ok]
            pred = np.asarray(th[f"rate_fit_{key}"], float)[ok]
            s[f"{key}_rate_theory"] = _nanmedian(pred)
            s[f"{key}_rate_ratio"] = _nanmedian(meas / pred)
            s[f"{key}_rate_theory_clean"] = _nanmedian(np.asarray(th[f"rate_fit_{key}_clean"], float)[ok])
        s["rate_asymptotic"] = _nanmedian(np.asarray(th["rate_asymptotic"], float)[ok])
    return s


def digit_values(run: dict) -> dict:
    """Per digit of one raw-attack run (``[N]`` arrays, NaN where the attack never flipped the digit):
    ``dr2`` (C.2), ``dr2_delta``, ``dr2_grad``, ``late_early`` (rate of ``log ||g||`` on the 2nd / 1st
    half of the window), ``log_late_early`` (its ``|ln|``), and with Theorem 2's curves ``rate_ratio``
    (measured / Theorem 2 with the trajectory's ``H̄_z``), ``rate_ratio_clean`` (/ with ``H_z`` at
    the clean input), ``rate_ratio_t1`` (/ Theorem 1), ``late_early_theory`` (Theorem 2's own
    curvature), ``lambda_growth`` (``λ₁`` of ``H̄`` along the trajectory over ``λ₁`` at the clean input)."""
    ok = np.asarray(run["success_step"]) > 0

    def arr(a):
        return np.where(ok, np.asarray(a, np.float64), np.nan)

    fits = run["fits"]
    out = {f"dr2_{k}": arr(np.asarray(fits[k]["r2"], float) - np.asarray(fits[k]["r2_linear"], float))
           for k in ("delta", "grad")}
    out["dr2"] = np.minimum(out["dr2_delta"], out["dr2_grad"])
    with np.errstate(divide="ignore", invalid="ignore"):
        le = arr(np.asarray(fits["grad"]["rate_late"], float) / np.asarray(fits["grad"]["rate_early"], float))
        out["late_early"] = le
        # a rate that changes sign (or vanishes) on one half is no constant rate: +inf (fails the rule)
        out["log_late_early"] = np.where(le > 0, np.abs(np.log(np.where(le > 0, le, 1.0))),
                                         np.where(np.isnan(le), np.nan, np.inf))
        if "theory" in run:
            th, meas = run["theory"], np.asarray(fits["grad"]["rate"], float)
            for k, name in (("", "rate_ratio"), ("_clean", "rate_ratio_clean"), ("_t1", "rate_ratio_t1")):
                out[name] = arr(meas / np.asarray(th[f"rate_fit_grad{k}"], float))
            out["late_early_theory"] = arr(th.get("grad_late_over_early", np.full(len(ok), np.nan)))
            out["lambda_growth"] = arr(np.asarray(th["lambda1"], float) / np.asarray(th["lambda1_clean"], float))
    return out


def _pool_median(groups: Sequence) -> float:
    vals = [np.asarray(g, float)[~np.isnan(np.asarray(g, float))] for g in groups]  # +inf: a failing digit
    vals = [v for v in vals if v.size]
    return float(np.median(np.concatenate(vals))) if vals else float("nan")


def bootstrap_test(groups: Sequence, *, low: float | None = None, high: float | None = None, seed: int = 0,
                   n_resamples: int = N_RESAMPLES) -> dict:
    """The hierarchical-bootstrap test of "the median of the per-digit values lies above ``low``
    and/or below ``high``" for one cell (``groups``: one 1-D array per network). Returns ``{"value",
    "ci", "n_digits", "n_seeds", "p_claim", "p_against"}``: ``p_claim`` the bootstrap p-value that
    the median is inside (the largest over the bounds: every bound must hold), ``p_against`` that it
    is outside (the smallest over the bounds: the outside regions are disjoint), each the share of
    resamples on the far side of a bound (``(1 + count) / (1 + B)``). NaN p-values without any value.
    Infinite values (a digit failing outright) count as values beyond every bound."""
    if low is None and high is None:
        raise ValueError("give low, high or both")
    draws: list[float] = []

    def med(a, axis=None):  # records every resample's median (the same resamples as the interval's)
        draws.append(float(np.median(a)))
        return draws[-1]

    # +inf stays a value (beyond every bound) but the bootstrap drops non-finite values: map it to a big
    # finite number of the same side
    big = 1e300
    gs = [np.where(np.isposinf(np.asarray(g, float)), big, np.asarray(g, float)) for g in groups]
    iv = hierarchical_bootstrap(gs, stat=med, n_resamples=n_resamples, seed=seed)
    rec = dict(value=iv.value, ci=[iv.lo, iv.hi], n_digits=iv.n_digits, n_seeds=iv.n_seeds)
    if iv.n_digits == 0:
        return dict(rec, p_claim=float("nan"), p_against=float("nan"))
    boot, B = np.asarray(draws[1:]), len(draws) - 1
    claim_p, against_p = [], []
    if low is not None:
        claim_p.append((1 + np.sum(boot <= low)) / (1 + B))
        against_p.append((1 + np.sum(boot >= low)) / (1 + B))
    if high is not None:
        claim_p.append((1 + np.sum(boot >= high)) / (1 + B))
        against_p.append((1 + np.sum(boot <= high)) / (1 + B))
    return dict(rec, p_claim=float(max(claim_p)), p_against=float(min(against_p)))


def cell_family(cells: Mapping[str, Sequence], *, low: float | None = None, high: float | None = None,
                seeds: Sequence[int], testable: Mapping[str, Sequence[bool]] | None = None, alpha: float = 0.05,
                seed: int = 0) -> dict:
    """One claim decided over a family of cells: ``cells`` maps a cell name (``"vgg11/free"``) to its
    groups (one 1-D array of per-digit values per seed, in the order of ``seeds``); ``testable`` the
    same shape of flags (a network below its accuracy floor: left out, its premise absent).

    Returns ``{"verdict", "cells": [{cell, value, ci, n_digits, n_seeds, p_claim, p_against, verdict}],
    "per_seed": [{seed, value, verdict}]}``: each cell's :func:`bootstrap_test`, Holm over all the
    family's one-sided p-values (:func:`~jaxdyn.analyses.verdicts.holm_verdicts`), combined by
    :func:`~jaxdyn.analyses.verdicts.combine`; ``per_seed`` the same family on each seed's networks alone
    (``value`` the pooled median of that seed's digits over every cell). A cell without any value is
    "not testable"; a family without any testable cell is "not testable"."""
    testable = testable or {}

    def family(pick: Sequence[int]) -> tuple[list[dict], Verdict]:
        rows = []
        for name, groups in cells.items():
            ok = list(testable.get(name, [True] * len(groups)))
            gs = [groups[i] for i in pick if ok[i]]
            rows.append(dict(cell=name, **bootstrap_test(gs or [[]], low=low, high=high, seed=seed)))
        vs = holm_verdicts([r["p_claim"] for r in rows], [r["p_against"] for r in rows], alpha=alpha)
        for r, v in zip(rows, vs):
            r["verdict"] = str(v)
        return rows, combine(vs) if vs else Verdict.NOT_TESTABLE

    rows, verdict = family(range(len(seeds)))
    per_seed = []
    for i, s in enumerate(seeds):
        srows, sv = family([i])
        vals = [np.asarray(cells[c][i], float) for c in cells
                if list(testable.get(c, [True] * len(cells[c])))[i]]
        per_seed.append(dict(seed=int(s), value=_pool_median(vals), verdict=str(sv),
                             cells={r["cell"]: r["verdict"] for r in srows}))
    return dict(verdict=str(verdict), cells=rows, per_seed=per_seed)


def finite_count(groups: Sequence) -> tuple[int, int]:
    """``(n with a value, n in all)`` over the digits of ``groups`` (NaN: no value)."""
    arrs = [np.asarray(g, float) for g in groups]
    return int(sum(np.sum(~np.isnan(a)) for a in arrs)), int(sum(a.size for a in arrs))


#: the claims of Fig. 2: name -> (per-digit value of :func:`digit_values`, low, high)
CLAIMS = {"growth": ("dr2", DR2_THRESHOLD, None), "constant_rate": ("log_late_early", None, float(np.log(RATE_CONST))),
          "rate": ("rate_ratio", 1 / RATE_FACTOR, RATE_FACTOR)}
#: the claims' statistics, in words
STAT_NAMES = {"growth": "median per-digit ΔR² (log-linear − linear), min over ‖δ‖ and ‖g‖",
              "constant_rate": "median per-digit |ln(late/early rate of log‖g‖)|",
              "rate": "median per-digit measured/Theorem-2 rate of ‖g‖"}
#: the per-digit values whose medians (with intervals) the causes quote, per claim
CAUSE_VALUES = {"growth": ("dr2_delta", "dr2_grad"),
                "constant_rate": ("late_early", "late_early_theory", "lambda_growth"),
                "rate": ("rate_ratio_clean", "rate_ratio_t1")}


def claim_statistics(networks: Sequence[Mapping], *, seeds: Sequence[int], gatings: Sequence[str],
                     floor: float, attack: str = "raw", seed: int = 0) -> dict:
    """Fig. 2's claims decided from ``networks`` (each ``{"model", "seed", "test_accuracy", "runs":
    {gating: {attack: run}}}``), one cell per (architecture, gating): per claim of :data:`CLAIMS`
    ``{"family": cell_family(...), "headline": {value, ci, n_digits, n_seeds, n_networks} (pooled over
    every architecture under the first gating), "quotes": {name: {value, ci}} (the values of
    :data:`CAUSE_VALUES` over every cell), "n_never": (digit, gating) runs the attack never flipped,
    "n_runs": in all,
    "below_floor": networks below the accuracy floor}``."""
    archs = list(dict.fromkeys(n["model"] for n in networks))
    by = {(n["model"], int(n["seed"])): n for n in networks}
    values, ok = {}, {}
    for a in archs:
        for g in gatings:
            cell = f"{a}/{g}"
            vs, fl = [], []
            for s in seeds:
                net = by.get((a, int(s)))
                run = ((net or {}).get("runs") or {}).get(g, {}).get(attack)
                vs.append(digit_values(run) if run else {})
                acc = (net or {}).get("test_accuracy")
                fl.append(bool(run) and acc is not None and acc >= floor)
            values[cell], ok[cell] = vs, fl
    below = sorted(f"{n['model']}-seed{n['seed']} ({n.get('test_accuracy')})" for n in networks
                   if not (n.get("test_accuracy") or 0.0) >= floor)
    empty = np.full(0, np.nan)

    def groups(cell, name):
        return [v.get(name, empty) if f else empty for v, f in zip(values[cell], ok[cell])]

    out = {}
    for claim, (name, low, high) in CLAIMS.items():
        cells = {c: groups(c, name) for c in values}
        fam = cell_family(cells, low=low, high=high, seeds=seeds, seed=seed)
        first = [c for c in values if c.endswith(f"/{gatings[0]}")]
        pooled = [g for c in first for g in cells[c]]
        iv = hierarchical_bootstrap([np.where(np.isposinf(g), 1e300, g) for g in pooled], n_resamples=N_RESAMPLES,
                                    seed=seed)
        head = dict(value=iv.value, ci=iv.ci, level=iv.level, n_resamples=iv.n_resamples, n_digits=iv.n_digits,
                    n_seeds=len(set(seeds)), n_networks=iv.n_seeds, gating=gatings[0],
                    threshold=low if high is None else high if low is None else [low, high],
                    side="above" if high is None else "below" if low is None else "inside")
        quotes = {}
        for q in (name,) + CAUSE_VALUES[claim]:
            gs = [g for c in values for g in groups(c, q)]
            qi = hierarchical_bootstrap(gs, n_resamples=N_RESAMPLES, seed=seed)
            quotes[q] = dict(value=qi.value, ci=qi.ci)
        n_val, n_all = finite_count([g for c in values for g in groups(c, "dr2")])
        out[claim] = dict(family=fam, headline=head, quotes=quotes, n_never=n_all - n_val, n_runs=n_all,
                          below_floor=below, low=low, high=high)
    return out


__all__ += ["CLAIMS", "STAT_NAMES", "CAUSE_VALUES", "claim_statistics"]
