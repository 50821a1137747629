"""Evaluation of a trained model: clean accuracy and accuracy under PGD.

The robust evaluation defaults to Madry et al.'s MNIST setting: PGD-40 ℓ∞ with ε = 0.3,
α = 0.01, a random start, and ``x + delta`` clipped to [0, 1].
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp

from jaxdyn import data, losses
from jaxdyn.models import param_count
from jaxdyn.training.step import perturb_batch

__all__ = ["accuracy", "robust_accuracy"]


def batches(n, batch_size):
    """Slices of ``range(n)`` in batches of ``batch_size`` (the last one may be smaller)."""
    for i in range(0, n, batch_size):
        yield slice(i, min(i + batch_size, n))


def accuracy(model, variables, x, y, *, batch_size: int = 1000) -> float:
    """Clean accuracy of ``model`` on ``(x, y)`` (binary head: ``y z > 0``)."""
    fn = correct_fn(model)
    correct = sum(int(fn(variables, jnp.asarray(x[s]), jnp.asarray(y[s]))) for s in batches(len(x), batch_size))
    return correct / len(x)


@functools.lru_cache(maxsize=16)
def correct_fn(model):
    """``fn(variables, x, y) -> number of correctly classified examples``, jit-compiled."""
    @jax.jit
    def fn(variables, x, y):
        z = model.apply(variables, x)
        return jnp.sum(jnp.logical_not(jax.vmap(losses.is_success)(z, y)))

    return fn


def robust_accuracy(model, variables, x, y, *, eps, alpha, steps: int, norm: str = "linf", key=None,
                    random_start: bool = True, batch_size: int = 500) -> float:
    """Accuracy under PGD (Madry et al.; ℓ∞ or ℓ2 ball, clip to [0, 1], random start).

    MNIST default of the training module: ℓ∞, ε = 0.3, α = 0.01, 40 steps.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    key = jax.random.key(0) if key is None else key
    fn = _robust_fn(model, norm, int(steps), bool(random_start))
    correct = 0
    for i, s in enumerate(batches(len(x), batch_size)):
        correct += int(fn(variables, jnp.asarray(x[s]), jnp.asarray(y[s]), jax.random.fold_in(key, i),
                          jnp.asarray(eps, jnp.float32), jnp.asarray(alpha, jnp.float32)))
    return correct / len(x)


@functools.lru_cache(maxsize=16)
def _robust_fn(model, norm, steps, random_start):
    @jax.jit
    def fn(variables, x, y, key, eps, alpha):
        d = perturb_batch(model, variables, x, y, key, adv=f"pgd-{norm}", eps=eps, steps=steps,
                          alpha=alpha, random_start=random_start)
        z = model.apply(variables, x + d)
        return jnp.sum(jnp.logical_not(jax.vmap(losses.is_success)(z, y)))

    return fn


def evaluate(cfg, model, variables, xte, yte, key, meta, progress, *, test_accuracy=None) -> dict:
    """The ``info`` of a finished run: config, parameter count, times, clean accuracy on
    ``(xte, yte)`` (``test_accuracy``: already measured on these parameters, e.g. by the last
    epoch; not measured again) and (``cfg.n_eval_robust > 0``) robust accuracy on a fixed subset."""
    t = time.perf_counter()
    info = {
        "model": cfg.model, "config": cfg.to_dict(), "config_hash": cfg.hash(),
        "param_count": param_count(variables), "dtype": "float32",
        "train_time_s": meta["train_time_s"], "epoch_times_s": list(meta["epoch_times_s"]),
        "n_test": len(xte),
        "test_accuracy": accuracy(model, variables, xte, yte) if test_accuracy is None else test_accuracy,
        "platform": jax.default_backend(),
    }
    if cfg.n_eval_robust > 0:
        xr, yr = data.subset(xte, yte, cfg.n_eval_robust, seed=0)
        info["robust_accuracy"] = robust_accuracy(
            model, variables, xr, yr, eps=cfg.eval_eps, alpha=cfg.eval_alpha, steps=cfg.eval_steps,
            norm=cfg.eval_norm, key=key)
        info["robust_eval"] = {"attack": f"pgd-{cfg.eval_norm}", "eps": cfg.eval_eps,
                               "alpha": cfg.eval_alpha, "steps": cfg.eval_steps,
                               "random_start": True, "n": len(xr)}
    info["eval_time_s"] = time.perf_counter() - t
    if progress:
        rob = info.get("robust_accuracy")
        print(f"{cfg.model}: test accuracy {info['test_accuracy']:.4f}"
              + (f", robust accuracy {rob:.4f}" if rob is not None else ""))
    return info
