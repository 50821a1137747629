"""Attacks on a batch, as researchers call them: :func:`pgd_batch` and :func:`apgd`.

The per-example attacks (:func:`jaxdyn.attacks.multistep.pgd`, :func:`jaxdyn.attacks.apgd_attack.apgd_example`)
stay the engine; these entry points

* take a per-example logits function ``f(x) -> z`` (``x`` one example, e.g. ``[28, 28, 1]``) or a
  flax Linen module with ``variables=`` (``model.apply(variables, x_batch) -> [B, C]``);
* give example ``i`` the key ``jax.random.fold_in(key, i)`` (every example its own random start);
* trace ε (a sweep over ε compiles once) and, with several devices, split the batch over them
  (:func:`jaxdyn._internal.sharding.shard_batch`; one device: ``jit(vmap)``);
* return a :class:`BatchAttack`: the adversarial images, the perturbations and per-example success.

Example::

    import jax, jaxdyn as jd
    r = jd.pgd_batch(model, x, y, eps=0.3, alpha=0.01, steps=40, key=jax.random.key(0), variables=variables)
    r.x_adv.shape, r.success.mean()

Compiled kernels are cached per model (the module, or the identity of ``f``) and static options.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Key, PRNGKeyArray, ScalarLike, Shaped, UInt32

from jaxdyn._internal import checks as _checks
from jaxdyn.attacks.apgd_attack import apgd_restarts, check_loss
from jaxdyn.attacks.multistep import pgd
from jaxdyn.core.losses import is_success, loss as ce_loss
from jaxdyn._internal.sharding import shard_batch

__all__ = ["BatchAttack", "pgd_batch", "apgd", "per_example_fn", "example_keys"]


class BatchAttack(NamedTuple):
    """The result of an attack on a batch of ``B`` examples.

    Attributes:
      x_adv: ``[B, ...]`` adversarial examples (``x + delta``).
      delta: ``[B, ...]`` perturbations.
      success: ``[B]`` bool: ``x_adv`` is misclassified (its prediction ≠ ``y``), or, for
        :func:`pgd_batch` with ``targeted=True``, classified as the target ``y``. An example
        flagged invalid under ``jit`` (NaN ``delta``) is not a success.
    """

    x_adv: Float[Array, " B *x"]
    delta: Float[Array, " B *x"]
    success: Bool[Array, " B"]


def per_example_fn(model, variables=None) -> tuple[Callable, object]:
    """``(g, params)`` with ``g(params, x) -> z`` the per-example logits of ``model``: a flax
    module (``variables`` required), a logits function ``f(x) -> z`` (``variables`` ``None``) or
    ``f(variables, x) -> z`` (``variables`` given, traced: new weights do not recompile)."""
    if hasattr(model, "apply") and hasattr(model, "init"):
        if variables is None:
            raise ValueError("a flax module needs its variables: pass variables=...")
        return _wrap(model, "module"), variables
    if not callable(model):
        raise ValueError(f"model must be a flax Linen module (with variables=) or a per-example logits function "
                         f"f(x) -> z, got a {type(model).__name__}")
    return _wrap(model, "f" if variables is None else "f(variables, x)"), variables


@functools.lru_cache(maxsize=64)
def _wrap(model, kind):
    """One wrapper per model, so that the kernels cached on it compile once."""
    if kind == "module":
        return lambda p, x: model.apply(p, x[None])[0]
    if kind == "f":
        return lambda p, x: model(x)
    return lambda p, x: model(p, x)


def example_keys(key: PRNGKeyArray, n: int) -> Key[Array, " n"] | UInt32[Array, "n 2"]:
    """``[n]`` keys, ``jax.random.fold_in(key, i)`` for example ``i``."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n, dtype=jnp.uint32))


def _prepare(model, x, y, variables, clip):
    g, params = per_example_fn(model, variables)
    _checks.check_array(x)
    if getattr(x, "ndim", 0) < 2:
        raise ValueError(f"x must be a batch [B, ...] of examples, got shape {list(np.shape(x))} "
                         "(for one example use jaxdyn.pgd / jaxdyn.attacks.multistep.attack)")
    y = jnp.asarray(y)
    if y.shape[:1] != x.shape[:1] or (y.ndim != 1):
        raise ValueError(f"y must have shape [{x.shape[0]}] to match x, got {list(y.shape)}")
    if not np.all(np.isfinite(np.asarray(x))):
        raise ValueError("x contains NaN or infinite values")
    _checks.check_in_clip(x, clip)
    C = _checks.num_classes(functools.partial(g, params), x[0])
    return g, params, y, C


def _key(key):
    if key is None:
        raise ValueError("pass key=jax.random.key(seed): every example gets fold_in(key, i)")
    return key


