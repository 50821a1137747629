"""Metrics: the exponential-rate fits (Fig. 2), the weight-gradient instability (Fig. 5), Spearman's ρ."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.analyses import metrics

from jaxdyn.core import params
from jaxdyn.core.losses import loss
from jaxdyn.core.models import cast, get_model, init_variables

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


def test_growth_fits_windows():
    """Per-curve fits on ``start ≤ t ≤ m_success``: an exponential up to its success step (garbage
    after it) has its rate and R² = 1; a curve that never succeeded has no fit; a rate that rises
    shows in ``rate_late > rate_early``."""
    t = jnp.arange(30.0)
    expo = jnp.where(t <= 20, 2.0 * jnp.exp(0.3 * t), -5.0)
    faster = jnp.exp(0.01 * t**2)  # rate 0.02 t: rising
    out = metrics.growth_fits(jnp.stack([expo, faster, expo]), jnp.asarray([20, 29, -1]), start=1)
    np.testing.assert_allclose(float(out["rate"][0]), 0.3, rtol=EXACT)
    np.testing.assert_allclose(float(out["r2"][0]), 1.0, rtol=EXACT)
    np.testing.assert_allclose([float(out["rate_early"][0]), float(out["rate_late"][0])], 0.3, rtol=EXACT)
    assert float(out["r2_linear"][0]) < 0.99
    assert float(out["rate_late"][1]) > 2 * float(out["rate_early"][1])
    assert all(np.isnan(float(out[k][2])) for k in out)


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
    paths = params.layer_paths(model, v)

    def L(v):
        return loss(model.apply(v, x[None])[0], y)

    got = np.asarray(metrics.weight_gradient_instability(L, v, paths, eta=1e-6))
    for j, p in enumerate(paths):
        W = params.get_param(v, p)

        def Lw(w, p=p):
            return L(params.set_param(v, p, w))

        g = jax.grad(Lw)(W)
        hg = jax.jvp(jax.grad(Lw), (W,), (g,))[1]
        want = float(jnp.linalg.norm(hg)) / (int(np.prod(W.shape[:-1])) * float(jnp.linalg.norm(g)))
        # a step of 1e-6 crosses no ReLU kink here: agreement to the finite difference's O(η)
        assert abs(got[j] - want) <= 1e-4 * want, (p, got[j], want)


# --- Spearman's ρ ----------------------------------------------------------------------------


def test_spearman():
    r = metrics.spearman([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])
    assert r["rho"] == pytest.approx(1.0) and r["n"] == 5
    assert np.isnan(metrics.spearman([1, 1, 1], [1, 2, 3])["rho"])


# --- Figure 5 controls: the paired test -------------------------------------------------------


def test_paired_log_excess_detects_excess_null_and_deficit():
    rng = np.random.default_rng(0)
    b = np.exp(rng.normal(0, 1, (12, 3)))
    a = b * np.exp(rng.normal(0, 0.2, (12, 3))) * np.asarray([3.0, 1.0, 1 / 3])
    r = metrics.paired_log_excess(a, b)
    assert r["excess"] == [True, False, False] and r["deficit"] == [False, False, True]
    assert r["p_greater"][0] < 1e-3 and r["p_less"][2] < 1e-3 and r["n"] == [12, 12, 12]
    assert r["median_ratio"][0] == pytest.approx(3.0, rel=0.2)
    # the mask keeps rows; non-positive / non-finite entries drop out; one pair decides nothing
    m = metrics.paired_log_excess(a, b, mask=np.arange(12) < 1)
    assert m["n"] == [1, 1, 1] and m["excess"] == [False] * 3 and np.isnan(m["p_greater"][0])
    a2 = a.copy()
    a2[0, 0] = np.nan
    assert metrics.paired_log_excess(a2, b)["n"][0] == 11
    with pytest.raises(ValueError):
        metrics.paired_log_excess(a[:, 0], b[:, 0])
