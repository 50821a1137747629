"""Figures 2-5 of the paper on deep networks: shared helpers and the ``figures`` command.

Each figure is its own module (:mod:`~jaxdyn.experiments.fig2` ... :mod:`~jaxdyn.experiments.fig5`)
with ``run_experiment(*, scale, out, seed, progress) -> dict`` (writes ``figN.json`` and
``figN_*.png`` into ``out``), a ``plot`` function that reads only the JSON, and the CLI contract
(``HELP``, ``add_arguments``, ``run``). ``python -m jaxdyn figures`` runs all four.

Scales: ``"tiny"`` (tests: seconds, one small model), ``"quick"`` (CI's 2 CPU cores: small widths,
few samples), ``"full"`` (the paper's networks at full width, for a GPU). The presets are in each
figure module's ``SCALES``; every result records them, with the dtype and the models' accuracies.
Choices the paper leaves open are documented in ``docs/figures.md``.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "FIGURES", "SCALE_CHOICES", "enable_x64", "load_model", "layer_paths", "spearman",
    "rank_verdict", "correct_subset", "run_experiment", "progress_bar", "VANILLA", "train_summary",
    "jsonable_config", "add_scale_arguments", "chunked",
]

FIGURES = ("fig2", "fig3", "fig4", "fig5")
SCALE_CHOICES = ("tiny", "quick", "full")

HELP = "Figures 2-5 (exponential growth, per-sample influence, dominance, oscillation) on deep nets."


def enable_x64() -> None:
    """Float64 at the experiment entry point (design.md "Precision")."""
    jax.config.update("jax_enable_x64", True)


def check_scale(scale: str) -> None:
    if scale not in SCALE_CHOICES:
        raise ValueError(f"scale must be one of {list(SCALE_CHOICES)}, got {scale!r}")


def progress_bar(iterable=None, *, enabled: bool = True, **kw):
    """A tqdm progress bar (a plain iterator when disabled)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not enabled, dynamic_ncols=True, **kw)


#: standard (vanilla) training of the 10-class networks of Figs. 2 and 5, per scale (one config,
#: so both figures share the cached models); keyword arguments of ``jaxdyn.training.load_or_train``
VANILLA = {
    "tiny": dict(n_train=256, epochs=1, batch_size=64, lr=1e-3, n_eval_robust=0),
    "quick": dict(n_train=10_000, epochs=1, batch_size=128, lr=1e-3, n_eval_robust=0),
    "full": dict(n_train=None, epochs=10, batch_size=128, lr=1e-3, n_eval_robust=1000),
}


def load_model(name: str, *, dtype=jnp.float64, progress: bool = True, track=None, **train_kwargs):
    """Train or load (cached in ``JAXDYN_CACHE_DIR``) a zoo model and cast it to ``dtype``.

    ``train_kwargs`` go to :func:`jaxdyn.training.load_or_train` (same cache entry).

    ``track``: an optional tracker (``name``, ``config()``, ``start(model, cfg, run_dir)``,
    ``callback(step, state, loss)``, ``records(run_dir)``; e.g. :class:`~jaxdyn.experiments.fig5.SharpnessTracker`)
    whose ``callback`` records numbers along training
    (Fig. 5's sharpness). Its records are stored beside the model (``<run_dir>/<track.name>.json``);
    when the model is cached but was trained without them, a copy is trained (deterministically,
    the same parameters) in ``<run_dir>-track`` to get them.

    Returns:
      ``(model, variables, info)`` with ``info["test_accuracy"]``; with ``track``, also
      ``info["track"]`` (the records).
    """
    from jaxdyn import models, training

    if track is None:
        model, variables, info = training.load_or_train(name, progress=progress, **train_kwargs)
        return model, models.cast(variables, dtype), dict(info)
    model, variables, info = training.load_or_train(name, progress=progress, callbacks=[track], **train_kwargs)
    info = dict(info, track=info["callbacks"][track.name])
    return model, models.cast(variables, dtype), info


def train_summary(info: dict) -> dict:
    """The scalar facts of a training run (config, accuracies, times) for a results JSON."""
    keep = ("test_accuracy", "robust_accuracy", "param_count", "train_time_s", "config_hash", "robust_eval")
    out = {k: info[k] for k in keep if k in info}
    if "config" in info:
        out["config"] = info["config"]
    return out


def jsonable_config(cfg) -> dict:
    """``cfg`` as it reads back from JSON (tuples become lists), for comparing configs."""
    import json

    from jaxdyn.cli import _jsonable

    return json.loads(json.dumps(cfg, default=_jsonable))


def layer_paths(model: nn.Module, variables, *, example_shape: Sequence[int] = (28, 28, 1),
                kinds=(nn.Dense, nn.Conv)) -> list[tuple[str, ...]]:
    """Module paths of the weight layers (``nn.Dense``/``nn.Conv``) in the order a forward pass
    calls them (the "j" of Fig. 5). Found with :func:`flax.linen.intercept_methods`, so it does
    not depend on parameter names or on the (sorted) order of the parameter dict."""
    found: list[tuple[str, ...]] = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(context.module, kinds):
            p = tuple(context.module.path)
            if p not in found:
                found.append(p)
        return next_fun(*args, **kwargs)

    x = jax.ShapeDtypeStruct((1, *example_shape), jax.tree.leaves(variables)[0].dtype)
    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    if not found:
        raise ValueError(f"{type(model).__name__} has no nn.Dense / nn.Conv layer")
    return found


