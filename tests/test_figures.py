"""Figures 2-5: the rate fit, the instability metric, the per-figure computations (float64).

The per-figure functions run on small random-init networks here (no training; the smoke test of
``reproduce`` in ``test_reproduce.py`` runs every figure end to end, with training, at the tiny
scale). Each check compares two independent computations or an analytic case.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import influence, metrics, theory
from jaxdyn.experiments import fig2, fig3, fig4, fig5
from jaxdyn.experiments import figures as F
from jaxdyn.gating import input_jacobian
from jaxdyn.attacks import attack
from jaxdyn.losses import grad_z, loss
from jaxdyn.models import cast, get_model, init_variables, logits_fn

pytestmark = pytest.mark.timeout(300)

# closed-form float64 fits / one finite difference of a quadratic: rounding only
EXACT = 1e-10


def _net(name, *, num_classes, width, seed=0):
    model = get_model(name, num_classes=num_classes, width=width)
    return model, cast(init_variables(model, jax.random.key(seed)), jnp.float64)


def _digits(n, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=(n, 28, 28, 1)))


# --- the exponential-rate fit (Fig. 2) --------------------------------------------------------


def test_log_linear_fit_recovers_a_known_rate():
    t = jnp.arange(50.0)
    v = 3.0 * jnp.exp(0.137 * t)
    mask = (t >= 5) & (t <= 40)
    rate, intercept, r2 = metrics.fit_log_linear(t, v, mask)
    assert abs(float(rate) - 0.137) < EXACT
    assert abs(float(intercept) - np.log(3.0)) < EXACT
    assert abs(float(r2) - 1.0) < EXACT
    # entries outside the mask do not matter, even absurd ones
    v_bad = jnp.where(mask, v, -1.0)
    assert abs(float(metrics.fit_log_linear(t, v_bad, mask)[0]) - 0.137) < EXACT
    # a linear fit of the same curve is worse; of a straight line it is perfect
    assert float(metrics.fit_linear(t, v, mask)[2]) < 0.99
    assert abs(float(metrics.fit_linear(t, 2.0 + 0.5 * t)[2]) - 1.0) < EXACT
    assert float(metrics.fit_log_linear(t, 2.0 + 0.5 * t)[2]) < 0.95


def test_log_linear_fit_with_noise_and_degenerate_windows():
    rng = np.random.default_rng(0)
    t = jnp.arange(200.0)
    v = jnp.exp(0.05 * t + 0.05 * rng.normal(size=200))
    rate, _, r2 = metrics.fit_log_linear(t, v)
    assert abs(float(rate) - 0.05) < 2e-3  # σ/(sqrt(N) std(t)) ≈ 6e-5; generous
    assert 0.95 < float(r2) < 1.0
    one = metrics.fit_log_linear(t, v, t == 3)  # one point: no fit
    assert all(np.isnan(float(a)) for a in one)
    vm = jax.vmap(metrics.fit_log_linear, in_axes=(None, 0, None))(t, jnp.stack([v, v * 2.0]), None)
    np.testing.assert_allclose(np.asarray(vm[0]), float(rate), rtol=EXACT)
    with pytest.raises(ValueError):
        metrics.fit_log_linear(t, v[:10])


# --- the weight-gradient instability (Fig. 5) -------------------------------------------------


def _toy_variables():
    k = jax.random.split(jax.random.key(3), 2)
    return {"params": {"a": {"kernel": jax.random.normal(k[0], (3, 4, 2), jnp.float64)},
                       "b": {"kernel": jax.random.normal(k[1], (5, 2), jnp.float64)}}}


def test_instability_analytic_quadratic_with_coupling():
    """``L = c₁||W₁||²/2 + c₂||W₂||²/2 + s ΣW₁ ΣW₂``: moving layer j alone changes ``∂L/∂W_j`` by
    ``c_j ΔW_j`` (the coupling term's gradient in ``W_j`` depends on the other layer only), so
    ``Δ_j = c_j / D_j`` exactly, for any η. Moving both layers at once would add ``s η ...``."""
    c1, c2, s = 0.7, 2.5, 1.3
    v = _toy_variables()

    def L(v):
        w1, w2 = v["params"]["a"]["kernel"], v["params"]["b"]["kernel"]
        return 0.5 * c1 * jnp.sum(w1**2) + 0.5 * c2 * jnp.sum(w2**2) + s * jnp.sum(w1) * jnp.sum(w2)

    paths = [("a",), ("b",)]
    for eta in (1e-3, 0.5):
        got = metrics.weight_gradient_instability(L, v, paths, eta=eta)
        np.testing.assert_allclose(np.asarray(got), [c1 / (3 * 4), c2 / 5], rtol=EXACT)
    size = metrics.weight_gradient_instability(L, v, paths, eta=0.1, normalizer="size")
    none = metrics.weight_gradient_instability(L, v, paths, eta=0.1, normalizer="none")
    np.testing.assert_allclose(np.asarray(size), [c1 / 24, c2 / 10], rtol=EXACT)
    np.testing.assert_allclose(np.asarray(none), [c1, c2], rtol=EXACT)
    with pytest.raises(ValueError):
        metrics.weight_gradient_instability(L, v, paths, eta=0.1, normalizer="rows")
    with pytest.raises(ValueError):
        metrics.weight_gradient_instability(L, v, [], eta=0.1)


def test_instability_matches_hessian_vector_product_on_a_relu_net():
    """On a real network and a small η, the finite difference is ``||H_jj g_j|| / (D_j ||g_j||)``
    computed independently by a forward-over-reverse Hessian-vector product of layer j alone."""
    model, v = _net("mlp3", num_classes=10, width=1 / 32)
    x, y = _digits(1)[0], 3
    paths = F.layer_paths(model, v)

    def L(v):
        return loss(model.apply(v, x[None])[0], y)

    got = np.asarray(metrics.weight_gradient_instability(L, v, paths, eta=1e-6))
    for j, p in enumerate(paths):
        W = influence.get_param(v, p)

        def Lw(w, p=p):
            return L(influence.set_param(v, p, w))

        g = jax.grad(Lw)(W)
        hg = jax.jvp(jax.grad(Lw), (W,), (g,))[1]
        want = float(jnp.linalg.norm(hg)) / (int(np.prod(W.shape[:-1])) * float(jnp.linalg.norm(g)))
        # a step of 1e-6 crosses no ReLU kink here: agreement to the finite difference's O(η)
        assert abs(got[j] - want) <= 1e-4 * want, (p, got[j], want)


def _shapes(name, width):
    model = get_model(name, num_classes=10, width=width)
    return model, jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))  # shapes suffice


def test_layer_paths_in_forward_order():
    model, v = _shapes("alexnet", 1 / 32)
    paths = F.layer_paths(model, v)
    assert len(paths) == 8 and paths[-1] == ("head",)
    assert influence.get_param(v, paths[0]).shape[2] == 1  # the conv that sees the image
    model, v = _shapes("rescnn4", 1 / 8)
    assert F.layer_paths(model, v)[0] == ("stem",)  # though "Conv_0" sorts first in the tree
    model, v = _shapes("vgg11", 1 / 32)
    assert len(F.layer_paths(model, v)) == 11


# --- Figure 2: the Theorem-2 curves --------------------------------------------------------


def test_fig2_theory_curves_match_the_cxc_path():
    """The eigenpair sums of fig2 for ``||g(β)||`` and ``||δ̂(β)||`` equal ``||Jᵀ e^{βH̄_zG} g_z||``
    and ``||δ̂||`` of :func:`jaxdyn.theory.theorem2` (one matrix exponential, no eigenpairs)."""
    model, v = _net("mlp3", num_classes=10, width=1 / 32)
    x = _digits(2)
    f = logits_fn(model, v)
    y = jnp.argmax(jax.vmap(f)(x), axis=1)
    steps, alpha = 6, 0.3
    res = jax.vmap(lambda xi, yi: attack(f, xi, yi, steps=steps, alpha=alpha, norm="raw", record=True))(x, y)
    tr = res.trajectory
    succ = jnp.full((2,), steps, jnp.int32)  # average over the whole trajectory
    th = fig2._theory_fn(model, steps)(v, x, y, jnp.full((2,), alpha), tr["H_z"], tr["step_norm"], succ)
    for i in range(2):
        J = input_jacobian(f, x[i])
        gz = grad_z(f(x[i]), y[i])
        w = tr["step_norm"][i, 1:steps]
        hbar = jnp.einsum("t,tij->ij", w, tr["H_z"][i, 1:steps]) / jnp.sum(w)
        for t in (1, 3, 6):
            pred = theory.theorem2(J, gz, hbar, alpha * t)
            np.testing.assert_allclose(float(th["grad_norm"][i, t]), float(jnp.linalg.norm(pred.grad)), rtol=1e-9)
            np.testing.assert_allclose(float(th["delta_norm"][i, t]), float(jnp.linalg.norm(pred.delta)), rtol=1e-9)
        lam, _ = theory.structured_eigenpairs(J, hbar)
        np.testing.assert_allclose(float(th["lambda1"][i]), float(lam[0]), rtol=1e-9)


def test_fig2_growth_curves_smoke_and_frozen_agreement():
    """All attacks run; under frozen gating the raw attack's recorded norms (logit-space path)
    are those of the network attack with gates frozen; the first step has the documented length."""
    model, v = _net("cnn3", num_classes=10, width=1 / 16)
    x = _digits(3)
    f = logits_fn(model, v)
    y = np.asarray(jnp.argmax(jax.vmap(f)(x), axis=1))
    res = fig2.growth_curves(model, v, x, y, step=0.5, max_steps=8, progress=False)
    runs = res["runs"]
    assert set(runs) == {"free", "frozen"} and set(runs["free"]) == {"raw", "l2", "linf"}
    for g in runs:
        for nm, r in runs[g].items():
            d = np.asarray(r["delta_norm"])
            assert d.shape == (3, 9) and np.all(d[:, 0] == 0)
            # first step: ℓ2 length `step` for l2 and linf, median length `step` for raw
            first = d[:, 1]
            if nm == "raw":
                np.testing.assert_allclose(np.median(first), 0.5, rtol=1e-9)
            elif nm == "l2":
                np.testing.assert_allclose(first, 0.5, rtol=1e-9)
            else:  # sign(g) is 0 where a pixel's gradient is exactly 0: at most `step`
                assert np.all(first <= 0.5 + 1e-12) and np.all(first > 0.45)
    ref = jax.vmap(lambda xi, yi: attack(f, xi, yi, steps=8, alpha=res["alpha"]["raw"], norm="raw",
                                              gating="frozen", record=True))(jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(runs["frozen"]["raw"]["grad_norm"]), np.asarray(ref.trajectory["grad_norm"]),
                               rtol=1e-8)
    s = fig2.summarize_run(runs["frozen"]["raw"])
    assert s["n"] == 3 and "grad_rate_ratio" in s


# --- Figures 3 and 4 -----------------------------------------------------------------------


def test_fig3_quantities_consistent_and_A_hat_equals_A_under_frozen_gating():
    """Under A2, ``z`` is affine in ``x`` so ``g̃`` is constant along the attack and
    ``Â = Σ_{t=1}^m α H̄_z ||g̃||² = β H̄_z ||g̃_x||² = A`` exactly; ``||Δg_W||`` computed here equals
    :func:`jaxdyn.influence.measure`'s."""
    model, v = _net("cnn3", num_classes=1, width=1 / 16)
    x = _digits(4, seed=1)
    z = jax.vmap(logits_fn(model, v))(x)[:, 0]
    y = jnp.where(z > 0, 1.0, -1.0)
    for gating in ("frozen", "free"):
        q = fig3.influence_quantities(model, v, x, y, beta=0.5, steps=5, eta=1e-2, gating=gating)
        assert q["first_layer"] == "Conv_0"
        if gating == "frozen":
            np.testing.assert_allclose(q["A_hat"], q["A"], rtol=1e-9)
        assert np.all(q["A_hat"] > 0) and np.all(q["dgw_norm"] > 0)
        np.testing.assert_allclose(q["hbar_z_gx2"], q["hbar_z"] * q["gx2"], rtol=EXACT)
        assert np.all(np.abs(q["cos_to_mean"]) <= 1 + 1e-12)
    corr = fig3.correlations(q)
    assert set(corr) == {f"{a}|{b}" for a in fig3.X_KEYS for b in fig3.Y_KEYS}


def test_fig4_groups_and_verdict_rules():
    a = np.arange(40.0)
    curve = fig4.group_curve(a, 0.01 * a, groups=10)
    assert curve["count"] == [4] * 10 and np.all(np.diff(curve["cos"]) > 0)
    d = fig4.dominance({"A_hat": a, "cos_to_mean": 0.01 * a})
    assert d["spearman_groups"]["rho"] == pytest.approx(1.0) and d["spearman_samples"]["p"] < 1e-6
    assert fig4.verdict({"m": d})["dominance"] == "holds"
    flat = fig4.dominance({"A_hat": a, "cos_to_mean": -0.01 * a})
    assert fig4.verdict({"m": flat})["dominance"] == "does not hold"
    assert fig4.verdict({"m": d, "n": flat})["dominance"] == "holds partly"
    with pytest.raises(ValueError):
        fig4.group_curve(a, a[:5])


def test_rank_verdict_and_spearman():
    r = F.spearman([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])
    assert r["rho"] == pytest.approx(1.0) and r["n"] == 5
    assert np.isnan(F.spearman([1, 1, 1], [1, 2, 3])["rho"])
    assert F.rank_verdict([{"rho": 0.5, "p": 0.01}]) == "holds"
    assert F.rank_verdict([{"rho": 0.5, "p": 0.01}, {"rho": 0.1, "p": 0.5}]) == "holds partly"
    assert F.rank_verdict([{"rho": -0.5, "p": 0.01}]) == "does not hold"
    assert F.rank_verdict([{"rho": float("nan"), "p": float("nan")}]) == "does not hold"


# --- Figure 5 ------------------------------------------------------------------------------


def test_fig5_instability_shapes_and_verdict():
    model, v = _net("cnn3", num_classes=10, width=1 / 16)
    x = _digits(2, seed=2)
    y = jnp.argmax(jax.vmap(logits_fn(model, v))(x), axis=1)
    res = fig5.instability(model, v, x, y, eta=1e-3, pgd_cfg=dict(eps=0.1, alpha=0.05, steps=2), key=jax.random.key(0))
    assert res["layers"] == ["Conv_0", "Conv_1", "head"]
    assert res["ori"].shape == (2, 3) and np.all(res["ori"] > 0) and np.all(res["adv"] > 0)
    assert np.all(res["delta_linf"] <= 0.1 + 1e-12)
    s = fig5.summarize_instability(res)
    assert s["n_layers"] == 3 and 0 <= s["layers_adv_greater"] <= 3
    v5 = fig5.verdict({"cnn3": {"standard": s}}, {})
    assert v5["layers"] == 3 and v5["sharpness"] == "does not hold"


def test_sharpness_tracker_records_on_schedule(tmp_path, data_dir):
    """The callback computes λ_max only on its schedule and its records survive in the log."""
    from jaxdyn.training import TrainConfig, create_state, make_optimizer

    cfg = TrainConfig(model="mlp3", width=1 / 64, n_train=64, batch_size=16, epochs=1, n_eval_robust=0)
    model = get_model("mlp3", width=1 / 64)
    tr = fig5.SharpnessTracker(points=2, probe=8, iters=3, pgd_cfg=dict(eps=0.1, alpha=0.05, steps=1))
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
