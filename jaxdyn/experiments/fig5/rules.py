"""Figure 5's claims (:func:`jaxdyn.experiments.fig5.claims`): the values and verdicts that fill their
words (:mod:`jaxdyn.experiments.fig5.texts`).

C.8 against its controls, the paper protocol and Theorem 6 are families of per-layer tests: per
network, comparison and layer the median over digits and seeds of a per-digit log-ratio with a
hierarchical bootstrap interval and bootstrap p-values
(:func:`jaxdyn.analyses.instability.bootstrap_family`), Holm over the family, the symmetric verdicts
combined (:func:`jaxdyn.analyses.verdicts.combine`). The sharpness extension is one value per network
(:func:`jaxdyn.analyses.verdicts.decide` over networks). A network below the accuracy floor
(``accuracy_floor`` of the config, :data:`ACCURACY_FLOOR` for results without it) is left out:
"not testable", never "does not hold".
"""

from __future__ import annotations

import math

import numpy as np

from jaxdyn.analyses import curvature
from jaxdyn.analyses.instability import (MIN_DIGITS, N_RESAMPLES, VERDICT_CONTROLS, bootstrap_family, control_tests,
                                         log_ratios)
from jaxdyn.analyses.verdicts import combine, decide
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import ACCURACY_FLOOR, render
from jaxdyn.experiments.fig5.texts import TEXTS

__all__ = ["claims", "TEXTS", "family_fields", "runs_of"]

_X2 = math.log(2.0)


def _ratio(v) -> str:
    return "—" if v is None or not math.isfinite(v) else f"×{C.fmt(math.exp(v))}"


def _rec_text(r: dict) -> str:
    return (f"{r['network']} {r['comparison']} layer {r['layer']} ({_ratio(r['value'])} "
            f"[{_ratio(r['ci'][0])}, {_ratio(r['ci'][1])}])")


def family_fields(recs: list[dict], *, name: str, per_seed_recs: dict, floor_text: str = "") -> dict:
    """The claim fields of a family of per-layer tests (records of
    :func:`jaxdyn.analyses.instability.bootstrap_family`): ``verdict`` (combined), ``statistic`` (the
    weakest test with its interval, the counts, every test), ``per_seed`` (the family on each seed's
    digits alone: ``per_seed_recs`` seed -> its records) and ``cause`` (``None`` when it holds)."""
    vs = [r["verdict"] for r in recs]
    v = str(combine(vs))
    ok = [r for r in recs if r["verdict"] != "not testable"]
    weak = min(ok, key=lambda r: r["value"]) if ok else dict(value=float("nan"), ci=[float("nan")] * 2)
    stat = dict(name=f"{name}: median over digits and seeds of the per-digit log-ratio, weakest test", unit="log",
                value=weak["value"], ci=list(weak["ci"]), level=0.95, threshold=0.0, side="above",
                weakest=_rec_text(weak) if ok else None,
                n_digits=max((r["n_digits"] for r in recs), default=0),
                n_seeds=max((r["n_seeds"] for r in recs), default=0), n_tests=len(recs), correction="Holm",
                n_resamples=N_RESAMPLES, n_above_x2=sum(r["ci"][0] > _X2 for r in ok), left_out=floor_text or None,
                **{f"n_{k.replace(' ', '_')}": vs.count(k) for k in ("holds", "does not hold", "inconclusive",
                                                                      "not testable")},
                tests=recs)
    per_seed = []
    for s, rs in per_seed_recs.items():
        okr = [r for r in rs if r["verdict"] != "not testable"]
        per_seed.append(dict(seed=int(s), value=min((r["value"] for r in okr), default=float("nan")),
                             verdict=str(combine([r["verdict"] for r in rs])),
                             n_digits=max((r["n_digits"] for r in rs), default=0)))
    cause = None
    if v != "holds" and not recs:
        cause = floor_text or "no test measured"
    elif v != "holds":
        bad = [r for r in recs if r["verdict"] != "holds"]
        parts = [f"{k}: {vs.count(k)}/{len(vs)}" for k in ("holds", "does not hold", "inconclusive", "not testable")
                 if vs.count(k)]
        cause = (f"after Holm over the family, {'; '.join(parts)}; not holding: "
                 + ", ".join(f"{r['verdict']} {_rec_text(r)}" for r in bad[:12]) + (" …" if len(bad) > 12 else "")
                 + (f"; {floor_text}" if floor_text else ""))
    return dict(verdict=v, statistic=stat, per_seed=per_seed, cause=cause)


def _acc(entry: dict, run: str):
    return (entry["instability"].get(run) or {}).get("test_accuracy")


def _ok(entry: dict, runs, floor: float) -> bool:
    return all(not (a is not None and math.isfinite(a) and a < floor) for a in (_acc(entry, r) for r in runs))


