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


def _summary(at, rnd, n=3):
    """One network's comparisons from one-sided p-values: ``"+"`` a strong excess, ``"-"`` a strong
    deficit, ``"0"`` neither."""
    p = {"+": (1e-5, 1 - 1e-5), "-": (1 - 1e-5, 1e-5), "0": (0.4, 0.6)}
    one = lambda k: dict(p_greater=[p[k][0]] * n, p_less=[p[k][1]] * n)  # noqa: E731
    return {"m": dict(at_vs_vanilla=one(at), adv_vs_random=one(rnd))}


def test_theorem6_verdict_holds():
    v = curvature.verdict(_summary("+", "+"))
    assert v == ("holds", 6, 0, 6) and v.verdict is Verdict.HOLDS and v.n_tests == 6


def test_verdict_can_fail_theorem6():
    assert curvature.verdict(_summary("-", "-"))[0] == "does not hold"
    assert curvature.verdict(_summary("+", "-"))[0] == "holds partly"
    # real numbers: a control that matches the adversarial factor gives no excess
    a = np.exp(np.random.default_rng(0).normal(size=(12, 2)))
    s = curvature.summarize(dict(adv=a, random=a, clean=a, delta_l2=np.ones(12), layers=["a", "b"]),
                            dict(adv=a, random=a * 1.01, clean=a, delta_l2=np.ones(12), layers=["a", "b"]))
    assert curvature.verdict({"m": s})[0] != "holds"


def test_theorem6_verdict_inconclusive_and_not_testable():
    assert curvature.verdict(_summary("+", "0"))[0] == "inconclusive"
    assert curvature.verdict(_summary("0", "0"))[0] == "inconclusive"
    assert curvature.verdict({})[0] == "not testable"
    assert curvature.verdict(_summary("-", "-"), testable={"m": False}) == ("not testable", 0, 0, 0)
    tests, vs = curvature.verdict_tests(_summary("+", "-", n=2))
    assert tests[0] == LayerTest("m", "at_vs_vanilla", 0) and tests[2] == LayerTest("m", "adv_vs_random", 0)
    assert vs == ["holds", "holds", "does not hold", "does not hold"]


def test_summarize_sharpness_end_and_ratio():
    """End-of-training λ_max of each run's own training loss, their ratio, its mean along training;
    an architecture without both runs is left out."""
    van = [dict(lambda_clean=2.0, lambda_adv=5.0), dict(lambda_clean=4.0, lambda_adv=9.0)]
    adv = [dict(lambda_clean=1.0, lambda_adv=6.0), dict(lambda_clean=1.0, lambda_adv=12.0)]
    s = curvature.summarize_sharpness({"a": dict(standard=van, adversarial=adv), "b": dict(standard=van)})
    assert s == {"a": dict(lambda_standard_end=4.0, lambda_adversarial_end=12.0, ratio_end=3.0, mean_ratio_along=3.0)}
