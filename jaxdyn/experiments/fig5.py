"""Figure 5, conclusion C.8: adversarial training is more likely to make parameters oscillate.

Two measurements on AlexNet and VGG-11 trained on MNIST (10 classes):

1. **The paper's per-layer instability.** For each weight layer ``j`` (in forward order) and each
   training digit ``x``, ``Δ^(ori)_j`` and ``Δ^(adv)_j`` of
   :func:`jaxdyn.metrics.weight_gradient_instability` (``Δ_j = ||∂L/∂W_j(W_j + ΔW_j) -
   ∂L/∂W_j(W_j)|| / (D_j ||ΔW_j||)``, ``ΔW_j = -η ∂L/∂W_j``) on ``x`` and on ``x + δ`` with ``δ``
   an ℓ∞ PGD perturbation (random start, clip to [0, 1]); averaged over digits. ``D_j`` is the
   fan-in of layer ``j`` (the paper's ``D`` for a square ``W_j``; it cancels in the ratio).
   Measured on the standardly trained network (as the paper) and, as an extension, on the
   adversarially trained one. The verdict counts the layers with mean ``Δ^(adv)_j > Δ^(ori)_j``.

2. **Sharpness along training (extension).** The top eigenvalue ``λ_max`` of the Hessian of the
   loss w.r.t. all parameters (power iteration on Hessian-vector products,
   :func:`jaxdyn.hessian.param_hessian_top_eigenvalue`) at a few steps along standard and ℓ∞-PGD
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

from jaxdyn.attacks import pgd
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import claim, count_verdict
from jaxdyn.losses import loss
from jaxdyn.metrics import weight_gradient_instability
from jaxdyn.params import layer_paths
from jaxdyn.results import to_json_tree

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
    chunk: Optional[int] = _help("samples per compiled call (bounds memory; none: all at once)")
    pgd: Any = _help("ℓ∞ PGD giving δ: {eps, alpha, steps} (JSON)")
    adv_train: Any = _help("adversarial training preset: load_or_train arguments (JSON)")
    track: Any = _help("sharpness tracking along training: {points, probe, iters} (JSON)")


_PGD = {"tiny": dict(eps=0.1, alpha=0.05, steps=2), "quick": dict(eps=0.1, alpha=0.05, steps=5),
        "full": dict(eps=0.3, alpha=0.01, steps=40)}
SCALES = {s: dict(kw, normalizer="fan_in", seed=0, pgd=_PGD[s], train=C.FIGURE_VANILLA[s], adv_train=C.FIG5_ADV[s])
          for s, kw in {
              "tiny": dict(models=("cnn3",), width=1 / 16, n_samples=4, eta=1e-3, chunk=None,
                           track=dict(points=2, probe=16, iters=5)),
              "quick": dict(models=("alexnet", "vgg11"), width=0.125, n_samples=8, eta=1e-3, chunk=None,
                            track=dict(points=3, probe=32, iters=12)),
              "full": dict(models=("alexnet", "vgg11"), width=1.0, n_samples=256, eta=1e-3, chunk=16,
                           track=dict(points=11, probe=256, iters=30)),
          }.items()}


def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    from jaxdyn._checks import check_choice
    from jaxdyn.models import model_names

    cfg = C.make_config(Config, SCALES, scale, overrides)
    C.check_models(cfg.models, model_names(), what="fig5")
    check_choice("normalizer", cfg.normalizer, ("fan_in", "size", "none"))
    for k in ("width", "n_samples", "eta", "chunk"):
        v = getattr(cfg, k)
        if v is not None and not v > 0:
            raise ValueError(f"{k} must be > 0, got {v}")
    for k, keys in (("pgd", ("eps", "alpha", "steps")), ("track", ("points", "probe", "iters"))):
        d = getattr(cfg, k)
        if not isinstance(d, dict) or set(d) != set(keys) or any(not d[q] > 0 for q in keys):
            raise ValueError(f"{k} must be a dict of positive {', '.join(keys)}, got {d!r}")
    if not (isinstance(cfg.train, dict) and isinstance(cfg.adv_train, dict)):
        raise ValueError("train and adv_train must be dicts of load_or_train arguments")
    return cfg


# --- the per-layer instability -------------------------------------------------------------


def instability_fn(model, variables, *, pgd_steps: int, normalizer: str = "fan_in"):
    """A function ``(variables, x, y, *, eta, pgd_cfg, key, chunk=None) -> dict`` computing
    ``Δ^(ori)`` and ``Δ^(adv)`` per sample and layer, compiled once per architecture (``eta``, ε and
    α traced), so the standard and the adversarially trained network share it; ``chunk`` bounds the
    samples per call (:func:`jaxdyn.experiments._common.chunked`). See :func:`instability`."""
    paths = layer_paths(model, variables)

    def run(variables, x, y, key_data, eta, eps, alpha):
        def f(xx):
            return model.apply(variables, xx[None])[0]

        def one(xi, yi, k):
            d = pgd(f, xi, yi, eps=eps, alpha=alpha, steps=pgd_steps, norm="linf", key=k)

            def inst(xx):
                return weight_gradient_instability(lambda v: loss(model.apply(v, xx[None])[0], yi), variables,
                                                   paths, eta=eta, normalizer=normalizer)

            both = jax.vmap(inst)(jnp.stack([xi, xi + d]))  # one compiled graph for x and x + δ
            return both[0], both[1], jnp.max(jnp.abs(d))

        return jax.vmap(one)(x, y, jax.random.wrap_key_data(key_data))

    jrun = jax.jit(run)

    def call(variables, x, y, *, eta, pgd_cfg, key, chunk=None):
        if pgd_cfg["steps"] != pgd_steps:
            raise ValueError(f"this function was built for {pgd_steps} PGD steps, got {pgd_cfg['steps']}")
        dt = jax.tree.leaves(variables)[0].dtype
        e, ep, al = jnp.asarray(eta, dt), jnp.asarray(pgd_cfg["eps"], dt), jnp.asarray(pgd_cfg["alpha"], dt)
        keys = jax.random.split(key, len(x))
        def part(xc, yc, kc):
            return jrun(variables, jnp.asarray(xc, dt), jnp.asarray(yc), kc, e, ep, al)

        ori, adv, dn = C.chunked(part, np.asarray(x), np.asarray(y), np.asarray(jax.random.key_data(keys)),
                                 chunk=chunk)
        return {"layers": ["/".join(p) for p in paths], "ori": np.asarray(ori), "adv": np.asarray(adv),
                "delta_linf": np.asarray(dn)}

    return call


def instability(model, variables, x, y, *, eta, pgd_cfg: dict, key, normalizer: str = "fan_in") -> dict:
    """``Δ^(ori)`` and ``Δ^(adv)`` per sample and layer.

    Args:
      model, variables: the network.
      x: ``[N, 28, 28, 1]``; y: ``[N]`` labels.
      eta: learning rate ``η`` of the one-layer step.
      pgd_cfg: ``{"eps", "alpha", "steps"}`` of the ℓ∞ PGD giving ``δ``.
      key: PRNG key of PGD's random starts.
    Returns:
      ``{"layers": [...paths...], "ori": [N, L], "adv": [N, L], "delta_linf": [N]}``.
    """
    fn = instability_fn(model, variables, pgd_steps=pgd_cfg["steps"], normalizer=normalizer)
    return fn(variables, x, y, eta=eta, pgd_cfg=pgd_cfg, key=key)


def summarize_instability(res: dict) -> dict:
    """Per-layer means, ratios and counts of ``Δ^(adv) > Δ^(ori)``."""
    ori, adv = np.asarray(res["ori"], float), np.asarray(res["adv"], float)
    mo, ma = np.nanmean(ori, axis=0), np.nanmean(adv, axis=0)
    return {"layers": res["layers"], "mean_ori": mo.tolist(), "mean_adv": ma.tolist(),
            "ratio": (ma / mo).tolist(), "layers_adv_greater": int(np.sum(ma > mo)), "n_layers": int(len(mo)),
            "frac_samples_adv_greater": np.nanmean(adv > ori, axis=0).tolist()}


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
        from jaxdyn import data
        from jaxdyn.hessian import param_hessian_top_eigenvalue

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
        with open(self.log, "a") as fh:
            fh.write(json.dumps({"step": int(step), "lambda_clean": float(lc), "lambda_adv": float(la),
                                 "train_loss": float(loss_value)}) + "\n")

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


# --- plot ----------------------------------------------------------------------------------


def plot(results: dict, out: Path) -> None:
    """``fig5_oscillation.png``: per model, bars of mean ``Δ^(ori)_j`` and ``Δ^(adv)_j`` per layer
    (standardly trained net, log scale), and ``λ_max`` along standard / adversarial training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, models = results, list(results["models"])
    fig, axes = plt.subplots(2, len(models), figsize=(5.0 * len(models), 6.4), squeeze=False)
    for c, m in enumerate(models):
        d = data["models"][m]
        s = d["instability"]["standard"]
        L = len(s["mean_ori"])
        ax = axes[0, c]
        ax.bar(np.arange(L) - 0.2, s["mean_ori"], 0.4, label="Δ^(ori)")
        ax.bar(np.arange(L) + 0.2, s["mean_adv"], 0.4, label="Δ^(adv)")
        ax.set_yscale("log")
        ax.set_xticks(np.arange(L))
        ax.set_xticklabels([str(j + 1) for j in range(L)], fontsize=7)
        ax.set_xlabel("layer j")
        ax.set_title(f"{m} (standard training): Δ^(adv) > Δ^(ori) in {s['layers_adv_greater']}/{L} layers", fontsize=8)
        ax.legend(fontsize=7)
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
    C.save_figure(fig, Path(out) / "fig5_oscillation.png",
                  title=f"Fig. 5 ({data['scale']} scale): instability of weight gradients and sharpness")

