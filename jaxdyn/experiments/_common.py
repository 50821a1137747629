"""Helpers shared by the experiments (private: the experiments' own toolbox, not public API).

Scales and configs, float64, progress bars, the fixed digit subsets, trained models at a scale,
chunked per-sample work and number formatting. No experiment imports another experiment: what
two of them share lives here or in the engine.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

__all__ = [
    "SCALES", "make_config", "enable_x64", "progress_bar", "chunked", "fixed_digits", "correct_subset",
    "load_model", "train_summary", "fmt", "fmt_sci", "md_table", "check_models", "FIGURE_VANILLA",
    "FIGURE_ADV_BINARY", "BinaryInfluenceConfig", "BINARY_INFLUENCE_SCALES", "binary_influence", "binary_influence_runs",
]

#: ``tiny``: tests (seconds, one or two small models); ``quick``: CI's 2 CPU cores (narrow
#: networks, few samples); ``full``: the paper's scale (meant for a GPU).
SCALES = ("tiny", "quick", "full")


#: standard (vanilla) training of the 10-class networks of Figs. 2 and 5, per scale (one config,
#: so both figures share the cached models); keyword arguments of ``jaxdyn.training.load_or_train``.
#: (To move to ``jaxdyn.training.presets`` once that exists.)
FIGURE_VANILLA = {
    "tiny": dict(n_train=256, epochs=1, batch_size=64, lr=1e-3, n_eval_robust=0),
    "quick": dict(n_train=10_000, epochs=1, batch_size=128, lr=1e-3, n_eval_robust=0),
    "full": dict(n_train=None, epochs=10, batch_size=128, lr=1e-3, n_eval_robust=1000),
}

_ADV_BINARY_QUICK = dict(binary=(3, 5), adv="pgd-linf", eps=0.1, adv_steps=3, eps_warmup=0.5, batch_size=64,
                         lr=5e-4, schedule="cosine", n_train=5000, epochs=1, n_eval_robust=0)
#: ℓ∞-PGD adversarial training of the binary (3 vs 5) networks of Figs. 3 and 4, per scale (one
#: config, so both figures share the cached models). ε ramped up over the first part of the steps and
#: a cosine learning-rate decay (against collapse); ``lr`` 5e-4: at 1e-3 (without the ramp) the quick
#: AlexNet collapsed to a constant classifier. (To move to ``jaxdyn.training.presets``.)
FIGURE_ADV_BINARY = {
    "tiny": dict(_ADV_BINARY_QUICK, n_train=256, adv_steps=1, eps=0.05),
    "quick": _ADV_BINARY_QUICK,
    "full": dict(binary=(3, 5), adv="pgd-linf", eps=0.3, adv_steps=10, eps_warmup=0.3, batch_size=128, lr=1e-3,
                 schedule="cosine", n_train=None, epochs=10, n_eval_robust=1000),
}


def make_config(cls, presets: Mapping[str, Mapping[str, Any]], scale: str, overrides: Mapping[str, Any]):
    """The resolved config ``cls(scale=scale, **presets[scale], **overrides)``.

    ``overrides`` with the value ``None`` are ignored (an unset command-line flag); an unknown
    key or scale raises ``ValueError`` naming the choices. Tuples stay tuples (frozen, hashable
    where the values are)."""
    if scale not in SCALES or scale not in presets:
        raise ValueError(f"scale must be one of {[s for s in SCALES if s in presets]}, got {scale!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown} for {cls.__name__}; fields: {sorted(names - {'scale'})}")
    kw = dict(presets[scale])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    return cls(scale=scale, **kw)


def enable_x64() -> None:
    """Float64 at the experiment entry point (design.md "Precision": κ reaches 1e-8)."""
    import jax

    jax.config.update("jax_enable_x64", True)


def progress_bar(iterable=None, *, enabled: bool = True, **kw):
    """A tqdm progress bar with rate and ETA (a plain iterator when disabled)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not enabled, dynamic_ncols=True, **kw)


