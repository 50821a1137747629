"""Appendix D/J's claims on per-digit statistics: one :class:`~jaxdyn.experiments.claims.ClaimText`
per claim, filled by :func:`~jaxdyn.experiments.claims.render` with the statistic (median over digits,
hierarchical bootstrap interval over networks and digits), the per-network verdicts and, when a claim
does not hold, its measured cause (:mod:`.stats`)."""

from __future__ import annotations

import numpy as np

from jaxdyn.analyses.variant_matching import ATTACK_FLIPS, PGD_VARIANTS, attack_row, digit_ratio, digit_split
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.appendix.stats import ALPHA, MIN_DIGITS, family, networks, regime, test
from jaxdyn.experiments.claims import ACCURACY_FLOOR, ClaimText, render

__all__ = ["claims", "RATIO", "FACTOR_D", "BASELINE_FLOOR", "HI_D", "LOOSE_D", "D_PAPER", "D_BEATS_GX", "J_CLAIMS",
           "J_BOUNDS", "J_FACTOR", "SETTING"]

#: Appendix D: Theorem 2 beats g_x alone when the median per-digit ratio of their errors is below 1 ...
RATIO = 1.0
#: ... and by a factor ×2 (reported beside, the old rule's factor) when it is below 1 / FACTOR_D
FACTOR_D = 2.0
#: Appendix D: a digit whose baseline 1 − cos(g_x, ·) is ≤ this has both errors at float resolution (no ratio)
BASELINE_FLOOR = 1e-8
#: Appendix D's paper protocol: the paper's largest ℓ2 error (1e-4), and a loose bound 1e-2 beside
HI_D, LOOSE_D = 1e-4, 1e-2
#: Appendix J: the bound on the median per-digit value at the attack β (λ₁: the paper's own upper end
#: 1e-2; gates: 5 % of the ReLU units, a 1-in-20 change of the gating A2 freezes), and ×2 looser beside
J_BOUNDS = {"eig_rel_change": 1e-2, "flip_fraction": 0.05}
J_FACTOR = 2.0

SETTING = ("{n_samples} seeded test digits per network, networks {networks} (seeds {seeds}), {dtype}; "
           "test acc.: {acc}; networks below the accuracy floor " + f"{ACCURACY_FLOOR} are not testable")
_SYM = {"l2": "ℓ2", "linf": "ℓ∞"}
_STAT = "median over digits, 95 % hierarchical bootstrap (networks, then digits)"

D_PAPER = {norm: ClaimText(
    id=f"appendix.d_{norm}", claim=f"(paper protocol) Appendix D: Theorem 2 matches few-step {_SYM[norm]}-PGD",
    paper=paper,
    protocol="{pgd_steps}-step PGD from x, α = ε/steps, no random start, no clip, A2; δ̂ from Theorem 2 with the "
             "attack's H̄_z and β matched to its norm; {setting}",
    measured="per-digit 1 − cos, " + _STAT + ", every digit: {tests}",
    baselines="1 − cos(g_x, ·), median over digits: {first_order}",
    controls="mean over digits, range over networks (free gating, clip, Madry's α): {controls}",
    rule="per attack: the median is below {hi:g} when its interval at level {level:.4g} (Bonferroni over the {k} "
         "attacks) lies below, above it when the interval lies above, else inconclusive; the claim: holds when every "
         "attack holds, does not hold when none does, holds partly when some do and the rest do not, else "
         "inconclusive; not testable with fewer than {min_digits} digits; beside: the same at {loose:g}")
    for norm, paper in (("l2", "1 − cos(δ̂, δ^(ℓ2)) = 1e-6 … 1e-4"),
                        ("linf", "1 − cos(Cδ̂/‖δ̂‖, δ^(effective,ℓ∞)) = 3.4e-5 on average"))}

