"""Table 1's statistics from its results (:mod:`jaxdyn.experiments.table1.rules` renders them): per-digit
values grouped by seed, the regime map (per ``s`` the median ratio decided at thresholds 1 and ``1/F``
by :func:`jaxdyn.analyses.verdicts.decide`), the ``H̄_z`` ablation with the best constant ``c`` per
network, and C.3's groups of eligible digits."""

from __future__ import annotations

import numpy as np

from jaxdyn.analyses.table1_protocol import c3_turns
from jaxdyn.analyses.verdicts import decide

__all__ = ["arr", "med", "vmin", "by_seed", "best_c", "ablation", "regime_map", "s_star", "c3_groups"]


def arr(v) -> np.ndarray:
    """A per-digit list (``None``: a digit that does not enter) as a float array (NaN)."""
    return np.asarray([np.nan if x is None else x for x in ([] if v is None else v)], np.float64)


def med(a) -> float | None:
    """The median of the finite values (``None`` without any)."""
    a = arr(a)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else None


def vmin(a) -> float | None:
    """The minimum of the finite values (``None`` without any)."""
    a = arr(a)
    a = a[np.isfinite(a)]
    return float(np.min(a)) if a.size else None


def by_seed(rows, fn):
    """``(seeds, groups)``: one array per seed, the digits of that seed's networks pooled."""
    seeds = sorted({int(r.get("seed", 0)) for r in rows})
    groups = [np.concatenate([arr(fn(r)) for r in rows if int(r.get("seed", 0)) == s] or [np.zeros(0)])
              for s in seeds]
    return seeds, groups


def best_c(row: dict, g: str, j: int) -> tuple[float | None, np.ndarray]:
    """A network's best constant ``c`` (the median relative error of δ̂(c·H̄_z) over its flipped digits,
    minimised over the grid; fitted in-sample) and the per-digit ratio to first order with it."""
    p = row["progress"][g]
    q = p["by_s"][j]
    rc = np.asarray([[np.nan] * len(p["c_grid"]) if v is None else arr(v) for v in q["rel_c"]], np.float64)
    if not np.isfinite(rc).any():
        return None, np.zeros(0)
    i = int(np.nanargmin(np.nanmedian(rc, axis=0)))
    return p["c_grid"][i], rc[:, i] / arr(q["rel_first_order"])


def ablation(results: dict, gating: str) -> dict:
    """Per ``s`` of ``ablation_s``: the median ratio with the paper's ``H̄_z``, the time-uniform one and
    the best ``c · H̄_z`` (``c``: ``[(model, seed, c)]``)."""
    rows, s_grid = results["rows"], [float(s) for s in results["s_grid"]]
    out = {}
    for s in results.get("ablation_s", []):
        j = s_grid.index(float(s))
        ratio = np.concatenate([arr(r["progress"][gating]["by_s"][j]["ratio"]) for r in rows])
        uni = np.concatenate([arr(r["progress"][gating]["by_s"][j]["ratio_uniform"]) for r in rows])
        best = [best_c(r, gating, j) for r in rows]
        bc = np.concatenate([b for _, b in best]) if best else np.zeros(0)
        out[float(s)] = dict(paper=med(ratio), uniform=med(uni), best_c=med(bc),
                             c=[(r["model"], int(r.get("seed", 0)), c) for r, (c, _) in zip(rows, best)])
    return out


def regime_map(results: dict, gating: str) -> dict:
    """Per ``s`` the decided ratio (×1: ``d1``, ×F: ``dF``; intervals at level ``1 − 0.05/k``, ``k`` the
    values ``s ≤ 1``) and the networks whose median ratio is below 1 (``n_ok`` of ``n``)."""
    rows = results["rows"]
    s_grid = [float(s) for s in results["s_grid"]]
    F = float(results.get("verdict_factor", 2.0))
    inside = [s for s in s_grid if s <= 1.0]
    level = 1 - 0.05 / len(inside)
    out = []
    for j, s in enumerate(s_grid):
        seeds, groups = by_seed(rows, lambda r: r["progress"][gating]["by_s"][j]["ratio"])
        d1 = decide(f"median ratio at s={s:g}", groups, 1.0, seeds=seeds, level=level)
        dF = decide(f"median ratio at s={s:g} (x{F:g})", groups, 1.0 / F, seeds=seeds, level=level)
        nets = [med(r["progress"][gating]["by_s"][j]["ratio"]) for r in rows]
        out.append(dict(s=s, d1=d1, dF=dF, n_ok=sum(v is not None and v < 1 for v in nets), n=len(nets)))
    return dict(points=out, inside=inside, F=F)


def s_star(points, key: str) -> float | None:
    """The largest ``s ≤ 1`` up to which every ``s`` holds (``None``: not even the smallest)."""
    best = None
    for p in points:
        if p["s"] > 1.0 or p[key]["verdict"] != "holds":
            break
        best = p["s"]
    return best


def c3_groups(rows, gating: str, max_cos: float, min_digits: int):
    """``(seeds, groups, turns, enter)``: C.3's per-digit ``t`` per network (:func:`c3_turns`), whether
    the network enters (≥ ``min_digits`` eligible digits), and the entering digits grouped by seed."""
    turns = [c3_turns(r["c3"], gating, max_cos) for r in rows]
    enter = [t.size >= min_digits for t, _ in turns]
    seeds = sorted({int(r.get("seed", 0)) for r in rows})
    groups = [np.concatenate([t for (t, _), r, e in zip(turns, rows, enter) if e and int(r.get("seed", 0)) == s]
                             or [np.zeros(0)]) for s in seeds]
    return seeds, groups, turns, enter
