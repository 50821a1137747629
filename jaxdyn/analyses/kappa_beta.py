"""κ(β): Theorem 2 against an m-step raw attack over a grid of strengths, for one network
(:mod:`jaxdyn.experiments.kappa_sweep` orchestrates it on MNIST).

For each β: δ* from an m-step raw gradient attack (A1) with ``α = β/m`` (through the network under
``gating``, or the exact A2 attack in logit space); δ̂ from Theorem 2 with ``H̄_z`` taken from δ*'s
own trajectory; ``κ = E‖δ* − δ̂‖ / E‖δ*‖``. Beside it: κ of Theorem 1 at the same m (which removes
the O(1/m) part), and κ of the first-order baseline ``β g_x`` (no curvature). The β grid is swept
through one compiled function (β is traced).
"""

from __future__ import annotations

import functools
import time
import warnings

import jax
import jax.numpy as jnp
from tqdm.auto import tqdm

from jaxdyn._internal.checks import check_batch, check_positive, check_steps
from jaxdyn.analyses import metrics
from jaxdyn.attacks import multistep as attacks
from jaxdyn.core import theory
from jaxdyn.core.models import logits_fn

__all__ = ["kappa_vs_beta", "LONG_WORK"]

#: sample-steps (digits × steps × β) above which the sweep first times a few steps and warns with
#: the estimated run time
LONG_WORK = 5_000_000


def _one_beta(model, variables, xs, ys, beta, *, steps: int, gating: str, path: str) -> dict:
    """The numbers of one β (jitted by :func:`kappa_vs_beta`; β traced)."""
    f = logits_fn(model, variables)

    def per_example(x, y):
        if path == "logit":
            r = attacks.logit_space_attack(f, x, y, beta=beta, steps=steps)
        else:
            r = attacks.attack(f, x, y, beta=beta, steps=steps, norm="raw", gating=gating)
        p2 = theory.predict(f, x, y, r.hbar_z, beta=beta)
        p1 = theory.predict(f, x, y, r.hbar_z, beta=beta, steps=steps)
        return r.delta, p2.delta_hat, p1.delta_hat, p2.g_x, r.success_step

    d, d2, d1, gx, succ = jax.vmap(per_example)(xs, ys)
    return dict(
        kappa=metrics.kappa(d, d2),
        kappa_theorem1=metrics.kappa(d, d1),
        kappa_first_order=metrics.kappa_first_order(d, gx, beta),
        success_rate=jnp.mean((succ >= 0).astype(d.dtype)),
        mean_delta_norm=jnp.mean(metrics.per_sample_norm(d)),
    )


def kappa_vs_beta(model, variables, xs, ys, *, betas, steps, gating="frozen", path="network", progress=True,
                  pieces=None) -> list[dict]:
    """κ, κ (Theorem 1, same m) and κ (first order) for each β.

    ``pieces``: an object with ``get(key, compute)`` (:class:`jaxdyn.experiments.runner.Pieces`): each
    β's row is stored as soon as it is done, and a row already stored is not recomputed (a killed
    sweep resumes).

    Args:
      model, variables: a Flax model and its (already cast) variables.
      xs: ``[B, 28, 28, 1]`` digits; ys: ``[B]`` labels.
      betas: iterable of β > 0; steps: m.
      gating: ``"frozen"`` (A2) or ``"free"``; path: ``"network"`` (the attack through the network)
        or ``"logit"`` (the same in logit space, frozen only).
    Returns:
      list of dicts with ``beta, kappa, kappa_theorem1, kappa_first_order, success_rate,
      mean_delta_norm`` (floats) and ``seconds``.
    """
    check_batch(xs, ys)
    check_steps(steps)
    for b in betas:
        check_positive("beta", b)
    if path == "logit" and gating != "frozen":
        raise ValueError("the logit-space path exists only under frozen gating")

    def compiled(steps):
        return jax.jit(functools.partial(_one_beta, model, steps=steps, gating=gating, path=path))

    one_beta = compiled(steps)
    dtype = jax.tree.leaves(variables)[0].dtype
    betas = list(betas)
    if progress and steps * len(xs) * len(betas) >= LONG_WORK:  # say how long before it starts
        probe = min(steps, 20)
        probe_fn, args = compiled(probe), (variables, xs, ys, jnp.asarray(betas[0], dtype))
        jax.block_until_ready(probe_fn(*args))  # compile once, then time the run alone
        t0 = time.perf_counter()
        jax.block_until_ready(probe_fn(*args))
        est = (time.perf_counter() - t0) * steps / probe * len(betas)
        warnings.warn(f"kappa-sweep: {len(xs)} digits × {steps} steps × {len(betas)} β will take about "
                      f"{est / 60:.0f} min here (from {probe} timed steps); each finished β is kept, so an "
                      "interrupted sweep resumes when run again", stacklevel=2)

    def row(beta):
        t0 = time.perf_counter()
        out = jax.device_get(one_beta(variables, xs, ys, jnp.asarray(beta, dtype)))
        return dict(beta=float(beta), **{k: float(v) for k, v in out.items()}, seconds=time.perf_counter() - t0)

    bar = tqdm(betas, desc="κ(β)", disable=not progress, unit="β")
    return [row(b) if pieces is None else pieces.get(f"beta={float(b)!r}", lambda b=b: row(b)) for b in bar]
