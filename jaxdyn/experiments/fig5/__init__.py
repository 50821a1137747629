"""Figure 5, conclusion C.8: adversarial training is more likely to make parameters oscillate.

Two measurements on AlexNet and VGG-11 trained on MNIST (10 classes):

1. **The paper's per-layer instability, against controls** (:mod:`jaxdyn.analyses.instability`). For each
   weight layer ``j`` (in forward order) and each training digit ``x``, ``Δ_j`` of
   :func:`jaxdyn.analyses.metrics.weight_gradient_instability` (``||∂L/∂W_j(W_j + ΔW_j) - ∂L/∂W_j(W_j)|| /
   (D_j ||ΔW_j||)``, ``ΔW_j = -η ∂L/∂W_j``, ``D_j`` the fan-in) on ``x`` (``Δ^(ori)``), on ``x + δ``
   with ``δ`` an ℓ∞ PGD perturbation (``Δ^(adv)``), and on two controls of ``x + δ``: clean digits
   matched in its loss, and a non-adversarial perturbation of ``x`` with the ℓ2 norm of
   ``δ`` (an isotropic random direction, clipped like ``δ``; the loss-matched ℓ2 gradient step is
   reported beside it as the one-step attack it is). The paper's comparison (``Δ^(adv)`` against
   ``Δ^(ori)``, means per layer) is kept as the "paper protocol" claim; the verdict on C.8 rests on
   the excess of ``Δ^(adv)`` over both controls per layer (the median per-digit log-ratio over digits
   and seeds, hierarchical bootstrap interval and p-values, Holm over the family:
   :mod:`jaxdyn.experiments.fig5.rules`). Measured on the standardly trained networks (as the paper)
   and, as an extension, on the adversarially trained ones; each seed trains its own networks.

2. **Sharpness along training (extension).** The top eigenvalue ``λ_max`` of the Hessian of the
   loss w.r.t. all parameters (power iteration on Hessian-vector products,
   :func:`jaxdyn.core.hessian.param_hessian_top_eigenvalue`) at a few steps along standard and ℓ∞-PGD
   adversarial training, on a fixed probe batch, for the clean loss and for the adversarial loss
   (PGD ``δ`` recomputed at each checkpoint, then held fixed). The edge-of-stability literature
   (Cohen et al. 2021) and Theorem 6 tie a large ``λ_max`` of the training objective to
   oscillation. Recorded by a training callback (:class:`jaxdyn.training.callbacks.SharpnessTracker`),
   float32 (the training dtype).

This package orchestrates: the measurements are in :mod:`jaxdyn.analyses` (``instability``,
``curvature``), the claims' words in :mod:`jaxdyn.experiments.fig5.texts`, their values and verdicts in
:mod:`jaxdyn.experiments.fig5.rules`, the figure in
:mod:`jaxdyn.experiments.fig5.plots`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np

from jaxdyn._internal.checks import check_choice
from jaxdyn.analyses import curvature
from jaxdyn.analyses.instability import MATCH_TOL, measure_fn, summarize_instability
from jaxdyn.core.models import model_names
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import ACCURACY_FLOOR
from jaxdyn.experiments.fig5 import rules as _claims
from jaxdyn.experiments.fig5 import plots as _plot
from jaxdyn.training.callbacks import SharpnessTracker

name = "fig5"
title = "Figure 5 — oscillation (C.8)"

_help = C.help_field


@dataclasses.dataclass(frozen=True)
class Config(C.NetworksConfig):
    """Zoo ``models`` (10 classes), ``n_samples`` correctly classified training digits; ``train`` is
    the standard training, ``adv_train`` the adversarial one."""

    width: float = _help("width multiplier of the networks")
    eta: float = _help("learning rate η of the one-layer step ΔW_j = -η ∂L/∂W_j")
    normalizer: str = _help("D_j of Δ_j: fan_in (the paper's D), size or none")
    chunk: Optional[int] = _help("rows per compiled instability call (bounds memory; none: all at once)")
    match_pool: int = _help("clean training digits searched for the matched-loss control")
    pgd: Any = _help("ℓ∞ PGD giving δ: {eps, alpha, steps} (JSON)", json=dict(eps=float, alpha=float, steps=int))
    adv_train: Any = _help("adversarial training preset: load_or_train arguments (JSON)", json="train")
    track: Any = _help("sharpness tracking along training: {points, probe, iters} (JSON)",
                       json=dict(points=int, probe=int, iters=int))
    accuracy_floor: float = _help("test accuracy below which a network counts as collapsed: its tests are "
                                  "'not testable' (claims only)")


_PGD = {"tiny": dict(eps=0.1, alpha=0.05, steps=2), "quick": dict(eps=0.1, alpha=0.05, steps=5),
        "full": dict(eps=0.3, alpha=0.01, steps=40)}
_SEEDS = {"tiny": (0,), "quick": (0, 1), "full": (0, 1, 2, 3, 4)}
#: quick: 2 seeds × 8 digits (16 digits per architecture as with one seed before: more networks, fewer
#: digits each, chosen before any verdict was seen)
SCALES = {s: dict(kw, normalizer="fan_in", seeds=_SEEDS[s], accuracy_floor=ACCURACY_FLOOR, pgd=_PGD[s],
                  train=C.FIGURE_VANILLA[s], adv_train=C.FIG5_ADV[s])
          for s, kw in {
              "tiny": dict(models=("cnn3",), width=1 / 16, n_samples=6, eta=1e-3, chunk=None, match_pool=256,
                           track=dict(points=2, probe=16, iters=5)),
              "quick": dict(models=("alexnet", "vgg11"), width=0.125, n_samples=8, eta=1e-3, chunk=None,
                            match_pool=8192,
                            track=dict(points=3, probe=32, iters=12)),
              "full": dict(models=("alexnet", "vgg11"), width=1.0, n_samples=256, eta=1e-3, chunk=16, match_pool=60000,
                           track=dict(points=11, probe=256, iters=30)),
          }.items()}


def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    cfg = C.make_config(Config, SCALES, scale, overrides)
    C.check_models(cfg.models, model_names(), what="fig5")
    check_choice("normalizer", cfg.normalizer, ("fan_in", "size", "none"))
    for k in ("width", "n_samples", "eta", "chunk", "match_pool"):
        v = getattr(cfg, k)
        if v is not None and not v > 0:
            raise ValueError(f"{k} must be > 0, got {v}")
    for k, keys in (("pgd", ("eps", "alpha", "steps")), ("track", ("points", "probe", "iters"))):
        d = getattr(cfg, k)
        if not isinstance(d, dict) or set(d) != set(keys) or any(not d[q] > 0 for q in keys):
            raise ValueError(f"{k} must be a dict of positive {', '.join(keys)}, got {d!r}")
    if not 0 <= cfg.accuracy_floor < 1:
        raise ValueError(f"accuracy_floor must lie in [0, 1), got {cfg.accuracy_floor}")
    if not (isinstance(cfg.train, dict) and isinstance(cfg.adv_train, dict)):
        raise ValueError("train and adv_train must be dicts of load_or_train arguments")
    return cfg


_KEEP = ("ori", "adv", "matched_loss", "random_direction", "grad_step", "loss_clean", "loss_adv", "loss_matched",
         "loss_control", "loss_random", "gradient_share", "cos_control_adv", "cos_grad_step_grad", "cos_random_grad",
         "random_l2_ratio", "match_ratio", "matched", "reached")


def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Fig. 5 at ``cfg``: per network (architecture × seed; each seed its own networks and digits) and
    training (standard, adversarial) the per-layer instability of the weight gradient with its
    controls, Theorem 6's per-layer curvature and ``λ_max`` along training."""
    C.enable_x64()
    fns: dict = {}

    def one(key):
        name, s = key.rsplit("-seed", 1)
        s = int(s)
        x_pool, y_pool = C.fixed_digits(max(4 * cfg.n_samples, 64), seed=10 * s + 2, split="train")
        xm_pool, ym_pool = C.fixed_digits(cfg.match_pool, seed=10 * s + 3, split="train")
        entry = {"seed": s, "instability": {}, "sharpness": {}, "train": {}}
        nets = {}
        for run_, kw in (("standard", cfg.train), ("adversarial", cfg.adv_train)):
            tracker = SharpnessTracker(**cfg.track, pgd_cfg=cfg.pgd, seed=s)
            t0 = time.perf_counter()
            model, variables, info = C.load_model(name, kw, seed=s, seeds=cfg.seeds, overrides=dict(width=cfg.width),
                                                  progress=progress, callbacks=[tracker])
            t1 = time.perf_counter()
            entry["sharpness"][run_] = info.pop("callbacks")[tracker.name]
            entry["train"][run_] = C.train_summary(info)
            xs, ys, _ = C.correct_subset(model, variables, x_pool, y_pool, cfg.n_samples)
            if name not in fns:
                fns[name] = measure_fn(model, variables, pgd_steps=cfg.pgd["steps"], normalizer=cfg.normalizer)
            res = fns[name](variables, xs, ys, xm_pool, ym_pool, eta=cfg.eta, pgd_cfg=cfg.pgd, key=jax.random.key(s),
                            chunk=cfg.chunk)
            entry["instability"][run_] = dict(summarize_instability(res), n_samples=int(len(xs)),
                                              test_accuracy=info.get("test_accuracy"),
                                              **{k: np.asarray(res[k]).tolist() for k in _KEEP},
                                              time_s={"train_or_load": t1 - t0, "compute": time.perf_counter() - t1})
            nets[run_] = variables
        entry["theorem6"] = curvature.compare_networks(model, nets["standard"], nets["adversarial"], x_pool, y_pool,
                                                       n=cfg.n_samples, pgd_cfg=cfg.pgd, seed=s)
        entry["sharpness_summary"] = curvature.summarize_sharpness({name: entry["sharpness"]}).get(name)
        return entry

    keys = [f"{m}-seed{s}" for m in cfg.models for s in cfg.seeds]
    done = C.by_piece(one, keys, out=out, progress=progress, desc="fig5 networks")
    models = {m: [done[f"{m}-seed{s}"] for s in cfg.seeds] for m in cfg.models}
    return dict(dtype="float64", dtype_sharpness="float32", normalizer=cfg.normalizer, seeds=list(cfg.seeds),
                models=models, match_tol=MATCH_TOL)


def claims(results: dict) -> list[dict]:
    """C.8 against the controls (the verdict), the paper's own comparison (paper protocol), the
    sharpness extension and Theorem 6 (:func:`jaxdyn.experiments.fig5.rules.claims`)."""
    return _claims.claims(results)


def plot(results: dict, out: Path) -> None:
    """``fig5_oscillation.png`` (:func:`jaxdyn.experiments.fig5.plots.plot`)."""
    _plot.plot(results, out)