def chunked(fn: Callable, *arrays, chunk: int | None, **kwargs):
    """``fn(*arrays, **kwargs)`` on slices of at most ``chunk`` samples (the leading axis of every
    array), the results (a pytree of arrays) concatenated as NumPy: bounds the memory of
    per-sample work at the full scale. Short slices are padded by repeating their samples, so every
    call has the same shape (one compile). ``chunk=None`` runs one call."""
    import jax

    n = len(arrays[0])
    if chunk is None or chunk >= n:
        return jax.tree.map(np.asarray, jax.device_get(fn(*arrays, **kwargs)))
    outs = []
    for i in range(0, n, chunk):
        k = min(chunk, n - i)
        part = [np.asarray(a[i:i + k]) for a in arrays]
        if k < chunk:
            pad = np.arange(chunk - k) % k
            part = [np.concatenate([p, p[pad]]) for p in part]
        o = jax.device_get(fn(*part, **kwargs))
        outs.append(jax.tree.map(lambda a: np.asarray(a)[:k], o))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


def fixed_digits(n: int, *, seed: int, binary=None, split: str = "test"):
    """A fixed, seeded set of ``n`` MNIST digits (float64; every digit kept, correctly classified
    or not); ``binary=(a, b)`` keeps two classes with labels ±1."""
    from jaxdyn import data

    x, y = data.load_mnist(split)
    if binary is not None:
        x, y = data.binary_task(x, y, tuple(binary))
    x, y = data.subset(x, y, n, seed=seed)
    return np.asarray(x, np.float64), np.asarray(y, np.float64 if binary is not None else np.int32)


def correct_subset(model, variables, x: np.ndarray, y: np.ndarray, n: int, *, batch: int = 256):
    """The first ``n`` examples of ``(x, y)`` that ``model`` classifies correctly (an attack on an
    already misclassified example has nothing to do). Returns ``(x_n, y_n, accuracy_on_scanned)``.
    ``y`` is integer (softmax head) or ±1 (binary head)."""
    import jax
    import jax.numpy as jnp

    from jaxdyn.losses import is_success

    apply = jax.jit(lambda v, xb: model.apply(v, xb))
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


def load_model(name: str, train: Mapping[str, Any] | str, *, binary=None, adv=None, seed: int = 0,
               overrides: Mapping[str, Any] | None = None, dtype="float64", progress: bool = True,
               callbacks: Sequence = ()):
    """Train or load (cached in ``JAXDYN_CACHE_DIR``) zoo model ``name`` and cast it to ``dtype``.

    ``train``: ``"quick"`` for :func:`jaxdyn.training.quick_config`, else a dict of
    :func:`jaxdyn.training.load_or_train` arguments; ``binary``/``adv``/``seed`` and then
    ``overrides`` update it. ``callbacks``: trackers recording numbers along training (see
    :func:`jaxdyn.training.load_or_train`). Returns ``(model, variables, info)``.
    """
    import jax.numpy as jnp

    from jaxdyn import training
    from jaxdyn.models import cast

    if train == "quick":
        kw = training.quick_config(name, binary=binary, adv=adv, seed=seed)
    else:
        kw = dict(train)
        kw.update({k: v for k, v in dict(binary=binary, adv=adv).items() if v is not None})
        kw["seed"] = seed
    kw.update(overrides or {})
    if callbacks:
        kw["callbacks"] = tuple(callbacks)
    model, variables, info = training.load_or_train(name, progress=progress, **kw)
    return model, cast(variables, getattr(jnp, dtype) if isinstance(dtype, str) else dtype), dict(info)


