"""Theorem 6 measured directly (``jaxdyn.analyses.curvature``), float64: the per-layer trace of the
curvature a perturbation adds, against its dense closed form with the true ``H_h`` (a second
derivative, no Gauss-Newton step), and the verdict rule of ``fig5.theorem6``."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.analyses import curvature
from jaxdyn.analyses.metrics import LayerTest
from jaxdyn.analyses.verdicts import Verdict
from jaxdyn.core.losses import loss
from jaxdyn.core.models import cast, get_model, init_variables
from jaxdyn.core.params import layer_paths

pytestmark = pytest.mark.timeout(300)


def test_dense_layers_match_theorem6_closed_form():
    """For a dense layer, T_j = Σ_i Δa_i² tr H_h = ||Δa_j||² tr H_{h_j}, with H_h here the exact
    Hessian of the loss in the layer's output (jax.hessian through the rest of the network)."""
    model = get_model("two_layer", num_classes=10, width=0.2)
    v = cast(init_variables(model, jax.random.key(0)), jnp.float64)
    paths = layer_paths(model, v)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.uniform(size=(28, 28, 1)))
    y = 3
    _, a0 = curvature.layer_inputs(model, v, x, paths)
    _, a1 = curvature.layer_inputs(model, v, x + 0.05 * jnp.asarray(rng.normal(size=x.shape)), paths)
    das = [jnp.stack([b - a, a]) for a, b in zip(a0, a1)]
    T = np.asarray(jax.jit(lambda: curvature.row_curvature(model, v, x, y, das, paths))())
    assert T.shape == (2, len(paths)) and np.all(T > 0)
    _, hs = curvature.layer_outputs(model, v, x, paths)
    for j, p in enumerate(paths):
        def loss_of_shift(s):
            def icpt(next_fun, args, kwargs, context):
                out = next_fun(*args, **kwargs)
                hit = context.method_name == "__call__" and tuple(context.module.path) == p
                return out + s.reshape(out.shape) if hit else out

            with nn.intercept_methods(icpt):
                return loss(model.apply(v, x[None])[0], y)

        tr = float(jnp.trace(jax.hessian(loss_of_shift)(jnp.zeros(hs[j].size))))
        for k in range(2):
            np.testing.assert_allclose(T[k, j], float(jnp.sum(das[j][k] ** 2)) * tr, rtol=1e-9)


def _runs(at, rnd, n=10, layers=3, seeds=2):
    """One network "m" over ``seeds`` seeds: per-digit factors whose AT/vanilla and δ/random log-ratios
    are centred on ``at`` and ``rnd`` (σ 0.3)."""
    out = []
    for s in range(seeds):
        rng = np.random.default_rng(s)
        a = np.exp(rng.normal(0, 1, (n, layers)))
        shift = lambda c: a * np.exp(-c + rng.normal(0, 0.3, (n, layers)))  # noqa: E731
        pd = dict(standard=dict(adv=shift(at), random=a, clean=a), adversarial=dict(adv=a, random=shift(rnd), clean=a))
        out.append(dict(layers=list("abc")[:layers], per_digit=pd))
    return {"m": out}


def test_theorem6_verdict_holds():
    v, recs = curvature.verdict(_runs(1.0, 1.0))
    assert v == ("holds", 6, 0, 6) and v.verdict is Verdict.HOLDS and len(recs) == 6
    assert all(r["ci"][0] > 0 and r["n_seeds"] == 2 and r["n_digits"] == 20 for r in recs)


def test_verdict_can_fail_theorem6():
    assert curvature.verdict(_runs(-1.0, -1.0))[0].verdict == "does not hold"
    assert curvature.verdict(_runs(1.0, -1.0))[0].verdict == "holds partly"


def test_theorem6_verdict_inconclusive_and_not_testable():
    assert curvature.verdict(_runs(1.0, 0.0))[0].verdict == "inconclusive"
    assert curvature.verdict(_runs(0.0, 0.0))[0].verdict == "inconclusive"
    assert curvature.verdict({})[0].verdict == "not testable"
    assert curvature.verdict({"m": []})[0] == ("not testable", 0, 0, 0)  # every seed below the floor
    assert curvature.verdict(_runs(1.0, 1.0, n=2, seeds=1))[0].verdict == "not testable"  # too few digits
    tests = curvature.verdict_tests(_runs(1.0, -1.0, layers=2))
    assert [t for t, _ in tests][:3] == [LayerTest("m", "at_vs_vanilla", 0), LayerTest("m", "at_vs_vanilla", 1),
                                         LayerTest("m", "adv_vs_random", 0)]
    np.testing.assert_allclose(np.median(np.concatenate(tests[0][1])), 1.0, atol=0.3)


def test_summarize_sharpness_end_and_ratio():
    """End-of-training λ_max of each run's own training loss, their ratio, its mean along training;
    an architecture without both runs is left out."""
    van = [dict(lambda_clean=2.0, lambda_adv=5.0), dict(lambda_clean=4.0, lambda_adv=9.0)]
    adv = [dict(lambda_clean=1.0, lambda_adv=6.0), dict(lambda_clean=1.0, lambda_adv=12.0)]
    s = curvature.summarize_sharpness({"a": dict(standard=van, adversarial=adv), "b": dict(standard=van)})
    assert s == {"a": dict(lambda_standard_end=4.0, lambda_adversarial_end=12.0, ratio_end=3.0, mean_ratio_along=3.0)}
