"""``python -m jaxdyn train``: train one model (optionally adversarially) into a run directory.

Examples::

    python -m jaxdyn train --model cnn3 --width 0.5 --n-train 10000
    python -m jaxdyn train --model mlp3 --adv pgd-linf --eps 0.3 --binary 3,5
    python -m jaxdyn train --model cnn3 --quick --cache      # the QUICK preset, into the cache

The run directory (``--out``) holds ``config.json``, ``metrics.jsonl``, checkpoints,
``final.msgpack`` and ``info.json``; an interrupted run resumes when started again with the same
flags. With ``--cache`` the model is trained into (or loaded from) the model cache used by
:func:`jaxdyn.training.load_or_train` and only the results are written to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses

from jaxdyn.cli.text import format_value
from jaxdyn.training.config import ADV_CHOICES, DEFAULT_EPS, TrainConfig
from jaxdyn.training.presets import QUICK, QUICK_ADV, quick_config
from jaxdyn import training

HELP = "train a model of the zoo (standard or adversarial training) into a run directory"

#: the command reads MNIST: the command line gives it ``--data-dir``
READS_DATA = True


def _binary(s: str):
    if s is None:
        return None
    parts = s.split(",")
    try:
        b = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--binary must be two digits like 3,5, got {s!r}") from None
    if len(b) != 2 or b[0] == b[1] or not all(0 <= c <= 9 for c in b):
        raise ValueError(f"--binary must be two different digits 0-9 like 3,5, got {s!r}")
    return b


def _group(models: list[str]) -> str:
    """``mlp*`` for a whole family of :data:`~jaxdyn.training.presets.QUICK`, else the names."""
    out = []
    for fam in dict.fromkeys(m.rstrip("0123456789") for m in models):
        members = [m for m in QUICK if m.rstrip("0123456789") == fam]
        out += [f"{fam}*"] if all(m in models for m in members) else [m for m in models if m in members]
    return ", ".join(out)


def _note(key: str) -> str:
    """The value ``key`` takes by default, with ``--quick`` and with ``--quick --adv ...`` (from
    :class:`TrainConfig` and the presets; a value equal to the one before is not repeated), e.g.
    ``"default: 1; --quick --adv: 2"``."""
    default = {f.name: f.default for f in dataclasses.fields(TrainConfig)}[key]
    parts = [f"default: {format_value(default)}"]
    seen = format_value(default)
    for label, adv in (("--quick", None), ("--quick --adv", "pgd-linf")):
        by_value: dict[str, list[str]] = {}
        for m in QUICK:
            by_value.setdefault(format_value(quick_config(m, adv=adv).get(key, default)), []).append(m)
        text = ", ".join(v if len(by_value) == 1 else f"{v} ({_group(ms)})" for v, ms in by_value.items())
        if text != seen:
            parts.append(f"{label}: {text}")
        seen = text
    return "; ".join(parts)


def add_arguments(p: argparse.ArgumentParser) -> None:
    eps = ", ".join(f"{v} for {k}" for k, v in DEFAULT_EPS.items())
    p.add_argument("--model", required=True, help="model name (see jaxdyn.core.models.model_names())")
    p.add_argument("--binary", default=None, help="two digits a,b for a binary task (a -> +1, b -> -1)")
    p.add_argument("--num-classes", type=int, default=10, help=f"classes of the softmax head ({_note('num_classes')})")
    p.add_argument("--width", type=float, default=None, help=f"width multiplier ({_note('width')})")
    p.add_argument("--adv", default=None, choices=ADV_CHOICES,
                   help="adversarial training: PGD (l-inf / l2) or the raw A1 attack "
                        "(default: none, standard training)")
    p.add_argument("--eps", type=float, default=None,
                   help=f"attack radius, the total strength beta for raw (default: {eps})")
    p.add_argument("--adv-steps", type=int, default=None, help=f"inner attack steps ({_note('adv_steps')})")
    p.add_argument("--adv-alpha", type=float, default=None, help="inner PGD step (default: 2.5 eps / adv-steps)")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs ({_note('epochs')})")
    p.add_argument("--batch-size", type=int, default=None, help=f"batch size ({_note('batch_size')})")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate ({_note('lr')})")
    p.add_argument("--optimizer", default=None, choices=["adam", "sgd"], help=f"optimizer ({_note('optimizer')})")
    p.add_argument("--seed", type=int, default=0, help=f"seed of the initialisation and the batches ({_note('seed')})")
    p.add_argument("--n-train", type=int, default=None,
                   help=f"fixed training subset size, none for all 60000 ({_note('n_train')})")
    p.add_argument("--n-test", type=int, default=None,
                   help=f"test subset size for clean accuracy, none for all 10000 ({_note('n_test')})")
    p.add_argument("--n-eval-robust", type=int, default=None,
                   help=f"test examples for PGD-40 l-inf robust accuracy, 0 to skip ({_note('n_eval_robust')})")
    p.add_argument("--eval-eps", type=float, default=None,
                   help="eps of the robust evaluation (default: the training eps for PGD l-inf training, else 0.3)")
    p.add_argument("--quick", action="store_true",
                   help=f"start from the model's QUICK preset (jaxdyn.training.QUICK; with --adv also "
                        f"{format_value(QUICK_ADV)}); the flags given override it")
    p.add_argument("--cache", action="store_true", help="train into / load from the model cache")
    p.add_argument("--cache-dir", default=None, help="model cache (default $JAXDYN_CACHE_DIR)")
    p.add_argument("--no-progress", action="store_true")


def check(args) -> None:
    """``ValueError`` for bad flags, before ``--out`` is created (the config the run will use)."""
    TrainConfig(model=args.model, **_config_kwargs(args))


def _config_kwargs(args) -> dict:
    kw = quick_config(args.model, binary=_binary(args.binary), adv=args.adv, eps=args.eps,
                      seed=args.seed) if args.quick else {}
    explicit = {
        "num_classes": args.num_classes, "binary": _binary(args.binary), "width": args.width,
        "adv": args.adv, "eps": args.eps, "adv_steps": args.adv_steps, "adv_alpha": args.adv_alpha,
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "optimizer": args.optimizer, "seed": args.seed, "n_train": args.n_train,
        "n_test": args.n_test, "n_eval_robust": args.n_eval_robust, "eval_eps": args.eval_eps,
    }
    kw.update({k: v for k, v in explicit.items() if v is not None})
    return kw


def run(args) -> dict:

    kw = _config_kwargs(args)
    if args.cache:
        _, _, info = training.load_or_train(args.model, cache_dir=args.cache_dir, data_dir=args.data_dir,
                                            progress=not args.no_progress, **kw)
        return info
    cfg = training.TrainConfig(model=args.model, **kw)
    _, _, info = training.train(cfg, args.out, data_dir=args.data_dir, progress=not args.no_progress)
    return info
