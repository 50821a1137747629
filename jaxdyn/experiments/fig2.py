"""Figure 2, conclusion C.2: perturbation and gradient norms grow exponentially with β = α m.

For VGG-11, AlexNet and ResNet-18 trained on MNIST (10 classes) and correctly classified test
digits, a fixed-step-size attack runs ``max_steps`` steps with its trajectory recorded: ``raw``
(A1, ``δ ← δ + α g``, the attack the theory describes) and the baselines ``l2`` (``α g/||g||``) and
``linf`` (``α sign g``), each with free gating (the real network) and frozen gating (A2; the
paper's subfigure (e); ℓ∞ left out there). No projection or clipping (A1). The x-axis is
``t / m_success`` (the first misclassified step); samples that never succeed are counted and left
out of the fits.

Step sizes are fixed along each attack (``β ∝ m``): the baselines take steps of ℓ2 length ``step``
(``α_linf = step / sqrt(n)``). The raw attack's steps grow with ``||g||`` and digits differ in
confidence by orders of magnitude, so its α is set per sample such that it succeeds after about
``raw_target`` steps under A2 (:func:`jaxdyn.attacks.multistep.calibrate_raw_alpha`): every trajectory is
resolved and ``α λ_1`` stays small (A3's regime, where Theorems 1 and 2 agree).

Every trajectory gets a least-squares fit of ``log ||·||`` against ``t`` on ``t ≤ m_success``
(rate and R², :func:`jaxdyn.analyses.metrics.growth_fits`) and, as a contrast, a linear fit. The raw
attack's measured rate is compared with the same fit to Theorem 2's curves at ``β = α t``
(:func:`jaxdyn.core.theory.theorem2_norms`, ``H̄_z`` averaged over the sample's trajectory up to
``m_success``, docs/spec.md), with ``α λ_1`` and with Theorem 1 (:func:`~jaxdyn.core.theory.theorem1_norms`).
The ``H̄_z`` of docs/spec.md weights steps by length, so the last (least confident) steps dominate; ``H_z`` at
the clean input gives the other end of the range (``rate_fit_grad_clean``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from jaxdyn.analyses.growth import (R2_EXP, RATE_CONST, RATE_FACTOR, RATE_FACTOR_LOOSE, classify_cell, growth_verdict,
                                    rate_verdict, summarize_run)
from jaxdyn.analyses.growth_runs import growth_curves, relative_grid
from jaxdyn.core.gating import GATINGS
from jaxdyn.core.models import model_names
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import ClaimText, render

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
                  max_steps=150, seeds=(0,), train=C.FIGURE_VANILLA["quick"]),
    "full": dict(models=("vgg11", "alexnet", "resnet18"), width=1.0, n_samples=100, step=0.02, raw_target=100,
                 max_steps=500, seeds=(0,), train=C.FIGURE_VANILLA["full"]),
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
    """Fig. 2 at ``cfg``: per network the trajectories, fits and Theorem-2 curves
    (:func:`jaxdyn.analyses.growth_runs.growth_curves`) and per (network, gating, attack) the medians
    (:func:`jaxdyn.analyses.growth.summarize_run`)."""
    C.enable_x64()
    x_pool, y_pool = C.fixed_digits(max(20 * cfg.n_samples, 200), seed=cfg.seeds[0])

    def one(name):
        t0 = time.perf_counter()
        model, variables, info = C.load_model(name, cfg.train, seed=cfg.seeds[0], overrides=dict(width=cfg.width),
                                              progress=progress)
        t1 = time.perf_counter()
        xs, ys, _ = C.correct_subset(model, variables, x_pool, y_pool, cfg.n_samples)
        res = growth_curves(model, variables, xs, ys, step=cfg.step, max_steps=cfg.max_steps,
                            raw_target=cfg.raw_target, progress=progress)
        res.update(test_accuracy=info.get("test_accuracy"), width=cfg.width, n_samples=int(len(xs)),
                   train=C.train_summary(info), time_s={"train_or_load": t1 - t0, "compute": time.perf_counter() - t1})
        return dict(model=res, summary={g: {nm: summarize_run(r) for nm, r in runs.items()}
                                        for g, runs in res["runs"].items()})

    done = C.by_piece(one, cfg.models, out=out, progress=progress, desc="fig2 models")
    return dict(dtype="float64", models={n: d["model"] for n, d in done.items()},
                summary={n: d["summary"] for n, d in done.items()})


#: the claims' words; the values are filled by :func:`claims` (``fmt``-formatted numbers)
PROTOCOL = ("{n_samples} test digits per network, width {width}, {dtype}, test acc. {acc}; raw attack: α fixed along "
            "the attack, set per digit so that it succeeds after {raw_target} steps under A2; ℓ2/ℓ∞ baselines: steps "
            "of ℓ2 length {step}; ≤ {max_steps} steps")
ACC = "{m} {acc}"
GROWTH = ClaimText(
    "fig2.growth", "C.2 (Fig. 2): ‖δ‖ and ‖g_{{x+δ}}‖ grow exponentially with β = αm",
    paper="exponential growth, clearer under frozen gating (subfigure e)", protocol=PROTOCOL,
    measured="{cells}{faster}", baselines="ℓ2 and ℓ∞ attacks with fixed step length (plotted, no verdict)",
    controls="a linear fit of the same window (R² beside each log-linear R²); the constant-rate test (log-linear rate "
             "of ‖g‖ on the two halves of the window)",
    rule="per (network, gating) cell of the raw attack: exponential = median R² of the log-linear fit ≥ {r2_exp} for "
         "‖δ‖ and ‖g‖, the log fit beats the linear one for at least half of the digits, and the median late/early "
         "rate ratio of log‖g‖ within [1/{rate_const:g}, {rate_const:g}] (above: faster than exponential); holds: "
         "every cell exponential ({n_exp}/{n_cells}); holds partly: every cell exponential or faster and at least half "
         "exponential; else does not hold")
RATE = ClaimText(
    "fig2.rate_vs_theorem2", "(extension) the growth rate is the one Theorem 2 predicts from H̄_x's eigenvalues",
    paper="not in the paper (it compares the curves by eye)", protocol=PROTOCOL, measured="{rates}",
    baselines="Theorem 1 (m steps) and Theorem 2 with H_z at the clean input",
    rule="median measured/predicted rate of ‖g‖ per (network, gating) cell (the prediction: the same fit to Theorem "
         "2's curve with H̄_z from the digit's trajectory); holds: every cell within a factor {rate_factor:g} "
         "({n_within}/{n_cells}); holds partly: every cell within a factor {rate_factor_loose:g}; else (or a cell "
         "without a rate) does not hold")
#: one cell's part of the measured texts
CELL = ("{cell}: {LABEL} — R²(log‖δ‖) {delta_r2} vs linear {delta_r2_linear}, R²(log‖g‖) {grad_r2} vs linear "
        "{grad_r2_linear}, rate of log‖g‖ in the 2nd half / 1st half {late_early} (Theorem 2's curve: "
        "{late_early_theory}), ‖g‖ grows ×{growth} in {steps} steps ({n_success}/{n} succeed)")
CELL_NONE = "{cell}: {label}"
FASTER = ". Growth FASTER THAN EXPONENTIAL (rate rising by more than ×{rate_const:g}) in: {cells}"
CELL_RATE = ("{cell}: measured/Theorem-2 rate of ‖g‖ {ratio} ({side} predicted; Theorem 1: {ratio_t1}), of ‖δ‖ "
             "{ratio_delta}; measured {rate}/step, Theorem 2 with SPEC's H̄_z {rate_theory}/step, with H_z at the "
             "clean input {rate_clean}/step; measured between the two for {between} of the digits")


def _cell_values(cell: str, s: dict, label: str) -> dict:
    """One cell's numbers for :data:`CELL` and :data:`CELL_RATE`, formatted."""
    fmt = C.fmt
    v = dict(cell=cell, label=label, LABEL=label.upper(), n_success=s["n_success"], n=s["n"],
             **{k: fmt(s[k], 3) for k in ("delta_r2", "delta_r2_linear", "grad_r2", "grad_r2_linear")},
             late_early=fmt(s["grad_rate_late_over_early"]),
             late_early_theory=fmt(s.get("grad_rate_late_over_early_theory")),
             growth=fmt(s["median_growth_grad"]), steps=fmt(s["median_success_step"]))
    if "grad_rate_ratio" in s:
        v.update(ratio=fmt(s["grad_rate_ratio"]), side="slower than" if s["grad_rate_ratio"] < 1 else "faster than",
                 ratio_t1=fmt(s["grad_rate_ratio_t1"]), ratio_delta=fmt(s["delta_rate_ratio"]),
                 rate=fmt(s["grad_rate"]), rate_theory=fmt(s["grad_rate_theory"]),
                 rate_clean=fmt(s["grad_rate_theory_clean"]), between=fmt(s["grad_frac_rate_between"]))
    return v


