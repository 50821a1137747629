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
import functools
import math
import time
from pathlib import Path


import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.attacks.multistep import NORMS, attack, calibrate_raw_alpha, logit_space_attack
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import claim
from jaxdyn.core.gating import GATINGS, input_jacobian
from jaxdyn.analyses.growth import (R2_EXP, RATE_CONST, RATE_FACTOR, RATE_FACTOR_LOOSE, classify_cell, growth_verdict,  # noqa: F401
                           free_attack_traced_norm, rate_verdict, summarize_run)
from jaxdyn.core.losses import grad_z, loss
from jaxdyn.analyses.metrics import growth_fits
from jaxdyn.core.models import logits_fn
from jaxdyn._internal.results import to_json_tree
from jaxdyn.core.theory import hbar_z_weighted, structured_eigenpairs, theorem1_norms, theorem2_norms

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
    "tiny": dict(models=("cnn3",), width=1 / 16, n_samples=2, step=0.2, raw_target=8, max_steps=20, seed=0,
                 train=C.FIGURE_VANILLA["tiny"]),
    "quick": dict(models=("vgg11", "alexnet", "resnet18"), width=0.125, n_samples=8, step=0.05, raw_target=40,
                  max_steps=150, seed=0, train=C.FIGURE_VANILLA["quick"]),
    "full": dict(models=("vgg11", "alexnet", "resnet18"), width=1.0, n_samples=100, step=0.02, raw_target=100,
                 max_steps=500, seed=0, train=C.FIGURE_VANILLA["full"]),
}

def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    from jaxdyn.core.models import model_names

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


# --- computation -----------------------------------------------------------------------------


def _attack_fn(model, norm: str, gating: str, steps: int):
    """A jitted ``(variables, x [B,...], y [B], alpha [B], J [B, C, n] or None) -> dict`` running one
    attack per sample (Fig. 2 runs the free-gating ones by :func:`_free_attack_fn`)."""
    def run(variables, x, y, alpha, jacobian=None):
        f = logits_fn(model, variables)
        def one(xi, yi, alpha, Ji):
            if gating == "frozen" and norm in ("raw", "l2"):
                # exact A2 attack in logit space (one Jacobian, given or computed, then C-dim steps)
                r = logit_space_attack(f, xi, yi, steps=steps, alpha=alpha, norm=norm, record=True, jacobian=Ji)
            else:
                r = attack(f, xi, yi, steps=steps, alpha=alpha, norm=norm, gating=gating, record=True)
            keep = ("delta_norm", "grad_norm", "step_norm", "H_z")
            return dict(success_step=r.success_step, **{k: r.trajectory[k] for k in keep})

        return jax.vmap(one)(x, y, alpha, jacobian)

    return jax.jit(run)


def _free_attack_fn(model, steps: int):
    """A jitted ``(variables, x, y, alpha, k) -> dict``: :func:`_attack_fn` under free gating with
    the norm ``NORMS[k]`` traced (:func:`jaxdyn.analyses.growth.free_attack_traced_norm`: one compile for
    the raw, ℓ2 and ℓ∞ attacks instead of three; the same numbers to float64 rounding)."""
    def run(variables, x, y, alpha, k):
        f = logits_fn(model, variables)
        def one(xi, yi, a):
            s, tr = free_attack_traced_norm(f, xi, yi, steps=steps, alpha=a, norm_index=k)
            return dict(success_step=s, **tr)

        return jax.vmap(one)(x, y, alpha)

    return jax.jit(run)


def _theory_fn(model, steps: int):
    """Jitted predicted norm curves for ``t = 0..steps`` (:func:`jaxdyn.core.theory.theorem2_norms`,
    ``β = αt``, and :func:`~jaxdyn.core.theory.theorem1_norms`) with the ``H̄_z`` of docs/spec.md averaged over each
    sample's trajectory up to its ``m_success``, and Theorem 2 with ``H_z`` at the clean input."""

    def run(variables, x, y, alpha, H_seq, step_norm, success_step, jacobian=None):
        f = logits_fn(model, variables)
        t = jnp.arange(steps + 1)
        tf = t.astype(x.dtype)

        def one(xi, yi, alpha, Hs, sn, ms, Ji):
            J = input_jacobian(f, xi) if Ji is None else Ji
            gx = J.T @ grad_z(f(xi), yi)
            hbar = hbar_z_weighted(Hs, sn, (t >= 1) & (t <= ms.astype(t.dtype) - 1))
            t2, t1 = theorem2_norms(J, gx, hbar, alpha * tf), theorem1_norms(J, gx, hbar, alpha, t)
            tc = theorem2_norms(J, gx, Hs[0], alpha * tf)
            return dict(lambda1=structured_eigenpairs(J, hbar)[0][0], grad_norm=t2.grad, delta_norm=t2.delta,
                        grad_norm_t1=t1.grad, delta_norm_t1=t1.delta,
                        lambda1_clean=structured_eigenpairs(J, Hs[0])[0][0], grad_norm_clean=tc.grad,
                        delta_norm_clean=tc.delta)

        return jax.vmap(one)(x, y, alpha, H_seq, step_norm, success_step, jacobian)

    return jax.jit(run)


