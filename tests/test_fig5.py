"""Figure 5: the per-layer instability on a small random-init network, the sharpness tracker,
the protocol and the verdict rules."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import training
from jaxdyn.analyses.instability import (N_RESAMPLES, bootstrap_family, bootstrap_test, control_tests, instability,
                                         log_ratios, match_by_loss, random_direction, random_loss_matched,
                                         summarize_instability)
from jaxdyn.analyses.verdicts import hierarchical_bootstrap
from jaxdyn.analyses.metrics import LayerTest
from jaxdyn.core.losses import loss
from jaxdyn.core.models import get_model, logits_fn
from jaxdyn.experiments import fig5
from jaxdyn.experiments.claims import VERDICTS
from jaxdyn.experiments.fig5.rules import TEXTS
from jaxdyn.training import TrainConfig, create_state, make_optimizer
from jaxdyn.training.callbacks import SharpnessTracker

from tests.helpers import check_protocol, digits, zoo_net

pytestmark = pytest.mark.timeout(300)


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
    """One standardly trained network's stored measurement (per-digit Δ arrays, n digits, one layer per
    entry of the ratio lists) with the given median ratios and log-normal scatter (σ 0.3)."""
    rng = np.random.default_rng(seed)
    L = len(adv_over_ori)
    adv = np.exp(rng.normal(0, 1, (n, L)))
    noisy = lambda r: adv / np.asarray(r) * np.exp(rng.normal(0, 0.3, (n, L)))  # noqa: E731
    return dict(layers=[f"l{j}" for j in range(L)], adv=adv, ori=noisy(adv_over_ori),
                matched_loss=noisy(adv_over_matched), random_direction=noisy(adv_over_random),
                grad_step=noisy([1.0] * L), matched=np.ones(n, bool), reached=np.ones(n, bool),
                gradient_share=np.ones(n), cos_random_grad=np.full(n, 0.03), random_l2_ratio=np.full(n, 0.7),
                **{k: np.ones(n) for k in ("loss_clean", "loss_adv", "loss_matched", "loss_random")},
                n_samples=n, test_accuracy=accuracy)


def _t6(at_over_vanilla, adv_over_random, n=12, seed=0):
    """One seed's Theorem-6 result (per-digit factors, as compare_networks stores them) with the given
    median ratios per layer and log-normal scatter (σ 0.3)."""
    rng = np.random.default_rng(seed + 100)
    L = len(at_over_vanilla)
    adv = np.exp(rng.normal(0, 1, (n, L)))
    noisy = lambda r: adv / np.asarray(r) * np.exp(rng.normal(0, 0.3, (n, L)))  # noqa: E731
    return dict(layers=[f"l{j}" for j in range(L)], n_digits=n, delta_l2_median=dict(standard=1.0, adversarial=1.0),
                per_digit=dict(standard=dict(adv=noisy(at_over_vanilla), random=adv, clean=adv),
                               adversarial=dict(adv=adv, random=noisy(adv_over_random), clean=adv)))


def _sharp(r):
    return {"lambda_standard_end": 1.0, "lambda_adversarial_end": r, "ratio_end": r, "mean_ratio_along": r}


def _results(stds, *, t6=None, sharp=(3.0, 3.0), adv_accuracy=(0.9, 0.9)):
    """Fig. 5 results for network "a" with one seed per entry of ``stds``."""
    es = [dict(seed=s, instability=dict(standard=std, adversarial=dict(test_accuracy=acc)),
               theorem6=None if t6 is None else t6[s], sharpness_summary=_sharp(r))
          for s, (std, r, acc) in enumerate(zip(stds, sharp, adv_accuracy))]
    return dict(dtype="float64", dtype_sharpness="float32", models={"a": es}, seeds=list(range(len(stds))),
                config=fig5.SCALES["tiny"] | {"scale": "tiny"})


def _claims(ratios, *, seeds=2, t6=None, **kw):
    stds = [_fake(*ratios, seed=s, **kw.pop("fake", {})) for s in range(seeds)] if isinstance(ratios, tuple) else ratios
    cs = fig5.claims(_results(stds, t6=t6, **kw))
    assert [c["id"] for c in cs] == list(TEXTS)
    for c in cs:
        assert ("cause" in c) == (c["verdict"] != "holds"), c
        assert {"name", "value", "ci", "n_digits", "n_seeds"} <= set(c["statistic"]) and c["per_seed"]
    return cs


def _v(*a, **kw):
    return [c["verdict"] for c in _claims(*a, **kw)]


_UP = ([3, 3, 3], [3, 3, 3], [3, 3, 3])


def test_fig5_claims_hold():
    """An excess over Δ^(ori) and both controls in every layer, on two seeds: all four claims hold; the
    statistic is the weakest test with its interval above ×1, and each seed alone holds too."""
    cs = _claims(_UP, t6=[_t6([3, 3], [3, 3], seed=s) for s in range(2)])
    assert [c["verdict"] for c in cs] == ["holds"] * 4
    st = cs[0]["statistic"]
    assert st["n_seeds"] == 2 and st["n_digits"] == 24 and st["n_tests"] == 6 and st["n_holds"] == 6
    assert 0 < st["ci"][0] <= st["value"] <= st["ci"][1] and len(st["tests"]) == 6 and st["n_above_x2"] >= 1
    assert [r["seed"] for r in cs[0]["per_seed"]] == [0, 1] and {r["verdict"] for r in cs[0]["per_seed"]} == {"holds"}
    assert "Holm" in cs[0]["rule"] and "paper protocol" in cs[1]["measured"]


def test_verdict_can_fail_fig5_significant_deficit():
    """Below both controls in every layer: does not hold; one layer below a control, the rest above:
    holds partly; the cause names the tests with their intervals."""
    c = _claims(([3, 3, 3], [0.3, 0.3, 0.3], [0.3, 0.3, 0.3]))[0]
    assert c["verdict"] == "does not hold" and c["statistic"]["ci"][1] < 0 and "a matched_loss layer 1" in c["cause"]
    c = _claims(([3, 3, 3], [3, 3, 0.3], [3, 3, 3]))[0]
    assert c["verdict"] == "holds partly" and "does not hold a matched_loss layer 3" in c["cause"]


def test_fig5_null_level_excess_is_inconclusive():
    """Δ^(adv) far above Δ^(ori) but at the level of both controls (the loss level explains it): the
    paper protocol holds, C.8 against the controls finds no excess (and no deficit)."""
    cs = _claims(([3, 3, 3], [1, 1, 1], [1, 1, 1]))
    assert [c["verdict"] for c in cs[:2]] == ["inconclusive", "holds"]
    assert cs[0]["statistic"]["n_inconclusive"] == 6 and "inconclusive: 6/6" in cs[0]["cause"]
    assert _v(([3, 3, 3], [1, 1, 1], [3, 3, 3]))[0] == "inconclusive"  # over the random direction only


def test_fig5_paper_protocol_both_directions():
    """The paper protocol (Δ^(adv) against Δ^(ori) on the same digit): below in every layer does not hold,
    at its level inconclusive, mixed holds partly; the paper's means are printed beside."""
    assert _v(([0.3, 0.3], [3, 3], [3, 3]))[1] == "does not hold"
    assert _v(([1, 1], [3, 3], [3, 3]))[1] == "inconclusive"
    c = _claims(([3, 0.3], [3, 3], [3, 3]))[1]
    assert c["verdict"] == "holds partly" and "Δ^(adv) > Δ^(ori) in 1/2 layers" in c["measured"]


