"""The seeds of one architecture trained together: :func:`train_ensemble` maps the train step of
:mod:`jaxdyn.training.step` over a seed axis (``jax.vmap``) and runs the members in one compiled
program; :func:`load_or_train_seeds` is :func:`jaxdyn.training.load_or_train` for several seeds.

Each member is a function of its own config only, exactly as in :func:`jaxdyn.training.train`:
its parameters are initialised from ``fold_in(key(seed), 0)``, epoch ``e`` visits *its* training
subset (``data.subset(..., seed=seed)``) in the order ``permutation(fold_in(k_shuffle, e), N)``, and
its attack key at step ``s`` is ``fold_in(k_adv, s)``, with the keys of :func:`jaxdyn.training.train`.
The members share the program, never a number: no reduction runs over the seed axis.

Bit for bit: the mapped program is not the solo program (XLA lowers a batched matmul or a grouped
convolution, and may sum in another order), so an ensemble member is *not* bitwise the network
:func:`jaxdyn.training.train` gives for its seed (docs/performance.md, *Seeds trained together*:
what was measured). The config says how a network was trained
(:attr:`TrainConfig.trainer`, ``"ensemble"``) and so does its cache key: a solo and an ensemble
network never share an entry. Within the ensemble path a member does not depend on which other
seeds it was trained with (``tests/test_training_ensemble.py`` checks one member of a one-seed
and of a two-seed ensemble bit for bit), so a seed trained once is loaded, never retrained.

**When it pays** (:func:`prefers_ensemble`, benchmarks/ensemble.py, docs/performance.md): the solo
path does not recompile for a second seed (the step is cached per config but the seed), so the
ensemble saves no compile time; it saves run time on dense networks (mlp3, 3 seeds: ×1.1 in CPU
time) and loses it on convolutional ones (cnn3: ×0.4 on XLA:CPU, where the mapped convolution
becomes a grouped convolution off the fast path). The experiments therefore train dense networks
as ensembles and convolutional ones alone, decided by the architecture only (never by the machine),
so a given network always takes one path.

An ensemble is not checkpointed along the way: an interrupted one restarts from its beginning.
Trackers (``callbacks=``) need the solo path.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxdyn.core.models import get_model, init_variables
from jaxdyn.training import checkpoint as ckpt_io
from jaxdyn.training.config import TrainConfig
from jaxdyn.training.evaluation import batches, correct_fn, evaluate
from jaxdyn.training.loop import load_data
from jaxdyn.training.step import init_state_fn, make_optimizer, step_body, variables_of

__all__ = ["train_ensemble", "ensemble_step", "prefers_ensemble"]


@functools.lru_cache(maxsize=32)
def prefers_ensemble(name: str) -> bool:
    """Whether the experiments train the seeds of zoo model ``name`` as one ensemble: a network
    without convolution kernels (no 4-D parameter), see the module doc."""
    model = get_model(name)
    shapes = jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))
    return all(len(leaf.shape) != 4 for leaf in jax.tree.leaves(shapes))


@functools.lru_cache(maxsize=8)
def ensemble_step(base: TrainConfig, total_steps: int):
    """``(tx, step)`` for the configs equal to ``base`` but for the seed: ``step(states, x, y, keys,
    eps, alpha)`` one step of every member (``x: [K, B, ...]``; ``eps`` / ``alpha`` shared),
    jit-compiled with the stacked train states donated."""
    model = get_model(base.model, num_classes=base.num_classes, width=base.width)
    tx = make_optimizer(base, total_steps)
    body = step_body(model, tx, base.adv, base.adv_steps)
    step = jax.jit(jax.vmap(body, in_axes=(0, 0, 0, 0, None, None)), donate_argnums=(0,))
    return tx, step


@jax.jit
def _fold_all(keys, step):
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, step)


def _members(tree, k: int) -> list:
    """The ``k`` members of a stacked tree, sliced on the host (no compilation per leaf shape)."""
    host = jax.device_get(tree)
    return [jax.tree.map(lambda a: jnp.asarray(a[m]), host) for m in range(k)]


def _strength(cfg: TrainConfig, total: int):
    """``strength(step) -> (eps, alpha)`` of the training attack (the ramp of :func:`train`)."""
    ramp = max(1, int(round(cfg.eps_warmup * total))) if cfg.eps_warmup > 0 else 0

    def strength(step):
        r = min(1.0, (step + 1) / ramp) if ramp else 1.0
        return (jnp.asarray(r * (cfg.eps or 0.0), jnp.float32), jnp.asarray(r * (cfg.adv_alpha or 0.0), jnp.float32))

    return strength


def train_ensemble(cfgs: Sequence[TrainConfig], run_dirs: Sequence, *, data_dir=None, progress: bool = True):
    """Train the configs ``cfgs`` (equal but for ``seed``, distinct seeds) together, member ``m``
    in ``run_dirs[m]``; returns one ``(model, variables, info)`` per member, ``info`` with the
    fields of :func:`jaxdyn.training.train`'s and ``ensemble: {seeds, train_time_s}`` (the whole
    ensemble's time; ``train_time_s`` is its share, the total over the members)."""
    cfgs, run_dirs = list(cfgs), [Path(d) for d in run_dirs]
    base = dataclasses.replace(cfgs[0], seed=0)
    if len(cfgs) != len(run_dirs) or not cfgs:
        raise ValueError(f"one run directory per config: {len(cfgs)} configs, {len(run_dirs)} directories")
    if base.trainer != "ensemble":
        raise ValueError(f"train_ensemble trains trainer='ensemble' configs, got trainer={base.trainer!r}")
    if any(dataclasses.replace(c, seed=0) != base for c in cfgs):
        raise ValueError("the configs of an ensemble differ only in their seed")
    seeds = [c.seed for c in cfgs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the seeds of an ensemble are distinct, got {seeds}")
    K = len(cfgs)
    for cfg, d in zip(cfgs, run_dirs):
        d.mkdir(parents=True, exist_ok=True)
        ckpt_io.write_config(d, cfg)
        (d / ckpt_io.METRICS).unlink(missing_ok=True)  # an interrupted ensemble restarts
    parts = [load_data(c, data_dir) for c in cfgs]
    xtr, ytr = [p[0] for p in parts], [p[1] for p in parts]
    xte, yte = parts[0][2], parts[0][3]  # the test subset does not depend on the seed
    n, B = len(xtr[0]), base.batch_size
    spe = n // B
    if spe == 0:
        raise ValueError(f"batch_size {B} is larger than the training set ({n} examples)")
    total = base.epochs * spe
    model = get_model(base.model, num_classes=base.num_classes, width=base.width)
    tx, step_fn = ensemble_step(base, total)
    roots = [jax.random.key(s) for s in seeds]
    k_init, k_shuffle, k_adv, k_eval = ([jax.random.fold_in(r, i) for r in roots] for i in range(4))
    # each member initialised by the solo program (compiled once, a vmapped init compiles for long)
    inits = jax.device_get([init_state_fn(model, tx)(k) for k in k_init])
    state = jax.tree.map(lambda *a: jax.device_put(np.stack(a)), *inits)
    adv_keys = jnp.stack(k_adv)
    strength = _strength(base, total)
    n_correct = correct_fn(model)
    metas = [{"config_hash": c.hash(), "train_time_s": 0.0, "epoch_times_s": []} for c in cfgs]
    test_acc = [None] * K
    bar = tqdm(total=total, disable=not progress, desc=f"train {base.model} x{K}", unit="step")
    t_start = t_epoch = time.perf_counter()
    step = 0
    try:
        for epoch in range(base.epochs):
            perms = [np.asarray(jax.random.permutation(jax.random.fold_in(k, epoch), n)) for k in k_shuffle]
            for i in range(spe):
                idx = [p[i * B:(i + 1) * B] for p in perms]
                xb = np.stack([x[j] for x, j in zip(xtr, idx)])
                yb = np.stack([y[j] for y, j in zip(ytr, idx)])
                state, loss = step_fn(state, xb, yb, _fold_all(adv_keys, step), *strength(step))
                step += 1
                bar.update(1)
            acc = jax.device_get(state["acc"])
            now = time.perf_counter()
            for m, v in enumerate(_members(variables_of(state), K)):
                test_acc[m] = sum(int(n_correct(v, xte[s], yte[s])) for s in batches(len(xte), 1000)) / len(xte)
                metas[m]["epoch_times_s"].append((now - t_epoch) / K)
                ckpt_io.append_metrics(run_dirs[m], {
                    "epoch": epoch + 1, "step": step,
                    "train_loss": float(acc["loss_sum"][m] / acc["count"][m]),
                    "train_accuracy": float(acc["correct"][m] / acc["count"][m]),
                    "test_accuracy": test_acc[m], "epoch_time_s": (now - t_epoch) / K})
            state = {**state, "acc": {k: jax.device_put(np.zeros(K, np.float32)) for k in state["acc"]}}
            t_epoch = time.perf_counter()
    finally:
        bar.close()
    elapsed = time.perf_counter() - t_start
    out = []
    for m, (cfg, variables) in enumerate(zip(cfgs, _members(variables_of(state), K))):
        metas[m]["train_time_s"] = elapsed / K
        info = evaluate(cfg, model, variables, xte, yte, k_eval[m], metas[m], progress, test_accuracy=test_acc[m])
        info.update(run_dir=str(run_dirs[m]), metrics=ckpt_io.read_metrics(run_dirs[m]),
                    ensemble={"seeds": seeds, "train_time_s": elapsed})
        ckpt_io.save_final(run_dirs[m], variables, info)
        out.append((model, variables, info))
    return out
