"""Figure 4, conclusion C.5: the direction of adversarial training is dominated by a few samples
with large ``Â``.

From Fig. 3's per-sample numbers (same adversarially trained binary AlexNet, VGG-11, ResNet-50 and
the same digits): sort the samples by ``Â``, cut them into ``groups`` (10) groups of (nearly)
equal size, and report per group the mean ``cos(Δg_W|_x, Δḡ_W)`` with
``Δḡ_W = mean over all x of Δg_W`` (first layer). The paper says it rises with ``Â``; we report
the curve, Spearman's ρ between the groups' mean ``Â`` and mean cosine (10 points) and, with more
power, between ``Â`` and the cosine over all samples. Verdict: ``holds`` if both ρ > 0 with
p < 0.05 for every model (:func:`jaxdyn.experiments.figures.rank_verdict`).

Fig. 4 reuses ``fig3.json`` from the same output directory (or from ``../fig3/``, where
``reproduce`` puts it) when it was made at the same scale, seed and preset; otherwise it runs
Fig. 3's measurement itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jaxdyn.cli import write_json_atomic
from jaxdyn.experiments import fig3
from jaxdyn.experiments import figures as F

HELP = "Figure 4 (C.5): mean cos(Δg_W|x, mean Δg_W) in 10 groups of Â (Spearman ρ)."
RESULT_NAME = "fig4_summary.json"

#: Fig. 4 is drawn from Fig. 3's measurement: same presets (and ``reproduce`` fingerprints fig3's source)
SCALES = fig3.SCALES
DEPENDS = ("jaxdyn.experiments.fig3",)

CLAIM = ("C.5: the direction of adversarial training is dominated by a few samples with large Â: "
         "the mean cos(Δg_W|x, mean Δg_W) of a group rises with its Â (Fig. 4)")


def group_curve(a_hat, cos, *, groups: int = 10) -> dict:
    """Mean ``Â`` and mean cosine per ``Â``-group (equal-count groups in ascending ``Â``).

    Args:
      a_hat, cos: ``[N]`` per-sample values.
      groups: number of groups (at most ``N``).
    Returns:
      ``{"A_hat": [G], "cos": [G], "count": [G]}``.
    """
    a_hat = np.asarray(a_hat, float)
    cos = np.asarray(cos, float)
    if a_hat.shape != cos.shape or a_hat.ndim != 1:
        raise ValueError(f"a_hat and cos must be 1-D of one length, got {a_hat.shape} and {cos.shape}")
    ok = np.isfinite(a_hat) & np.isfinite(cos)
    a_hat, cos = a_hat[ok], cos[ok]
    g = min(groups, len(a_hat))
    if g < 1:
        raise ValueError("no finite samples to group")
    parts = np.array_split(np.argsort(a_hat, kind="stable"), g)
    return {"A_hat": [float(a_hat[p].mean()) for p in parts], "cos": [float(cos[p].mean()) for p in parts],
            "count": [int(len(p)) for p in parts]}


def dominance(samples: dict, *, groups: int = 10) -> dict:
    """Fig. 4's numbers for one model from its Fig. 3 samples."""
    curve = group_curve(samples["A_hat"], samples["cos_to_mean"], groups=groups)
    return dict(groups=curve, spearman_groups=F.spearman(curve["A_hat"], curve["cos"]),
                spearman_samples=F.spearman(samples["A_hat"], samples["cos_to_mean"]),
                top_minus_bottom=curve["cos"][-1] - curve["cos"][0])


def verdict(per_model: dict) -> dict:
    rhos = [d[k] for d in per_model.values() for k in ("spearman_groups", "spearman_samples")]
    return {"dominance": F.rank_verdict(rhos),
            "by_model": {m: F.rank_verdict([d["spearman_groups"], d["spearman_samples"]]) for m, d in per_model.items()},
            "rising_models": sum(1 for d in per_model.values() if d["spearman_groups"]["rho"] > 0),
            "models": len(per_model)}


def plot(json_path: Path, png_path: Path) -> Path:
    """Fig. 4 from ``fig4.json``: mean cosine per ``Â`` group, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(json_path).read_text())
    models = list(data["models"])
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.2), squeeze=False)
    for ax, m in zip(axes[0], models):
        d = data["models"][m]
        g = d["groups"]
        ax.plot(range(1, len(g["cos"]) + 1), g["cos"], "o-")
        ax.set_xlabel("group of Â (ascending)")
        ax.set_ylabel("mean cos(Δg_W|x, mean Δg_W)")
        s = d["spearman_groups"]
        ax.set_title(f"{m}: ρ = {s['rho']:.2f} (p = {s['p']:.1g})", fontsize=9)
    fig.suptitle(f"Fig. 4 ({data['scale']} scale): samples with large Â dominate Δḡ_W", fontsize=10)
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path


def _fig3_data(out: Path, scale: str, seed: int, progress: bool) -> dict:
    """Fig. 3's measurement: from ``fig3.json`` in ``out`` or in ``out/../fig3`` (the layout of
    ``reproduce``) when its scale, seed and preset match, else computed afresh."""
    for p in (Path(out) / "fig3.json", Path(out).parent / "fig3" / "fig3.json"):
        if p.exists():
            d = json.loads(p.read_text())
            if (d.get("scale") == scale and d.get("seed") == seed
                    and d.get("config") == F.jsonable_config(fig3.SCALES[scale])):
                return d
    return fig3.measure_models(scale=scale, seed=seed, progress=progress)


def run_experiment(*, scale: str = "quick", out: Path, seed: int = 0, progress: bool = True,
                   groups: int = 10) -> dict:
    """Fig. 4 at ``scale``: writes ``fig4.json`` and ``fig4_dominance.png`` into ``out``."""
    F.check_scale(scale)
    out = Path(out)
    src = _fig3_data(out, scale, seed, progress)
    models = {m: dict(dominance(d["samples"], groups=groups), test_accuracy=d["test_accuracy"], width=d["width"],
                      beta=d["beta"], steps=d["steps"], n_samples=d["n_samples"], first_layer=d["first_layer"])
              for m, d in src["models"].items()}
    data = dict(figure="fig4", claim=CLAIM, scale=scale, seed=seed, dtype=src["dtype"], groups=groups,
                config=F.jsonable_config(src["config"]), models=models)
    data["verdict"] = verdict(models)
    json_path = out / "fig4.json"
    write_json_atomic(json_path, data)
    png = plot(json_path, out / "fig4_dominance.png")
    return {"figure": "fig4", "json": str(json_path), "png": [str(png)], "claim": CLAIM, "scale": scale,
            "dtype": data["dtype"], "verdict": data["verdict"], "config": data["config"], "models": models}


def add_arguments(parser) -> None:
    F.add_scale_arguments(parser)


def run(args) -> dict:
    return run_experiment(scale=args.scale, out=args.out, seed=args.seed, progress=not args.no_progress)
