"""Controls for rank-correlation claims (pure NumPy/SciPy): partial Spearman correlations, cosines
to a leave-one-out mean, a norm-only null model of random directions, and a paired test.

Every function ignores nothing silently: non-finite entries are dropped where stated, and a result
that cannot be computed is ``nan`` (never a pass).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata, wilcoxon
from scipy.stats import t as t_dist

__all__ = ["finite_median", "partial_spearman", "cos_to_mean", "gaussian_rows", "spearman_rows", "norm_only_null",
           "null_summary", "paired"]

_NAN = float("nan")


def finite_median(a) -> float:
    """The median of the finite entries of ``a`` (NaN when there are none), as a float."""
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else float("nan")


def _ranks(a):
    return rankdata(a, axis=-1)


def partial_spearman(x, y, z) -> dict:
    """Spearman ρ of ``x`` and ``y`` controlling for ``z`` (one covariate ``[N]`` or several ``[N, k]``).

    All three are rank-transformed; ``rank(x)`` and ``rank(y)`` are regressed (least squares, with an
    intercept) on the ranks of the covariates and ρ is the Pearson correlation of the two residuals.
    ``p``: two-sided, from ``t = ρ √((N - 2 - k) / (1 - ρ²))`` with ``N - 2 - k`` degrees of freedom.
    Samples with a non-finite value anywhere are dropped. Returns ``{"rho", "p", "n"}`` (``nan``
    when fewer than ``k + 3`` samples remain or a residual is constant).
    """
    x = np.asarray(x, float).ravel()
    y = np.asarray(y, float).ravel()
    z = np.asarray(z, float)
    z = z.reshape(len(x), -1) if z.size else np.zeros((len(x), 0))
    if len(y) != len(x) or z.shape[0] != len(x):
        raise ValueError(f"x, y, z need one length, got {len(x)}, {len(y)}, {z.shape[0]}")
    ok = np.isfinite(x) & np.isfinite(y) & np.all(np.isfinite(z), axis=1)
    n, k = int(ok.sum()), z.shape[1]
    if n < k + 3:
        return {"rho": _NAN, "p": _NAN, "n": n}
    design = np.column_stack([np.ones(n)] + [_ranks(c) for c in z[ok].T])

    def resid(v):
        r = _ranks(v)
        return r - design @ np.linalg.lstsq(design, r, rcond=None)[0]

    rx, ry = resid(x[ok]), resid(y[ok])
    den = math.sqrt(float(rx @ rx) * float(ry @ ry))
    if den <= 1e-12 * n**3:
        return {"rho": _NAN, "p": _NAN, "n": n}
    rho = float(np.clip(rx @ ry / den, -1.0, 1.0))
    dof = n - 2 - k
    if abs(rho) == 1.0:
        return {"rho": rho, "p": 0.0, "n": n}
    t = rho * math.sqrt(dof / (1.0 - rho * rho))
    return {"rho": rho, "p": float(2 * t_dist.sf(abs(t), dof)), "n": n}


def cos_to_mean(v, *, leave_one_out: bool = True, unit: bool = False) -> np.ndarray:
    """Per row ``i`` of ``v [N, d]`` the cosine between ``v_i`` and the mean of the rows.

    ``leave_one_out``: the mean of the *other* rows (so ``v_i`` is not compared with itself);
    ``unit``: the mean of the rows scaled to unit length (each row one vote, whatever its norm).
    A zero row or mean gives cosine 0.
    """
    v = np.asarray(v, float)
    v = v.reshape(len(v), -1)
    norms = np.linalg.norm(v, axis=1)
    w = v / np.where(norms > 0, norms, 1.0)[:, None] if unit else v
    total = w.sum(axis=0)
    rest = total[None, :] - w if leave_one_out else np.broadcast_to(total, v.shape)
    den = norms * np.linalg.norm(rest, axis=1)
    return np.where(den > 0, np.einsum("ij,ij->i", v, rest) / np.where(den > 0, den, 1.0), 0.0)


def gaussian_rows(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows whose inner products have the joint law of ``n`` iid standard Gaussian vectors in
    ``R^dim`` (so their directions are iid uniform on the sphere), in ``min(n, dim)`` coordinates.

    For ``dim > n`` this is the Bartlett factor of the Wishart ``G Gᵀ`` (``L`` lower triangular,
    ``L_ii² ~ χ²_{dim - i}`` for ``i = 0..n-1``, ``L_ij ~ N(0, 1)`` below the diagonal): the same
    Gram matrix as ``G [n, dim]`` at ``O(n²)`` cost instead of ``O(n dim)``."""
    if n < 1 or dim < 1:
        raise ValueError(f"n and dim must be >= 1, got {n}, {dim}")
    if dim <= n:
        return rng.standard_normal((n, dim))
    L = np.tril(rng.standard_normal((n, n)), -1)
    L[np.diag_indices(n)] = np.sqrt(rng.chisquare(dim - np.arange(n)))
    return L


