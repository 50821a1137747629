"""Table 1's claims, rendered from the results by :func:`jaxdyn.experiments.claims.render`: the
attack regime (the headline, frozen and free apart), conclusion C.3 (frozen and free apart), then
the paper protocol's (:func:`jaxdyn.experiments._common.table_claims`).

C.3 says the attack's direction turns from ``g_x`` (small ``βλ₁``) to ``v₁``, the top eigenvector
of ``H̄_x`` (large ``βλ₁``). On a digit where ``|cos(g_x, v₁)|`` is already ≈ 1 at the clean point
(confident softmax digits: ``H_z`` is nearly rank one along ``g_z``) the turn cannot be observed,
by the theory's own ``δ̂`` either: the premise is absent. The rule therefore runs on the digits with
``|cos(g_x, v₁)| < c3_max_cos`` at ``x`` only (:func:`jaxdyn.core.theory.clean_alignment`, recorded per
digit in the first and the last row of each regime grid; :func:`jaxdyn.analyses.table1_protocol.c3_turns`)
and says "not testable" for a network with fewer than ``c3_min_digits`` of them.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxdyn.analyses.table1_protocol import C3_MAX_COS, C3_MIN_DIGITS, c3_turns
from jaxdyn.analyses.verdicts import combine, hierarchical_bootstrap, side_verdict, statistic_record
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import ClaimText, count_verdict, render

__all__ = ["claims", "regime_claims", "c3_claims", "attack_regime_pairs", "REGIME", "C3"]

GATING_WORDS = {"frozen": "A2, frozen gating", "free": "free gating, the real network"}
SUFFIX = {"frozen": "", "free": "_free"}

_REGIME = ClaimText(
    id="table1.attack_regime_{gating}",
    claim="Theorem 2 beats the curvature-free first-order baseline where the attack flips digits ({gating_words})",
    paper="not in the paper (it reports κ at one undisclosed small β)",
    protocol="attack regime: reference δ = the gradient flow dδ/dt = g_(x+δ) to t = β (A3's m → ∞ limit, adaptive "
             "Dormand–Prince, rtol {ode_rtol}) where solved, else the raw attack, m = {steps}, α = β/m, {dtype}, "
             "{n_samples} fixed test digits (flip fraction over the correctly classified, m-step attack), at the β "
             "nearest flip fraction {target}: {where}; networks (test acc.): {accuracies}{capped}",
    measured="κ: {kappas}; κ < first-order κ / {F} for {n_ok}/{n} networks",
    baselines="first-order κ (δ = β g_x): {first_order}",
    controls="m-step attack (labelled rows): κ {m_step}; Theorem 1 at the same m (κ_T1): {theorem1}; the other "
             "gating's κ at its own flip ≈ {target}: see table1.attack_regime_{other} ({other_key})",
    rule="at the β of the regime grid whose flip fraction is nearest {target} (ties: the larger β): holds if κ < "
         "first-order κ / F with F = {F} for every network, both measured against the ODE reference δ_ode where it "
         "was solved for every digit at that β (else against the m-step attack, marked: a solved subset is biased "
         "towards flows without a ReLU kink); holds partly if for some; else does not hold; a network whose grid "
         "never reached flip ≥ {hi} counts as failing")
#: the attack-regime claim per gating
REGIME = {g: dataclasses.replace(_REGIME, id=f"table1.attack_regime_{g}") for g in ("frozen", "free")}
#: the pieces of its lists, one per network
REGIME_ITEMS = dict(
    where="{model} β={beta} (flips {flip_fraction}, βλ₁ {beta_lambda_max}, ‖δ*‖₂ {delta_l2})",
    kappas="{model} {kappa} ({ref})", first_order="{model} {first_order}",
    m_step="{model} {kappa_m} (first order {first_order_m}, Euler gap to the ODE {euler_gap})",
    theorem1="{model} {kappa_theorem1}", ode_ref="vs ODE, {ode_solved}/{n_examples} digits solved",
    capped="; grid cap hit before flip ≥ {hi}: {models}")

_C3 = ClaimText(
    id="table1.c3_{gating}",
    claim="C.3: the attack's direction turns from g_x (small βλ₁) to v₁, the top eigenvector of H̄_x (large βλ₁) "
          "({gating_words})",
    paper="conclusion C.3 (derived from Theorem 2, not measured in the paper)",
    protocol="the raw attack δ* (m = {steps}, α = β/m, {dtype}, {n_samples} digits; v₁ from that attack's H̄_z) at "
             "the smallest and the largest β of each network's regime grid, on the digits with |cos(g_x, v₁)| < "
             "{max_cos} at x (v₁ of H_x = Jᵀ H_z J at the clean digit): {ends}; networks: {accuracies}",
    measured="median over all digits of cos(δ*, g_x) / |cos(δ*, v₁)|, small β → large β: {cosines}; per network "
             "on the eligible digits: {why}",
    baselines="the theory's own δ̂ (|cos(δ̂, v₁)|, small → large β): {hat}",
    controls="the ODE reference δ_ode (cos(δ_ode, g_x) / |cos(δ_ode, v₁)|, where solved): {ode}",
    rule="per digit with |cos(g_x, v₁)| < {max_cos} at x (else the turn cannot be observed), t = min(cos(δ*, g_x) − "
         "|cos(δ*, v₁)| at the smallest β, |cos(δ*, v₁)| − cos(δ*, g_x) at the largest β); per network the median "
         "t over those digits with a percentile bootstrap interval (2000 resamples, level 1 − 0.05/{k}, Bonferroni "
         "over the networks tested): holds when the interval lies above the margin {margin}, does not hold when it "
         "lies below, inconclusive when it straddles; not testable with fewer than {min_digits} eligible digits; "
         "combined over networks: holds when every testable one holds, does not hold when every one does not, "
         "holds partly when some hold and the rest do not, else inconclusive; the statistic pools the tested "
         "networks' digits (95 %); over digits of one network per architecture; seeds not yet resampled")
#: C.3's claim per gating
C3 = {g: dataclasses.replace(_C3, id=f"table1.c3_{g}") for g in ("frozen", "free")}
C3_ITEMS = dict(
    ends="{model} β={lo_beta} (βλ₁ {lo_beta_lambda_max}) … β={hi_beta} (βλ₁ {hi_beta_lambda_max}), {t_size}/{n} "
         "digits eligible",
    cosines="{model} {lo_cos_delta_gx}/{lo_cos_delta_v1} → {hi_cos_delta_gx}/{hi_cos_delta_v1}",
    hat="{model} {lo_cos_hat_v1} → {hi_cos_hat_v1}",
    ode="{model} {lo_cos_ode_gx}/{lo_cos_ode_v1} → {hi_cos_ode_gx}/{hi_cos_ode_v1}",
    why="{model}: {why}", accuracy="{model} {test_accuracy}")
#: why a network's C.3 verdict is what it is
C3_WHY = dict(
    no_record="no per-digit record (results of an earlier version)",
    few="{t_size}/{n} digits with |cos(g_x, v₁)| < {max_cos} at x (fewer than {min_digits})",
    tested="median t {value} [{lo}, {hi}] on {t_size}/{n} eligible digits against the margin {margin}: {verdict}")


def _join(template: str, items, sep: str = ", ") -> str:
    return sep.join(template.format_map(v) for v in items)


def _point(p: dict | None, gating: str, keys) -> dict:
    """The numbers of one gating of a regime row, without the gating's suffix, formatted (``—``: none)."""
    sfx = SUFFIX[gating]
    return {k: C.fmt(None if p is None else p.get(k + sfx)) for k in keys}