def pgd_batch(model, x: Float[ArrayLike, " B *x"], y: Shaped[ArrayLike, " B"], *, eps: ScalarLike, alpha: ScalarLike,
              steps: int, norm: str = "linf", random_start: bool = True, key: PRNGKeyArray | None = None,
              loss_fn: Optional[Callable] = None, targeted: bool = False, clip=(0.0, 1.0), variables=None,
              unroll=None) -> BatchAttack:
    """Madry et al. PGD on a batch: :func:`jaxdyn.attacks.multistep.pgd` per example, ``jax.vmap``-ed (and
    sharded over the local devices), example ``i`` with key ``fold_in(key, i)``.

    Args:
      model: a per-example logits function ``f(x) -> z`` or a flax module (with ``variables``).
      x: ``[B, ...]`` clean examples inside ``clip``; y: ``[B]`` labels (the targets when ``targeted``).
      eps, alpha: radius and step size (traced: sweeping them compiles once).
      steps: number of steps (static); norm: ``"linf"`` or ``"l2"``.
      random_start: start from a uniform point of the ball (needs ``key``).
      loss_fn: ``(z, y) -> scalar`` loss to ascend (default cross-entropy).
      targeted: descend the loss towards the target ``y``.
      clip: ``(lo, hi)`` box of valid inputs, ``None`` for none (e.g. normalised inputs).
      unroll: as :func:`jaxdyn.attacks.multistep.pgd`.

    Returns:
      :class:`BatchAttack`. Bit for bit ``jit(vmap(pgd))`` with the same keys.
    """
    g, params, y, C = _prepare(model, x, y, variables, clip)
    keys = example_keys(_key(key), x.shape[0]) if random_start else jnp.zeros((x.shape[0],), jnp.uint32)
    kern = _pgd_kernel(g, int(steps), norm, bool(random_start), loss_fn if loss_fn is not None else ce_loss,
                       bool(targeted), None if clip is None else tuple(map(float, clip)), unroll)
    dt = x.dtype
    delta, success = kern(jnp.asarray(x), y, keys, params, jnp.asarray(eps, dt), jnp.asarray(alpha, dt))
    return BatchAttack(x_adv=x + delta, delta=delta, success=success)


@functools.lru_cache(maxsize=32)
def _pgd_kernel(g, steps, norm, random_start, loss_fn, targeted, clip, unroll):
    def one(xi, yi, ki, params, eps, alpha):
        f = functools.partial(g, params)
        d = pgd(f, xi, yi, eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=random_start,
                key=ki if random_start else None, clip=clip, unroll=unroll, loss_fn=loss_fn, targeted=targeted)
        z = f(xi + d)
        won = _won(z, yi, targeted) & jnp.all(jnp.isfinite(d))
        return d, won

    return shard_batch(one, in_axes=(0, 0, 0, None, None, None))


def _won(z, y, targeted):
    s = is_success(z, y)
    return jnp.logical_not(s) if targeted else s


def apgd(model, x: Float[ArrayLike, " B *x"], y: Shaped[ArrayLike, " B"], *, eps: ScalarLike, norm: str = "linf",
         loss: str = "ce", steps: int = 100, targeted: bool = False, n_restarts: int = 1, n_target_classes: int = 9,
         key: PRNGKeyArray | None = None, variables=None, clip=(0.0, 1.0), rho: float = 0.75,
         random_start: bool = True) -> BatchAttack:
    """APGD (Croce & Hein 2020) on a batch; :mod:`jaxdyn.attacks.apgd_attack` describes the algorithm.

    Args:
      model: a per-example logits function ``f(x) -> z`` or a flax module (with ``variables``).
      x: ``[B, ...]`` clean examples inside ``clip``; y: ``[B]`` true labels.
      eps: the radius (traced: a sweep over ε compiles once).
      norm: ``"linf"`` or ``"l2"``.
      loss: ``"ce"`` (APGD-CE) or ``"dlr"`` (APGD-DLR, ≥ 3 classes).
      steps: iterations per run (100, as AutoAttack).
      targeted: APGD-T as in AutoAttack: ``y`` stays the true label and the attack runs once per
        target, the ``n_target_classes`` classes of the highest clean logits other than ``y``,
        with the targeted ``loss`` (targeted DLR needs ≥ 4 classes).
      n_restarts: random starts per run (keys ``fold_in(fold_in(key, i), r)``).
      key: PRNG key; example ``i`` gets ``fold_in(key, i)``.
      clip: ``(lo, hi)`` box of valid inputs, ``None`` for none.
      rho: the fraction of increasing steps below which the step size halves (0.75).
      random_start: start from a random point of the ε-sphere (as the reference) or from ``x``.

    Returns:
      :class:`BatchAttack`: per example the first misclassified point found, else the point of
      the highest loss; ``success`` = misclassified (targeted runs too).
    """
    _checks.check_choice("norm", norm, ("linf", "l2"))
    _checks.check_positive("eps", eps)
    _checks.check_steps(steps)
    _checks.check_steps(n_restarts)
    g, params, y, C = _prepare(model, x, y, variables, clip)
    name = f"{loss}-targeted" if targeted else loss
    check_loss(name, C)
    keys = example_keys(_key(key), x.shape[0])
    kern = _apgd_kernel(g, int(steps), norm, name, int(n_restarts), int(n_target_classes),
                        None if clip is None else tuple(map(float, clip)), float(rho), bool(random_start))
    x_adv, success = kern(jnp.asarray(x), y, keys, params, jnp.asarray(eps, x.dtype))
    return BatchAttack(x_adv=x_adv, delta=x_adv - x, success=success)


@functools.lru_cache(maxsize=32)
def _apgd_kernel(g, steps, norm, loss, n_restarts, n_target_classes, clip, rho, random_start):
    def one(xi, yi, ki, params, eps):
        r = apgd_restarts(functools.partial(g, params), xi, yi, ki, eps, steps=steps, norm=norm, loss=loss,
                          n_restarts=n_restarts, n_target_classes=n_target_classes, clip=clip, rho=rho,
                          random_start=random_start)
        return r.x_adv, r.success

    return shard_batch(one, in_axes=(0, 0, 0, None, None))
