"""Figure 5's claims (:func:`jaxdyn.experiments.fig5.claims`): their words as templates
(:class:`~jaxdyn.experiments.claims.ClaimText`) and the values and verdicts that fill them.

C.8 against its controls and Theorem 6 are families of paired one-sided Wilcoxon tests (per network,
layer and comparison: :func:`jaxdyn.analyses.instability.control_tests`,
:func:`jaxdyn.analyses.curvature.verdict_tests`); each family is decided with Holm's correction over
all its one-sided p-values and the symmetric five verdicts (:func:`jaxdyn.analyses.verdicts.combine`).
A network below the accuracy floor (``accuracy_floor`` of the config, :data:`ACCURACY_FLOOR` for
results without it) is "not testable", never "does not hold".
"""

from __future__ import annotations

from jaxdyn.analyses import curvature
from jaxdyn.analyses.instability import MATCH_TOL, VERDICT_CONTROLS, control_tests, read_controls
from jaxdyn.analyses.verdicts import Verdict, combine
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import (ACCURACY_FLOOR, ClaimText, accuracy_floor_note, family_cause,
                                       family_statistic, render)

__all__ = ["claims", "TEXTS"]

_PAPER = "Δ^(adv) larger than Δ^(ori) (\"much higher\")"
_PROTOCOL = ("η = {eta}, D_j = {normalizer}, δ: ℓ∞ PGD ε = {eps}, α = {alpha}, {steps} steps; {n_samples} training "
             "digits per network, width {width}, {dtype}; matched-loss pool {match_pool} clean training digits; "
             "accuracy floor {floor}")
_HOLM = ("Holm's correction over all {k} one-sided p-values of the family at α = 0.05: a test holds when the excess "
         "is significant, does not hold when the deficit is, is inconclusive otherwise; the claim holds when every "
         "test holds ({n}/{t}), does not hold when every one does not, holds partly when some hold and the rest do "
         "not, is inconclusive otherwise; not testable for a network below the accuracy floor {floor} (test "
         "accuracy; a linear classifier reaches ~0.92 on MNIST: below the floor the network has collapsed); "
         "over digits of one network per architecture; seeds not yet resampled")

#: one template per claim, in the order of ``claims.json``
TEXTS = {t.id: t for t in (
    ClaimText(
        "fig5.instability_vs_controls",
        "C.8 (Fig. 5): adversarial examples make the weight gradient more unstable than inputs of the same loss "
        "level and perturbations of the same size", paper=_PAPER, protocol=_PROTOCOL, measured="{measured}",
        baselines="Δ^(ori) on the same digits (the paper's comparison, claim fig5.instability); the ℓ2 gradient step "
                  "of δ's norm, loss-matched (jaxdyn.analyses.instability.random_loss_matched; a one-step attack, so "
                  "not a control of 'adversarial')",
        controls="(a) Δ^(ori) on clean digits whose loss is within ×1.25 of the adversarial example's; (b) Δ on "
                 "x + r, r an isotropic Gaussian direction of the ℓ2 norm of δ, x + r clipped into [0, 1] as x + δ is "
                 "(jaxdyn.analyses.instability.random_direction)",
        rule="per layer of the standardly trained networks and per control, paired one-sided Wilcoxon signed-rank "
             "tests of log Δ^(adv) − log Δ^(control) over digits, each direction; " + _HOLM),
    ClaimText(
        "fig5.instability", "C.8 (Fig. 5), paper protocol: Δ^(adv) > Δ^(ori) on the same digits", paper=_PAPER,
        protocol=_PROTOCOL, measured="{measured}", baselines="Δ^(ori): the same one-layer step on the clean digit",
        controls="none in the paper's protocol (see fig5.instability_vs_controls: Δ rises with the loss level)",
        rule="layers with mean Δ^(adv) > Δ^(ori), pooled over networks: all ({greater}/{total}) holds, at least half "
             "holds partly"),
    ClaimText(
        "fig5.sharpness", "(extension) λ_max of the loss Hessian is larger along adversarial training",
        paper="not measured in the paper (Theorem 6 and the edge-of-stability literature)",
        protocol="power iteration on a fixed probe batch {track}, {dtype_sharpness}", measured="{measured}",
        baselines="λ_max along standard training",
        rule="per architecture: holds when the end-of-training λ_max (each run's own training loss) is larger for "
             "adversarial training, else does not hold (one number, no interval); holds: on every network, holds "
             "partly: on some; not testable for an architecture with a network below the accuracy floor {floor}; one "
             "network per architecture, seeds not yet resampled"),
    ClaimText(
        "fig5.theorem6",
        "Theorem 6 measured directly: the curvature an adversarial example adds to each layer (δ̂_i² H_h per row) "
        "is larger under adversarial training than vanilla, and than for a random perturbation of the same norm",
        paper="Theorem 6 / C.8 (the paper does not measure it)",
        protocol="T_j = tr Φ_Δa^* H_h Φ_Δa per layer (jaxdyn.analyses.curvature; Σ_i Δa_i² tr H_h for a dense "
                 "layer), H_h at the clean digit, δ as above; the first {n_samples} pool digits both networks "
                 "classify correctly; {dtype}",
        measured="{measured}",
        baselines="T_j(δ) of the standardly trained network on the same digits (its own PGD δ); the clean rows' T_j "
                  "(vanilla training's own curvature of the same rows, in 'measured')",
        controls="an isotropic Gaussian direction scaled to δ's ℓ2 norm, x + r clipped into [0, 1] as x + δ is, on "
                 "the adversarially trained network",
        rule="per network and layer, paired one-sided Wilcoxon signed-rank tests of log T_j over digits, each "
             "direction: the AT network's T_j(δ) against the vanilla network's and against the random direction; "
             + _HOLM),
)}

