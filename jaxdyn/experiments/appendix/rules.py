"""Appendix D/J's claims: one :class:`~jaxdyn.experiments.claims.ClaimText` per claim, filled by
:func:`~jaxdyn.experiments.claims.render` from values computed beside each verdict rule."""

from __future__ import annotations

import dataclasses

from jaxdyn.analyses.variant_matching import ATTACK_FLIPS, GATINGS, attack_row
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import ClaimText, count_verdict, range_verdict, render

__all__ = ["claims", "FACTOR_D", "BASELINE_FLOOR", "D_PAPER", "D_BEATS_GX", "J_CLAIMS", "J_BOUNDS", "SETTING"]

#: Appendix D: Theorem 2 must beat the g_x-only baseline 1 − cos(g_x, ·) by this factor
FACTOR_D = 2.0
#: Appendix D: (network, ε) pairs whose baseline is below this are at float resolution: not counted
BASELINE_FLOOR = 1e-8
#: Appendix D's paper protocol: every network's mean ≤ this holds (≤ ``LOOSE_D`` holds partly)
HI_D, LOOSE_D = 1e-4, 1e-2

SETTING = "{n_samples} fixed test digits per network, {dtype}; test acc.: {acc}"
_SYM = {"l2": "ℓ2", "linf": "ℓ∞"}

#: Appendix D, the paper's protocol (A2, no clip, α = ε/steps: "we ignore the clip"), per norm
D_PAPER = {norm: ClaimText(
    id=f"appendix.d_{norm}", claim=f"(paper protocol) Appendix D: Theorem 2 matches few-step {_SYM[norm]}-PGD",
    paper=paper,
    protocol="{pgd_steps}-step PGD from x, α = ε/steps, no random start; δ̂ from Theorem 2 with the attack's H̄_z "
             "and β matched to its norm; {setting}",
    measured="range over networks of the mean: {ranges}",
    baselines="first order 1 − cos(g_x, ·): {first_order}",
    controls="free gating, clipping, Madry's α: {controls}",
    rule="on the unclipped attacks under A2: holds if every network's mean ≤ {hi}; holds partly if every one ≤ 1e-2 "
         "or the worst network of at least half of the attacks ≤ {hi}")
    for norm, paper in (("l2", "1 − cos(δ̂, δ^(ℓ2)) = 1e-6 … 1e-4"),
                        ("linf", "1 − cos(Cδ̂/‖δ̂‖, δ^(effective,ℓ∞)) = 3.4e-5 on average"))}

#: Appendix D against the g_x-only baseline over the ε grid (unclipped, α = ε/steps), per norm and gating
D_BEATS_GX = {(norm, gating): ClaimText(
    id=f"appendix.d_{norm}_beats_gx_{gating}",
    claim=f"Appendix D: Theorem 2 matches {_SYM[norm]}-PGD better than g_x alone ({gating} gating)",
    paper="not in the paper (the paper has no baseline)",
    protocol=f"{{pgd_steps}}-step {_SYM[norm]}-PGD, α = ε/steps, no clip, ε grid {{eps_grid}}; {{setting}}",
    measured="{measured}", baselines="1 − cos(g_x, ·): {baselines}",
    rule="over every (network, ε) whose baseline > {floor:g}: 1 − cos ≤ baseline / {factor:g}; holds: all; "
         "holds partly: at least half; else does not hold (here {n_ok}/{n_counted})")
    for norm in ("l2", "linf") for gating in GATINGS}
_EPS_ITEM = "{model} ε={eps:g}: {cos} (digits flipped {flips})"
_BASE_ITEM = "{model} ε={eps:g}: {base}"

#: Appendix J (free-gating raw attack at attack strength): the bound on each result key at the attack β
J_BOUNDS = {"eig_rel_change": 1e-2, "flip_fraction": 0.05}
#: Appendix J: result key -> its words
J_CLAIMS = {key: ClaimText(
    id=f"appendix.{cid}", claim=f"Appendix J: the attack barely changes {what} (at attack strength)", paper=paper,
    protocol="raw attack, free gating, {raw_steps} steps, β grid {betas}; {setting}",
    measured="at the attack β per network: {at_attack}. Verdict per β (rule applied at each β): {per_beta}",
    rule="value ≤ {bound} at the attack β = the smallest β of the grid at which the raw attack flips ≥ {flips:g} of "
         "the correctly classified digits (the attack regime of Tables 1-2; the largest β if none does); holds: "
         "every network; holds partly: some; else does not hold")
    for cid, key, what, paper in (
        ("j_eigenvalue", "eig_rel_change", "the top eigenvalue of H̄_x", "relative change 1e-4 … 1e-2"),
        ("j_gates", "flip_fraction", "the gating states", "few gates flip (no number in the main text)"))}
_AT_ITEM = "{model} (β={beta:g}, flipped {flips}) {value}"
_BETA_ITEM = "β={beta:g}: {verdict} (max {max}, digits flipped {flips_lo} … {flips_hi})"
_RANGE_ITEM = "{name}: {lo} … {hi}"
_RANGE_NAME = "{attack} ({gating})"
_ACC_ITEM = "{model} {acc}"


def _ranges(items) -> str:
    """``"name: lo … hi; ..."`` over ``(name, [lo, hi])`` pairs with a range."""
    return "; ".join(_RANGE_ITEM.format(name=k, lo=C.fmt(v[0]), hi=C.fmt(v[1])) for k, v in items if v)


