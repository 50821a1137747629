"""Appendix D/J and Figure 1 (``jaxdyn.experiments.appendix``): the protocol, Figure 1 drawn from
the results alone, the claims' verdict rules, and a smoke test of the command at the tiny scale."""

import json

import numpy as np
import pytest

from jaxdyn import cli
from jaxdyn.experiments import appendix
from tests.helpers import assert_protocol

pytestmark = pytest.mark.timeout(600)


def test_protocol():
    assert_protocol(appendix, "appendix", "Appendix D/J and Figure 1")
    assert set(appendix.config("quick").variants) == {v[0] for v in appendix.PGD_VARIANTS}
    with pytest.raises(ValueError, match="Appendix-D attack"):
        appendix.config("quick", variants=("l3 eps=1",))
    with pytest.raises(ValueError, match="unknown appendix model"):
        appendix.config("quick", models=("vgg11",))


def test_plot_fig1_reads_only_the_results(tmp_path):
    rng = np.random.default_rng(0)
    k = 2
    arr = lambda: rng.normal(size=(k, 28, 28, 1)).tolist()  # noqa: E731
    fig1 = {key: dict(attack=key, delta=arr(), target=arr(), delta_hat=arr())
            for key in ("raw", *appendix.FIG1_VARIANTS)}
    fig1.update(x=rng.uniform(size=(k, 28, 28, 1)).tolist(), y=[1, 2])
    res = json.loads(json.dumps(dict(dtype="float64", rows=[dict(model="mlp3", fig1=fig1)])))
    appendix.plot_fig1(res, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="no Figure 1"):
        appendix.plot_fig1(dict(dtype="float64", rows=[]), tmp_path / "g.png")


def _results(cos, eig, flips):
    return dict(rows=[dict(model="mlp3", test_accuracy=0.97)], n_samples=4, pgd_steps=5, raw_steps=20,
                dtype="float64", summary=dict(one_minus_cos_range=cos, one_minus_cos_first_order_range={},
                                              eig_rel_change_range_raw=eig, flip_fraction_range_raw=flips))


def test_claims_verdicts_and_can_fail():
    good = _results({"l2 eps=0.1 (frozen)": [1e-6, 5e-5], "l2 eps=0.1 (free)": [1e-3, 1e-2],
                     "linf eps=0.01 (frozen)": [1e-6, 2e-5]}, {"0.001": [1e-4, 5e-3]}, {"0.001": [0.0, 1e-3]})
    claims = appendix.claims(good)
    assert [c["id"] for c in claims] == ["appendix.d_l2", "appendix.d_linf", "appendix.j_eigenvalue",
                                         "appendix.j_gates"]
    assert [c["verdict"] for c in claims] == ["holds"] * 4
    assert "free" in claims[0]["controls"]
    # 1 − cos far above the paper's range, λ₁ and the gates changed a lot
    bad = _results({"l2 eps=1 (frozen)": [0.1, 0.5], "linf eps=0.1 (frozen)": [0.2, 0.6]},
                   {"0.001": [0.1, 0.5]}, {"0.001": [0.2, 0.4]})
    assert [c["verdict"] for c in appendix.claims(bad)] == ["does not hold"] * 4


def test_appendix_command_tiny(tiny_env):
    out = tiny_env / "app"
    figs = tiny_env / "figs"
    assert cli.main(["appendix", "--scale", "tiny", "--models", "mlp3", "--out", str(out), "--no-progress",
                     "--figures-dir", str(figs)]) == 0
    res = json.loads((out / "appendix.json").read_text())
    (row,) = res["rows"]
    labels = {a["attack"] for a in row["appendix_d"]}
    assert labels == set(appendix.SCALES["tiny"]["variants"])
    for a in row["appendix_d"]:
        for gating in ("frozen", "free"):
            assert 0 <= a[gating]["one_minus_cos"] < 1 and 0 <= a[gating]["flip_fraction"] <= 1
    assert (figs / "fig1_perturbations.png").exists() and (out / "fig1_perturbations.png").exists()
    assert (out / "appendix.md").exists() and json.loads((out / "config.json").read_text())["scale"] == "tiny"
    claims = json.loads((out / "claims.json").read_text())
    assert {c["id"] for c in claims} >= {"appendix.d_l2", "appendix.d_linf", "appendix.j_eigenvalue"}
