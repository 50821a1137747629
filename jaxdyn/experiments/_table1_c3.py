"""Table 1's C.3 claims (:func:`jaxdyn.experiments.table1.c3_claims`), split from
:mod:`jaxdyn.experiments.table1` to keep each file short.

C.3 says the attack's direction turns from ``g_x`` (small ``βλ₁``) to ``v₁``, the top eigenvector
of ``H̄_x`` (large ``βλ₁``). On a digit where ``|cos(g_x, v₁)|`` is already ≈ 1 at the clean point
(confident softmax digits: ``H_z`` is nearly rank one along ``g_z``) the turn cannot be observed,
by the theory's own ``δ̂`` either: the premise is absent. The rule therefore runs on the digits with
``|cos(g_x, v₁)| < c3_max_cos`` at ``x`` only (:func:`jaxdyn.core.theory.clean_alignment`, recorded per
digit in the first and the last row of each regime grid) and says "not testable" for a network with
fewer than ``c3_min_digits`` of them.
"""

from __future__ import annotations

import math

import numpy as np

from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import claim
from jaxdyn.analyses.verdicts import combine, hierarchical_bootstrap, side_verdict, statistic_record

__all__ = ["c3_claims", "c3_turns", "C3_MAX_COS", "C3_MIN_DIGITS"]

#: the defaults for results without them: the clean-point alignment above which a digit cannot show
#: C.3's turn, and the fewest such digits a network needs for an interval of their median
C3_MAX_COS, C3_MIN_DIGITS = 0.9, 4


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


def _ends(r: dict) -> tuple[dict, dict]:
    reg = sorted(r["regimes"], key=lambda q: q["beta"])
    return reg[0], reg[-1]


def _eligible(r: dict, sfx: str, max_cos: float) -> int:
    """The eligible digits of a network (0 without a per-digit record)."""
    lo, hi = _ends(r)
    return c3_turns(lo, hi, sfx, max_cos)[0].size if "c3_per_digit" in lo and "c3_per_digit" in hi else 0


def _network(r: dict, sfx: str, *, max_cos: float, min_digits: int, margin: float, level: float) -> dict:
    lo, hi = _ends(r)
    out = dict(model=r["model"], lo=lo, hi=hi, t=np.zeros(0), n=0, iv=None)
    if "c3_per_digit" not in lo or "c3_per_digit" not in hi:
        return dict(out, verdict="not testable", why="no per-digit record (results of an earlier version)")
    t, n = c3_turns(lo, hi, sfx, max_cos)
    out.update(t=t, n=n)
    if t.size < min_digits:
        return dict(out, verdict="not testable", why=f"{t.size}/{n} digits with |cos(g_x, v₁)| < {max_cos} at x "
                                                     f"(fewer than {min_digits})")
    iv = hierarchical_bootstrap([t], level=level)
    v = str(side_verdict(iv, margin, claim="above"))
    why = (f"median t {C.fmt(iv.value)} [{C.fmt(iv.lo)}, {C.fmt(iv.hi)}] on {t.size}/{n} eligible digits against "
           f"the margin {C.fmt(margin)}: {v}")
    return dict(out, iv=iv, verdict=v, why=why)


