"""``python -m jaxdyn models``: list the trained networks of the model cache (name, config, accuracy, path).

Each entry of the cache (``$JAXDYN_CACHE_DIR``, default ``~/.cache/jaxdyn/models``; see
:func:`jaxdyn.training.default_cache_dir`) is a run directory; a finished one loads with
``jaxdyn.load_run(path)`` as ``(model, variables, info)``. The command prints one line per entry,
or with ``--json`` a JSON list of :func:`list_models`' records. It reads only: nothing is written.

Example::

    python -m jaxdyn models
    python -m jaxdyn models --json --cache-dir /tmp/cache
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jaxdyn._internal.results import read_json
from jaxdyn.training import checkpoint as ckpt_io
from jaxdyn.training.cache import APGD_FILE, default_cache_dir

__all__ = ["list_models", "summary", "add_arguments", "run"]

HELP = "list the trained networks of the model cache"
#: the command prints and writes no results into --out
WRITES_OUT = False


def summary(cfg: dict) -> str:
    """A short description of a training config: task, width, training kind, data, epochs."""
    b = cfg.get("binary")
    task = f"binary {b[0]}v{b[1]}" if b else f"{cfg.get('num_classes', 10)}-class"
    kind = "standard" if not cfg.get("adv") else f"{cfg['adv']} eps={cfg.get('eps'):g} steps={cfg.get('adv_steps')}"
    n = "all" if cfg.get("n_train") is None else cfg["n_train"]
    return (f"{task}, width {cfg.get('width', 1.0):g}, {kind}, n_train {n}, {cfg.get('epochs')} ep, "
            f"seed {cfg.get('seed')}")


def list_models(cache_dir=None) -> list[dict]:
    """The entries of the model cache, sorted by name: ``name``, ``path``, ``status``
    (``"finished"``, ``"in progress"`` or ``"unreadable"``), ``model``, ``config`` (the training
    config), ``summary``, ``test_accuracy``, ``robust_accuracy`` and ``robust_eval`` (PGD),
    ``robust_accuracy_apgd`` (when measured, also from ``apgd.json`` beside) and ``train_time_s``."""

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if not cache.is_dir():
        return []
    out = []
    for d in sorted(p for p in cache.iterdir() if p.is_dir()):
        rec = {"name": d.name, "path": str(d.resolve())}
        if ckpt_io.is_finished(d):
            try:
                info = ckpt_io.read_info(d)
            except ValueError as e:
                out.append(dict(rec, status="unreadable", error=str(e)))
                continue
            if (d / APGD_FILE).exists() and "robust_accuracy_apgd" not in info:
                try:
                    info = dict(info, **read_json(d / APGD_FILE))
                except ValueError:
                    pass
            cfg = info.get("config", {})
            rec.update(status="finished", model=info.get("model", cfg.get("model")), config=cfg, summary=summary(cfg),
                       **{k: info.get(k) for k in ("test_accuracy", "robust_accuracy", "robust_eval",
                                                    "robust_accuracy_apgd", "gradient_masking", "train_time_s")})
        elif (d / ckpt_io.CONFIG).exists():
            try:
                cfg = read_json(d / ckpt_io.CONFIG).get("train_config", {})
            except ValueError:
                cfg = {}
            rec.update(status="in progress", model=cfg.get("model"), config=cfg, summary=summary(cfg) if cfg else "")
        else:
            continue  # not a run directory
        out.append(rec)
    return out


def _fmt(v, spec=".4f") -> str:
    return "—" if v is None else format(v, spec)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", default=None,
                   help="model cache (default $JAXDYN_CACHE_DIR or ~/.cache/jaxdyn/models)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def run(args) -> None:
    recs = list_models(args.cache_dir)
    if args.json:
        print(json.dumps(recs, indent=1))
        return None
    if not recs:

        print(f"no trained networks in {args.cache_dir or default_cache_dir()}")
        return None
    for r in recs:
        ev = r.get("robust_eval") or {}
        rob = _fmt(r.get("robust_accuracy"))
        if ev:
            rob += f" (PGD-{ev.get('steps')} {str(ev.get('attack', ''))[4:]} eps={ev.get('eps'):g})"
        apgd = r.get("robust_accuracy_apgd")
        print(f"{r['name']}  [{r['status']}]  {r.get('summary', '')}\n"
              f"    test acc {_fmt(r.get('test_accuracy'))}, robust acc {rob}"
              + (f", APGD {_fmt(apgd)}" if apgd is not None else "")
              + ("  POSSIBLE GRADIENT MASKING" if (r.get("gradient_masking") or {}).get("flag") else "")
              + f"\n    {r['path']}")
    return None