def runs_of(models: dict, floor: float, runs=("standard",)) -> tuple[dict, str]:
    """``({network: [its entries (one per seed) whose trainings ``runs`` reach the floor]}, the text
    naming the left-out ones with their accuracies)``."""
    keep = {m: [e for e in es if _ok(e, runs, floor)] for m, es in models.items()}
    low = [f"{m} seed {e['seed']} ({', '.join(f'{r} {C.fmt(_acc(e, r), 3)}' for r in runs)})"
           for m, es in models.items() for e in es if not _ok(e, runs, floor)]
    return keep, (f"below the accuracy floor {floor}, left out: {'; '.join(low)}" if low else "")


def _family(models, floor, runs, tests_of, *, name):
    keep, floor_text = runs_of(models, floor, runs)
    recs = bootstrap_family(tests_of(keep))
    seeds = sorted({e["seed"] for es in models.values() for e in es})  # a left-out seed: "not testable"
    per = {s: bootstrap_family(tests_of({m: [e for e in es if e["seed"] == s] for m, es in keep.items()}))
           for s in seeds}
    return recs, family_fields(recs, name=name, per_seed_recs=per, floor_text=floor_text)


def _median(xs) -> float:
    a = np.asarray([v for v in np.ravel(np.asarray(xs, dtype=float)) if math.isfinite(v)])
    return float(np.median(a)) if a.size else float("nan")


def _layer_medians(recs, network, comparison) -> str:
    return ", ".join(_ratio(r["value"]) for r in recs if r["network"] == network and r["comparison"] == comparison)


def _pooled(es, key):
    return np.concatenate([np.asarray(e["instability"]["standard"][key], float) for e in es])


def _controls_text(m: str, es: list, recs: list) -> str:
    if not es:
        return f"{m}: no network above the floor"
    # the gradient step is descriptive: every digit (it rarely reaches the PGD loss: ``reached`` counts)
    gs = np.concatenate([log_ratios(dict(e["instability"]["standard"], reached=None), "grad_step") for e in es])
    n_reached = int(sum(np.sum(np.asarray(e["instability"]["standard"].get("reached", []), bool)) for e in es))
    d = {k: C.fmt(_median(_pooled(es, k))) for k in ("cos_random_grad", "random_l2_ratio", "gradient_share",
                                                      "loss_clean", "loss_adv", "loss_matched", "loss_random")}
    n_match = int(sum(np.sum(np.asarray(e["instability"]["standard"].get("matched", []), bool)) for e in es))
    step = ", ".join(_ratio(_median(gs[:, j])) for j in range(gs.shape[1]))
    return (f"{m}: median Δ^(adv)/Δ per layer against matched-loss clean digits "
            f"{_layer_medians(recs, m, 'matched_loss')}"
            f" ({n_match}/{sum(len(e['instability']['standard']['adv']) for e in es)} digits matched); against the "
            f"isotropic random direction {_layer_medians(recs, m, 'random_direction')} (clipped; median cos with ∇L "
            f"{d['cos_random_grad']}, ‖r‖/‖δ‖ after the clip {d['random_l2_ratio']}); against the ℓ2 gradient step "
            f"(a one-step attack, reported, not a control) {step}"
            f" (median sin θ to ∇L {d['gradient_share']}; PGD's loss reached on {n_reached} digits); median loss "
            f"clean {d['loss_clean']}, adversarial "
            f"{d['loss_adv']}, matched {d['loss_matched']}, random {d['loss_random']}")


def _paper_text(m: str, es: list, recs: list) -> str:
    if not es:
        return f"{m}: no network above the floor"
    mo, ma = np.nanmean(_pooled(es, "ori"), axis=0), np.nanmean(_pooled(es, "adv"), axis=0)
    return (f"{m}: median Δ^(adv)/Δ^(ori) per layer {_layer_medians(recs, m, 'ori')}; paper protocol (means over "
            f"digits and seeds): Δ^(adv) > Δ^(ori) in {int(np.sum(ma > mo))}/{len(mo)} layers, ratio of means "
            f"{', '.join(C.fmt(v) for v in ma / mo)}")


def _t6_text(m: str, ts: list, recs: list) -> str:
    if not ts:
        return f"{m}: no seed with both networks above the floor"
    return (f"{m}: median T_j(δ) ratio AT/vanilla per layer {_layer_medians(recs, m, 'at_vs_vanilla')}; δ/random on "
            f"the AT network {_layer_medians(recs, m, 'adv_vs_random')}; {sum(t['n_digits'] for t in ts)} digits; "
            f"median ‖δ‖₂ vanilla {C.fmt(_median([t['delta_l2_median']['standard'] for t in ts]))}, AT "
            f"{C.fmt(_median([t['delta_l2_median']['adversarial'] for t in ts]))}")


