"""Table 1 (``jaxdyn.experiments.table1``): the protocol, config validation, the claims' verdict
rules, and a smoke test of the command at the tiny scale (tiny widths, a few digits, models
trained into a temporary cache)."""

import json

import numpy as np
import pytest

from jaxdyn import cli
from jaxdyn.experiments import table1
from tests.helpers import assert_protocol

pytestmark = pytest.mark.timeout(600)


def test_protocol():
    assert_protocol(table1, "table1", "Table 1 — κ (Theorem 2)")


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale"):
        table1.config("huge")
    with pytest.raises(ValueError, match="unknown Table 1 model"):
        table1.config("quick", models=("vgg11",))
    with pytest.raises(ValueError, match="beta"):
        table1.config("quick", beta=-1.0)
    with pytest.raises(ValueError, match="steps"):
        table1.config("quick", steps=0)


def _results(rows):
    return dict(rows=rows, beta=1e-3, steps=10, n_samples=4, dtype="float64", done=dict(bound=1e-3))


def test_claims_verdicts():
    rows = [dict(model="a", kappa=1e-5, kappa_first_order=1e-3), dict(model="b", kappa=2e-3, kappa_first_order=1e-3)]
    claims = table1.claims(_results(rows))
    assert [c["id"] for c in claims] == ["table1.kappa_small", "table1.beats_first_order"]
    assert [c["verdict"] for c in claims] == ["holds partly", "holds partly"]
    good = [dict(model="a", kappa=1e-5, kappa_first_order=1e-3, test_accuracy=0.9)]
    assert [c["verdict"] for c in table1.claims(_results(good))] == ["holds", "holds"]


def test_claims_can_fail():
    # κ far above the paper's range and above the first-order baseline on every network
    rows = [dict(model=m, kappa=0.3, kappa_first_order=0.1, test_accuracy=0.95) for m in ("mlp3", "cnn3")]
    claims = table1.claims(_results(rows))
    assert [c["verdict"] for c in claims] == ["does not hold", "does not hold"]
    assert "mlp3" in claims[0]["protocol"] and "β = 1.0e-03" in claims[0]["protocol"]
    assert "first-order κ" in claims[0]["baselines"] and "0.1" in claims[0]["baselines"]


def _finite(v):
    return v is None or (isinstance(v, float) and np.isfinite(v)) or isinstance(v, (int, str, bool, list, dict))


def test_table1_command_tiny(tiny_env):
    out = tiny_env / "t1"
    assert cli.main(["table1", "--scale", "tiny", "--models", "mlp3", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "table1.json").read_text())
    (row,) = res["rows"]
    for k in ("model", "beta", "steps", "n_samples", "dtype", "test_accuracy", "kappa", "kappa_theorem1",
              "kappa_first_order", "kappa_free", "kappa_vs_beta", "kappa_vs_m", "paper_kappa"):
        assert k in row and _finite(row[k]), k
    assert row["dtype"] == "float64" and row["n_samples"] == table1.SCALES["tiny"]["n_samples"]
    assert 0 < row["kappa"] < 1 and 0 < row["kappa_first_order"]
    # the logit-space attack used by the grids is the network's A2 attack up to rounding
    assert row["logit_space_agreement"] < 1e-10
    # the headline column is one of the grid's β and agrees with it (two different A2 attacks)
    g = next(g for g in row["kappa_vs_beta"] if g["beta"] == row["beta"])
    np.testing.assert_allclose(g["kappa"], row["kappa"], rtol=1e-6)
    assert [c["steps"] for c in row["kappa_vs_m"]] == list(table1.SCALES["tiny"]["m_grid"])
    assert "| 3-layer MLP |" in (out / "table1.md").read_text()
    assert json.loads((out / "config.json").read_text())["scale"] == "tiny"
    claims = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in claims] == ["table1.kappa_small", "table1.beats_first_order"]
    assert res["verdict"] == {c["id"]: c["verdict"] for c in claims} and res["experiment"] == "table1"
