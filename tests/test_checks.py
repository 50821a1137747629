"""Bad input raises clear errors before any work (jaxdyn._internal.checks and its callers)."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._internal import checks as _checks

from jaxdyn.attacks import multistep as attacks

from jaxdyn.analyses import metrics

from jaxdyn.core import theory
from tests.helpers import small_input, small_net


@pytest.fixture(scope="module")
def fx():
    _, _, f = small_net(18, 3)
    return f, small_input(18)


@pytest.mark.parametrize("kwargs,match", [
    (dict(beta=0.0, steps=5), "beta"),
    (dict(beta=-1.0, steps=5), "beta"),
    (dict(beta=1.0, steps=0), "steps"),
    (dict(beta=1.0, steps=2.5), "steps"),
    (dict(beta=1.0, steps=5, norm="l3"), "norm"),
    (dict(beta=1.0, steps=5, gating="half"), "gating"),
    (dict(beta=1.0, alpha=0.1, steps=5), "exactly one"),
    (dict(beta=1.0, steps=5, eps=-0.1), "eps"),
    (dict(beta=1.0, steps=5, random_start=True), "random_start"),
])
def test_attack_rejects_bad_arguments(fx, kwargs, match):
    f, x = fx
    with pytest.raises(ValueError, match=match):
        attacks.attack(f, x, 0, **kwargs)


def test_bad_examples_raise(fx):
    f, x = fx
    with pytest.raises(ValueError, match="NaN"):
        attacks.attack(f, x.at[0, 0, 0].set(jnp.nan), 0, beta=1.0, steps=5)
    with pytest.raises(ValueError, match="scalar label"):
        attacks.attack(f, x, jnp.zeros(3, jnp.int32), beta=1.0, steps=5)
    with pytest.raises(ValueError, match="beta"):
        theory.predict(f, x, 0, beta=-0.1)
    with pytest.raises(ValueError, match="shape"):
        metrics.kappa(jnp.ones((2, 3)), jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="norm"):
        attacks.pgd(f, x, 0, eps=0.1, alpha=0.1, steps=2, norm="raw")


def test_check_batch():
    with pytest.raises(ValueError, match=r"\[B, 28, 28, 1\]"):
        _checks.check_batch(np.zeros((2, 28, 28)), np.zeros(2))
    with pytest.raises(ValueError, match=r"y must have shape \[2\]"):
        _checks.check_batch(np.zeros((2, 28, 28, 1)), np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        _checks.check_batch(np.full((1, 28, 28, 1), np.inf), np.zeros(1))
    _checks.check_batch(np.zeros((2, 28, 28, 1)), np.zeros(2))  # a good batch passes