def _fits(traj_delta, traj_grad, success):
    """:func:`jaxdyn.analyses.metrics.growth_fits` of ``||δ||`` (from ``t = 1``) and of ``||g||``."""
    return {"delta": growth_fits(traj_delta, success, start=1), "grad": growth_fits(traj_grad, success)}


def growth_curves(model, variables, x, y, *, step: float, max_steps: int, raw_target: int | None = None,
                  norms=NORMS, gatings=GATINGS, skip=(("frozen", "linf"),), progress: bool = True) -> dict:
    """Fig. 2's trajectories, fits and Theorem-2 rates for one network.

    ``x``: ``[N, 28, 28, 1]`` correctly classified digits, ``y``: ``[N]`` labels; ``step``: ℓ2
    length of the ℓ2 and ℓ∞ steps; ``max_steps``: ``m`` of the recorded scans; ``raw_target``: the
    raw attack's success step under A2 that sets each sample's α (``None``: one α_raw = step /
    median ||g_x||); ``skip``: ``(gating, norm)`` pairs left out (ℓ∞ under A2: the paper's frozen
    panel (e) shows the raw attack). Returns ``{"alpha": {norm: median α}, "alpha_raw": [N],
    "calibration_success_step": [N], "runs": {gating: {norm: {...}}}}``: per run the per-sample
    ``success_step``, ``delta_norm``/``grad_norm`` ``[N, max_steps+1]``, the fits and (raw attack)
    the Theorem-2 curves and rates, as nested lists.
    """
    dt = jax.tree.leaves(variables)[0].dtype
    x, y, n = jnp.asarray(x, dt), jnp.asarray(y), int(np.prod(x.shape[1:]))
    # the weights as a traced argument, not constants of the compiled graphs (faster compiles)
    f = jax.tree_util.Partial(lambda v, t: logits_fn(model, v)(t), variables)
    g0 = jax.jit(jax.vmap(lambda f, xi, yi: jnp.linalg.norm(jax.grad(lambda t: loss(f(t), yi))(xi)),
                          in_axes=(None, 0, 0)))(f, x, y)
    N, calib = x.shape[0], None
    alpha_raw = np.full(N, step / float(np.median(np.asarray(g0))))
    if raw_target is not None and "raw" in norms:  # α per sample
        calib = calibrate_raw_alpha(f, x, y, target=raw_target, max_steps=max_steps, alpha0=step / np.asarray(g0))
        alpha_raw = calib["alpha"]
    # the input Jacobians at the clean digits, computed once: the frozen (logit-space) attacks and
    # the Theorem-2 curves take them instead of compiling a Jacobian through the network each
    J = calib["jacobian"] if calib is not None else jax.jit(jax.vmap(input_jacobian, in_axes=(None, 0)))(f, x)
    alphas = {"raw": alpha_raw, "l2": np.full(N, step), "linf": np.full(N, step / math.sqrt(n))}
    theory, free = _theory_fn(model, max_steps), _free_attack_fn(model, max_steps)
    runs: dict = {g: {} for g in gatings}
    runs_wanted = {(g, nm) for g in gatings for nm in norms} - set(skip)
    bar = C.progress_bar(total=len(runs_wanted), enabled=progress, desc=f"fig2 {type(model).__name__}", leave=False)
    for gating in gatings:
        for norm in norms:
            if (gating, norm) not in runs_wanted:
                continue
            fn = (functools.partial(free, k=jnp.int32(NORMS.index(norm))) if gating == "free" else
                  functools.partial(_attack_fn(model, norm, gating, max_steps), jacobian=J))
            res = jax.device_get(fn(variables, x, y, jnp.asarray(alphas[norm], dt)))
            succ, d, g = (np.asarray(res[k]) for k in ("success_step", "delta_norm", "grad_norm"))
            ok = succ > 0
            run = dict(success_step=succ, delta_norm=d, grad_norm=g, fits=_fits(d, g, np.where(ok, succ, 0)),
                       n_success=int(ok.sum()), n=int(len(succ)),
                       growth_grad=np.where(ok, g[np.arange(len(g)), np.maximum(succ, 0)] / g[:, 0], np.nan))
            if norm == "raw":
                th = jax.device_get(theory(variables, x, y, jnp.asarray(alphas[norm], dt), res["H_z"],
                                           res["step_norm"], jnp.asarray(succ), J))
                win = jnp.where(ok, succ, 0)
                fit = {k: _fits(th[f"delta_norm{k}"], th[f"grad_norm{k}"], win) for k in ("", "_t1", "_clean")}
                run["theory"] = dict(
                    {k: th[k] for k in ("lambda1", "lambda1_clean", "delta_norm", "grad_norm", "delta_norm_clean",
                                        "grad_norm_clean")},
                    rate_asymptotic=alphas[norm] * th["lambda1"], alpha=alphas[norm],
                    r2_delta=fit[""]["delta"]["r2"], r2_grad=fit[""]["grad"]["r2"],
                    grad_late_over_early=fit[""]["grad"]["rate_late"] / fit[""]["grad"]["rate_early"],
                    **{f"rate_fit_{q}{k}": fit[k][q]["rate"] for k in fit for q in ("delta", "grad")})
            runs[gating][norm] = run
            bar.update()
    bar.close()
    return {"alpha": {k: float(np.median(v)) for k, v in alphas.items()}, "alpha_raw": np.asarray(alpha_raw).tolist(),
            "calibration_success_step": None if calib is None else calib["success_step"].tolist(),
            "runs": to_json_tree(runs)}