D_BEATS_GX = {(norm, gating): ClaimText(
    id=f"appendix.d_{norm}_beats_gx_{gating}",
    claim=f"Appendix D: Theorem 2 matches {_SYM[norm]}-PGD better than g_x alone ({gating} gating)",
    paper="not in the paper (the paper has no baseline)",
    protocol=f"{{pgd_steps}}-step {_SYM[norm]}-PGD, α = ε/steps, no clip, ε grid {{eps_grid}}; {{setting}}",
    measured="regime map: {regime}. Per ε, median ratio (1 − cos Theorem 2) / (1 − cos g_x) over the digits the "
             "attack did not flip [interval]: {per_eps}",
    baselines="1 − cos(g_x, ·) and 1 − cos(δ̂, ·), medians over those digits: {errors}",
    controls="digits the attack flipped (reported apart, not in the verdict): {flipped}",
    rule="per digit correctly classified at x and never flipped by the attack, the ratio r = (1 − cos(δ̂, ·)) / "
         "(1 − cos(g_x, ·)) (digits whose baseline is ≤ {floor:g} dropped: float resolution); per ε, the median r "
         "is below 1 when its interval at level {level:.4g} (Bonferroni over the {k} ε) lies below 1, above when it "
         "lies above, else inconclusive, not testable with fewer than {min_digits} such digits; the claim: holds "
         "when every ε holds, does not hold when every ε does not, holds partly when some hold and the rest do "
         "not, else inconclusive; beside: the same at 1/{factor:g} (beats by ×{factor:g})")
    for norm in ("l2", "linf") for gating in ("frozen", "free")}

J_CLAIMS = {key: ClaimText(
    id=f"appendix.{cid}", claim=f"Appendix J: the attack barely changes {what} (at attack strength)", paper=paper,
    protocol="raw attack, free gating, {raw_steps} steps, β grid {betas}; {setting}",
    measured="per digit at each network's attack β, " + _STAT + ": {value} [{lo}, {hi}] over {n} digits of {s} "
             "networks; per network: {at_attack}. Pooled median per β: {per_beta}",
    rule="the median is below {bound:g} when its 95 % interval lies below, above it when the interval lies above, "
         "else inconclusive; the attack β of a network: the smallest β of the grid at which the raw attack flips "
         "≥ {flips:g} of its correctly classified digits (the largest β if none does); not testable with fewer than "
         "{min_digits} digits; beside: the same at {loose:g}")
    for cid, key, what, paper in (
        ("j_eigenvalue", "eig_rel_change", "the top eigenvalue of H̄_x", "relative change 1e-4 … 1e-2"),
        ("j_gates", "flip_fraction", "the gating states", "few gates flip (no number in the main text)"))}


def _iv(t: dict) -> str:
    st = t["statistic"]
    return f"{C.fmt(st['value'])} [{C.fmt(st['ci'][0])}, {C.fmt(st['ci'][1])}] (n={st['n_digits']})"


def _median(groups) -> float:
    v = np.concatenate([np.asarray(g, np.float64).ravel() for g in groups] or [np.array([])])
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def _setting(results: dict, nets) -> str:
    acc = ", ".join(f"{lbl} {C.fmt(r.get('test_accuracy'), 3)}" for lbl, _, r, _ in nets)
    models = sorted({r["model"] for _, _, r, _ in nets})
    seeds = sorted({s for _, s, _, _ in nets})
    return SETTING.format(n_samples=results.get("n_samples"), networks=", ".join(models), seeds=seeds,
                          dtype=results.get("dtype"), acc=acc)