def _load_model_tracked(name: str, *, dtype="float64", progress: bool = True, track, **train_kwargs):
    """Train or load a zoo model with a tracker recording numbers along training (Fig. 5's
    sharpness); to be replaced by ``load_model(..., callbacks=[tracker])`` once
    ``jaxdyn.training.load_or_train`` takes callbacks.

    ``track``: ``name``, ``config()``, ``start(model, cfg, run_dir)``, ``callback(step, state,
    loss)``, ``records(run_dir)``. Its records are stored beside the model
    (``<run_dir>/<track.name>.json``); when the model is cached but was trained without them, a copy
    is trained (deterministically, the same parameters) in ``<run_dir>-track`` to get them.
    Returns ``(model, variables, info)`` with ``info["track"]`` (the records).
    """
    import jax.numpy as jnp

    from jaxdyn import models, training
    from jaxdyn.results import read_json, write_json_atomic

    kw = dict(train_kwargs)
    for k in ("cache_dir", "allow_train", "data_dir"):
        if kw.pop(k, None) is not None:
            raise ValueError(f"{k} is not supported with track=")
    cfg = training.TrainConfig(model=name, **kw)
    run_dir = training.default_cache_dir() / f"{name}-{cfg.hash()[:16]}"
    rec = run_dir / f"{track.name}.json"

    def track_ok(rec):
        try:
            return rec.exists() and read_json(rec).get("config") == track.config()
        except ValueError:
            return False

    if (run_dir / "final.msgpack").exists() and not track_ok(rec):
        run_dir = run_dir.with_name(run_dir.name + "-track")
        rec = run_dir / f"{track.name}.json"
    if (run_dir / "final.msgpack").exists() and track_ok(rec):
        model, variables, info = training.load_run(run_dir)
    else:
        if run_dir.name.endswith("-track"):  # our own copy, made for other records: redo it
            for stale in ("final.msgpack", "info.json"):
                (run_dir / stale).unlink(missing_ok=True)
        model = models.get_model(name, num_classes=cfg.num_classes, width=cfg.width)
        track.start(model, cfg, run_dir)
        model, variables, info = training.train(cfg, run_dir, progress=progress, callback=track.callback)
        write_json_atomic(rec, {"config": track.config(), "records": track.records(run_dir)})
    info = dict(info)
    info["track"] = read_json(rec)["records"]
    return model, models.cast(variables, getattr(jnp, dtype) if isinstance(dtype, str) else dtype), info


def _help(s: str):
    return dataclasses.field(metadata={"help": s})


@dataclasses.dataclass(frozen=True)
class BinaryInfluenceConfig:
    """The knobs Figs. 3 and 4 share (their ``Config`` adds its own after these)."""

    scale: str
    models: tuple[str, ...] = _help("zoo models (binary 3 vs 5 head, ℓ∞-PGD adversarial training)")
    width: float = _help("width multiplier of the networks")
    widths: Any = _help("per-model width overriding --width (JSON dict)")
    n_samples: int = _help("correctly classified training digits per network")
    steps: int = _help("steps m of the raw attack (α = β/m)")
    A0: float = _help("β is set so that the median clean-input A = β H_z ||g̃_x||² is A0")
    eta: float = _help("learning rate η of Δg̃_x = -η Δg_W g̃_h (scales φ only)")
    chunk: Optional[int] = _help("samples per compiled call (bounds memory; none: all at once)")
    seed: int = _help("seed of the digit pool and of the training")
    train: Any = _help("training preset: load_or_train arguments with 'binary' (JSON)")

    def check(self) -> None:
        """``ValueError`` for a bad value of the shared knobs."""
        for k in ("width", "n_samples", "steps", "A0", "eta", "chunk"):
            v = getattr(self, k)
            if v is not None and not v > 0:
                raise ValueError(f"{k} must be > 0, got {v}")
        if not (isinstance(self.widths, dict) and isinstance(self.train, dict) and "binary" in self.train):
            raise ValueError("widths must be a dict, and train a dict of load_or_train arguments with 'binary'")


_BINARY_BASE = dict(models=("alexnet", "vgg11", "resnet50"), A0=1.0, eta=1e-3, seed=0)
#: the presets of :class:`BinaryInfluenceConfig` per scale: Figs. 3 and 4 measure the same networks
#: on the same digits
BINARY_INFLUENCE_SCALES = {
    "tiny": dict(_BINARY_BASE, models=("cnn3",), width=1 / 16, widths={}, n_samples=12, steps=5, chunk=None,
                 train=FIGURE_ADV_BINARY["tiny"]),
    "quick": dict(_BINARY_BASE, width=0.125, widths={"resnet50": 0.0625}, n_samples=60, steps=20, chunk=None,
                  train=FIGURE_ADV_BINARY["quick"]),
    "full": dict(_BINARY_BASE, width=1.0, widths={}, n_samples=1000, steps=100, chunk=50,
                 train=FIGURE_ADV_BINARY["full"]),
}


