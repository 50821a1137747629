"""Shapes: one example where one is expected, said in the message (before the checks, [784] into a CNN
failed inside Flax naming a parameter, [1, 28, 28, 1] ran silently on MLPs, predict(steps=0)
raised ZeroDivisionError)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._internal import checks as _checks

from jaxdyn.attacks import multistep as attacks

from jaxdyn.core import models

from jaxdyn.core import theory
from tests.helpers import digits, zoo_net

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def nets():
    mlp = models.logits_fn(*zoo_net("mlp3", num_classes=10, width=0.0625))
    cnn = models.logits_fn(*zoo_net("cnn3", num_classes=10, width=0.0625))
    return {"mlp3": mlp, "cnn3": cnn}, digits(1)[0]


CALLS = {
    "attack": lambda f, x: attacks.attack(f, x, 1, steps=2, beta=0.1),
    "pgd": lambda f, x: attacks.pgd(f, x, 1, eps=0.1, alpha=0.01, steps=2, random_start=False),
    "logit_space_attack": lambda f, x: attacks.logit_space_attack(f, x, 1, steps=2, beta=0.1),
    "predict": lambda f, x: theory.predict(f, x, 1, beta=0.1),
    "logits": lambda f, x: f(x),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("net", ["mlp3", "cnn3"])
@pytest.mark.parametrize("shape", [(784,), (1, 28, 28, 1), (4, 28, 28, 1), (28, 28)])
def test_not_one_example_says_so(nets, call, net, shape):
    fs, x = nets
    with pytest.raises(ValueError, match="pass one example.*28, 28, 1.*vmap"):
        CALLS[call](fs[net], x.reshape(shape) if np.prod(shape) == 784 else jnp.zeros(shape, x.dtype))


@pytest.mark.parametrize("call", ["attack", "predict"])
def test_wrong_image_size_names_input(nets, call):
    """A [14, 14, 1] image into a network built for 28 x 28: the message is about x, not about
    a Flax parameter."""
    fs, x = nets
    with pytest.raises(ValueError, match=r"cannot take x of shape \[14, 14, 1\].*pass one example"):
        CALLS[call](fs["mlp3"], x[:14, :14])


def test_scalar_x_refused(nets):
    fs, _ = nets
    with pytest.raises(ValueError, match="one example"):
        attacks.attack(fs["mlp3"], jnp.float64(0.5), 1, steps=2, beta=0.1)


@pytest.mark.parametrize("steps", [0, -3, 2.0, True, np.float64(3)])
def test_bad_steps(nets, steps):
    """``predict(..., steps=0)`` raised ZeroDivisionError; every bad ``steps`` is a ValueError."""
    fs, x = nets
    with pytest.raises(ValueError, match="steps must be"):
        theory.predict(fs["mlp3"], x, 1, beta=0.1, steps=steps)
    with pytest.raises(ValueError, match="steps must be"):
        attacks.attack(fs["mlp3"], x, 1, steps=steps, beta=0.1)


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_beta(nets, beta):
    fs, x = nets
    with pytest.raises(ValueError, match="beta must be finite and > 0"):
        theory.predict(fs["mlp3"], x, 1, beta=beta)
    with pytest.raises(ValueError, match="beta must be finite and > 0"):
        attacks.attack(fs["mlp3"], x, 1, steps=2, beta=beta)


def test_hbar_of_wrong_size(nets):
    fs, x = nets
    with pytest.raises((ValueError, TypeError)):
        theory.predict(fs["mlp3"], x, 1, jnp.eye(3, dtype=x.dtype), beta=0.1)


def test_vmap_of_one_example_works(nets):
    """The fix the messages suggest: ``jax.vmap`` the per-example function."""
    fs, _ = nets
    xs = digits(2)
    d = jax.vmap(lambda x, y: attacks.pgd(fs["mlp3"], x, y, eps=0.1, alpha=0.05, steps=1,
                                          random_start=False))(xs, jnp.array([1, 2]))
    assert d.shape == xs.shape and bool(jnp.all(jnp.isfinite(d)))


def test_check_batch_shapes():
    x = np.zeros((3, 28, 28, 1))
    _checks.check_batch(x, np.zeros(3, np.int32))
    with pytest.raises(ValueError, match=r"\[B, 28, 28, 1\]"):
        _checks.check_batch(x.reshape(3, 784), np.zeros(3, np.int32))
    with pytest.raises(ValueError, match=r"y must have shape \[3\]"):
        _checks.check_batch(x, np.zeros(4, np.int32))
