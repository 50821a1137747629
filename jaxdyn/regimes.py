"""Where does the theory hold for *your* model? A sweep of the attack strength β.

For any per-example logits function ``f`` and a batch of examples, :func:`sweep` runs, for each β
of a grid, the ``m``-step raw attack (A1, ``α = β/m``) under frozen gating (A2) and/or on the real
network (free gating), and compares its perturbation δ* with Theorem 2's δ̂ (Eq. 6, with the
attack's own ``H̄_z``), Theorem 1 at the same ``m`` (Eq. 5) and the curvature-free first-order
baseline ``β g_x``, beside how strong the attack is (the dimensionless ``βλ₁(H̄_x)``, the
fraction of correctly classified examples it flips, ``‖δ*‖``) and conclusion C.3's directions
(``δ ∥ g_x`` at small β, ``δ ∥ v₁`` at large β).

Example — a model you define (any ``x -> logits`` function works; flax, equinox, plain JAX)::

    import jax, jax.numpy as jnp
    from jaxdyn.regimes import sweep

    jax.config.update("jax_enable_x64", True)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    W1 = jax.random.normal(k1, (64, 20)) / 8.0
    W2 = jax.random.normal(k2, (3, 20)) / 4.0

    def f(x):                                   # one example [64] -> logits [3]
        return W2 @ jax.nn.relu(x @ W1)

    xs = jax.random.normal(k3, (32, 64))
    ys = jnp.argmax(jax.vmap(f)(xs), axis=1)    # labels the model gets right
    rows = sweep(f, xs, ys, betas=(1e-2, 1e-1, 1.0), steps=100, flip_range=(0.05, 0.5))
    for r in rows:
        print(f"β={r['beta']:.3g} βλ₁={r['beta_lambda_max']:.2g} flips={r['flip_fraction']:.2f} "
              f"κ={r['kappa']:.2g} (first order {r['kappa_first_order']:.2g}) "
              f"free: κ={r['kappa_free']:.2g} ({r['kappa_free_first_order']:.2g})")

The theory beats its baseline where ``kappa`` is well below ``kappa_first_order``; with
``flip_range`` the grid is extended (by ``factor``) down until no more than ``flip_range[0]`` of
the examples flip and up until at least ``flip_range[1]`` do, so the sweep spans the paper's
small-β regime and the strengths at which an attack actually attacks.

Costs: the frozen attack runs in logit space (:func:`jaxdyn.attacks.logit_space_attack`, one
Jacobian per example, then ``O(C²)`` per step) and the theory on the ``C x C`` path; the free
attack makes ``m`` forward and backward passes through ``f`` per example and β. Every function is
compiled once: β is traced, so the grid (and its extension) never recompiles.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.attacks import attack, logit_space_attack
from jaxdyn.gating import GATINGS
from jaxdyn.losses import is_success
from jaxdyn.theory import prepare, structured_eigenpairs, theorem1, theorem2

__all__ = ["sweep", "compare", "frozen_example", "free_example", "summarize", "ROW_FIELDS", "FREE_FIELDS", "C3_FIELDS"]

#: the fields of a row with frozen gating (A2); ``beta`` and these, always
ROW_FIELDS = ("beta", "beta_lambda_max", "flip_fraction", "delta_l2", "delta_linf", "kappa", "kappa_theorem1",
              "kappa_first_order")
#: conclusion C.3's medians (frozen; ``_free`` versions with free gating)
C3_FIELDS = ("cos_delta_gx", "cos_delta_v1", "cos_hat_gx", "cos_hat_v1")
#: the free-gating fields: ``kappa_free``, ``kappa_free_first_order`` (the names of the tables)
#: and the ``_free`` version of every other per-attack field
FREE_FIELDS = ("kappa_free", "kappa_free_first_order", "kappa_theorem1_free", "beta_lambda_max_free",
               "flip_fraction_free", "delta_l2_free", "delta_linf_free") + tuple(f + "_free" for f in C3_FIELDS)


def _cos(a, b):
    return jnp.vdot(a, b) / jnp.maximum(jnp.linalg.norm(a) * jnp.linalg.norm(b), 1e-300)


def compare(delta, hbar_z, J, g_z, beta, *, steps: int, flipped=False) -> dict:
    """One example's attack against the theory evaluated with that attack's ``H̄_z``.

    Args:
      delta: ``[n]`` the attack's perturbation δ* (flattened); hbar_z: ``[C, C]`` its ``H̄_z``.
      J: ``[C, n]`` input Jacobian at the clean ``x``; g_z: ``[C]`` ``∂L/∂z`` there.
      beta: the attack's strength (traced); steps: its ``m`` (Theorem 1 at the same ``m``).
      flipped: whether the attack misclassified the example (passed through).
    Returns:
      Scalars: ``norm`` ``‖δ*‖₂``, ``linf`` ``‖δ*‖∞``; ``err_hat``, ``err_t1``, ``err_fo``:
      ``‖δ* − δ‖`` for Theorem 2's δ̂ (Eq. 6), Theorem 1's δ (Eq. 5, ``α = β/m``) and ``β g_x``;
      ``beta_lam`` ``β λ₁(H̄_x)``; ``flipped``; C.3's ``cos(δ*, g_x)``, ``|cos(δ*, v₁)|``,
      ``cos(δ̂, g_x)``, ``|cos(δ̂, v₁)|`` (:data:`C3_FIELDS`; ``v₁`` the top eigenvector of
      ``H̄_x = Jᵀ H̄_z J``, sign-free).
    """
    hat = theorem2(J, g_z, hbar_z, beta).delta
    t1 = theorem1(J, g_z, hbar_z, beta / jnp.asarray(steps, J.dtype), steps).delta
    gx = J.T @ g_z
    lam, V = structured_eigenpairs(J, hbar_z)
    v1 = V[:, 0]
    return dict(
        norm=jnp.linalg.norm(delta), linf=jnp.max(jnp.abs(delta)), err_hat=jnp.linalg.norm(delta - hat),
        err_t1=jnp.linalg.norm(delta - t1), err_fo=jnp.linalg.norm(delta - beta * gx), beta_lam=beta * lam[0],
        flipped=jnp.asarray(flipped), cos_delta_gx=_cos(delta, gx), cos_delta_v1=jnp.abs(_cos(delta, v1)),
        cos_hat_gx=_cos(hat, gx), cos_hat_v1=jnp.abs(_cos(hat, v1)),
    )


def frozen_example(J, z, g_z, y, beta, *, steps: int, with_delta: bool = False) -> dict:
    """:func:`compare` for the exact A2 raw attack of one example, run in logit space from its
    clean ``J`` (``[C, n]``), logits ``z`` and ``g_z`` (:func:`jaxdyn.theory.prepare`); flipped:
    misclassified by the A2 network at the end, ``z + J δ*``. ``with_delta``: also ``delta``
    (δ*, ``[n]``)."""
    res = logit_space_attack(lambda _: z, jnp.zeros(J.shape[1], J.dtype), y, steps=steps, beta=beta, jacobian=J)
    out = compare(res.delta, res.hbar_z, J, g_z, beta, steps=steps, flipped=is_success(z + J @ res.delta, y))
    return dict(out, delta=res.delta) if with_delta else out


def free_example(f: Callable, x, y, J, g_z, beta, *, steps: int) -> dict:
    """:func:`compare` for the raw attack on the real network ``f`` (free gating,
    :func:`jaxdyn.attacks.attack`) of one example ``x``; δ̂ from ``J``, ``g_z`` at ``x`` and the
    attack's own ``H̄_z``; flipped: ``f`` misclassifies ``x + δ*``."""
    res = attack(f, x, y, steps=steps, beta=beta, norm="raw", gating="free")
    return compare(res.delta.ravel(), res.hbar_z, J, g_z, beta, steps=steps, flipped=is_success(f(x + res.delta), y))


