"""Figure 2, conclusion C.2: perturbation and gradient norms grow exponentially with β = α m.

For VGG-11, AlexNet and ResNet-18 trained on MNIST (10 classes), each architecture trained once per
seed (each seed its own network and its own correctly classified test digits), a fixed-step-size attack
runs ``max_steps`` steps with its trajectory recorded: ``raw`` (A1, ``δ ← δ + α g``, the attack the theory
describes) and the baselines ``l2`` (``α g/||g||``) and ``linf`` (``α sign g``), with free gating and
frozen gating (A2; ℓ∞ left out there). No projection or clipping (A1). The x-axis is ``t / m_success``.
The raw attack's α is set per digit so that it succeeds after about ``raw_target`` steps under A2
(:func:`jaxdyn.attacks.multistep.calibrate_raw_alpha`); the baselines take steps of ℓ2 length ``step``.

The claims are decided per digit over every network (:mod:`jaxdyn.analyses.growth`): C.2 by ΔR² (log-linear
against linear fit on ``t ≤ m_success``), its strict reading by the curvature of ``log ||g||``, the extension
by the measured / Theorem-2 rate (:func:`jaxdyn.core.theory.theorem2_norms`, the digit's ``H̄_z``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from jaxdyn.analyses.growth import (DR2_THRESHOLD, N_RESAMPLES, RATE_CONST, RATE_FACTOR, STAT_NAMES,
                                    claim_statistics, summarize_run)
from jaxdyn.analyses.growth_runs import growth_curves, relative_grid
from jaxdyn.core.gating import GATINGS
from jaxdyn.core.models import model_names
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import ACCURACY_FLOOR, ClaimText, render

name = "fig2"
title = "Figure 2 — exponential growth (C.2)"

_help = C.help_field
@dataclasses.dataclass(frozen=True)
class Config(C.NetworksConfig):
    """Zoo ``models`` (10 classes, standard training), ``n_samples`` correctly classified test digits."""

    width: float = _help("width multiplier of the networks")
    step: float = _help("ℓ2 length of the ℓ2 / ℓ∞ baselines' steps")
    raw_target: int = _help("success step of the raw attack under frozen gating that sets each digit's α")
    max_steps: int = _help("recorded steps of every attack")


SCALES = {
    "tiny": dict(models=("cnn3",), width=1 / 16, n_samples=2, step=0.2, raw_target=8, max_steps=20, seeds=(0,),
                 train=C.FIGURE_VANILLA["tiny"]),
    "quick": dict(models=("vgg11", "alexnet", "resnet18"), width=0.125, n_samples=8, step=0.05, raw_target=40,
                  max_steps=100, seeds=(0, 1), train=C.FIGURE_VANILLA["quick"]),
    "full": dict(models=("vgg11", "alexnet", "resnet18"), width=1.0, n_samples=100, step=0.02, raw_target=100,
                 max_steps=500, seeds=(0, 1, 2, 3, 4), train=C.FIGURE_VANILLA["full"]),
}


def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    cfg = C.make_config(Config, SCALES, scale, overrides)
    C.check_models(cfg.models, model_names(), what="fig2")
    for k in ("width", "step", "n_samples", "raw_target", "max_steps"):
        if not getattr(cfg, k) > 0:
            raise ValueError(f"{k} must be > 0, got {getattr(cfg, k)}")
    if cfg.raw_target > cfg.max_steps:
        raise ValueError(f"raw_target ({cfg.raw_target}) must be <= max_steps ({cfg.max_steps})")
    if not isinstance(cfg.train, dict):
        raise ValueError(f"train must be a dict of load_or_train arguments, got {cfg.train!r}")
    return cfg


def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Fig. 2 at ``cfg``: per network (architecture x seed: each seed its own trained network and its
    own digits) the trajectories, fits and Theorem-2 curves
    (:func:`jaxdyn.analyses.growth_runs.growth_curves`) and per (network, gating, attack) the medians
    (:func:`jaxdyn.analyses.growth.summarize_run`). ``models`` and ``summary`` are keyed by
    ``"<model>-seed<s>"``; each network records its ``model`` and ``seed``."""
    C.enable_x64()
    pairs = {f"{m}-seed{int(s)}": (m, int(s)) for m in cfg.models for s in cfg.seeds}

    def one(key):
        name, seed = pairs[key]
        t0, c0 = time.perf_counter(), time.process_time()
        model, variables, info = C.load_model(name, cfg.train, seed=seed, seeds=cfg.seeds,
                                              overrides=dict(width=cfg.width), progress=progress)
        t1, c1 = time.perf_counter(), time.process_time()
        x_pool, y_pool = C.fixed_digits(max(20 * cfg.n_samples, 200), seed=seed)
        xs, ys, _ = C.correct_subset(model, variables, x_pool, y_pool, cfg.n_samples)
        res = growth_curves(model, variables, xs, ys, step=cfg.step, max_steps=cfg.max_steps,
                            raw_target=cfg.raw_target, progress=progress)
        res.update(model=name, seed=seed, test_accuracy=info.get("test_accuracy"), width=cfg.width,
                   n_samples=int(len(xs)), train=C.train_summary(info),
                   time_s=dict(train_or_load=t1 - t0, compute=time.perf_counter() - t1, cpu_train_or_load=c1 - c0,
                               cpu_compute=time.process_time() - c1))
        return dict(model=res, summary={g: {k: summarize_run(r) for k, r in v.items()} for g, v in res["runs"].items()})

    done = C.by_piece(one, list(pairs), out=out, progress=progress, desc="fig2 networks")
    return dict(dtype="float64", seeds=list(cfg.seeds), models={k: d["model"] for k, d in done.items()},
                summary={k: d["summary"] for k, d in done.items()})


