"""One step of (adversarial) training: the optimiser, the train state, the training attack.

* **Optimiser**: Adam (lr 1e-3) by default, or SGD with momentum 0.9 (``optimizer="sgd"``); the
  learning rate decays to 0 over the run on a cosine (``schedule="constant"`` to switch it off).
* **Adversarial training** replaces each batch by ``x + stop_gradient(delta)`` where ``delta`` is
  ``jaxdyn.attacks.multistep.pgd``'s perturbation (random start, projection on the ε-ball, clip to [0, 1];
  computed by :func:`pgd_delta`, which skips the engine's analysis outputs) or, for
  ``adv="raw"``, the raw A1 attack ``jaxdyn.attacks.multistep.attack(norm="raw", beta=eps)`` (no
  projection, no clipping; ``eps`` is the total strength β). The attack sees the model as
  ``model.apply(variables, x)``, i.e. batch-norm in inference mode; the training forward pass then
  uses batch statistics (``train=True``).
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import optax

from jaxdyn.attacks import multistep as attacks

from jaxdyn.core import losses
from jaxdyn.core.models import init_variables, logits_fn
from jaxdyn.training.config import ADV_CHOICES, TrainConfig
from jaxdyn._internal import checks as _checks

__all__ = ["make_optimizer", "create_state", "perturb_batch", "pgd_delta", "make_train_step", "step_body",
           "variables_of"]


def make_optimizer(cfg: TrainConfig, total_steps: Optional[int] = None) -> optax.GradientTransformation:
    """Adam or SGD-momentum with ``cfg.lr``, cosine-decayed to 0 over ``total_steps`` when
    ``cfg.schedule == "cosine"`` (``total_steps`` defaults to 1000 for tests / interactive use)."""
    return _optimizer(cfg.optimizer, cfg.lr, cfg.momentum, cfg.schedule, total_steps or 1000)


def _optimizer(optimizer, lr, momentum, schedule, total_steps):
    rate = optax.cosine_decay_schedule(lr, total_steps) if schedule == "cosine" else lr
    if optimizer == "adam":
        return optax.adam(rate)
    return optax.sgd(rate, momentum=momentum)


def zero_acc():
    """Fresh epoch accumulators (three distinct buffers: the state is donated, and a buffer may
    be donated only once)."""
    return {k: jnp.zeros((), jnp.float32) for k in ("loss_sum", "correct", "count")}


def create_state(model, tx, key) -> dict:
    """The train state: ``step``, ``params``, ``opt_state``, ``batch_stats`` (batch-norm models
    only) and ``acc`` (this epoch's running sums of loss, correct predictions and examples)."""
    variables = init_variables(model, key)
    state = {"step": jnp.zeros((), jnp.int32), "params": variables["params"],
             "acc": zero_acc()}
    with jax.numpy_dtype_promotion("standard"):  # see _make_step
        state["opt_state"] = tx.init(variables["params"])
    if "batch_stats" in variables:
        state["batch_stats"] = variables["batch_stats"]
    return state


@functools.lru_cache(maxsize=16)
def init_state_fn(model, tx):
    """:func:`create_state` jit-compiled (cached per model and optimiser)."""
    return jax.jit(lambda k: create_state(model, tx, k))


def variables_of(state) -> dict:
    """The model variables (``params`` and, if any, ``batch_stats``) of a train state."""
    v = {"params": state["params"]}
    if "batch_stats" in state:
        v["batch_stats"] = state["batch_stats"]
    return v


def perturb_batch(model, variables, x, y, key, *, adv: str, eps, steps: int, alpha=None,
                  random_start: bool = True):
    """Adversarial perturbations ``delta: [B, 28, 28, 1]`` of a batch (no gradient flows back).

    ``adv="pgd-linf"`` / ``"pgd-l2"``: :func:`jaxdyn.attacks.multistep.pgd` with step ``alpha``, projection
    on the ε-ball and clipping of ``x + delta`` to [0, 1]; ``adv="raw"``: the raw A1 attack
    :func:`jaxdyn.attacks.multistep.attack` with total strength ``beta = eps`` (no projection, no clip).
    One key per example, split from ``key``.
    """
    f = logits_fn(model, variables)
    keys = jax.random.split(key, x.shape[0])
    if adv == "raw":
        extra = _unroll_kwargs(attacks.attack)
        one = lambda x, y, k: attacks.attack(f, x, y, steps=steps, beta=eps, norm="raw", **extra).delta  # noqa: E731
    elif adv in ("pgd-linf", "pgd-l2"):
        norm = adv.split("-")[1]

        def one(x, y, k):
            return pgd_delta(f, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm,
                             random_start=random_start, key=k)
    else:
        raise ValueError(f"adv must be one of {ADV_CHOICES}, got {adv!r}")
    return jax.lax.stop_gradient(jax.vmap(one)(x, y, keys))


def pgd_delta(f, x, y, *, eps, alpha, steps: int, norm: str, random_start: bool, key):
    """The perturbation of :func:`jaxdyn.attacks.multistep.pgd` (same steps, same random start, the same
    ``delta`` bit for bit: tests/test_training.py), without what only the analysis needs: the
    engine also carries ``H_z``, ``H̄_z``, the success step and the effective ℓ∞ component through
    every step, ~7 % of an MLP's training attack (docs/performance.md, benchmark 6). Unrolled for
    at most ``attacks.PGD_UNROLL_MAX_STEPS`` steps, as ``pgd``. Invalid input (non-finite ``x``,
    a label outside the head) gives a NaN ``delta``, as the engine's."""

    n_classes = _checks.check_call(f, x, y)
    clip = (0.0, 1.0)
    if random_start:
        d0 = attacks.project(x, attacks.sample_ball(key, x, eps, norm), eps, norm, clip)
    else:
        d0 = jnp.zeros_like(x)

    def body(d, _):
        g = jax.grad(lambda d: losses.loss(f(x + d), y))(d)
        return attacks.project(x, d + alpha * attacks.direction(g, norm), eps, norm, clip), None

    unroll = True if steps <= attacks.PGD_UNROLL_MAX_STEPS else 1
    d, _ = jax.lax.scan(body, d0, None, length=steps, unroll=unroll)
    return jnp.where(_checks.valid(y, n_classes, x, d), d, jnp.nan)


def _unroll_kwargs(fn) -> dict:
    """``unroll=True`` for the attack engine (where it takes the argument). On XLA:CPU a conv
    net's input gradient inside a ``lax.scan`` runs ~10x slower than unrolled (the transposed
    kernel is folded into a non-canonical convolution, ``dim_labels=..._01oi``, off the fast
    path); the few steps of a training / evaluation attack are unrolled instead. Same steps."""
    try:
        return {"unroll": True} if "unroll" in inspect.signature(fn).parameters else {}
    except (TypeError, ValueError):  # pragma: no cover
        return {}


def make_train_step(model, tx, cfg: TrainConfig) -> Callable:
    """``step(state, x, y, key, eps, alpha) -> (state, loss)``, jit-compiled with the state
    donated. ``eps`` / ``alpha`` are traced (ignored for standard training); ``key`` seeds the
    attack's random starts."""
    return _make_step(model, tx, cfg.adv, cfg.adv_steps)


@functools.lru_cache(maxsize=16)
def cached_step(model, optimizer, lr, momentum, schedule, total_steps, adv, adv_steps):
    """Optimiser and compiled step shared by runs of the same model and optimisation (a resumed
    or repeated run in one process does not recompile)."""
    tx = _optimizer(optimizer, lr, momentum, schedule, total_steps)
    return tx, _make_step(model, tx, adv, adv_steps)


def _make_step(model, tx, adv, adv_steps):
    return jax.jit(step_body(model, tx, adv, adv_steps), donate_argnums=(0,))


def step_body(model, tx, adv, adv_steps) -> Callable:
    """The train step of :func:`make_train_step` before ``jax.jit``: ``step(state, x, y, key, eps,
    alpha) -> (state, loss)`` (:mod:`jaxdyn.training.ensemble` maps it over a seed axis)."""

    def step(state, x, y, key, eps, alpha):
        if adv is not None:
            delta = perturb_batch(model, variables_of(state), x, y, key, adv=adv, eps=eps,
                                  steps=adv_steps, alpha=alpha)
            x = x + delta
        has_bn = "batch_stats" in state

        def loss_fn(params):
            v = {**variables_of(state), "params": params}
            if has_bn:
                z, upd = model.apply(v, x, train=True, mutable=["batch_stats"])
            else:
                z, upd = model.apply(v, x), None
            return jnp.mean(jax.vmap(losses.loss)(z, y)), (z, upd)

        (loss, (z, upd)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        # optax mixes Python floats and int32 step counts (b1 ** count): trace it with standard
        # promotion so that callers that run with strict promotion (our tests) can train
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        correct = jnp.sum(jnp.logical_not(jax.vmap(losses.is_success)(z, y)).astype(jnp.float32))
        acc = state["acc"]
        new = {
            **state,
            "step": state["step"] + 1,
            "params": optax.apply_updates(state["params"], updates),
            "opt_state": opt_state,
            "acc": {"loss_sum": acc["loss_sum"] + loss.astype(jnp.float32) * x.shape[0],
                    "correct": acc["correct"] + correct,
                    "count": acc["count"] + jnp.asarray(x.shape[0], jnp.float32)},
        }
        if has_bn:
            new["batch_stats"] = upd["batch_stats"]
        return new, loss

    return step