def attack_regime_pairs(rows, *, gating: str, target: float, factor: float) -> list:
    """Per network ``(model, point, ok, key)`` for the attack-regime rule: at the regime row whose
    flip fraction (of ``gating``) is nearest ``target``, ``κ < first-order κ / factor`` with κ and
    its baseline measured against the ODE reference (``key`` ``kappa_ode``/``kappa_ode_free``)
    where that row has it for every digit (the digits whose flow is solved are the easy ones), else against
    the m-step attack (``kappa``/``kappa_free``). A network without such a row, whose grid did not reach
    ``regime_range["hi"]``, or with a missing number fails."""
    sfx, out = SUFFIX[gating], []
    for r in rows:
        pt = C.regime_point(r.get("regimes") or [], flip_key="flip_fraction" + sfx, target=target)
        ode = (pt is not None and None not in (pt.get("kappa_ode" + sfx), pt.get("kappa_ode" + sfx + "_first_order"))
               and pt.get("ode_solved" + sfx) == pt.get("n_examples"))  # a solved subset is biased: all or none
        k = ("kappa_ode" if ode else "kappa") + sfx
        hi = (r.get("regime_range") or {}).get("hi", target)
        ok = (pt is not None and pt.get(k) is not None and pt.get(k + "_first_order") is not None
              and max(q.get("flip_fraction" + sfx) or 0.0 for q in r["regimes"]) >= hi
              and pt[k] < pt[k + "_first_order"] / factor)
        out.append((r.get("model"), pt, bool(ok), k))
    return out