#: the claims' words; the values are filled by :func:`claims` (``fmt``-formatted numbers)
PROTOCOL = ("{n_samples} test digits per network and seed, seeds {seeds} (each its own network and digits), width "
            "{width}, {dtype}, test acc. {acc}; raw attack: α fixed along the attack, set per digit so that it "
            "succeeds after {raw_target} steps under A2; ℓ2/ℓ∞ baselines: steps of ℓ2 length {step}; "
            "≤ {max_steps} steps; digits never flipped: {n_never} of {n_runs} (digit, gating) runs, counted apart")
FAMILY = ("per (architecture, gating) cell the median over its digits (every seed) with a hierarchical bootstrap "
          "(networks, then digits; {n_resamples} resamples), tested against {bound} in both directions (bootstrap "
          "p-value: share of resamples beyond it), Holm over the {k} one-sided p-values of the {n_cells} cells at "
          "α 0.05; a cell holds / does not hold / is inconclusive; the claim holds when every testable cell holds, "
          "does not hold when every one does not, holds partly when some hold and the rest do not, else "
          "inconclusive; not testable without a flipped digit on a network at test accuracy ≥ {floor}; the "
          "statistic: the pooled {gating}-gating median over every network")
GROWTH = ClaimText(
    "fig2.growth", "C.2 (Fig. 2): ‖δ‖ and ‖g_{{x+δ}}‖ grow exponentially with β = αm",
    paper="exponential growth, clearer under frozen gating (subfigure e)", protocol=PROTOCOL,
    measured="median per-digit ΔR² (log-linear − linear, the smaller of ‖δ‖'s and ‖g‖'s) {value} {ci}; {cells}",
    baselines="ΔR² of ‖δ‖ alone {dr2_delta}, of ‖g‖ alone {dr2_grad}; ℓ2 and ℓ∞ attacks plotted (no verdict)",
    controls="the linear fit of the same window (a curvature-free attack: ‖g‖ constant, ‖δ‖ linear in β)",
    rule="per digit ΔR² = R²(log-linear) − R²(linear) of ‖δ‖ and of ‖g‖ on t ≤ m_success, the smaller of the two "
         "(both must grow exponentially); claim: median ΔR² > {threshold:g} (both fits have two parameters); " + FAMILY)
CONSTANT = ClaimText(
    "fig2.constant_rate", "C.2, strictly: the growth is exponential at a constant rate (log ‖g‖ a straight line)",
    paper="not tested in the paper (its curves are read by eye)", protocol=PROTOCOL,
    measured="median per-digit |ln(rate of log‖g‖ on the 2nd half / 1st half)| {value} {ci}; {cells}",
    baselines="the same ratio on Theorem 2's curve (one H̄_z: constant rate) {late_early_theory}",
    rule="per digit |ln(late/early rate of log‖g‖)| on t ≤ m_success; claim: median < ln {rate_const:g} (the rate "
         "changes by less than ×{rate_const:g}); " + FAMILY)
