"""Figure 4: the Â groups, the controls (leave-one-out cosine, norm-only null), the protocol and
the verdict rules."""

import json

import numpy as np
import pytest

from jaxdyn.analyses import stats
from jaxdyn.analyses.influence_ranks import dominance, dominance_controls, group_curve
from jaxdyn.experiments import fig4, reproduce

from tests.helpers import check_protocol

pytestmark = pytest.mark.timeout(300)

DIM = 50


def _samples(n=60, *, align=1.0, norm_power=1.0, seed=0):
    """Per-sample numbers from real vectors: Δg_W_i = ‖·‖ (align·Â_i·e + random unit) with norms
    ``Â^norm_power``; ``align`` > 0 makes large-Â digits point along the common direction e."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.1, 3.0, n)
    u = rng.standard_normal((n, DIM))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    e = np.zeros(DIM)
    e[0] = 1.0
    v = align * a[:, None] * e + u
    v *= (a**norm_power / np.linalg.norm(v, axis=1))[:, None]
    return dict(A_hat=a, dgw_norm=np.linalg.norm(v, axis=1), success=np.zeros(n, bool),
                cos_to_mean=stats.cos_to_mean(v, leave_one_out=False), cos_loo=stats.cos_to_mean(v),
                cos_unit_loo=stats.cos_to_mean(v, unit=True))


def _entry(q, seed=0, accuracy=0.9):
    return dict(dominance(q), controls=dominance_controls(q, dim=DIM, draws=300, seed=seed), test_accuracy=accuracy,
                beta=1.0, steps=5, n_samples=len(q["A_hat"]), first_layer="Conv_0", seed=seed,
                samples={k: q[k] for k in fig4.SAMPLE_KEYS})


def _full_claims(*samples, accuracy=0.9):
    """One architecture per argument: a per-sample dict (one seed) or a list of them (one per seed)."""
    nets = [q if isinstance(q, list) else [q] for q in samples]
    models = {f"net{i}": [_entry(q, s, accuracy) for s, q in enumerate(qs)] for i, qs in enumerate(nets)}
    c = fig4.claims(dict(dtype="float64", models=models))
    assert [x["id"] for x in c] == ["fig4.dominance", "fig4.paper_protocol"] and all(x["controls"] for x in c)
    assert all(("cause" in x) == (x["verdict"] != "holds") and x["per_seed"] and "ci" in x["statistic"] for x in c)
    return {x["id"].split(".")[1]: x for x in c}


def _claims(*samples, accuracy=0.9):
    return {k: x["verdict"] for k, x in _full_claims(*samples, accuracy=accuracy).items()}


def test_fig4_groups():
    a = np.arange(40.0)
    curve = group_curve(a, 0.01 * a, groups=10)
    assert curve["count"] == [4] * 10 and np.all(np.diff(curve["cos"]) > 0)
    d = dominance({"A_hat": a, "cos_to_mean": 0.01 * a})
    assert d["spearman_groups"]["rho"] == pytest.approx(1.0) and d["spearman_samples"]["p"] < 1e-6
    with pytest.raises(ValueError):
        group_curve(a, a[:5])


def test_fig4_controls_and_claims_hold_when_large_A_aligns():
    q = _samples()
    c = dominance_controls(q, dim=DIM, draws=300)
    assert set(c["null"]) == {"loo", "unit_loo", "paper"} and c["null"]["loo"]["n_draws"] == 300
    assert c["null"]["loo"]["measured"] > c["null"]["loo"]["quantiles"]["0.95"]
    assert _claims(q, _samples(seed=1)) == {"dominance": "holds", "paper_protocol": "holds"}


def test_verdict_can_fail_fig4_when_only_the_norms_rise():
    """Random directions, norms rising with Â: the paper's cosine (x in the mean) rises with Â, the
    leave-one-out one does not exceed the norm-only null: no evidence either way (symmetric rule)."""
    q = _samples(align=0.0, norm_power=3.0, seed=2)
    c = dominance_controls(q, dim=DIM, draws=300)
    assert c["null"]["paper"]["measured"] > 0.3 and c["null"]["paper"]["quantiles"]["0.5"] > 0.3
    assert _claims(q) == {"dominance": "inconclusive", "paper_protocol": "holds"}
    assert _claims(q, accuracy=0.5) == {"dominance": "not testable", "paper_protocol": "not testable"}


def test_verdict_can_fail_fig4_on_falling_cosines():
    q = _samples(align=1.0, norm_power=0.0, seed=3)
    q["A_hat"] = 1.0 / q["A_hat"]  # now the aligned digits have small Â: a significantly negative ρ
    assert _claims(q) == {"dominance": "does not hold", "paper_protocol": "does not hold"}


def test_verdict_can_fail_fig4_flipped_digits_are_not_the_headline():
    """The alignment is carried by digits the attack flipped; the unflipped ones are random."""
    q = _samples(align=0.0, norm_power=0.0, seed=4)
    big = q["A_hat"] > np.median(q["A_hat"])
    q["success"] = big
    q["cos_loo"] = np.where(big, 0.9, q["cos_loo"])
    assert _claims(q)["dominance"] == "inconclusive"  # the unflipped digits carry no trend either way


def test_fig4_protocol():
    check_protocol(fig4, "fig4")
    for bad in (dict(groups=0), dict(null_draws=0)):
        with pytest.raises(ValueError):
            fig4.config("tiny", **bad)


def test_fig4_seeds_pool_and_the_null_median_is_the_threshold():
    """Two seeds: aligned on both, the dominance holds with an interval above the null's median;
    aligned on one seed and falling on the other, the pooled interval straddles (inconclusive)."""
    c = _full_claims([_samples(), _samples(seed=1)])["dominance"]
    t = c["statistic"]["tests"][0]
    assert c["verdict"] == "holds" and t["n_seeds"] == 2 and t["ci"][0] > 0 and c["statistic"]["n_seeds"] == 2
    falling = _samples(align=1.0, norm_power=0.0, seed=3)
    falling["A_hat"] = 1.0 / falling["A_hat"]
    c = _full_claims([_samples(), falling])["dominance"]
    assert [r["verdict"] for r in c["per_seed"]] == ["holds", "does not hold"] and c["verdict"] == "inconclusive"


@pytest.mark.slow
def test_fig3_fig4_tiny_with_two_seeds_end_to_end(tmp_path, data_dir):
    """`reproduce` of Figs. 3-4 at the tiny scale with two seeds: one entry per (network, seed), two
    networks trained (Fig. 4 loads Fig. 3's from the cache: same seeds, one cache key), every claim
    with its statistic over 2 seeds, per-seed rows and a cause unless it holds."""
    res = reproduce.reproduce(scale="tiny", out=tmp_path / "out", seeds=(0, 1), only=["fig3", "fig4"], progress=False)
    assert all(res["stages"][s]["status"] == "ok" for s in ("fig3", "fig4"))
    for stage in ("fig3", "fig4"):
        r = json.loads((tmp_path / "out" / stage / f"{stage}.json").read_text())
        assert [d["seed"] for d in r["models"]["cnn3"]] == [0, 1]
        a, b = (d["samples"]["A_hat"] for d in r["models"]["cnn3"])
        assert a != b  # each seed its own network and digits
    merged = [c for c in json.loads((tmp_path / "out" / "claims.json").read_text()) if c["stage"] in ("fig3", "fig4")]
    assert len(merged) == 5
    for c in merged:
        assert c["statistic"]["n_seeds"] in (0, 2) and [r["seed"] for r in c["per_seed"]] == [0, 1]
        assert ("cause" in c) == (c["verdict"] != "holds") and "Bonferroni" in c["rule"]
