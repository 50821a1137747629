"""Flax Linen ReLU networks and the model registry.

Every model maps ``[B, 28, 28, 1] -> [B, C]`` via ``model.apply(variables, x)`` and is piecewise
affine in ``x`` (ReLU, dense, conv, pooling, skip connections, batch-norm in inference mode).
ReLU gates go through :func:`relu`, which records pre-activations in the ``"gates"`` collection
so that :func:`jaxdyn.core.gating.flip_fraction` can count flipped gates.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
    "relu", "TwoLayer", "MLP", "CNN", "ResCNN", "AlexNet", "VGG", "ResNet",
    "get_model", "register", "model_names", "logits_fn", "cast", "param_count", "init_variables",
]


def relu(module: nn.Module, h: jax.Array) -> jax.Array:
    """ReLU that records its pre-activation ``h`` (collection ``"gates"``) for gate counting."""
    module.sow("gates", "pre", h)
    return nn.relu(h)


class TwoLayer(nn.Module):
    """The paper's two-layer net, Eq. (3): ``z = W2^T ReLU(W1^T x + b1) + b2``."""

    hidden: int = 100
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape((x.shape[0], -1))
        h = nn.Dense(self.hidden, name="first")(x)
        return nn.Dense(self.num_classes, name="head")(relu(self, h))


class MLP(nn.Module):
    """ReLU MLP; ``features`` lists the hidden widths (linear layers = len(features) + 1)."""

    features: Sequence[int] = (256, 128)
    num_classes: int = 10
    use_bias: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape((x.shape[0], -1))
        for i, f in enumerate(self.features):
            x = relu(self, nn.Dense(f, use_bias=self.use_bias, name="first" if i == 0 else None)(x))
        return nn.Dense(self.num_classes, use_bias=self.use_bias, name="head")(x)


_he = nn.initializers.he_normal()


def avg_pool(x: jax.Array, window: int) -> jax.Array:
    """``window x window`` average pool with stride ``window`` (VALID). Unlike ``nn.avg_pool`` it
    keeps the dtype of ``x`` under strict dtype promotion with x64 enabled."""
    s = nn.pool(x, 0.0, jax.lax.add, (window, window), (window, window), "VALID")
    return s * jnp.asarray(1.0 / (window * window), x.dtype)


class CNN(nn.Module):
    """Plain ReLU CNN: ``stages[s]`` lists the channels of the 3x3 convs (SAME, stride 1) of stage
    ``s``; every stage ends with a 2x2 average pool; then one dense head. Layers counted by the
    registry names: ``sum(len(stage)) + 1``."""

    stages: Sequence[Sequence[int]] = ((32,), (64,))
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        for stage in self.stages:
            for c in stage:
                x = relu(self, nn.Conv(c, (3, 3), kernel_init=_he)(x))
            x = avg_pool(x, 2)
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.num_classes, name="head")(x)


class ResCNN(nn.Module):
    """CNN with identity skip connections: a 3x3 conv stem (``channels``) at 28x28, a 2x2 average
    pool, ``blocks`` residual convs ``h <- relu(h + conv(h))`` at 14x14, a 2x2 average pool and a
    dense head (``blocks + 2`` weight layers). The residual convs start with variance
    ``2 / (fan_in * blocks)`` so that the signal does not blow up with depth (Fixup-style)."""

    channels: int = 32
    blocks: int = 1
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = relu(self, nn.Conv(self.channels, (3, 3), kernel_init=_he, name="stem")(x))
        x = avg_pool(x, 2)
        init = nn.initializers.variance_scaling(2.0 / max(self.blocks, 1), "fan_in", "truncated_normal")
        for _ in range(self.blocks):
            x = relu(self, x + nn.Conv(self.channels, (3, 3), kernel_init=init)(x))
        x = avg_pool(x, 2)
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.num_classes, name="head")(x)


