"""Figure 2, conclusion C.2: perturbation and gradient norms grow exponentially with β = α m.

For VGG-11, AlexNet and ResNet-18 trained on MNIST (10 classes) and a set of correctly classified
test digits, run a fixed-step-size attack for ``max_steps`` steps with its trajectory recorded:

* ``raw`` (A1, ``δ ← δ + α g``), the attack the theory describes,
* ``l2`` (``δ ← δ + α g/||g||``) and ``linf`` (``δ ← δ + α sign g``) as baselines,

each with free gating (the real network) and frozen gating (A2; the paper's subfigure (e)). No
projection or clipping (A1). The x-axis is the relative progress ``t / m_success`` (``m_success``
the first step at which the digit is misclassified); samples that do not succeed within
``max_steps`` are counted and left out of the fits.

Step sizes (fixed along each attack, as in the paper, so ``β ∝ m``): the ℓ2 and ℓ∞ baselines take
steps of ℓ2 length ``step``
(``α_l2 = step``, ``α_linf = step / sqrt(n)``: a sign step has length ``α sqrt(n)``). The raw
attack's steps grow with ``||g||`` (that is the point) and digits differ in confidence by orders
of magnitude, so with one α some succeed in one step and others never; its α is instead set per
sample so that the sample succeeds after about ``raw_target`` steps under frozen gating
(:func:`calibrate_raw_alpha`: bisection with the exact, cheap logit-space A2 attack). This
resolves every trajectory and keeps ``α λ_1`` small (A3's regime, where Theorems 1 and 2 agree).
ℓ∞ under frozen gating is left out (the paper's frozen panel shows the raw attack).

Beyond the paper's eyeballing, every trajectory gets a least-squares fit of ``log ||·||`` against
``t`` on ``t ≤ m_success`` (rate per step and R², :func:`jaxdyn.metrics.fit_log_linear`) and, as a
contrast, a linear fit (R²). For the raw attack the measured rate is compared with Theorem 2's:
with ``H̄_z`` averaged over the sample's own trajectory up to ``m_success`` (SPEC), the
eigenpairs ``(λ_i, v_i)`` of ``H̄_x = Jᵀ H̄_z J`` (``C x C`` path) give
``||g(β)||² = Σ e^{2βλ_i} γ_i² + ||g_⊥||²`` and ``||δ̂(β)||² = Σ (β φ(βλ_i))² γ_i² + β² ||g_⊥||²``
at ``β = α t``; we report the rate of the same log-linear fit to these curves, and the asymptotic
rate ``α λ_1`` (the slope once the top eigenvalue dominates). Theorem 1's discrete curve
(``(1 + αλ_i)^t`` for ``e^{αtλ_i}``) is fitted too. SPEC's ``H̄_z`` weights each step by its
length, which grows with ``||g||``, so it is dominated by the last steps, where the digit is no
longer confident and ``H_z`` is large; the same prediction with ``H_z`` at the clean input is
reported as the other end of the range (``rate_fit_grad_clean``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.attacks import attack, logit_space_attack
from jaxdyn.cli import write_json_atomic
from jaxdyn.experiments import figures as F
from jaxdyn.gating import input_jacobian
from jaxdyn.losses import grad_z, loss
from jaxdyn.metrics import fit_linear, fit_log_linear
from jaxdyn.models import logits_fn
from jaxdyn.theory import phi, structured_eigenpairs

HELP = "Figure 2 (C.2): exponential growth of ||δ|| and ||g|| along raw/ℓ2/ℓ∞ attacks, fitted rates vs Theorem 2."
RESULT_NAME = "fig2_summary.json"

NORMS = ("raw", "l2", "linf")
GATINGS = ("free", "frozen")

#: scale presets (training presets are those of jaxdyn.training)
SCALES = {
    "tiny": dict(models=("cnn3",), width=1 / 16, n_samples=2, step=0.2, raw_target=8, max_steps=20,
                 train=F.VANILLA["tiny"]),
    "quick": dict(models=("vgg11", "alexnet", "resnet18"), width=0.125, n_samples=8, step=0.05, raw_target=40,
                  max_steps=150, train=F.VANILLA["quick"]),
    "full": dict(models=("vgg11", "alexnet", "resnet18"), width=1.0, n_samples=100, step=0.02, raw_target=100,
                 max_steps=500, train=F.VANILLA["full"]),
}

CLAIM = ("C.2: both the gradient norm ||g_{x+δ}|| and the perturbation norm ||δ|| increase "
         "exponentially with the adversarial strength β = α m (Fig. 2)")

#: an R² of the log-linear fit at least this high counts as "exponential"
R2_EXP = 0.9
#: measured / predicted rate within this factor counts as agreement
RATE_FACTOR = 2.0


# --- computation -----------------------------------------------------------------------------


def _attack_fn(model, norm: str, gating: str, steps: int):
    """A jitted ``(variables, x [B,...], y [B], alpha [B]) -> dict`` running one attack per sample."""

    def run(variables, x, y, alpha):
        f = logits_fn(model, variables)

        def one(xi, yi, alpha):
            if gating == "frozen" and norm in ("raw", "l2"):
                # exact A2 attack in logit space (one Jacobian, then C-dim steps)
                r = logit_space_attack(f, xi, yi, steps=steps, alpha=alpha, norm=norm, record=True)
            else:
                r = attack(f, xi, yi, steps=steps, alpha=alpha, norm=norm, gating=gating, record=True)
            tr = r.trajectory
            return dict(success_step=r.success_step, delta_norm=tr["delta_norm"],
                        grad_norm=tr["grad_norm"], step_norm=tr["step_norm"], H_z=tr["H_z"])

        return jax.vmap(one)(x, y, alpha)

    return jax.jit(run)


def _theory_fn(model, steps: int):
    """Jitted predicted curves for ``t = 0..steps`` from the eigenpairs of ``H̄_x = Jᵀ H̄_z J``:
    Theorem 2 (``β = αt``) and Theorem 1 (``(1 + αλ_i)^t``) with SPEC's ``H̄_z`` averaged over each
    sample's trajectory up to its ``m_success``, and Theorem 2 with ``H_z`` at the clean input."""

    def curves(J, gx, hz, alpha, t):
        lam, V = structured_eigenpairs(J, hz)
        gam = V.T @ gx
        perp2 = jnp.maximum(jnp.vdot(gx, gx) - jnp.vdot(gam, gam), 0.0)
        beta = alpha * t.astype(gx.dtype)
        bl = beta[:, None] * lam[None, :]
        gr = gam[None, :]
        g2 = jnp.sum(jnp.exp(2 * bl) * gr**2, axis=1) + perp2
        d2 = jnp.sum((beta[:, None] * phi(bl) * gr) ** 2, axis=1) + beta**2 * perp2
        # Theorem 1: growth (1 + αλ)^t, δ coefficients ((1 + αλ)^t - 1)/λ (αt where λ = 0)
        log1 = t.astype(gx.dtype)[:, None] * jnp.log1p(alpha * lam)[None, :]
        small = jnp.abs(lam) < 1e-300
        c1 = jnp.where(small[None, :], beta[:, None], jnp.expm1(log1) / jnp.where(small, 1.0, lam)[None, :])
        g1 = jnp.sum(jnp.exp(2 * log1) * gr**2, axis=1) + perp2
        d1 = jnp.sum((c1 * gr) ** 2, axis=1) + beta**2 * perp2
        return lam[0], jnp.sqrt(g2), jnp.sqrt(d2), jnp.sqrt(g1), jnp.sqrt(d1)

    def run(variables, x, y, alpha, H_seq, step_norm, success_step):
        f = logits_fn(model, variables)
        t = jnp.arange(steps + 1)

        def one(xi, yi, alpha, Hs, sn, ms):
            J = input_jacobian(f, xi)
            gz = grad_z(f(xi), yi)
            gx = J.T @ gz
            ms = ms.astype(t.dtype)
            w = jnp.where((t >= 1) & (t <= ms - 1), sn, 0.0)
            wsum = jnp.sum(w)
            hbar = jnp.where(wsum > 0, jnp.einsum("t,tij->ij", w, Hs) / jnp.where(wsum > 0, wsum, 1.0), Hs[0])
            lam1, g2, d2, g1, d1 = curves(J, gx, hbar, alpha, t)
            lam1c, g2c, d2c, _, _ = curves(J, gx, Hs[0], alpha, t)
            return dict(lambda1=lam1, grad_norm=g2, delta_norm=d2, grad_norm_t1=g1, delta_norm_t1=d1,
                        lambda1_clean=lam1c, grad_norm_clean=g2c, delta_norm_clean=d2c)

        return jax.vmap(one)(x, y, alpha, H_seq, step_norm, success_step)

    return jax.jit(run)