# the pieces of "measured" and "cause", one per network (or per test)
_TEST = "{network} {comparison} layer {layer}"
_PAPER_NET = ("{m} (standard training, acc. {acc}): Δ^(adv) > Δ^(ori) in {greater}/{n_layers} layers, ratio per "
              "layer {ratios}{paired}{adversarial}")
_PAPER_PAIRED = " (paired Wilcoxon p < 0.05 in {n_excess}/{n_layers})"
_PAPER_ADV = "; adversarially trained (acc. {acc}): {greater}/{n_layers} layers"
_CONTROLS_NET = "{m}: median Δ^(adv)/Δ per layer{matched}{random}{grad_step}{tail}"
_MATCHED = (" against matched-loss clean digits {ratios} ({n_pairs}/{n_samples} matched within ×{tol}, {n_distinct} "
            "distinct)")
_RANDOM = ("; against the isotropic random direction {ratios} (clipped; median cos with ∇L {cos}, ‖r‖/‖δ‖ after the "
           "clip {l2}, loss {loss})")
_NO_RANDOM = "; isotropic random direction not measured (results of an earlier version)"
_GRAD_STEP = ("; against the ℓ2 gradient step (a one-step attack, reported, not a control) {ratios} ({n_pairs} "
              "reached the loss; median sin θ to ∇L {share}, cos with δ {cos})")
_CONTROLS_TAIL = ("; uncorrected excess over the controls in layers {excess}, deficit in layers {deficit}; median loss "
                  "clean {clean}, adversarial {adv}, matched {matched}, gradient step {step}")
_SHARP_NET = ("{m}: λ_max at the end of standard training {std} (clean loss), of adversarial training {adv} "
              "(adversarial loss), ratio {ratio} (mean ratio along training {along})")
_SHARP_CAUSE = "{m}: {verdict} (ratio {ratio})"
_T6_NET = ("{m}: median T_j(δ) per layer, standard net {std}, adversarially trained {adv} (random direction "
           "{random}, clean rows {clean}); median ratio AT/vanilla {at} (excess in {at_excess}, deficit in "
           "{at_deficit} of {n_layers} layers), δ/random on AT {rnd} (excess {rnd_excess}, deficit {rnd_deficit}); "
           "on the standard net δ/random {rnd_std}; {n_digits} digits, median ‖δ‖₂ {l2_std} / {l2_adv}")


def _list(values) -> str:
    return ", ".join(C.fmt(v) for v in values)


def _layers(flags) -> str:
    return ", ".join(str(j + 1) for j, f in enumerate(flags) if f) or "none"


def _tests(tests) -> list[str]:
    return [_TEST.format(network=t.network, comparison=t.comparison, layer=t.layer + 1) for t in tests]


