"""The paper's error metrics and the statistics of its figures, on batches (leading axis = samples).

* κ and matching errors: ``κ = E_x ||δ* - δ̂|| / E_x ||δ*||`` (Table 1),
  ``κ' = E_x |φ* - φ̂| / E_x |φ*|`` (Table 2), ``1 - cos`` (Appendix D);
* fits: the exponential-rate fit of Fig. 2 and its linear baseline;
* the weight-gradient instability ``Δ_j`` of Fig. 5;
* rank and paired tests: Spearman's ρ, the per-layer paired Wilcoxon tests of Fig. 5.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from jaxdyn.core.params import get_param, set_param

__all__ = [
    "kappa", "kappa_first_order", "kappa_prime", "cosine", "one_minus_cos", "per_sample_norm",
    "fit_log_linear", "fit_linear", "growth_fits", "weight_gradient_instability", "spearman", "paired_log_excess",
    "LayerTest",
]


# --- κ and matching errors ------------------------------------------------------------------------


def per_sample_norm(a: jax.Array) -> jax.Array:
    """ℓ2 norm of each sample: ``[B, ...] -> [B]``."""
    return jnp.linalg.norm(jnp.reshape(a, (a.shape[0], -1)), axis=1)


def kappa(delta_star: jax.Array, delta_hat: jax.Array) -> jax.Array:
    """``κ = mean ||δ* - δ̂|| / mean ||δ*||``. Both ``[B, ...]``; returns a scalar."""
    if delta_star.shape != delta_hat.shape:
        raise ValueError(f"shape mismatch: {delta_star.shape} vs {delta_hat.shape}")
    return jnp.mean(per_sample_norm(delta_star - delta_hat)) / jnp.mean(per_sample_norm(delta_star))


def kappa_first_order(delta_star: jax.Array, g_x: jax.Array, beta) -> jax.Array:
    """κ of the curvature-free baseline ``δ = β g_x`` (the λ → 0 limit of Theorem 2)."""
    return kappa(delta_star, beta * g_x)


def kappa_prime(phi_star: jax.Array, phi_hat: jax.Array) -> jax.Array:
    """``κ' = mean |φ* - φ̂| / mean |φ*|`` over samples (``[B]`` each)."""
    if phi_star.shape != phi_hat.shape:
        raise ValueError(f"shape mismatch: {phi_star.shape} vs {phi_hat.shape}")
    return jnp.mean(jnp.abs(phi_star - phi_hat)) / jnp.mean(jnp.abs(phi_star))


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    """``cos(a, b)`` of two flattened arrays."""
    a, b = jnp.ravel(a), jnp.ravel(b)
    return jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))


def one_minus_cos(a: jax.Array, b: jax.Array) -> jax.Array:
    """Per-sample ``1 - cos(a_i, b_i)``: ``[B, ...] x [B, ...] -> [B]``."""
    a = jnp.reshape(a, (a.shape[0], -1))
    b = jnp.reshape(b, (b.shape[0], -1))
    cos = jnp.sum(a * b, axis=1) / (jnp.linalg.norm(a, axis=1) * jnp.linalg.norm(b, axis=1))
    return 1.0 - cos


# --- fits (Fig. 2) --------------------------------------------------------------------------------


def fit_log_linear(t: jax.Array, v: jax.Array, mask: jax.Array | None = None):
    """Least-squares fit ``log v ≈ a + r t`` on the entries where ``mask`` is true (Fig. 2).

    An exponential ``v = c e^{r t}`` is a straight line in ``log v``; ``r`` is its rate per unit of
    ``t`` and ``R²`` (of the fit in log space) says how exponential the curve is. One curve per
    call: ``t``, ``v``, ``mask``: ``[T]`` (``vmap`` for many curves). Entries with ``v <= 0`` are
    left out. Returns ``(rate, intercept, r2)``; ``nan`` when fewer than 2 points are left, ``r2``
    is 1 for a perfectly exponential curve and ``nan`` for a constant one.
    """
    return _fit_linear(t, jnp.log(jnp.where(v > 0, v, 1.0)), _fit_mask(v, mask, positive=True))


def fit_linear(t: jax.Array, v: jax.Array, mask: jax.Array | None = None):
    """Least-squares fit ``v ≈ a + r t`` on the masked entries (the non-exponential baseline of
    Fig. 2's fits). Same conventions as :func:`fit_log_linear`; returns ``(slope, intercept, r2)``."""
    return _fit_linear(t, v, _fit_mask(v, mask, positive=False))


