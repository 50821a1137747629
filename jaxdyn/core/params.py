"""Parameter trees of Flax models: the paths of the weight layers, and reading / replacing one
layer's parameter.

* :func:`first_layer_path` — the layer that sees the input (Theorems 3-5, Table 2, Figs. 3-4);
* :func:`layer_paths` — every ``nn.Dense`` / ``nn.Conv`` layer in forward order (the ``j`` of Fig. 5);
* :func:`get_param` / :func:`set_param` — ``variables["params"][*path][leaf]``, read or replaced
  in a copy.

Layers are found by tracing one abstract forward pass with :func:`flax.linen.intercept_methods`,
so nothing depends on parameter names (``"first"``, ``"stem"``, ``"Conv_0"``) or on the (sorted)
order of the parameter dict.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

__all__ = ["first_layer_path", "layer_paths", "get_param", "set_param"]


def _called_layers(model: nn.Module, variables, example_shape: Sequence[int], kinds, *, first: bool):
    found: list[tuple[str, ...]] = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(context.module, kinds) and not (first and found):
            p = tuple(context.module.path)
            if p not in found:
                found.append(p)
        return next_fun(*args, **kwargs)

    x = jax.ShapeDtypeStruct((1, *example_shape), jax.tree.leaves(variables)[0].dtype)
    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    return found


def first_layer_path(model: nn.Module, variables, *, example_shape: Sequence[int] = (28, 28, 1)
                     ) -> tuple[str, ...]:
    """Module path of the network's first layer: the first ``nn.Dense`` or ``nn.Conv`` whose
    ``__call__`` runs when ``model`` is applied to one input.

    ``jax.tree`` sorts keys, so "the first kernel in the tree" can be a later layer (e.g.
    ``Conv_0 < stem`` in the ResCNNs); the traced forward pass is not fooled.

    Returns:
      e.g. ``("first",)`` or ``("stem",)``; the kernel is ``variables["params"][*path]["kernel"]``.
    """
    found = _called_layers(model, variables, example_shape, (nn.Dense, nn.Conv), first=True)
    if not found:
        raise ValueError(f"{type(model).__name__} calls no nn.Dense / nn.Conv: no first layer to use")
    return found[0]


def layer_paths(model: nn.Module, variables, *, example_shape: Sequence[int] = (28, 28, 1),
                kinds=(nn.Dense, nn.Conv)) -> list[tuple[str, ...]]:
    """Module paths of the weight layers (``nn.Dense``/``nn.Conv``) in the order a forward pass
    calls them (the "j" of Fig. 5)."""
    found = _called_layers(model, variables, example_shape, kinds, first=False)
    if not found:
        raise ValueError(f"{type(model).__name__} has no nn.Dense / nn.Conv layer")
    return found


def get_param(variables, path: Sequence[str], leaf: str = "kernel") -> jax.Array:
    """``variables["params"][*path][leaf]``."""
    node = variables["params"]
    for k in path:
        node = node[k]
    if leaf not in node:
        raise ValueError(f"layer {'/'.join(path)} has no parameter {leaf!r} (has {sorted(node)})")
    return node[leaf]


def set_param(variables, path: Sequence[str], value: jax.Array, leaf: str = "kernel"):
    """A copy of ``variables`` with ``params/*path/leaf`` replaced (the other leaves shared)."""

    def rec(node, keys):
        node = dict(node)
        if not keys:
            node[leaf] = value
        else:
            node[keys[0]] = rec(node[keys[0]], keys[1:])
        return node

    out = dict(variables)
    out["params"] = rec(variables["params"], list(path))
    return out
