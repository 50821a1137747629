"""Assumption A2: frozen ReLU gating.

For a piecewise-affine network (ReLU, dense, conv, pooling, skip connections, batch-norm in
inference mode), freezing every ReLU mask and max-pool argmax at the clean input ``x`` gives
exactly the first-order expansion ``z(x + d) = z(x) + J d``: this is what ``jax.linearize``
computes, so the frozen-gating network is obtained without touching the model's code.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

__all__ = ["GATINGS", "freeze", "input_jacobian", "gate_pattern", "flip_fraction"]

#: ``"free"``: the real network (gates change along the attack); ``"frozen"``: assumption A2.
GATINGS = ("free", "frozen")

LogitsFn = Callable[[jax.Array], jax.Array]


def freeze(f: LogitsFn, x: Float[Array, "*x"]) -> LogitsFn:
    """The frozen-gating network of ``f`` at the reference input ``x`` (A2).

    Returns ``f_frozen(x2) = f(x) + J (x2 - x)``, evaluated with one ``jvp`` through the network
    per call (no Jacobian is materialised). For ReLU networks this equals running ``f`` with every
    gate fixed to its state at ``x``.

    Args:
      f: per-example logits function, ``[*x.shape] -> [C]``.
      x: reference input.
    """
    z0, jvp_fn = jax.linearize(f, x)

    def f_frozen(x2):
        return z0 + jvp_fn(x2 - x)

    return f_frozen


def input_jacobian(f: LogitsFn, x: Float[Array, "*x"]) -> Float[Array, "C n"]:
    """``J = dz/dx`` as a ``[C, n]`` matrix (``n = x.size``), by reverse mode (C backward passes).

    ``W~ = J^T`` in the paper's notation.
    """
    z, vjp_fn = jax.vjp(f, x)
    eye = jnp.eye(z.shape[0], dtype=z.dtype)
    (rows,) = jax.vmap(vjp_fn)(eye)
    return rows.reshape(z.shape[0], -1)


def logit_frame(f: LogitsFn, x: Float[Array, "*x"], jacobian: Float[Array, "C n"] | None = None
                ) -> tuple[Float[Array, " C"], Float[Array, "C n"], Float[Array, "C C"], int]:
    """What a frozen-gating (A2) computation in logit space needs at ``x``: the clean logits
    ``z0 [C]``, the input Jacobian ``J [C, n]`` (``jacobian`` if given), its Gram matrix
    ``G = J Jᵀ [C, C]`` and ``C``. Under A2 the network is ``z0 + J δ`` around ``x``, so an attack
    or a gradient flow moves only ``u = J δ`` (C numbers) and ``‖Jᵀ c‖² = cᵀ G c``."""
    z0 = f(x)
    J = input_jacobian(f, x) if jacobian is None else jacobian
    return z0, J, J @ J.T, z0.shape[0]


def gate_pattern(apply_fn: Callable, variables, x: Float[Array, "*x"]) -> Bool[Array, " G"]:
    """All ReLU gate states of one example as a flat boolean vector.

    Uses the pre-activations that :func:`jaxdyn.core.models.relu` sows into the ``"gates"``
    collection. ``apply_fn`` is ``model.apply``; ``x``: ``[28, 28, 1]``.
    """
    _, state = apply_fn(variables, x[None], mutable=["gates"])
    leaves = jax.tree.leaves(state.get("gates", {}))
    if not leaves:
        raise ValueError("the model records no ReLU gates (use jaxdyn.core.models.relu for its ReLUs)")
    return jnp.concatenate([jnp.ravel(h > 0) for h in leaves])


def flip_fraction(apply_fn: Callable, variables, x: Float[Array, "*x"], x2: Float[Array, "*x"]) -> Float[Array, ""]:
    """Fraction of ReLU gates whose state differs between ``x`` and ``x2`` (Appendix J)."""
    a = gate_pattern(apply_fn, variables, x)
    b = gate_pattern(apply_fn, variables, x2)
    return jnp.mean(a != b)