def _d_paper(results: dict, norm: str, nets, setting: str) -> dict | None:
    """Appendix D under the paper's protocol: per unclipped attack of ``norm``, the median per-digit
    1 − cos under A2 below the paper's 1e-4 (``None`` when none ran)."""
    labels = [v[0] for v in PGD_VARIANTS if v[1] == norm and v[3] is None]
    labels = [lbl for lbl in labels if nets and any(a["attack"] == lbl for a in nets[0][2].get("appendix_d", []))]
    if not labels:
        return None
    k = len(labels)
    level = 1 - ALPHA / k

    def att(r, lbl):
        return next(a for a in r["appendix_d"] if a["attack"] == lbl)["frozen"]["digits"]

    tests = [dict(test(f"median 1 − cos ({lbl}, A2)", nets, lambda r, lbl=lbl: att(r, lbl)["one_minus_cos"], HI_D,
                       beside=LOOSE_D, level=level), label=lbl) for lbl in labels]
    fam = family(tests)
    live = [r for _, _, r, ok in nets if ok]
    base = {lbl: C.fmt(_median([att(r, lbl)["one_minus_cos_first_order"] for r in live])) for lbl in labels}
    first = "; ".join(f"{lbl}: {b}" for lbl, b in base.items())
    summ = results.get("summary", {}).get("one_minus_cos_range") or {}
    ctl = "; ".join(f"{lbl} ({g}): {C.fmt(v[0])} … {C.fmt(v[1])}" for lbl, per in summ.items() if lbl.startswith(norm)
                    for g, v in per.items() if v and (g == "free" or lbl not in labels))
    text = "; ".join(f"{t['label']}: {_iv(t)} → {t['verdict']} (≤ {LOOSE_D:g}: {t['statistic']['beside']['verdict']})"
                     for t in tests)
    cause = None
    if fam["verdict"] != "holds":
        cause = "; ".join(f"{t['label']}: median 1 − cos {_iv(t)} against the paper's {HI_D:g} ({t['verdict']}); "
                          f"g_x alone {base[t['label']]}"
                          for t in tests if t["verdict"] != "holds")
    values = dict(pgd_steps=results.get("pgd_steps"), setting=setting, tests=text, first_order=first,
                  controls=ctl or "—", hi=HI_D, loose=LOOSE_D, level=level, k=k, min_digits=MIN_DIGITS)
    return render(D_PAPER[norm], values, cause=cause, **fam)


def _d_beats_gx(results: dict, norm: str, gating: str, nets, setting: str) -> dict | None:
    """Appendix D against ``g_x`` alone over the ε grid: per ε the median per-digit error ratio."""
    eps = sorted({e["eps"] for _, _, r, _ in nets for e in r.get("appendix_d_eps", [])
                  if e["norm"] == norm and e["gating"] == gating})
    if not eps:
        return None
    k, level = len(eps), 1 - ALPHA / len(eps)

    def row(r, e):
        return next(a for a in r["appendix_d_eps"] if a["norm"] == norm and a["gating"] == gating and a["eps"] == e)

    def part(r, e, which, vals=None):
        d = row(r, e)["digits"]
        return digit_split(d, digit_ratio(d, floor=BASELINE_FLOOR) if vals is None else d[vals])[which]

    tests = [dict(test(f"median ratio 1 − cos (Theorem 2 / g_x), {_SYM[norm]} ε={e:g}", nets,
                       lambda r, e=e: part(r, e, "unflipped"), RATIO, beside=RATIO / FACTOR_D, level=level),
                  label=f"ε={e:g}") for e in eps]
    fam = family(tests)
    reg = regime(tests, eps)
    fam["statistic"]["regime"] = {k_: v for k_, v in reg.items() if k_ != "text"}
    live = [r for _, _, r, ok in nets if ok]
    errs = {e: tuple(_median([part(r, e, "unflipped", key) for r in live])
                     for key in ("one_minus_cos", "one_minus_cos_first_order", "flip_fraction")) for e in eps}
    flipped = {e: [part(r, e, "flipped") for r in live] for e in eps}
    per_eps = "; ".join(f"{t['label']}: {_iv(t)} → {t['verdict']} (×{FACTOR_D:g}: "
                        f"{t['statistic']['beside']['verdict']})" for t in tests)
    errors = "; ".join(f"ε={e:g}: g_x {C.fmt(b)}, Theorem 2 {C.fmt(c)}" for e, (c, b, _) in errs.items())
    flip_txt = "; ".join(f"ε={e:g}: {sum(len(g) for g in fl)} digits, median ratio {C.fmt(_median(fl))}"
                         for e, fl in flipped.items())
    cause = None
    if fam["verdict"] != "holds":
        bad = [(e, t) for e, t in zip(eps, tests) if t["verdict"] != "holds"]
        gate = ", median fraction of flipped ReLU gates {g}" if gating == "free" else ""
        cause = "; ".join(
            f"ε={e:g}: {t['verdict']}, median ratio {_iv(t)}: Theorem 2's median error {C.fmt(errs[e][0])} against "
            f"g_x's {C.fmt(errs[e][1])}" + gate.format(g=C.fmt(errs[e][2]))
            + (f" (fewer than {MIN_DIGITS} unflipped digits: the attack flipped the rest)"
               if t["verdict"] == "not testable" else "")
            for e, t in bad)
    values = dict(pgd_steps=results.get("pgd_steps"), setting=setting, eps_grid=eps, regime=reg["text"],
                  per_eps=per_eps, errors=errors, flipped=flip_txt, floor=BASELINE_FLOOR, level=level, k=k,
                  factor=FACTOR_D, min_digits=MIN_DIGITS)
    return render(D_BEATS_GX[norm, gating], values, cause=cause, **fam)


