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
   the paired excess of ``Δ^(adv)`` over both controls per layer (Wilcoxon signed-rank, Holm over
   the family). Measured on the standardly trained network (as the paper) and, as an extension, on
   the adversarially trained one.

2. **Sharpness along training (extension).** The top eigenvalue ``λ_max`` of the Hessian of the
   loss w.r.t. all parameters (power iteration on Hessian-vector products,
   :func:`jaxdyn.core.hessian.param_hessian_top_eigenvalue`) at a few steps along standard and ℓ∞-PGD
   adversarial training, on a fixed probe batch, for the clean loss and for the adversarial loss
   (PGD ``δ`` recomputed at each checkpoint, then held fixed). The edge-of-stability literature
   (Cohen et al. 2021) and Theorem 6 tie a large ``λ_max`` of the training objective to
   oscillation. Recorded by a training callback (:class:`SharpnessTracker`), float32 (the training
   dtype).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.analyses import curvature
from jaxdyn.attacks.multistep import pgd
from jaxdyn.experiments import _common as C
from jaxdyn.experiments import _fig5_claims
from jaxdyn.experiments.claims import ACCURACY_FLOOR
from jaxdyn.analyses.instability import (CONTROLS, MATCH_TOL, instability, measure_fn, read_controls,  # noqa: F401
                                summarize_instability)
from jaxdyn.core.losses import loss
from jaxdyn._internal.results import append_line_atomic, to_json_tree

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
SCALES = {s: dict(kw, normalizer="fan_in", seed=0, accuracy_floor=ACCURACY_FLOOR, pgd=_PGD[s],
                  train=C.FIGURE_VANILLA[s], adv_train=C.FIG5_ADV[s])
          for s, kw in {
              "tiny": dict(models=("cnn3",), width=1 / 16, n_samples=4, eta=1e-3, chunk=None, match_pool=256,
                           track=dict(points=2, probe=16, iters=5)),
              "quick": dict(models=("alexnet", "vgg11"), width=0.125, n_samples=16, eta=1e-3, chunk=None,
                            match_pool=8192,
                            track=dict(points=3, probe=32, iters=12)),
              "full": dict(models=("alexnet", "vgg11"), width=1.0, n_samples=256, eta=1e-3, chunk=16, match_pool=60000,
                           track=dict(points=11, probe=256, iters=30)),
          }.items()}


def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    from jaxdyn._internal.checks import check_choice
    from jaxdyn.core.models import model_names

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


# --- sharpness along training --------------------------------------------------------------


_LAM_CACHE: dict = {}