def _grad_norm_fn(model):
    """Jitted ``(variables, x, y) -> ||g_x||`` per sample (``g_x = Jᵀ g_z``)."""

    def run(variables, x, y):
        f = logits_fn(model, variables)
        return jax.vmap(lambda xi, yi: jnp.linalg.norm(jax.grad(lambda t: loss(f(t), yi))(xi)))(x, y)

    return jax.jit(run)


def calibrate_raw_alpha(model, variables, x, y, *, target: int, max_steps: int, alpha0, iters: int = 14) -> dict:
    """Each sample's raw-attack α: the one with which it succeeds after about ``target`` steps
    under frozen gating.

    Samples differ in confidence by orders of magnitude and the raw attack grows exponentially, so
    one α for all leaves some digits succeeding in one step and others never; α is therefore set per
    sample (and fixed along its attack, as the paper's). Bisection on ``log α``, all samples at once,
    with the exact A2 attack in logit space (one Jacobian per sample, then ``C``-dimensional steps;
    α traced: one compile).

    Args:
      alpha0: ``[N]`` starting values (e.g. ``step / ||g_x||``).
    Returns:
      ``{"alpha": [N], "success_step": [N]}`` (``-1`` where no α within the search succeeds).
    """

    def run(variables, x, y, J, alpha):
        f = logits_fn(model, variables)
        return jax.vmap(lambda xi, yi, Ji, a: logit_space_attack(f, xi, yi, steps=max_steps, alpha=a, norm="raw",
                                                                 jacobian=Ji).success_step)(x, y, J, alpha)

    run = jax.jit(run)
    J = jax.jit(lambda v, x: jax.vmap(lambda xi: input_jacobian(logits_fn(model, v), xi))(x))(variables, x)
    dt = x.dtype

    def steps_at(a):
        s = np.asarray(run(variables, x, y, J, jnp.asarray(a, dt))).astype(float)
        s[s < 0] = np.inf
        return s

    lo = np.asarray(alpha0, float).copy()
    hi = lo.copy()
    s_lo = steps_at(lo)
    for _ in range(iters):  # lo: succeeds no earlier than target
        low = s_lo < target
        if not low.any():
            break
        lo = np.where(low, lo / 4, lo)
        s_lo = steps_at(lo)
    s_hi = s_lo.copy()
    for _ in range(iters):  # hi: succeeds by target
        slow = s_hi > target
        if not slow.any():
            break
        hi = np.where(slow, hi * 4, hi)
        s_hi = steps_at(hi)
    for _ in range(iters):
        mid = np.sqrt(lo * hi)
        s_mid = steps_at(mid)
        late = s_mid > target
        lo = np.where(late, mid, lo)
        hi = np.where(late, hi, mid)
    s_hi = steps_at(hi)
    return {"alpha": hi, "success_step": np.where(np.isfinite(s_hi), s_hi, -1).astype(int)}