def _paper_text(m: str, s: dict, a: dict) -> str:
    pp, fmt = s.get("paper_protocol"), C.fmt
    return _PAPER_NET.format(
        m=m, acc=fmt(s.get("test_accuracy"), 3), greater=s["layers_adv_greater"], n_layers=s["n_layers"],
        ratios=_list(s["ratio"]),
        paired=_PAPER_PAIRED.format(n_excess=sum(pp["excess"]), n_layers=s["n_layers"]) if pp else "",
        adversarial=_PAPER_ADV.format(acc=fmt(a.get("test_accuracy"), 3), greater=a.get("layers_adv_greater"),
                                      n_layers=a.get("n_layers")) if a else "")


def _controls_text(m: str, s: dict, results: dict) -> str:
    fmt, ctl, los = C.fmt, read_controls(s), s.get("losses", {})
    ml, rd, gs = ctl.get("matched_loss"), ctl.get("random_direction"), ctl.get("grad_step")
    exc = [all(ctl[c]["excess"][j] for c in VERDICT_CONTROLS if c in ctl) for j in range(s["n_layers"])]
    dfc = [any(ctl[c]["deficit"][j] for c in VERDICT_CONTROLS if c in ctl) for j in range(s["n_layers"])]
    return _CONTROLS_NET.format(
        m=m,
        matched=_MATCHED.format(ratios=_list(ml["median_ratio"]), n_pairs=ml["n_pairs"], n_samples=s["n_samples"],
                                tol=results.get("match_tol", MATCH_TOL), n_distinct=ml.get("n_distinct"))
        if ml else "",
        random=_RANDOM.format(ratios=_list(rd["median_ratio"]), cos=fmt(rd.get("median_cos_with_grad")),
                              l2=fmt(rd.get("median_l2_ratio")), loss=fmt(los.get("loss_random")))
        if rd else _NO_RANDOM,
        grad_step=_GRAD_STEP.format(ratios=_list(gs["median_ratio"]), n_pairs=gs["n_pairs"],
                                    share=fmt(gs.get("median_gradient_share")), cos=fmt(gs.get("median_cos_with_adv")))
        if gs else "",
        tail=_CONTROLS_TAIL.format(excess=_layers(exc), deficit=_layers(dfc), clean=fmt(los.get("loss_clean")),
                                   adv=fmt(los.get("loss_adv")), matched=fmt(los.get("loss_matched")),
                                   step=fmt(los.get("loss_control"))))


def _t6_text(m: str, s: dict) -> str:
    med, a, r, fmt = s["median"], s["at_vs_vanilla"], s["adv_vs_random"], C.fmt
    return _T6_NET.format(
        m=m, std=_list(med["standard_adv"]), adv=_list(med["adversarial_adv"]), random=_list(med["adversarial_random"]),
        clean=_list(med["adversarial_clean"]), at=_list(a["median_ratio"]), at_excess=sum(a["excess"]),
        at_deficit=sum(a["deficit"]), n_layers=len(a["excess"]), rnd=_list(r["median_ratio"]),
        rnd_excess=sum(r["excess"]), rnd_deficit=sum(r["deficit"]),
        rnd_std=_list(s["adv_vs_random_standard"]["median_ratio"]), n_digits=s["n_digits"],
        l2_std=fmt(s["delta_l2_median"]["standard"]), l2_adv=fmt(s["delta_l2_median"]["adversarial"]))


def _family(tests, vs, floor_text, *, name, n_digits, seed) -> dict:
    """The verdict fields of a family decided after Holm: verdict, statistic, per_seed, cause."""
    v = str(combine(vs))
    stat = family_statistic(name, vs, n_digits=n_digits)
    cause = None if v == "holds" else family_cause(_tests(tests), vs) + ("; " + floor_text if floor_text else "")
    return dict(verdict=v, statistic=stat, cause=cause, per_seed=[dict(seed=int(seed), value=stat["value"], verdict=v)])


def _counts(vs: list, f: dict) -> dict:
    return dict(k=2 * len(vs), n=f["statistic"]["value"], t=len(vs))


