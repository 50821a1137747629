"""Appendix D/J and Figure 1 (``jaxdyn.experiments.appendix``): the protocol, Figure 1 drawn from
the results alone, the claims' verdict rules, and a smoke test of the command at the tiny scale."""

import json

import numpy as np
import pytest

from jaxdyn.analyses import variant_matching
from jaxdyn.cli import app as cli
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


def _eps(norm, eps, gating, c, base, flips=0.5):
    return dict(norm=norm, eps=eps, gating=gating, steps=5, one_minus_cos=c, one_minus_cos_first_order=base,
                flip_fraction=0.1, label_flips=flips)


def _j(beta, eig, gates, flips):
    return dict(beta=beta, steps=20, flip_fraction=gates, eig_rel_change=eig, eig_rel_change_max=eig,
                mean_delta_norm=1.0, label_flips=flips)


def _results(cos, eps_rows, j_rows):
    return dict(rows=[dict(model="mlp3", test_accuracy=0.97, appendix_d_eps=eps_rows, appendix_j_raw=j_rows)],
                n_samples=4, pgd_steps=5, raw_steps=20, dtype="float64",
                summary=dict(one_minus_cos_range=cos, one_minus_cos_first_order_range={}))


IDS = ["appendix.d_l2", "appendix.d_linf", "appendix.d_l2_beats_gx_frozen", "appendix.d_l2_beats_gx_free",
       "appendix.d_linf_beats_gx_frozen", "appendix.d_linf_beats_gx_free", "appendix.j_eigenvalue", "appendix.j_gates"]
GOOD_COS = {"l2 eps=0.1": {"frozen": [1e-6, 5e-5], "free": [1e-3, 1e-2]}, "linf eps=0.01": {"frozen": [1e-6, 2e-5]}}
GOOD_EPS = [_eps(n, e, g, 1e-4, 1e-2) for n in ("l2", "linf") for g in ("frozen", "free") for e in (0.01, 0.3)]


def test_claims_verdicts():
    # the J verdict is at β = 1 (the first β flipping half the digits), not at β = 10
    j = [_j(1e-3, 1e-4, 0.0, 0.0), _j(1.0, 5e-3, 0.01, 0.6), _j(10.0, 0.5, 0.4, 1.0)]
    claims = appendix.claims(_results(GOOD_COS, GOOD_EPS, j))
    assert [c["id"] for c in claims] == IDS
    assert [c["verdict"] for c in claims] == ["holds"] * 8
    assert "free" in claims[0]["controls"] and "β=10: does not hold" in claims[-2]["measured"]


def test_verdict_can_fail_paper_protocol():
    bad = {"l2 eps=1": {"frozen": [0.1, 0.5]}, "linf eps=0.1": {"frozen": [0.2, 0.6]}}
    assert [c["verdict"] for c in appendix.claims(_results(bad, [], []))] == ["does not hold"] * 2


def test_verdict_can_fail_against_the_gx_baseline():
    # matching error small but no better than g_x alone (not below baseline / 2)
    eps = [_eps(n, e, g, 6e-3, 1e-2) for n in ("l2", "linf") for g in ("frozen", "free") for e in (0.01, 0.3)]
    claims = appendix.claims(_results(GOOD_COS, eps, []))
    assert [c["verdict"] for c in claims[2:]] == ["does not hold"] * 4
    # baselines at float resolution are not evidence either way: nothing counted, does not hold
    eps = [_eps(n, 0.01, g, 1e-14, 1e-12) for n in ("l2", "linf") for g in ("frozen", "free")]
    assert [c["verdict"] for c in appendix.claims(_results(GOOD_COS, eps, []))[2:]] == ["does not hold"] * 4


def test_verdict_can_fail_appendix_j():
    # small at the paper's β, large where the attack flips half the digits
    j = [_j(1e-3, 1e-4, 0.0, 0.0), _j(3.0, 0.3, 0.2, 0.5)]
    claims = appendix.claims(_results(GOOD_COS, GOOD_EPS, j))
    assert [c["verdict"] for c in claims[-2:]] == ["does not hold"] * 2
    # no β of the grid flips half the digits: the largest β decides
    j = [_j(1e-3, 1e-4, 0.0, 0.0), _j(1e-1, 0.2, 0.3, 0.1)]
    assert [c["verdict"] for c in appendix.claims(_results(GOOD_COS, GOOD_EPS, j))[-2:]] == ["does not hold"] * 2


def test_attack_row_and_flip_rate():
    matching = variant_matching
    rows = [dict(beta=b, label_flips=f) for b, f in ((0.1, 0.0), (3.0, 0.7), (1.0, 0.5), (10.0, 1.0))]
    assert matching.attack_row(rows)["beta"] == 1.0
    assert matching.attack_row(rows[:1])["beta"] == 0.1
    # 0: misclassified at the start (not counted), -1: never flipped, > 0: flipped
    assert matching.flip_rate([0, -1, 3, 5]) == pytest.approx(2 / 3)
    assert np.isnan(matching.flip_rate([0, 0]))


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
    assert {c["id"] for c in claims} >= set(IDS) - {"appendix.d_linf_beats_gx_frozen", "appendix.d_linf_beats_gx_free"}
    eps = row["appendix_d_eps"]
    assert {(e["norm"], e["eps"], e["gating"]) for e in eps} >= {("l2", 0.01, "frozen"), ("l2", 2.0, "free")}
    for e in eps:
        assert 0 <= e["one_minus_cos"] < 1 and 0 <= e["one_minus_cos_first_order"] < 1
    assert all(0 <= j["label_flips"] <= 1 for j in row["appendix_j_raw"])


def test_summarize_matching_per_attack_and_gating():
    def row(c):
        return dict(appendix_d=[dict(attack="l2 eps=1", frozen=dict(one_minus_cos=c, one_minus_cos_first_order=2 * c),
                                     free=dict(one_minus_cos=c / 2))])

    s = variant_matching.summarize_matching([row(1e-3), row(float("nan")), row(1e-5)])
    assert s["one_minus_cos_range"] == {"l2 eps=1": {"frozen": [1e-5, 1e-3], "free": [0.5e-5, 0.5e-3]}}
    assert s["one_minus_cos_first_order_range"] == {"l2 eps=1": [2e-5, 2e-3]}
    assert variant_matching.summarize_matching([]) == dict(one_minus_cos_range={}, one_minus_cos_first_order_range={})


def test_claim_texts_name_attack_and_gating():
    j = [_j(1e-3, 1e-4, 0.0, 0.0), _j(1.0, 5e-3, 0.01, 0.6)]
    d_l2, d_linf = appendix.claims(_results(GOOD_COS, GOOD_EPS, j))[:2]
    assert d_l2["measured"] == "range over networks of the mean: l2 eps=0.1 (frozen): 1.0e-06 … 5.0e-05"
    assert d_l2["controls"] == "free gating, clipping, Madry's α: l2 eps=0.1 (free): 1.0e-03 … 0.01"
    assert d_linf["controls"] == "" and "linf eps=0.01 (frozen)" in d_linf["measured"]
