"""The statistics behind verdicts (jaxdyn.analyses.verdicts): the hierarchical bootstrap, the five verdicts
from symmetric rules, Holm's correction, and the claims-as-data fields; every rule is fed numbers
where it must say each of its answers."""

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxdyn.analyses import verdicts as V
from jaxdyn.experiments.claims import VERDICTS, claim
from jaxdyn.experiments.report import _statistic_lines


def _groups(means, n=40, sd=0.1, seed=0):
    rng = np.random.default_rng(seed)
    return [m + sd * rng.standard_normal(n) for m in means]


def test_bootstrap_is_seeded_and_covers_the_pooled_statistic():
    g = _groups([1.0, 1.1, 0.9])
    a, b = V.hierarchical_bootstrap(g, seed=3), V.hierarchical_bootstrap(g, seed=3)
    assert a == b
    assert a.lo <= a.value <= a.hi
    assert a.value == pytest.approx(float(np.median(np.concatenate(g))))
    assert (a.n_seeds, a.n_digits, a.n_resamples) == (3, 120, 2000)


def test_bootstrap_resamples_networks_not_only_digits():
    # the same digits pooled into one network give a narrow interval; spread over networks whose
    # means differ, the interval must widen (the training noise a single network hides)
    g = _groups([0.5, 1.0, 1.5], n=50, sd=0.05)
    one = V.hierarchical_bootstrap([np.concatenate(g)])
    many = V.hierarchical_bootstrap(g)
    assert one.value == many.value
    assert (many.hi - many.lo) > 5 * (one.hi - one.lo)


def test_bootstrap_drops_nonfinite_and_empty_networks():
    g = [np.array([1.0, np.nan, 2.0, np.inf]), np.array([np.nan]), np.array([3.0, 4.0])]
    iv = V.hierarchical_bootstrap(g)
    assert (iv.n_seeds, iv.n_digits) == (2, 4)
    empty = V.hierarchical_bootstrap([np.array([np.nan])])
    assert empty.n_digits == 0 and np.isnan(empty.value)
    assert V.side_verdict(empty, 1.0) is V.Verdict.NOT_TESTABLE


def test_bootstrap_rejects_misuse():
    with pytest.raises(ValueError, match="one array per network"):
        V.hierarchical_bootstrap(np.ones(5))
    with pytest.raises(ValueError, match="at least 1000"):
        V.hierarchical_bootstrap([np.ones(5)], n_resamples=100)


def test_bootstrap_mean_and_custom_stat_agree_with_their_definition():
    g = _groups([0.0, 1.0], n=30)
    m = V.hierarchical_bootstrap(g, stat=np.mean)
    q = V.hierarchical_bootstrap(g, stat=lambda a: np.quantile(a, 0.5))
    med = V.hierarchical_bootstrap(g)
    assert m.value == pytest.approx(float(np.mean(np.concatenate(g))))
    assert q.value == pytest.approx(med.value) and q.lo == pytest.approx(med.lo, abs=0.05)


@pytest.mark.parametrize("means, claim_side, want", [
    ([0.30, 0.32, 0.28], "below", "holds"),            # ratio well under 1: theory beats first order
    ([2.0, 2.2, 1.9], "below", "does not hold"),        # well over: it loses
    ([0.7, 1.0, 1.4], "below", "inconclusive"),         # networks disagree: the interval straddles 1
    ([2.0, 2.2, 1.9], "above", "holds"),                # the mirror rule
    ([0.30, 0.32, 0.28], "above", "does not hold"),
])
def test_side_verdict_says_each_answer(means, claim_side, want):
    iv = V.hierarchical_bootstrap(_groups(means, sd=0.05))
    assert V.side_verdict(iv, 1.0, claim=claim_side) == want


def test_side_verdict_not_testable_when_the_premise_is_absent():
    iv = V.hierarchical_bootstrap(_groups([0.3, 0.3]))
    assert V.side_verdict(iv, 1.0, testable=False) is V.Verdict.NOT_TESTABLE
    with pytest.raises(ValueError):
        V.side_verdict(iv, 1.0, claim="left")


@given(st.floats(0.05, 5.0), st.floats(0.05, 5.0))
def test_side_verdict_is_symmetric(mean, threshold):
    iv = V.hierarchical_bootstrap(_groups([mean, mean * 1.05], sd=0.02))
    below, above = V.side_verdict(iv, threshold, claim="below"), V.side_verdict(iv, threshold, claim="above")
    swap = {V.Verdict.HOLDS: V.Verdict.DOES_NOT_HOLD, V.Verdict.DOES_NOT_HOLD: V.Verdict.HOLDS,
            V.Verdict.INCONCLUSIVE: V.Verdict.INCONCLUSIVE}
    assert above is swap[below]


def test_per_seed_rows():
    g = _groups([0.3, 2.0, 0.9], sd=0.3)
    rows = V.per_seed(g, 1.0, seeds=[4, 5, 6])
    assert [r["seed"] for r in rows] == [4, 5, 6]
    assert [r["verdict"] for r in rows][:2] == ["holds", "does not hold"]
    assert all(r["n_digits"] == 40 and len(r["ci"]) == 2 for r in rows)
    with pytest.raises(ValueError, match="2 seeds for 3 groups"):
        V.per_seed(g, 1.0, seeds=[1, 2])


@pytest.mark.parametrize("p, want", [((0.001, 0.9), "holds"), ((0.9, 0.001), "does not hold"),
                                     ((0.3, 0.4), "inconclusive"), ((np.nan, np.nan), "not testable")])
