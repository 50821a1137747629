"""The training loops of the adversarial-training benchmark (:mod:`benchmarks.adv_training`): the
per-step (ε, α) ramp, the batch order, jaxdyn's and PyTorch's timed loops and the profile of the
parts of jaxdyn's step."""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import training
from jaxdyn.attacks import multistep as attacks
from jaxdyn.core import models
from jaxdyn.training import step as train_step

from benchmarks import timing

__all__ = ["schedule", "batch_order", "train_jaxdyn", "train_torch", "profile_jaxdyn"]


def schedule(steps: int, eps: float, alpha: float, warmup: float):
    """Per-step (ε, α) of ``jaxdyn.training.train``'s linear ramp over ``warmup`` of the steps."""
    ramp = max(1, int(round(warmup * steps))) if warmup > 0 else 0
    r = np.array([min(1.0, (s + 1) / ramp) if ramp else 1.0 for s in range(steps)])
    return (r * eps).astype(np.float32), (r * alpha).astype(np.float32)


def batch_order(n: int, steps: int, batch: int, seed: int) -> np.ndarray:
    """``[steps, batch]`` indices: epochs of seeded permutations, last incomplete batch dropped."""
    rng = np.random.default_rng(seed)
    spe = n // batch
    rows = []
    while len(rows) < steps:
        p = rng.permutation(n)
        rows += [p[i * batch:(i + 1) * batch] for i in range(spe)]
    return np.stack(rows[:steps])


def _clock():
    return time.perf_counter(), time.process_time()


def _summary(wall, cpu, warmup):
    w, c = wall[warmup:] or wall, cpu[warmup:] or cpu
    return dict(timing.summarize(w, c), first_runs_s=wall[:warmup])


def train_jaxdyn(model, cfg, tx, xtr, ytr, order, eps_s, alpha_s, seed, warmup):
    """Train with jaxdyn's step; returns ``(variables, init_variables, timing, compile_s)``."""
    state = train_step.create_state(model, tx, jax.random.key(seed))
    init = jax.tree.map(lambda a: np.array(a, copy=True), train_step.variables_of(state))  # the state is donated
    step_fn = training.make_train_step(model, tx, cfg)
    keys = jax.random.split(jax.random.key(seed + 10_000), len(order))
    xb, yb = xtr[order[0]], ytr[order[0]]
    c0 = time.perf_counter()
    compiled = step_fn.lower(state, xb, yb, keys[0], eps_s[0], alpha_s[0]).compile()
    compile_s = time.perf_counter() - c0
    wall, cpu = [], []
    for s, idx in enumerate(order):
        t0, p0 = _clock()
        state, loss = compiled(state, xtr[idx], ytr[idx], keys[s], eps_s[s], alpha_s[s])
        jax.block_until_ready((state, loss))
        t1, p1 = _clock()
        wall.append(t1 - t0)
        cpu.append(p1 - p0)
    return train_step.variables_of(state), init, _summary(wall, cpu, warmup), compile_s, float(loss)


def train_torch(tmodel, xtr_t, ytr_t, order, eps_s, alpha_s, inner, lr, seed, warmup, device, pgd_cls):
    """The same loop in PyTorch with ``pgd_cls`` (``torchattacks.PGD``); returns ``(timing, last loss)``."""
    import torch  # noqa: PLC0415 (the bench extra: optional)
    import torch.nn.functional as F  # noqa: PLC0415 (the bench extra: optional)

    torch.manual_seed(seed + 10_000)
    T = len(order)
    opt = torch.optim.Adam(tmodel.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, T) / T)))
    atk = pgd_cls(tmodel, eps=float(eps_s[0]), alpha=float(alpha_s[0]), steps=inner, random_start=True)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    order_t = torch.from_numpy(order)
    wall, cpu = [], []
    for s in range(T):
        t0, p0 = _clock()
        idx = order_t[s]
        xb, yb = xtr_t[idx].to(device), ytr_t[idx].to(device)
        atk.eps, atk.alpha = float(eps_s[s]), float(alpha_s[s])
        xa = atk(xb, yb)
        tmodel.train()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(tmodel(xa), yb)
        loss.backward()
        opt.step()
        sched.step()
        sync()
        t1, p1 = _clock()
        wall.append(t1 - t0)
        cpu.append(p1 - p0)
    return _summary(wall, cpu, warmup), float(loss.item())


