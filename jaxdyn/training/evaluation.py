"""Evaluation of a trained model: clean accuracy and accuracy under PGD, and APGD beside it.

The robust evaluation defaults to Madry et al.'s MNIST setting: PGD-40 ℓ∞ with α = 0.01, a random
start, and ``x + delta`` clipped to [0, 1], at the training ε of a PGD-trained network (else
ε = 0.3; ``TrainConfig.eval_eps``). An adversarially trained network is also attacked with APGD
(Croce & Hein 2020: the worst case of APGD-CE and APGD-DLR, 100 iterations each; CE alone for the
binary head) on the same examples: ``robust_accuracy_apgd`` beside ``robust_accuracy``, and
``gradient_masking`` flags a gap above :data:`MASKING_GAP` (PGD's number much higher than APGD's:
PGD's fixed step is being stopped by a flat or noisy loss surface, the usual sign of masked
gradients, and its number overstates the robustness).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp

from jaxdyn.datasets import loading as data

from jaxdyn.core import losses
from jaxdyn.core.models import param_count
from jaxdyn.training.step import perturb_batch
from jaxdyn.attacks.robust import robust_accuracy as public_robust_accuracy

__all__ = ["accuracy", "robust_accuracy", "apgd_evaluation", "MASKING_GAP", "APGD_STEPS"]

#: PGD-40's robust accuracy more than this above APGD's is flagged as possible gradient masking.
#: On sound defences the two agree within a point or two (Croce & Hein 2020, Table 2: Madry et
#: al.'s MNIST network 89.6 % under PGD, 88.5 % under AutoAttack) and both attacks run on the same
#: examples, so the gap has no sampling noise of its own; 5 points is several times a sound gap.
MASKING_GAP = 0.05
#: APGD iterations of the evaluation (AutoAttack's setting)
APGD_STEPS = 100


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
        if cfg.adv is not None:
            info.update(apgd_evaluation(cfg, model, variables, xr, yr, info["robust_accuracy"]))
    info["eval_time_s"] = time.perf_counter() - t
    if progress:
        print(summary_line(info))
    return info


def summary_line(info: dict) -> str:
    """``<model>: test accuracy …, robust accuracy … (PGD-40 linf eps=0.1)[, APGD …]``."""
    line = f"{info['model']}: test accuracy {info['test_accuracy']:.4f}"
    if info.get("robust_accuracy") is not None:
        ev = info["robust_eval"]
        line += (f", robust accuracy {info['robust_accuracy']:.4f} "
                 f"(PGD-{ev['steps']} {ev['attack'][4:]} eps={ev['eps']:g})")
    if info.get("robust_accuracy_apgd") is not None:
        line += f", APGD {info['robust_accuracy_apgd']:.4f}"
        if info["gradient_masking"]["flag"]:
            line += f" (possible gradient masking: PGD - APGD = {info['gradient_masking']['gap']:.3f})"
    return line


def apgd_evaluation(cfg, model, variables, xr, yr, pgd_robust: float) -> dict:
    """APGD's robust accuracy on the examples of the PGD evaluation and the gradient-masking flag:
    ``{"robust_accuracy_apgd", "robust_eval_apgd", "gradient_masking"}`` (added to ``info``; the
    config, and so the cache key, is unchanged). Key ``jax.random.key(0)``, so the number is the
    same whether it is computed at training or later for a cached network."""

    r = public_robust_accuracy(model, jnp.asarray(xr), jnp.asarray(yr), eps=cfg.eval_eps, attack="apgd",
                               variables=variables, norm=cfg.eval_norm, key=jax.random.key(0), steps=APGD_STEPS,
                               progress=False)
    gap = float(pgd_robust) - r.robust[0]
    return {
        "robust_accuracy_apgd": r.robust[0],
        "robust_eval_apgd": {"attack": f"apgd-{cfg.eval_norm}", "losses": r.settings["runs"], "eps": cfg.eval_eps,
                             "steps": APGD_STEPS, "n_restarts": 1, "n": r.n},
        "gradient_masking": {"gap": gap, "threshold": MASKING_GAP, "flag": bool(gap > MASKING_GAP)},
    }
