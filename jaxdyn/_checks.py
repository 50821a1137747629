"""Input validation shared by the public functions.

Checks on values (NaN pixels, beta <= 0) run only when the value is concrete: inside ``jit`` or
``vmap`` the arrays are tracers and the caller's entry point is responsible (the experiments call
:func:`check_batch` before compiling anything).
"""

from __future__ import annotations

import numpy as np
import jax

__all__ = ["is_concrete", "check_positive", "check_steps", "check_choice", "check_example", "check_batch"]


def is_concrete(v) -> bool:
    return not isinstance(v, jax.core.Tracer)


def check_positive(name: str, v, *, allow_none: bool = False) -> None:
    """``v > 0`` (a Python/NumPy/JAX scalar or array of them), checked when concrete."""
    if v is None:
        if allow_none:
            return
        raise ValueError(f"{name} is required")
    if not is_concrete(v):
        return
    a = np.asarray(v)
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {v}")


def check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise ValueError(f"steps must be a Python int (it fixes the scan length), got {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return int(steps)


def check_choice(name: str, v, choices) -> None:
    if v not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {v!r}")


def check_example(x, y=None) -> None:
    """One example: ``x`` at least 1-D, finite when concrete; ``y`` a scalar label."""
    if getattr(x, "ndim", None) is None or x.ndim < 1:
        raise ValueError(f"x must be one example with at least one dimension, got shape {np.shape(x)}")
    if y is not None and np.ndim(y) != 0:
        raise ValueError(
            f"y must be a scalar label for one example, got shape {np.shape(y)} "
            "(for a batch, jax.vmap the per-example function)"
        )
    if is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
        raise ValueError("x contains NaN or infinite values")


def check_batch(x, y, *, example_shape=(28, 28, 1)) -> None:
    """A batch ``x: [B, *example_shape]`` of finite values and labels ``y: [B]``."""
    x = np.asarray(x)
    y = np.asarray(y)
    if example_shape is not None and tuple(x.shape[1:]) != tuple(example_shape):
        raise ValueError(f"x must have shape [B, {', '.join(map(str, example_shape))}], got {x.shape}")
    if y.shape != x.shape[:1]:
        raise ValueError(f"y must have shape [{x.shape[0]}] to match x, got {y.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or infinite values")
