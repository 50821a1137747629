"""Figure 4: the Â groups, the protocol and the verdict rule."""

import numpy as np
import pytest

from jaxdyn.experiments import fig4

from tests.helpers import check_protocol

pytestmark = pytest.mark.timeout(300)


def _verdict(per_model):
    res = dict(dtype="float64", models={m: dict(d, test_accuracy=0.9, beta=1.0, steps=5, n_samples=40,
                                                first_layer="Conv_0") for m, d in per_model.items()})
    return fig4.claims(res)[0]["verdict"]


def test_fig4_groups_and_verdict_rules():
    a = np.arange(40.0)
    curve = fig4.group_curve(a, 0.01 * a, groups=10)
    assert curve["count"] == [4] * 10 and np.all(np.diff(curve["cos"]) > 0)
    d = fig4.dominance({"A_hat": a, "cos_to_mean": 0.01 * a})
    assert d["spearman_groups"]["rho"] == pytest.approx(1.0) and d["spearman_samples"]["p"] < 1e-6
    assert _verdict({"m": d}) == "holds"
    flat = fig4.dominance({"A_hat": a, "cos_to_mean": -0.01 * a})
    assert _verdict({"m": flat}) == "does not hold"
    assert _verdict({"m": d, "n": flat}) == "holds partly"
    with pytest.raises(ValueError):
        fig4.group_curve(a, a[:5])


def test_fig4_protocol():
    check_protocol(fig4, "fig4")
    with pytest.raises(ValueError):
        fig4.config("tiny", groups=0)


def test_fig4_claims_do_not_hold_on_falling_cosines():
    """A fake result (no run): the cosine falls with Â on the only network."""
    a = np.linspace(0.1, 5.0, 30)
    c = fig4.claims(dict(dtype="float64", models={"cnn3": dict(
        fig4.dominance({"A_hat": a, "cos_to_mean": 1.0 / a}), test_accuracy=0.9, beta=1.0, steps=5, n_samples=30,
        first_layer="Conv_0")}))
    assert [x["id"] for x in c] == ["fig4.dominance"] and c[0]["verdict"] == "does not hold"
