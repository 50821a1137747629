"""A verdict is a statistic: per-digit values over independently trained networks, an interval by a
hierarchical bootstrap, and symmetric rules that can say any of five things (pure NumPy/SciPy).

The unit of evidence is one value per digit per network (a seed): ``groups`` is a sequence of 1-D
arrays, one per network, of per-digit values (an error, a ratio of errors, a cosine ...). The
headline statistic is computed over the pooled digits; its interval resamples networks, then the
digits within each chosen network (the two levels of noise a retrain and a new draw of digits add),
so a verdict drawn from it survives a retrain as far as the seeds measured allow.

The rules are symmetric: a claim "the statistic lies below (or above) a threshold" **holds** when the
whole interval lies on the claim's side, **does not hold** when the whole interval lies on the other
side, and is **inconclusive** when the interval straddles the threshold. **not testable** is for an
absent premise (no digit to measure, a network below its accuracy floor, digits where the claim's
condition cannot be met); it is decided before any number is looked at and is never a failure.
Where a verdict combines several tests, :func:`holm` controls the family-wise error.
"""

from __future__ import annotations

import enum
import math
from typing import Callable, NamedTuple, Sequence

import numpy as np

__all__ = ["Verdict", "Interval", "hierarchical_bootstrap", "per_seed", "side_verdict", "pvalue_verdict",
           "holm", "combine", "statistic_record"]


class Verdict(str, enum.Enum):
    """The five verdicts; the value is the text written into ``claims.json``."""

    HOLDS = "holds"
    HOLDS_PARTLY = "holds partly"
    DOES_NOT_HOLD = "does not hold"
    INCONCLUSIVE = "inconclusive"
    NOT_TESTABLE = "not testable"

    def __str__(self) -> str:  # f-strings and json write the text, not "Verdict.HOLDS"
        return self.value


class Interval(NamedTuple):
    """A statistic with its bootstrap interval: ``value`` over the pooled digits, ``[lo, hi]`` the
    ``level`` percentile interval, ``n_seeds`` networks and ``n_digits`` digits (finite values) in all."""

    value: float
    lo: float
    hi: float
    level: float
    n_seeds: int
    n_digits: int
    n_resamples: int

    @property
    def ci(self) -> list[float]:
        return [self.lo, self.hi]


def _clean(groups) -> list[np.ndarray]:
    if isinstance(groups, np.ndarray) and groups.ndim == 1:
        raise ValueError("groups is one array per network (a sequence of 1-D arrays); for a single network "
                         "pass [values]")
    out = []
    for g in groups:
        a = np.asarray(g, np.float64).ravel()
        a = a[np.isfinite(a)]
        if a.size:
            out.append(a)
    return out


