"""The training loop: :func:`train` runs (or resumes, or loads) one config in a run directory.

* **Batches**: one seed; epoch ``e`` visits the training set in the order
  ``jax.random.permutation(fold_in(k_shuffle, e), N)``; the last incomplete batch is dropped
  (static shapes: one compile). The attack key of step ``s`` is ``fold_in(k_adv, s)``. Hence a run
  is a pure function of (config, step), which is what makes resuming bit-identical.
* **Adversarial training** (:mod:`jaxdyn.training.step`) uses ``adv_steps`` (default 10) attack
  steps of size ``adv_alpha`` (default ``2.5 eps / adv_steps``, Madry et al.'s rule), with ε (and
  α) ramped up linearly over the first ``eps_warmup`` fraction of the steps.
* **Evaluation** (:mod:`jaxdyn.training.evaluation`): clean accuracy after every epoch (the last
  one's is the run's, not measured twice); at the end, PGD-40 ℓ∞ with ε = 0.3, α = 0.01 by default
  (Madry et al.'s MNIST setting).
* **Run directory**: :mod:`jaxdyn.training.checkpoint`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.datasets import loading as data
from jaxdyn.core.models import get_model
from jaxdyn.training import checkpoint as ckpt_io
from jaxdyn.training.config import TrainConfig
from jaxdyn.training.evaluation import batches, correct_fn, evaluate
from jaxdyn.training.step import cached_step, create_state, init_state_fn, variables_of, zero_acc
from tqdm.auto import tqdm

__all__ = ["train", "TrainingInterrupted"]


class TrainingInterrupted(RuntimeError):
    """Raised by callbacks (e.g. in tests) to stop a run as if it had been killed."""


def load_data(cfg: TrainConfig, data_dir=None):
    """``(xtr, ytr, xte, yte)`` of ``cfg``: the task (10 classes or binary) and fixed subsets."""
    xtr, ytr = data.load_mnist("train", data_dir=data_dir)
    xte, yte = data.load_mnist("test", data_dir=data_dir)
    if cfg.binary is not None:
        xtr, ytr = data.binary_task(xtr, ytr, cfg.binary)
        xte, yte = data.binary_task(xte, yte, cfg.binary)
    xtr, ytr = data.subset(xtr, ytr, cfg.n_train, seed=cfg.seed)
    xte, yte = data.subset(xte, yte, cfg.n_test, seed=0)
    return xtr, ytr, xte, yte


def train(cfg: TrainConfig, run_dir, *, data_dir=None, progress: bool = True,
          ckpt_every: Optional[int] = 200, callback: Optional[Callable] = None):
    """Train (or finish training) ``cfg`` in ``run_dir``; returns ``(model, variables, info)``.

    A finished run (``final.msgpack`` present) is loaded, not retrained. An unfinished one resumes
    from ``checkpoint.msgpack`` and ends bit-identical to an uninterrupted run.

    Args:
      cfg: the configuration.
      run_dir: the run directory (created).
      data_dir: MNIST folder or ``"tfds"`` (default ``JAXDYN_DATA_DIR``, else the built-in files).
      progress: show a tqdm bar.
      ckpt_every: also checkpoint every this many steps (``None``: at epoch ends only).
      callback: ``callback(step, state, loss)`` after every step (``state`` must not be kept:
        its buffers are donated to the next step).
    """

    if cfg.trainer != "solo":
        raise ValueError(f"train() trains trainer='solo' configs; trainer={cfg.trainer!r} is "
                         "jaxdyn.training.ensemble.train_ensemble's")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if ckpt_io.is_finished(run_dir):
        model, variables, info = ckpt_io.load_run(run_dir)
        if info.get("config_hash") != cfg.hash():
            raise ValueError(f"{run_dir} holds a finished run of a different config; use another directory")
        return model, variables, info
    ckpt_io.write_config(run_dir, cfg)
    h = cfg.hash()

    xtr, ytr, xte, yte = load_data(cfg, data_dir)
    n, B = len(xtr), cfg.batch_size
    spe = n // B
    if spe == 0:
        raise ValueError(f"batch_size {B} is larger than the training set ({n} examples)")
    total = cfg.epochs * spe

    model = get_model(cfg.model, num_classes=cfg.num_classes, width=cfg.width)
    tx, step_fn = cached_step(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.schedule, total,
                              cfg.adv, cfg.adv_steps)
    root = jax.random.key(cfg.seed)
    k_init, k_shuffle, k_adv, k_eval = (jax.random.fold_in(root, i) for i in range(4))

    ckpt = run_dir / ckpt_io.CHECKPOINT
    meta = {"config_hash": h, "train_time_s": 0.0, "epoch_times_s": []}
    if ckpt.exists():
        template = jax.eval_shape(lambda: create_state(model, tx, k_init))
        state, meta = ckpt_io.load_checkpoint(ckpt, template)
        if meta.get("config_hash") != h:
            raise ValueError(f"{ckpt} belongs to a different config")
    else:
        state = init_state_fn(model, tx)(k_init)
    step = int(state["step"])
    ckpt_io.truncate_metrics(run_dir, keep_below_epoch=step // spe)

    ramp = max(1, int(round(cfg.eps_warmup * total))) if cfg.eps_warmup > 0 else 0

    def attack_strength(step):
        """(eps, alpha) of the attack at ``step`` (traced arguments: no recompilation)."""
        r = min(1.0, (step + 1) / ramp) if ramp else 1.0
        return (jnp.asarray(r * (cfg.eps or 0.0), jnp.float32),
                jnp.asarray(r * (cfg.adv_alpha or 0.0), jnp.float32))
    n_correct = correct_fn(model)
    test_acc = None  # the last epoch's, which evaluate() reuses (the same parameters and batches)

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
                    ckpt_io.save_checkpoint(ckpt, state, meta)
            # end of epoch: metrics, reset the accumulators, checkpoint
            acc = jax.device_get(state["acc"])
            test_acc = sum(int(n_correct(variables_of(state), xte[s], yte[s]))
                           for s in batches(len(xte), 1000)) / len(xte)
            now = time.perf_counter()
            meta["epoch_times_s"].append(now - t_epoch)
            ckpt_io.append_metrics(run_dir, {
                "epoch": epoch + 1, "step": step,
                "train_loss": float(acc["loss_sum"] / acc["count"]),
                "train_accuracy": float(acc["correct"] / acc["count"]),
                "test_accuracy": test_acc, "epoch_time_s": now - t_epoch})
            state = {**state, "acc": zero_acc()}
            meta["train_time_s"] += time.perf_counter() - t_start
            t_start = t_epoch = time.perf_counter()
            ckpt_io.save_checkpoint(ckpt, state, meta)
    finally:
        bar.close()

    variables = variables_of(state)
    info = evaluate(cfg, model, variables, xte, yte, k_eval, meta, progress, test_accuracy=test_acc)
    info.update(run_dir=str(run_dir), metrics=ckpt_io.read_metrics(run_dir))
    ckpt_io.save_final(run_dir, variables, info)
    ckpt.unlink(missing_ok=True)
    return model, variables, info
