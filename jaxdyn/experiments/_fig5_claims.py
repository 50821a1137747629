"""Figure 5's claims (:func:`jaxdyn.experiments.fig5.claims`), split from :mod:`jaxdyn.experiments.fig5`
to keep each file short.

C.8 against its controls and Theorem 6 are families of paired one-sided Wilcoxon tests (per network,
layer and comparison); each family is decided with Holm's correction over all its one-sided p-values
and the symmetric five verdicts (:func:`jaxdyn.analyses.verdicts.holm_verdicts`, :func:`jaxdyn.analyses.verdicts.combine`).
A network below the accuracy floor (``accuracy_floor`` of the config, :data:`ACCURACY_FLOOR` for
results without it) is "not testable", never "does not hold".
"""

from __future__ import annotations

from jaxdyn.analyses import curvature
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import (ACCURACY_FLOOR, accuracy_floor_note, claim, family_cause,
                                       family_statistic)
from jaxdyn.analyses.instability import MATCH_TOL, VERDICT_CONTROLS, read_controls
from jaxdyn.analyses.verdicts import combine, holm_verdicts

__all__ = ["claims", "control_tests"]

_SEEDS = "over digits of one network per architecture; seeds not yet resampled"


def _layers_text(flags) -> str:
    return ", ".join(str(j + 1) for j, f in enumerate(flags) if f) or "none"


def control_tests(models: dict, *, floor: float, alpha: float = 0.05) -> tuple[list, list, str]:
    """``(labels, verdicts, floor_text)`` of C.8's family: per standardly trained network, control of
    :data:`~jaxdyn.analyses.instability.VERDICT_CONTROLS` and layer, the paired tests of ``Δ^(adv)`` against
    the control, Holm over all of them (a control not measured, e.g. the random direction in results
    of an earlier version, and a network below ``floor``: "not testable")."""
    ok, floor_text = accuracy_floor_note({m: d["instability"]["standard"].get("test_accuracy")
                                          for m, d in models.items()}, floor)
    labels, pc, pa = [], [], []
    for m, d in models.items():
        s = d["instability"]["standard"]
        ctl = read_controls(s)
        for c in VERDICT_CONTROLS:
            for j in range(s["n_layers"]):
                labels.append(f"{m} {c} layer {j + 1}")
                has = ok[m] and c in ctl
                pc.append(ctl[c]["p_greater"][j] if has else float("nan"))
                pa.append(ctl[c]["p_less"][j] if has else float("nan"))
    return labels, [str(v) for v in holm_verdicts(pc, pa, alpha=alpha)], floor_text


def _controls_text(m: str, s: dict, results: dict) -> str:
    fmt, ctl, los = C.fmt, read_controls(s), s.get("losses", {})
    ratios = lambda c: ", ".join(fmt(r) for r in ctl[c]["median_ratio"])  # noqa: E731
    parts = [f"{m}: median Δ^(adv)/Δ per layer"]
    if "matched_loss" in ctl:
        ml = ctl["matched_loss"]
        parts.append(f" against matched-loss clean digits {ratios('matched_loss')} ({ml['n_pairs']}/{s['n_samples']} "
                     f"matched within ×{results.get('match_tol', MATCH_TOL)}, {ml.get('n_distinct')} distinct)")
    if "random_direction" in ctl:
        rd = ctl["random_direction"]
        parts.append(f"; against the isotropic random direction {ratios('random_direction')} (clipped; median cos "
                     f"with ∇L {fmt(rd.get('median_cos_with_grad'))}, ‖r‖/‖δ‖ after the clip "
                     f"{fmt(rd.get('median_l2_ratio'))}, loss {fmt(los.get('loss_random'))})")
    else:
        parts.append("; isotropic random direction not measured (results of an earlier version)")
    if "grad_step" in ctl:
        gs = ctl["grad_step"]
        parts.append(f"; against the ℓ2 gradient step (a one-step attack, reported, not a control) "
                     f"{ratios('grad_step')} ({gs['n_pairs']} reached the loss; median sin θ to ∇L "
                     f"{fmt(gs.get('median_gradient_share'))}, "
                     f"cos with δ {fmt(gs.get('median_cos_with_adv'))})")
    exc = [all(ctl[c]["excess"][j] for c in VERDICT_CONTROLS if c in ctl) for j in range(s["n_layers"])]
    dfc = [any(ctl[c]["deficit"][j] for c in VERDICT_CONTROLS if c in ctl) for j in range(s["n_layers"])]
    parts.append(f"; uncorrected excess over the controls in layers {_layers_text(exc)}, deficit in layers "
                 f"{_layers_text(dfc)}; median loss clean {fmt(los.get('loss_clean'))}, adversarial "
                 f"{fmt(los.get('loss_adv'))}, matched {fmt(los.get('loss_matched'))}, gradient step "
                 f"{fmt(los.get('loss_control'))}")
    return "".join(parts)