RATE = ClaimText(
    "fig2.rate_vs_theorem2", "(extension) the growth rate is the one Theorem 2 predicts from H̄_x's eigenvalues",
    paper="not in the paper (it compares the curves by eye)", protocol=PROTOCOL,
    measured="median per-digit measured/Theorem-2 rate of ‖g‖ {value} {ci} (×1: {side}); {cells}",
    baselines="Theorem 2 with H_z at the clean input: measured/predicted {rate_ratio_clean}; Theorem 1: "
              "{rate_ratio_t1}",
    rule="per digit the log-linear rate of ‖g‖ on t ≤ m_success over the same fit to Theorem 2's curve (H̄_z of "
         "docs/spec.md from the digit's trajectory); claim: median within ×{rate_factor:g} of 1 (in [{lo:g}, "
         "{hi:g}]); the side of ×1 reported beside it; " + FAMILY)
CELL = "{cell} {value} {ci} {verdict}"
#: the measured reason a verdict is not "holds", per claim (medians with intervals over every cell)
WHY = dict(growth="ΔR² of ‖δ‖ {dr2_delta}, of ‖g‖ {dr2_grad}",
           constant_rate="the rate of log‖g‖ changes ×{late_early} from the first to the second half of the window "
                         "(Theorem 2's curve: ×{late_early_theory}); λ₁ of H̄ along the trajectory is ×{lambda_growth} "
                         "that at the clean input",
           rate="measured/Theorem-2 rate {rate_ratio} ({side}); measured/Theorem 2 with H_z at the clean input "
                "{rate_ratio_clean} (the H̄_z of docs/spec.md weights steps by length: the last steps dominate it)")


def _ci(d: dict) -> str:
    return f"[{C.fmt(d['ci'][0], 3)}, {C.fmt(d['ci'][1], 3)}]"


def _cells(cells: list) -> str:
    return "; ".join(CELL.format(cell=c["cell"], value=C.fmt(c["value"], 3), ci=_ci(c), verdict=c["verdict"])
                     for c in cells)


def _cause(st: dict, text: str) -> str:
    cells = _cells([c for c in st["family"]["cells"] if c["verdict"] != "holds"])
    floor = f"networks below the accuracy floor {ACCURACY_FLOOR}: {', '.join(st['below_floor']) or 'none'}"
    if st["family"]["verdict"] == "not testable":
        return f"premise absent: {floor}; (digit, gating) runs never flipped {st['n_never']} of {st['n_runs']}"
    return f"{text}; cells not holding: {cells}" + (f"; {floor}" if st["below_floor"] else "")


def claims(results: dict) -> list[dict]:
    """C.2 (``fig2.growth``: ΔR² per digit), its strict reading (``fig2.constant_rate``) and the
    extension (``fig2.rate_vs_theorem2``), each over every network and digit
    (:func:`jaxdyn.analyses.growth.claim_statistics`)."""
    cfg = results["config"]
    nets = [dict(d, model=d.get("model", k), seed=d.get("seed", 0)) for k, d in results["models"].items()]
    seeds = list(results.get("seeds") or cfg.get("seeds") or sorted({n["seed"] for n in nets}))
    stats = claim_statistics(nets, seeds=seeds, gatings=GATINGS, floor=ACCURACY_FLOOR)
    fmt, out = C.fmt, []
    base = dict({k: cfg[k] for k in ("n_samples", "width", "raw_target", "step", "max_steps")}, dtype=results["dtype"],
                seeds=", ".join(map(str, seeds)), floor=ACCURACY_FLOOR, n_resamples=N_RESAMPLES,
                acc=", ".join(f"{n['model']}-seed{n['seed']} {fmt(n.get('test_accuracy'), 3)}" for n in nets),
                threshold=DR2_THRESHOLD, rate_const=RATE_CONST, rate_factor=RATE_FACTOR, lo=1 / RATE_FACTOR,
                hi=RATE_FACTOR, gating=GATINGS[0])
    for key, text in (("growth", GROWTH), ("constant_rate", CONSTANT), ("rate", RATE)):
        st, fam, head, q = stats[key], stats[key]["family"], stats[key]["headline"], stats[key]["quotes"]
        quote = {k: f"{fmt(v['value'], 3)} {_ci(v)}" for k, v in q.items()}
        bound = dict(growth=f"ΔR² {DR2_THRESHOLD:g}", constant_rate=f"ln {RATE_CONST:g}", rate=f"1/{RATE_FACTOR:g}, "
                     f"{RATE_FACTOR:g}")[key]
        lo, hi = head["ci"]
        side = ("undecided (interval straddles 1)" if not (hi < 1 or lo > 1) else
                "slower than predicted" if hi < 1 else "faster than predicted")
        values = dict(base, **quote, n_never=st["n_never"], n_runs=st["n_runs"], value=fmt(head["value"], 3),
                      ci=_ci(head), bound=bound, n_cells=len(fam["cells"]), side=side, cells=_cells(fam["cells"]),
                      k=2 * sum(c["n_digits"] > 0 for c in fam["cells"]))
        why = WHY[key].format(side=side, **quote)
        statistic = dict(name=STAT_NAMES[key], **head, cells=fam["cells"],
                         quotes=q, n_never=st["n_never"], correction="Holm over the cells")
        out.append(render(text, values, verdict=fam["verdict"], statistic=statistic, per_seed=fam["per_seed"],
                          cause=None if fam["verdict"] == "holds" else _cause(st, why)))
    return out