def _common_values(results: dict, rows: list) -> dict:
    acc = [dict(model=r.get("model"), test_accuracy=C.fmt(r.get("test_accuracy"), 3)) for r in rows]
    return dict(steps=results.get("steps"), dtype=results.get("dtype"), n_samples=results.get("n_samples"),
                accuracies=_join(C3_ITEMS["accuracy"], acc))


def regime_claims(results: dict) -> list[dict]:
    """The attack-regime claims, frozen and free apart (rows with ``regimes`` only): at the β whose
    flip fraction is nearest ``flip_target``, κ < first-order κ / ``verdict_factor``, both
    against the ODE reference where it was solved (:func:`attack_regime_pairs`)."""
    rows = [r for r in results["rows"] if r.get("regimes")]
    if not rows:
        return []
    F, target = results.get("verdict_factor", 2.0), results.get("flip_target", 0.5)
    hi = results.get("flip_range", [0.05, 0.5])[1]
    capped = [r["model"] for r in rows if not (r.get("regime_range") or {}).get("reached", False)]
    out = []
    for gating in ("frozen", "free"):
        pairs = attack_regime_pairs(rows, gating=gating, target=target, factor=F)
        nets = []
        for m, p, _, k in pairs:
            v = _point(p, gating, ("flip_fraction", "beta_lambda_max", "delta_l2", "kappa_theorem1", "euler_gap"))
            kv = {} if p is None else p
            v.update(model=m, beta=C.fmt(kv.get("beta")), kappa=C.fmt(kv.get(k)),
                     first_order=C.fmt(kv.get(k + "_first_order")),
                     kappa_m=C.fmt(kv.get("kappa" + SUFFIX[gating])),
                     first_order_m=C.fmt(kv.get("kappa" + SUFFIX[gating] + "_first_order")),
                     ref=(REGIME_ITEMS["ode_ref"].format(ode_solved=kv.get("ode_solved" + SUFFIX[gating]),
                                                         n_examples=kv.get("n_examples"))
                          if k.startswith("kappa_ode") else "vs m-step"))
            nets.append(v)
        values = dict(
            _common_values(results, rows), gating_words=GATING_WORDS[gating], ode_rtol=C.fmt(results.get("ode_rtol")),
            target=C.fmt(target), F=C.fmt(F), hi=C.fmt(hi), where=_join(REGIME_ITEMS["where"], nets, "; "),
            capped=REGIME_ITEMS["capped"].format(hi=C.fmt(hi), models=", ".join(capped)) if capped else "",
            kappas=_join(REGIME_ITEMS["kappas"], nets), n_ok=sum(ok for _, _, ok, _ in pairs), n=len(pairs),
            first_order=_join(REGIME_ITEMS["first_order"], nets), m_step=_join(REGIME_ITEMS["m_step"], nets),
            theorem1=_join(REGIME_ITEMS["theorem1"], nets), other="free" if gating == "frozen" else "frozen",
            other_key="kappa_free" if gating == "frozen" else "kappa")
        out.append(render(REGIME[gating], values, verdict=count_verdict([ok for _, _, ok, _ in pairs])))
    return out


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
        return dict(out, verdict="not testable", why=C3_WHY["no_record"])
    t, n = c3_turns(lo, hi, sfx, max_cos)
    out.update(t=t, n=n)
    if t.size < min_digits:
        why = C3_WHY["few"].format(t_size=t.size, n=n, max_cos=max_cos, min_digits=min_digits)
        return dict(out, verdict="not testable", why=why)
    iv = hierarchical_bootstrap([t], level=level)
    v = str(side_verdict(iv, margin, claim="above"))
    why = C3_WHY["tested"].format(value=C.fmt(iv.value), lo=C.fmt(iv.lo), hi=C.fmt(iv.hi), t_size=t.size, n=n,
                                  margin=C.fmt(margin), verdict=v)
    return dict(out, iv=iv, verdict=v, why=why)


