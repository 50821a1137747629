"""Figure 5's figure (:func:`jaxdyn.experiments.fig5.plot`), from the results alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxdyn.analyses.instability import CONTROLS
from jaxdyn.experiments import _common as C

__all__ = ["plot"]


def _pooled(es, run, key):
    return np.concatenate([np.asarray(e["instability"][run][key], float) for e in es])


def plot(results: dict, out: Path) -> None:
    """``fig5_oscillation.png``: per model, bars of mean ``Δ^(ori)_j``, ``Δ^(adv)_j``, of the two
    controls (clean digits matched in loss, an isotropic random direction of δ's norm) and of the ℓ2
    gradient step per layer (standardly trained networks, digits of every seed pooled, log scale),
    ``λ_max`` along standard / adversarial training (one line per seed), and Theorem 6's per-layer
    curvature factor (median over digits and seeds, both networks, random control, clean rows)."""
    import matplotlib  # noqa: PLC0415 (matplotlib only when plotting, its backend chosen first)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (after the backend is chosen)

    models = list(results["models"])
    fig, axes = plt.subplots(3, len(models), figsize=(5.6 * len(models), 9.6), squeeze=False)
    for c, m in enumerate(models):
        es = results["models"][m]
        adv = _pooled(es, "standard", "adv")
        L = adv.shape[1]
        bars = [("Δ^(ori) (paper)", "ori"), ("Δ^(adv)", "adv")] + [(k.replace("_", " "), k) for k in CONTROLS]
        w = 0.8 / len(bars)
        ax = axes[0, c]
        for i, (lbl, k) in enumerate(bars):
            ax.bar(np.arange(L) + (i - (len(bars) - 1) / 2) * w, np.nanmean(_pooled(es, "standard", k), axis=0), w,
                   label=lbl, color=f"C{i}")
        ax.set(yscale="log", xlabel="layer j", xticks=np.arange(L))
        ax.set_xticklabels([str(j + 1) for j in range(L)], fontsize=7)
        ax.set_title(f"{m} (standard training): mean Δ_j over {len(adv)} digits, seeds "
                     f"{', '.join(str(e['seed']) for e in es)}", fontsize=7)
        ax.legend(fontsize=6)
        ax = axes[1, c]
        for e in es:
            for run, style in (("standard", "-"), ("adversarial", "--")):
                t = e["sharpness"].get(run) or []
                if t:
                    key = "lambda_clean" if run == "standard" else "lambda_adv"
                    ax.plot([r["step"] for r in t], [r[key] for r in t], f"C{e['seed'] % 10}" + style, marker="o",
                            ms=3, label=f"seed {e['seed']}, {run} training ({'clean' if run == 'standard' else 'adv.'} "
                                        "loss)")
        ax.set(yscale="log", xlabel="training step", ylabel="λ_max of the loss Hessian")
        ax.legend(fontsize=6)
        ax = axes[2, c]
        t6 = [e["theorem6"] for e in es if e.get("theorem6") and e["theorem6"].get("per_digit")]
        if t6:
            kinds = (("standard", "adv"), ("adversarial", "adv"), ("adversarial", "random"), ("adversarial", "clean"))
            for i, (net, k) in enumerate(kinds):
                vals = np.concatenate([np.asarray(t["per_digit"][net][k], float) for t in t6])
                ax.bar(np.arange(L) + (i - 1.5) * 0.2, np.median(vals, axis=0), 0.2, label=f"{net} net, {k}",
                       color=f"C{i}")
            ax.set(yscale="log", xlabel="layer j", xticks=np.arange(L), xticklabels=[str(j + 1) for j in range(L)])
            ax.set_title(f"Theorem 6: median T_j = tr Φ_Δa* H_h Φ_Δa over {sum(t['n_digits'] for t in t6)} digits",
                         fontsize=7)
            ax.legend(fontsize=6)
    C.save_figure(fig, Path(out) / "fig5_oscillation.png",
                  title=f"Fig. 5 ({results['scale']} scale): instability of weight gradients, controls and sharpness")