def _family_fields(labels, vs, floor_text, *, name, n_digits, seed) -> dict:
    v = str(combine(vs))
    stat = family_statistic(name, vs, n_digits=n_digits)
    cause = None if v == "holds" else family_cause(labels, vs) + (f"; {floor_text}" if floor_text else "")
    return dict(verdict=v, statistic=stat, cause=cause, per_seed=[dict(seed=int(seed), value=stat["value"], verdict=v)])


def claims(results: dict) -> list[dict]:
    """C.8 against the controls (the verdict), the paper's own comparison (paper protocol), the
    sharpness extension and Theorem 6 measured directly."""
    fmt, models, cfg = C.fmt, results["models"], results["config"]
    floor, seed = cfg.get("accuracy_floor", ACCURACY_FLOOR), cfg.get("seed", 0)
    parts, ctl_parts, sharp, greater, total = [], [], [], 0, 0
    for m, d in models.items():
        s, a = d["instability"]["standard"], d["instability"].get("adversarial", {})
        greater, total = greater + s["layers_adv_greater"], total + s["n_layers"]
        pp = s.get("paper_protocol")
        parts.append(f"{m} (standard training, acc. {fmt(s.get('test_accuracy'), 3)}): Δ^(adv) > Δ^(ori) in "
                     f"{s['layers_adv_greater']}/{s['n_layers']} layers, ratio per layer "
                     f"{', '.join(fmt(r) for r in s['ratio'])}"
                     + (f" (paired Wilcoxon p < 0.05 in {sum(pp['excess'])}/{s['n_layers']})" if pp else "")
                     + (f"; adversarially trained (acc. {fmt(a.get('test_accuracy'), 3)}): "
                        f"{a.get('layers_adv_greater')}/{a.get('n_layers')} layers" if a else ""))
        if s.get("controls"):
            ctl_parts.append(_controls_text(m, s, results))
    labels, vs, floor_text = control_tests(models, floor=floor)
    n_std = sum(int(d["instability"]["standard"].get("n_samples") or 0) for d in models.values())
    f_ctl = _family_fields(labels, vs, floor_text, name="layer × control tests with a significant excess after Holm",
                           n_digits=n_std, seed=seed)
    if not ctl_parts:
        f_ctl["cause"] = "no controls measured"
    pg = cfg["pgd"]
    protocol = (f"η = {cfg['eta']}, D_j = {cfg['normalizer']}, δ: ℓ∞ PGD ε = {pg['eps']}, α = {pg['alpha']}, "
                f"{pg['steps']} steps; {cfg['n_samples']} training digits per network, width {cfg['width']}, "
                f"{results['dtype']}; matched-loss pool {cfg.get('match_pool')} clean training digits; accuracy floor "
                f"{floor}")
    v = ("holds" if total and greater == total else
         "holds partly" if total and greater / total >= 0.5 else "does not hold")
    # sharpness: one number per architecture (no interval); a network below the floor: not testable
    accs = {m: min((d["instability"].get(r) or {}).get("test_accuracy") or 1.0 for r in ("standard", "adversarial"))
            for m, d in models.items()}
    ok, low = accuracy_floor_note(accs, floor)
    ss = results["sharpness_summary"]
    for m, s in ss.items():
        sharp.append(f"{m}: λ_max at the end of standard training {fmt(s['lambda_standard_end'])} (clean loss), of "
                     f"adversarial training {fmt(s['lambda_adversarial_end'])} (adversarial loss), ratio "
                     f"{fmt(s['ratio_end'])} (mean ratio along training {fmt(s['mean_ratio_along'])})")
    vs_sharp = ["not testable" if not ok.get(m, True) else "holds" if s["ratio_end"] > 1 else "does not hold"
                for m, s in ss.items()]
    v_sharp = str(combine(vs_sharp))
    t6 = {m: t for m, t in (results.get("theorem6") or {}).items() if t}
    l6, v6s = curvature.verdict_tests(t6, testable=ok)
    n6 = sum(int(t.get("n_digits") or 0) for t in t6.values())
    f6 = _family_fields(l6, v6s, low, name="layer × comparison tests with a significant excess after Holm",
                        n_digits=n6, seed=seed)
    if not t6:
        f6["cause"] = "Theorem 6 not measured"
    holm = ("Holm's correction over all {k} one-sided p-values of the family at α = 0.05: a test holds when the excess "
            "is significant, does not hold when the deficit is, is inconclusive otherwise; the claim holds when every "
            "test holds ({n}/{t}), does not hold when every one does not, holds partly when some hold and the rest do "
            f"not, is inconclusive otherwise; not testable for a network below the accuracy floor {floor} (test "
            f"accuracy; a linear classifier reaches ~0.92 on MNIST: below the floor the network has collapsed); "
            f"{_SEEDS}")
    return [
        claim("fig5.instability_vs_controls",
              "C.8 (Fig. 5): adversarial examples make the weight gradient more unstable than inputs of the same "
              "loss level and perturbations of the same size", paper="Δ^(adv) larger than Δ^(ori) (\"much higher\")",
              protocol=protocol, measured="; ".join(ctl_parts) or "no controls measured",
              baselines="Δ^(ori) on the same digits (the paper's comparison, claim fig5.instability); the ℓ2 gradient "
                        "step of δ's norm, loss-matched (jaxdyn.analyses.instability.random_loss_matched; a one-step attack, "
                        "so not a control of 'adversarial')",
              controls="(a) Δ^(ori) on clean digits whose loss is within ×1.25 of the adversarial example's; (b) Δ on "
                       "x + r, r an isotropic Gaussian direction of the ℓ2 norm of δ, x + r clipped into [0, 1] as "
                       "x + δ is (jaxdyn.analyses.instability.random_direction)",
              rule="per layer of the standardly trained networks and per control, paired one-sided Wilcoxon "
                   "signed-rank tests of log Δ^(adv) − log Δ^(control) over digits, each direction; "
                   + holm.format(k=2 * len(vs), n=f_ctl["statistic"]["value"], t=len(vs)),
              **f_ctl),
        claim("fig5.instability", "C.8 (Fig. 5), paper protocol: Δ^(adv) > Δ^(ori) on the same digits",
              paper="Δ^(adv) larger than Δ^(ori) (\"much higher\")", protocol=protocol, measured="; ".join(parts),
              baselines="Δ^(ori): the same one-layer step on the clean digit",
              controls="none in the paper's protocol (see fig5.instability_vs_controls: Δ rises with the loss level)",
              rule=f"layers with mean Δ^(adv) > Δ^(ori), pooled over networks: all ({greater}/{total}) holds, at least "
                   f"half holds partly", verdict=v),
        claim("fig5.sharpness", "(extension) λ_max of the loss Hessian is larger along adversarial training",
              paper="not measured in the paper (Theorem 6 and the edge-of-stability literature)",
              protocol=f"power iteration on a fixed probe batch {cfg['track']}, {results['dtype_sharpness']}",
              measured="; ".join(sharp) or "not measured", baselines="λ_max along standard training",
              rule=f"per architecture: holds when the end-of-training λ_max (each run's own training loss) is larger "
                   f"for adversarial training, else does not hold (one number, no interval); holds: on every network, "
                   f"holds partly: on some; not testable for an architecture with a network below the accuracy floor "
                   f"{floor}; one network per architecture, seeds not yet resampled", verdict=v_sharp,
              cause=None if v_sharp == "holds" else "; ".join(
                  f"{m}: {w} (ratio {fmt(s['ratio_end'])})" for (m, s), w in zip(ss.items(), vs_sharp))
              + (f"; {low}" if low else "")),
        claim("fig5.theorem6", curvature.STATEMENT, **curvature.CLAIM_TEXT,
              protocol=f"T_j = tr Φ_Δa^* H_h Φ_Δa per layer (jaxdyn.analyses.curvature; Σ_i Δa_i² tr H_h for a dense layer), "
                       f"H_h at the clean digit, δ as above; the first {cfg['n_samples']} pool digits both networks "
                       f"classify correctly; {results['dtype']}",
              measured="; ".join(f"{m}: {curvature.describe(t, fmt)}" for m, t in t6.items()) or "not measured",
              rule="per network and layer, paired one-sided Wilcoxon signed-rank tests of log T_j over digits, each "
                   "direction: the AT network's T_j(δ) against the vanilla network's and against the random direction; "
                   + holm.format(k=2 * len(v6s), n=f6["statistic"]["value"], t=len(v6s)),
              **f6),
    ]
