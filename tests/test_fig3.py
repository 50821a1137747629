"""Figure 3: the per-sample quantities on a small random-init binary network (float64), the
protocol and the verdict rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.core import influence
from jaxdyn.analyses import influence_measure, real_attack
from jaxdyn.analyses import stats
from jaxdyn.analyses.influence_ranks import (digit_resamples, group_curve, influence_controls, influence_correlations,
                                             pooled_over_seeds, rho_rows)
from jaxdyn.analyses.metrics import spearman
from jaxdyn.experiments import fig3
from jaxdyn.core.models import logits_fn

from tests.helpers import check_protocol, digits, zoo_net

pytestmark = pytest.mark.timeout(300)


# exact float64 identities
EXACT = 1e-10


def test_fig3_quantities_consistent_and_A_hat_equals_A_under_frozen_gating():
    """Under A2, ``z`` is affine in ``x`` so ``g̃`` is constant along the attack and
    ``Â = Σ_{t=1}^m α H̄_z ||g̃||² = β H̄_z ||g̃_x||² = A`` exactly; ``||Δg_W||`` computed here equals
    :func:`jaxdyn.core.influence.measure`'s (see ``test_influence.py``)."""
    model, v = zoo_net("cnn3", num_classes=1, width=1 / 16)
    x = digits(4, seed=1)
    z = jax.vmap(logits_fn(model, v))(x)[:, 0]
    y = jnp.where(z > 0, 1.0, -1.0)
    assert "/".join(influence.first_layer_path(model, v)) == "Conv_0"
    z_of, W, _ = influence.first_layer_fn(model, v)
    for gating in ("frozen", "free"):
        q = jax.vmap(lambda xi, yi: real_attack.attack_influence(z_of, W, xi, yi, beta=0.5, steps=5, eta=1e-2,
                                                               gating=gating))(x, y)
        q = {k: np.asarray(a) for k, a in q.items()}
        if gating == "frozen":
            np.testing.assert_allclose(q["A_hat"], q["A"], rtol=1e-9)
        assert np.all(q["A_hat"] > 0) and np.all(q["dgw_norm"] > 0)
        np.testing.assert_allclose(q["hbar_z_gx2"], q["hbar_z"] * q["gx2"], rtol=EXACT)
    # the experiments' batched form (free gating, β from A0, chunked): the same numbers per sample
    layer, [(a0, beta, qb)] = influence_measure.binary_influence(model, v, x, y, A0=1.0, steps=5, eta=1e-2, chunk=3)
    assert layer == "Conv_0" and a0 == 1.0 and beta > 0
    one = real_attack.attack_influence(z_of, W, x[3], y[3], beta=beta, steps=5, eta=1e-2)
    np.testing.assert_allclose(qb["A_hat"][3], float(one["A_hat"]), rtol=1e-10)
    assert np.all(np.abs(qb["cos_to_mean"]) <= 1 + 1e-12)
    corr = influence_correlations(qb)
    assert set(corr) == {f"{a}|{b}" for a in fig3.X_KEYS for b in fig3.Y_KEYS}
    # the baselines (vanilla ||g_W||, first-order surrogate at δ = β g_x) and the leave-one-out cosines
    assert np.all(qb["gw_norm"] > 0) and np.all(qb["dgw_norm_fo"] > 0) and np.all(np.isfinite(qb["abs_phi_fo"]))
    assert np.all(np.abs(qb["cos_loo"]) <= 1 + 1e-12) and np.all(np.abs(qb["cos_unit_loo"]) <= 1 + 1e-12)
    assert set(influence_controls(qb)) >= {"partial_rho", "unflipped_only", "flipped_only", "exponential"}
    # the same call again (Fig. 4 after Fig. 3 in one process) is served from the memo: the same
    # numbers, as copies; other weights are another entry
    _, [(_, beta2, qb2)] = influence_measure.binary_influence(model, v, x, y, A0=1.0, steps=5, eta=1e-2, chunk=3)
    assert beta2 == beta and qb2.keys() == qb.keys()
    for k in qb:
        np.testing.assert_array_equal(qb2[k], qb[k])
    qb2["A_hat"][:] = -1.0
    _, [(_, _, qb3)] = influence_measure.binary_influence(model, v, x, y, A0=1.0, steps=5, eta=1e-2, chunk=3)
    np.testing.assert_array_equal(qb3["A_hat"], qb["A_hat"])
    v2 = jax.tree.map(lambda a: a * 1.01, v)
    assert influence_measure._memo_entry(model, v2, x, y, steps=5, eta=1e-2, chunk=3) == {}
    assert 1.0 in influence_measure._memo_entry(model, v, x, y, steps=5, eta=1e-2, chunk=3)


def test_fig3_protocol():
    check_protocol(fig3, "fig3")
    with pytest.raises(ValueError):
        fig3.config("tiny", A0=-1.0)