def _fit_mask(v, mask, *, positive):
    m = jnp.ones(v.shape, bool) if mask is None else jnp.asarray(mask, bool)
    m = m & jnp.isfinite(v)
    return m & (v > 0) if positive else m


def _fit_linear(t, u, m):
    if t.ndim != 1 or t.shape != u.shape:
        raise ValueError(f"t and v must be 1-D of one length, got {t.shape} and {u.shape}")
    w = m.astype(u.dtype)
    t = jnp.asarray(t, u.dtype)
    u = jnp.where(m, u, 0.0)
    n = jnp.sum(w)
    nz = jnp.where(n > 0, n, 1.0)
    tm = jnp.sum(w * t) / nz
    um = jnp.sum(w * u) / nz
    stt = jnp.sum(w * (t - tm) ** 2)
    stu = jnp.sum(w * (t - tm) * (u - um))
    suu = jnp.sum(w * (u - um) ** 2)
    ok = (n >= 2) & (stt > 0)
    rate = jnp.where(ok, stu / jnp.where(ok, stt, 1.0), jnp.nan)
    intercept = jnp.where(ok, um - rate * tm, jnp.nan)
    r2 = jnp.where(ok & (suu > 0), stu**2 / jnp.where(ok & (suu > 0), stt * suu, 1.0), jnp.nan)
    return rate, intercept, r2


def growth_fits(traj: jax.Array, success: jax.Array, *, start: int = 0) -> dict:
    """Fig. 2's per-curve fits on the window ``start ≤ t ≤ success[i]`` (empty where
    ``success[i] ≤ 0``): ``rate`` and ``r2`` of :func:`fit_log_linear`, ``r2_linear`` of
    :func:`fit_linear`, and the log-linear rate on the first (``t ≤ m/2``) and the second
    (``t ≥ m/2``) half of the window, ``rate_early``/``rate_late`` (a rising rate is growth faster
    than exponential). ``traj``: ``[N, T]`` (index = step); ``success``: ``[N]``. Returns ``[N]``
    arrays."""
    t = jnp.arange(traj.shape[1], dtype=traj.dtype)
    ms = jnp.asarray(success).astype(t.dtype)[:, None]
    win = (t[None] <= ms) & (ms > 0) & (t[None] >= start)
    log_fit = jax.vmap(fit_log_linear, in_axes=(None, 0, 0))
    rate, _, r2 = log_fit(t, traj, win)
    return dict(rate=rate, r2=r2, r2_linear=jax.vmap(fit_linear, in_axes=(None, 0, 0))(t, traj, win)[2],
                rate_early=log_fit(t, traj, win & (t[None] <= ms / 2))[0],
                rate_late=log_fit(t, traj, win & (t[None] >= ms / 2))[0])


# --- weight-gradient instability (Fig. 5) ---------------------------------------------------------


def weight_gradient_instability(loss_of_variables, variables, paths, *, eta, normalizer: str = "fan_in"):
    """Per-layer instability of the weight gradient (Fig. 5, conclusion C.8).

    For each layer ``j`` (kernel ``W_j``), with every other parameter held fixed,

        ``Δ_j = ||∂L/∂W_j (W_j + ΔW_j) - ∂L/∂W_j (W_j)|| / (D_j ||ΔW_j||)``, ``ΔW_j = -η ∂L/∂W_j``:

    a finite-difference estimate of the curvature of ``L`` along one gradient step of that layer
    alone. ``Δ^(ori)`` is this on a clean example, ``Δ^(adv)`` on its adversarial example (pass a
    loss closed over ``x`` or over ``x + δ``).

    The ``L`` perturbed gradients share one compiled backward pass: ``lax.map`` over the rows of
    the ``L x L`` identity, row ``j`` switching on the step of layer ``j`` only.

    Args:
      loss_of_variables: ``variables -> scalar`` (one example, or a batch mean).
      variables: the network's variables (``{"params": ..., ...}``).
      paths: module paths of the layers, e.g. ``[("Conv_0",), ("head",)]``; each must hold a
        ``kernel`` in ``variables["params"]``.
      eta: the learning rate ``η`` of the step (traced).
      normalizer: ``D_j``, which the paper leaves open (``W_j ∈ R^{D×D}``): ``"fan_in"`` (the
        inputs of one unit: ``kh·kw·c_in`` for a conv, ``n_in`` for a dense kernel; ``D`` for the
        paper's square ``W_j``), ``"size"`` (the number of entries) or ``"none"`` (``D_j = 1``).
        It cancels in ``Δ^(adv)_j / Δ^(ori)_j``.

    Returns:
      ``[len(paths)]`` array of ``Δ_j`` (``nan`` where the gradient of a layer is exactly 0).
    """
    if normalizer not in ("fan_in", "size", "none"):
        raise ValueError(f"normalizer must be 'fan_in', 'size' or 'none', got {normalizer!r}")
    paths = [tuple(p) for p in paths]
    if not paths:
        raise ValueError("paths must name at least one layer")
    kernels = [get_param(variables, p) for p in paths]
    dt = kernels[0].dtype

    def loss_k(ks):
        v = variables
        for p, k in zip(paths, ks):
            v = set_param(v, p, k)
        return loss_of_variables(v)

    g0 = jax.grad(loss_k)(kernels)
    dW = [-eta * g for g in g0]

    def moved(onehot):
        g1 = jax.grad(loss_k)([k + onehot[j] * d for j, (k, d) in enumerate(zip(kernels, dW))])
        return jnp.stack([jnp.linalg.norm(a - b) for a, b in zip(g1, g0)])

    num = jnp.diagonal(jax.lax.map(moved, jnp.eye(len(paths), dtype=dt)))
    if normalizer == "fan_in":
        D = jnp.asarray([math.prod(k.shape[:-1]) for k in kernels], dt)
    elif normalizer == "size":
        D = jnp.asarray([math.prod(k.shape) for k in kernels], dt)
    else:
        D = jnp.ones(len(kernels), dt)
    den = D * jnp.stack([jnp.linalg.norm(d) for d in dW])
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), jnp.nan)


