"""jaxdyn.analyses.stats: each control against a direct computation or a case with a known answer."""

import numpy as np
import pytest
from scipy import stats as ss

from jaxdyn.analyses import stats


def _residual_rho(x, y, z):
    """Partial Spearman the long way: ranks, residuals of each on [1, rank z], Pearson of those."""
    rx, ry, rz = ss.rankdata(x), ss.rankdata(y), ss.rankdata(z)
    D = np.column_stack([np.ones_like(rz), rz])
    ex = rx - D @ np.linalg.solve(D.T @ D, D.T @ rx)
    ey = ry - D @ np.linalg.solve(D.T @ D, D.T @ ry)
    return ss.pearsonr(ex, ey).statistic


def test_partial_spearman_matches_residuals_and_removes_a_common_cause():
    rng = np.random.default_rng(0)
    z = rng.standard_normal(200)
    x = z + 0.3 * rng.standard_normal(200)
    y = z + 0.3 * rng.standard_normal(200)
    r = stats.partial_spearman(x, y, z)
    assert r["n"] == 200 and r["rho"] == pytest.approx(_residual_rho(x, y, z), abs=1e-12)
    # x and y share only z: plainly correlated, not given z
    assert ss.spearmanr(x, y).statistic > 0.8 and abs(r["rho"]) < 0.2 and r["p"] > 0.01
    # with no covariate it is Spearman's ρ (and its p up to the t approximation scipy uses too)
    r0 = stats.partial_spearman(x, y, np.zeros((200, 0)))
    assert r0["rho"] == pytest.approx(ss.spearmanr(x, y).statistic, abs=1e-12)
    assert r0["p"] == pytest.approx(ss.spearmanr(x, y).pvalue, rel=1e-6)
    # a real effect beyond z survives; non-finite samples are dropped
    y2 = z + x + 0.1 * rng.standard_normal(200)
    y2[3] = np.nan
    r2 = stats.partial_spearman(x, y2, z)
    assert r2["n"] == 199 and r2["rho"] > 0.5 and r2["p"] < 1e-6
    assert np.isnan(stats.partial_spearman(x[:3], y[:3], z[:3])["rho"])


def test_cos_to_mean_leave_one_out_and_unit():
    v = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    # with x in the mean (1, 4)/3: row 0's cosine 1/√17
    np.testing.assert_allclose(stats.cos_to_mean(v, leave_one_out=False), [1, 4, 4] / np.sqrt(17))
    # without: row 0 against (0, 4) → 0; row 1 against (1, 3) → 3/√10
    np.testing.assert_allclose(stats.cos_to_mean(v), [0, 3 / np.sqrt(10), 1 / np.sqrt(2)])
    # unit vectors, one vote each: row 0 against (0, 2) → 0, row 1 and row 2 against (1, 1)
    np.testing.assert_allclose(stats.cos_to_mean(v, unit=True), [0, 1 / np.sqrt(2), 1 / np.sqrt(2)], atol=1e-15)


def test_gaussian_rows_have_the_gram_law_of_gaussians():
    rng = np.random.default_rng(1)
    n, dim = 4, 50
    grams = np.array([(lambda L: L @ L.T)(stats.gaussian_rows(n, dim, rng)) for _ in range(4000)])
    # Wishart(dim, I): E = dim I, Var(diag) = 2 dim, Var(off) = dim
    np.testing.assert_allclose(grams.mean(0), dim * np.eye(n), atol=0.6)
    np.testing.assert_allclose(grams[:, 0, 0].var(), 2 * dim, rtol=0.1)
    np.testing.assert_allclose(grams[:, 3, 1].var(), dim, rtol=0.1)
    assert stats.gaussian_rows(5, 3, rng).shape == (5, 3)


def test_spearman_rows_matches_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(30), rng.standard_normal((5, 30))
    np.testing.assert_allclose(stats.spearman_rows(a, b), [ss.spearmanr(a, r).statistic for r in b], atol=1e-12)


def test_norm_only_null_known_cases():
    """Random directions, real norms. With the mean over all rows (x included) the cosine of a
    row grows with its own norm, so a score equal to the norm gets a large positive null ρ; with the
    leave-one-out mean the cosine does not depend on the row's own norm: the null is centred on 0,
    with the spread of ρ under independence (sd ≈ 1/√(N-1))."""
    n = 60
    norms = np.exp(np.random.default_rng(3).normal(size=n))
    incl = stats.norm_only_null(norms, norms, dim=200, draws=400, seed=0, leave_one_out=False)
    loo = stats.norm_only_null(norms, norms, dim=200, draws=400, seed=0)
    assert np.median(incl) > 0.3 and np.quantile(incl, 0.05) > np.quantile(loo, 0.95)
    assert abs(np.median(loo)) < 0.05 and np.std(loo) == pytest.approx(1 / np.sqrt(n - 1), rel=0.2)
    s = stats.null_summary(loo, 0.5)
    assert s["n_draws"] == 400 and s["quantiles"]["0.95"] == pytest.approx(1.645 / np.sqrt(n - 1), abs=0.06)
    assert s["p_above"] < 0.01 and stats.null_summary(loo, -0.5)["p_above"] > 0.99
    m = np.arange(n) < 30  # ρ over a subset
    assert stats.norm_only_null(norms, norms, dim=200, draws=3, seed=0, mask=m).shape == (3,)


def test_paired():
    r = stats.paired([2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], np.arange(8.0))
    assert r == {"n": 8, "median_diff": 2.0, "frac_greater": 1.0, "p": pytest.approx(0.0078125)}
    assert np.isnan(stats.paired([1.0], [np.nan])["p"])