# --- plot ----------------------------------------------------------------------------------


def _relative_grid(traj, succ, grid):
    """Interpolate each successful trajectory, divided by its value at ``m_success``, onto
    ``grid`` of relative progress ``t / m_success``; returns ``[N_ok, len(grid)]``."""
    rows = []
    for v, ms in zip(traj, succ):
        if ms <= 0:
            continue
        v = np.asarray(v, float)
        t = np.arange(len(v)) / ms
        ref = v[ms]
        if not np.isfinite(ref) or ref <= 0:
            continue
        rows.append(np.interp(grid, t, v / ref, right=np.nan))
    return np.asarray(rows) if rows else np.full((0, len(grid)), np.nan)


def plot(results: dict, out: Path) -> None:
    """``fig2_growth.png``: rows ``||δ||``, ``||g||`` (normalised by their value at ``m_success``,
    log scale) against ``t / m_success``; columns model x gating; median and inter-quartile band
    over samples per attack; for the raw attack, Theorem 2's curves with the ``H̄_z`` of docs/spec.md (dashed)
    and with ``H_z`` at the clean input (dotted), normalised the same way."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
                rel = _relative_grid(run[key], run["success_step"], grid)
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
                        th = _relative_grid(run["theory"][k2], run["success_step"], grid)
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


# --- the experiment ------------------------------------------------------------------------


def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Fig. 2 at ``cfg``: per network the trajectories, fits and Theorem-2 curves
    (:func:`growth_curves`) and per (network, gating, attack) the medians (:func:`summarize_run`)."""
    C.enable_x64()
    x_pool, y_pool = C.fixed_digits(max(20 * cfg.n_samples, 200), seed=cfg.seed)

    def one(name):
        t0 = time.perf_counter()
        model, variables, info = C.load_model(name, cfg.train, seed=cfg.seed, overrides=dict(width=cfg.width),
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


def claims(results: dict) -> list[dict]:
    """C.2 (exponential growth of the raw attack's norms, every cell) and the extension "the rate is
    Theorem 2's" (every cell); rules in :mod:`jaxdyn.analyses.growth`."""
    fmt = C.fmt
    labels, ratios, measured, rates = [], [], [], []
    for m, gs in results["summary"].items():
        for g in GATINGS:
            s = (gs.get(g) or {}).get("raw")
            lb = classify_cell(s)
            labels.append(lb)
            ratios.append(float("nan") if not s else s.get("grad_rate_ratio", float("nan")))
            if not s or not s["n_success"]:
                measured.append(f"{m}/{g}: {lb}")
                continue
            measured.append(
                f"{m}/{g}: {lb.upper()} — R²(log‖δ‖) {fmt(s['delta_r2'], 3)} vs linear {fmt(s['delta_r2_linear'], 3)}, "
                f"R²(log‖g‖) {fmt(s['grad_r2'], 3)} vs linear {fmt(s['grad_r2_linear'], 3)}, rate of log‖g‖ in the 2nd "
                f"half / 1st half {fmt(s['grad_rate_late_over_early'])} (Theorem 2's curve: "
                f"{fmt(s.get('grad_rate_late_over_early_theory'))}), ‖g‖ grows ×{fmt(s['median_growth_grad'])} in "
                f"{fmt(s['median_success_step'])} steps ({s['n_success']}/{s['n']} succeed)")
            if "grad_rate_ratio" in s:
                r = s["grad_rate_ratio"]
                side = "slower than" if r < 1 else "faster than"
                rates.append(f"{m}/{g}: measured/Theorem-2 rate of ‖g‖ {fmt(r)} ({side} predicted; Theorem 1: "
                             f"{fmt(s['grad_rate_ratio_t1'])}), of ‖δ‖ {fmt(s['delta_rate_ratio'])}; measured "
                             f"{fmt(s['grad_rate'])}/step, Theorem 2 with SPEC's H̄_z {fmt(s['grad_rate_theory'])}/step, "
                             f"with H_z at the clean input {fmt(s['grad_rate_theory_clean'])}/step; measured between "
                             f"the two for {fmt(s['grad_frac_rate_between'])} of the digits")
    faster = [measured[i].split(":")[0] for i, lb in enumerate(labels) if lb == "faster than exponential"]
    cfg = results["config"]
    acc = ", ".join(f"{m} {fmt(d.get('test_accuracy'), 3)}" for m, d in results["models"].items())
    protocol = (f"{cfg['n_samples']} test digits per network, width {cfg['width']}, {results['dtype']}, test acc. "
                f"{acc}; raw attack: α fixed along the attack, set per digit so that it succeeds after "
                f"{cfg['raw_target']} steps under A2; ℓ2/ℓ∞ baselines: steps of ℓ2 length {cfg['step']}; "
                f"≤ {cfg['max_steps']} steps")
    n_exp = sum(lb == "exponential" for lb in labels)
    ok2 = sum(math.isfinite(r) and 1 / RATE_FACTOR < r < RATE_FACTOR for r in ratios)
    return [
        claim("fig2.growth", "C.2 (Fig. 2): ‖δ‖ and ‖g_{x+δ}‖ grow exponentially with β = αm",
              paper="exponential growth, clearer under frozen gating (subfigure e)", protocol=protocol,
              measured="; ".join(measured) + (f". Growth FASTER THAN EXPONENTIAL (rate rising by more than ×"
                                              f"{RATE_CONST:g}) in: {', '.join(faster)}" if faster else ""),
              baselines="ℓ2 and ℓ∞ attacks with fixed step length (plotted, no verdict)",
              controls="a linear fit of the same window (R² beside each log-linear R²); the constant-rate test "
                       "(log-linear rate of ‖g‖ on the two halves of the window)",
              rule=f"per (network, gating) cell of the raw attack: exponential = median R² of the log-linear fit ≥ "
                   f"{R2_EXP} for ‖δ‖ and ‖g‖, the log fit beats the linear one for at least half of the digits, and "
                   f"the median late/early rate ratio of log‖g‖ within [1/{RATE_CONST:g}, {RATE_CONST:g}] (above: "
                   f"faster than exponential); holds: every cell exponential ({n_exp}/{len(labels)}); holds partly: "
                   f"every cell exponential or faster and at least half exponential; else does not hold",
              verdict=growth_verdict(labels)),
        claim("fig2.rate_vs_theorem2", "(extension) the growth rate is the one Theorem 2 predicts from H̄_x's eigenvalues",
              paper="not in the paper (it compares the curves by eye)", protocol=protocol,
              measured="; ".join(rates) or "no rate could be compared",
              baselines="Theorem 1 (m steps) and Theorem 2 with H_z at the clean input",
              rule=f"median measured/predicted rate of ‖g‖ per (network, gating) cell (the prediction: the same fit "
                   f"to Theorem 2's curve with H̄_z from the digit's trajectory); holds: every cell within a factor "
                   f"{RATE_FACTOR:g} ({ok2}/{len(ratios)}); holds partly: every cell within a factor "
                   f"{RATE_FACTOR_LOOSE:g}; else (or a cell without a rate) does not hold",
              verdict=rate_verdict(ratios)),
    ]
