"""Table 1 (``jaxdyn.experiments.table1``): config validation, every verdict rule fed numbers in both
directions (holds / does not hold / inconclusive / not testable), and a tiny end-to-end run with two
seeds (tiny widths, a few digits, models trained into a temporary cache)."""

import json

import numpy as np
import pytest

from jaxdyn.cli import app as cli
from jaxdyn.experiments import runner, table1
from tests.helpers import assert_protocol

pytestmark = pytest.mark.timeout(600)

S = [0.25, 0.5, 0.75, 0.9, 1.0, 1.5]
N = 12
GOOD, BAD, SPREAD = np.full(N, 0.1), np.full(N, 3.0), np.linspace(0.2, 1.8, N)


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
    with pytest.raises(ValueError, match="s_grid must contain 1"):
        table1.config("quick", s_grid=(0.5, 0.9))
    assert table1.config("quick").seeds == (0, 1, 2) and table1.config("full").seeds == (0, 1, 2, 3, 4)


def _l(a):
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, float)]


def _gating(ratio, *, uniform=None, flipped=True, c_best=None, paper=GOOD, t=(0.5, 0.3)):
    """One gating's record: ``ratio(s)`` per-digit ratios; first-order relative error 0.5."""
    keep = np.full(N, flipped)
    by_s = []
    for s in S:
        r = np.where(keep, ratio(s), np.nan)
        u = r if uniform is None else np.where(keep, uniform(s), np.nan)
        cb = r if c_best is None else np.where(keep, c_best(s), np.nan)
        by_s.append(dict(s=s, steps=int(s * 20), rel_hat=_l(0.5 * r), rel_first_order=_l(np.where(keep, 0.5, np.nan)),
                         ratio=_l(r), rel_uniform=_l(0.5 * u), ratio_uniform=_l(u),
                         rel_c=[[0.5 * b, 0.5 * a] if k else None for a, b, k in zip(r, cb, keep)],
                         cos_delta_gx=_l(np.where(keep, 0.999, np.nan)), delta_norm=_l(np.ones(N)),
                         misclassified_at_s=1.0 if s >= 1 else 0.0))
    sat = dict(s_from=1.0, s_to=1.5, delta_growth=_l(np.full(N, 1.5)), hat_growth=_l(np.full(N, 3.0)),
               grad_growth=_l(np.ones(N)))
    prog = dict(beta_max=10.0, budget_alpha=0.01, t_success=_l(np.where(keep, 1.0, np.nan)),
                status=["flipped" if k else "never" for k in keep], n_flipped=int(keep.sum()),
                n_never=int((~keep).sum()), n_misclassified=0, by_s=by_s, saturation=sat, c_grid=[0.5, 1.0])
    pp = dict(kappa=1e-5, kappa_first_order=1e-3, rel_hat=_l(1e-5 * paper / 0.1), rel_first_order=_l(np.full(N, 1e-4)),
              cos_delta_gx=_l(np.ones(N)))
    lo, hi = t  # C.3's ends: t = min(lo_gx − lo_v1, hi_v1 − hi_gx)
    c3 = dict(lo_cos_delta_gx=_l(np.full(N, 0.9)), lo_cos_delta_v1=_l(np.full(N, 0.9 - lo)),
              hi_cos_delta_gx=_l(np.full(N, 0.3)), hi_cos_delta_v1=_l(0.3 + np.broadcast_to(hi, N)),
              hi_keep=[bool(k) for k in keep])
    return prog, pp, c3


def _row(model, seed, frozen, free=None, *, align=0.5):
    f, p, c = frozen
    g, q, d = free or frozen
    return dict(model=model, seed=seed, test_accuracy=0.95, n_samples=N, kappa=1e-5, kappa_first_order=1e-3,
                progress=dict(frozen=f, free=g), paper_protocol=dict(frozen=p, free=q),
                c3=dict(frozen=c, free=d, cos_gx_v1_clean=_l(np.full(N, align))))