def spearman(a, b) -> dict:
    """Spearman rank correlation with its two-sided p-value (scipy), ignoring non-finite pairs.

    Returns ``{"rho", "p", "n"}`` (``rho``/``p`` are ``nan`` when fewer than 3 pairs remain or
    one side is constant)."""
    from scipy import stats

    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    if n < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return {"rho": float("nan"), "p": float("nan"), "n": n}
    r = stats.spearmanr(a[ok], b[ok])
    return {"rho": float(r.statistic), "p": float(r.pvalue), "n": n}


def rank_verdict(rhos: Sequence[dict], *, alpha: float = 0.05) -> str:
    """Verdict for a claim "these quantities rise together" from Spearman results.

    ``"holds"``: every ρ > 0 with p < ``alpha``; ``"holds partly"``: every ρ > 0, or some but not
    all significant and positive; ``"does not hold"``: no ρ is significantly positive and at least
    one is ≤ 0 (or none could be computed)."""
    rhos = [r for r in rhos if np.isfinite(r["rho"])]
    if not rhos:
        return "does not hold"
    pos = [r["rho"] > 0 for r in rhos]
    sig = [r["rho"] > 0 and r["p"] < alpha for r in rhos]
    if all(sig):
        return "holds"
    if all(pos) or any(sig):
        return "holds partly"
    return "does not hold"


def chunked(fn, *arrays, chunk: int | None, **kwargs):
    """``fn(*arrays, **kwargs)`` on slices of at most ``chunk`` samples (the leading axis of every
    array), results (a dict of arrays, or an array) concatenated: bounds the memory of per-sample
    work at the full scale. ``chunk=None`` runs one call. Slices are padded to ``chunk`` by
    repeating the last sample, so every call has the same shape (one compile)."""
    n = len(arrays[0])
    if chunk is None or chunk >= n:
        return fn(*arrays, **kwargs)
    outs = []
    for i in range(0, n, chunk):
        k = min(chunk, n - i)
        part = [np.asarray(a[i:i + k]) for a in arrays]
        if k < chunk:
            part = [np.concatenate([p, np.repeat(p[-1:], chunk - k, axis=0)]) for p in part]
        o = jax.device_get(fn(*part, **kwargs))
        outs.append(jax.tree.map(lambda a: np.asarray(a)[:k], o))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


def correct_subset(model, variables, x: np.ndarray, y: np.ndarray, n: int, *, batch: int = 256):
    """The first ``n`` examples of ``(x, y)`` that ``model`` classifies correctly (an attack on an
    already misclassified example has nothing to do). Returns ``(x_n, y_n, accuracy_on_scanned)``.
    ``y`` is integer (softmax head) or ±1 (binary head)."""
    from jaxdyn.losses import is_success

    apply = jax.jit(lambda v, xb: model.apply(v, xb))
    dt = jax.tree.leaves(variables)[0].dtype
    keep, seen, correct = [], 0, 0
    for i in range(0, len(x), batch):
        xb = jnp.asarray(x[i:i + batch], dt)
        z = np.asarray(apply(variables, xb))
        yb = y[i:i + batch]
        ok = ~np.asarray(jax.vmap(is_success)(jnp.asarray(z), jnp.asarray(yb, z.dtype if z.shape[1] == 1 else jnp.int32)))
        seen += len(xb)
        correct += int(ok.sum())
        keep.extend(np.nonzero(ok)[0] + i)
        if len(keep) >= n:
            break
    keep = np.asarray(keep[:n], int)
    if len(keep) == 0:
        raise ValueError("the model classifies none of the scanned examples correctly")
    return x[keep], y[keep], correct / max(seen, 1)


def run_experiment(*, scale: str = "quick", out: Path, seed: int = 0, progress: bool = True,
                   only: Sequence[str] = FIGURES) -> dict:
    """Run Figures 2-5 (or ``only`` some) into ``out``; returns ``{figure: results}``."""
    check_scale(scale)
    out = Path(out)
    results = {}
    for name in only:
        if name not in FIGURES:
            raise ValueError(f"unknown figure {name!r}; choose from {list(FIGURES)}")
        mod = importlib.import_module(f"jaxdyn.experiments.{name}")
        results[name] = mod.run_experiment(scale=scale, out=out, seed=seed, progress=progress)
    return results


# --- CLI -----------------------------------------------------------------------------------

RESULT_NAME = "figures.json"


def add_scale_arguments(parser) -> None:
    """``--quick`` (default) / ``--full`` (and a hidden ``--scale tiny`` for tests), ``--seed``,
    ``--no-progress``."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="scale", action="store_const", const="quick",
                   help="CI scale: small widths, few samples (default)")
    g.add_argument("--full", dest="scale", action="store_const", const="full",
                   help="the paper's scale (meant for a GPU)")
    g.add_argument("--scale", dest="scale", choices=SCALE_CHOICES, help=argparse.SUPPRESS)
    parser.set_defaults(scale="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_arguments(parser) -> None:
    add_scale_arguments(parser)
    parser.add_argument("--only", default=",".join(FIGURES),
                        help=f"comma-separated subset of {','.join(FIGURES)}")


def run(args) -> dict:
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    res = run_experiment(scale=args.scale, out=args.out, seed=args.seed,
                         progress=not args.no_progress, only=only)
    return {k: {"verdict": v.get("verdict"), "json": v.get("json")} for k, v in res.items()}
