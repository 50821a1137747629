"""Small float64 networks and inputs shared by the engine tests."""

import jax
import jax.numpy as jnp

from jaxdyn import models

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


def assert_protocol(mod, name: str, title: str) -> None:
    """``mod`` follows the experiment protocol: ``name``, ``title``, ``Config``, ``SCALES``,
    ``config``, ``run``, ``plot``, ``claims``; ``config("tiny")`` is a frozen ``Config``."""
    import dataclasses

    import pytest

    for attr in ("name", "title", "Config", "SCALES", "config", "run", "plot", "claims"):
        assert hasattr(mod, attr), attr
    assert mod.name == name and mod.title == title and set(mod.SCALES) == {"tiny", "quick", "full"}
    cfg = mod.config("tiny")
    assert dataclasses.is_dataclass(cfg) and isinstance(cfg, mod.Config) and cfg.scale == "tiny"
    assert dataclasses.fields(cfg)[0].name == "scale" and hasattr(cfg, "seed")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1