# --- rank and paired tests ------------------------------------------------------------------------


def spearman(a, b) -> dict:
    """Spearman rank correlation with its two-sided p-value (scipy), ignoring non-finite pairs.

    Returns ``{"rho", "p", "n"}`` (``rho``/``p`` are ``nan`` when fewer than 3 pairs remain or
    one side is constant)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    if n < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return {"rho": float("nan"), "p": float("nan"), "n": n}
    r = stats.spearmanr(a[ok], b[ok])
    return {"rho": float(r.statistic), "p": float(r.pvalue), "n": n}


def paired_log_excess(a, b, mask=None, *, alpha: float = 0.05) -> dict:
    """Per column (layer), the paired comparison of ``a`` with ``b`` (``[N, L]`` each, rows = the
    same digit), on the rows where ``mask`` (``[N]``) is true and both are finite and positive.

    Wilcoxon signed-rank tests of ``log a - log b`` (scipy; exact for small ``n``), one-sided each
    way. Returns lists over columns: ``median_ratio`` (median of ``a/b``), ``frac_greater``,
    ``p_greater`` (H1: ``a > b``), ``p_less`` (H1: ``a < b``), ``n``, and ``excess`` /
    ``deficit``: ``p_greater < alpha`` with ``median_ratio > 1`` / ``p_less < alpha`` with
    ``median_ratio < 1`` (``nan`` p-values, e.g. fewer than 2 pairs, decide neither)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a and b must be [N, L] of one shape, got {a.shape} and {b.shape}")
    rows = np.ones(a.shape[0], bool) if mask is None else np.asarray(mask, bool)
    out = {k: [] for k in ("median_ratio", "frac_greater", "p_greater", "p_less", "n", "excess", "deficit")}
    for j in range(a.shape[1]):
        ok = rows & np.isfinite(a[:, j]) & np.isfinite(b[:, j]) & (a[:, j] > 0) & (b[:, j] > 0)
        d = np.log(a[ok, j]) - np.log(b[ok, j])
        n = int(ok.sum())
        pg = pl = float("nan")
        if n >= 2 and np.any(d != 0):
            pg = float(stats.wilcoxon(d, alternative="greater").pvalue)
            pl = float(stats.wilcoxon(d, alternative="less").pvalue)
        med = float(np.exp(np.median(d))) if n else float("nan")
        out["median_ratio"].append(med)
        out["frac_greater"].append(float(np.mean(d > 0)) if n else float("nan"))
        out["p_greater"].append(pg)
        out["p_less"].append(pl)
        out["n"].append(n)
        out["excess"].append(bool(pg < alpha and med > 1))
        out["deficit"].append(bool(pl < alpha and med < 1))
    return out


class LayerTest(NamedTuple):
    """One test of a per-layer family (Fig. 5's verdicts): the network, the comparison (a control or a
    paired comparison's name) and the layer (0-based, forward order)."""

    network: str
    comparison: str
    layer: int