def _d_paper(results: dict, norm: str, setting: str) -> dict | None:
    """Appendix D under the paper's protocol, from the summary's ranges over networks (``None``
    when no unclipped attack of ``norm`` ran)."""
    summ = results["summary"]
    cos = [(_RANGE_NAME.format(attack=lbl, gating=g), "clip" not in lbl and "madry" not in lbl and g == "frozen", v)
           for lbl, per in (summ.get("one_minus_cos_range") or {}).items() for g, v in per.items()
           if lbl.startswith(norm) and v]
    plain = [(k, v) for k, is_plain, v in cos if is_plain]
    if not plain:
        return None
    others = [(k, v) for k, is_plain, v in cos if not is_plain]
    first = [(k, v) for k, v in (summ.get("one_minus_cos_first_order_range") or {}).items() if k.startswith(norm)]
    text = D_PAPER[norm] if others else dataclasses.replace(D_PAPER[norm], controls="")
    return render(text, dict(pgd_steps=results.get("pgd_steps"), setting=setting, ranges=_ranges(plain),
                             first_order=_ranges(first), controls=_ranges(others), hi=C.fmt(HI_D)),
                  verdict=range_verdict([v[1] for _, v in plain], HI_D, LOOSE_D))


def _d_beats_gx(results: dict, norm: str, gating: str, setting: str) -> dict:
    """Appendix D against the ``g_x``-only baseline over the ε grid (unclipped, α = ε/steps)."""
    pairs = [(r["model"], e) for r in results["rows"] for e in r.get("appendix_d_eps", [])
             if e["norm"] == norm and e["gating"] == gating]
    counted = [(m, e) for m, e in pairs if e["one_minus_cos_first_order"] > BASELINE_FLOOR]
    ok = [e["one_minus_cos"] * FACTOR_D <= e["one_minus_cos_first_order"] for _, e in counted]
    frac = sum(ok) / len(ok) if ok else 0.0
    verdict = "holds" if ok and all(ok) else "holds partly" if frac >= 0.5 else "does not hold"
    values = dict(
        pgd_steps=results.get("pgd_steps"), setting=setting, eps_grid=sorted({e["eps"] for _, e in pairs}),
        measured="; ".join(_EPS_ITEM.format(model=m, eps=e["eps"], cos=C.fmt(e["one_minus_cos"]),
                                            flips=C.fmt(e["label_flips"])) for m, e in pairs),
        baselines="; ".join(_BASE_ITEM.format(model=m, eps=e["eps"], base=C.fmt(e["one_minus_cos_first_order"]))
                            for m, e in pairs),
        floor=BASELINE_FLOOR, factor=FACTOR_D, n_ok=sum(ok), n_counted=len(ok))
    return render(D_BEATS_GX[norm, gating], values, verdict=verdict)


def _j(results: dict, key: str, setting: str) -> dict | None:
    """Appendix J at the attack β (:func:`~jaxdyn.analyses.variant_matching.attack_row`) of each
    network, and the rule applied at every β of the grid (``None`` without Appendix-J rows)."""
    rows = [r for r in results["rows"] if r.get("appendix_j_raw")]
    if not rows:
        return None
    fmt, bound = C.fmt, J_BOUNDS[key]
    betas = [j["beta"] for j in rows[0]["appendix_j_raw"]]
    per_beta = []
    for i, b in enumerate(betas):
        at_b = [r["appendix_j_raw"][i] for r in rows]
        per_beta.append(_BETA_ITEM.format(
            beta=b, verdict=count_verdict([j[key] <= bound for j in at_b]), max=fmt(max(j[key] for j in at_b)),
            flips_lo=fmt(min(j["label_flips"] for j in at_b)), flips_hi=fmt(max(j["label_flips"] for j in at_b))))
    at = [(r["model"], attack_row(r["appendix_j_raw"])) for r in rows]
    values = dict(raw_steps=results.get("raw_steps"), betas=betas, setting=setting, bound=fmt(bound),
                  flips=ATTACK_FLIPS, per_beta="; ".join(per_beta),
                  at_attack=", ".join(_AT_ITEM.format(model=m, beta=j["beta"], flips=fmt(j["label_flips"]),
                                                      value=fmt(j[key])) for m, j in at))
    return render(J_CLAIMS[key], values, verdict=count_verdict([j[key] <= bound for _, j in at]))


def claims(results: dict) -> list[dict]:
    """Appendix D (Theorem 2 matches few-step ℓ2 / ℓ∞ PGD; better than ``g_x`` alone) and J (the
    attack barely changes λ₁ of H̄_x and the gates), from the summary's ranges over networks and
    the per-network rows."""
    acc = ", ".join(_ACC_ITEM.format(model=r["model"], acc=C.fmt(r.get("test_accuracy"), 3)) for r in results["rows"])
    setting = SETTING.format(n_samples=results.get("n_samples"), dtype=results.get("dtype"), acc=acc)
    out = [_d_paper(results, norm, setting) for norm in ("l2", "linf")]
    out += [_d_beats_gx(results, norm, gating, setting) for norm, gating in D_BEATS_GX
            if any(e["norm"] == norm for r in results["rows"] for e in r.get("appendix_d_eps", []))]
    out += [_j(results, key, setting) for key in J_CLAIMS]
    return [c for c in out if c is not None]