def test_fig5_holm_over_the_family():
    """A moderate excess (8 digits, one seed) does not survive Holm over 2 × 6 tests everywhere."""
    c = _claims(([3] * 6, [1.3] * 6, [1.3] * 6), seeds=1, fake=dict(n=8))[0]
    assert c["verdict"] in ("inconclusive", "holds partly") and c["statistic"]["n_holds"] < 12


def test_fig5_not_testable_below_the_floor():
    """Every standard network below the accuracy floor: not testable, never "does not hold"; one seed
    below it: left out, the other decides; the adversarially trained network below it (measured:
    VGG-11 at 0.52): Theorem 6 and the sharpness not testable."""
    low = [_fake([3, 3], [0.3, 0.3], [0.3, 0.3], seed=s, accuracy=0.5) for s in range(2)]
    c = _claims(low)[0]
    assert c["verdict"] == "not testable" and "below the accuracy floor 0.8" in c["cause"]
    mixed = [_fake([3, 3], [3, 3], [3, 3], seed=0), _fake([3, 3], [0.3, 0.3], [0.3, 0.3], seed=1, accuracy=0.5)]
    c = _claims(mixed)[0]
    assert c["verdict"] == "holds" and c["statistic"]["n_seeds"] == 1 and "seed 1" in c["statistic"]["left_out"]
    assert [(r["seed"], r["verdict"]) for r in c["per_seed"]] == [(0, "holds"), (1, "not testable")]
    cs = _claims(([3, 3], [3, 3], [3, 3]), t6=[_t6([0.3, 0.3], [0.3, 0.3], seed=s) for s in range(2)],
                 adv_accuracy=(0.52, 0.52))
    assert [c["verdict"] for c in cs[2:]] == ["not testable", "not testable"] and "0.52" in cs[3]["cause"]