def _median(a) -> float:
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else float("nan")


def summarize(p: dict, correct, suffix: str = "") -> dict:
    """A row's fields of one gating from the per-example numbers of :func:`compare` (arrays
    ``[N]``; ``correct``: ``[N]`` booleans, the examples classified correctly; ``suffix`` ``""``
    for frozen, ``"_free"`` for free, see :data:`FREE_FIELDS`): κ = Σ‖δ* − δ̂‖ / Σ‖δ*‖ (:func:`jaxdyn.metrics.kappa`), medians
    over all examples, the flip fraction over the correctly classified ones."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    correct = np.asarray(correct, bool)
    den = float(np.sum(p["norm"]))
    kap = {k: float(np.sum(p[e]) / den) if den > 0 else float("nan")
           for k, e in (("kappa", "err_hat"), ("kappa_theorem1", "err_t1"), ("kappa_first_order", "err_fo"))}
    if suffix:
        kap = dict(kappa_free=kap["kappa"], kappa_free_first_order=kap["kappa_first_order"],
                   kappa_theorem1_free=kap["kappa_theorem1"])
    out = dict(beta_lambda_max=_median(p["beta_lam"]),
               flip_fraction=float(np.mean(p["flipped"][correct])) if correct.any() else float("nan"),
               delta_l2=_median(p["norm"]), delta_linf=_median(p["linf"]),
               **{k: _median(p[k]) for k in C3_FIELDS})
    return {**kap, **{k + suffix: v for k, v in out.items()}}


def _clean(v):
    return v if not isinstance(v, float) or math.isfinite(v) else None


def _compiled(f: Callable, steps: int, chunk: int | None, gating: Sequence[str]):
    """The jitted functions of a sweep: ``prep(xs, ys)`` and, per gating, ``fn(xs, ys, J, z, gz, beta)
    -> per-example numbers`` (β traced; ``lax.map`` in chunks of ``chunk`` examples)."""

    def batched(one):
        def run(*args):
            *per, beta = args
            return jax.lax.map(lambda a: one(*a, beta), tuple(per), batch_size=chunk or 0)

        return jax.jit(run)

    prep = batched(lambda x, y, _: prepare(f, x, y))

    def frozen(x, y, J, z, gz, beta):
        return frozen_example(J, z, gz, y, beta, steps=steps)

    def free(x, y, J, z, gz, beta):
        return free_example(f, x, y, J, gz, beta, steps=steps)

    return prep, {g: batched(dict(frozen=frozen, free=free)[g]) for g in gating}


def sweep(f: Callable[[jax.Array], jax.Array], xs, ys, *, betas: Sequence[float], steps: int,
          gating: Sequence[str] = ("frozen", "free"), chunk: int | None = None,
          flip_range: tuple[float, float] | None = None, factor: float = 3.0, max_betas: int = 16) -> list[dict]:
    """The theory against the real attack over a grid of strengths β (see the module docstring).

    Args:
      f: per-example logits function ``x -> z: [C]`` (softmax cross-entropy for ``C ≥ 2``, the
        sigmoid head with labels ±1 for ``C = 1``), e.g. :func:`jaxdyn.models.logits_fn`.
      xs: ``[N, *x.shape]`` examples; ys: ``[N]`` labels. κ and the medians are over all of
        them, ``flip_fraction`` over those ``f`` classifies correctly.
      betas: the β grid (each > 0; sorted, duplicates dropped).
      steps: the attack's ``m`` (``α = β/m``; static).
      gating: ``"frozen"`` (A2: the exact attack in logit space) and/or ``"free"`` (the real
        network, :func:`jaxdyn.attacks.attack`).
      chunk: examples per vectorised batch (bounds memory; ``None``: all at once).
      flip_range: ``(lo, hi)`` to extend the grid by ``factor``: below its smallest β until every
        gating's flip fraction is ≤ ``lo``, above its largest until every one is ≥ ``hi``, with
        at most ``max_betas`` rows in all (whether the range was reached can be read from the
        first and last rows).
    Returns:
      One dict per β, ascending: ``beta`` and :data:`ROW_FIELDS` and :data:`C3_FIELDS` (frozen),
      :data:`FREE_FIELDS` (free), for the gatings asked; κ, ``kappa_theorem1`` (Theorem 1 at the
      same ``m``) and ``kappa_first_order`` (``δ = β g_x``) are ratios of sums as
      :func:`jaxdyn.metrics.kappa`; ``beta_lambda_max`` is the median of ``β λ₁(H̄_x)``
      (``H̄_x = Jᵀ H̄_z J``, ``H̄_z`` of that attack), ``delta_l2``/``delta_linf`` medians of
      ``‖δ*‖₂``/``‖δ*‖∞``, ``flip_fraction`` the fraction of correctly classified examples
      misclassified at ``x + δ*`` (frozen: by the A2 network ``z + J δ*``; free: by ``f``), the
      C.3 cosines medians of ``cos(δ, g_x)`` and ``|cos(δ, v₁)|`` for δ* (``delta``) and δ̂
      (``hat``); ``n_examples``, ``n_correct``, ``steps``. Non-finite numbers are ``None``.
    """
    gating = tuple(gating)
    if not gating or any(g not in GATINGS for g in gating):
        raise ValueError(f"gating must be a non-empty subset of {GATINGS}, got {gating!r}")
    grid = sorted({float(b) for b in betas})
    if not grid or not all(math.isfinite(b) and b > 0 for b in grid):
        raise ValueError(f"betas must be finite and > 0, got {betas!r}")
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if flip_range is not None and not (0 <= flip_range[0] <= flip_range[1] <= 1 and factor > 1):
        raise ValueError(f"need 0 <= lo <= hi <= 1 and factor > 1, got flip_range={flip_range}, factor={factor}")
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    prep, fns = _compiled(f, int(steps), chunk, gating)
    J, z, gz = prep(xs, ys, jnp.zeros(()))
    correct = ~np.asarray(jax.vmap(is_success)(z, ys))
    dt = J.dtype
    rows: dict[float, dict] = {}

    def row(b: float) -> dict:
        if b not in rows:
            r = dict(beta=b, steps=int(steps), n_examples=int(len(ys)), n_correct=int(correct.sum()))
            for g, fn in fns.items():
                p = jax.device_get(fn(xs, ys, J, z, gz, jnp.asarray(b, dt)))
                r.update(summarize(p, correct, "" if g == "frozen" else "_free"))
            rows[b] = {k: _clean(v) for k, v in r.items()}
        return rows[b]

    def flips(r: dict) -> list[float]:
        fl = [r.get("flip_fraction" if g == "frozen" else "flip_fraction_free") for g in gating]
        return [v for v in fl if v is not None]

    for b in grid:
        row(b)
    if flip_range is not None:
        lo, hi = flip_range
        while len(rows) < max_betas and any(v > lo for v in flips(row(min(rows)))):
            row(min(rows) / factor)
        while len(rows) < max_betas and any(v < hi for v in flips(row(max(rows)))):
            row(max(rows) * factor)
    return [rows[b] for b in sorted(rows)]