def _fits(traj_delta, traj_grad, success):
    """Per-sample log-linear and linear fits on ``t ≤ m_success`` (``δ`` from ``t = 1``), and the
    log-linear rate on the first and the second half of that window (a rate that rises is growth
    faster than exponential)."""
    T = traj_delta.shape[1]
    t = jnp.arange(T, dtype=traj_delta.dtype)
    ms = jnp.asarray(success).astype(t.dtype)[:, None]
    win_g = (t[None] <= ms) & (ms > 0)
    win_d = win_g & (t[None] >= 1)
    out = {}
    half = t[None] <= ms / 2
    for key, v, win in (("delta", traj_delta, win_d), ("grad", traj_grad, win_g)):
        r, _, r2 = jax.vmap(fit_log_linear, in_axes=(None, 0, 0))(t, v, win)
        _, _, r2l = jax.vmap(fit_linear, in_axes=(None, 0, 0))(t, v, win)
        r_early = jax.vmap(fit_log_linear, in_axes=(None, 0, 0))(t, v, win & half)[0]
        r_late = jax.vmap(fit_log_linear, in_axes=(None, 0, 0))(t, v, win & (t[None] >= ms / 2))[0]
        out[key] = dict(rate=np.asarray(r), r2=np.asarray(r2), r2_linear=np.asarray(r2l),
                        rate_early=np.asarray(r_early), rate_late=np.asarray(r_late))
    return out


