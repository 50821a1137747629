"""jaxdyn.testing itself: the strategies draw what they promise, each checker passes on correct
input and FAILS on a deliberately wrong one (a checker that cannot fail tests nothing)."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import jaxdyn.testing as T
from jaxdyn.attacks import multistep as attacks
from jaxdyn.core import influence
from jaxdyn.core import losses
from jaxdyn.core import theory
from jaxdyn.testing import strategies as S
from tests import _props


def test_import_jaxdyn_testing_does_not_import_hypothesis():
    code = "import jaxdyn, jaxdyn.testing, sys; assert 'hypothesis' not in sys.modules; " \
           "assert 'jaxdyn.testing' not in __import__('jaxdyn').__dict__.get('_API', {}).values()"
    subprocess.run([sys.executable, "-c", code], check=True)


@given(S.networks(_props.specs()), S.seeds)
def test_property_strategies_draw_valid_networks_inputs_and_labels(net, seed):
    """Every catalogue network maps its input shape to [C] float64, and labels fit the head."""
    model, variables = net
    spec = model.spec
    x = T.random_input(seed, spec.shape)
    z = model.apply(variables, x[None])[0]
    assert z.shape == (spec.num_classes,) and z.dtype == jnp.float64
    assert T.kink_margin(model, variables, x) > 0
    y = T.label_for(spec.num_classes, seed)
    assert float(losses.loss(z, y)) >= 0


def _softplus_net(seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    W1 = jax.random.normal(k1, (36, 8), jnp.float64)
    W2 = jax.random.normal(k2, (8, 3), jnp.float64)
    return lambda x: jax.nn.softplus(x.ravel() @ W1) @ W2


def test_piecewise_affine_fails_on_a_smooth_network():
    x = T.random_input(0)
    with pytest.raises(AssertionError, match="piecewise affine"):
        T.assert_piecewise_affine(_softplus_net(), x, jnp.int32(1))


@given(S.seeds, S.inputs())
def test_property_piecewise_affine_passes_on_plain_relu_functions(seed, x):
    f, params = T.plain_mlp(seed, widths=(16, 4))
    T.assert_piecewise_affine(f, x, params=params, radius=1e-7)


@given(st.sampled_from(("linf", "l2")), st.floats(0.01, 2.0), S.seeds)
def test_property_in_ball_passes_inside_and_fails_outside(norm, eps, seed):
    """assert_in_ball: a point on the sphere passes, 1e-6 beyond it fails; so does leaving the box."""
    d = np.asarray(jax.random.normal(jax.random.key(seed), (6, 6, 1), jnp.float64))
    d = d / (np.abs(d).max() if norm == "linf" else np.linalg.norm(d)) * eps
    T.assert_in_ball(d, eps, norm)
    with pytest.raises(AssertionError, match="outside its"):
        T.assert_in_ball(d * (1 + 1e-6), eps, norm)
    with pytest.raises(AssertionError, match="box"):
        T.assert_in_ball(d, eps, norm, clip=(0.0, 1.0), x=np.full(d.shape, 3.0))


def test_batch_equals_loop_fails_on_an_impure_function():
    traces = []

    def impure(x):  # bakes in how often it was traced: the batched and the looped runs differ
        traces.append(1)
        return x + len(traces)

    with pytest.raises(AssertionError, match="vmap != loop"):
        T.assert_batch_equals_loop(impure, jnp.arange(6.0).reshape(3, 2))
    T.assert_batch_equals_loop(jnp.sin, jnp.arange(6.0).reshape(3, 2))


def test_no_retrace_fails_on_a_static_sweep():
    def step(x, beta):
        return x * beta

    T.assert_no_retrace(step, [(jnp.ones(3), jnp.float64(b)) for b in (0.1, 0.2)])
    with pytest.raises(AssertionError, match="traced 2 times"):
        T.assert_no_retrace(step, [(jnp.ones(3), b) for b in (0.1, 0.2)], static_argnames=("beta",))


def _fresh(apply):  # a new f: the jitted cores trace again (monkeypatched code is seen)
    return lambda v, x: apply(v, x)


@pytest.mark.slow  # default-suite time: the mutation check shows the default tests catch a wrong δ̂
def test_theorem2_paths_and_c3_fail_on_a_wrong_theorem2(monkeypatch):
    spec = _props.FEW[1]
    _, v = T.build(spec, 1)
    x, y = T.random_input(1, spec.shape), T.label_for(spec.num_classes, 1)
    real = theory.theorem2
    monkeypatch.setattr(theory, "theorem2", lambda *a: theory.Prediction(*(1.0001 * t for t in real(*a))))
    with pytest.raises(AssertionError, match="Theorem 2"):
        T.assert_theorem2_paths_agree(_fresh(T.apply_fn(spec)), x, y, params=v, beta=0.3)
    with pytest.raises(AssertionError, match="C.3"):
        T.assert_c3_limits(T.logits(spec, v), x, y)


def test_frozen_equals_logit_space_fails_on_a_wrong_logit_attack(monkeypatch):
    spec = _props.FEW[0]
    _, v = T.build(spec, 1)
    real = attacks.logit_space_attack
    monkeypatch.setattr(attacks, "logit_space_attack", lambda *a, **k: real(*a, **k)._replace(
        delta=(1 + 1e-7) * real(*a, **k).delta))
    with pytest.raises(AssertionError, match="A2"):
        T.assert_frozen_equals_logit_space(_fresh(T.apply_fn(spec)), T.random_input(1), jnp.float64(1.0), params=v,
                                           beta=0.5, steps=5)


def test_quadratic_loss_exact_fails_on_a_wrong_theorem1(monkeypatch):
    spec = _props.FEW[0]
    _, v = T.build(spec, 2)
    real = theory.theorem1
    monkeypatch.setattr(theory, "theorem1", lambda *a: theory.Prediction(*(1.0001 * t for t in real(*a))))
    with pytest.raises(AssertionError, match="Theorem 1"):
        T.assert_quadratic_loss_exact(_fresh(T.apply_fn(spec)), T.random_input(2), T.QuadraticLoss.random(0, 1),
                                      beta=0.1, params=v, steps=(5, 50))


@settings(max_examples=4)  # eager Jacobian-vector products: ~1 s an example
@given(_props.problems(heads=(1,)), st.floats(0.1, 1.5))
def test_property_eqs_9_to_11_exact_for_quadratic_loss(p, A):
    """Theorems 3-5 (Eqs. 9-11) hold to rounding under A2 for a loss quadratic in z, on random
    binary networks with a dense or conv first layer."""
    z_of, W, _ = influence.first_layer_fn(p.model, p.variables, path=("first",))
    T.assert_eqs_9_to_11_exact(z_of, W, p.x, A=A)


def test_eqs_9_to_11_checker_fails_on_a_wrong_eq9(monkeypatch):
    model, v = T.build(_props.FEW[0], 3)
    z_of, W, _ = influence.first_layer_fn(model, v, path=("first",))
    real = influence.theorem3
    monkeypatch.setattr(influence, "theorem3", lambda **k: (1 + 1e-6) * real(**k))
    with pytest.raises(AssertionError, match="Eq. 9"):
        T.assert_eqs_9_to_11_exact(z_of, W, T.random_input(3))


def test_lemma1_and_loss_checkers_fail_on_wrong_curvature(monkeypatch):
    z = jnp.asarray([0.3, -1.0, 2.0])
    with pytest.raises(AssertionError, match="jax.grad|jax.hessian"):
        T.assert_loss_derivatives(z, jnp.int32(0), loss_fn=lambda z, y: 1.001 * losses.loss(z, y))
    monkeypatch.setattr(losses, "hessian_z", lambda z, y: -jnp.eye(z.shape[0], dtype=z.dtype))
    with pytest.raises(AssertionError, match="Lemma 1"):
        T.assert_lemma1(z, jnp.int32(0))
    with pytest.raises(AssertionError, match="Lemma 1"):
        T.assert_lemma1(jnp.asarray([2.0]), jnp.float64(1.0))


def test_linf_checker_fails_on_a_shrunk_step(monkeypatch):
    spec = _props.FEW[0]
    _, v = T.build(spec, 4)
    real = attacks.direction
    monkeypatch.setattr(attacks, "direction", lambda g, norm: (0.999 if norm == "linf" else 1.0) * real(g, norm))
    with pytest.raises(AssertionError, match="l_inf"):
        T.assert_linf_steps_exact(_fresh(T.apply_fn(spec)), T.random_input(4), jnp.float64(1.0), params=v, alpha=0.01)


def test_l2_law_fails_on_the_sphere_and_on_a_scaled_gaussian():
    n = 16
    on_sphere = lambda k: (u := jax.random.normal(k, (n,), jnp.float64)) / jnp.linalg.norm(u)  # noqa: E731
    with pytest.raises(AssertionError, match="radius law"):
        T.assert_l2_start_uniform(on_sphere, n, 1.0)
    gauss = lambda k: jnp.clip(jax.random.normal(k, (n,), jnp.float64) / 4.0, -1, 1) / 2  # noqa: E731
    with pytest.raises(AssertionError, match="radius law|outside"):
        T.assert_l2_start_uniform(gauss, n, 1.0)
    shifted = lambda k: 0.5 * (attacks.sample_ball(k, jnp.zeros(n), 1.0, "l2") + 0.2 / n**0.5)  # noqa: E731
    with pytest.raises(AssertionError, match="isotropic|radius law"):
        T.assert_l2_start_uniform(shifted, n, 1.0)


def test_netspec_rejects_bad_specs():
    with pytest.raises(ValueError):
        T.NetSpec(kind="rnn")
    with pytest.raises(ValueError):
        T.NetSpec(depth=0)
