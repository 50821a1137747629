"""Table 2 (``jaxdyn.experiments.table2``): the protocol, config validation, the claims' verdict
rules, and a smoke test of the command at the tiny scale."""

import json

import numpy as np
import pytest

from jaxdyn.experiments import runner, table2
from tests.helpers import assert_protocol

pytestmark = pytest.mark.timeout(600)


def test_protocol():
    assert_protocol(table2, "table2", "Table 2 — κ′ (Theorem 3)")
    assert table2.config("tiny").adv == "none" and table2.config("quick").adv == "pgd-linf"


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown Table 2 model"):
        table2.config("quick", models=("alexnet",))
    with pytest.raises(ValueError, match="adv"):
        table2.config("quick", adv="fgsm")
    with pytest.raises(ValueError, match="eta"):
        table2.config("quick", eta=0.0)


def _results(rows):
    return dict(rows=rows, beta=1e-3, steps=10, n_samples=4, dtype="float64", done=dict(bound=1e-3))


def test_claims_verdicts_and_can_fail():
    ok = [dict(model="mlp3", kappa_prime=1e-6, kappa_prime_first_order=1e-3, test_accuracy=0.99)]
    claims = table2.claims(_results(ok))
    assert [c["id"] for c in claims] == ["table2.kappa_prime_small", "table2.beats_first_order"]
    assert [c["verdict"] for c in claims] == ["holds", "holds"]
    # κ′ far above the paper's range and above the first-order baseline
    bad = [dict(model=m, kappa_prime=0.5, kappa_prime_first_order=0.2, test_accuracy=0.9) for m in ("mlp3", "cnn3")]
    assert [c["verdict"] for c in table2.claims(_results(bad))] == ["does not hold", "does not hold"]


def _finite(v):
    return v is None or (isinstance(v, float) and np.isfinite(v)) or isinstance(v, (int, str, bool, list, dict))


def test_table2_command_tiny(tiny_env):
    out = tiny_env / "t2"
    rec = runner.execute(table2, table2.config("tiny", models=("cnn3",)), out, progress=False)
    res = json.loads((out / "table2.json").read_text())
    (row,) = res["rows"]
    for k in ("model", "beta", "steps", "n_samples", "dtype", "test_accuracy", "kappa_prime",
              "kappa_prime_first_order", "kappa_prime_eq10", "kappa_prime_eq11", "kappa_prime_free",
              "kappa_prime_attack", "kappa_prime_vs_beta"):
        assert k in row and _finite(row[k]), k
    assert row["first_layer_kind"] == "conv" and row["first_layer"] == "Conv_0"
    assert row["logit_space_agreement"] < 1e-10
    assert 0 < row["kappa_prime"] < 1
    assert "κ′ (Eq. 9)" in (out / "table2.md").read_text()
    assert json.loads((out / "config.json").read_text())["models"] == ["cnn3"]
    claims = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in claims] == [c["id"] for c in rec["claims"]] == ["table2.kappa_prime_small",
                                                                            "table2.beats_first_order"]
