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


N_DIG = 8


def _dig(cos, base, succ=-1, gates=0.0, eig=1e-4):
    n = len(cos)
    full = lambda v: list(v) if np.ndim(v) else [v] * n  # noqa: E731
    return dict(one_minus_cos=list(cos), one_minus_cos_first_order=list(base), flip_fraction=full(gates),
                eig_rel_change=full(eig), success_step=full(succ))


def _lognormal(rng, center, spread=0.2, n=N_DIG):
    return center * np.exp(rng.normal(0.0, spread, n))


def _net(seed, *, ratio=0.1, paper=1e-6, eig=1e-4, gates=0.01, succ=-1, acc=0.97, eps=(0.01, 0.3), spread=0.2,
         ratio_hi=None):
    """One synthetic network: per-digit Appendix D errors (ratio to g_x ``ratio``; ``ratio_hi`` at the
    largest ε), Appendix J values at the attack β (β = 1 flips half), all with seeded noise."""
    rng = np.random.default_rng(seed)
    base = _lognormal(rng, 1e-2)
    d_rows = [dict(attack=lbl, **{g: dict(one_minus_cos=paper, digits=_dig(_lognormal(rng, paper, spread), base))
                                  for g in ("frozen", "free")}) for lbl in ("l2 eps=0.1", "l2 eps=1", "linf eps=0.01")]
    eps_rows = [dict(norm=n, eps=e, gating=g, digits=_dig(
        base * _lognormal(rng, ratio_hi if ratio_hi is not None and e == max(eps) else ratio, spread), base, succ))
        for n in ("l2", "linf") for g in ("frozen", "free") for e in eps]
    j_rows = [dict(beta=1e-3, label_flips=0.0, digits=_dig(base, base, gates=0.0, eig=1e-6)),
              dict(beta=1.0, label_flips=0.6, digits=_dig(base, base, gates=_lognormal(rng, gates, spread),
                                                          eig=_lognormal(rng, eig, spread))),
              dict(beta=10.0, label_flips=1.0, digits=_dig(base, base, gates=0.5, eig=0.5))]
    return dict(model="mlp3", seed=seed, test_accuracy=acc, appendix_d=d_rows, appendix_d_eps=eps_rows,
                appendix_j_raw=j_rows)


def _results(seeds=(0, 1, 2), **kw):
    return dict(rows=[_net(s, **kw) for s in seeds], n_samples=N_DIG, pgd_steps=5, raw_steps=20, dtype="float64",
                summary=dict(one_minus_cos_range={}, one_minus_cos_first_order_range={}))


def _verdicts(**kw):
    return {c["id"]: c["verdict"] for c in appendix.claims(_results(**kw))}


IDS = ["appendix.d_l2", "appendix.d_linf", "appendix.d_l2_beats_gx_frozen", "appendix.d_l2_beats_gx_free",
       "appendix.d_linf_beats_gx_frozen", "appendix.d_linf_beats_gx_free", "appendix.j_eigenvalue", "appendix.j_gates"]
D_GX = IDS[2:6]


def test_claims_hold_and_carry_their_statistics():
    claims = appendix.claims(_results())
    assert [c["id"] for c in claims] == IDS
    assert [c["verdict"] for c in claims] == ["holds"] * 8
    for c in claims:
        st = c["statistic"]
        assert st["n_seeds"] == 3 and st["n_digits"] > 0 and st["ci"][0] <= st["value"] <= st["ci"][1]
        assert [r["seed"] for r in c["per_seed"]] == [0, 1, 2] and "cause" not in c and c["rule"]
    gx = claims[2]
    assert gx["statistic"]["regime"]["upto"] == 0.3 and gx["statistic"]["regime"]["n_networks"] == 3
    assert "up to ε = 0.3 on 3 of 3 networks" in gx["measured"]
    assert gx["statistic"]["beside"]["verdict"] == "holds"  # ratio 0.1 also beats g_x by ×2
    # the attack β (1.0: the first to flip half the digits) decides J, not β = 10
    assert claims[-1]["statistic"]["value"] == pytest.approx(0.01, rel=0.3)


def test_claims_do_not_hold_with_a_cause():
    v = _verdicts(ratio=3.0, paper=1e-2, eig=0.3, gates=0.3)
    assert set(v.values()) == {"does not hold"}
    c = {c["id"]: c for c in appendix.claims(_results(ratio=3.0, paper=1e-2, eig=0.3, gates=0.3))}
    assert "against g_x's" in c["appendix.d_l2_beats_gx_frozen"]["cause"]
    assert "flipped ReLU gates" in c["appendix.d_l2_beats_gx_free"]["cause"]
    assert "against the paper's" in c["appendix.d_l2"]["cause"] and "bound 0.01" in c["appendix.j_eigenvalue"]["cause"]
    assert c["appendix.d_l2_beats_gx_frozen"]["statistic"]["regime"]["upto"] is None


