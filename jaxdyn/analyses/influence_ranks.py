"""Figures 3 and 4's rank statistics over one network's per-sample numbers
(:func:`jaxdyn.analyses.influence_measure.binary_influence`): Spearman ρ of the influence against
``H̄_z``, ``H̄_z ||g̃_x||²`` and ``Â`` and its controls (Fig. 3, :func:`influence_correlations`,
:func:`influence_controls`), and the cosine of ``Δg_W|_x`` to the mean per ``Â`` group with its
norm-only null (Fig. 4, :func:`group_curve`, :func:`dominance`, :func:`dominance_controls`).
"""

from __future__ import annotations

import numpy as np

from scipy.stats import rankdata

from jaxdyn.analyses import stats
from jaxdyn.analyses.metrics import spearman

__all__ = ["X_KEYS", "Y_KEYS", "X_COUNTED", "FIRST_ORDER", "COSINES", "influence_correlations", "influence_controls",
           "group_curve", "dominance", "dominance_controls", "rho_rows", "digit_resamples", "pooled_over_seeds"]

#: Fig. 3's x-axes and y-axes (per-sample keys)
X_KEYS = ("hbar_z", "hbar_z_gx2", "A_hat")
Y_KEYS = ("abs_phi", "dgw_norm")

#: the x-axes a headline verdict counts (``H̄_z ||g̃_x||²`` has the ranks of ``A``, which ``Â`` measures)
X_COUNTED = ("hbar_z", "A_hat")
FIRST_ORDER = {"abs_phi": "abs_phi_fo", "dgw_norm": "dgw_norm_fo"}

#: the cosines compared with their null: (per-sample key, cos_to_mean options, over unflipped digits only)
COSINES = {"loo": ("cos_loo", dict(), True), "unit_loo": ("cos_unit_loo", dict(unit=True), True),
           "paper": ("cos_to_mean", dict(leave_one_out=False), False)}


def influence_correlations(q: dict, mask=None) -> dict:
    """Spearman ρ (and p) of every (x, y) pair of Fig. 3: ``{"x|y": {"rho", "p", "n"}}``, over the
    samples where ``mask`` is true (all by default)."""
    m = np.ones(len(np.asarray(q[X_KEYS[0]])), bool) if mask is None else np.asarray(mask, bool)
    return {f"{a}|{b}": spearman(np.asarray(q[a])[m], np.asarray(q[b])[m]) for a in X_KEYS for b in Y_KEYS}


def influence_controls(q: dict) -> dict:
    """Fig. 3's controls from one network's per-sample numbers ``q``
    (:func:`jaxdyn.analyses.influence_measure.binary_influence`'s): the digits the attack did not flip
    and those it did, partial ρ given the vanilla scale ``||g_W||`` and given the first-order
    surrogate, ρ(A, real / first order), the paired comparison with the first-order surrogate, the
    baselines' ρ and the redundancy of the x-axes (:mod:`jaxdyn.experiments.fig3`)."""
    q = {k: np.asarray(v, float) for k, v in q.items()}
    flip = q["success"].astype(bool)
    un = ~flip

    def partial(mask, cov):
        return {f"{a}|{b}": stats.partial_spearman(q[a][mask], q[b][mask], cov(b)[mask])
                for a in X_KEYS for b in Y_KEYS}

    def ratio(y):
        return q[y] / q[FIRST_ORDER[y]]

    vanilla, first_order = (lambda b: q["gw_norm"]), (lambda b: q[FIRST_ORDER[b]])
    return dict(
        unflipped_only=dict(n=int(un.sum()), spearman=influence_correlations(q, un)),
        flipped_only=dict(n=int(flip.sum()), spearman=influence_correlations(q, flip),
                          partial_rho=partial(flip, vanilla)),
        partial_rho=dict(vanilla_gw=partial(un, vanilla), first_order=partial(un, first_order),
                         all_digits_vanilla_gw=partial(np.ones_like(un), vanilla)),
        exponential={f"A|{y}_ratio": spearman(q["A"][un], ratio(y)[un]) for y in Y_KEYS},
        vs_first_order={y: stats.paired(np.log(q[y][un]), np.log(q[FIRST_ORDER[y]][un])) for y in Y_KEYS},
        baselines=dict(first_order={f"{a}|{b}": spearman(q[a][un], q[FIRST_ORDER[b]][un]) for a in X_KEYS
                                    for b in Y_KEYS},
                       vanilla_gw={a: spearman(q[a][un], q["gw_norm"][un]) for a in X_KEYS}),
        redundancy={"A|hbar_z_gx2": spearman(q["A"], q["hbar_z_gx2"]), "A_hat|A": spearman(q["A_hat"], q["A"])})


def group_curve(a_hat, cos, *, groups: int = 10) -> dict:
    """Mean ``Â`` and mean cosine per ``Â``-group (equal-count groups in ascending ``Â``).

    Args:
      a_hat, cos: ``[N]`` per-sample values.
      groups: number of groups (at most ``N``).
    Returns:
      ``{"A_hat": [G], "cos": [G], "count": [G]}``.
    """
    a_hat = np.asarray(a_hat, float)
    cos = np.asarray(cos, float)
    if a_hat.shape != cos.shape or a_hat.ndim != 1:
        raise ValueError(f"a_hat and cos must be 1-D of one length, got {a_hat.shape} and {cos.shape}")
    ok = np.isfinite(a_hat) & np.isfinite(cos)
    a_hat, cos = a_hat[ok], cos[ok]
    g = min(groups, len(a_hat))
    if g < 1:
        raise ValueError("no finite samples to group")
    parts = np.array_split(np.argsort(a_hat, kind="stable"), g)
    return {"A_hat": [float(a_hat[p].mean()) for p in parts], "cos": [float(cos[p].mean()) for p in parts],
            "count": [int(len(p)) for p in parts]}