def growth_curves(model, variables, x, y, *, step: float, max_steps: int, raw_target: int | None = None,
                  norms=NORMS, gatings=GATINGS, skip=(("frozen", "linf"),), progress: bool = True) -> dict:
    """Fig. 2's trajectories, fits and Theorem-2 rates for one network.

    Args:
      model, variables: a zoo model (``model.apply(variables, x) -> [B, C]``).
      x: ``[N, 28, 28, 1]`` correctly classified digits; y: ``[N]`` labels.
      step: ℓ2 length of the ℓ2 and ℓ∞ steps (module docstring).
      max_steps: ``m`` of the recorded scans (static).
      raw_target: success step of the raw attack under frozen gating, which sets each sample's α
        (:func:`calibrate_raw_alpha`); ``None``: one α_raw = step / median ||g_x|| (the median first
        step has length ``step``).
      norms, gatings: which attacks to run.
      skip: ``(gating, norm)`` pairs left out (default: ℓ∞ under frozen gating — the paper's frozen
        panel (e) shows the raw attack; ℓ2 under A2 is cheap in logit space and kept).

    Returns:
      ``{"alpha": {norm: median α}, "alpha_raw": [N], "calibration_success_step": [N],
      "runs": {gating: {norm: {...}}}}``; each run holds the per-sample
      ``success_step``, ``delta_norm``/``grad_norm`` trajectories ``[N, max_steps+1]``, the fits
      and (raw attack) the Theorem-2 curves and rates. Floats as nested lists.
    """
    dt = jax.tree.leaves(variables)[0].dtype
    x = jnp.asarray(x, dt)
    y = jnp.asarray(y)
    n = int(np.prod(x.shape[1:]))
    g0 = _grad_norm_fn(model)(variables, x, y)
    N = x.shape[0]
    alpha_raw = np.full(N, step / float(np.median(np.asarray(g0))))
    calib = None
    if raw_target is not None and "raw" in norms:
        calib = calibrate_raw_alpha(model, variables, x, y, target=raw_target, max_steps=max_steps,
                                    alpha0=step / np.asarray(g0))
        alpha_raw = calib["alpha"]
    alphas = {"raw": alpha_raw, "l2": np.full(N, step), "linf": np.full(N, step / math.sqrt(n))}
    theory = _theory_fn(model, max_steps)
    runs: dict = {g: {} for g in gatings}
    runs_wanted = {(g, nm) for g in gatings for nm in norms} - set(skip)
    bar = F.progress_bar(total=len(runs_wanted), enabled=progress, desc=f"fig2 {type(model).__name__}",
                         leave=False)
    for gating in gatings:
        for norm in norms:
            if (gating, norm) not in runs_wanted:
                continue
            res = _attack_fn(model, norm, gating, max_steps)(variables, x, y, jnp.asarray(alphas[norm], dt))
            res = jax.device_get(res)
            succ = np.asarray(res["success_step"])
            ok = succ > 0
            d = np.asarray(res["delta_norm"])
            g = np.asarray(res["grad_norm"])
            fits = _fits(jnp.asarray(d), jnp.asarray(g), jnp.where(ok, succ, 0))
            run = dict(success_step=succ, delta_norm=d, grad_norm=g, fits=fits,
                       n_success=int(ok.sum()), n=int(len(succ)),
                       growth_grad=np.where(ok, g[np.arange(len(g)), np.maximum(succ, 0)] / g[:, 0], np.nan))
            if norm == "raw":
                th = jax.device_get(theory(variables, x, y, jnp.asarray(alphas[norm], dt), res["H_z"],
                                           res["step_norm"], jnp.asarray(succ)))
                win = jnp.where(ok, succ, 0)
                t2 = _fits(jnp.asarray(th["delta_norm"]), jnp.asarray(th["grad_norm"]), win)
                t1 = _fits(jnp.asarray(th["delta_norm_t1"]), jnp.asarray(th["grad_norm_t1"]), win)
                tc = _fits(jnp.asarray(th["delta_norm_clean"]), jnp.asarray(th["grad_norm_clean"]), win)
                lam1 = np.asarray(th["lambda1"])
                run["theory"] = dict(
                    lambda1=lam1, rate_asymptotic=alphas[norm] * lam1, alpha=alphas[norm],
                    lambda1_clean=np.asarray(th["lambda1_clean"]),
                    delta_norm=np.asarray(th["delta_norm"]), grad_norm=np.asarray(th["grad_norm"]),
                    delta_norm_clean=np.asarray(th["delta_norm_clean"]), grad_norm_clean=np.asarray(th["grad_norm_clean"]),
                    rate_fit_delta=t2["delta"]["rate"], rate_fit_grad=t2["grad"]["rate"],
                    r2_delta=t2["delta"]["r2"], r2_grad=t2["grad"]["r2"],
                    rate_fit_delta_t1=t1["delta"]["rate"], rate_fit_grad_t1=t1["grad"]["rate"],
                    rate_fit_delta_clean=tc["delta"]["rate"], rate_fit_grad_clean=tc["grad"]["rate"],
                )
            runs[gating][norm] = run
            bar.update()
    bar.close()
    return {"alpha": {k: float(np.median(v)) for k, v in alphas.items()}, "alpha_raw": np.asarray(alpha_raw).tolist(),
            "calibration_success_step": None if calib is None else calib["success_step"].tolist(),
            "runs": _tolist(runs)}


