"""Training, adversarial training (Madry PGD-AT, ℓ∞ / ℓ2, or the raw A1 attack), evaluation,
checkpoints and a cache of trained models.

Conventions (docs/models.md):

* **Optimiser**: Adam (lr 1e-3) by default, or SGD with momentum 0.9 (``optimizer="sgd"``); the
  learning rate decays to 0 over the run on a cosine (``schedule="constant"`` to switch it off).
* **Batches**: one seed; epoch ``e`` visits the training set in the order
  ``jax.random.permutation(fold_in(k_shuffle, e), N)``; the last incomplete batch is dropped
  (static shapes: one compile). The attack key of step ``s`` is ``fold_in(k_adv, s)``. Hence a run
  is a pure function of (config, step), which is what makes resuming bit-identical.
* **Adversarial training** replaces each batch by ``x + stop_gradient(delta)`` where ``delta`` is
  ``jaxdyn.attacks.pgd`` (random start, projection on the ε-ball, clip to [0, 1]) or, for
  ``adv="raw"``, the raw A1 attack ``jaxdyn.attacks.attack(norm="raw", beta=eps)`` (no
  projection, no clipping; ``eps`` is the total strength β). The attack sees the model as
  ``model.apply(variables, x)``, i.e. batch-norm in inference mode; the training forward pass then
  uses batch statistics (``train=True``). Training uses ``adv_steps`` (default 10) PGD steps
  of size ``adv_alpha`` (default ``2.5 eps / adv_steps``, Madry et al.'s rule); evaluation uses
  PGD-40 ℓ∞ with ε = 0.3, α = 0.01 by default (Madry et al.'s MNIST setting).
* **Checkpoints**: ``flax.serialization`` msgpack of the whole train state (parameters, optimiser
  state, batch-norm statistics, epoch accumulators) plus metadata, written to a temporary file
  and ``os.replace``-d into place (atomic on POSIX), every ``ckpt_every`` steps and at every epoch
  end. A killed run resumes from its last checkpoint and ends with bit-identical parameters.
* **Run directory**: ``config.json`` (``train_config`` and ``config_hash``), ``metrics.jsonl``
  (one line per epoch), ``checkpoint.msgpack`` while training, ``final.msgpack`` (variables) and
  ``info.json`` when done.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import flax.serialization as serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdyn import attacks, data, losses
from jaxdyn.models import get_model, init_variables, logits_fn, model_names, param_count

__all__ = [
    "TrainConfig", "QUICK", "ADV_CHOICES", "quick_config", "make_optimizer", "create_state",
    "make_train_step", "perturb_batch", "accuracy", "robust_accuracy", "train", "load_run",
    "load_or_train", "default_cache_dir", "TrainingInterrupted",
]

ADV_CHOICES = ("pgd-linf", "pgd-l2", "raw")
#: default ε per adversarial-training kind (MNIST; for "raw" it is the total strength β)
DEFAULT_EPS = {"pgd-linf": 0.3, "pgd-l2": 2.0, "raw": 1.0}
FORMAT_VERSION = 1


class TrainingInterrupted(RuntimeError):
    """Raised by callbacks (e.g. in tests) to stop a run as if it had been killed."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (hashed for the cache).

    Attributes:
      model: a registered model name (``jaxdyn.models.model_names()``).
      num_classes: classes of the softmax head; forced to 1 (sigmoid head) when ``binary`` is set.
      binary: ``(a, b)`` digits for a binary task (``a -> +1``, ``b -> -1``) or ``None``.
      width: width multiplier of the model.
      adv: ``None`` (standard training), ``"pgd-linf"``, ``"pgd-l2"`` or ``"raw"``.
      eps: attack radius (β for ``"raw"``); default ``DEFAULT_EPS[adv]``.
      adv_steps: steps of the inner attack during training.
      adv_alpha: step size of the inner PGD; default ``2.5 * eps / adv_steps``.
      eps_warmup: fraction of the training steps over which ε (and the PGD step, in proportion)
        ramps up linearly from ``eps / ramp_steps`` to ``eps``; 0 for none. Adversarial training
        at ε = 0.3 from scratch in a few hundred steps collapses to a constant classifier
        without it (docs/models.md).
      epochs, batch_size, lr, optimizer, momentum, seed: the optimisation.
      schedule: ``"cosine"`` (decay from ``lr`` to 0 over the run; the last iterate is the model
        we keep, and a decayed learning rate makes it much less noisy) or ``"constant"``.
      n_train: size of a fixed training subset (``data.subset``), ``None`` for all.
      n_test: size of the test subset for clean accuracy, ``None`` for all.
      eval_norm, eval_eps, eval_alpha, eval_steps: the PGD attack of the robust evaluation.
      n_eval_robust: test examples for robust accuracy (a fixed subset); 0 to skip it.
    """

    model: str
    num_classes: int = 10
    binary: Optional[tuple] = None
    width: float = 1.0
    adv: Optional[str] = None
    eps: Optional[float] = None
    adv_steps: int = 10
    adv_alpha: Optional[float] = None
    eps_warmup: float = 0.0
    epochs: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    schedule: str = "constant"
    optimizer: str = "adam"
    momentum: float = 0.9
    seed: int = 0
    n_train: Optional[int] = None
    n_test: Optional[int] = None
    eval_norm: str = "linf"
    eval_eps: float = 0.3
    eval_alpha: float = 0.01
    eval_steps: int = 40
    n_eval_robust: int = 1000

    def __post_init__(self):
        s = object.__setattr__
        if self.model not in model_names():
            raise ValueError(f"unknown model {self.model!r}; known models: {', '.join(model_names())}")
        if self.binary is not None:
            b = tuple(int(c) for c in self.binary)
            if len(b) != 2 or b[0] == b[1] or not all(0 <= c <= 9 for c in b):
                raise ValueError(f"binary must be two different digits 0-9, got {self.binary!r}")
            s(self, "binary", b)
            s(self, "num_classes", 1)
        elif int(self.num_classes) < 2:
            raise ValueError("num_classes must be >= 2 for a softmax head (use binary=(a, b) for sigmoid)")
        s(self, "num_classes", int(self.num_classes))
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        s(self, "width", float(self.width))
        if self.adv is not None and self.adv not in ADV_CHOICES:
            raise ValueError(f"adv must be None or one of {ADV_CHOICES}, got {self.adv!r}")
        if self.adv is None:
            if self.eps is not None or self.adv_alpha is not None:
                raise ValueError("eps / adv_alpha given without adv (adversarial training kind)")
        else:
            eps = DEFAULT_EPS[self.adv] if self.eps is None else float(self.eps)
            if not (math.isfinite(eps) and eps > 0):
                raise ValueError(f"eps must be finite and > 0, got {self.eps}")
            s(self, "eps", eps)
            _check_int("adv_steps", self.adv_steps, 1)
            if self.adv == "raw":
                if self.adv_alpha is not None:
                    raise ValueError("adv='raw' takes eps (the total strength beta), not adv_alpha")
            else:
                a = 2.5 * eps / self.adv_steps if self.adv_alpha is None else float(self.adv_alpha)
                if not (math.isfinite(a) and a > 0):
                    raise ValueError(f"adv_alpha must be finite and > 0, got {self.adv_alpha}")
                s(self, "adv_alpha", a)
        w = float(self.eps_warmup)
        if not (0.0 <= w <= 1.0):
            raise ValueError(f"eps_warmup must be a fraction in [0, 1], got {self.eps_warmup}")
        if w > 0 and self.adv is None:
            raise ValueError("eps_warmup given without adv (adversarial training kind)")
        s(self, "eps_warmup", w)
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be finite and > 0, got {self.lr}")
        s(self, "lr", float(self.lr))
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        for name in ("n_train", "n_test"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        if self.eval_norm not in ("linf", "l2"):
            raise ValueError(f"eval_norm must be 'linf' or 'l2', got {self.eval_norm!r}")
        for name in ("eval_eps", "eval_alpha"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {v}")
            s(self, name, v)
        _check_int("eval_steps", self.eval_steps, 1)
        _check_int("n_eval_robust", self.n_eval_robust, 0)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["binary"] = list(self.binary) if self.binary is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{k: (tuple(v) if k == "binary" and v is not None else v) for k, v in d.items()})

    def hash(self) -> str:
        """sha256 of the resolved config and the checkpoint format version. Fields at their
        default value are left out, so adding a field (with a default) keeps the cache valid."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        d = {k: v for k, v in self.to_dict().items() if k == "model" or v != defaults.get(k)}
        blob = json.dumps({"format": FORMAT_VERSION, **d}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def _check_int(name, v, lo):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


# --- the quick scale -------------------------------------------------------------------------
#: Settings per model that train everything Tables 1-2 need (mlp3/4/5, cnn3/4/5, rescnn3/4/5/10,
#: 10-class and binary 3-vs-5) on 2 CPU cores in minutes: one epoch of Adam at 3e-3 decayed to 0
#: on a cosine; the MLPs at full width on the full training set (cheap), the convolutional nets at
#: half width on a fixed 10k subset. See docs/models.md for the accuracies and timings it gives.
_QUICK_OPT = dict(epochs=1, lr=3e-3, schedule="cosine")
QUICK: dict[str, dict] = {
    **{f"mlp{n}": dict(width=1.0, n_train=None, batch_size=128, **_QUICK_OPT) for n in (3, 4, 5)},
    **{f"cnn{n}": dict(width=0.5, n_train=10_000, batch_size=64, **_QUICK_OPT) for n in (3, 4, 5)},
    **{f"rescnn{n}": dict(width=0.5, n_train=10_000, batch_size=64, **_QUICK_OPT) for n in (3, 4, 5, 10)},
}
#: adversarial training at the quick scale (Table 2 uses the binary task): each example costs
#: adv_steps + 1 passes, so a fixed 2k subset, two epochs of batches of 32, 7 PGD steps, and ε
#: ramped up over the first half of the steps (without the ramp every quick model collapsed to
#: a constant classifier, docs/models.md)
QUICK_ADV = dict(n_train=2_000, epochs=2, batch_size=32, adv_steps=7, eps_warmup=0.5)
#: robust accuracy (PGD-40 l-inf, eps 0.3) on a fixed 200-example test subset
QUICK_EVAL = dict(n_eval_robust=200)


def quick_config(name: str, *, binary=None, adv=None, eps=None, seed: int = 0) -> dict:
    """Keyword arguments of :func:`load_or_train` for ``name`` at the quick scale."""
    if name not in QUICK:
        raise ValueError(f"no quick preset for {name!r}; presets: {', '.join(sorted(QUICK))}")
    kw = dict(QUICK[name], binary=binary, adv=adv, eps=eps, seed=seed, **QUICK_EVAL)
    if adv is not None:
        kw.update(QUICK_ADV)
    return kw


# --- building blocks -------------------------------------------------------------------------
def make_optimizer(cfg: TrainConfig, total_steps: Optional[int] = None) -> optax.GradientTransformation:
    """Adam or SGD-momentum with ``cfg.lr``, cosine-decayed to 0 over ``total_steps`` when
    ``cfg.schedule == "cosine"`` (``total_steps`` defaults to 1000 for tests / interactive use)."""
    return _optimizer(cfg.optimizer, cfg.lr, cfg.momentum, cfg.schedule, total_steps or 1000)


def _optimizer(optimizer, lr, momentum, schedule, total_steps):
    rate = optax.cosine_decay_schedule(lr, total_steps) if schedule == "cosine" else lr
    if optimizer == "adam":
        return optax.adam(rate)
    return optax.sgd(rate, momentum=momentum)


def _zero_acc():
    # three distinct buffers: the state is donated, and a buffer may be donated only once
    return {k: jnp.zeros((), jnp.float32) for k in ("loss_sum", "correct", "count")}


def create_state(model, tx, key) -> dict:
    """The train state: ``step``, ``params``, ``opt_state``, ``batch_stats`` (batch-norm models
    only) and ``acc`` (this epoch's running sums of loss, correct predictions and examples)."""
    variables = init_variables(model, key)
    state = {"step": jnp.zeros((), jnp.int32), "params": variables["params"],
             "acc": _zero_acc()}
    with jax.numpy_dtype_promotion("standard"):  # see make_train_step
        state["opt_state"] = tx.init(variables["params"])
    if "batch_stats" in variables:
        state["batch_stats"] = variables["batch_stats"]
    return state


@functools.lru_cache(maxsize=16)
def _init_state_fn(model, tx):
    return jax.jit(lambda k: create_state(model, tx, k))


def _variables(state) -> dict:
    v = {"params": state["params"]}
    if "batch_stats" in state:
        v["batch_stats"] = state["batch_stats"]
    return v


def perturb_batch(model, variables, x, y, key, *, adv: str, eps, steps: int, alpha=None,
                  random_start: bool = True):
    """Adversarial perturbations ``delta: [B, 28, 28, 1]`` of a batch (no gradient flows back).

    ``adv="pgd-linf"`` / ``"pgd-l2"``: :func:`jaxdyn.attacks.pgd` with step ``alpha``, projection
    on the ε-ball and clipping of ``x + delta`` to [0, 1]; ``adv="raw"``: the raw A1 attack
    :func:`jaxdyn.attacks.attack` with total strength ``beta = eps`` (no projection, no clip).
    One key per example, split from ``key``.
    """
    f = logits_fn(model, variables)
    keys = jax.random.split(key, x.shape[0])
    if adv == "raw":
        extra = _unroll_kwargs(attacks.attack)
        one = lambda x, y, k: attacks.attack(f, x, y, steps=steps, beta=eps, norm="raw", **extra).delta  # noqa: E731
    elif adv in ("pgd-linf", "pgd-l2"):
        norm = adv.split("-")[1]
        extra = _unroll_kwargs(attacks.pgd)

        def one(x, y, k):
            return attacks.pgd(f, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm,
                               random_start=random_start, key=k, **extra)
    else:
        raise ValueError(f"adv must be one of {ADV_CHOICES}, got {adv!r}")
    return jax.lax.stop_gradient(jax.vmap(one)(x, y, keys))


def _unroll_kwargs(fn) -> dict:
    """``unroll=True`` for the attack engine (where it takes the argument). On XLA:CPU a conv
    net's input gradient inside a ``lax.scan`` runs ~10x slower than unrolled (the transposed
    kernel is folded into a non-canonical convolution, ``dim_labels=..._01oi``, off the fast
    path); the few steps of a training / evaluation attack are unrolled instead. Same steps."""
    try:
        return {"unroll": True} if "unroll" in inspect.signature(fn).parameters else {}
    except (TypeError, ValueError):  # pragma: no cover
        return {}


def make_train_step(model, tx, cfg: TrainConfig) -> Callable:
    """``step(state, x, y, key, eps, alpha) -> (state, loss)``, jit-compiled with the state
    donated. ``eps`` / ``alpha`` are traced (ignored for standard training); ``key`` seeds the
    attack's random starts."""
    return _make_step(model, tx, cfg.adv, cfg.adv_steps)


@functools.lru_cache(maxsize=16)
def _cached_step(model, optimizer, lr, momentum, schedule, total_steps, adv, adv_steps):
    """Optimiser and compiled step shared by runs of the same model and optimisation (a resumed
    or repeated run in one process does not recompile)."""
    tx = _optimizer(optimizer, lr, momentum, schedule, total_steps)
    return tx, _make_step(model, tx, adv, adv_steps)


def _make_step(model, tx, adv, adv_steps):
    def step(state, x, y, key, eps, alpha):
        if adv is not None:
            delta = perturb_batch(model, _variables(state), x, y, key, adv=adv, eps=eps,
                                  steps=adv_steps, alpha=alpha)
            x = x + delta
        has_bn = "batch_stats" in state

        def loss_fn(params):
            v = {**_variables(state), "params": params}
            if has_bn:
                z, upd = model.apply(v, x, train=True, mutable=["batch_stats"])
            else:
                z, upd = model.apply(v, x), None
            return jnp.mean(jax.vmap(losses.loss)(z, y)), (z, upd)

        (loss, (z, upd)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        # optax mixes Python floats and int32 step counts (b1 ** count): trace it with standard
        # promotion so that callers that run with strict promotion (our tests) can train
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        correct = jnp.sum(jnp.logical_not(jax.vmap(losses.is_success)(z, y)).astype(jnp.float32))
        acc = state["acc"]
        new = {
            **state,
            "step": state["step"] + 1,
            "params": optax.apply_updates(state["params"], updates),
            "opt_state": opt_state,
            "acc": {"loss_sum": acc["loss_sum"] + loss.astype(jnp.float32) * x.shape[0],
                    "correct": acc["correct"] + correct,
                    "count": acc["count"] + jnp.asarray(x.shape[0], jnp.float32)},
        }
        if has_bn:
            new["batch_stats"] = upd["batch_stats"]
        return new, loss

    return jax.jit(step, donate_argnums=(0,))


def _batches(n, batch_size):
    for i in range(0, n, batch_size):
        yield slice(i, min(i + batch_size, n))


def accuracy(model, variables, x, y, *, batch_size: int = 1000) -> float:
    """Clean accuracy of ``model`` on ``(x, y)`` (binary head: ``y z > 0``)."""
    fn = _correct_fn(model)
    correct = sum(int(fn(variables, jnp.asarray(x[s]), jnp.asarray(y[s]))) for s in _batches(len(x), batch_size))
    return correct / len(x)


@functools.lru_cache(maxsize=16)
def _correct_fn(model):
    @jax.jit
    def fn(variables, x, y):
        z = model.apply(variables, x)
        return jnp.sum(jnp.logical_not(jax.vmap(losses.is_success)(z, y)))

    return fn


def robust_accuracy(model, variables, x, y, *, eps, alpha, steps: int, norm: str = "linf", key=None,
                    random_start: bool = True, batch_size: int = 500) -> float:
    """Accuracy under PGD (Madry et al.; ℓ∞ or ℓ2 ball, clip to [0, 1], random start).

    MNIST default of the training module: ℓ∞, ε = 0.3, α = 0.01, 40 steps.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    key = jax.random.key(0) if key is None else key
    fn = _robust_fn(model, norm, int(steps), bool(random_start))
    correct = 0
    for i, s in enumerate(_batches(len(x), batch_size)):
        correct += int(fn(variables, jnp.asarray(x[s]), jnp.asarray(y[s]), jax.random.fold_in(key, i),
                          jnp.asarray(eps, jnp.float32), jnp.asarray(alpha, jnp.float32)))
    return correct / len(x)


@functools.lru_cache(maxsize=16)
def _robust_fn(model, norm, steps, random_start):
    @jax.jit
    def fn(variables, x, y, key, eps, alpha):
        d = perturb_batch(model, variables, x, y, key, adv=f"pgd-{norm}", eps=eps, steps=steps,
                          alpha=alpha, random_start=random_start)
        z = model.apply(variables, x + d)
        return jnp.sum(jnp.logical_not(jax.vmap(losses.is_success)(z, y)))

    return fn


# --- data ----------------------------------------------------------------------------------
def _load_data(cfg: TrainConfig, data_dir=None):
    xtr, ytr = data.load_mnist("train", data_dir=data_dir)
    xte, yte = data.load_mnist("test", data_dir=data_dir)
    if cfg.binary is not None:
        xtr, ytr = data.binary_task(xtr, ytr, cfg.binary)
        xte, yte = data.binary_task(xte, yte, cfg.binary)
    xtr, ytr = data.subset(xtr, ytr, cfg.n_train, seed=cfg.seed)
    xte, yte = data.subset(xte, yte, cfg.n_test, seed=0)
    return xtr, ytr, xte, yte


# --- checkpoints ---------------------------------------------------------------------------
def _write_atomic(path: Path, blob: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_json(path: Path, obj) -> None:
    _write_atomic(path, (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _save_checkpoint(path: Path, state, meta: dict) -> None:
    blob = serialization.msgpack_serialize(
        {"state": serialization.to_state_dict(jax.device_get(state)), "meta": meta})
    _write_atomic(path, blob)


def _restore(template, tree):
    """Restore ``tree`` (numpy leaves) into the structure of ``template`` checking every shape
    and dtype; returns jax arrays."""
    restored = serialization.from_state_dict(template, tree)

    def check(t, r):
        r = np.asarray(r)
        if tuple(t.shape) != r.shape or np.dtype(t.dtype) != r.dtype:
            raise ValueError(f"checkpoint leaf {r.shape} {r.dtype} does not match {t.shape} {t.dtype}")
        return jnp.asarray(r)

    return jax.tree.map(check, template, restored)


def _load_checkpoint(path: Path, template):
    raw = serialization.msgpack_restore(Path(path).read_bytes())
    return _restore(template, raw["state"]), raw["meta"]


# --- training ------------------------------------------------------------------------------
def _write_config(run_dir: Path, cfg: TrainConfig) -> None:
    path = run_dir / "config.json"
    existing = {}
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except json.JSONDecodeError:
            existing = {}
    if existing.get("config_hash") not in (None, cfg.hash()):
        raise ValueError(f"{run_dir} holds a run of a different config; use another directory")
    _write_json(path, {**existing, "train_config": cfg.to_dict(), "config_hash": cfg.hash()})


def train(cfg: TrainConfig, run_dir, *, data_dir=None, progress: bool = True,
          ckpt_every: Optional[int] = 200, callback: Optional[Callable] = None):
    """Train (or finish training) ``cfg`` in ``run_dir``; returns ``(model, variables, info)``.

    A finished run (``final.msgpack`` present) is loaded, not retrained. An unfinished one resumes
    from ``checkpoint.msgpack`` and ends bit-identical to an uninterrupted run.

    Args:
      cfg: the configuration.
      run_dir: the run directory (created).
      data_dir: MNIST folder (default ``JAXDYN_DATA_DIR`` / tensorflow-datasets).
      progress: show a tqdm bar.
      ckpt_every: also checkpoint every this many steps (``None``: at epoch ends only).
      callback: ``callback(step, state, loss)`` after every step (``state`` must not be kept:
        its buffers are donated to the next step).
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "final.msgpack").exists():
        model, variables, info = load_run(run_dir)
        if info.get("config_hash") != cfg.hash():
            raise ValueError(f"{run_dir} holds a finished run of a different config; use another directory")
        return model, variables, info
    _write_config(run_dir, cfg)
    h = cfg.hash()

    xtr, ytr, xte, yte = _load_data(cfg, data_dir)
    n, B = len(xtr), cfg.batch_size
    spe = n // B
    if spe == 0:
        raise ValueError(f"batch_size {B} is larger than the training set ({n} examples)")
    total = cfg.epochs * spe

    model = get_model(cfg.model, num_classes=cfg.num_classes, width=cfg.width)
    tx, step_fn = _cached_step(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.schedule, total,
                               cfg.adv, cfg.adv_steps)
    root = jax.random.key(cfg.seed)
    k_init, k_shuffle, k_adv, k_eval = (jax.random.fold_in(root, i) for i in range(4))

    ckpt = run_dir / "checkpoint.msgpack"
    meta = {"config_hash": h, "train_time_s": 0.0, "epoch_times_s": []}
    if ckpt.exists():
        template = jax.eval_shape(lambda: create_state(model, tx, k_init))
        state, meta = _load_checkpoint(ckpt, template)
        if meta.get("config_hash") != h:
            raise ValueError(f"{ckpt} belongs to a different config")
    else:
        state = _init_state_fn(model, tx)(k_init)
    step = int(state["step"])
    _truncate_metrics(run_dir / "metrics.jsonl", keep_below_epoch=step // spe)

    ramp = max(1, int(round(cfg.eps_warmup * total))) if cfg.eps_warmup > 0 else 0

    def attack_strength(step):
        """(eps, alpha) of the attack at ``step`` (traced arguments: no recompilation)."""
        r = min(1.0, (step + 1) / ramp) if ramp else 1.0
        return (jnp.asarray(r * (cfg.eps or 0.0), jnp.float32),
                jnp.asarray(r * (cfg.adv_alpha or 0.0), jnp.float32))
    correct_fn = _correct_fn(model)

    bar = tqdm(total=total, initial=step, disable=not progress, desc=f"train {cfg.model}", unit="step")
    t_start = time.perf_counter()
    t_epoch = t_start
    try:
        while step < total:
            epoch = step // spe
            perm = np.asarray(jax.random.permutation(jax.random.fold_in(k_shuffle, epoch), n))
            for i in range(step % spe, spe):
                idx = perm[i * B:(i + 1) * B]
                state, loss = step_fn(state, xtr[idx], ytr[idx], jax.random.fold_in(k_adv, step),
                                      *attack_strength(step))
                step += 1
                bar.update(1)
                if step % 50 == 0:
                    bar.set_postfix(loss=f"{float(loss):.4f}")
                if callback is not None:
                    callback(step, state, loss)
                if ckpt_every and step % ckpt_every == 0 and step % spe != 0:
                    meta["train_time_s"] += time.perf_counter() - t_start
                    t_start = time.perf_counter()
                    _save_checkpoint(ckpt, state, meta)
            # end of epoch: metrics, reset the accumulators, checkpoint
            acc = jax.device_get(state["acc"])
            test_acc = sum(int(correct_fn(_variables(state), xte[s], yte[s]))
                           for s in _batches(len(xte), 1000)) / len(xte)
            now = time.perf_counter()
            meta["epoch_times_s"].append(now - t_epoch)
            line = {"epoch": epoch + 1, "step": step,
                    "train_loss": float(acc["loss_sum"] / acc["count"]),
                    "train_accuracy": float(acc["correct"] / acc["count"]),
                    "test_accuracy": test_acc, "epoch_time_s": now - t_epoch}
            with open(run_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(line) + "\n")
            state = {**state, "acc": _zero_acc()}
            meta["train_time_s"] += time.perf_counter() - t_start
            t_start = t_epoch = time.perf_counter()
            _save_checkpoint(ckpt, state, meta)
    finally:
        bar.close()

    variables = _variables(state)
    info = _evaluate(cfg, model, variables, xte, yte, k_eval, meta, progress)
    info.update(run_dir=str(run_dir), metrics=_read_metrics(run_dir / "metrics.jsonl"))
    _write_json(run_dir / "info.json", info)  # before final.msgpack, the marker of a finished run
    _write_atomic(run_dir / "final.msgpack",
                  serialization.msgpack_serialize(serialization.to_state_dict(jax.device_get(variables))))
    ckpt.unlink(missing_ok=True)
    return model, variables, info


def _evaluate(cfg, model, variables, xte, yte, key, meta, progress) -> dict:
    t = time.perf_counter()
    info = {
        "model": cfg.model, "config": cfg.to_dict(), "config_hash": cfg.hash(),
        "param_count": param_count(variables), "dtype": "float32",
        "train_time_s": meta["train_time_s"], "epoch_times_s": list(meta["epoch_times_s"]),
        "n_test": len(xte), "test_accuracy": accuracy(model, variables, xte, yte),
        "platform": jax.default_backend(),
    }
    if cfg.n_eval_robust > 0:
        xr, yr = data.subset(xte, yte, cfg.n_eval_robust, seed=0)
        info["robust_accuracy"] = robust_accuracy(
            model, variables, xr, yr, eps=cfg.eval_eps, alpha=cfg.eval_alpha, steps=cfg.eval_steps,
            norm=cfg.eval_norm, key=key)
        info["robust_eval"] = {"attack": f"pgd-{cfg.eval_norm}", "eps": cfg.eval_eps,
                               "alpha": cfg.eval_alpha, "steps": cfg.eval_steps,
                               "random_start": True, "n": len(xr)}
    info["eval_time_s"] = time.perf_counter() - t
    if progress:
        rob = info.get("robust_accuracy")
        print(f"{cfg.model}: test accuracy {info['test_accuracy']:.4f}"
              + (f", robust accuracy {rob:.4f}" if rob is not None else ""))
    return info


def _truncate_metrics(path: Path, keep_below_epoch: int) -> None:
    """Drop metric lines of epochs that the checkpoint has not completed (they are redone)."""
    if not path.exists():
        return
    lines = [l for l in path.read_text().splitlines() if l.strip()]
    keep = [l for l in lines if json.loads(l)["epoch"] <= keep_below_epoch]
    if len(keep) != len(lines):
        _write_atomic(path, "".join(l + "\n" for l in keep).encode())


def _read_metrics(path: Path) -> list:
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def load_run(run_dir):
    """Load a finished run: ``(model, variables, info)``."""
    run_dir = Path(run_dir)
    final = run_dir / "final.msgpack"
    if not final.exists():
        raise FileNotFoundError(f"{run_dir} holds no finished run (no final.msgpack)")
    # info.json (written last, with the config) is authoritative: the CLI rewrites config.json
    info = json.loads((run_dir / "info.json").read_text())
    cfg = TrainConfig.from_dict(info["config"])
    model = get_model(cfg.model, num_classes=cfg.num_classes, width=cfg.width)
    template = jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))
    variables = _restore(template, serialization.msgpack_restore(final.read_bytes()))
    return model, variables, info


