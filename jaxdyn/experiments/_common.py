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


# --- tables (table1, table2, appendix): the networks of the paper's tables, their presets ------

#: the ten networks of Tables 1 and 2 (10-class for Table 1 and the appendix, binary for Table 2)
TABLE_MODELS = ("mlp3", "mlp4", "mlp5", "cnn3", "cnn4", "cnn5", "rescnn3", "rescnn4", "rescnn5", "rescnn10")
TABLE_LABELS = dict(zip(TABLE_MODELS, ("3-layer MLP", "4-layer MLP", "5-layer MLP", "3-layer CNN", "4-layer CNN",
                                       "5-layer CNN", "3-layer ResCNN", "4-layer ResCNN", "5-layer ResCNN",
                                       "10-layer ResCNN")))
#: their training per scale (``train``, ``train_overrides`` of :func:`load_model`): the same for
#: every table, so that Table 1 and the appendix share the cached networks. At the quick scale the
#: preset's PGD-40 robust evaluation is skipped: it costs about a conv net's training, no table uses it.
TABLE_TRAIN = {
    "tiny": dict(train=dict(width=1 / 16, epochs=1, n_train=512, batch_size=64, n_eval_robust=0), train_overrides=None),
    "quick": dict(train="quick", train_overrides=dict(n_eval_robust=0)),
    "full": dict(train=dict(width=1.0, epochs=10, n_train=None, batch_size=128), train_overrides=None),
}


_help = lambda s: dataclasses.field(metadata={"help": s})  # noqa: E731


@dataclasses.dataclass(frozen=True)
class TableConfig:
    """The fields every table's ``Config`` has (each table's ``Config`` subclasses it, frozen)."""

    scale: str
    models: tuple[str, ...] = _help("networks of the tables (any zoo model at the tiny scale)")
    n_samples: int = _help("number of fixed MNIST test digits")
    chunk: int = _help("samples per compiled batch")
    seed: int = _help("seed of the digit subset and of the training")
    train: Any = _help("training preset: 'quick' or load_or_train arguments (JSON)")
    train_overrides: Any = _help("load_or_train arguments that update the preset (JSON) or null")


@dataclasses.dataclass(frozen=True)
class TableAttackConfig(TableConfig):
    """:class:`TableConfig` and the raw attack of Tables 1 and 2 (``m`` steps, ``α = β/m``)."""

    steps: int = _help("the attack's m (α = β/m)")
    beta: float = _help("the documented β of the headline column")
    betas: tuple[float, ...] = _help("the β grid of the error's β dependence (A2 attack in logit space)")


def check_table_models(models: Sequence[str], scale: str, *, what: str) -> tuple[str, ...]:
    """:func:`check_models` against :data:`TABLE_MODELS` (any zoo model at the tiny test scale)."""
    if scale == "tiny":
        from jaxdyn.models import model_names

        return check_models(models, model_names(), what=what)
    return check_models(models, TABLE_MODELS, what=what)


def check_fields(cfg, *, positive: Sequence[str] = (), counts: Sequence[str] = ()) -> None:
    """``ValueError`` naming the field unless each field of ``cfg`` in ``positive`` (a number or a
    tuple of them) is finite and > 0 and each in ``counts`` (an int or a tuple of ints) is ≥ 1."""
    for f in positive:
        for v in np.ravel(np.asarray(getattr(cfg, f), dtype=float)):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{f} must be finite and > 0, got {getattr(cfg, f)}")
    for f in counts:
        vals = getattr(cfg, f)
        for v in vals if isinstance(vals, tuple) else (vals,):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{f} must be an integer >= 1, got {vals!r}")


def over_models(fn: Callable, models: Sequence[str], *, progress: bool, desc: str) -> list:
    """``[fn(m) for m in models]`` in float64 (:func:`enable_x64`) with a progress bar: a table's
    loop over its networks."""
    enable_x64()
    return [fn(m) for m in progress_bar(models, enabled=progress, desc=desc)]


def done_criterion(rows: Sequence[Mapping], *, key: str, base: str, bound: float = 1e-3) -> dict:
    """The tables' "done" criterion at the documented β: every ``row[key]`` ≤ ``bound`` and below
    its first-order baseline ``row[base]``."""
    below_bound = {r["model"]: r[key] <= bound for r in rows}
    below_base = {r["model"]: r[key] < r[base] for r in rows}
    return dict(bound=bound, all_below_bound=all(below_bound.values()),
                all_below_first_order=all(below_base.values()), below_bound=below_bound,
                below_first_order=below_base)


def table_claims(results: Mapping, *, name: str, key: str, label: str, theorem: str, paper: tuple) -> list:
    """Tables 1 and 2's claims: the error ``key`` (``κ`` or ``κ′``) is small over the networks
    (against the paper's range ``paper = (lo, hi)``), and below its first-order baseline."""
    from jaxdyn.experiments.claims import claim, count_verdict, range_verdict

    rows = results["rows"]
    vals = [r.get(key) for r in rows]
    lo, hi = paper
    ok = [v for v in vals if v is not None and math.isfinite(v)]
    rng = f"{fmt(min(ok))} … {fmt(max(ok))}" if ok else "—"
    bound = (results.get("done") or {}).get("bound", 1e-3)
    acc = ", ".join(f"{r.get('model')} {fmt(r.get('test_accuracy'), 3)}" for r in rows)
    protocol = (f"β = {fmt(results.get('beta'))}, m = {results.get('steps')}, {results.get('n_samples')} fixed test "
                f"digits, {results.get('dtype')}; networks (test acc.): {acc}")
    per = lambda k: ", ".join(f"{r.get('model')} {fmt(r.get(k))}" for r in rows)  # noqa: E731
    baselines = f"first-order {label} (curvature-free β g_x): {per(key + '_first_order')}"
    has_free = any(key + "_free" in r for r in rows)
    controls = f"{label} without A2 (free gating): {per(key + '_free')}" if has_free else ""
    out = [claim(
        f"{name}.{key}_small", f"{theorem} fits the real effect on deep ReLU nets: {label} is small",
        paper=f"{label} = {fmt(lo)} … {fmt(hi)} over the 10 networks", protocol=protocol,
        measured=f"{label} = {rng} ({per(key)})", baselines=baselines, controls=controls,
        rule=f"holds: every {label} ≤ the paper's largest ({fmt(hi)}); holds partly: every one ≤ {fmt(bound)} "
             f"or at least half ≤ {fmt(hi)}; else does not hold",
        verdict=range_verdict(vals, hi, bound))]
    pairs = [(r["model"], r.get(key), r.get(f"{key}_first_order")) for r in rows]
    pairs = [p for p in pairs if p[1] is not None and p[2] is not None]
    if pairs:
        n_better = sum(a < b for _, a, b in pairs)
        out.append(claim(
            f"{name}.beats_first_order", f"(extension) {theorem} beats the curvature-free first-order baseline",
            paper="not in the paper", protocol=protocol,
            measured=f"{label} below its first-order baseline for {n_better}/{len(pairs)} networks",
            baselines=baselines,
            rule="holds: below the baseline for every network; holds partly: for some",
            verdict=count_verdict([a < b for _, a, b in pairs])))
    return out


__all__ += ["TABLE_MODELS", "TABLE_LABELS", "TABLE_TRAIN", "TableConfig", "TableAttackConfig", "check_table_models",
            "check_fields", "over_models", "done_criterion", "table_claims"]