def claims(results: dict) -> list[dict]:
    """C.2 (exponential growth of the raw attack's norms, every cell) and the extension "the rate is
    Theorem 2's" (every cell); rules in :mod:`jaxdyn.analyses.growth`."""
    labels, ratios, measured, rates, faster = [], [], [], [], []
    for m, gs in results["summary"].items():
        for g in GATINGS:
            s = (gs.get(g) or {}).get("raw")
            lb = classify_cell(s)
            labels.append(lb)
            ratios.append(float("nan") if not s else s.get("grad_rate_ratio", float("nan")))
            if lb == "faster than exponential":
                faster.append(f"{m}/{g}")
            if not s or not s["n_success"]:
                measured.append(CELL_NONE.format(cell=f"{m}/{g}", label=lb))
                continue
            v = _cell_values(f"{m}/{g}", s, lb)
            measured.append(CELL.format_map(v))
            if "grad_rate_ratio" in s:
                rates.append(CELL_RATE.format_map(v))
    cfg = results["config"]
    values = dict(
        {k: cfg[k] for k in ("n_samples", "width", "raw_target", "step", "max_steps")}, dtype=results["dtype"],
        acc=", ".join(ACC.format(m=m, acc=C.fmt(d.get("test_accuracy"), 3)) for m, d in results["models"].items()),
        cells="; ".join(measured),
        faster=FASTER.format(rate_const=RATE_CONST, cells=", ".join(faster)) if faster else "",
        rates="; ".join(rates) or "no rate could be compared", r2_exp=R2_EXP, rate_const=RATE_CONST,
        rate_factor=RATE_FACTOR, rate_factor_loose=RATE_FACTOR_LOOSE, n_cells=len(labels),
        n_exp=sum(lb == "exponential" for lb in labels),
        n_within=sum(math.isfinite(r) and 1 / RATE_FACTOR < r < RATE_FACTOR for r in ratios))
    return [render(GROWTH, values, verdict=growth_verdict(labels)), render(RATE, values, verdict=rate_verdict(ratios))]