def _fake(n=80, *, y_of=None, ratio_of=None, flipped=None, seed=0):
    """Per-sample numbers of one network: x-axes random, the vanilla scale ``gw`` independent;
    by default |φ*| and ‖Δg_W‖ = gw · A e^A and their first-order surrogates gw · A (the theory)."""
    rng = np.random.default_rng(seed)
    hz, gx2, gw = rng.uniform(0.1, 1, n), rng.uniform(0.1, 1, n), rng.uniform(0.1, 1, n)
    A = hz * gx2 / np.median(hz * gx2)
    y_of = y_of or (lambda A, gw: gw * A * np.exp(A))
    ratio_of = ratio_of or (lambda A: np.exp(A))
    y = y_of(A, gw)
    fo = y / ratio_of(A)
    success = np.zeros(n, bool) if flipped is None else flipped
    return dict(hbar_z=hz, gx2=gx2, hbar_z_gx2=hz * gx2, A=A, A_hat=A * rng.uniform(0.95, 1.05, n), abs_phi=y,
                dgw_norm=y * rng.uniform(0.9, 1.1, n), abs_phi_fo=fo, dgw_norm_fo=fo * rng.uniform(0.9, 1.1, n),
                gw_norm=gw, success=success)


def _entry(q, seed=0, accuracy=0.9):
    return dict(seed=seed, test_accuracy=accuracy, beta=1.0, steps=5, n_samples=len(q["A"]), first_layer="Conv_0",
                attack_success_rate=float(np.mean(q["success"])), spearman=influence_correlations(q),
                controls=influence_controls(q), samples=q)


def _results(*nets, accuracy=0.9):
    """One architecture per argument: a per-sample dict (one seed) or a list of them (one per seed)."""
    nets = [n if isinstance(n, list) else [n] for n in nets]
    models = {f"net{i}": [_entry(q, s, accuracy) for s, q in enumerate(qs)] for i, qs in enumerate(nets)}
    return dict(dtype="float64", models=models)


def _claims(*qs, **kw):
    c = fig3.claims(_results(*qs, **kw))
    assert [x["id"] for x in c] == ["fig3.influence", "fig3.exponential", "fig3.paper_protocol"]
    assert all(x["baselines"] or x["id"] == "fig3.paper_protocol" for x in c) and all(x["controls"] for x in c)
    assert all(x["statistic"]["n_tests"] and ("cause" in x) == (x["verdict"] != "holds") for x in c)
    assert all(set(x["statistic"]) >= {"name", "value", "ci", "n_digits", "n_seeds", "holm"} and x["per_seed"]
               for x in c)
    return {x["id"].split(".")[1]: x for x in c}


def _verdicts(*qs, **kw):
    return {k: x["verdict"] for k, x in _claims(*qs, **kw).items()}


def _tests(c, verdict):
    return [t["test"] for t in c["statistic"]["tests"] if t["verdict"] == verdict]


def test_fig3_claims_hold_on_the_theory():
    v = _verdicts(_fake(), _fake(seed=1))
    assert v == {"influence": "holds", "exponential": "holds", "paper_protocol": "holds"}
    c = influence_controls(_fake())
    assert c["redundancy"]["A|hbar_z_gx2"]["rho"] == pytest.approx(1.0)
    assert c["vs_first_order"]["abs_phi"]["frac_greater"] == 1.0


def test_verdict_can_fail_fig3_when_influence_falls():
    v = _verdicts(_fake(y_of=lambda A, gw: gw / A))
    assert v["influence"] == "does not hold" and v["paper_protocol"] == "does not hold"
    # beside a network where it holds: holds on one, refuted on the other (symmetric, after Holm)
    c = _claims(_fake(y_of=lambda A, gw: gw / A), _fake(seed=1))
    assert c["influence"]["verdict"] == "holds partly" and c["paper_protocol"]["verdict"] == "holds partly"
    st = c["influence"]["statistic"]
    assert (st["holm"]["value"], st["holm"]["n_does_not_hold"], st["holm"]["n_tests"]) == (4, 4, 8)
    assert len(_tests(c["influence"], "does not hold")) == 4 and "does not hold: net0" in c["influence"]["cause"]
    lo, hi = st["ci"]
    assert lo <= st["value"] <= hi and st["n_seeds"] == 1 and st["n_digits"] == 160


def test_fig3_not_testable_below_the_accuracy_floor():
    """A collapsed network (test accuracy below the floor) is not testable, never refuted."""
    v = _verdicts(_fake(y_of=lambda A, gw: gw / A), accuracy=0.52)
    assert set(v.values()) == {"not testable"}


def test_fig3_inconclusive_when_nothing_is_significant():
    rng = np.random.default_rng(3)
    q = _fake(n=12)
    for k in ("abs_phi", "dgw_norm", "abs_phi_fo", "dgw_norm_fo"):
        q[k] = rng.uniform(0.5, 1.5, 12)  # independent of every x-axis: 12 digits, Holm over the family
    assert _verdicts(q)["influence"] == "inconclusive"


