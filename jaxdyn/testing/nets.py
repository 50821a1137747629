"""Small random piecewise-affine networks and losses for property tests (no hypothesis needed).

A network is described by a frozen, hashable :class:`NetSpec`; :func:`build` gives the Flax
module and float64 variables for a seed, :func:`apply_fn` a *stable* ``apply(variables, x) -> z``
per spec (so a jitted check compiles once per architecture, not once per draw), and
:func:`plain_mlp` a network written as a plain JAX function ``f(x) -> z``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdyn.core.models import avg_pool, relu

__all__ = ["SHAPES", "HEADS", "NetSpec", "ARCHS", "RandomNet", "build", "apply_fn", "logits",
           "plain_mlp", "kink_margin", "QuadraticLoss", "random_input", "label_for"]

#: the input shapes the strategies draw from (few shapes: few compilations); ``n = 36`` and ``32``
SHAPES = ((6, 6, 1), (4, 4, 2))
#: head sizes: ``1`` is the binary (sigmoid) head, ``C >= 2`` softmax
HEADS = (1, 3, 10)


@dataclasses.dataclass(frozen=True)
class NetSpec:
    """A small ReLU network: every choice that keeps it piecewise affine in ``x``.

    ``kind``: ``"dense"`` (flatten, then dense layers) or ``"conv"`` (3x3 SAME convs, then a 2x2
    pool and a dense head); ``depth`` hidden layers of ``width`` units/channels; ``pool``:
    ``"avg"``, ``"max"`` or ``"none"`` (conv only); ``residual``: hidden layers after the first
    are ``h <- relu(h + layer(h))``; ``batchnorm``: batch-norm in inference mode (random running
    statistics) after each hidden layer; ``bias``: layers carry (random, non-zero) biases.
    """

    kind: str = "dense"
    depth: int = 2
    width: int = 8
    num_classes: int = 3
    pool: str = "none"
    residual: bool = False
    batchnorm: bool = False
    bias: bool = True
    shape: tuple = SHAPES[0]

    def __post_init__(self):
        if self.kind not in ("dense", "conv") or self.pool not in ("none", "avg", "max"):
            raise ValueError(f"bad NetSpec {self}")
        if self.depth < 1 or self.width < 1 or self.num_classes < 1:
            raise ValueError(f"bad NetSpec {self}")


#: a catalogue of architectures covering every feature (the default draws pick from it)
ARCHS = (
    NetSpec("dense", depth=2, width=8),
    NetSpec("dense", depth=3, width=6, residual=True, batchnorm=True),
    NetSpec("dense", depth=1, width=10, bias=False),
    NetSpec("conv", depth=1, width=3, pool="avg"),
    NetSpec("conv", depth=2, width=3, pool="max", residual=True, batchnorm=True),
)


class RandomNet(nn.Module):
    """The network of a :class:`NetSpec`; ``apply(variables, x: [B, *shape]) -> [B, C]``."""

    spec: NetSpec

    @nn.compact
    def __call__(self, x, train: bool = False):
        s = self.spec
        b_init = nn.initializers.normal(0.3)
        kw = dict(use_bias=s.bias, bias_init=b_init, kernel_init=nn.initializers.he_normal())

        def layer(i, h):
            if s.kind == "dense":
                out = nn.Dense(s.width, name="first" if i == 0 else None, **kw)(h)
            else:
                out = nn.Conv(s.width, (3, 3), name="first" if i == 0 else None, **kw)(h)
            if s.batchnorm:
                out = nn.BatchNorm(use_running_average=not train)(out)
            return out

        h = x.reshape((x.shape[0], -1)) if s.kind == "dense" else x
        h = relu(self, layer(0, h))
        for i in range(1, s.depth):
            h = relu(self, h + layer(i, h)) if s.residual else relu(self, layer(i, h))
        if s.kind == "conv":
            if s.pool == "avg":
                h = avg_pool(h, 2)
            elif s.pool == "max":
                h = nn.max_pool(h, (2, 2), strides=(2, 2))
            h = h.reshape((h.shape[0], -1))
        return nn.Dense(s.num_classes, name="head", use_bias=s.bias, bias_init=b_init)(h)


def _randomise_batch_stats(variables, key):
    """Non-trivial inference-mode batch-norm: random running means and variances."""
    if "batch_stats" not in variables:
        return variables
    leaves, tree = jax.tree.flatten_with_path(variables["batch_stats"])
    keys = jax.random.split(key, len(leaves))
    new = []
    for k, (path, v) in zip(keys, leaves):
        if jax.tree_util.keystr(path).endswith("['var']"):
            new.append(jax.random.uniform(k, v.shape, v.dtype, 0.5, 2.0))
        else:
            new.append(0.2 * jax.random.normal(k, v.shape, v.dtype))
    return {**variables, "batch_stats": jax.tree.unflatten(tree, new)}


@functools.lru_cache(maxsize=None)
def _init(spec: NetSpec):
    model = RandomNet(spec)

    @jax.jit
    def init(seed):
        k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
        v = model.init(k1, jnp.zeros((1,) + spec.shape, jnp.float32))
        v = {k: a for k, a in v.items() if k != "gates"}
        if "params" in v:  # random batch-norm scale and shift too
            v = dict(v)
            leaves, tree = jax.tree.flatten_with_path(v["params"])
            ks = jax.random.split(k3, len(leaves))
            v["params"] = jax.tree.unflatten(tree, [
                a + 0.2 * jax.random.normal(kk, a.shape, a.dtype) if "BatchNorm" in jax.tree_util.keystr(p) else a
                for kk, (p, a) in zip(ks, leaves)])
        v = _randomise_batch_stats(v, k2)
        return jax.tree.map(lambda a: a.astype(jnp.float64), v)

    return model, init


def build(spec: NetSpec, seed: int = 0):
    """``(model, variables)``: the Flax module of ``spec`` and float64 variables drawn from ``seed``.

    Needs ``jax_enable_x64`` (float64 is what the theory checks need)."""
    model, init = _init(spec)
    return model, init(seed)


@functools.lru_cache(maxsize=None)
def apply_fn(spec: NetSpec) -> Callable:
    """A per-spec *stable* ``apply(variables, x) -> z: [C]`` for one example: pass it (with the
    variables as ``params``) to the checkers to compile once per architecture."""
    model = RandomNet(spec)

    def apply(variables, x):
        return model.apply(variables, x[None])[0]

    return apply


def logits(spec: NetSpec, variables) -> Callable:
    """``f(x) -> z``: the per-example logits with ``variables`` closed over."""
    return functools.partial(apply_fn(spec), variables)


def plain_mlp(seed: int, shape=SHAPES[0], widths=(8, 8), num_classes: int = 3, dtype=jnp.float64):
    """A ReLU MLP written as a plain JAX function: returns ``(f, params)`` with
    ``f(params, x) -> z: [C]`` (bind it with ``functools.partial(f, params)``)."""
    n = 1
    for d in shape:
        n *= d
    dims = (n, *widths, num_classes)
    keys = jax.random.split(jax.random.key(seed), 2 * len(dims))
    params = [(jax.random.normal(keys[2 * i], (a, b), dtype) * jnp.sqrt(jnp.asarray(2.0 / a, dtype)),
               0.3 * jax.random.normal(keys[2 * i + 1], (b,), dtype))
              for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))]
    return _plain_apply, params


def _plain_apply(params, x):
    h = jnp.ravel(x)
    for W, b in params[:-1]:
        h = jax.nn.relu(h @ W + b)
    W, b = params[-1]
    return h @ W + b


def kink_margin(model: nn.Module, variables, x: jax.Array) -> float:
    """Distance (in pre-activation units) of ``x`` to the nearest ReLU kink: ``min |h|`` over
    every gate the model records (:func:`jaxdyn.core.models.relu`). Perturbations much smaller than
    this (relative to the Jacobian's scale) flip no gate. Max-pool ties are not counted (they
    have probability zero for continuous draws)."""
    _, state = model.apply(variables, x[None], mutable=["gates"])
    leaves = jax.tree.leaves(state.get("gates", {}))
    return float(min(jnp.min(jnp.abs(h)) for h in leaves))


class QuadraticLoss(NamedTuple):
    """``L(z, y) = ½ (z - c)ᵀ A (z - c)``: constant ``H_z = A`` (``A`` PSD), so Theorems 1-5 are
    exact for it under A2. A pytree: pass it through ``jit`` as an argument. ``y`` is ignored."""

    A: jax.Array
    c: jax.Array

    def __call__(self, z, y):
        d = z - self.c
        return 0.5 * d @ self.A @ d

    @classmethod
    def random(cls, seed: int, num_classes: int, dtype=jnp.float64):
        k1, k2 = jax.random.split(jax.random.key(seed))
        B = jax.random.normal(k1, (num_classes, num_classes), dtype)
        A = B @ B.T / num_classes + 0.5 * jnp.eye(num_classes, dtype=dtype)
        return cls(A, jax.random.normal(k2, (num_classes,), dtype) + 3.0)


def random_input(seed: int, shape=SHAPES[0], dtype=jnp.float64) -> jax.Array:
    """A uniform ``[0, 1]`` image of ``shape``."""
    return jax.random.uniform(jax.random.key(10_000 + seed), shape, dtype)


def label_for(num_classes: int, seed: int):
    """A valid label: ``±1.0`` (float64) for the binary head, an ``int32`` class otherwise."""
    if num_classes == 1:
        return jnp.float64(1.0 if seed % 2 == 0 else -1.0)
    return jnp.int32(seed % num_classes)