# --- the experiment ------------------------------------------------------------------------


def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Fig. 5 at ``cfg``: per network and training (standard, adversarial) the per-layer
    instability of the weight gradient and ``λ_max`` along training."""
    C.enable_x64()
    x_pool, y_pool = C.fixed_digits(max(4 * cfg.n_samples, 64), seed=cfg.seed + 2, split="train")

    def one(name):
        entry = {"instability": {}, "sharpness": {}, "train": {}}
        inst_fn = None
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
                inst_fn = instability_fn(model, variables, pgd_steps=cfg.pgd["steps"], normalizer=cfg.normalizer)
            res = inst_fn(variables, xs, ys, eta=cfg.eta, pgd_cfg=cfg.pgd, key=jax.random.key(cfg.seed), chunk=cfg.chunk)
            entry["instability"][run_] = dict(summarize_instability(res), n_samples=int(len(xs)),
                                              test_accuracy=info.get("test_accuracy"),
                                              ori=res["ori"].tolist(), adv=res["adv"].tolist(),
                                              time_s={"train_or_load": t1 - t0, "compute": time.perf_counter() - t1})
        return entry

    models = C.by_piece(one, cfg.models, out=out, progress=progress, desc="fig5 models")
    return dict(dtype="float64", dtype_sharpness="float32", normalizer=cfg.normalizer, models=models,
                sharpness_summary=summarize_sharpness({m: d["sharpness"] for m, d in models.items()}))


def claims(results: dict) -> list[dict]:
    """C.8 (Δ^(adv) > Δ^(ori) per layer, pooled over networks) and the sharpness extension."""
    fmt = C.fmt
    parts, sharp, greater, total = [], [], 0, 0
    for m, d in results["models"].items():
        s, a = d["instability"]["standard"], d["instability"].get("adversarial", {})
        greater, total = greater + s["layers_adv_greater"], total + s["n_layers"]
        parts.append(f"{m} (standard training, acc. {fmt(s.get('test_accuracy'), 3)}): Δ^(adv) > Δ^(ori) in "
                     f"{s['layers_adv_greater']}/{s['n_layers']} layers, ratio per layer "
                     f"{', '.join(fmt(r) for r in s['ratio'])}"
                     + (f"; adversarially trained (acc. {fmt(a.get('test_accuracy'), 3)}): "
                        f"{a.get('layers_adv_greater')}/{a.get('n_layers')} layers" if a else ""))
    ss = results["sharpness_summary"]
    for m, s in ss.items():
        sharp.append(f"{m}: λ_max at the end of standard training {fmt(s['lambda_standard_end'])} (clean loss), of "
                     f"adversarial training {fmt(s['lambda_adversarial_end'])} (adversarial loss), ratio "
                     f"{fmt(s['ratio_end'])} (mean ratio along training {fmt(s['mean_ratio_along'])})")
    cfg = results["config"]
    pg = cfg["pgd"]
    protocol = (f"η = {cfg['eta']}, D_j = {cfg['normalizer']}, δ: ℓ∞ PGD ε = {pg['eps']}, α = {pg['alpha']}, "
                f"{pg['steps']} steps; {cfg['n_samples']} training digits, width {cfg['width']}, {results['dtype']}")
    v = ("holds" if total and greater == total else
         "holds partly" if total and greater / total >= 0.5 else "does not hold")
    ups = [s["ratio_end"] > 1 for s in ss.values()]
    return [
        claim("fig5.instability", "C.8 (Fig. 5): Δ^(adv) > Δ^(ori) — adversarial training is more unstable",
              paper="Δ^(adv) larger than Δ^(ori) (\"much higher\")", protocol=protocol, measured="; ".join(parts),
              baselines="Δ^(ori): the same one-layer step on the clean digit",
              rule=f"layers with mean Δ^(adv) > Δ^(ori), pooled over networks: all ({greater}/{total}) holds, at least "
                   f"half holds partly", verdict=v),
        claim("fig5.sharpness", "(extension) λ_max of the loss Hessian is larger along adversarial training",
              paper="not measured in the paper (Theorem 6 and the edge-of-stability literature)",
              protocol=f"power iteration on a fixed probe batch {cfg['track']}, {results['dtype_sharpness']}",
              measured="; ".join(sharp) or "not measured", baselines="λ_max along standard training",
              rule="holds: end-of-training λ_max (each run's own training loss) larger for adversarial training on "
                   "every network; holds partly: on some", verdict=count_verdict(ups)),
    ]