class SharpnessTracker:
    """A training callback recording ``λ_max`` of the clean and the adversarial probe loss at
    ``points`` evenly spaced steps (the first and the last included).

    The records (``{"step", "lambda_clean", "lambda_adv"}``) are appended to
    ``<run_dir>/sharpness.jsonl`` as they come, so a resumed run keeps them.
    """

    name = "sharpness_fig5"

    def __init__(self, *, points: int, probe: int, iters: int, pgd_cfg: dict, seed: int = 0):
        if points < 1 or probe < 1 or iters < 1:
            raise ValueError("points, probe and iters must be >= 1")
        self.points, self.probe, self.iters, self.pgd_cfg, self.seed = points, probe, iters, dict(pgd_cfg), seed

    def config(self) -> dict:
        return to_json_tree(dict(points=self.points, probe=self.probe, iters=self.iters, pgd=self.pgd_cfg,
                                      seed=self.seed, version=1))

    def start(self, model, cfg, run_dir: Path) -> None:
        from jaxdyn.datasets import loading as data
        from jaxdyn.core.hessian import param_hessian_top_eigenvalue

        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.run_dir / "sharpness.jsonl"
        if not (self.run_dir / "checkpoint.msgpack").exists():
            self.log.unlink(missing_ok=True)  # a fresh run: no stale records
        x, y = data.load_mnist("train")
        if cfg.binary is not None:
            x, y = data.binary_task(x, y, cfg.binary)
        x, y = data.subset(x, y, self.probe, seed=10_000 + self.seed)
        self.x, self.y = jnp.asarray(x), jnp.asarray(y)
        n = cfg.n_train if cfg.n_train is not None else len(data.load_mnist("train")[0])
        total = cfg.epochs * (n // cfg.batch_size)
        self.schedule = sorted({int(round(s)) for s in np.linspace(1, total, self.points)})
        p = self.pgd_cfg

        def lam(params, extra, x, y, key, eps, alpha):
            def batch_loss(params, xx):
                z = model.apply({"params": params, **extra}, xx)
                return jnp.mean(jax.vmap(loss)(z, y))

            v = {"params": params, **extra}
            f = lambda t: model.apply(v, t[None])[0]  # noqa: E731
            d = jax.vmap(lambda xi, yi, k: pgd(f, xi, yi, eps=eps, alpha=alpha, steps=p["steps"], norm="linf", key=k))(
                x, y, jax.random.split(key, x.shape[0]))
            d = jax.lax.stop_gradient(d)
            k1, k2 = jax.random.split(jax.random.fold_in(key, 1))
            lc, _ = param_hessian_top_eigenvalue(lambda q: batch_loss(q, x), params, key=k1, num_iters=self.iters)
            la, _ = param_hessian_top_eigenvalue(lambda q: batch_loss(q, x + d), params, key=k2, num_iters=self.iters)
            return lc, la

        ckey = (cfg.model, cfg.width, cfg.num_classes, json.dumps(self.config(), sort_keys=True))
        if ckey not in _LAM_CACHE:  # one compile per architecture: standard and adversarial runs share it
            _LAM_CACHE[ckey] = jax.jit(lam)
        self._lam = _LAM_CACHE[ckey]

    def callback(self, step, state, loss_value) -> None:
        if step not in self.schedule:
            return
        extra = {"batch_stats": state["batch_stats"]} if "batch_stats" in state else {}
        dt = self.x.dtype
        lc, la = self._lam(state["params"], extra, self.x, self.y, jax.random.key(self.seed),
                           jnp.asarray(self.pgd_cfg["eps"], dt), jnp.asarray(self.pgd_cfg["alpha"], dt))
        append_line_atomic(self.log, json.dumps({"step": int(step), "lambda_clean": float(lc),
                                                 "lambda_adv": float(la), "train_loss": float(loss_value)}))

    def records(self, run_dir: Path) -> list:
        log = Path(run_dir) / "sharpness.jsonl"
        recs = {}
        if log.exists():
            for line in log.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    recs[r["step"]] = r
        return [recs[s] for s in sorted(recs)]


def summarize_sharpness(tracks: dict) -> dict:
    """End-of-training ``λ_max`` (of each run's own training loss: clean for standard, adversarial
    for adversarial training) and the ratio adversarial / standard."""
    out = {}
    for m, t in tracks.items():
        van, adv = t.get("standard") or [], t.get("adversarial") or []
        if not van or not adv:
            continue
        lv, la = van[-1]["lambda_clean"], adv[-1]["lambda_adv"]
        out[m] = {"lambda_standard_end": lv, "lambda_adversarial_end": la, "ratio_end": la / lv if lv else float("nan"),
                  "mean_ratio_along": float(np.mean([a["lambda_adv"] / v["lambda_clean"]
                                                     for v, a in zip(van, adv) if v["lambda_clean"]]))}
    return out


# --- plot ----------------------------------------------------------------------------------


def plot(results: dict, out: Path) -> None:
    """``fig5_oscillation.png``: per model, bars of mean ``Δ^(ori)_j``, ``Δ^(adv)_j``, of the two
    controls (clean digits matched in loss, a random direction of δ's norm) and the gradient step per
    layer (standardly trained net, log scale), ``λ_max`` along standard / adversarial training, and
    Theorem 6's per-layer curvature factor (median, both networks, random control, clean rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        for i, k in enumerate(("standard_adv", "adversarial_adv", "adversarial_random", "adversarial_clean") if t6 else ()):
            ax.bar(np.arange(L) + (i - 1.5) * 0.2, t6["median"][k], 0.2, label=k.replace("_", " net, "), color=f"C{i}")
            ax.set_yscale("log")
        if t6:
            ax.set_title(f"Theorem 6: median T_j = tr Φ_Δa* H_h Φ_Δa, {t6['n_digits']} digits; AT > vanilla "
                         f"(p<0.05) in {sum(t6['at_vs_vanilla']['excess'])}/{L} layers", fontsize=7)
            ax.set(xlabel="layer j", xticks=np.arange(L), xticklabels=[str(j + 1) for j in range(L)])
            ax.legend(fontsize=6)
    C.save_figure(fig, Path(out) / "fig5_oscillation.png",
                  title=f"Fig. 5 ({data['scale']} scale): instability of weight gradients, controls and sharpness")

# --- the experiment ------------------------------------------------------------------------


_KEEP = ("ori", "adv", "matched_loss", "random_direction", "grad_step", "loss_clean", "loss_adv", "loss_matched",
         "loss_control", "loss_random", "gradient_share", "cos_control_adv", "cos_grad_step_grad", "cos_random_grad",
         "random_l2_ratio", "match_ratio")


def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Fig. 5 at ``cfg``: per network and training (standard, adversarial) the per-layer
    instability of the weight gradient with its controls, and ``λ_max`` along training."""
    C.enable_x64()
    x_pool, y_pool = C.fixed_digits(max(4 * cfg.n_samples, 64), seed=cfg.seed + 2, split="train")
    xm_pool, ym_pool = C.fixed_digits(cfg.match_pool, seed=cfg.seed + 3, split="train")

    def one(name):
        entry = {"instability": {}, "sharpness": {}, "train": {}}
        inst_fn, nets = None, {}
        for run_, kw in (("standard", cfg.train), ("adversarial", cfg.adv_train)):
            tracker = SharpnessTracker(**cfg.track, pgd_cfg=cfg.pgd, seed=cfg.seed)
            t0 = time.perf_counter()
            model, variables, info = C.load_model(name, kw, seed=cfg.seed, overrides=dict(width=cfg.width),
                                                  progress=progress, callbacks=[tracker])
            t1 = time.perf_counter()
            entry["sharpness"][run_] = info.pop("callbacks")[tracker.name]
            entry["train"][run_] = C.train_summary(info)
            xs, ys, _ = C.correct_subset(model, variables, x_pool, y_pool, cfg.n_samples)
            if inst_fn is None:
                inst_fn = measure_fn(model, variables, pgd_steps=cfg.pgd["steps"], normalizer=cfg.normalizer)
            res = inst_fn(variables, xs, ys, xm_pool, ym_pool, eta=cfg.eta, pgd_cfg=cfg.pgd,
                          key=jax.random.key(cfg.seed), chunk=cfg.chunk)
            entry["instability"][run_] = dict(summarize_instability(res), n_samples=int(len(xs)),
                                              test_accuracy=info.get("test_accuracy"),
                                              **{k: np.asarray(res[k]).tolist() for k in _KEEP},
                                              time_s={"train_or_load": t1 - t0, "compute": time.perf_counter() - t1})
            nets[run_] = variables
        entry["theorem6"] = curvature.compare_networks(model, nets["standard"], nets["adversarial"], x_pool, y_pool,
                                                       n=cfg.n_samples, pgd_cfg=cfg.pgd, seed=cfg.seed)
        return entry

    models = C.by_piece(one, cfg.models, out=out, progress=progress, desc="fig5 models")
    return dict(dtype="float64", dtype_sharpness="float32", normalizer=cfg.normalizer, models=models,
                match_tol=MATCH_TOL, controls={m: d["instability"]["standard"].get("controls") for m, d in models.items()},
                theorem6={m: d.get("theorem6") for m, d in models.items()},
                sharpness_summary=summarize_sharpness({m: d["sharpness"] for m, d in models.items()}))


def claims(results: dict) -> list[dict]:
    """C.8 against the controls (the verdict), the paper's own comparison (paper protocol), the
    sharpness extension and Theorem 6 (:mod:`jaxdyn.experiments._fig5_claims`)."""
    return _fig5_claims.claims(results)
