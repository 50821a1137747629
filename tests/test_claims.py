"""Verdict rules of :mod:`jaxdyn.experiments.claims`: each can return "does not hold"."""

from jaxdyn.experiments import claims


def test_rank_verdict():
    assert claims.rank_verdict([{"rho": 0.5, "p": 0.01}]) == "holds"
    assert claims.rank_verdict([{"rho": 0.5, "p": 0.01}, {"rho": 0.1, "p": 0.5}]) == "holds partly"
    assert claims.rank_verdict([{"rho": -0.5, "p": 0.01}]) == "does not hold"
    assert claims.rank_verdict([{"rho": float("nan"), "p": float("nan")}]) == "does not hold"


def test_range_and_count_verdicts():
    assert claims.range_verdict([1e-6, 1e-5], 1e-4, 1e-3) == "holds"
    assert claims.range_verdict([1e-6, 5e-4], 1e-4, 1e-3) == "holds partly"
    assert claims.range_verdict([1e-2, 5e-2, 1e-5], 1e-4, 1e-3) == "does not hold"
    assert claims.count_verdict([True, True]) == "holds"
    assert claims.count_verdict([True, False]) == "holds partly"
    assert claims.count_verdict([]) == "does not hold"
