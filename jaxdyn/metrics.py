"""The paper's error metrics, on batches (leading axis = samples).

* ``κ = E_x ||δ* - δ̂|| / E_x ||δ*||`` (Table 1),
* ``κ' = E_x |φ* - φ̂| / E_x |φ*|`` (Table 2),
* ``1 - cos`` matching errors (Appendix D).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["kappa", "kappa_first_order", "kappa_prime", "one_minus_cos", "per_sample_norm"]


def per_sample_norm(a: jax.Array) -> jax.Array:
    """ℓ2 norm of each sample: ``[B, ...] -> [B]``."""
    return jnp.linalg.norm(jnp.reshape(a, (a.shape[0], -1)), axis=1)


def kappa(delta_star: jax.Array, delta_hat: jax.Array) -> jax.Array:
    """``κ = mean ||δ* - δ̂|| / mean ||δ*||``. Both ``[B, ...]``; returns a scalar."""
    if delta_star.shape != delta_hat.shape:
        raise ValueError(f"shape mismatch: {delta_star.shape} vs {delta_hat.shape}")
    return jnp.mean(per_sample_norm(delta_star - delta_hat)) / jnp.mean(per_sample_norm(delta_star))


def kappa_first_order(delta_star: jax.Array, g_x: jax.Array, beta) -> jax.Array:
    """κ of the curvature-free baseline ``δ = β g_x`` (the λ → 0 limit of Theorem 2)."""
    return kappa(delta_star, beta * g_x)


def kappa_prime(phi_star: jax.Array, phi_hat: jax.Array) -> jax.Array:
    """``κ' = mean |φ* - φ̂| / mean |φ*|`` over samples (``[B]`` each)."""
    if phi_star.shape != phi_hat.shape:
        raise ValueError(f"shape mismatch: {phi_star.shape} vs {phi_hat.shape}")
    return jnp.mean(jnp.abs(phi_star - phi_hat)) / jnp.mean(jnp.abs(phi_star))


def one_minus_cos(a: jax.Array, b: jax.Array) -> jax.Array:
    """Per-sample ``1 - cos(a_i, b_i)``: ``[B, ...] x [B, ...] -> [B]``."""
    a = jnp.reshape(a, (a.shape[0], -1))
    b = jnp.reshape(b, (b.shape[0], -1))
    cos = jnp.sum(a * b, axis=1) / (jnp.linalg.norm(a, axis=1) * jnp.linalg.norm(b, axis=1))
    return 1.0 - cos