def default_cache_dir() -> Path:
    """``$JAXDYN_CACHE_DIR`` or ``~/.cache/jaxdyn/models``."""
    env = os.environ.get("JAXDYN_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jaxdyn" / "models"


def load_or_train(name: str, *, num_classes: int = 10, binary=None, width: float = 1.0, adv=None,
                  eps=None, epochs: int = 1, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                  n_train=None, cache_dir=None, allow_train: bool = True, progress: bool = True,
                  data_dir=None, **more):
    """A trained model from the cache, or train it (and cache it).

    The cache entry is ``<cache_dir>/<name>-<hash>`` with ``hash`` the sha256 of the full
    :class:`TrainConfig` (``more`` takes its other fields: ``adv_steps``, ``n_eval_robust``, …).
    A cached model is loaded, never silently retrained; an interrupted one resumes. With
    ``allow_train=False`` a missing entry raises ``FileNotFoundError``.

    Returns:
      ``(model, variables, info)``; ``info`` has ``test_accuracy`` (clean),
      ``robust_accuracy`` (unless ``n_eval_robust=0``), ``config``, ``param_count``,
      ``train_time_s``, ``epoch_times_s``, ``run_dir``.
    """
    cfg = TrainConfig(model=name, num_classes=num_classes, binary=binary, width=width, adv=adv, eps=eps,
                      epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, n_train=n_train, **more)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    run_dir = cache / f"{name}-{cfg.hash()[:16]}"
    if (run_dir / "final.msgpack").exists():
        return load_run(run_dir)
    if not allow_train:
        raise FileNotFoundError(f"no cached model for {cfg.to_dict()} in {cache}")
    return train(cfg, run_dir, data_dir=data_dir, progress=progress)