def test_fig5_theorem6_both_directions():
    """AT's factor significantly below the vanilla network's and the random control's: does not hold;
    at their level: inconclusive; some layers above, others below: holds partly."""
    def t6(at, rnd):
        return _claims(_UP, t6=[_t6(at, rnd, seed=s) for s in range(2)])[3]

    assert t6([0.3, 0.3], [0.3, 0.3])["verdict"] == "does not hold"
    assert t6([1, 1], [1, 1])["verdict"] == "inconclusive"
    c = t6([3, 0.3], [3, 3])
    assert c["verdict"] == "holds partly" and "a at_vs_vanilla layer 2" in c["cause"]


def test_fig5_sharpness_both_directions():
    """log λ-ratio over networks: above ×1 on every network holds, below does not hold, one each way
    inconclusive."""
    assert _v(_UP, sharp=(3.0, 2.0))[2] == "holds"
    assert _v(_UP, sharp=(0.5, 0.3))[2] == "does not hold"
    c = _claims(_UP, sharp=(3.0, 0.3))[2]
    assert c["verdict"] == "inconclusive" and "median log-ratio" in c["cause"]
    assert [r["network"] for r in c["per_seed"]] == ["a", "a"]


def test_bootstrap_test_p_values_and_interval():
    """The bootstrap test's interval is verdicts.hierarchical_bootstrap's (same scheme, same seed); its
    p-values say holds / does not hold / neither, and too few digits give NaN (not testable)."""
    rng = np.random.default_rng(0)
    up = [rng.normal(1, 0.3, 8), rng.normal(1.2, 0.3, 8)]
    r = bootstrap_test(up, seed=3)
    iv = hierarchical_bootstrap(up, n_resamples=N_RESAMPLES, seed=3)
    assert r["ci"] == pytest.approx(iv.ci) and r["value"] == pytest.approx(iv.value)
    assert r["p_greater"] < 1e-3 < 0.99 < r["p_less"] and r["n_seeds"] == 2 and r["n_digits"] == 16
    down = bootstrap_test([-g for g in up], seed=3)
    assert down["p_less"] < 1e-3 and down["p_greater"] > 0.99
    assert math.isnan(bootstrap_test([np.ones(3), [np.nan]])["p_greater"])
    recs = bootstrap_family([(LayerTest("a", "x", 0), up), (LayerTest("a", "x", 1), [-g for g in up]),
                             (LayerTest("a", "x", 2), [rng.normal(0, 1, 8)]), (LayerTest("a", "x", 3), [[1.0]])])
    assert [r["verdict"] for r in recs] == ["holds", "does not hold", "inconclusive", "not testable"]
    assert recs[0]["layer"] == 1 and recs[0]["network"] == "a"


def test_log_ratios_mask_the_controls():
    """The matched-loss control counts only matched digits, the gradient step only digits whose loss it
    reached; non-positive values are NaN."""
    f = _fake([2, 2], [2, 2], [2, 2], n=4)
    f["matched"] = np.array([True, False, True, True])
    f["ori"][0, 0] = 0.0
    assert np.isnan(log_ratios(f, "matched_loss")[1]).all() and np.isfinite(log_ratios(f, "matched_loss")[0]).all()
    assert np.isnan(log_ratios(f, "ori")[0, 0]) and np.isfinite(log_ratios(f, "random_direction")).all()
    tests = control_tests({"a": [f, f]})
    assert tests[0][0] == LayerTest("a", "matched_loss", 0) and len(tests) == 4 and len(tests[0][1]) == 2


@pytest.mark.slow  # two tiny seeds end to end (about 1.5 min CPU)
def test_fig5_two_seeds_tiny(tmp_path, data_dir):
    """Each seed trains its own networks and draws its own digits; the claims carry one per-seed row
    per seed (the tiny networks are below the floor: not testable)."""
    cfg = fig5.config("tiny", seeds=(0, 1))
    res = fig5.run(cfg, tmp_path, progress=False)
    es = res["models"]["cnn3"]
    assert [e["seed"] for e in es] == [0, 1]
    a, b = (np.asarray(e["instability"]["standard"]["adv"]) for e in es)
    assert a.shape[1] == b.shape[1] and (a.shape != b.shape or not np.allclose(a, b))  # digits correct per net
    cs = fig5.claims(dict(res, config=dataclasses.asdict(cfg), scale="tiny"))
    assert all([r["seed"] for r in c["per_seed"]] == [0, 1] for c in cs if c["id"] != "fig5.sharpness")
    assert all(c["verdict"] in VERDICTS and ("cause" in c) == (c["verdict"] != "holds") for c in cs)
