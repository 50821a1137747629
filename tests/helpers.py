"""Small float64 networks and inputs shared by the engine tests."""

import jax
import jax.numpy as jnp

from jaxdyn.core import models
import pytest
import dataclasses
import numpy as np

SHAPE = (6, 6, 1)  # small images: n = 36, so dense n x n references are cheap


def small_net(seed: int = 0, num_classes: int = 4, hidden=(12, 8)):
    """A random float64 ReLU MLP on ``SHAPE`` inputs and its per-example logits function."""
    net = models.MLP(features=hidden, num_classes=num_classes)
    x = jnp.zeros((1,) + SHAPE, jnp.float32)  # init in float32 (flax's param dtype), then cast
    variables = models.cast(net.init(jax.random.key(seed), x), jnp.float64)
    return net, variables, models.logits_fn(net, variables)


def small_input(seed: int = 0):
    return jax.random.uniform(jax.random.key(1000 + seed), SHAPE, jnp.float64)


def small_label(num_classes: int, seed: int = 0):
    if num_classes == 1:
        return jnp.float64(1.0 if seed % 2 == 0 else -1.0)
    return jnp.int32(seed % num_classes)


def zoo_net(name, *, num_classes, width, seed=0):
    """A random-init float64 zoo network and its variables."""
    model = models.get_model(name, num_classes=num_classes, width=width)
    return model, models.cast(models.init_variables(model, jax.random.key(seed)), jnp.float64)


def digits(n, seed=0):
    """``n`` uniform-noise 28 x 28 "digits" (float64)."""

    return jnp.asarray(np.random.default_rng(seed).uniform(size=(n, 28, 28, 1)))


def assert_protocol(mod, name: str, title: str | None = None) -> None:
    """``mod`` follows the experiment protocol (``jaxdyn.experiments``): ``name``, ``title``,
    ``Config``, ``SCALES``, ``config``, ``run``, ``plot``, ``claims``; ``config("tiny")`` is a
    frozen ``Config`` with ``scale`` first and a ``seed``; an unknown scale is refused."""


    for attr in ("name", "title", "Config", "SCALES", "config", "run", "plot", "claims"):
        assert hasattr(mod, attr), attr
    assert mod.name == name and set(mod.SCALES) == {"tiny", "quick", "full"}
    assert title is None or mod.title == title
    cfg = mod.config("tiny")
    assert dataclasses.is_dataclass(cfg) and isinstance(cfg, mod.Config) and cfg.scale == "tiny"
    assert dataclasses.fields(cfg)[0].name == "scale" and (hasattr(cfg, "seeds") or hasattr(cfg, "seed"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.scale = "quick"
    with pytest.raises(ValueError):
        mod.config("huge")


def check_protocol(mod, name):
    """:func:`assert_protocol` for a figure, which also refuses an unknown model."""

    assert_protocol(mod, name)
    assert mod.title.startswith("Figure")
    with pytest.raises(ValueError):
        mod.config("tiny", models=("nope",))