def c3_claims(results: dict, *, name: str = "table1") -> list[dict]:
    """Conclusion C.3 as a verdict, frozen and free apart, on the digits where it is observable (see
    the module docstring): per network the median over eligible digits of ``t`` (:func:`c3_turns`)
    with a bootstrap interval at level ``1 − 0.05/k`` (``k`` networks tested, Bonferroni), "holds"
    above the margin, "does not hold" below it, "inconclusive" across it; combined over networks by
    :func:`jaxdyn.analyses.verdicts.combine`."""
    rows = [r for r in results["rows"] if r.get("regimes")]
    if not rows:
        return []
    M, fmt, out = results.get("c3_margin", 0.01), C.fmt, []
    max_cos, min_n = results.get("c3_max_cos", C3_MAX_COS), results.get("c3_min_digits", C3_MIN_DIGITS)
    seed = (results.get("config") or {}).get("seed", 0)
    acc = ", ".join(f"{r.get('model')} {fmt(r.get('test_accuracy'), 3)}" for r in rows)
    for gating in ("frozen", "free"):
        sfx = "" if gating == "frozen" else "_free"
        kw = dict(max_cos=max_cos, min_digits=min_n, margin=M)
        k = max(1, sum(_eligible(r, sfx, max_cos) >= min_n for r in rows))  # networks tested (Bonferroni)
        per = [_network(r, sfx, level=1 - 0.05 / k, **kw) for r in rows]
        v = str(combine([p["verdict"] for p in per]))
        pooled = [np.concatenate([p["t"] for p in per if p["verdict"] != "not testable"] or [np.zeros(0)])]
        iv = hierarchical_bootstrap(pooled)
        q = lambda p, key: fmt(p.get(key + sfx))  # noqa: E731
        out.append(claim(
            f"{name}.c3_{gating}",
            f"C.3: the attack's direction turns from g_x (small βλ₁) to v₁, the top eigenvector of H̄_x (large "
            f"βλ₁) ({'A2, frozen gating' if gating == 'frozen' else 'free gating, the real network'})",
            paper="conclusion C.3 (derived from Theorem 2, not measured in the paper)",
            protocol=(f"the raw attack δ* (m = {results.get('steps')}, α = β/m, {results.get('dtype')}, "
                      f"{results.get('n_samples')} digits; v₁ from that attack's H̄_z) at the smallest and the largest "
                      f"β of each network's regime grid, on the digits with |cos(g_x, v₁)| < {max_cos} at x (v₁ of "
                      f"H_x = Jᵀ H_z J at the clean digit): " + "; ".join(
                          f"{p['model']} β={fmt(p['lo']['beta'])} (βλ₁ {q(p['lo'], 'beta_lambda_max')}) … "
                          f"β={fmt(p['hi']['beta'])} (βλ₁ {q(p['hi'], 'beta_lambda_max')}), {p['t'].size}/{p['n']} "
                          f"digits eligible" for p in per) + f"; networks: {acc}"),
            measured="median over all digits of cos(δ*, g_x) / |cos(δ*, v₁)|, small β → large β: " + ", ".join(
                f"{p['model']} {q(p['lo'], 'cos_delta_gx')}/{q(p['lo'], 'cos_delta_v1')} → "
                f"{q(p['hi'], 'cos_delta_gx')}/{q(p['hi'], 'cos_delta_v1')}" for p in per)
                + "; per network on the eligible digits: " + "; ".join(f"{p['model']}: {p['why']}" for p in per),
            baselines="the theory's own δ̂ (|cos(δ̂, v₁)|, small → large β): " + ", ".join(
                f"{p['model']} {q(p['lo'], 'cos_hat_v1')} → {q(p['hi'], 'cos_hat_v1')}" for p in per),
            controls="the ODE reference δ_ode (cos(δ_ode, g_x) / |cos(δ_ode, v₁)|, where solved): " + ", ".join(
                f"{p['model']} {q(p['lo'], 'cos_ode_gx')}/{q(p['lo'], 'cos_ode_v1')} → "
                f"{q(p['hi'], 'cos_ode_gx')}/{q(p['hi'], 'cos_ode_v1')}" for p in per),
            rule=(f"per digit with |cos(g_x, v₁)| < {max_cos} at x (else the turn cannot be observed), t = min(cos(δ*, "
                  f"g_x) − |cos(δ*, v₁)| at the smallest β, |cos(δ*, v₁)| − cos(δ*, g_x) at the largest β); per "
                  f"network the median t over those digits with a percentile bootstrap interval (2000 resamples, "
                  f"level 1 − 0.05/{k}, Bonferroni over the networks tested): holds when the interval lies above the "
                  f"margin {fmt(M)}, does not hold when it lies below, inconclusive when it straddles; not testable "
                  f"with fewer than {min_n} eligible digits; combined over networks: holds when every testable one "
                  f"holds, does not hold when every one does not, holds partly when some hold and the rest do not, "
                  f"else inconclusive; the statistic pools the tested networks' digits (95 %); over digits of one "
                  f"network per architecture; seeds not yet resampled"),
            verdict=v, statistic=statistic_record("median t over eligible digits (tested networks pooled)", iv),
            per_seed=[dict(seed=int(seed), value=iv.value if math.isfinite(iv.value) else None, verdict=v)],
            cause=None if v == "holds" else "; ".join(f"{p['model']}: {p['why']}" for p in per)))
    return out
