"""Figure 4, conclusion C.5: the direction of adversarial training is dominated by a few samples
with large ``Â``.

On the adversarially trained binary AlexNet, VGG-11 and ResNet-50 of Figure 3 (the same training
preset, so the same cached networks, and the same digits), every sample's ``Â`` and first-layer
``Δg_W`` are measured under the raw attack (:func:`jaxdyn.influence.attack_influence`, β set from
``A0`` as in Figure 3). The samples are sorted by ``Â`` and cut into ``groups`` (10) groups of
(nearly) equal size; per group we report the mean ``cos(Δg_W|_x, Δḡ_W)`` with
``Δḡ_W = mean over all x of Δg_W``. The paper says it rises with ``Â``; we report the curve,
Spearman's ρ between the groups' mean ``Â`` and mean cosine (10 points) and, with more power,
between ``Â`` and the cosine over all samples. Verdict: ``holds`` if both ρ > 0 with p < 0.05 for
every model (:func:`jaxdyn.experiments.claims.rank_verdict`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import claim, rank_verdict
from jaxdyn.metrics import spearman

name = "fig4"
title = "Figure 4 — a few samples dominate (C.5)"


@dataclasses.dataclass(frozen=True)
class Config(C.BinaryInfluenceConfig):
    groups: int = dataclasses.field(default=10, metadata={"help": "number of Â groups"})


#: Figure 3's networks and digits (the same presets, so the same cached models)
SCALES = {s: dict(p, groups=10) for s, p in C.BINARY_INFLUENCE_SCALES.items()}


def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    from jaxdyn.models import model_names

    cfg = C.make_config(Config, SCALES, scale, overrides)
    C.check_models(cfg.models, model_names(), what="fig4")
    cfg.check()
    if cfg.groups < 1:
        raise ValueError(f"groups must be >= 1, got {cfg.groups}")
    return cfg


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
    """Fig. 4's numbers for one model from its per-sample ``A_hat`` and ``cos_to_mean``."""
    curve = group_curve(samples["A_hat"], samples["cos_to_mean"], groups=groups)
    return dict(groups=curve, spearman_groups=spearman(curve["A_hat"], curve["cos"]),
                spearman_samples=spearman(samples["A_hat"], samples["cos_to_mean"]),
                top_minus_bottom=curve["cos"][-1] - curve["cos"][0])


def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Fig. 4 at ``cfg``: per network the ``Â``-group curve of the cosine and its Spearman ρ."""
    C.enable_x64()

    def entry(name, meta, runs):
        [(_, beta, q)] = runs
        return dict(dominance(q, groups=cfg.groups), beta=beta, steps=cfg.steps,
                    **{k: meta[k] for k in ("test_accuracy", "width", "n_samples", "first_layer", "time_s")})

    models = C.binary_influence_runs(cfg, entry, progress=progress, desc="fig4 models", out=out)
    return dict(dtype="float64", models=models)


def claims(results: dict) -> list[dict]:
    """C.5 (Fig. 4): the groups' mean cosine rises with their mean ``Â`` on every network."""
    fmt = C.fmt
    parts, rhos = [], []
    for m, d in results["models"].items():
        g, s = d["spearman_groups"], d["spearman_samples"]
        rhos += [g, s]
        parts.append(f"{m}: mean cos per Â-group {fmt(d['groups']['cos'][0])} → {fmt(d['groups']['cos'][-1])}, "
                     f"ρ(groups) {fmt(g['rho'])} (p {fmt(g['p'], 1)}), ρ(samples) {fmt(s['rho'])} (p {fmt(s['p'], 1)}, "
                     f"n {s['n']})")
    protocol = "; ".join(f"{m}: test acc. {fmt(d.get('test_accuracy'), 3)}, β {fmt(d.get('beta'))}, m {d.get('steps')}, "
                         f"n {d.get('n_samples')}, {len(d['groups']['cos'])} groups, first layer {d.get('first_layer')}"
                         for m, d in results["models"].items()) + f"; {results.get('dtype', 'float64')}"
    return [claim("fig4.dominance", "C.5 (Fig. 4): the mean cos(Δg_W|x, mean Δg_W) of a group rises with its Â",
                  paper="rises with Â over 10 groups", protocol=protocol, measured="; ".join(parts),
                  rule="Spearman ρ of (group mean Â, group mean cos) and of (Â, cos) over samples; holds: all ρ > 0 "
                       "with p < 0.05 for every network; holds partly: all ρ > 0 or some significant",
                  verdict=rank_verdict(rhos))]


def plot(results: dict, out: Path) -> None:
    """``fig4_dominance.png``: mean cosine per ``Â`` group, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results["models"])
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.2), squeeze=False)
    for ax, m in zip(axes[0], models):
        d = results["models"][m]
        g = d["groups"]
        ax.plot(range(1, len(g["cos"]) + 1), g["cos"], "o-")
        ax.set_xlabel("group of Â (ascending)")
        ax.set_ylabel("mean cos(Δg_W|x, mean Δg_W)")
        s = d["spearman_groups"]
        ax.set_title(f"{m}: ρ = {s['rho']:.2f} (p = {s['p']:.1g})", fontsize=9)
    C.save_figure(fig, Path(out) / "fig4_dominance.png",
                  title=f"Fig. 4 ({results['scale']} scale): samples with large Â dominate Δḡ_W")
