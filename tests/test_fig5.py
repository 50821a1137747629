"""Figure 5: the per-layer instability on a small random-init network, the sharpness tracker,
the protocol and the verdict rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import training
from jaxdyn.analyses import curvature
from jaxdyn.analyses.instability import (control_tests, instability, match_by_loss, random_direction,
                                         random_loss_matched, summarize_instability)
from jaxdyn.analyses.metrics import LayerTest
from jaxdyn.core.losses import loss
from jaxdyn.core.models import get_model, logits_fn
from jaxdyn.experiments import fig5
from jaxdyn.experiments.fig5.rules import TEXTS
from jaxdyn.training import TrainConfig, create_state, make_optimizer
from jaxdyn.training.callbacks import SharpnessTracker

from tests.helpers import check_protocol, digits, zoo_net

pytestmark = pytest.mark.timeout(300)


def _results(inst, sharp):
    return dict(dtype="float64", dtype_sharpness="float32", models={m: {"instability": d} for m, d in inst.items()},
                sharpness_summary=sharp, config=fig5.SCALES["tiny"] | {"scale": "tiny"})


def test_fig5_instability_shapes_and_controls():
    model, v = zoo_net("cnn3", num_classes=10, width=1 / 16)
    x = digits(2, seed=2)
    f = jax.vmap(logits_fn(model, v))
    y = jnp.argmax(f(x), axis=1)
    px = digits(12, seed=3)
    py = jnp.asarray(np.arange(12) % 10)
    res = instability(model, v, x, y, px, py, eta=1e-3, pgd_cfg=dict(eps=0.1, alpha=0.05, steps=2),
                           key=jax.random.key(0))
    assert res["layers"] == ["Conv_0", "Conv_1", "head"]
    for k in ("ori", "adv", "matched_loss", "random_direction", "grad_step"):
        assert res[k].shape == (2, 3) and np.all(res[k] > 0), k
    assert np.all(res["delta_linf"] <= 0.1 + 1e-12)
    assert np.all(res["random_l2_ratio"] <= 1 + 1e-12) and np.all(res["random_l2_ratio"] > 0.3)  # clipped like δ
    # the matched-loss row is Δ^(ori) of the chosen pool digit
    j = int(res["match_index"][0])
    one = instability(model, v, px[j:j + 1], py[j:j + 1], px, py, eta=1e-3,
                           pgd_cfg=dict(eps=0.1, alpha=0.05, steps=2), key=jax.random.key(0))
    np.testing.assert_allclose(res["matched_loss"][0], one["ori"][0], rtol=1e-8)
    s = summarize_instability(res)
    assert s["n_layers"] == 3 and 0 <= s["layers_adv_greater"] <= 3
    assert set(s["controls"]) == {"matched_loss", "random_direction", "grad_step"}
    assert s["controls"]["random_direction"]["n_pairs"] == 2
    assert len(s["controls"]["matched_loss"]["median_ratio"]) == 3


def test_random_loss_matched_has_the_norm_and_the_loss():
    """The control has the ℓ2 norm of δ, raises the loss by the same amount (to 1e-3) and is not δ."""
    model, v = zoo_net("cnn3", num_classes=10, width=1 / 16)
    f = logits_fn(model, v)
    x = digits(1, seed=4)[0]
    y = jnp.argmax(f(x))
    lf = lambda t: loss(f(t), y)  # noqa: E731
    delta = 0.3 * jnp.sign(jax.grad(lf)(x))  # an FGSM step: raises the loss
    for k in range(3):
        r = random_loss_matched(lf, x, delta, jax.random.key(k), clip=None)
        assert bool(r["reached"])
        np.testing.assert_allclose(float(jnp.linalg.norm(r["perturbation"])), float(jnp.linalg.norm(delta)), rtol=1e-10)
        assert abs(float(lf(x + r["perturbation"])) - float(lf(x + delta))) <= 1e-3 * float(lf(x + delta))
        assert float(lf(x + delta)) > float(lf(x))
        assert 0 < float(r["sin_theta"]) < 1
        c = random_loss_matched(lf, x, delta, jax.random.key(k))  # clipped into [0, 1] as x + δ is
        assert float(jnp.min(x + c["perturbation"])) >= 0 and float(jnp.max(x + c["perturbation"])) <= 1
        assert float(jnp.linalg.norm(c["perturbation"])) <= float(jnp.linalg.norm(delta)) + 1e-12
    # a target the random direction already exceeds: θ = 0; one out of reach: θ = π/2, not reached
    e = jnp.eye(4)
    r0 = random_loss_matched(lambda t: jnp.sum(t**2) + t[0], jnp.zeros(4), -0.5 * e[0], jax.random.key(0), clip=None)
    assert float(r0["theta"]) == 0.0  # target -0.25, the random direction gives 0.25
    far = random_loss_matched(lambda t: 10 * t[1] ** 2 + t[0], jnp.zeros(4), e[1], jax.random.key(0), clip=None)
    assert not bool(far["reached"]) and float(far["sin_theta"]) == pytest.approx(1.0)


def test_random_direction_is_random_and_the_gradient_step_is_not():
    """The old "random perturbation" had median sin θ = 1 to ∇L on the trained networks:
    against a PGD-sized δ the loss-matched tilt ends at (here, on a random-init network, near) the ℓ2
    gradient step. The isotropic control is nearly orthogonal to ∇L in 784 dimensions; both are
    clipped into [0, 1] like x + δ."""
    model, v = zoo_net("cnn3", num_classes=10, width=1 / 16)
    f = logits_fn(model, v)
    x = digits(1, seed=4)[0]
    y = jnp.argmax(f(x))
    lf = lambda t: loss(f(t), y)  # noqa: E731
    g = jax.grad(lf)(x)
    delta = jnp.clip(x + 0.1 * jnp.sign(g), 0, 1) - x  # an ℓ∞ step of PGD's size, clipped
    cos = lambda a: float(jnp.vdot(a, g) / (jnp.linalg.norm(a) * jnp.linalg.norm(g)))  # noqa: E731
    for k in range(3):
        r = random_direction(x, delta, jax.random.key(k))
        assert abs(cos(r)) < 0.15 and float(jnp.min(x + r)) >= 0 and float(jnp.max(x + r)) <= 1
        gs = random_loss_matched(lf, x, delta, jax.random.key(k))
        assert float(gs["sin_theta"]) > 0.5 and cos(gs["perturbation"]) > 0.5  # mostly ∇L (1 on trained nets)
        np.testing.assert_allclose(float(gs["cos_grad"]), cos(gs["perturbation"]), rtol=1e-9)


def test_match_by_loss_picks_the_closest_loss():
    pool = np.asarray([0.01, 0.1, 0.5, 1.0, 2.0, 8.0])
    m = match_by_loss([0.09, 1.9, 3.0, 0.011], pool)
    assert m["index"].tolist() == [1, 4, 4, 0]
    np.testing.assert_allclose(m["loss"], [0.1, 2.0, 2.0, 0.01])
    assert m["matched"].tolist() == [True, True, False, True]  # 2.0/3.0 is outside ×1.25


def test_sharpness_tracker_records_on_schedule(tmp_path, data_dir):
    """The callback computes λ_max only on its schedule and its records survive in the log."""
    cfg = TrainConfig(model="mlp3", width=1 / 64, n_train=64, batch_size=16, epochs=1, n_eval_robust=0)
    model = get_model("mlp3", width=1 / 64)
    tr = SharpnessTracker(points=2, probe=8, iters=3, pgd_cfg=dict(eps=0.1, alpha=0.05, steps=1))
    tr.start(model, cfg, tmp_path)
    assert tr.schedule == [1, 4]
    state = create_state(model, make_optimizer(cfg), jax.random.key(0))
    for step in (1, 2, 4):
        tr.callback(step, state, jnp.float32(0.5))
    recs = tr.records(tmp_path)
    assert [r["step"] for r in recs] == [1, 4]
    assert all(np.isfinite(r["lambda_clean"]) and np.isfinite(r["lambda_adv"]) for r in recs)
    # the same parameters and batch: the same power iteration result
    assert recs[0]["lambda_clean"] == pytest.approx(recs[1]["lambda_clean"], rel=1e-5)


def test_sharpness_tracker_is_a_training_callback():
    assert training.SharpnessTracker is SharpnessTracker and fig5.SharpnessTracker is SharpnessTracker
    with pytest.raises(ValueError, match="points"):
        SharpnessTracker(points=0, probe=8, iters=3, pgd_cfg=dict(eps=0.1, alpha=0.05, steps=1))


def test_fig5_protocol():
    check_protocol(fig5, "fig5")
    with pytest.raises(ValueError, match="normalizer"):
        fig5.config("tiny", normalizer="rows")
    with pytest.raises(ValueError, match="pgd"):
        fig5.config("tiny", pgd={"eps": 0.1})


def _fake(adv_over_ori, adv_over_matched, adv_over_random, n=12, seed=0, accuracy=0.9):
    """Per-digit Δ arrays (n digits, one layer per entry of the ratio lists) with the given
    median ratios and log-normal scatter (σ 0.3), summarised as ``run`` does (the gradient step at
    the random direction's level: it is reported, not in the verdict)."""
    rng = np.random.default_rng(seed)
    L = len(adv_over_ori)
    adv = np.exp(rng.normal(0, 1, (n, L)))
    noisy = lambda r: adv / np.asarray(r) * np.exp(rng.normal(0, 0.3, (n, L)))  # noqa: E731
    res = dict(layers=[f"l{j}" for j in range(L)], adv=adv, ori=noisy(adv_over_ori),
               matched_loss=noisy(adv_over_matched), random_direction=noisy(adv_over_random),
               grad_step=noisy([1.0] * L), matched=np.ones(n, bool),
               reached=np.ones(n, bool), match_ratio=np.ones(n), match_index=np.arange(n),
               gradient_share=np.full(n, 0.5), cos_control_adv=np.full(n, 0.3), delta_l2=np.ones(n),
               **{k: np.full(n, 0.03) for k in ("cos_random_grad", "cos_random_adv")},
               cos_grad_step_grad=np.ones(n), random_l2_ratio=np.full(n, 0.7),
               **{k: np.ones(n) for k in ("loss_clean", "loss_adv", "loss_matched", "loss_control", "loss_random")})
    return dict(summarize_instability(res), n_samples=n, test_accuracy=accuracy)


def _sharp(r):
    return {"lambda_standard_end": 1.0, "lambda_adversarial_end": r, "ratio_end": r, "mean_ratio_along": r}


def _claims(std, sharp=None, theorem6=None, adv_accuracy=0.9):
    res = _results({"a": {"standard": std, "adversarial": dict(test_accuracy=adv_accuracy)}},
                   {"a": _sharp(3.0)} if sharp is None else sharp)
    cs = fig5.claims(dict(res, theorem6=theorem6 or {}))
    assert [c["id"] for c in cs] == ["fig5.instability_vs_controls", "fig5.instability", "fig5.sharpness",
                                     "fig5.theorem6"]
    for c in (cs[0], cs[3]):
        assert len(c["per_seed"]) == 1 and c["per_seed"][0]["verdict"] == c["verdict"]
        assert ("cause" in c) == (c["verdict"] != "holds") and "seeds not yet resampled" in c["rule"]
    return cs


def _verdicts(std, sharp=None, theorem6=None, **kw):
    cs = _claims(std, sharp, theorem6, **kw)
    return [c["verdict"] for c in cs[:3]] if theorem6 is None else cs[3]


def _t6(at_over_vanilla, adv_over_random, n=12, seed=0):
    """A Theorem-6 summary (jaxdyn.analyses.curvature.summarize) from per-digit factors with the given median
    ratios per layer and log-normal scatter (σ 0.3)."""
    rng = np.random.default_rng(seed)
    L = len(at_over_vanilla)
    adv = np.exp(rng.normal(0, 1, (n, L)))
    noisy = lambda r: adv / np.asarray(r) * np.exp(rng.normal(0, 0.3, (n, L)))  # noqa: E731
    # clean with its own scatter: a constant log-difference is all ties, where scipy's Wilcoxon
    # falls back to a permutation test (0.4 s a call instead of 0.5 ms)
    one = lambda a, r: dict(adv=a, random=r, clean=a / 10 * np.exp(rng.normal(0, 0.3, (n, L))),  # noqa: E731
                            delta_l2=np.ones(n), layers=[f"l{j}" for j in range(L)])
    return curvature.summarize(one(noisy(at_over_vanilla), noisy([1] * L)), one(adv, noisy(adv_over_random)))


def test_fig5_theorem6_claim_holds():
    c = _verdicts(_fake([3, 3], [3, 3], [3, 3]), theorem6={"a": _t6([3, 3], [3, 3])})
    assert c["verdict"] == "holds" and "AT/vanilla" in c["measured"] and "(4/4)" in c["rule"]
    assert c["statistic"]["value"] == 4 and c["statistic"]["ci"] is None


def test_verdict_can_fail_fig5_theorem6():
    """AT's factor significantly below the vanilla network's and the random control's: does not hold;
    at their level: inconclusive (no evidence either way); some layers above, others below: partly."""
    fake = _fake([3, 3], [3, 3], [3, 3])
    assert _verdicts(fake, theorem6={"a": _t6([0.3, 0.3], [0.3, 0.3])})["verdict"] == "does not hold"
    for at, rnd in (([1, 1], [3, 3]), ([3, 3], [1, 1])):
        assert _verdicts(fake, theorem6={"a": _t6(at, rnd)})["verdict"] == "inconclusive"
    c = _verdicts(fake, theorem6={"a": _t6([3, 0.3], [3, 3])})
    assert c["verdict"] == "holds partly" and "a at_vs_vanilla layer 2" in c["cause"]


def test_fig5_theorem6_not_testable():
    """The adversarially trained network below the accuracy floor (measured: VGG-11 at 0.52) or
    nothing measured: not testable, never "does not hold"."""
    fake = _fake([3, 3], [3, 3], [3, 3])
    c = _verdicts(fake, theorem6={"a": _t6([0.3, 0.3], [0.3, 0.3])}, adv_accuracy=0.52)
    assert c["verdict"] == "not testable" and "accuracy floor 0.8: a (0.52)" in c["cause"]
    assert _verdicts(fake, theorem6={"a": None})["verdict"] == "not testable"
    assert _verdicts(fake, adv_accuracy=0.52)[2] == "not testable"  # sharpness on a collapsed network


def test_fig5_claims_hold():
    assert _verdicts(_fake([3, 3, 3], [3, 3, 3], [3, 3, 3])) == ["holds", "holds", "holds"]


def test_fig5_null_level_excess_is_inconclusive():
    """Δ^(adv) far above Δ^(ori) but at the level of both controls (the loss level explains it):
    the paper protocol holds, C.8 against the controls finds no excess (and no deficit)."""
    c = _claims(_fake([3, 3, 3], [1, 1, 1], [1, 1, 1]))
    assert [x["verdict"] for x in c[:2]] == ["inconclusive", "holds"]
    assert c[0]["statistic"]["value"] == 0 and "inconclusive: 6/6" in c[0]["cause"]
    # over the random direction only (matched-loss digits as unstable): still inconclusive
    assert _verdicts(_fake([3, 3, 3], [1, 1, 1], [3, 3, 3]))[0] == "inconclusive"


def test_verdict_can_fail_fig5_significant_deficit():
    """Below both controls in every layer: does not hold; one layer below a control, the rest
    above: holds partly."""
    assert _verdicts(_fake([3, 3, 3], [0.3, 0.3, 0.3], [0.3, 0.3, 0.3]))[0] == "does not hold"
    assert _verdicts(_fake([3, 3, 3], [3, 3, 0.3], [3, 3, 3]))[0] == "holds partly"


def test_fig5_holm_over_the_family():
    """A moderate excess (n 8, each test alone at p < 0.05) does not survive Holm over 2 × 6 tests."""
    c = _claims(_fake([3] * 6, [1.6] * 6, [1.6] * 6, n=8, seed=1))[0]
    assert c["verdict"] in ("inconclusive", "holds partly") and c["statistic"]["value"] < 12


def test_verdict_can_fail_fig5_paper_protocol_and_sharpness():
    v = _verdicts(_fake([0.3, 0.3, 3], [3, 3, 3], [3, 3, 3]), sharp={"a": _sharp(0.5)})
    assert v[1:] == ["does not hold", "does not hold"]
    half = _verdicts(_fake([3, 0.3], [3, 3], [3, 3]), sharp={"a": _sharp(2.0), "b": _sharp(0.5)})
    assert half[1:] == ["holds partly", "holds partly"]


def test_fig5_not_testable_without_controls_or_below_the_floor():
    """Results without controls (an old run), or a standard network below the accuracy floor: not
    testable; results of an earlier version (the gradient step named random_perturbation, no random
    direction) are read, the random direction's tests not testable."""
    std = _fake([3, 3], [3, 3], [3, 3])
    del std["controls"]
    assert _verdicts(std)[0] == "not testable"
    assert _verdicts(_fake([3, 3], [0.3, 0.3], [0.3, 0.3], accuracy=0.5))[0] == "not testable"
    old = _fake([3, 3], [3, 3], [3, 3])
    old["controls"] = {"matched_loss": old["controls"]["matched_loss"],
                       "random_perturbation": old["controls"]["grad_step"]}
    c = _claims(old)[0]
    assert c["verdict"] == "holds" and c["statistic"]["n_not_testable"] == 2
    assert "gradient step" in c["measured"] and "not measured" in c["measured"]


def test_fig5_claims_are_rendered_from_their_templates():
    """Each claim is its ClaimText filled from the data: the fixed words of every template are there,
    in the order of claims.json; the family's tests are keyed (network, comparison, layer)."""
    cs = _claims(_fake([3, 3], [3, 3], [3, 3]), theorem6={"a": _t6([3, 0.3], [3, 3])})
    assert [c["id"] for c in cs] == list(TEXTS)
    for c in cs:
        t = TEXTS[c["id"]]
        assert c["paper"] == t.paper and c["baselines"] == t.baselines and c["controls"] == t.controls
        assert t.rule.split("{")[0] in c["rule"]
    tests, vs = control_tests({"a": _fake([3, 3], [3, 3], [3, 3])})
    assert tests[0] == LayerTest("a", "matched_loss", 0) and len(tests) == len(vs) == 4