def spearman_rows(a, b) -> np.ndarray:
    """Spearman ρ of ``a [N]`` with each row of ``b [D, N]``: the Pearson correlation of the
    (average-tie) ranks, vectorised over rows, as ``scipy.stats.spearmanr``."""
    ra = _ranks(np.asarray(a, float))
    rb = _ranks(np.asarray(b, float))
    ra = ra - ra.mean()
    rb = rb - rb.mean(axis=-1, keepdims=True)
    return rb @ ra / (np.linalg.norm(rb, axis=-1) * np.linalg.norm(ra))


def norm_only_null(norms, score, *, dim: int, draws: int, seed: int = 0, mask=None,
                   leave_one_out: bool = True, unit: bool = False) -> np.ndarray:
    """Null distribution of ``ρ(score, cos_to_mean)`` when only the norms are real.

    Each draw gives row ``i`` a uniformly random direction in ``R^dim`` with its real norm
    ``norms[i]``, computes :func:`cos_to_mean` (``leave_one_out``, ``unit``) over all rows, and
    Spearman's ρ of ``score`` with those cosines over the rows where ``mask`` is true (all by
    default). Returns the ``[draws]`` values of ρ."""
    norms = np.asarray(norms, float)
    score = np.asarray(score, float)
    if norms.shape != score.shape or norms.ndim != 1:
        raise ValueError(f"norms and score must be 1-D of one length, got {norms.shape}, {score.shape}")
    m = np.ones(len(norms), bool) if mask is None else np.asarray(mask, bool)
    rng = np.random.default_rng(seed)
    cos = np.empty((draws, int(m.sum())))
    for k in range(draws):
        g = gaussian_rows(len(norms), dim, rng)
        v = g / np.linalg.norm(g, axis=1, keepdims=True) * norms[:, None]
        cos[k] = cos_to_mean(v, leave_one_out=leave_one_out, unit=unit)[m]
    return spearman_rows(score[m], cos)


def null_summary(null, measured: float, qs=(0.025, 0.05, 0.5, 0.95, 0.975)) -> dict:
    """The null distribution in a few numbers: ``{"quantiles": {q: value}, "n_draws", "measured",
    "p_above"}`` with ``p_above = (1 + #{null ≥ measured}) / (1 + n)`` (one-sided, empirical)."""
    null = np.asarray(null, float)
    null = null[np.isfinite(null)]
    if null.size == 0:
        return {"quantiles": {str(q): _NAN for q in qs}, "n_draws": 0, "measured": measured, "p_above": _NAN}
    p = (1 + np.sum(null >= measured)) / (1 + null.size) if math.isfinite(measured) else _NAN
    return {"quantiles": {str(q): float(np.quantile(null, q)) for q in qs}, "n_draws": int(null.size),
            "measured": float(measured), "p_above": float(p)}


def paired(a, b) -> dict:
    """Paired comparison of ``a`` and ``b`` (Wilcoxon signed-rank on ``a - b``, two-sided), over
    the pairs where both are finite: ``{"n", "median_diff", "frac_greater" (a > b), "p"}``."""
    a = np.asarray(a, float).ravel()
    b = np.asarray(b, float).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    n = int(d.size)
    if n < 1:
        return {"n": 0, "median_diff": _NAN, "frac_greater": _NAN, "p": _NAN}
    p = float(wilcoxon(d).pvalue) if n >= 2 and np.any(d != 0) else _NAN
    return {"n": n, "median_diff": float(np.median(d)), "frac_greater": float(np.mean(d > 0)), "p": p}