def _sharpness(models: dict, floor: float) -> tuple[dict, str]:
    keep, low = runs_of(models, floor, ("standard", "adversarial"))
    nets = [(m, e["seed"], e["sharpness_summary"]) for m, es in keep.items() for e in es if e.get("sharpness_summary")]
    d = decide("median over networks of log(λ_max end, adversarial training / standard training)",
               [[math.log(s["ratio_end"]) if s["ratio_end"] > 0 else float("nan")] for _, _, s in nets], 0.0,
               claim="above", seeds=[sd for _, sd, _ in nets], n_resamples=N_RESAMPLES)
    kept = {(m, sd) for m, sd, _ in nets}
    d["per_seed"] = [dict(r, network=m) for r, (m, _, _) in zip(d["per_seed"], nets)] + [
        dict(seed=int(e["seed"]), network=m, value=float("nan"), verdict="not testable")
        for m, es in models.items() for e in es if (m, e["seed"]) not in kept]
    text = "; ".join(f"{m} seed {sd}: λ_max end standard {C.fmt(s['lambda_standard_end'])} (clean loss), adversarial "
                     f"{C.fmt(s['lambda_adversarial_end'])} (adversarial loss), ratio {C.fmt(s['ratio_end'])} (mean "
                     f"along training {C.fmt(s['mean_ratio_along'])})" for m, sd, s in nets)
    cause = None
    if d["verdict"] != "holds":
        st = d["statistic"]
        cause = (f"median log-ratio {C.fmt(st['value'])}, 95 % interval [{C.fmt(st['ci'][0])}, {C.fmt(st['ci'][1])}] "
                 f"over {st['n_seeds']} networks; ratios {', '.join(C.fmt(s['ratio_end']) for _, _, s in nets) or '—'}"
                 + (f"; {low}" if low else ""))
    return dict(d, cause=cause), text or "not measured"


def claims(results: dict) -> list[dict]:
    """C.8 against the controls (the verdict), the paper's own comparison (paper protocol), the
    sharpness extension and Theorem 6 measured directly."""
    models, cfg = results["models"], results["config"]
    floor = cfg.get("accuracy_floor", ACCURACY_FLOOR)
    pg = cfg["pgd"]
    accs = "; ".join(f"{m} seed {e['seed']} standard {C.fmt(_acc(e, 'standard'), 3)}, adversarial "
                     f"{C.fmt(_acc(e, 'adversarial'), 3)}" for m, es in models.items() for e in es)
    common = dict(eta=cfg["eta"], normalizer=cfg["normalizer"], eps=pg["eps"], alpha=pg["alpha"], steps=pg["steps"],
                  n_samples=cfg["n_samples"], width=cfg["width"], dtype=results["dtype"], seeds=C.seeds_text(results),
                  match_pool=cfg.get("match_pool"), floor=floor, accs=accs, n_resamples=N_RESAMPLES,
                  min_digits=MIN_DIGITS)

    def inst(comparisons):
        return lambda keep: control_tests({m: [e["instability"]["standard"] for e in es] for m, es in keep.items()},
                                          comparisons)

    keep, _ = runs_of(models, floor)
    recs_c, f_ctl = _family(models, floor, ("standard",), inst(VERDICT_CONTROLS), name="Δ^(adv) / Δ^(control)")
    recs_p, f_pap = _family(models, floor, ("standard",), inst(("ori",)), name="Δ^(adv) / Δ^(ori)")
    f_sharp, sharp_text = _sharpness(models, floor)

    def t6(keep):
        return curvature.verdict_tests({m: [e["theorem6"] for e in es if e.get("theorem6")] for m, es in keep.items()})

    recs_6, f6 = _family(models, floor, ("standard", "adversarial"), t6, name="T_j ratio")
    keep6, _ = runs_of(models, floor, ("standard", "adversarial"))
    q = "log Δ^(adv) − log Δ^(control) (per digit)"
    return [
        render(TEXTS["fig5.instability_vs_controls"],
               dict(common, measured="; ".join(_controls_text(m, es, recs_c) for m, es in keep.items()), quantity=q,
                    k=2 * len(recs_c)), **f_ctl),
        render(TEXTS["fig5.instability"],
               dict(common, measured="; ".join(_paper_text(m, es, recs_p) for m, es in keep.items()),
                    quantity="log Δ^(adv) − log Δ^(ori)", k=2 * len(recs_p)), **f_pap),
        render(TEXTS["fig5.sharpness"], dict(track=cfg["track"], dtype_sharpness=results["dtype_sharpness"],
                                             seeds=common["seeds"], measured=sharp_text, floor=floor,
                                             n_resamples=N_RESAMPLES), **f_sharp),
        render(TEXTS["fig5.theorem6"],
               dict(common, measured="; ".join(_t6_text(m, [e["theorem6"] for e in es if e.get("theorem6")], recs_6)
                                               for m, es in keep6.items()) or "not measured",
                    quantity="log T_j (per digit)", k=2 * len(recs_6)), **f6),
    ]
