"""Figure 5's figure (:func:`jaxdyn.experiments.fig5.plot`), from the results alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxdyn.analyses.instability import CONTROLS, read_controls
from jaxdyn.experiments import _common as C

__all__ = ["plot"]


def plot(results: dict, out: Path) -> None:
    """``fig5_oscillation.png``: per model, bars of mean ``Δ^(ori)_j``, ``Δ^(adv)_j``, of the two
    controls (clean digits matched in loss, a random direction of δ's norm) and the gradient step per
    layer (standardly trained net, log scale), ``λ_max`` along standard / adversarial training, and
    Theorem 6's per-layer curvature factor (median, both networks, random control, clean rows)."""
    import matplotlib  # noqa: PLC0415 (matplotlib only when plotting, its backend chosen first)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (after the backend is chosen)

    data, models = results, list(results["models"])
    fig, axes = plt.subplots(3, len(models), figsize=(5.6 * len(models), 9.6), squeeze=False)
    for c, m in enumerate(models):
        d = data["models"][m]
        s = d["instability"]["standard"]
        L = len(s["mean_ori"])
        ctl = read_controls(s)
        bars = [("Δ^(ori) (paper)", s["mean_ori"]), ("Δ^(adv)", s["mean_adv"])] + [
            (f"{k.replace('_', ' ')} (n={ctl[k]['n_pairs']})", ctl[k]["mean"]) for k in CONTROLS if k in ctl]
        w = 0.8 / len(bars)
        ax = axes[0, c]
        for i, (lbl, vals) in enumerate(bars):
            ax.bar(np.arange(L) + (i - (len(bars) - 1) / 2) * w, vals, w, label=lbl, color=f"C{i}")
        ax.set_yscale("log")
        ax.set_xticks(np.arange(L))
        ax.set_xticklabels([str(j + 1) for j in range(L)], fontsize=7)
        ax.set_xlabel("layer j")
        exc = [f"{sum(ctl[k]['excess'])}/{L}" for k in CONTROLS if k in ctl]
        ax.set_title(f"{m} (standard training): Δ^(adv) > Δ^(ori) in {s['layers_adv_greater']}/{L} layers"
                     + (f"; significant excess over controls {', '.join(exc)}" if exc else ""), fontsize=7)
        ax.legend(fontsize=6)
        ax = axes[1, c]
        for run, style in (("standard", "-"), ("adversarial", "--")):
            t = d["sharpness"].get(run) or []
            if not t:
                continue
            steps = [r["step"] for r in t]
            ax.plot(steps, [r["lambda_clean"] for r in t], "C0" + style, marker="o", ms=3,
                    label=f"{run} training, clean loss")
            ax.plot(steps, [r["lambda_adv"] for r in t], "C3" + style, marker="s", ms=3,
                    label=f"{run} training, adversarial loss")
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("λ_max of the loss Hessian")
        ax.legend(fontsize=6)
        t6, ax = (data.get("theorem6") or {}).get(m), axes[2, c]
        kinds = ("standard_adv", "adversarial_adv", "adversarial_random", "adversarial_clean") if t6 else ()
        for i, k in enumerate(kinds):
            ax.bar(np.arange(L) + (i - 1.5) * 0.2, t6["median"][k], 0.2, label=k.replace("_", " net, "), color=f"C{i}")
            ax.set_yscale("log")
        if t6:
            ax.set_title(f"Theorem 6: median T_j = tr Φ_Δa* H_h Φ_Δa, {t6['n_digits']} digits; AT > vanilla "
                         f"(p<0.05) in {sum(t6['at_vs_vanilla']['excess'])}/{L} layers", fontsize=7)
            ax.set(xlabel="layer j", xticks=np.arange(L), xticklabels=[str(j + 1) for j in range(L)])
            ax.legend(fontsize=6)
    C.save_figure(fig, Path(out) / "fig5_oscillation.png",
                  title=f"Fig. 5 ({data['scale']} scale): instability of weight gradients, controls and sharpness")
