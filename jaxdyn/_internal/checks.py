"""Input validation shared by the public functions.

Checks on shapes and dtypes run always (they are static, also under ``jit``/``vmap``). Checks
on values (NaN pixels, labels out of range, beta <= 0) run when the value is concrete; inside
``jit`` or ``vmap`` the arrays are tracers, so the attacks also compute :func:`valid` and return a
NaN perturbation with ``success_step == INVALID_STEP`` for invalid input — never a zero
perturbation that looks like an instant success (the experiments call :func:`check_batch` before
compiling anything).
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

__all__ = ["is_concrete", "check_positive", "check_steps", "check_choice", "check_example", "check_batch",
           "check_array", "check_label", "check_label_static", "check_logits",
           "check_theory_inputs", "check_eig_inputs", "check_call", "num_classes", "label_ok", "valid", "INVALID_STEP",
           "check_in_clip", "in_clip"]

#: ``AttackResult.success_step`` of an attack whose input was invalid (NaN/inf values, a label
#: outside the head's range), found under ``jit``/``vmap`` where no exception can be raised.
INVALID_STEP = -2


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


def traced_steps(steps) -> bool:
    """Whether ``steps`` is a JAX integer scalar (traced or not) rather than a Python int: the
    functions that accept it run a ``while`` loop of that many steps (one compile for any ``m``)."""

    return (hasattr(steps, "dtype") and not isinstance(steps, (np.ndarray, np.generic)) and jnp.ndim(steps) == 0
            and jnp.issubdtype(steps.dtype, jnp.integer))


def check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise ValueError(f"steps must be a Python int (it fixes the scan length), got {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return int(steps)


def check_choice(name: str, v, choices) -> None:
    if v not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {v!r}")


def check_array(x, name: str = "x") -> None:
    """``x`` is a NumPy/JAX array of a float32 or float64 dtype (static: also under ``jit``)."""
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise ValueError(f"{name} must be a NumPy or JAX array, got a {type(x).__name__}; convert it with "
                         f"jnp.asarray({name}, jnp.float32)")

    dt = np.dtype(x.dtype)
    if not jnp.issubdtype(dt, jnp.floating):  # numpy's own test calls bfloat16 not floating
        raise ValueError(f"{name} has dtype {dt}, the attacks differentiate with respect to it and need a floating "
                         f"dtype: convert with {name}.astype(jnp.float32) (and divide uint8 pixels by 255)")
    if dt.itemsize < 4:
        raise ValueError(f"{name} has dtype {dt}: half precision is not supported (curvatures of order 1e-8 "
                         f"underflow); convert with {name}.astype(jnp.float32), or float64 for verification")


def num_classes(f, x) -> int:
    """``C``, the length of ``f(x)``, found by abstract evaluation; a clear error when ``f`` cannot
    take ``x`` (e.g. a batch where one example is expected, or a flattened image for a CNN)."""
    try:
        out = jax.eval_shape(f, x)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 — Flax's shape errors name parameters, not the input
        raise ValueError(f"the model cannot take x of shape {list(np.shape(x))} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200]}); pass one example of the shape the model was "
                         "initialised with, e.g. [28, 28, 1], and jax.vmap the function for a batch") from None
    if len(out.shape) != 1:
        raise ValueError(f"f(x) must be a logits vector [C] for one example, got shape {list(out.shape)}; pass one "
                         "example (e.g. [28, 28, 1]) and jax.vmap the function for a batch")
    return int(out.shape[0])


def check_label(y, C: int | None) -> None:
    """``y`` valid for a head of ``C`` logits: an integer in ``[0, C)`` (softmax) or ±1 (``C == 1``,
    the binary head). Its rank and dtype are checked always (they are static: also under ``jit``
    and ``vmap``, where a float label of a softmax head raises at trace time as it does eagerly);
    its value when concrete (under ``jit`` see :func:`label_ok`). ``C=None``: a custom loss whose
    labels mean something else (nothing to check)."""
    if C is None:
        return
    check_label_static(y, C)
    if not is_concrete(y):
        return
    a = np.asarray(y)
    if C == 1:
        if not np.isfinite(a) or a.item() not in (-1, 1):
            raise ValueError(f"the binary head (one logit) takes labels +1 or -1, got {a.item()!r}")
        return
    if not 0 <= int(a) < C:
        raise ValueError(f"label {int(a)} is out of range for a {C}-class head: labels are integers in [0, {C})")


def _label_dtype(y) -> np.dtype:
    if hasattr(y, "dtype"):
        return np.dtype(y.dtype)
    if isinstance(y, bool):
        return np.dtype(bool)
    if isinstance(y, (int, np.integer)):
        return np.dtype(np.int64)
    if isinstance(y, (float, np.floating)):
        return np.dtype(np.float64)
    return np.asarray(y).dtype


def check_label_static(y, C: int) -> None:
    """The static part of :func:`check_label`: ``y`` a scalar of an integer dtype (a softmax head)
    or of an integer or floating dtype (the binary head), whether ``y`` is concrete or traced."""

    if np.ndim(y) != 0:
        raise ValueError(f"y must be a scalar label for one example, got shape {list(np.shape(y))} "
                         "(for a batch, jax.vmap the per-example function)")
    dt = _label_dtype(y)
    shown = repr(np.asarray(y).item()) if is_concrete(y) else "a traced value"
    if C == 1:
        if dt == np.bool_ or not (jnp.issubdtype(dt, jnp.integer) or jnp.issubdtype(dt, jnp.floating)):
            raise ValueError(f"the binary head (one logit) takes labels +1 or -1 of an integer or float dtype, "
                             f"got {shown} of dtype {dt}")
        return
    if dt == np.bool_ or not jnp.issubdtype(dt, jnp.integer):
        raise ValueError(f"labels of a {C}-class head are integers in [0, {C}), got {shown} of dtype {dt}; "
                         f"convert with y.astype(jnp.int32)")


def check_logits(z, what: str = "loss") -> None:
    """``z`` the logits of one example: a floating ``[C]`` array (static: also under ``jit``)."""

    if not hasattr(z, "shape") or not hasattr(z, "dtype"):
        raise ValueError(f"{what} expects logits z as a JAX/NumPy array of shape [C], got a {type(z).__name__}")
    if len(z.shape) != 1 or z.shape[0] < 1:
        raise ValueError(f"{what} expects logits of shape [C], got {tuple(z.shape)} "
                         "(for a batch, jax.vmap the per-example function)")
    if not jnp.issubdtype(np.dtype(z.dtype), jnp.floating):
        raise ValueError(f"{what} expects floating logits, got dtype {np.dtype(z.dtype)}")


def check_theory_inputs(J, g_z, hbar_z) -> int:
    """Theorems 1/2 by the ``C x C`` path: ``J: [C, n]``, ``g_z: [C]``, ``hbar_z: [C, C]``, all
    floating (static: also under ``jit``). Returns ``C``."""

    for name, a, nd in (("J", J, 2), ("g_z", g_z, 1), ("hbar_z", hbar_z, 2)):
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise ValueError(f"{name} must be a JAX/NumPy array, got a {type(a).__name__}")
        if len(a.shape) != nd:
            raise ValueError(f"{name} must have {nd} dimensions, got shape {tuple(a.shape)} "
                             "(one example; jax.vmap the function for a batch)")
        if not jnp.issubdtype(np.dtype(a.dtype), jnp.floating):
            raise ValueError(f"{name} must be floating, got dtype {np.dtype(a.dtype)}")
    C = J.shape[0]
    if tuple(g_z.shape) != (C,) or tuple(hbar_z.shape) != (C, C):
        raise ValueError(f"shapes do not agree: J {tuple(J.shape)} has C = {C} rows, so g_z must be [{C}] and "
                         f"hbar_z [{C}, {C}]; got g_z {tuple(g_z.shape)}, hbar_z {tuple(hbar_z.shape)}")
    return C


def check_eig_inputs(g_x, hbar_x) -> int:
    """The ``n``-dimensional path: ``g_x: [n]`` and ``hbar_x: [n, n]``, floating (static)."""

    if len(np.shape(g_x)) != 1:
        raise ValueError(f"g_x must be a flat vector [n], got shape {tuple(np.shape(g_x))}; pass g_x.reshape(-1)")
    n = int(np.shape(g_x)[0])
    if len(np.shape(hbar_x)) != 2 or tuple(np.shape(hbar_x)) != (n, n):
        raise ValueError(f"hbar_x must be [n, n] with n = {n} (the size of g_x), got shape {tuple(np.shape(hbar_x))}")
    for name, a in (("g_x", g_x), ("hbar_x", hbar_x)):
        if not hasattr(a, "dtype") or not jnp.issubdtype(np.dtype(a.dtype), jnp.floating):
            raise ValueError(f"{name} must be a floating array, got {getattr(a, 'dtype', type(a).__name__)}")
    return n


def label_ok(y, C: int | None):
    """The traced counterpart of :func:`check_label`: a boolean scalar."""

    y = jnp.asarray(y)
    if C is None:
        return jnp.asarray(True)
    if C == 1:
        return jnp.abs(y.astype(jnp.result_type(float))) == 1
    if not jnp.issubdtype(y.dtype, jnp.integer):
        return jnp.asarray(False)
    return (y >= 0) & (y < C)


def valid(y, C: int | None, *arrays):
    """A boolean scalar: ``y`` valid for the head and every array finite (inputs and results)."""

    ok = label_ok(y, C)
    for a in arrays:
        ok = ok & jnp.all(jnp.isfinite(a))
    return ok


def check_call(f, x, y, *, labels: bool = True) -> int | None:
    """Everything a per-example entry point checks before tracing: ``x`` a float32/64 array,
    ``f(x)`` a logits vector, ``y`` a label of that head (``labels=False``: a custom loss, whose
    labels are not class indices), finite ``x`` when concrete. Returns ``C`` (``None`` when the
    labels are not checked)."""
    check_array(x)
    check_example(x, y)
    C = num_classes(f, x)
    if not labels:
        return None
    check_label(y, C)
    return C


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


def check_in_clip(x, clip) -> None:
    """``x`` inside the box ``clip = (lo, hi)`` (checked when concrete). An attack clips
    ``x + d`` to ``clip``; with ``x`` outside it, the clip moves ``x`` itself and the perturbation
    leaves the ε-ball (e.g. torchvision-normalised digits in [-0.42, 2.82] with ``clip=(0, 1)``).
    Under ``jit``/``vmap`` see :func:`in_clip`."""
    if clip is None or not is_concrete(x):
        return
    lo, hi = clip
    a = np.asarray(x)
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"x lies outside clip=({lo}, {hi}) (its values span [{a.min():.4g}, {a.max():.4g}]): "
                         "clipping x + delta to that box would move x itself and break the eps-ball; pass the "
                         "input's own valid range as clip, or clip=None for no box (e.g. normalised inputs)")


def in_clip(x, clip):
    """The traced counterpart of :func:`check_in_clip`: a boolean scalar (``True`` for ``clip=None``)."""

    if clip is None:
        return jnp.asarray(True)
    lo, hi = clip
    return jnp.all((x >= lo) & (x <= hi))
