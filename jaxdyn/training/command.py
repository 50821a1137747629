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

HELP = "train a model of the zoo (standard or adversarial training) into a run directory"


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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name (see jaxdyn.models.model_names())")
    p.add_argument("--binary", default=None, help="two digits a,b for a binary task (a -> +1, b -> -1)")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--width", type=float, default=None, help="width multiplier (default 1)")
    p.add_argument("--adv", default=None, choices=["pgd-linf", "pgd-l2", "raw"],
                   help="adversarial training: PGD (l-inf / l2) or the raw A1 attack")
    p.add_argument("--eps", type=float, default=None,
                   help="attack radius (default 0.3 l-inf, 2.0 l2; total strength beta for raw)")
    p.add_argument("--adv-steps", type=int, default=None, help="inner attack steps (default 10)")
    p.add_argument("--adv-alpha", type=float, default=None, help="inner PGD step (default 2.5 eps / steps)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--optimizer", default=None, choices=["adam", "sgd"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=None, help="fixed training subset size")
    p.add_argument("--n-test", type=int, default=None, help="test subset size for clean accuracy")
    p.add_argument("--n-eval-robust", type=int, default=None,
                   help="test examples for PGD-40 l-inf robust accuracy (0 to skip; default 1000)")
    p.add_argument("--eval-eps", type=float, default=None,
                   help="eps of the robust evaluation (default: the training eps for PGD l-inf training, else 0.3)")
    p.add_argument("--quick", action="store_true", help="start from the QUICK preset of the model")
    p.add_argument("--cache", action="store_true", help="train into / load from the model cache")
    p.add_argument("--cache-dir", default=None, help="model cache (default $JAXDYN_CACHE_DIR)")
    p.add_argument("--data-dir", default=None, help="MNIST folder (default $JAXDYN_DATA_DIR)")
    p.add_argument("--no-progress", action="store_true")


def _config_kwargs(args) -> dict:
    from jaxdyn.training import quick_config

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
    from jaxdyn import training

    kw = _config_kwargs(args)
    if args.cache:
        _, _, info = training.load_or_train(args.model, cache_dir=args.cache_dir, data_dir=args.data_dir,
                                            progress=not args.no_progress, **kw)
        return info
    cfg = training.TrainConfig(model=args.model, **kw)
    _, _, info = training.train(cfg, args.out, data_dir=args.data_dir, progress=not args.no_progress)
    return info