def profile_jaxdyn(model, variables, cfg, tx, x, y, eps, alpha, repeats):
    """Times (primary clock) of the parts of jaxdyn's step, each compiled on its own."""
    inner = cfg.adv_steps
    key = jax.random.key(0)
    e, a = jnp.float32(eps), jnp.float32(alpha)
    out = {}

    def atk(unroll):
        def fn(v, x, y, k, eps, alpha):
            f = models.logits_fn(model, v)
            one = lambda xi, yi, ki: attacks.pgd(f, xi, yi, eps=eps, alpha=alpha, steps=inner, key=ki,  # noqa: E731
                                                 unroll=unroll)
            return jax.vmap(one)(x, y, jax.random.split(k, x.shape[0]))
        return jax.jit(fn)

    t, d_unrolled = timing.compile_and_time(atk(True), variables, x, y, key, e, a, repeats=repeats)
    out["attack_unrolled"] = t
    t, d_scan = timing.compile_and_time(atk(1), variables, x, y, key, e, a, repeats=repeats)
    out["attack_scan"] = t
    out["attack_unrolled_vs_scan_max_abs_diff"] = float(jnp.max(jnp.abs(d_unrolled - d_scan)))
    # the attack as the train step runs it (perturb_batch)
    pb = jax.jit(lambda v, x, y, k, eps, alpha: train_step.perturb_batch(
        model, v, x, y, k, adv=cfg.adv, eps=eps, steps=inner, alpha=alpha))
    out["attack_train_step"], _ = timing.compile_and_time(pb, variables, x, y, key, e, a, repeats=repeats)
    # the update alone: a standard-training step (forward, backward, Adam)
    std_cfg = training.TrainConfig(model=cfg.model, width=cfg.width, batch_size=cfg.batch_size, lr=cfg.lr,
                                   schedule=cfg.schedule)
    state = lambda: train_step.create_state(model, tx, jax.random.key(0))  # noqa: E731
    upd = jax.jit(train_step.make_train_step(model, tx, std_cfg).__wrapped__)  # no donation: reusable state
    out["update_only"], _ = timing.compile_and_time(upd, state(), x, y, key, e, a, repeats=repeats)
    full_nodonate = jax.jit(training.make_train_step(model, tx, cfg).__wrapped__)
    out["step_no_donation"], _ = timing.compile_and_time(full_nodonate, state(), x, y, key, e, a, repeats=repeats)
    # the whole step with donation: the state must be fed back (it is consumed)
    step_fn = training.make_train_step(model, tx, cfg)
    st = state()
    compiled = step_fn.lower(st, x, y, key, e, a).compile()
    st, _ = jax.block_until_ready(compiled(st, x, y, key, e, a))  # warm-up
    wall, cpu = [], []
    for _ in range(max(1, repeats)):
        t0, p0 = _clock()
        st, loss = jax.block_until_ready(compiled(st, x, y, key, e, a))
        t1, p1 = _clock()
        wall.append(t1 - t0)
        cpu.append(p1 - p0)
    out["step_donated"] = timing.summarize(wall, cpu)
    # host side: gather a batch from the training array and transfer it
    big = np.repeat(np.asarray(x), 8, axis=0)
    idx = np.random.default_rng(0).permutation(len(big))[:len(x)]
    wall, cpu = [], []
    for _ in range(max(3, repeats)):
        t0, p0 = _clock()
        jax.block_until_ready(jax.device_put(big[idx]))
        t1, p1 = _clock()
        wall.append(t1 - t0)
        cpu.append(p1 - p0)
    out["host_gather_transfer"] = timing.summarize(wall, cpu)
    return out