def test_pvalue_verdict_says_each_answer(p, want):
    assert V.pvalue_verdict(*p) == want


def test_pvalue_verdict_refuses_an_impossible_pair():
    with pytest.raises(ValueError, match="not a pair"):
        V.pvalue_verdict(0.01, 0.01)


def test_holm_against_a_hand_computation():
    # sorted p 0.01, 0.02, 0.03, 0.2 -> x4, x3, x2, x1 = 0.04, 0.06, 0.06 (running max), 0.2
    reject, adj = V.holm([0.03, 0.01, 0.2, 0.02, np.nan])
    np.testing.assert_allclose(adj[:4], [0.06, 0.04, 0.2, 0.06])
    assert np.isnan(adj[4])
    assert reject.tolist() == [False, True, False, False, False]
    # uncorrected, three of four would pass at 0.05: Holm is what keeps "any one of 12" from deciding
    assert sum(p < 0.05 for p in [0.03, 0.01, 0.2, 0.02]) == 3


@pytest.mark.parametrize("parts, want", [
    (["holds", "holds", "not testable"], "holds"),
    (["does not hold", "does not hold"], "does not hold"),
    (["holds", "does not hold"], "holds partly"),
    (["holds", "inconclusive"], "inconclusive"),
    (["inconclusive", "does not hold"], "inconclusive"),
    (["not testable", "not testable"], "not testable"),
])
def test_combine_says_each_answer(parts, want):
    assert V.combine(parts) == want


def test_claims_carry_the_statistic_as_data():
    assert set(V.Verdict) == set(VERDICTS)
    iv = V.hierarchical_bootstrap(_groups([0.3, 0.35]))
    stat = V.statistic_record("median ratio", iv)
    c = claim("x.y", "t", paper="p", protocol="q", measured="m", rule="r", verdict=V.Verdict.HOLDS,
              statistic=stat, per_seed=V.per_seed(_groups([0.3, 0.35]), 1.0))
    assert c["verdict"] == "holds" and c["statistic"]["ci"] == [iv.lo, iv.hi]
    assert c["per_seed"][0]["verdict"] == "holds"
    with pytest.raises(ValueError, match="measured cause"):
        claim("x.y", "t", paper="p", protocol="q", measured="m", rule="r", verdict="inconclusive", statistic=stat,
              per_seed=[])
    with pytest.raises(ValueError, match="lacks"):
        claim("x.y", "t", paper="p", protocol="q", measured="m", rule="r", verdict="holds", statistic={"name": "a"},
              per_seed=[])


def test_holm_verdicts_each_direction():
    vs = V.holm_verdicts([1e-4, 0.9999, 0.3, np.nan], [0.9999, 1e-4, 0.7, np.nan])
    assert [str(v) for v in vs] == ["holds", "does not hold", "inconclusive", "not testable"]
    # alone significant, not after Holm over a family of 10 tests (20 one-sided p-values)
    assert str(V.holm_verdicts([0.01], [0.99])[0]) == "holds"
    assert {str(v) for v in V.holm_verdicts([0.01] * 10, [0.99] * 10)} == {"inconclusive"}
    with pytest.raises(ValueError):
        V.holm_verdicts([0.1, 0.2], [0.3])


def test_report_writes_the_claims_data_it_is_given():

    iv = V.hierarchical_bootstrap(_groups([1.5, 1.6]))
    c = claim("x.y", "t", paper="p", protocol="q", measured="m", rule="r", verdict="does not hold",
              statistic=V.statistic_record("median ratio", iv), per_seed=V.per_seed(_groups([1.5, 1.6]), 1.0),
              cause="the ratio exceeds 1 on every network")
    lines = _statistic_lines(c)
    assert lines[0].startswith("- statistic: median ratio = ") and "95 % interval" in lines[0]
    assert "(80 digits, 2 seeds)" in lines[0]
    assert re.fullmatch(r"- per seed: seed 0: does not hold \(1\.\d+\); seed 1: does not hold \(1\.\d+\)", lines[1])
    assert lines[2] == "- cause: the ratio exceeds 1 on every network"
    assert _statistic_lines({"verdict": "holds"}) == []


@pytest.mark.parametrize("means, expected", [([0.3, 0.35, 0.32], "holds"), ([2.0, 2.2, 1.9], "does not hold"),
                                             ([0.5, 1.5, 1.0], "inconclusive")])
def test_decide_gives_each_verdict_with_its_fields(means, expected):
    d = V.decide("median error ratio", _groups(means, sd=0.05), 1.0, seeds=[4, 5, 6])
    assert d["verdict"] == expected
    st_ = d["statistic"]
    assert st_["n_seeds"] == 3 and st_["n_digits"] == 120 and st_["threshold"] == 1.0 and st_["side"] == "below"
    assert [r["seed"] for r in d["per_seed"]] == [4, 5, 6]
    assert all(r["verdict"] in VERDICTS for r in d["per_seed"])


def test_decide_not_testable_keeps_the_numbers():
    d = V.decide("x", _groups([0.3, 0.3]), 1.0, testable=False)
    assert d["verdict"] == "not testable" and np.isfinite(d["statistic"]["value"])
    assert {r["verdict"] for r in d["per_seed"]} == {"not testable"}
    assert V.decide("x", [np.array([np.nan])], 1.0)["verdict"] == "not testable"
