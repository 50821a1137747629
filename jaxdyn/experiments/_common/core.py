"""The experiments' generic helpers: scales and configs, float64, progress bars, the fixed digit
subsets, trained models at a scale, chunked per-sample work, number formatting."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from pathlib import Path

from jaxdyn.experiments._common.fields import check_json_fields
from jaxdyn._internal.sharding import chunked  # noqa: F401  (the experiments' chunked per-sample work)
from jaxdyn._internal.results import atomic_path
from jaxdyn.training import presets
from jaxdyn.core.models import cast
from jaxdyn import training
import jax.numpy as jnp
import jax
from jaxdyn.core.losses import is_success
from jaxdyn.datasets import loading as data
from jaxdyn.experiments.runner import Pieces
from tqdm.auto import tqdm

__all__ = [
    "SCALES", "make_config", "enable_x64", "progress_bar", "chunked", "fixed_digits", "correct_subset",
    "load_model", "train_summary", "by_piece", "save_figure", "NetworksConfig", "fmt", "fmt_sci", "md_table",
    "check_models", "help_field", "seeds_text",
    "FIGURE_VANILLA", "FIGURE_ADV_BINARY", "FIG5_ADV", "TABLE_TRAIN",
]

#: ``tiny``: tests (seconds, one or two small models); ``quick``: CI's 2 CPU cores (narrow
#: networks, few samples); ``full``: the paper's scale (meant for a GPU).
SCALES = ("tiny", "quick", "full")


#: the training presets of the experiments; their one home is :mod:`jaxdyn.training.presets`
FIGURE_VANILLA, FIGURE_ADV_BINARY, FIG5_ADV = presets.FIGURE_VANILLA, presets.FIG3_ADV, presets.FIG5_ADV
#: the tables' ``train`` / ``train_overrides`` config fields per scale (shared by Table 1, Table 2
#: and the appendix, so that they share the cached networks)
TABLE_TRAIN = {s: dict(train=presets.TABLE[s], train_overrides=presets.TABLE_OVERRIDES[s] or None)
               for s in presets.TABLE}


def help_field(s: str, *, json: Any = None):
    """A config field's help text (the CLI shows it); ``json``: what a JSON-valued field holds,
    checked by :func:`make_config` (the kinds of :mod:`.fields`: ``"train"``,
    ``"train_overrides"`` or ``{key: type}``)."""
    return dataclasses.field(metadata={"help": s} if json is None else {"help": s, "json": json})


@dataclasses.dataclass(frozen=True)
class NetworksConfig:
    """The fields of every experiment over trained zoo networks (its ``Config`` subclasses this one,
    frozen, and adds its own knobs)."""

    scale: str
    models: tuple[str, ...] = help_field("zoo networks to measure")
    n_samples: int = help_field("digits per network")
    seeds: tuple[int, ...] = help_field(
        "independently trained networks per architecture: seed s trains its own network (the model cache keys on "
        "it) and draws its own digits")
    train: Any = help_field("training preset: 'quick' or load_or_train arguments (JSON)", json="train")


def make_config(cls, presets: Mapping[str, Mapping[str, Any]], scale: str, overrides: Mapping[str, Any]):
    """The resolved config ``cls(scale=scale, **presets[scale], **overrides)``.

    ``overrides`` with the value ``None`` are ignored (an unset command-line flag); an unknown
    key or scale raises ``ValueError`` naming the choices, and so does an unknown key or a value of
    the wrong type inside a JSON-valued field (:func:`.fields.check_json_fields`). Tuples stay
    tuples (frozen, hashable where the values are)."""
    if scale not in SCALES or scale not in presets:
        raise ValueError(f"scale must be one of {[s for s in SCALES if s in presets]}, got {scale!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown} for {cls.__name__}; fields: {sorted(names - {'scale'})}")
    kw = dict(presets[scale])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    cfg = cls(scale=scale, **kw)
    check_json_fields(cfg)
    return cfg


def enable_x64() -> None:
    """Float64 at the experiment entry point (design.md "Precision": κ reaches 1e-8)."""

    jax.config.update("jax_enable_x64", True)


def progress_bar(iterable=None, *, enabled: bool = True, **kw):
    """A tqdm progress bar with rate and ETA (a plain iterator when disabled)."""

    return tqdm(iterable, disable=not enabled, dynamic_ncols=True, **kw)


def by_piece(fn: Callable, keys: Sequence[str], *, out, progress: bool, desc: str, unit: str = "net") -> dict:
    """``{k: fn(k) for k in keys}`` with a progress bar; with ``out``, each ``fn(k)`` is a piece of
    the run (:class:`jaxdyn.experiments.runner.Pieces`): stored as soon as it is done and reused
    when the run resumes (returned as it reads back from JSON either way)."""

    pieces = None if out is None else Pieces(out)
    return {k: fn(k) if pieces is None else pieces.get(k, lambda k=k: fn(k))
            for k in progress_bar(keys, enabled=progress, desc=desc, unit=unit)}


def fixed_digits(n: int, *, seed: int, binary=None, split: str = "test"):
    """A fixed, seeded set of ``n`` MNIST digits (float64; every digit kept, correctly classified
    or not); ``binary=(a, b)`` keeps two classes with labels ±1."""

    x, y = data.load_mnist(split)
    if binary is not None:
        x, y = data.binary_task(x, y, tuple(binary))
    x, y = data.subset(x, y, n, seed=seed)
    return np.asarray(x, np.float64), np.asarray(y, np.float64 if binary is not None else np.int32)


def correct_subset(model, variables, x: np.ndarray, y: np.ndarray, n: int, *, batch: int = 256):
    """The first ``n`` examples of ``(x, y)`` that ``model`` classifies correctly (an attack on an
    already misclassified example has nothing to do). Returns ``(x_n, y_n, accuracy_on_scanned)``.
    ``y`` is integer (softmax head) or ±1 (binary head)."""


    apply = _jitted_apply(model)
    dt = jax.tree.leaves(variables)[0].dtype
    keep, seen, correct = [], 0, 0
    for i in range(0, len(x), batch):
        z = np.asarray(apply(variables, jnp.asarray(x[i:i + batch], dt)))
        yb = jnp.asarray(y[i:i + batch], z.dtype if z.shape[1] == 1 else jnp.int32)
        ok = ~np.asarray(jax.vmap(is_success)(jnp.asarray(z), yb))
        seen += len(z)
        correct += int(ok.sum())
        keep.extend(np.nonzero(ok)[0] + i)
        if len(keep) >= n:
            break
    keep = np.asarray(keep[:n], int)
    if len(keep) == 0:
        raise ValueError("the model classifies none of the scanned examples correctly")
    return x[keep], y[keep], correct / max(seen, 1)


@functools.lru_cache(maxsize=16)
def _jitted_apply(model):
    """``jit(model.apply)``, one per architecture (equal modules hash equal): a standard and an
    adversarially trained network, or Figs. 3 and 4 in one process, share its compiles."""

    return jax.jit(lambda v, xb: model.apply(v, xb))


def load_model(name: str, train: Mapping[str, Any] | str, *, binary=None, adv=None, seed: int = 0,
               seeds: Sequence[int] | None = None, overrides: Mapping[str, Any] | None = None, dtype="float64",
               progress: bool = True, callbacks: Sequence = ()):
    """Train or load (cached in ``JAXDYN_CACHE_DIR``) zoo model ``name`` and cast it to ``dtype``.

    ``seeds``: the seeds of the same architecture the experiment trains (``seed`` among them; default
    ``(seed,)``). A dense network (:func:`jaxdyn.training.prefers_ensemble`) without ``callbacks``
    is an ensemble member (``trainer="ensemble"``, :func:`jaxdyn.training.load_or_train_seeds`): the
    seeds of ``seeds`` missing from the cache are trained together in one compiled program, then
    ``seed``'s is loaded. A convolutional network, or one with ``callbacks`` (trackers recording
    numbers along training, see :func:`jaxdyn.training.load_or_train`), is trained alone
    (``trainer="solo"``; its seeds share one compiled step).
    ``train``: ``"quick"`` for :func:`jaxdyn.training.quick_config`, else a dict of
    :func:`jaxdyn.training.load_or_train` arguments; ``binary``/``adv``/``seed`` and then
    ``overrides`` update it. Returns ``(model, variables, info)``.
    """
    seeds = (seed,) if seeds is None else tuple(seeds)
    if seed not in seeds:
        raise ValueError(f"seed {seed} is not among seeds {seeds}")
    if train == "quick":
        kw = training.quick_config(name, binary=binary, adv=adv, seed=seed)
    else:
        kw = dict(train)
        kw.update({k: v for k, v in dict(binary=binary, adv=adv).items() if v is not None})
        kw["seed"] = seed
    kw.update(overrides or {})
    if callbacks or not training.prefers_ensemble(name):
        model, variables, info = training.load_or_train(name, progress=progress, callbacks=tuple(callbacks), **kw)
    else:
        training.train_missing_seeds(name, seeds, progress=progress, **kw)
        kw["trainer"] = "ensemble"
        model, variables, info = training.load_or_train(name, progress=progress, allow_train=False, **kw)
    return model, cast(variables, getattr(jnp, dtype) if isinstance(dtype, str) else dtype), dict(info)


def seeds_text(results: Mapping[str, Any]) -> str:
    """``"0, 1, 2"``: the seeds of a results dict (its ``seeds``, else its config's)."""
    seeds = results.get("seeds") or (results.get("config") or {}).get("seeds") or ()
    return ", ".join(str(s) for s in seeds) or "—"


def train_summary(info: Mapping[str, Any]) -> dict:
    """The scalar facts of a training run (config, accuracies, times) for a results JSON."""
    keep = ("test_accuracy", "robust_accuracy", "param_count", "train_time_s", "config_hash", "robust_eval", "config")
    return {k: info[k] for k in keep if k in info}


def check_models(models: Sequence[str], allowed: Sequence[str], *, what: str) -> tuple[str, ...]:
    """``models`` as a tuple, each one of ``allowed`` (``ValueError`` naming the choices)."""
    unknown = [m for m in models if m not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} model(s) {unknown}; choose from {list(allowed)}")
    if not models:
        raise ValueError(f"no {what} model given; choose from {list(allowed)}")
    return tuple(models)


def save_figure(fig, path, *, title: str | None = None, dpi: int = 110, rect=None) -> None:
    """The end of every ``plot``: the title, a tight layout, the PNG at ``path`` (parent created),
    the figure closed."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 (lazy: pyplot only when a figure is drawn)

    if title is not None:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(**({} if rect is None else {"rect": rect}))
    try:
        with atomic_path(path) as tmp:  # a full disk or a kill never leaves half a PNG
            fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")  # the temp name has no suffix
    finally:
        plt.close(fig)


def fmt(v, digits: int = 2) -> str:
    """A number for running text: scientific for small/large magnitudes, ``—`` for None, ``nan``."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(v):
        return "nan"
    if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits + 1}g}"


def fmt_sci(v, digits: int = 1) -> str:
    """``1.5×10⁻⁵`` style for Markdown tables (``—`` for None / NaN)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if v == 0:
        return "0"
    e = int(math.floor(math.log10(abs(v))))
    m = v / 10**e
    if round(m, digits) >= 10:
        m, e = m / 10, e + 1
    sup = str(e).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{m:.{digits}f}×10{sup}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


