"""Losses in logit space and their derivatives (docs/spec.md, "Notation").

One code path for both heads: a logit vector ``z`` of shape ``[C]``.

* ``C == 1``: binary sigmoid head, label ``y`` in {-1, +1}, ``L = log(1 + exp(-y z))``.
* ``C >= 2``: softmax cross-entropy, integer label ``y``.

``g_z = dL/dz`` has shape ``[C]`` and ``H_z = d^2 L / dz dz^T`` shape ``[C, C]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, ScalarLike

from jaxdyn._internal import checks as _checks

__all__ = ["loss", "grad_z", "hessian_z", "is_success"]


def loss(z: Float[Array, " C"], y: ScalarLike) -> Float[Array, ""]:
    """Cross-entropy of one example. ``z``: ``[C]``; returns a scalar.

    Binary (``C == 1``): ``softplus(-y z)`` with ``y`` in {-1, +1}.
    Multi-class: ``logsumexp(z) - z[y]`` with integer ``y``.
    """
    _checks.check_logits(z, "loss")
    _checks.check_label(y, z.shape[0])  # rank and dtype always; the value when concrete (under jit: NaN)
    if z.shape[0] == 1:
        return jax.nn.softplus(-jnp.asarray(y, z.dtype) * z[0])
    return jax.nn.logsumexp(z) - z[jnp.asarray(y, jnp.int32)]


def grad_z(z: Float[Array, " C"], y: ScalarLike) -> Float[Array, " C"]:
    """``g_z = dL/dz``: ``[C]``."""
    return jax.grad(loss)(z, y)


def hessian_z(z: Float[Array, " C"], y: ScalarLike) -> Float[Array, "C C"]:
    """``H_z = d^2L/dz dz^T``: ``[C, C]`` (Lemma 1: PSD for softmax, ``>= g_z^2`` for sigmoid
    when ``y z > 0``).

    Closed forms: softmax ``diag(p) - p p^T``; sigmoid ``s(z) s(-z)``.
    """
    _checks.check_logits(z, "hessian_z")  # y is not used: H_z does not depend on the label
    if z.shape[0] == 1:
        s = jax.nn.sigmoid(z[0])
        return jnp.reshape(s * (1 - s), (1, 1))
    p = jax.nn.softmax(z)
    return jnp.diag(p) - jnp.outer(p, p)


def is_success(z: Float[Array, " C"], y: ScalarLike) -> Bool[Array, ""]:
    """Whether the example is misclassified (the attack has succeeded): ``y z <= 0`` for the
    binary head, ``argmax z != y`` otherwise. Returns a boolean scalar."""
    if z.shape[0] == 1:
        return jnp.asarray(y, z.dtype) * z[0] <= 0
    return jnp.argmax(z).astype(jnp.int32) != jnp.asarray(y, jnp.int32)