def hierarchical_bootstrap(groups: Sequence, *, stat: Callable = np.median, n_resamples: int = 2000,
                           level: float = 0.95, seed: int = 0) -> Interval:
    """The statistic ``stat`` (a reduction with an ``axis`` argument, e.g. ``np.median``, ``np.mean``)
    of the pooled finite values of ``groups`` (one 1-D array per network), with a two-level bootstrap
    percentile interval: each resample draws ``len(groups)`` networks with replacement, then, within
    each drawn network, as many digits as it has, with replacement, and applies ``stat`` to the union.

    Non-finite values are dropped first (report them apart: a digit that never flipped, a diverged
    solve); a network left with none is dropped. With one network only the digit level is resampled
    (the interval then does not cover training noise: ``n_seeds`` says so). With no value at all the
    result is NaN with ``n_digits == 0``, which :func:`side_verdict` reads as "not testable".
    Deterministic for a given ``seed``."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_resamples < 1000:
        raise ValueError(f"n_resamples must be at least 1000 for a 95 % percentile interval, got {n_resamples}")
    gs = _clean(groups)
    n_digits = sum(g.size for g in gs)
    if not gs:
        nan = float("nan")
        return Interval(nan, nan, nan, level, 0, 0, n_resamples)
    value = float(stat(np.concatenate(gs)))
    draws = bootstrap_draws(gs, n_resamples=n_resamples, seed=seed)
    if stat is np.median:
        boot = np.nanmedian(draws, axis=1)
    elif stat is np.mean:
        boot = np.nanmean(draws, axis=1)
    else:
        boot = np.array([stat(row[np.isfinite(row)]) for row in draws])
    a = (1 - level) / 2
    lo, hi = np.quantile(boot, [a, 1 - a])
    return Interval(value, float(lo), float(hi), level, len(gs), n_digits, n_resamples)


def bootstrap_draws(groups: Sequence, *, n_resamples: int, seed: int) -> np.ndarray:
    """The resampled digits of :func:`hierarchical_bootstrap` (the same scheme and, for the same
    ``seed``, the same draws): ``[n_resamples, S * width]``, NaN-padded, each row ``S`` networks drawn
    with replacement from the non-empty 1-D ``groups``, then as many digits as each has, with replacement."""
    gs = [np.asarray(g, np.float64).ravel() for g in groups]
    S, width = len(gs), max(g.size for g in gs)
    padded = np.full((S, width), np.nan)
    for i, g in enumerate(gs):
        padded[i, :g.size] = g
    sizes = np.array([g.size for g in gs])
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, S, size=(n_resamples, S))                      # networks, with replacement
    u = rng.random((n_resamples, S, width))
    idx = np.minimum((u * sizes[pick][..., None]).astype(np.int64), width - 1)  # digits within each
    draws = padded[pick[..., None], idx]                                   # [B, S, width]
    valid = np.arange(width)[None, None, :] < sizes[pick][..., None]
    return np.where(valid, draws, np.nan).reshape(n_resamples, -1)


def side_verdict(iv: Interval, threshold: float, *, claim: str = "below", testable: bool = True) -> Verdict:
    """The symmetric rule for "the statistic lies ``claim`` (``"below"`` or ``"above"``) ``threshold``":
    holds when the whole interval is on the claim's side, does not hold when the whole interval is on
    the other side, inconclusive when it straddles; not testable when ``testable`` is false (the
    premise is absent) or there is no value (``n_digits == 0``)."""
    if claim not in ("below", "above"):
        raise ValueError(f"claim must be 'below' or 'above', got {claim!r}")
    if not testable or iv.n_digits == 0 or not (math.isfinite(iv.lo) and math.isfinite(iv.hi)):
        return Verdict.NOT_TESTABLE
    lo, hi = (iv.lo, iv.hi) if claim == "below" else (-iv.hi, -iv.lo)
    t = threshold if claim == "below" else -threshold
    if hi < t:
        return Verdict.HOLDS
    if lo > t:
        return Verdict.DOES_NOT_HOLD
    return Verdict.INCONCLUSIVE


def per_seed(groups: Sequence, threshold: float, *, claim: str = "below", seeds: Sequence[int] | None = None,
             **bootstrap) -> list[dict]:
    """The same statistic and rule for each network alone (digits resampled within it):
    ``[{"seed", "value", "ci", "n_digits", "verdict"}]``, the ``per_seed`` field of a claim. A network
    whose values are all non-finite is listed with verdict "not testable"."""
    seeds = list(range(len(groups))) if seeds is None else list(seeds)
    if len(seeds) != len(groups):
        raise ValueError(f"{len(seeds)} seeds for {len(groups)} groups")
    rows = []
    for s, g in zip(seeds, groups):
        iv = hierarchical_bootstrap([g], **bootstrap)
        rows.append(dict(seed=int(s), value=iv.value, ci=iv.ci, n_digits=iv.n_digits,
                         verdict=str(side_verdict(iv, threshold, claim=claim))))
    return rows


def pvalue_verdict(p_claim: float, p_against: float, *, alpha: float = 0.05) -> Verdict:
    """The symmetric rule for a test: holds when the one-sided test in the claim's direction is
    significant, does not hold when the one in the opposite direction is, inconclusive when neither is
    (not testable when both p-values are NaN). Both significant cannot happen for a proper pair of
    one-sided tests and raises."""
    if math.isnan(p_claim) and math.isnan(p_against):
        return Verdict.NOT_TESTABLE
    yes, no = p_claim < alpha, p_against < alpha
    if yes and no:
        raise ValueError(f"both one-sided tests are significant (p {p_claim}, {p_against}): not a pair")
    return Verdict.HOLDS if yes else Verdict.DOES_NOT_HOLD if no else Verdict.INCONCLUSIVE


def holm(pvalues: Sequence[float], *, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction: ``(reject [k] bool, adjusted p [k])`` for a family of ``k`` tests at
    family-wise error ``alpha``. NaN p-values are never rejected and do not count in ``k``."""
    p = np.asarray(pvalues, np.float64).ravel()
    ok = np.isfinite(p)
    adj = np.full(p.shape, np.nan)
    k = int(ok.sum())
    if k:
        order = np.argsort(p[ok], kind="stable")
        scaled = np.minimum(1.0, np.maximum.accumulate(p[ok][order] * (k - np.arange(k))))
        sub = np.empty(k)
        sub[order] = scaled
        adj[ok] = sub
    return np.where(ok, adj < alpha, False), adj