def test_verdict_can_fail_fig3_when_only_the_vanilla_scale_rises():
    """y rises with x only because the vanilla scale does (x ∝ gw): plain ρ > 0, partial ρ < 0."""
    q = _fake(y_of=lambda A, gw: gw)
    q["gw_norm"] = q["A"] ** 2 * np.exp(0.3 * np.random.default_rng(5).normal(size=len(q["A"])))
    q["abs_phi"] = q["dgw_norm"] = q["gw_norm"] * np.exp(-0.5 * q["A"])
    assert influence_correlations(q)["A_hat|abs_phi"]["rho"] > 0.5
    c = _claims(q)["influence"]  # Â's partial ρ is significantly negative; H̄_z's (unrelated here) straddles
    assert c["verdict"] == "inconclusive" and len(_tests(c, "does not hold")) == 2 and not _tests(c, "holds")


def test_verdict_can_fail_fig3_exponential_when_first_order_explains_more():
    v = _verdicts(_fake(ratio_of=lambda A: np.exp(-A)))
    assert v["exponential"] == "does not hold" and v["influence"] == "holds"


def test_verdict_can_fail_fig3_on_unflipped_digits_alone():
    """The rise is carried by the flipped digits; the unflipped ones (the headline) fall."""
    n = 80
    q = _fake(n, y_of=lambda A, gw: np.where(A > np.median(A), 100.0, 1.0) * gw / A)
    q["success"] = q["A"] > np.median(q["A"])
    c = _claims(q)["influence"]
    assert c["verdict"] == "inconclusive" and len(_tests(c, "does not hold")) == 2 and not _tests(c, "holds")
    assert influence_controls(q)["flipped_only"]["n"] == n // 2




def test_fig3_seeds_pool_by_the_hierarchical_bootstrap():
    """Two seeds of one architecture: where both networks agree the pooled interval decides; where
    one seed's network refutes what the other's supports, each seed alone decides (per_seed) but the
    pooled interval straddles 0: inconclusive, not "holds"."""
    both = _claims([_fake(), _fake(seed=1)])["influence"]
    assert both["verdict"] == "holds" and both["statistic"]["n_seeds"] == 2
    assert [r["verdict"] for r in both["per_seed"]] == ["holds", "holds"]
    split = _claims([_fake(), _fake(y_of=lambda A, gw: gw / A, seed=1)])["influence"]
    assert [r["seed"] for r in split["per_seed"]] == [0, 1]
    assert [r["verdict"] for r in split["per_seed"]] == ["holds", "does not hold"]
    assert split["verdict"] == "inconclusive" and split["statistic"]["holm"]["n_tests"] == 8
    # a seed's network below the accuracy floor drops out of the pool, not refuting it
    r = _results([_fake(), _fake(y_of=lambda A, gw: gw / A, seed=1)])
    r["models"]["net0"][1]["test_accuracy"] = 0.5
    c = {x["id"]: x for x in fig3.claims(r)}["fig3.influence"]
    assert c["verdict"] == "holds" and c["statistic"]["n_seeds"] == 1 and c["per_seed"][1]["verdict"] == "not testable"


def test_rank_statistics_of_the_bootstrap_match_their_references():
    """The vectorised ρ the claims resample equals scipy's Spearman, the rank partial correlation of
    :func:`jaxdyn.analyses.stats.partial_spearman` and Fig. 4's group curve, row by row."""
    q = _fake(n=30, seed=4)
    x, y, z = q["A_hat"], q["abs_phi"] * np.random.default_rng(0).uniform(0.5, 2, 30), q["gw_norm"]
    assert rho_rows("rho", (x, y)) == pytest.approx(spearman(x, y)["rho"], abs=1e-12)
    assert rho_rows("partial", (x, y, z)) == pytest.approx(stats.partial_spearman(x, y, z)["rho"], abs=1e-12)
    c = group_curve(x, y, groups=10)
    assert rho_rows("groups", (x, y)) == pytest.approx(spearman(c["A_hat"], c["cos"])["rho"], abs=1e-12)
    idx = digit_resamples(30, n_resamples=50, seed=1)
    rows = rho_rows("rho", (x[idx], y[idx]))
    assert rows.shape == (50,) and rows[7] == pytest.approx(spearman(x[idx[7]], y[idx[7]])["rho"], abs=1e-12)
    with pytest.raises(ValueError):
        rho_rows("pearson", (x, y))
    # one network: its own digit resamples; two: the mean of a drawn pair per resample
    v, b = pooled_over_seeds(np.array([0.3]), rows[None], seed=0)
    assert v == 0.3 and np.array_equal(np.sort(b), np.sort(rows))
    v, b = pooled_over_seeds(np.array([0.2, 0.4]), np.array([np.full(50, 0.2), np.full(50, 0.4)]), seed=0)
    assert v == pytest.approx(0.3) and set(np.round(b, 12)) == {0.2, 0.3, 0.4}
