"""Verdict rules of :mod:`jaxdyn.experiments.claims`: each can return "does not hold"."""

import pytest

from jaxdyn.experiments import claims
from jaxdyn.experiments.claims import ClaimText, render


def test_rank_verdict_holds():
    assert claims.rank_verdict([{"rho": 0.5, "p": 0.01}]) == "holds"
    assert claims.rank_verdict([{"rho": 0.5, "p": 0.01, "null_hi": 0.3}]) == "holds"  # above its null band
    assert claims.rank_verdict([{"rho": 0.5, "p": 0.001, "p_null": 0.002}] * 3) == "holds"


def test_rank_verdict_holm_controls_the_family():
    """Before Holm, "holds partly" was any one of 12 tests significant. Twelve ρ at two-sided p 0.04 each
    are each significant alone but not after Holm over the family: inconclusive."""
    assert claims.rank_verdict([{"rho": 0.3, "p": 0.04}]) == "holds"
    assert claims.rank_verdict([{"rho": 0.3, "p": 0.04}] * 12) == "inconclusive"
    assert claims.rank_verdict([{"rho": 0.5, "p": 0.01}, {"rho": 0.1, "p": 0.5}]) == "inconclusive"
    assert claims.rank_tests([{"rho": 0.5, "p": 1e-4}, {"rho": 0.1, "p": 0.5}]) == ["holds", "inconclusive"]


def test_verdict_can_fail_rank_negative():
    assert claims.rank_verdict([{"rho": -0.5, "p": 0.01}]) == "does not hold"
    # holds on one network, refuted on another: holds partly (symmetric; was "does not hold")
    assert claims.rank_verdict([{"rho": 0.6, "p": 1e-4}, {"rho": -0.53, "p": 1e-5}]) == "holds partly"
    # null-level ρ (no evidence either way) is inconclusive, no longer "does not hold"
    assert claims.rank_verdict([{"rho": -0.1, "p": 0.5}, {"rho": 0.0, "p": 1.0}]) == "inconclusive"


def test_rank_verdict_not_testable():
    assert claims.rank_verdict([{"rho": float("nan"), "p": float("nan")}]) == "not testable"
    assert claims.rank_verdict([]) == "not testable"
    assert claims.rank_verdict([{"rho": -0.9, "p": 1e-9, "testable": False}]) == "not testable"
    f = claims.rank_family([("a", "ρ", {"rho": -0.9, "p": 1e-9}), ("b", "ρ", {"rho": 0.9, "p": 1e-9})],
                           accuracies={"a": 0.52, "b": 0.95}, floor=0.8, name="n", n_digits=20)
    assert f["verdict"] == "holds" and f["cause"] is None and "a (0.52)" in f["floor"]
    assert f["statistic"]["n_not_testable"] == 1 and f["statistic"]["value"] == 1


def test_verdict_can_fail_rank_inside_null_band():
    """A ρ significant against independence but not above the null model (measured 0.20,
    norm-only null ≈ 0.33) cannot hold; it is not evidence against the claim either."""
    assert claims.rank_verdict([{"rho": 0.2, "p": 0.01, "null_hi": 0.33}]) == "inconclusive"
    assert claims.rank_verdict([{"rho": 0.2, "p": 0.001, "p_null": 0.3}]) == "inconclusive"
    assert claims.rank_verdict([{"rho": 0.2, "p": 0.001, "p_null": float("nan")}]) == "inconclusive"


def test_range_and_count_verdicts():
    assert claims.range_verdict([1e-6, 1e-5], 1e-4, 1e-3) == "holds"
    assert claims.range_verdict([1e-6, 5e-4], 1e-4, 1e-3) == "holds partly"
    assert claims.count_verdict([True, True]) == "holds"
    assert claims.count_verdict([True, False]) == "holds partly"


def test_verdict_can_fail_range_and_count():
    assert claims.range_verdict([1e-2, 5e-2, 1e-5], 1e-4, 1e-3) == "does not hold"
    assert claims.count_verdict([]) == "does not hold"
    assert claims.count_verdict([False, False]) == "does not hold"


def test_render_fills_every_field_from_the_values_and_refuses_a_missing_one():

    t = ClaimText("t.k", "κ is small ({k:.3g})", paper="κ ≤ {hi:g}", protocol="{row[n]} digits",
                  measured="κ = {k:.3g}", rule="κ ≤ {hi:g}", baselines="first order {k1:.2g}")
    assert t.fields() == ("k", "hi", "row", "k1")
    data = dict(statistic=dict(name="κ", value=0.01234, ci=[0.01, 0.02], n_digits=16, n_seeds=1),
                per_seed=[dict(seed=0, value=0.01234, verdict="holds")])
    c = render(t, dict(k=0.01234, hi=0.05, row={"n": 16}, k1=0.5), verdict="holds", **data)
    assert (c["claim"], c["paper"], c["protocol"], c["baselines"]) == ("κ is small (0.0123)", "κ ≤ 0.05",
                                                                       "16 digits", "first order 0.5")
    with pytest.raises(KeyError, match="t.k.*k1"):
        render(t, dict(k=0.01, hi=0.05, row={"n": 16}), verdict="holds", **data)
    with pytest.raises(ValueError, match="verdict"):
        render(t, dict(k=0.01, hi=0.05, row={"n": 16}, k1=1), verdict="maybe", **data)
    with pytest.raises(ValueError, match="a claim is data"):  # numbers as prose only are refused
        render(t, dict(k=0.01, hi=0.05, row={"n": 16}, k1=1), verdict="holds")
