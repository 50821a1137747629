"""κ(β) sweep: Theorem 2 against an m-step raw attack on MNIST (frozen gating by default).

For each β: δ* from an m-step raw gradient attack (A1) with ``α = β/m`` under frozen gating (A2,
default) on a fixed set of MNIST test digits; δ̂ from Theorem 2 with ``H̄_z`` taken from δ*'s
own trajectory; ``κ = E‖δ* − δ̂‖ / E‖δ*‖``. Beside it: κ of Theorem 1 at the same m (which
removes the O(1/m) part), and κ of the first-order baseline ``β g_x`` (no curvature).

Everything runs in float64 unless ``dtype="float32"``; the sweep itself is
:func:`jaxdyn.analyses.kappa_beta.kappa_vs_beta` (the β grid through one compiled function, β traced).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxdyn._internal.checks import check_choice, check_positive, check_steps
from jaxdyn.analyses.kappa_beta import kappa_vs_beta
from jaxdyn.core.models import model_names
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import ClaimText, count_verdict, render
from jaxdyn.experiments.runner import Pieces
from jaxdyn.training import presets

name = "kappa-sweep"
title = "κ(β) — Theorem 2 against a raw attack over strengths"

_help = C.help_field


@dataclasses.dataclass(frozen=True)
class Config:
    scale: str
    model: str = _help("zoo model (trained with its QUICK preset)")
    betas: tuple[float, ...] = _help("the β grid")
    steps: int = _help("attack steps m (α = β/m)")
    n_samples: int = _help("number of test digits")
    gating: str = _help("frozen (A2) or free")
    path: str = _help("network: the frozen attack through the network; logit: the same in logit space (A2 only)")
    dtype: str = _help("float64 or float32")
    seed: int = _help("seed of the digit subset and of the training")
    train: Any = _help("training preset: 'quick' or load_or_train arguments (JSON)", json="train")


_BASE = dict(model="mlp3", betas=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0), steps=1000, n_samples=50,
             gating="frozen", path="network", dtype="float64", seed=0, train="quick")
SCALES = {
    "tiny": dict(_BASE, betas=(1e-3, 1e-1), steps=40, n_samples=4, path="logit",
                 train=presets.TABLE["tiny"]),
    "quick": _BASE,
    "full": dict(_BASE, n_samples=1000),
}


def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    cfg = C.make_config(Config, SCALES, scale, overrides)
    if cfg.model not in model_names():
        raise ValueError(f"unknown model {cfg.model!r}; known models: {', '.join(model_names())}")
    if cfg.n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {cfg.n_samples}")
    check_steps(cfg.steps)
    for b in cfg.betas:
        check_positive("beta", b)
    check_choice("gating", cfg.gating, ("frozen", "free"))
    check_choice("path", cfg.path, ("network", "logit"))
    check_choice("dtype", cfg.dtype, ("float64", "float32"))
    if cfg.path == "logit" and cfg.gating != "frozen":
        raise ValueError("the logit-space path exists only under frozen gating")
    return cfg


def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """The sweep at ``cfg``: ``{"rows": [...], "model_info": {...}}``."""
    if cfg.dtype == "float64":
        C.enable_x64()
    model, variables, info = C.load_model(cfg.model, cfg.train, seed=cfg.seed, dtype=cfg.dtype, progress=progress)
    xs, ys = C.fixed_digits(cfg.n_samples, seed=cfg.seed)
    xs = jnp.asarray(xs, getattr(jnp, cfg.dtype))
    rows = kappa_vs_beta(model, variables, xs, jnp.asarray(ys, jnp.int32), betas=cfg.betas, steps=cfg.steps,
                         gating=cfg.gating, path=cfg.path, progress=progress, pieces=Pieces(out))
    meta = dict(model=cfg.model, steps=cfg.steps, n_samples=int(xs.shape[0]), dtype=cfg.dtype,
                test_accuracy=float(info["test_accuracy"]), gating=cfg.gating, path=cfg.path)
    for r in rows:
        print(f"β={r['beta']:<8.1e} κ={r['kappa']:.3e}  κ(Thm1)={r['kappa_theorem1']:.3e}  "
              f"κ(first order)={r['kappa_first_order']:.3e}  success={r['success_rate']:.2f}")
    return dict(rows=[dict(meta, **r) for r in rows], model_info=C.train_summary(info))


#: the one claim of the sweep
BEATS_FIRST_ORDER = ClaimText(
    id="kappa_sweep.beats_first_order",
    claim="Theorem 2's δ̂ is closer to the attack than the first-order β g_x",
    paper="not in the paper (it reports κ at one unstated β)",
    protocol="{model} (test acc. {test_accuracy}), {n_samples} test digits, m = {steps}, {gating} gating, {dtype}",
    measured="{measured}",
    baselines="first order β g_x: {baselines}",
    rule="holds: κ below the first-order κ at every β of the grid; holds partly: at some β; else does not hold")
#: the pieces of its lists, one per β
MEASURED_ITEM, BASELINE_ITEM = "β={beta}: κ {kappa}, success {success_rate}", "β={beta}: {kappa_first_order}"


def claims(results: dict) -> list[dict]:
    """Theorem 2 beats the first-order baseline at every β (:data:`BEATS_FIRST_ORDER`)."""
    rows = results["rows"]
    r0 = rows[0]
    fmt = [{k: C.fmt(r[k]) for k in ("beta", "kappa", "success_rate", "kappa_first_order")} for r in rows]
    values = dict(model=r0["model"], test_accuracy=C.fmt(r0["test_accuracy"], 3), n_samples=r0["n_samples"],
                  steps=r0["steps"], gating=r0["gating"], dtype=r0["dtype"],
                  measured="; ".join(MEASURED_ITEM.format_map(v) for v in fmt),
                  baselines="; ".join(BASELINE_ITEM.format_map(v) for v in fmt))
    better = [r["kappa"] < r["kappa_first_order"] for r in rows]
    verdict = count_verdict(better)
    # one network, pooled κ per β: the statistic is the count of β, without an interval over seeds
    stat = dict(name="β values with κ < first-order κ", value=sum(better), ci=None, n_tests=len(better),
                n_digits=int(r0["n_samples"]), n_seeds=1)
    seed = (results.get("config") or {}).get("seed", 0)
    worse = [f["beta"] for f, b in zip(fmt, better) if not b]
    return [render(BEATS_FIRST_ORDER, values, verdict=verdict, statistic=stat,
                   per_seed=[dict(seed=int(seed), value=sum(better), verdict=verdict)],
                   cause=None if verdict == "holds" else f"κ ≥ first-order κ at β = {', '.join(worse)}")]


def plot(result: dict, out: Path) -> None:
    """``kappa_vs_beta.png``: κ, κ (Theorem 1) and κ (first order) against β, from the results."""
    import matplotlib  # noqa: PLC0415 (matplotlib only when plotting)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (after the backend is chosen)

    rows = result["rows"]
    b = np.array([r["beta"] for r in rows])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.loglog(b, [r["kappa"] for r in rows], "o-", label="κ: Theorem 2 (infinite steps)")
    ax.loglog(b, [r["kappa_theorem1"] for r in rows], "s--", label=f"Theorem 1 (m = {rows[0]['steps']})")
    ax.loglog(b, [r["kappa_first_order"] for r in rows], "^:", label="first order β g_x")
    # β² guide through Theorem 1's first point: the error of the averaged H̄_z is O(β²)
    ref = rows[0]["kappa_theorem1"] * (b / b[0]) ** 2
    ax.loglog(b, ref, color="gray", lw=0.8, alpha=0.6, label="∝ β²")
    ax.set_xlabel("attack strength β = α m")
    ax.set_ylabel("relative error  E‖δ*−δ̂‖ / E‖δ*‖")
    r0 = rows[0]
    ax.set_title(f"{r0['model']} (test acc {r0['test_accuracy']:.3f}), {r0['gating']} gating,\n"
                 f"{r0['n_samples']} digits, {r0['dtype']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    C.save_figure(fig, Path(out) / "kappa_vs_beta.png", dpi=130)