def plot(results: dict, out: Path) -> None:
    """``fig2_growth.png``: rows ``||δ||``, ``||g||`` (over their value at ``m_success``, log scale) against
    ``t / m_success``; columns architecture x gating (every seed's digits pooled); median and inter-quartile
    band per attack; for the raw attack, Theorem 2's curves with the ``H̄_z`` of docs/spec.md (dashed) and
    with ``H_z`` at the clean input (dotted)."""
    import matplotlib  # noqa: PLC0415 (matplotlib only when plotting; its backend is set here, not at import)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (after the backend)

    data, nets = results, {}  # nets: architecture -> its networks (one per seed), pooled in the figure
    for key, d in data["models"].items():
        nets.setdefault(d.get("model", key), []).append(d)
    cols = [(m, g) for m in nets for g in GATINGS if g in nets[m][0]["runs"]]
    fig, axes = plt.subplots(2, len(cols), figsize=(3.2 * len(cols), 5.6), squeeze=False, sharex=True)
    grid = np.linspace(0, 1, 41)
    colors = {"raw": "C3", "l2": "C0", "linf": "C2"}
    for c, (m, gating) in enumerate(cols):
        runs = [d["runs"][gating] for d in nets[m]]
        for r, key in enumerate(("delta_norm", "grad_norm")):
            ax = axes[r, c]
            lo_data = None
            for norm, run in runs[0].items():
                rel = np.concatenate([relative_grid(rs[norm][key], rs[norm]["success_step"], grid) for rs in runs])
                if len(rel) == 0:
                    continue
                with np.errstate(all="ignore"):
                    med = np.nanmedian(rel, axis=0)
                    lo, hi = np.nanpercentile(rel, [25, 75], axis=0)
                lbl = {"raw": "raw (A1)", "l2": "ℓ2", "linf": "ℓ∞"}[norm]
                ax.plot(grid, med, color=colors[norm], label=f"{lbl} (n={len(rel)})")
                ax.fill_between(grid, lo, hi, color=colors[norm], alpha=0.2, lw=0)
                pos = lo[1:][np.isfinite(lo[1:]) & (lo[1:] > 0)]
                if pos.size:
                    lo_data = pos.min() if lo_data is None else min(lo_data, pos.min())
                if norm == "raw" and "theory" in run:
                    for k2, style, lbl in ((key, "k--", "Theorem 2, SPEC's H̄_z"),
                                           (f"{key}_clean", "k:", "Theorem 2, H_z at x")):
                        th = np.concatenate([relative_grid(rs[norm]["theory"][k2], rs[norm]["success_step"], grid)
                                             for rs in runs])
                        with np.errstate(all="ignore"):
                            ax.plot(grid, np.nanmedian(th, axis=0), style, lw=1, label=lbl)
            ax.set_yscale("log")
            if lo_data is not None and lo_data > 0:  # keep the measured curves readable
                ax.set_ylim(bottom=lo_data / 3, top=1.5)
            if r == 0:
                ax.set_title(f"{m}, {gating} gating ({len(runs)} seeds)", fontsize=9)
                ax.set_ylabel("||δ^(t)|| / ||δ^(m_s)||" if c == 0 else "")
            else:
                ax.set_xlabel("t / m_success")
                ax.set_ylabel("||g_{x+δ^(t)}|| / ||g at m_s||" if c == 0 else "")
            if r == 0 and c == 0:
                ax.legend(fontsize=6)
    C.save_figure(fig, Path(out) / "fig2_growth.png",
                  title=f"Fig. 2 ({data['scale']} scale, {data['dtype']}): norms along attacks with fixed α")