def _j(results: dict, key: str, nets, setting: str) -> dict | None:
    """Appendix J: the median per-digit value at each network's attack β below its bound."""
    if not any(r.get("appendix_j_raw") for _, _, r, _ in nets):
        return None
    bound = J_BOUNDS[key]
    t = test(f"median {key} at the attack β", nets, lambda r: attack_row(r["appendix_j_raw"])["digits"][key], bound,
             beside=bound * J_FACTOR)
    live = [r for _, _, r, ok in nets if ok]
    betas = [j["beta"] for j in live[0]["appendix_j_raw"]] if live else []
    at_b = {b: [j["digits"][key] for r in live for j in r["appendix_j_raw"] if j["beta"] == b] for b in betas}
    per_beta = "; ".join(f"β={b:g}: {C.fmt(_median(g))}" for b, g in at_b.items())
    at = ", ".join(f"{lbl} (β={attack_row(r['appendix_j_raw'])['beta']:g}, flipped "
                   f"{C.fmt(attack_row(r['appendix_j_raw'])['label_flips'])}) {C.fmt(p['value'])}"
                   for (lbl, _, r, ok), p in zip([n for n in nets if n[3]], t["per_seed"]))
    st = t["statistic"]
    cause = None
    if t["verdict"] != "holds":
        worst = [p for p in t["per_seed"] if p["verdict"] not in ("holds", "not testable")]
        cause = (f"median {C.fmt(st['value'])} [{C.fmt(st['ci'][0])}, {C.fmt(st['ci'][1])}] against the bound "
                 f"{bound:g} ({t['verdict']}); networks not below it alone: "
                 + (", ".join(f"{p['network']} {C.fmt(p['value'])}" for p in worst) or "none"))
    values = dict(raw_steps=results.get("raw_steps"), betas=betas, setting=setting, value=C.fmt(st["value"]),
                  lo=C.fmt(st["ci"][0]), hi=C.fmt(st["ci"][1]), n=st["n_digits"], s=st["n_seeds"], at_attack=at,
                  per_beta=per_beta, bound=bound, flips=ATTACK_FLIPS, loose=bound * J_FACTOR, min_digits=MIN_DIGITS)
    return render(J_CLAIMS[key], values, cause=cause, **t)


def claims(results: dict) -> list[dict]:
    """Appendix D (Theorem 2 matches few-step ℓ2 / ℓ∞ PGD; better than ``g_x`` alone, frozen and
    free) and J (the attack barely changes λ₁ of H̄_x and the gates), from the per-digit values."""
    nets = networks(results)
    setting = _setting(results, nets)
    out = [_d_paper(results, norm, nets, setting) for norm in ("l2", "linf")]
    out += [_d_beats_gx(results, norm, gating, nets, setting) for norm, gating in D_BEATS_GX]
    out += [_j(results, key, nets, setting) for key in J_CLAIMS]
    return [c for c in out if c is not None]
