"""Training, adversarial training (Madry PGD-AT, ℓ∞ / ℓ2, or the raw A1 attack), evaluation,
checkpoints and a cache of trained models. One idea per module:

* :mod:`~jaxdyn.training.config`: :class:`TrainConfig` (everything that determines a trained
  model; validated and hashed) and its constants;
* :mod:`~jaxdyn.training.presets`: every training preset of the tables and figures;
* :mod:`~jaxdyn.training.step`: the optimiser, the train state, the training attack
  (:func:`perturb_batch`) and the jit-compiled train step;
* :mod:`~jaxdyn.training.loop`: :func:`train`, resumable and bit-identical when resumed;
* :mod:`~jaxdyn.training.evaluation`: :func:`accuracy`, :func:`robust_accuracy` (PGD; APGD
  beside it for adversarially trained networks);
* :mod:`~jaxdyn.training.checkpoint`: the run directory (checkpoints, metrics, :func:`load_run`);
* :mod:`~jaxdyn.training.cache`: :func:`load_or_train` (the model cache, with trackers) and
  :func:`load_or_train_seeds` (several seeds, the missing ones trained together);
* :mod:`~jaxdyn.training.ensemble`: :func:`train_ensemble` (the seeds of one config in one
  vmapped program; ``TrainConfig.trainer="ensemble"``);
* :mod:`~jaxdyn.training.callbacks`: the trackers (:class:`SharpnessTracker`, Fig. 5's λ_max);
* :mod:`~jaxdyn.cli.train`: the ``python -m jaxdyn train`` command;
* :mod:`~jaxdyn.training.listing`: the ``python -m jaxdyn models`` command (the cache's entries).

Conventions are in ``docs/models.md``.
"""

from jaxdyn.training.cache import Tracker, default_cache_dir, load_or_train, load_or_train_seeds, train_missing_seeds
from jaxdyn.training.callbacks import SharpnessTracker
from jaxdyn.training.checkpoint import load_run
from jaxdyn.training.config import ADV_CHOICES, DEFAULT_EPS, FORMAT_VERSION, TRAINERS, TrainConfig
from jaxdyn.training.ensemble import prefers_ensemble, train_ensemble
from jaxdyn.training.evaluation import accuracy, robust_accuracy
from jaxdyn.training.loop import TrainingInterrupted, train
from jaxdyn.training.presets import QUICK, QUICK_ADV, QUICK_EVAL, quick_config
from jaxdyn.training.step import create_state, make_optimizer, make_train_step, perturb_batch

__all__ = [
    "TrainConfig", "ADV_CHOICES", "TRAINERS", "DEFAULT_EPS", "FORMAT_VERSION",
    "QUICK", "QUICK_ADV", "QUICK_EVAL", "quick_config",
    "make_optimizer", "create_state", "make_train_step", "perturb_batch",
    "accuracy", "robust_accuracy",
    "train", "TrainingInterrupted", "load_run",
    "load_or_train", "load_or_train_seeds", "train_missing_seeds", "train_ensemble", "prefers_ensemble",
    "default_cache_dir", "Tracker", "SharpnessTracker",
]