class AlexNet(nn.Module):
    """AlexNet for 28x28x1 (5 convs + 3 dense = 8 weight layers, no dropout, no LRN):
    conv5x5(64)-maxpool2-conv5x5(192)-maxpool2-conv3x3(384)-conv3x3(256)-conv3x3(256)-
    maxpool3/2 (7->3)-dense(4096)-dense(4096)-dense(C). ``conv``/``dense`` are the widths."""

    conv: Sequence[int] = (64, 192, 384, 256, 256)
    dense: Sequence[int] = (4096, 4096)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        c1, c2, c3, c4, c5 = self.conv
        x = relu(self, nn.Conv(c1, (5, 5), kernel_init=_he)(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = relu(self, nn.Conv(c2, (5, 5), kernel_init=_he)(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        for c in (c3, c4, c5):
            x = relu(self, nn.Conv(c, (3, 3), kernel_init=_he)(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        for d in self.dense:
            x = relu(self, nn.Dense(d, kernel_init=_he)(x))
        return nn.Dense(self.num_classes, name="head")(x)


class VGG(nn.Module):
    """VGG without batch-norm. ``cfg`` lists conv channels (3x3, SAME) and ``"M"`` for a 2x2 max
    pool; then the dense layers ``dense`` and the head. VGG-11 on 28x28: 8 convs, 4 pools
    (28->14->7->3->1), dense 512-512-C (the CIFAR-size classifier), 11 weight layers."""

    cfg: Sequence = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512)
    dense: Sequence[int] = (512, 512)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        for v in self.cfg:
            if v == "M":
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            else:
                x = relu(self, nn.Conv(int(v), (3, 3), kernel_init=_he)(x))
        x = x.reshape((x.shape[0], -1))
        for d in self.dense:
            x = relu(self, nn.Dense(d, kernel_init=_he)(x))
        return nn.Dense(self.num_classes, name="head")(x)


def _bn(train: bool, name=None):
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs, batch-norm, projection shortcut when the shape changes)."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.Conv(self.features, (3, 3), (self.strides,) * 2, use_bias=False, kernel_init=_he)(x)
        h = relu(self, _bn(train)(h))
        h = nn.Conv(self.features, (3, 3), use_bias=False, kernel_init=_he)(h)
        h = _bn(train)(h)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), (self.strides,) * 2, use_bias=False, kernel_init=_he)(x)
            x = _bn(train)(x)
        return relu(self, h + x)


class Bottleneck(nn.Module):
    """ResNet bottleneck block (1x1, 3x3, 1x1 convs; output ``4 * features`` channels)."""

    features: int
    strides: int = 1
    expansion: int = 4

    @nn.compact
    def __call__(self, x, train: bool = False):
        out = self.features * self.expansion
        h = relu(self, _bn(train)(nn.Conv(self.features, (1, 1), use_bias=False, kernel_init=_he)(x)))
        h = nn.Conv(self.features, (3, 3), (self.strides,) * 2, use_bias=False, kernel_init=_he)(h)
        h = relu(self, _bn(train)(h))
        h = _bn(train)(nn.Conv(out, (1, 1), use_bias=False, kernel_init=_he)(h))
        if self.strides != 1 or x.shape[-1] != out:
            x = nn.Conv(out, (1, 1), (self.strides,) * 2, use_bias=False, kernel_init=_he)(x)
            x = _bn(train)(x)
        return relu(self, h + x)


class ResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016) for 28x28x1: 3x3 stem conv (no max pool), four stages
    with strides 1, 2, 2, 2 (28->28->14->7->4), global average pool, dense head. Batch-norm runs
    in inference mode unless ``train=True`` (then call with ``mutable=["batch_stats"]``)."""

    block: str = "basic"  # "basic" | "bottleneck"
    layers: Sequence[int] = (2, 2, 2, 2)
    features: Sequence[int] = (64, 128, 256, 512)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(self.features[0], (3, 3), use_bias=False, kernel_init=_he, name="stem")(x)
        x = relu(self, _bn(train)(x))
        Block = BasicBlock if self.block == "basic" else Bottleneck
        for s, (n, f) in enumerate(zip(self.layers, self.features)):
            for i in range(n):
                x = Block(f, strides=2 if (s > 0 and i == 0) else 1)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(x)


_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    """Decorator: register a factory ``(num_classes, width) -> nn.Module`` under ``name``."""

    def deco(factory):
        _REGISTRY[name] = factory
        return factory

    return deco


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def get_model(name: str, *, num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """Build a registered model. ``num_classes=1`` gives the binary (sigmoid) head; ``width``
    scales every hidden width (``width < 1`` for quick CPU runs)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return _REGISTRY[name](num_classes=num_classes, width=width)


def _w(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


@register("two_layer")
def _two_layer(num_classes, width):
    return TwoLayer(hidden=_w(100, width), num_classes=num_classes)


# --- the zoo -------------------------------------------------------------------------------
# MLPs follow Ren et al. (2022): 784-1024-256-128-64-C without biases ("n" counts linear layers);
# the 3- and 4-layer versions keep the first n-1 hidden widths (prefixes of that MLP).
_MLP_HIDDEN = (1024, 256, 128, 64)


def _mlp_factory(n):
    def factory(num_classes, width):
        return MLP(features=tuple(_w(h, width) for h in _MLP_HIDDEN[: n - 1]),
                   num_classes=num_classes, use_bias=False)

    return factory


for _n in (3, 4, 5):
    register(f"mlp{_n}")(_mlp_factory(_n))

# CNNs: n - 1 convs split over two stages (ceil half at 32 channels on 28x28, the rest at 64 on
# 14x14), each stage followed by a 2x2 average pool, then a dense head on 7x7.
_CNN_STAGES = {3: ((32,), (64,)), 4: ((32, 32), (64,)), 5: ((32, 32), (64, 64))}


def _cnn_factory(n):
    def factory(num_classes, width):
        stages = tuple(tuple(_w(c, width) for c in st) for st in _CNN_STAGES[n])
        return CNN(stages=stages, num_classes=num_classes)

    return factory


for _n in (3, 4, 5):
    register(f"cnn{_n}")(_cnn_factory(_n))


def _rescnn_factory(n):
    def factory(num_classes, width):
        return ResCNN(channels=_w(32, width), blocks=n - 2, num_classes=num_classes)

    return factory


for _n in (3, 4, 5, 10):
    register(f"rescnn{_n}")(_rescnn_factory(_n))


@register("alexnet")
def _alexnet(num_classes, width):
    return AlexNet(conv=tuple(_w(c, width) for c in (64, 192, 384, 256, 256)),
                   dense=tuple(_w(d, width) for d in (4096, 4096)), num_classes=num_classes)


@register("vgg11")
def _vgg11(num_classes, width):
    cfg = tuple(v if v == "M" else _w(v, width) for v in VGG.cfg)
    return VGG(cfg=cfg, dense=tuple(_w(d, width) for d in (512, 512)), num_classes=num_classes)


@register("resnet18")
def _resnet18(num_classes, width):
    return ResNet(block="basic", layers=(2, 2, 2, 2),
                  features=tuple(_w(f, width) for f in (64, 128, 256, 512)), num_classes=num_classes)


@register("resnet50")
def _resnet50(num_classes, width):
    return ResNet(block="bottleneck", layers=(3, 4, 6, 3),
                  features=tuple(_w(f, width) for f in (64, 128, 256, 512)), num_classes=num_classes)


def init_variables(model: nn.Module, key, *, dtype=jnp.float32):
    """Initialise ``model`` on a ``[1, 28, 28, 1]`` input; returns its variables (``params`` and,
    for batch-norm models, ``batch_stats``). The ``"gates"`` that ``model.init`` also sows are
    dropped: they belong to one forward pass, not to the model."""
    variables = model.init(key, jnp.zeros((1, 28, 28, 1), dtype))
    return {k: v for k, v in variables.items() if k != "gates"}


def param_count(model_or_variables, key=None) -> int:
    """Number of trainable parameters (the ``params`` collection; batch-norm running statistics
    not counted). Accepts variables, or a model (shapes only, nothing is allocated)."""
    if isinstance(model_or_variables, nn.Module):
        k = jax.random.key(0) if key is None else key
        variables = jax.eval_shape(lambda: init_variables(model_or_variables, k))
    else:
        variables = model_or_variables
    params = variables["params"] if "params" in variables else variables
    return int(sum(math.prod(p.shape) for p in jax.tree.leaves(params)))


def logits_fn(model: nn.Module, variables) -> Callable[[jax.Array], jax.Array]:
    """Per-example logits ``f(x: [28,28,1]) -> z: [C]`` with ``variables`` closed over.

    ``x`` is one image ``[H, W, C]``; a batch (``[1, 28, 28, 1]``) or a flattened image
    (``[784]``) raises a ``ValueError`` saying so (``jax.vmap`` ``f`` for a batch)."""

    def f(x):
        if getattr(x, "ndim", None) != 3:
            raise ValueError(f"pass one example of shape [H, W, C] (e.g. [28, 28, 1]), got shape "
                             f"{list(jnp.shape(x))}; jax.vmap the per-example function for a batch")
        return model.apply(variables, x[None])[0]

    return f


def cast(variables, dtype):
    """Cast every floating leaf of ``variables`` to ``dtype`` (e.g. float64 for verification)."""
    return jax.tree.map(
        lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p, variables
    )