def dominance(samples: dict, *, groups: int = 10) -> dict:
    """Fig. 4's numbers for one model from its per-sample ``A_hat`` and ``cos_to_mean``."""
    curve = group_curve(samples["A_hat"], samples["cos_to_mean"], groups=groups)
    return dict(groups=curve, spearman_groups=spearman(curve["A_hat"], curve["cos"]),
                spearman_samples=spearman(samples["A_hat"], samples["cos_to_mean"]),
                top_minus_bottom=curve["cos"][-1] - curve["cos"][0])


def dominance_controls(samples: dict, *, dim: int, draws: int, seed: int = 0, groups: int = 10) -> dict:
    """Fig. 4's controls for one network: per cosine of :data:`COSINES` the measured ρ(Â, cos) and
    the norm-only null (:func:`jaxdyn.analyses.stats.null_summary` of :func:`jaxdyn.analyses.stats.norm_only_null`
    with the real ``||Δg_W||`` in ``R^dim``); the leave-one-out group curve over unflipped digits."""
    keys = ("A_hat", "dgw_norm", "success", *(c for c, _, _ in COSINES.values()))
    q = {k: np.asarray(samples[k], float) for k in keys}
    un = ~q["success"].astype(bool)
    null = {}
    for key, (cos, kw, unflipped) in COSINES.items():
        m = un if unflipped else np.ones_like(un)
        meas = spearman(q["A_hat"][m], q[cos][m])
        dist = stats.norm_only_null(q["dgw_norm"], q["A_hat"], dim=dim, draws=draws, seed=seed, mask=m, **kw)
        null[key] = dict(stats.null_summary(dist, meas["rho"]), spearman=meas)
    return dict(null=null, n_unflipped=int(un.sum()), dim=dim,
                loo_groups=group_curve(q["A_hat"][un], q["cos_loo"][un], groups=groups) if un.any() else None,
                flipped_only=spearman(q["A_hat"][~un], q["cos_loo"][~un]))


# --- the claims' statistic: ρ per network, resampled over digits, pooled over seeds ---------------

def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis (NaN where a side is constant)."""
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((x * x).sum(axis=-1) * (y * y).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (x * y).sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)


def _rank_rows(a: np.ndarray) -> np.ndarray:
    return rankdata(a, axis=-1)  # average ranks: a digit drawn twice ties with itself


def rho_rows(kind: str, cols: tuple[np.ndarray, ...], *, groups: int = 10) -> np.ndarray:
    """One rank statistic per row of ``[..., n]`` per-digit columns: ``"rho"`` Spearman ρ of
    ``(x, y)``; ``"partial"`` Spearman ρ of ``(x, y)`` given ``z`` (rank partial correlation, as
    :func:`jaxdyn.analyses.stats.partial_spearman` with one covariate); ``"groups"`` Spearman ρ of
    the group means of ``(x, y)`` over ``groups`` equal-count groups of ascending ``x`` (Fig. 4's
    curve, :func:`group_curve`)."""
    if kind == "rho":
        x, y = cols
        return _pearson_rows(_rank_rows(x), _rank_rows(y))
    if kind == "partial":
        rx, ry, rz = (_rank_rows(c) for c in cols)
        rxy, rxz, ryz = _pearson_rows(rx, ry), _pearson_rows(rx, rz), _pearson_rows(ry, rz)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2))
    if kind == "groups":
        x, y = cols
        order = np.argsort(x, axis=-1, kind="stable")
        xs, ys = np.take_along_axis(x, order, -1), np.take_along_axis(y, order, -1)
        parts = np.array_split(np.arange(x.shape[-1]), min(groups, x.shape[-1]))
        gx = np.stack([xs[..., p].mean(axis=-1) for p in parts], -1)
        gy = np.stack([ys[..., p].mean(axis=-1) for p in parts], -1)
        return _pearson_rows(_rank_rows(gx), _rank_rows(gy))
    raise ValueError(f"kind must be 'rho', 'partial' or 'groups', got {kind!r}")


def digit_resamples(n: int, *, n_resamples: int, seed: int) -> np.ndarray:
    """``[n_resamples, n]`` digit indices drawn with replacement (one network's bootstrap); row 0 of
    the result is *not* the identity (the point value is computed apart)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def pooled_over_seeds(values: np.ndarray, boots: np.ndarray, *, seed: int) -> tuple[float, np.ndarray]:
    """The hierarchical bootstrap of a per-network statistic over the seeds of one architecture:
    ``values [S]`` the statistic of each network on all its digits, ``boots [S, B]`` its digit
    resamples. Returns ``(mean of values, [B] resampled means)``: each resample draws ``S`` networks
    with replacement and, for each draw, a digit resample of that network (a different one for a
    network drawn twice), then averages. With one network, its digit resamples alone."""
    S, B = boots.shape
    pick = np.random.default_rng(seed).integers(0, S, size=(B, S))
    cols = (np.arange(B)[:, None] + 7919 * np.arange(S)[None, :]) % B  # another digit resample per draw slot
    return float(np.mean(values)), boots[pick, cols].mean(axis=1)
