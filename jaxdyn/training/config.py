"""The configuration of a training run: :class:`TrainConfig`, its validation and its hash.

A config is plain data: this module imports neither jax nor optax (the model name is checked
against :func:`jaxdyn.core.models.model_names`, imported when a config is built).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from typing import Optional
from jaxdyn._internal import fingerprint
from jaxdyn.core.models import model_names

__all__ = ["TrainConfig", "ADV_CHOICES", "TRAINERS", "DEFAULT_EPS", "DEFAULT_EVAL_EPS", "FORMAT_VERSION"]

ADV_CHOICES = ("pgd-linf", "pgd-l2", "raw")
#: how a network is trained (:attr:`TrainConfig.trainer`)
TRAINERS = ("solo", "ensemble")
#: default ε per adversarial-training kind (MNIST; for "raw" it is the total strength β)
DEFAULT_EPS = {"pgd-linf": 0.3, "pgd-l2": 2.0, "raw": 1.0}
#: ε of the robust evaluation when it does not follow the training ε (Madry et al.'s MNIST ε); also
#: the value the config hash treats as the default of ``eval_eps`` (it was the field's default)
DEFAULT_EVAL_EPS = 0.3
#: version of the checkpoint format, part of every config hash (bump it to invalidate the cache)
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (hashed for the cache).

    Attributes:
      model: a registered model name (``jaxdyn.core.models.model_names()``).
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
        ``eval_eps=None`` (the default) follows the training ε when the training attack is PGD in
        the evaluation's norm (``adv == "pgd-" + eval_norm``) and a robust evaluation runs
        (``n_eval_robust > 0``), and is ``DEFAULT_EVAL_EPS`` (0.3) otherwise; the config holds
        the resolved value. The hash leaves out ``eval_eps == 0.3`` (the former default), so
        every config that evaluated at 0.3 keeps its cache entry.
      n_eval_robust: test examples for robust accuracy (a fixed subset); 0 to skip it.
      trainer: how the network is trained: ``"solo"`` (:func:`jaxdyn.training.train`, one seed per
        program) or ``"ensemble"`` (:func:`jaxdyn.training.ensemble.train_ensemble`, the seeds of one
        config mapped over a seed axis in one program). The two round differently, so an ensemble
        member is not bitwise its solo twin: the field is part of the hash (left out at ``"solo"``).
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
    eval_eps: Optional[float] = None
    eval_alpha: float = 0.01
    eval_steps: int = 40
    n_eval_robust: int = 1000
    trainer: str = "solo"

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
        elif int(self.num_classes) != 10:
            raise ValueError(f"MNIST has 10 classes: num_classes must be 10, got {self.num_classes} "
                             "(use binary=(a, b), --binary a,b, for a two-digit task with a sigmoid head)")
        s(self, "num_classes", int(self.num_classes))
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        s(self, "width", float(self.width))
        self._check_adversarial()
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
        _check_int("n_eval_robust", self.n_eval_robust, 0)
        if self.eval_eps is None:
            follow = self.adv == f"pgd-{self.eval_norm}" and self.n_eval_robust > 0
            s(self, "eval_eps", self.eps if follow else DEFAULT_EVAL_EPS)
        for name in ("eval_eps", "eval_alpha"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {v}")
            s(self, name, v)
        _check_int("eval_steps", self.eval_steps, 1)
        if self.trainer not in TRAINERS:
            raise ValueError(f"trainer must be one of {TRAINERS}, got {self.trainer!r}")

    def _check_adversarial(self) -> None:
        """Validate and resolve ``adv``, ``eps``, ``adv_steps``, ``adv_alpha``, ``eps_warmup``."""
        s = object.__setattr__
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
        defaults = {f.name: f.default for f in dataclasses.fields(self)} | {"eval_eps": DEFAULT_EVAL_EPS}
        d = {k: v for k, v in self.to_dict().items() if k == "model" or v != defaults.get(k)}
        blob = json.dumps({"format": FORMAT_VERSION, **d}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def cache_key(self) -> str:
        """sha256 of :meth:`hash`, of the training code (:func:`jaxdyn._internal.fingerprint.training_source_hash`:
        the training package and every jaxdyn module it imports) and of the versions of
        jax/jaxlib/flax/optax/numpy. Deterministic; an edit of the training code or a new library
        version gives a new key, hence a newly trained network (the old entry stays on disk)."""

        blob = json.dumps({"config": self.hash(), "code": fingerprint.training_source_hash(),
                           "libraries": fingerprint.library_versions()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def run_name(self) -> str:
        """The name of this config's entry in the model cache: ``<model>-<cache_key[:16]>``."""
        return f"{self.model}-{self.cache_key()[:16]}"


def _check_int(name, v, lo):
    # numbers.Integral covers Python and NumPy integers, not bool (checked first)
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