def binary_influence_runs(cfg: BinaryInfluenceConfig, *, progress: bool, desc: str, betas_A0: Sequence[float] = ()):
    """Figs. 3-4's measurement, network by network: train or load (cached) each of ``cfg.models``,
    take ``cfg.n_samples`` correctly classified training digits of the binary task (a seeded pool)
    and measure them (:func:`binary_influence`). Yields ``(name, meta, runs)``: ``meta`` has
    ``width, test_accuracy, robust_accuracy, train, n_samples, first_layer, time_s``."""
    x_pool, y_pool = fixed_digits(max(3 * cfg.n_samples, 100), seed=cfg.seed + 1, binary=cfg.train["binary"],
                                  split="train")
    for name in progress_bar(cfg.models, enabled=progress, desc=desc):
        width = cfg.widths.get(name, cfg.width)
        t0 = time.perf_counter()
        model, variables, info = load_model(name, cfg.train, seed=cfg.seed, overrides=dict(width=width),
                                            progress=progress)
        t1 = time.perf_counter()
        xs, ys, _ = correct_subset(model, variables, x_pool, y_pool, cfg.n_samples)
        layer, runs = binary_influence(model, variables, xs, ys, A0=cfg.A0, steps=cfg.steps, eta=cfg.eta,
                                       chunk=cfg.chunk, betas_A0=betas_A0)
        meta = dict(width=width, test_accuracy=info.get("test_accuracy"), robust_accuracy=info.get("robust_accuracy"),
                    train=train_summary(info), n_samples=int(len(xs)), first_layer=layer,
                    time_s={"train_or_load": t1 - t0, "compute": time.perf_counter() - t1})
        yield name, meta, runs


def binary_influence(model, variables, x, y, *, A0: float, steps: int, eta: float, chunk: int | None,
                     betas_A0: Sequence[float] = ()):
    """Figs. 3-4's per-sample numbers on a binary network (:func:`jaxdyn.influence.attack_influence`,
    free gating) at ``β = A0 / median_x(H_z(x) ||g̃_x||²)`` and at the same rule for each of
    ``betas_A0``; one compile (β, η traced), ``chunk`` samples per call.

    Returns ``(first_layer, [(A0, β, {name: [N] arrays, "cos_to_mean": cos(Δg_W|_x, mean_x Δg_W)})])``
    (``A0`` first, then ``betas_A0``)."""
    import jax
    import jax.numpy as jnp

    from jaxdyn import influence
    from jaxdyn.models import logits_fn

    path = influence.first_layer_path(model, variables)
    dt = jax.tree.leaves(variables)[0].dtype
    xs, ys = jnp.asarray(x, dt), jnp.asarray(y, dt)
    f = logits_fn(model, variables)
    a_clean = np.asarray(jax.jit(jax.vmap(lambda xi, yi: influence.influence_A_clean(f, xi, yi)))(xs, ys))

    @jax.jit
    def run(variables, x, y, beta, eta):
        z_of, W, _ = influence.first_layer_fn(model, variables, path=path)
        return jax.vmap(lambda xi, yi: influence.attack_influence(z_of, W, xi, yi, beta=beta, steps=steps,
                                                                  eta=eta))(x, y)

    out = []
    for a0 in (A0, *betas_A0):
        beta = float(a0 / np.median(a_clean))
        b, e = jnp.asarray(beta, dt), jnp.asarray(eta, dt)
        q = chunked(lambda xc, yc: run(variables, jnp.asarray(xc, dt), jnp.asarray(yc, dt), b, e),
                    np.asarray(x), np.asarray(y), chunk=chunk)
        dgw = np.asarray(q.pop("dgw")).reshape(len(x), -1)
        mean = dgw.mean(axis=0)
        q = {k: np.asarray(v) for k, v in q.items()}
        q["cos_to_mean"] = dgw @ mean / (np.linalg.norm(dgw, axis=1) * np.linalg.norm(mean) + 1e-300)
        out.append((a0, beta, q))
    return "/".join(path), out


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