def _res(rows):
    return dict(rows=rows, beta=1e-3, steps=20, n_samples=N, dtype="float64", s_grid=S, ablation_s=[0.9, 1.0],
                beta_max=10.0, verdict_factor=2.0, c3_margin=0.01, c3_max_cos=0.9, c3_min_digits=4,
                done=dict(bound=1e-3))


def _claims(rows):
    return {c["id"]: c for c in table1.claims(_res(rows))}


def _nets(*gatings, **kw):
    return [_row(m, s, *gatings, **kw) for m in ("mlp3", "cnn3") for s in (0, 1, 2)]


def test_claims_as_data_and_order():
    c = table1.claims(_res(_nets(_gating(lambda s: GOOD))))
    assert [x["id"] for x in c] == ["table1.progress_frozen", "table1.progress_free", "table1.c3_frozen",
                                    "table1.c3_free", "table1.kappa_small", "table1.beats_first_order"]
    for x in c:
        assert x["statistic"]["n_seeds"] == 3 and [r["seed"] for r in x["per_seed"]] == [0, 1, 2], x["id"]
        assert len(x["statistic"]["ci"]) == 2 and x["rule"]
    st = c[0]["statistic"]
    assert st["n_digits"] == 6 * N and [p["s"] for p in st["regime_map"]] == S and st["s_star"] == "1"
    assert "paper protocol" in c[4]["claim"] and "pooled κ" in c[4]["measured"]
    assert "predicted magnitude only" in c[0]["measured"] and "0.997" not in c[1]["measured"]


def test_progress_holds_does_not_hold_inconclusive_not_testable():
    v = lambda g: _claims(_nets(g))["table1.progress_frozen"]  # noqa: E731
    assert v(_gating(lambda s: GOOD))["verdict"] == "holds"
    bad = v(_gating(lambda s: BAD))
    assert bad["verdict"] == "does not hold" and "leading cause" in bad["cause"] and "3" in bad["cause"]
    assert v(_gating(lambda s: SPREAD))["verdict"] == "inconclusive"
    nt = v(_gating(lambda s: GOOD, flipped=False))
    assert nt["verdict"] == "not testable" and nt["cause"]
    # the regime map: Theorem 2 wins up to s = 0.75, loses from 0.9 on: holds partly, s* = 0.75
    part = v(_gating(lambda s: GOOD if s < 0.8 else BAD))
    assert part["verdict"] == "holds partly" and part["statistic"]["s_star"] == "0.75"
    # past the flip (s = 1.5) is outside the claim: a loss there does not move the verdict
    assert v(_gating(lambda s: GOOD if s <= 1 else BAD))["verdict"] == "holds"
    # ×2 reported beside: ratio 0.7 beats first order but not by ×2
    mid = v(_gating(lambda s: np.full(N, 0.7)))
    assert mid["verdict"] == "holds" and mid["statistic"]["s_star_xF"] == "none"
    assert all(p["verdict_xF"] == "does not hold" for p in mid["statistic"]["regime_map"])


def test_progress_cause_names_the_hbar_weighting_and_the_gating():
    c = _claims(_nets(_gating(lambda s: BAD, uniform=lambda s: GOOD)))["table1.progress_frozen"]
    assert c["verdict"] == "does not hold" and "the H̄_z weighting" in c["cause"]
    c = _claims(_nets(_gating(lambda s: BAD, c_best=lambda s: GOOD)))["table1.progress_frozen"]
    assert "the H̄_z weighting" in c["cause"] and "c per network" in c["cause"] and "0.5" in c["cause"]
    c = _claims(_nets(_gating(lambda s: GOOD), _gating(lambda s: BAD)))
    assert c["table1.progress_frozen"]["verdict"] == "holds" and "cause" not in c["table1.progress_frozen"]
    assert c["table1.progress_free"]["verdict"] == "does not hold"
    assert "gates the attack flips" in c["table1.progress_free"]["cause"]