def test_claims_inconclusive_when_the_interval_straddles():
    # per-digit values spread an order of magnitude either side of each threshold
    v = _verdicts(ratio=1.0, paper=1e-4, eig=1e-2, gates=0.05, spread=2.0)
    assert set(v.values()) == {"inconclusive"}


def test_claims_not_testable():
    # every network below the accuracy floor: the premise (a trained network) is absent
    claims = appendix.claims(_results(acc=0.3))
    assert {c["verdict"] for c in claims} == {"not testable"}
    assert all(r["verdict"] == "not testable" and "below the floor" in r["why"] for r in claims[0]["per_seed"])
    # every digit flipped by the attack: no digit in the theory's regime, the flipped ones reported apart
    c = {c["id"]: c for c in appendix.claims(_results(succ=3))}
    assert [c[i]["verdict"] for i in D_GX] == ["not testable"] * 4
    assert "the attack flipped the rest" in c[D_GX[0]]["cause"] and "16 digits" not in c[D_GX[0]]["controls"]
    assert f"{3 * N_DIG} digits" in c[D_GX[0]]["controls"]
    # one unflipped digit per network (3 in all): a bootstrap interval of 1-3 points is no evidence
    c = {c["id"]: c for c in appendix.claims(_results(succ=[-1] + [3] * (N_DIG - 1)))}
    assert [c[i]["verdict"] for i in D_GX] == ["not testable"] * 4
    assert {r["verdict"] for r in c[D_GX[0]]["per_seed"]} == {"not testable"}


def test_beats_gx_holds_partly_with_its_regime():
    claims = appendix.claims(_results(ratio=0.1, ratio_hi=5.0))
    gx = [c for c in claims if c["id"] in D_GX]
    assert {c["verdict"] for c in gx} == {"holds partly"}
    reg = gx[0]["statistic"]["regime"]
    assert reg["upto"] == 0.01 and reg["factor"] == pytest.approx(10, rel=0.3)
    assert "ε=0.3: does not hold" in gx[0]["cause"] and "ε=0.01" not in gx[0]["cause"]


def test_one_collapsed_network_is_not_testable_not_a_failure():
    res = _results()
    res["rows"][1]["test_accuracy"] = 0.2
    claims = appendix.claims(res)
    assert [c["verdict"] for c in claims] == ["holds"] * 8
    assert [r["verdict"] for r in claims[2]["per_seed"]] == ["holds", "holds", "not testable"]
    assert claims[2]["statistic"]["n_seeds"] == 2


def test_digit_ratio_and_split():
    d = _dig([1e-3, 1e-3, 1e-14, 2e-3], [1e-2, 1e-3, 1e-12, 1e-2], succ=[-1, 4, -1, 0])
    r = variant_matching.digit_ratio(d, floor=appendix.BASELINE_FLOOR)
    assert r[:2] == pytest.approx([0.1, 1.0]) and np.isnan(r[2])
    s = variant_matching.digit_split(d, r)
    assert s["unflipped"][0] == pytest.approx(0.1) and np.isnan(s["unflipped"][1])
    assert s["flipped"] == pytest.approx([1.0]) and s["n_misclassified"] == 1


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
    # two seeds (two independently trained networks): the statistics resample both
    assert cli.main(["appendix", "--scale", "tiny", "--models", "mlp3", "--seeds", "0,1", "--out", str(out),
                     "--no-progress", "--figures-dir", str(figs)]) == 0
    res = json.loads((out / "appendix.json").read_text())
    row, row1 = res["rows"]
    assert (row["seed"], row1["seed"]) == (0, 1) and "fig1" in row and "fig1" not in row1
    assert set(row["cpu_s"]) >= {"train_or_load", "appendix_d", "appendix_d_eps", "appendix_j", "fig1"}
    labels = {a["attack"] for a in row["appendix_d"]}
    assert labels == set(appendix.SCALES["tiny"]["variants"])
    for a in row["appendix_d"]:
        for gating in ("frozen", "free"):
            assert 0 <= a[gating]["one_minus_cos"] < 1 and 0 <= a[gating]["flip_fraction"] <= 1
            assert len(a[gating]["digits"]["one_minus_cos"]) == res["n_samples"]
    assert (figs / "fig1_perturbations.png").exists() and (out / "fig1_perturbations.png").exists()
    assert (out / "appendix.md").exists() and json.loads((out / "config.json").read_text())["scale"] == "tiny"
    claims = json.loads((out / "claims.json").read_text())
    assert {c["id"] for c in claims} == set(IDS)
    for c in claims:
        assert c["statistic"]["n_seeds"] in (0, 2) and len(c["per_seed"]) == 2, c["id"]
        assert c["verdict"] == "holds" or c["cause"], c["id"]
    assert "## Verdicts" in (out / "appendix.md").read_text()
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