def _tolist(o):
    if isinstance(o, dict):
        return {k: _tolist(v) for k, v in o.items()}
    if isinstance(o, (np.ndarray, jax.Array)):
        return np.asarray(o).tolist()
    if isinstance(o, np.generic):
        return o.item()
    return o


# --- summary and verdict -------------------------------------------------------------------


def _nanmedian(a):
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else float("nan")


def summarize_run(run: dict) -> dict:
    """Medians over the successful samples of one (model, gating, attack) run."""
    ok = np.asarray(run["success_step"]) > 0
    s = dict(n=run["n"], n_success=run["n_success"],
             median_success_step=_nanmedian(np.asarray(run["success_step"], float)[ok]),
             median_growth_grad=_nanmedian(run["growth_grad"]))
    for key in ("delta", "grad"):
        fit = run["fits"][key]
        r2 = np.asarray(fit["r2"], float)[ok]
        r2l = np.asarray(fit["r2_linear"], float)[ok]
        s[f"{key}_rate"] = _nanmedian(np.asarray(fit["rate"], float)[ok])
        s[f"{key}_r2"] = _nanmedian(r2)
        s[f"{key}_r2_linear"] = _nanmedian(r2l)
        late_early = np.asarray(fit["rate_late"], float)[ok] / np.asarray(fit["rate_early"], float)[ok]
        s[f"{key}_rate_late_over_early"] = _nanmedian(late_early)
        both = np.isfinite(r2) & np.isfinite(r2l)
        s[f"{key}_frac_exp_better"] = float(np.mean(r2[both] > r2l[both])) if both.any() else float("nan")
    if "theory" in run:
        th = run["theory"]
        for key in ("delta", "grad"):
            meas = np.asarray(run["fits"][key]["rate"], float)[ok]
            pred = np.asarray(th[f"rate_fit_{key}"], float)[ok]
            ratio = meas / pred
            good = np.isfinite(ratio) & (ratio > 0)
            s[f"{key}_rate_theory"] = _nanmedian(pred)
            s[f"{key}_rate_ratio"] = _nanmedian(ratio)
            s[f"{key}_rate_ratio_t1"] = _nanmedian(meas / np.asarray(th[f"rate_fit_{key}_t1"], float)[ok])
            clean = np.asarray(th[f"rate_fit_{key}_clean"], float)[ok]
            s[f"{key}_rate_theory_clean"] = _nanmedian(clean)
            lo, hi = np.minimum(clean, pred), np.maximum(clean, pred)
            s[f"{key}_frac_rate_between"] = float(np.mean((meas >= lo) & (meas <= hi))) if len(meas) else float("nan")
            s[f"{key}_frac_rate_within_factor"] = (
                float(np.mean((ratio[good] < RATE_FACTOR) & (ratio[good] > 1 / RATE_FACTOR))) if good.any()
                else float("nan"))
        s["rate_asymptotic"] = _nanmedian(np.asarray(th["rate_asymptotic"], float)[ok])
    return s