def claims(results: dict) -> list[dict]:
    """C.8 against the controls (the verdict), the paper's own comparison (paper protocol), the
    sharpness extension and Theorem 6 measured directly."""
    models, cfg = results["models"], results["config"]
    floor, seed = cfg.get("accuracy_floor", ACCURACY_FLOOR), cfg.get("seeds", [0])[0]
    pg = cfg["pgd"]
    common = dict(eta=cfg["eta"], normalizer=cfg["normalizer"], eps=pg["eps"], alpha=pg["alpha"], steps=pg["steps"],
                  n_samples=cfg["n_samples"], width=cfg["width"], dtype=results["dtype"],
                  match_pool=cfg.get("match_pool"), floor=floor)
    std = {m: d["instability"]["standard"] for m, d in models.items()}

    # C.8 against the controls: Holm over networks × controls × layers
    ok, floor_text = accuracy_floor_note({m: s.get("test_accuracy") for m, s in std.items()}, floor)
    tests, vs = control_tests(std, testable=ok)
    ctl_parts = [_controls_text(m, s, results) for m, s in std.items() if s.get("controls")]
    f_ctl = _family(tests, vs, floor_text, name="layer × control tests with a significant excess after Holm",
                    n_digits=sum(int(s.get("n_samples") or 0) for s in std.values()), seed=seed)
    if not ctl_parts:
        f_ctl["cause"] = "no controls measured"

    # the paper's protocol: layers with mean Δ^(adv) > Δ^(ori), pooled over networks
    greater, total = sum(s["layers_adv_greater"] for s in std.values()), sum(s["n_layers"] for s in std.values())
    v_paper = ("holds" if total and greater == total else
               "holds partly" if total and greater / total >= 0.5 else "does not hold")
    paper_parts = [_paper_text(m, std[m], d["instability"].get("adversarial", {})) for m, d in models.items()]

    # sharpness: one number per architecture (no interval); a network below the floor: not testable
    accs = {m: min((d["instability"].get(r) or {}).get("test_accuracy") or 1.0 for r in ("standard", "adversarial"))
            for m, d in models.items()}
    ok_both, low = accuracy_floor_note(accs, floor)
    ss = results["sharpness_summary"]
    vs_sharp = [Verdict.NOT_TESTABLE if not ok_both.get(m, True) else
                Verdict.HOLDS if s["ratio_end"] > 1 else Verdict.DOES_NOT_HOLD for m, s in ss.items()]
    v_sharp = str(combine(vs_sharp))
    sharp_parts = [_SHARP_NET.format(m=m, std=C.fmt(s["lambda_standard_end"]), adv=C.fmt(s["lambda_adversarial_end"]),
                                     ratio=C.fmt(s["ratio_end"]), along=C.fmt(s["mean_ratio_along"]))
                   for m, s in ss.items()]
    sharp_cause = None if v_sharp == "holds" else "; ".join(
        _SHARP_CAUSE.format(m=m, verdict=str(w), ratio=C.fmt(s["ratio_end"])) for (m, s), w in zip(ss.items(), vs_sharp)
    ) + ("; " + low if low else "")

    # Theorem 6: Holm over networks × comparisons × layers
    t6 = {m: t for m, t in (results.get("theorem6") or {}).items() if t}
    tests6, vs6 = curvature.verdict_tests(t6, testable=ok_both)
    f6 = _family(tests6, vs6, low, name="layer × comparison tests with a significant excess after Holm",
                 n_digits=sum(int(t.get("n_digits") or 0) for t in t6.values()), seed=seed)
    if not t6:
        f6["cause"] = "Theorem 6 not measured"

    return [
        render(TEXTS["fig5.instability_vs_controls"],
               dict(common, measured="; ".join(ctl_parts) or "no controls measured", **_counts(vs, f_ctl)), **f_ctl),
        render(TEXTS["fig5.instability"], dict(common, measured="; ".join(paper_parts), greater=greater, total=total),
               verdict=v_paper),
        render(TEXTS["fig5.sharpness"], dict(track=cfg["track"], dtype_sharpness=results["dtype_sharpness"],
                                             measured="; ".join(sharp_parts) or "not measured", floor=floor),
               verdict=v_sharp, cause=sharp_cause),
        render(TEXTS["fig5.theorem6"],
               dict(common, measured="; ".join(_t6_text(m, t) for m, t in t6.items()) or "not measured",
                    **_counts(vs6, f6)), **f6),
    ]
