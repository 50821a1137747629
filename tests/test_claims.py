"""Verdict rules of :mod:`jaxdyn.experiments.claims`: each can return "does not hold"."""

from jaxdyn.experiments import claims


def test_rank_verdict():
    assert claims.rank_verdict([{"rho": 0.5, "p": 0.01}]) == "holds"
    assert claims.rank_verdict([{"rho": 0.5, "p": 0.01}, {"rho": 0.1, "p": 0.5}]) == "holds partly"
    assert claims.rank_verdict([{"rho": 0.2, "p": 0.3}, {"rho": 0.1, "p": 0.5}]) == "holds partly"
    assert claims.rank_verdict([{"rho": 0.5, "p": 0.01}, {"rho": -0.1, "p": 0.5}]) == "holds partly"
    # above its null band and significant
    assert claims.rank_verdict([{"rho": 0.5, "p": 0.01, "null_hi": 0.3}]) == "holds"


def test_verdict_can_fail_rank_negative_or_none():
    assert claims.rank_verdict([{"rho": -0.5, "p": 0.01}]) == "does not hold"
    assert claims.rank_verdict([{"rho": -0.1, "p": 0.5}, {"rho": 0.0, "p": 1.0}]) == "does not hold"
    assert claims.rank_verdict([{"rho": float("nan"), "p": float("nan")}]) == "does not hold"
    assert claims.rank_verdict([]) == "does not hold"


def test_verdict_can_fail_rank_significantly_negative_beside_positive():
    """A measured case: VGG-11 ρ(H̄_z, |φ|) = −0.53 (p = 1e-5) beside significantly positive ρ was
    once "holds partly"; a significantly negative correlation refutes "rise together"."""
    assert claims.rank_verdict([{"rho": 0.6, "p": 1e-4}, {"rho": 0.5, "p": 1e-3},
                                {"rho": -0.53, "p": 1e-5}]) == "does not hold"


def test_verdict_can_fail_rank_inside_null_band():
    """A ρ that is significant against independence but not above the null model's 95 % quantile
    (a measured case: 0.20, norm-only null ≈ 0.33) is null-level."""
    assert claims.rank_verdict([{"rho": 0.2, "p": 0.01, "null_hi": 0.33}]) == "does not hold"
    assert claims.rank_verdict([{"rho": 0.2, "p": 0.01, "null_hi": 0.33},
                                {"rho": 0.5, "p": 0.001, "null_hi": 0.3}]) == "holds partly"


def test_range_and_count_verdicts():
    assert claims.range_verdict([1e-6, 1e-5], 1e-4, 1e-3) == "holds"
    assert claims.range_verdict([1e-6, 5e-4], 1e-4, 1e-3) == "holds partly"
    assert claims.count_verdict([True, True]) == "holds"
    assert claims.count_verdict([True, False]) == "holds partly"


def test_verdict_can_fail_range_and_count():
    assert claims.range_verdict([1e-2, 5e-2, 1e-5], 1e-4, 1e-3) == "does not hold"
    assert claims.count_verdict([]) == "does not hold"
    assert claims.count_verdict([False, False]) == "does not hold"