def test_c3_verdicts():
    c3 = lambda t, **kw: _claims(_nets(_gating(lambda s: GOOD, t=t), **kw))["table1.c3_frozen"]  # noqa: E731
    assert c3((0.5, 0.3))["verdict"] == "holds"
    assert c3((-0.5, 0.3))["verdict"] == "does not hold"
    assert c3((0.5, np.linspace(-0.3, 0.3, N)))["verdict"] == "inconclusive"
    nt = c3((0.5, 0.3), align=0.99)  # g_x already aligned with v₁ at every clean digit
    assert nt["verdict"] == "not testable" and "cannot be observed" in nt["cause"]


def test_paper_protocol_verdicts():
    pc = lambda p: _claims(_nets(_gating(lambda s: GOOD, paper=p)))  # noqa: E731
    ok = pc(np.full(N, 0.1))
    assert ok["table1.kappa_small"]["verdict"] == "holds" and ok["table1.beats_first_order"]["verdict"] == "holds"
    bad = pc(np.full(N, 100.0))  # relative error 1e-2 > 1.7e-4, ratio 100 > 1
    assert bad["table1.kappa_small"]["verdict"] == "does not hold"
    assert bad["table1.beats_first_order"]["verdict"] == "does not hold" and bad["table1.kappa_small"]["cause"]
    mid = pc(np.linspace(0.2, 1.8, N))  # ratio straddles 1
    assert mid["table1.beats_first_order"]["verdict"] == "inconclusive"
    nt = pc(np.full(N, np.nan))
    assert nt["table1.kappa_small"]["verdict"] == "not testable"


def test_table1_command_tiny_two_seeds(tiny_env):
    out = tiny_env / "t1"
    assert cli.main(["table1", "--scale", "tiny", "--models", "mlp3", "--seeds", "0,1", "--out", str(out),
                     "--no-progress"]) == 0
    res = json.loads((out / "table1.json").read_text())
    assert [(r["model"], r["seed"]) for r in res["rows"]] == [("mlp3", 0), ("mlp3", 1)]
    for row in res["rows"]:
        assert row["dtype"] == "float64" and row["n_samples"] == table1.SCALES["tiny"]["n_samples"]
        for g in ("frozen", "free"):
            p = row["progress"][g]
            assert [q["s"] for q in p["by_s"]] == list(table1.SCALES["tiny"]["s_grid"])
            assert p["n_flipped"] + p["n_never"] + p["n_misclassified"] == row["n_samples"]
            t = [v for v in p["t_success"] if v is not None]
            assert len(t) == p["n_flipped"] and all(0 < v <= p["beta_max"] for v in t)
            q1 = p["by_s"][list(table1.SCALES["tiny"]["s_grid"]).index(1.0)]
            if p["n_flipped"]:  # at s = 1 the attack has just flipped (most of) its digits
                assert q1["misclassified_at_s"] >= 0.5
            assert 0 < row["paper_protocol"][g]["kappa"] < row["paper_protocol"][g]["kappa_first_order"]
        assert 0 < row["kappa"] < 1e-3
        assert all(0 <= a <= 1 + 1e-12 for a in row["c3"]["cos_gx_v1_clean"])
    assert (out / "table1_progress.png").stat().st_size > 1000
    assert "Regime map" in (out / "table1.md").read_text()
    claims = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in claims][:2] == ["table1.progress_frozen", "table1.progress_free"]
    assert all(c["statistic"]["n_seeds"] in (0, 2) for c in claims)
    assert res["verdict"] == {c["id"]: c["verdict"] for c in claims} and res["experiment"] == "table1"


def test_results_of_an_earlier_version_are_refused_not_judged():
    rows = [dict(model="a", kappa=1e-5, kappa_first_order=1e-3), dict(model="b", kappa=2e-3, kappa_first_order=1e-3)]
    old = dict(rows=rows, beta=1e-3, steps=10, n_samples=4, dtype="float64", done=dict(bound=1e-3))
    with pytest.raises(ValueError, match="earlier version"):
        table1.claims(old)
    (c,) = runner.safe_claims(table1, old)
    assert c["verdict"] == "does not hold" and "earlier version" in c["cause"]
