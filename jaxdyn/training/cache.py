"""The model cache: :func:`load_or_train` returns a trained model, training it only once.

The entry of a config is ``<cache_dir>/<model>-<key[:16]>`` (:meth:`TrainConfig.run_name`), a
run directory of :mod:`jaxdyn.training.checkpoint`. The key (:meth:`TrainConfig.cache_key`)
hashes the config, the training code (the training package and every jaxdyn module it imports,
:func:`jaxdyn._internal.fingerprint.training_source_hash`) and the library versions: a cached model was
trained by the code that would train it now.

**Trackers** (``callbacks=``) record numbers along training (e.g. Fig. 5's λ_max,
:class:`jaxdyn.training.callbacks.SharpnessTracker`). A tracker has

* ``name``: its records are stored at ``<run_dir>/<name>.json`` as
  ``{"config": tracker.config(), "records": tracker.records(run_dir)}``;
* ``config() -> dict``: what determines its records (JSON data; records of another config are
  recomputed);
* ``start(model, cfg, run_dir)``: called before training (a resumed run included);
* ``callback(step, state, loss)``: called after every step (``state`` must not be kept);
* ``records(run_dir) -> list``: its records once training is done.

A cached model without the records of every tracker is not retrained in place: a copy is trained
(deterministically: bit-identical parameters) in ``<run_dir>-track`` to get them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, Sequence

from jaxdyn._internal.results import read_json, to_json_tree, write_json_atomic
from jaxdyn.training import checkpoint as ckpt_io
from jaxdyn.training.config import TrainConfig
from jaxdyn.core.models import get_model
from jaxdyn.datasets import loading as data
from jaxdyn.training import ensemble, evaluation, loop  # looked up at call time: tests patch them

__all__ = ["default_cache_dir", "load_or_train", "load_or_train_seeds", "train_missing_seeds", "Tracker"]

TRACK_SUFFIX = "-track"
#: APGD's evaluation of a network cached before it existed, stored beside its ``info.json``
APGD_FILE = "apgd.json"


class Tracker(Protocol):
    """What ``load_or_train(..., callbacks=[tracker])`` needs of a tracker (see module doc)."""

    name: str

    def config(self) -> Any: ...

    def start(self, model, cfg: TrainConfig, run_dir: Path) -> None: ...

    def callback(self, step: int, state, loss) -> None: ...

    def records(self, run_dir: Path) -> Any: ...


def default_cache_dir() -> Path:
    """``$JAXDYN_CACHE_DIR`` or ``~/.cache/jaxdyn/models``."""
    env = os.environ.get("JAXDYN_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jaxdyn" / "models"


def load_or_train(name: str, *, num_classes: int = 10, binary=None, width: float = 1.0, adv=None,
                  eps=None, epochs: int = 1, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                  n_train=None, cache_dir=None, allow_train: bool = True, progress: bool = True,
                  data_dir=None, callbacks: Sequence[Tracker] = (), **more):
    """A trained model from the cache, or train it (and cache it).

    The cache entry is ``<cache_dir>/<name>-<key>`` with ``key`` :meth:`TrainConfig.cache_key`
    (the full :class:`TrainConfig`, the training code, the library versions; ``more`` takes the
    config's other fields: ``adv_steps``, ``n_eval_robust``, …).
    A cached model is loaded, never silently retrained; an interrupted one resumes. With
    ``allow_train=False`` a missing entry raises ``FileNotFoundError``.

    ``callbacks``: trackers (see the module doc) whose records are cached with the model.
    ``trainer="ensemble"`` (in ``more``): the entry of an ensemble member
    (:mod:`jaxdyn.training.ensemble`), trained if missing as an ensemble of one seed (no trackers);
    :func:`load_or_train_seeds` trains several seeds together.

    Returns:
      ``(model, variables, info)``; ``info`` has ``test_accuracy`` (clean),
      ``robust_accuracy`` (unless ``n_eval_robust=0``), ``config``, ``param_count``,
      ``train_time_s``, ``epoch_times_s``, ``run_dir``; with ``callbacks``, also
      ``info["callbacks"]``: ``{tracker.name: records}``.
    """
    import jaxdyn.training as pkg  # noqa: PLC0415 (train / load_run looked up on the package, so tests can patch them)

    cfg = TrainConfig(model=name, num_classes=num_classes, binary=binary, width=width, adv=adv, eps=eps,
                      epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, n_train=n_train, **more)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    run_dir = cache / cfg.run_name()
    callbacks = list(callbacks)
    if len({t.name for t in callbacks}) != len(callbacks):
        raise ValueError(f"callbacks need distinct names, got {[t.name for t in callbacks]}")
    if ckpt_io.is_finished(run_dir) and not _records_ok(run_dir, callbacks):
        run_dir = run_dir.with_name(run_dir.name + TRACK_SUFFIX)
    if ckpt_io.is_finished(run_dir) and _records_ok(run_dir, callbacks):
        model, variables, info = pkg.load_run(run_dir)
        info = with_apgd(run_dir, cfg, model, variables, info, data_dir)
    elif not allow_train:
        what = f"with records of {[t.name for t in callbacks]} " if callbacks else ""
        raise FileNotFoundError(f"no cached model {what}for {cfg.to_dict()} in {cache}")
    elif cfg.trainer == "ensemble":
        if callbacks:
            raise ValueError("trackers (callbacks=) need trainer='solo'")
        return ensemble.train_ensemble([cfg], [run_dir], data_dir=data_dir, progress=progress)[0]
    elif not callbacks:
        return pkg.train(cfg, run_dir, data_dir=data_dir, progress=progress)
    else:
        model, variables, info = _train_tracked(pkg, cfg, run_dir, callbacks, data_dir, progress)
    if callbacks:
        info = dict(info, callbacks={t.name: read_json(_records_path(run_dir, t))["records"] for t in callbacks})
    return model, variables, info


def train_missing_seeds(name: str, seeds: Sequence[int], *, cache_dir=None, allow_train: bool = True,
                        progress: bool = True, data_dir=None, **kw) -> list[Path]:
    """The cache entries of ``name`` trained with ``trainer="ensemble"`` at each of ``seeds`` (the
    other fields from ``kw``, as :func:`load_or_train`'s): those missing are trained together, one
    ensemble (:func:`jaxdyn.training.ensemble.train_ensemble`); the cached ones are not retrained.
    Returns the run directories, in the order of ``seeds``."""
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"seeds must be distinct and not empty, got {seeds}")
    kw = {k: v for k, v in kw.items() if k != "seed"}
    cfgs = [TrainConfig(model=name, **{**kw, "seed": s, "trainer": "ensemble"}) for s in seeds]
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    run_dirs = [cache / c.run_name() for c in cfgs]
    missing = [i for i, d in enumerate(run_dirs) if not ckpt_io.is_finished(d)]
    if missing and not allow_train:
        raise FileNotFoundError(f"no cached model for {cfgs[missing[0]].to_dict()} in {cache}")
    if missing:
        ensemble.train_ensemble([cfgs[i] for i in missing], [run_dirs[i] for i in missing], data_dir=data_dir,
                                progress=progress)
    return run_dirs


def load_or_train_seeds(name: str, seeds: Sequence[int], *, cache_dir=None, allow_train: bool = True,
                        progress: bool = True, data_dir=None, **kw) -> list:
    """:func:`load_or_train` for several seeds, trained with ``trainer="ensemble"``: the seeds
    missing from the cache trained together in one compiled program (:func:`train_missing_seeds`),
    each then loaded from its own entry. Returns one ``(model, variables, info)`` per seed."""
    common = dict(cache_dir=cache_dir, progress=progress, data_dir=data_dir)
    train_missing_seeds(name, seeds, allow_train=allow_train, **common, **kw)
    kw = {k: v for k, v in kw.items() if k not in ("seed", "trainer")}
    return [load_or_train(name, seed=int(s), trainer="ensemble", allow_train=False, **common, **kw) for s in seeds]


def _train_tracked(pkg, cfg, run_dir: Path, callbacks, data_dir, progress):

    if run_dir.name.endswith(TRACK_SUFFIX):  # our own copy, made for other records: redo it
        for stale in (ckpt_io.FINAL, ckpt_io.INFO):
            (run_dir / stale).unlink(missing_ok=True)
    model = get_model(cfg.model, num_classes=cfg.num_classes, width=cfg.width)
    for t in callbacks:
        t.start(model, cfg, run_dir)

    def callback(step, state, loss):
        for t in callbacks:
            t.callback(step, state, loss)

    model, variables, info = pkg.train(cfg, run_dir, data_dir=data_dir, progress=progress, callback=callback)
    for t in callbacks:
        write_json_atomic(_records_path(run_dir, t), {"config": t.config(), "records": t.records(run_dir)})
    return model, variables, info


def with_apgd(run_dir: Path, cfg: TrainConfig, model, variables, info: dict, data_dir=None) -> dict:
    """``info`` with APGD's robust accuracy (:func:`jaxdyn.training.evaluation.apgd_evaluation`)
    for an adversarially trained network with a robust evaluation: from ``info.json`` (trained
    since APGD was added), else from ``<run_dir>/apgd.json``, else computed now on the examples of
    the PGD evaluation and written there. ``info.json`` and the cache key are never changed."""
    if cfg.adv is None or cfg.n_eval_robust <= 0 or "robust_accuracy" not in info or "robust_accuracy_apgd" in info:
        return info
    path = Path(run_dir) / APGD_FILE
    extra = None
    if path.exists():
        try:
            extra = read_json(path)
        except ValueError:  # corrupt: recomputed
            extra = None
    if extra is None:

        xte, yte = loop.load_data(cfg, data_dir)[2:]
        xr, yr = data.subset(xte, yte, cfg.n_eval_robust, seed=0)
        extra = evaluation.apgd_evaluation(cfg, model, variables, xr, yr, info["robust_accuracy"])
        write_json_atomic(path, extra)
    return dict(info, **extra)


def _records_path(run_dir: Path, tracker) -> Path:
    return Path(run_dir) / f"{tracker.name}.json"


def _records_ok(run_dir: Path, callbacks) -> bool:
    """Whether ``run_dir`` holds records of every tracker, made with its current config."""
    for t in callbacks:
        path = _records_path(run_dir, t)
        if not path.exists():
            return False
        try:
            if read_json(path).get("config") != to_json_tree(t.config()):
                return False
        except (ValueError, AttributeError):  # corrupt: recomputed
            return False
    return True