def verdict(summary: dict) -> dict:
    """C.2's verdict from the raw attack's fits, per gating, and the theory-rate agreement.

    Exponential growth in a (model, gating) cell: median R² of the log-linear fit ≥ ``R2_EXP``
    for both ``||δ||`` and ``||g||`` and the log-linear fit beats the linear one for at least half
    of the samples. ``holds``: in every cell; ``holds partly``: in some; else ``does not hold``.
    Rate agreement: median measured/predicted rate of ``||g||`` within a factor ``RATE_FACTOR``.
    """
    cells, rate_cells = [], []
    for model, ms in summary.items():
        for gating, runs in ms.items():
            s = runs.get("raw")
            if s is None or not s["n_success"]:
                cells.append(False)
                continue
            cells.append(all(s[f"{k}_r2"] >= R2_EXP and s[f"{k}_frac_exp_better"] >= 0.5 for k in ("delta", "grad")))
            r = s.get("grad_rate_ratio", float("nan"))
            rate_cells.append(bool(np.isfinite(r) and 1 / RATE_FACTOR < r < RATE_FACTOR))
    v = "holds" if cells and all(cells) else ("holds partly" if any(cells) else "does not hold")
    vr = ("holds" if rate_cells and all(rate_cells) else
          ("holds partly" if any(rate_cells) else "does not hold"))
    return {"growth": v, "cells_exponential": int(sum(cells)), "cells": len(cells),
            "rate_vs_theorem2": vr, "cells_rate_agree": int(sum(rate_cells)), "rate_cells": len(rate_cells)}


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


def plot(json_path: Path, png_path: Path) -> Path:
    """Fig. 2 from ``fig2.json``: rows ``||δ||``, ``||g||`` (normalised by their value at
    ``m_success``, log scale) against ``t / m_success``; columns model x gating; median and
    inter-quartile band over samples per attack; for the raw attack, Theorem 2's curves with SPEC's
    ``H̄_z`` (dashed) and with ``H_z`` at the clean input (dotted), normalised the same way."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(json_path).read_text())
    models = list(data["models"])
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
                        if k2 not in run["theory"]:
                            continue
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
    fig.suptitle(f"Fig. 2 ({data['scale']} scale, {data['dtype']}): norms along attacks with fixed α", fontsize=10)
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path


# --- experiment entry point ----------------------------------------------------------------


def run_experiment(*, scale: str = "quick", out: Path, seed: int = 0, progress: bool = True) -> dict:
    """Fig. 2 at ``scale``: writes ``fig2.json`` and ``fig2_growth.png`` into ``out``."""
    F.check_scale(scale)
    F.enable_x64()
    from jaxdyn.data import load_mnist, subset

    cfg = SCALES[scale]
    out = Path(out)
    x_test, y_test = load_mnist("test")
    x_pool, y_pool = subset(x_test, y_test, max(20 * cfg["n_samples"], 200), seed=seed)
    data = dict(figure="fig2", claim=CLAIM, scale=scale, seed=seed, dtype="float64",
                config=F.jsonable_config(cfg), models={})
    summary = {}
    for name in F.progress_bar(cfg["models"], enabled=progress, desc="fig2 models"):
        t0 = time.perf_counter()
        model, variables, info = F.load_model(name, width=cfg["width"], seed=seed, progress=progress, **cfg["train"])
        t1 = time.perf_counter()
        xs, ys, acc = F.correct_subset(model, variables, x_pool, y_pool, cfg["n_samples"])
        res = growth_curves(model, variables, xs, ys, step=cfg["step"], max_steps=cfg["max_steps"],
                            raw_target=cfg["raw_target"], progress=progress)
        res.update(test_accuracy=info.get("test_accuracy"), width=cfg["width"], n_samples=int(len(xs)),
                   train=F.train_summary(info), time_s={"train_or_load": t1 - t0, "compute": time.perf_counter() - t1})
        data["models"][name] = res
        summary[name] = {g: {nm: summarize_run(r) for nm, r in runs.items()} for g, runs in res["runs"].items()}
    data["summary"] = summary
    data["verdict"] = verdict(summary)
    json_path = out / "fig2.json"
    write_json_atomic(json_path, data)
    png = plot(json_path, out / "fig2_growth.png")
    return {"figure": "fig2", "json": str(json_path), "png": [str(png)], "summary": summary,
            "verdict": data["verdict"], "claim": CLAIM, "scale": scale,
            "models": {m: {"test_accuracy": d["test_accuracy"], "alpha": d["alpha"], "n_samples": d["n_samples"]}
                       for m, d in data["models"].items()},
            "config": data["config"], "dtype": "float64"}


def add_arguments(parser) -> None:
    F.add_scale_arguments(parser)


def run(args) -> dict:
    return run_experiment(scale=args.scale, out=args.out, seed=args.seed, progress=not args.no_progress)