def plot(results: dict, out: Path) -> None:
    """``fig2_growth.png``: rows ``||δ||``, ``||g||`` (normalised by their value at ``m_success``,
    log scale) against ``t / m_success``; columns model x gating; median and inter-quartile band
    over samples per attack; for the raw attack, Theorem 2's curves with the ``H̄_z`` of docs/spec.md (dashed)
    and with ``H_z`` at the clean input (dotted), normalised the same way."""
    import matplotlib  # noqa: PLC0415 (matplotlib only when plotting; its backend is set here, not at import)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (after the backend)

    data, models = results, list(results["models"])
    cols = [(m, g) for m in models for g in GATINGS if g in data["models"][m]["runs"]]
    fig, axes = plt.subplots(2, len(cols), figsize=(3.2 * len(cols), 5.6), squeeze=False, sharex=True)
    grid = np.linspace(0, 1, 41)
    colors = {"raw": "C3", "l2": "C0", "linf": "C2"}
    for c, (m, gating) in enumerate(cols):
        runs = data["models"][m]["runs"][gating]
        for r, key in enumerate(("delta_norm", "grad_norm")):
            ax = axes[r, c]
            lo_data = None
            for norm, run in runs.items():
                rel = relative_grid(run[key], run["success_step"], grid)
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
                        th = relative_grid(run["theory"][k2], run["success_step"], grid)
                        with np.errstate(all="ignore"):
                            ax.plot(grid, np.nanmedian(th, axis=0), style, lw=1, label=lbl)
            ax.set_yscale("log")
            if lo_data is not None and lo_data > 0:  # keep the measured curves readable
                ax.set_ylim(bottom=lo_data / 3, top=1.5)
            if r == 0:
                ax.set_title(f"{m}, {gating} gating", fontsize=9)
                ax.set_ylabel("||δ^(t)|| / ||δ^(m_s)||" if c == 0 else "")
            else:
                ax.set_xlabel("t / m_success")
                ax.set_ylabel("||g_{x+δ^(t)}|| / ||g at m_s||" if c == 0 else "")
            if r == 0 and c == 0:
                ax.legend(fontsize=6)
    C.save_figure(fig, Path(out) / "fig2_growth.png",
                  title=f"Fig. 2 ({data['scale']} scale, {data['dtype']}): norms along attacks with fixed α")
