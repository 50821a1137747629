"""Dtypes: integer, half-precision and non-array images get a message saying how to convert
(they used to fail deep inside JAX; a Python list got a self-contradicting message)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.attacks import multistep as attacks


from jaxdyn.core import losses

from jaxdyn.core import models

from jaxdyn.core import theory
pytestmark = pytest.mark.timeout(120)

SHAPE = (6, 6, 1)


@pytest.fixture(scope="module")
def f32():
    """A float32 MLP (flax's default parameter dtype) on small images."""
    net = models.MLP(features=(8,), num_classes=3)
    variables = net.init(jax.random.key(0), jnp.zeros((1,) + SHAPE, jnp.float32))
    return models.logits_fn(net, variables)


CALLS = {
    "attack": lambda f, x: attacks.attack(f, x, 1, steps=2, beta=0.1),
    "pgd": lambda f, x: attacks.pgd(f, x, 1, eps=0.1, alpha=0.01, steps=2, random_start=False),
    "predict": lambda f, x: theory.predict(f, x, 1, beta=0.1),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.bool_])
def test_integer_pixels(f32, call, dtype):
    x = np.ones(SHAPE, dtype)
    with pytest.raises(ValueError, match=r"floating dtype: convert with x\.astype\(jnp\.float32\).*255"):
        CALLS[call](f32, x)


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision(f32, call, dtype):
    x = jnp.ones(SHAPE, dtype)
    with pytest.raises(ValueError, match=r"half precision is not supported.*astype\(jnp\.float32\)"):
        CALLS[call](f32, x)


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("make", [lambda a: a.tolist(), lambda a: tuple(a.ravel()), lambda a: 0.5])
def test_not_an_array(f32, call, make):
    x = make(np.full(SHAPE, 0.5, np.float32))
    with pytest.raises(ValueError, match=r"must be a NumPy or JAX array, got a (list|tuple|float); convert it with "
                                         r"jnp\.asarray\(x, jnp\.float32\)"):
        CALLS[call](f32, x)


def test_complex_refused(f32):
    with pytest.raises(ValueError, match="floating dtype"):
        attacks.attack(f32, np.ones(SHAPE, np.complex64), 1, steps=2, beta=0.1)


def test_converted_input_works(f32):
    """What the messages say to do works: uint8 / 255 as float32, a list through jnp.asarray."""
    x8 = np.full(SHAPE, 128, np.uint8)
    r = attacks.attack(f32, x8.astype(jnp.float32) / 255, 1, steps=2, beta=0.1)
    assert r.delta.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(r.delta)))
    d = attacks.pgd(f32, jnp.asarray(np.full(SHAPE, 0.5).tolist(), jnp.float32), 1, eps=0.1, alpha=0.01, steps=2,
                    random_start=False)
    assert d.shape == SHAPE


def test_loss_with_integer_logits_is_refused_or_finite():
    """The loss on integer logits: either a clear error or a finite number, never garbage."""
    try:
        v = losses.loss(jnp.array([1, 2, 3]), 1)
    except (ValueError, TypeError) as e:
        assert "dtype" in str(e) or "float" in str(e)
    else:
        assert np.isfinite(float(v))