def c3_claims(results: dict) -> list[dict]:
    """Conclusion C.3 as a verdict, frozen and free apart, on the digits where it is observable (see
    the module docstring): per network the median over eligible digits of ``t``
    (:func:`jaxdyn.analyses.table1_protocol.c3_turns`) with a bootstrap interval at level ``1 − 0.05/k``
    (``k`` networks tested, Bonferroni), "holds" above the margin, "does not hold" below it,
    "inconclusive" across it; combined over networks by :func:`jaxdyn.analyses.verdicts.combine`."""
    rows = [r for r in results["rows"] if r.get("regimes")]
    if not rows:
        return []
    M, out = results.get("c3_margin", 0.01), []
    max_cos, min_n = results.get("c3_max_cos", C3_MAX_COS), results.get("c3_min_digits", C3_MIN_DIGITS)
    seed = ((results.get("config") or {}).get("seeds") or [0])[0]
    keys = ("beta_lambda_max", "cos_delta_gx", "cos_delta_v1", "cos_hat_v1", "cos_ode_gx", "cos_ode_v1")
    for gating in ("frozen", "free"):
        sfx = SUFFIX[gating]
        k = max(1, sum(_eligible(r, sfx, max_cos) >= min_n for r in rows))  # networks tested (Bonferroni)
        per = [_network(r, sfx, level=1 - 0.05 / k, max_cos=max_cos, min_digits=min_n, margin=M) for r in rows]
        v = str(combine([p["verdict"] for p in per]))
        pooled = [np.concatenate([p["t"] for p in per if p["verdict"] != "not testable"] or [np.zeros(0)])]
        iv = hierarchical_bootstrap(pooled)
        nets = [dict(model=p["model"], why=p["why"], t_size=p["t"].size, n=p["n"], lo_beta=C.fmt(p["lo"]["beta"]),
                     hi_beta=C.fmt(p["hi"]["beta"]),
                     **{f"lo_{q}": s for q, s in _point(p["lo"], gating, keys).items()},
                     **{f"hi_{q}": s for q, s in _point(p["hi"], gating, keys).items()}) for p in per]
        values = dict(_common_values(results, rows), gating_words=GATING_WORDS[gating], max_cos=max_cos, k=k,
                      margin=C.fmt(M), min_digits=min_n, cosines=_join(C3_ITEMS["cosines"], nets),
                      hat=_join(C3_ITEMS["hat"], nets), ode=_join(C3_ITEMS["ode"], nets),
                      ends=_join(C3_ITEMS["ends"], nets, "; "), why=_join(C3_ITEMS["why"], nets, "; "))
        out.append(render(
            C3[gating], values, verdict=v,
            statistic=statistic_record("median t over eligible digits (tested networks pooled)", iv),
            per_seed=[dict(seed=int(seed), value=iv.value if math.isfinite(iv.value) else None, verdict=v)],
            cause=None if v == "holds" else values["why"]))
    return out


def claims(results: dict, *, paper_range: tuple) -> list[dict]:
    """The attack-regime claims (the headline, when the rows have ``regimes``), C.3's, then the paper
    protocol's: κ is small (``paper_range``, the paper's) and below the first-order baseline at ``beta``."""
    return regime_claims(results) + c3_claims(results) + C.table_claims(
        results, name="table1", key="kappa", label="κ", theorem="Theorem 2 (Table 1)", paper=paper_range,
        protocol_name="paper protocol")
