"""The run directory of a training run: checkpoints, the metrics log, the finished model.

* ``config.json``: ``train_config`` and ``config_hash``.
* ``metrics.jsonl``: one line per epoch.
* ``checkpoint.msgpack`` while training: ``flax.serialization`` msgpack of the whole train state
  (parameters, optimiser state, batch-norm statistics, epoch accumulators) plus metadata, written
  atomically (:func:`jaxdyn._internal.results.write_bytes_atomic`) every ``ckpt_every`` steps and at every
  epoch end. A killed run resumes from it and ends with bit-identical parameters.
* ``final.msgpack`` (variables) and ``info.json`` when done; ``info.json`` is written first, so
  ``final.msgpack`` marks a finished run.

A file that cannot be decoded raises ``ValueError`` naming it and saying what to delete.
"""

from __future__ import annotations

import json
from pathlib import Path

import flax.serialization as serialization
import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.core.models import get_model, init_variables
from jaxdyn._internal.results import append_line_atomic, read_json, write_bytes_atomic, write_json_atomic
from jaxdyn.training.config import TrainConfig

__all__ = ["load_run", "is_finished"]

CHECKPOINT, FINAL, INFO = "checkpoint.msgpack", "final.msgpack", "info.json"
CONFIG, METRICS = "config.json", "metrics.jsonl"


def is_finished(run_dir) -> bool:
    """Whether ``run_dir`` holds a finished run (``final.msgpack``)."""
    return (Path(run_dir) / FINAL).exists()


def _corrupt(path: Path, err, remedy: str) -> ValueError:
    return ValueError(f"{path} is corrupt or truncated ({type(err).__name__}: {err}); {remedy}")


def _retrain_remedy(path: Path) -> str:
    return (f"delete the run directory (rm -r {path.parent}) and run again to retrain the model "
            "(reproduce --force alone does not retrain cached models)")


def save_checkpoint(path: Path, state, meta: dict) -> None:
    blob = serialization.msgpack_serialize(
        {"state": serialization.to_state_dict(jax.device_get(state)), "meta": meta})
    write_bytes_atomic(path, blob)


def _restore(template, tree, path: Path):
    """Restore ``tree`` (numpy leaves) into the structure of ``template`` checking every shape
    and dtype; returns jax arrays."""
    restored = serialization.from_state_dict(template, tree)

    def check(t, r):
        r = np.asarray(r)
        if tuple(t.shape) != r.shape or np.dtype(t.dtype) != r.dtype:
            raise ValueError(f"{path}: leaf {r.shape} {r.dtype} does not match {t.shape} {t.dtype}")
        return jnp.asarray(r)

    return jax.tree.map(check, template, restored)


def _decode(path: Path, template, remedy: str, key=None):
    try:
        raw = serialization.msgpack_restore(Path(path).read_bytes())
        tree = raw if key is None else raw[key]
        return raw, _restore(template, tree, path)
    except (ValueError, TypeError, KeyError) as e:
        raise _corrupt(path, e, remedy) from e


def load_checkpoint(path: Path, template):
    """``(state, meta)`` of ``checkpoint.msgpack``, restored into ``template``'s structure."""
    path = Path(path)
    remedy = f"delete it to restart the run from its beginning, or {_retrain_remedy(path)}"
    raw, state = _decode(path, template, remedy, key="state")
    return state, raw["meta"]


def save_final(run_dir: Path, variables, info: dict) -> None:
    """Write ``info.json`` then ``final.msgpack`` (the marker of a finished run)."""
    write_json_atomic(run_dir / INFO, info)
    write_bytes_atomic(run_dir / FINAL,
                       serialization.msgpack_serialize(serialization.to_state_dict(jax.device_get(variables))))


def read_info(run_dir) -> dict:
    """``info.json`` of a finished run."""
    path = Path(run_dir) / INFO
    if not path.exists():
        raise ValueError(f"{path} is missing beside {FINAL}; {_retrain_remedy(path)}")
    try:
        return read_json(path)
    except ValueError as e:
        raise _corrupt(path, e.__context__ or e, _retrain_remedy(path)) from None


def load_run(run_dir):
    """Load a finished run (a run directory of ``train``, or an entry of the model cache listed by
    ``python -m jaxdyn models``): ``(model, variables, info)``, ``model.apply(variables, x)``
    giving the logits of a batch ``x: [B, 28, 28, 1]``."""
    run_dir = Path(run_dir).expanduser()
    final = run_dir / FINAL
    if not final.exists():
        raise FileNotFoundError(f"{run_dir} holds no finished run (no {FINAL})")
    # info.json (written last, with the config) is authoritative: the CLI rewrites config.json
    info = read_info(run_dir)
    try:
        cfg = TrainConfig.from_dict(info["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise _corrupt(run_dir / INFO, e, _retrain_remedy(final)) from e
    model = get_model(cfg.model, num_classes=cfg.num_classes, width=cfg.width)
    template = jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))
    _, variables = _decode(final, template, _retrain_remedy(final))
    return model, variables, info


def write_config(run_dir: Path, cfg: TrainConfig) -> None:
    """Write ``config.json`` (keeping the other keys a command wrote there); refuse a directory
    that holds a run of another config."""
    path = run_dir / CONFIG
    existing = {}
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except json.JSONDecodeError:
            existing = {}
    if existing.get("config_hash") not in (None, cfg.hash()):
        raise ValueError(f"{run_dir} holds a run of a different config; use another directory")
    write_json_atomic(path, {**existing, "train_config": cfg.to_dict(), "config_hash": cfg.hash()})


# --- the metrics log -----------------------------------------------------------------------
def append_metrics(run_dir: Path, line: dict) -> None:
    append_line_atomic(run_dir / METRICS, json.dumps(line))


def truncate_metrics(run_dir: Path, keep_below_epoch: int) -> None:
    """Drop metric lines of epochs that the checkpoint has not completed (they are redone)."""
    path = run_dir / METRICS
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    keep = [ln for ln in lines if json.loads(ln)["epoch"] <= keep_below_epoch]
    if len(keep) != len(lines):
        write_bytes_atomic(path, "".join(ln + "\n" for ln in keep).encode())


def read_metrics(run_dir: Path) -> list:
    path = run_dir / METRICS
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