def combine(verdicts: Sequence[Verdict | str]) -> Verdict:
    """One verdict from several (networks, layers, conditions), each already decided with the family's
    correction: holds when every testable one holds; does not hold when every testable one does not;
    holds partly when some hold and the rest do not; inconclusive otherwise (some straddle and none
    decides against all the rest); not testable when none is testable."""
    vs = [Verdict(v) for v in verdicts]
    t = [v for v in vs if v is not Verdict.NOT_TESTABLE]
    if not t:
        return Verdict.NOT_TESTABLE
    if all(v is Verdict.HOLDS for v in t):
        return Verdict.HOLDS
    if all(v is Verdict.DOES_NOT_HOLD for v in t):
        return Verdict.DOES_NOT_HOLD
    if any(v in (Verdict.HOLDS, Verdict.HOLDS_PARTLY) for v in t) and Verdict.INCONCLUSIVE not in t:
        return Verdict.HOLDS_PARTLY
    return Verdict.INCONCLUSIVE


def statistic_record(name: str, iv: Interval) -> dict:
    """The ``statistic`` field of a claim: ``{name, value, ci: [lo, hi], level, n_digits, n_seeds,
    n_resamples}`` (JSON-ready floats; NaN stays NaN)."""
    return dict(name=name, value=iv.value, ci=iv.ci, level=iv.level, n_digits=iv.n_digits, n_seeds=iv.n_seeds,
                n_resamples=iv.n_resamples)


def holm_verdicts(p_claim: Sequence[float], p_against: Sequence[float], *, alpha: float = 0.05) -> list[Verdict]:
    """Per test of a family, the symmetric verdict (:func:`pvalue_verdict`) after Holm's correction
    (:func:`holm`) over all ``2k`` one-sided p-values of the ``k`` tests at once (each test in the
    claim's direction and against it), so the family-wise error of every "holds" and every "does
    not hold" together stays below ``alpha``. A test whose two p-values are NaN is "not testable"
    and does not count in the family. Combine the result with :func:`combine`."""
    pc, pa = np.asarray(p_claim, np.float64).ravel(), np.asarray(p_against, np.float64).ravel()
    if pc.shape != pa.shape:
        raise ValueError(f"{pc.size} p-values in the claim's direction for {pa.size} against it")
    _, adj = holm(np.concatenate([pc, pa]), alpha=alpha)
    k = pc.size
    # a NaN beside a finite p-value (one direction undefined) reads as "not significant" (1.0)
    both_nan = np.isnan(pc) & np.isnan(pa)
    ac, aa = (np.where(np.isnan(a) & ~both_nan, 1.0, a) for a in (adj[:k], adj[k:]))
    return [pvalue_verdict(float(c), float(a), alpha=alpha) for c, a in zip(ac, aa)]


def decide(name: str, groups: Sequence, threshold: float, *, claim: str = "below", seeds: Sequence[int] | None = None,
           testable: bool = True, stat: Callable = np.median, n_resamples: int = 2000, level: float = 0.95,
           seed: int = 0) -> dict:
    """The claims-as-data fields of a claim "the ``stat`` of the per-digit values lies ``claim``
    ``threshold``", from ``groups`` (one 1-D array of per-digit values per network, in the order of
    ``seeds``): ``{"verdict", "statistic", "per_seed"}``, ready for
    :func:`jaxdyn.experiments.claims.render`. The verdict is :func:`side_verdict` on the
    :func:`hierarchical_bootstrap` interval over every network (so it covers the training noise the
    seeds measure); ``per_seed`` applies the same rule to each network alone. The statistic's
    ``n_networks`` counts the networks with a finite value, ``n_seeds`` the distinct ``seeds`` (groups
    may be several architectures × seeds). ``testable=False``
    (the premise is absent) makes every verdict "not testable" while still recording the numbers."""
    iv = hierarchical_bootstrap(groups, stat=stat, n_resamples=n_resamples, level=level, seed=seed)
    rows = per_seed(groups, threshold, claim=claim, seeds=seeds, stat=stat, n_resamples=n_resamples, level=level,
                    seed=seed)
    if not testable:
        rows = [dict(r, verdict=str(Verdict.NOT_TESTABLE)) for r in rows]
    stat_rec = dict(statistic_record(name, iv), threshold=float(threshold), side=claim, n_networks=iv.n_seeds)
    if seeds is not None:  # groups may be several architectures × seeds: n_seeds counts the distinct seeds
        stat_rec["n_seeds"] = len(set(int(s) for s in seeds)) if iv.n_seeds else 0
    return dict(verdict=str(side_verdict(iv, threshold, claim=claim, testable=testable)), statistic=stat_rec,
                per_seed=rows)


__all__ += ["holm_verdicts", "decide", "bootstrap_draws"]
