"""jaxdyn.core.gating (assumption A2): the frozen network is the linearisation; gate flips."""

import functools

import jax
import jax.numpy as jnp
from hypothesis import given, strategies as st

import jaxdyn.testing as T
from jaxdyn.core import gating
from tests import _props
from tests.helpers import SHAPE, small_input, small_net


@functools.lru_cache(maxsize=None)
def _frozen(apply):
    @jax.jit
    def run(variables, x, d):
        f = functools.partial(apply, variables)
        fz = gating.freeze(f, x)
        J = gating.input_jacobian(f, x)
        return jax.vmap(fz)(x[None] + d), f(x)[None] + jax.vmap(lambda dd: J @ dd.ravel())(d)

    return run


@given(_props.problems(), st.integers(0, 99), st.sampled_from((1e-3, 1.0, 30.0)))
def test_property_frozen_network_is_exactly_the_linearisation(p, seed, scale):
    """A2: freeze(f, x)(x + d) == f(x) + J d for every d, even far beyond the kink margin."""
    d = scale * jax.random.normal(jax.random.key(seed), (3,) + p.x.shape, jnp.float64)
    got, want = _frozen(p.apply)(p.variables, p.x, d)
    # the rounding of J d is eps * |J| |d|, i.e. relative to the larger of |z| and |J d|
    T.assert_close(got, want, 1e-12, "frozen network != linearisation")


@given(_props.problems())
def test_property_no_gate_flips_at_the_same_input(p):
    """flip_fraction(x, x) == 0 for every network."""
    assert gating.flip_fraction(p.model.apply, p.variables, p.x, p.x) == 0


def test_gates_flip_under_a_large_perturbation():
    net, variables, f = small_net(6, 4)
    x = small_input(6)
    assert gating.flip_fraction(net.apply, variables, x, x) == 0
    big = x + 5.0 * jax.random.normal(jax.random.key(8), SHAPE, jnp.float64)
    assert gating.flip_fraction(net.apply, variables, x, big) > 0
    d = 1e-3 * jax.random.normal(jax.random.key(7), SHAPE, jnp.float64)
    J = gating.input_jacobian(f, x)
    T.assert_close(gating.freeze(f, x)(x + d), f(x) + J @ d.ravel(), 1e-12, "frozen != linearisation")
