"""APGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks"), on one example, as one ``lax.scan``; the DLR losses.

APGD is PGD without a step size to tune. With ``N`` iterations and checkpoints
``w_j = ceil(p_j N)``, ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``:

* the step size starts at ``η = 2ε``; the first step is a plain projected step, every later one
  adds momentum ``α = 0.75``: ``z = P(x_k + η dir(g_k))``,
  ``x_{k+1} = P(x_k + α (z - x_k) + (1 - α)(x_k - x_{k-1}))``, ``dir`` the sign (ℓ∞) or the
  normalised gradient (ℓ2), ``P`` the projection onto the ε-ball and the ``clip`` box;
* at a checkpoint, ``η`` is halved when the loss increased in fewer than ``ρ = 0.75`` of the steps
  since the last checkpoint, or when neither ``η`` nor the best loss changed since the last
  checkpoint; the iterate then restarts from the best point found (with its gradient).

It returns the first misclassified point it meets (``success``) or, if none, the point of the
highest loss. Checked against the paper's pseudo-code (Algorithm 1) and the reference
implementation (fra31/auto-attack, ``autopgd_base.py``): the random start, the per-checkpoint
window and the restart from the best point follow the reference; the increase count is the
paper's strict ``< ρ``. The batch entry point is :func:`jaxdyn.attacks.batch.apgd`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.core.losses import is_success, loss as ce_loss

__all__ = ["LOSSES", "dlr_loss", "dlr_loss_targeted", "checkpoints", "apgd_example", "apgd_restarts", "ApgdResult",
           "check_loss"]

#: the objectives: cross-entropy, DLR (untargeted), and their targeted versions (y and a target t)
LOSSES = ("ce", "dlr", "ce-targeted", "dlr-targeted")
_TINY = 1e-12


class ApgdResult(NamedTuple):
    """One example's APGD: ``x_adv`` (the first misclassified point, else the highest-loss one),
    ``success`` (``x_adv`` misclassified: prediction ≠ ``y``) and ``loss`` (the best objective)."""

    x_adv: jax.Array
    success: jax.Array
    loss: jax.Array


def dlr_loss(z: jax.Array, y) -> jax.Array:
    """Untargeted DLR loss: ``-(z_y - max_{i≠y} z_i) / (z_π1 - z_π3 + 1e-12)``, ``π`` sorting ``z``
    in decreasing order (needs ``C >= 3``). Invariant to shifts and positive scalings of ``z``."""
    zs = jnp.sort(z)[::-1]
    zy = z[y]
    other = jnp.max(jnp.where(jnp.arange(z.shape[0], dtype=jnp.int32) == jnp.asarray(y, jnp.int32), -jnp.inf, z))
    return -(zy - other) / (zs[0] - zs[2] + _TINY)


def dlr_loss_targeted(z: jax.Array, y, t) -> jax.Array:
    """Targeted DLR loss: ``-(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2 + 1e-12)`` (needs ``C >= 4``)."""
    zs = jnp.sort(z)[::-1]
    return -(z[y] - z[t]) / (zs[0] - 0.5 * (zs[2] + zs[3]) + _TINY)


def _objective(name: str) -> Callable:
    """``(z, y, t) -> scalar`` to maximise."""
    return {
        "ce": lambda z, y, t: ce_loss(z, y),
        "dlr": lambda z, y, t: dlr_loss(z, y),
        "ce-targeted": lambda z, y, t: -ce_loss(z, t),
        "dlr-targeted": dlr_loss_targeted,
    }[name]


def checkpoints(steps: int) -> list[int]:
    """The iterations (0-based, in ``0..steps-1``) after which APGD checks its step size: the
    reference's integer form of ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``
    (first window ``max(int(0.22 N), 1)``, each next one ``size_decr = max(int(0.03 N), 1)``
    shorter, never shorter than ``max(int(0.06 N), 1)``)."""
    k = max(int(0.22 * steps), 1)
    k_min, decr = max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    out, i = [], k - 1
    while i < steps:
        out.append(i)
        k = max(k - decr, k_min)
        i += k
    return out


def _project(x, xa, eps, norm, clip):
    d = xa - x
    if norm == "l2":
        n = jnp.linalg.norm(d)
        d = d * jnp.minimum(1.0, eps / (n + _TINY))
    else:
        d = jnp.clip(d, -eps, eps)
    xa = x + d
    return xa if clip is None else jnp.clip(xa, clip[0], clip[1])


def _direction(g, norm):
    return g / (jnp.linalg.norm(g) + _TINY) if norm == "l2" else jnp.sign(g)


def _start(key, x, eps, norm, clip):
    """The reference's random start: a uniform (ℓ∞) or Gaussian (ℓ2) draw rescaled to the sphere
    of radius ε (ℓ∞: its largest entry ε), clipped to the box."""
    if norm == "l2":
        t = jax.random.normal(key, x.shape, x.dtype)
        xa = x + eps * t / (jnp.linalg.norm(t) + _TINY)
    else:
        t = 2 * jax.random.uniform(key, x.shape, x.dtype) - 1
        xa = x + eps * t / jnp.max(jnp.abs(t))
    return xa if clip is None else jnp.clip(xa, clip[0], clip[1])


def apgd_example(f: Callable, x: jax.Array, y, key, eps, *, steps: int = 100, norm: str = "linf", loss: str = "ce",
                 target=None, clip=(0.0, 1.0), rho: float = 0.75, momentum: float = 0.75,
                 random_start: bool = True) -> ApgdResult:
    """APGD on one example (see the module doc); ``eps`` may be traced (one compile for every ε).

    Args:
      f: per-example logits function ``x -> z: [C]``.
      x, y: the clean example and its true label (int; ±1 for the binary head, ``loss="ce"`` only).
      key: PRNG key of the random start.
      eps: radius of the ``norm`` ball.
      steps: iterations ``N`` (static).
      norm: ``"linf"`` or ``"l2"``.
      loss: one of :data:`LOSSES`; the targeted ones need ``target``.
      target: the target class of a targeted loss.
      clip: the box of valid inputs, or ``None``.
      rho, momentum: ``ρ`` and ``α`` of the paper (0.75 both).
      random_start: start from a random point of the sphere (as the reference) or from ``x``.
    """
    obj = _objective(loss)
    sched = np.zeros(steps, bool)
    sched[checkpoints(steps)] = True
    window = np.diff(np.concatenate([[-1], np.flatnonzero(sched)]))  # steps since the previous checkpoint
    win = np.zeros(steps, np.float32)
    win[sched] = window
    eps = jnp.asarray(eps, x.dtype)

    def value_grad(xa):
        def o(xa):
            z = f(xa)
            return obj(z, y, target), z

        (val, z), g = jax.value_and_grad(o, has_aux=True)(xa)
        return val, g, is_success(z, y)

    x0 = _start(key, x, eps, norm, clip) if random_start else x
    l0, g0, s0 = value_grad(x0)
    init = dict(x=x0, x_prev=x0, g=g0, eta=2 * eps, x_best=x0, g_best=g0, l_best=l0, l_prev=l0,
                x_adv=x0, success=s0, n_inc=jnp.zeros((), jnp.int32), l_best_check=l0,
                reduced_check=jnp.asarray(True))

    def body(c, inp):
        i, is_ckpt, w = inp
        a = jnp.where(i > 0, momentum, 1.0).astype(x.dtype)
        z = _project(x, c["x"] + c["eta"] * _direction(c["g"], norm), eps, norm, clip)
        xn = _project(x, c["x"] + a * (z - c["x"]) + (1 - a) * (c["x"] - c["x_prev"]), eps, norm, clip)
        lv, g, s = value_grad(xn)
        new_adv = s & ~c["success"]
        x_adv = jnp.where(new_adv, xn, c["x_adv"])
        better = lv > c["l_best"]
        x_best = jnp.where(better, xn, c["x_best"])
        g_best = jnp.where(better, g, c["g_best"])
        l_best = jnp.where(better, lv, c["l_best"])
        n_inc = c["n_inc"] + (lv > c["l_prev"]).astype(jnp.int32)
        # checkpoint: too few increases, or neither η nor the best loss changed since the last one
        osc = n_inc.astype(x.dtype) < rho * w
        stale = ~c["reduced_check"] & (c["l_best_check"] >= l_best)
        reduce = is_ckpt & (osc | stale)
        c = dict(
            x=jnp.where(reduce, x_best, xn), x_prev=c["x"], g=jnp.where(reduce, g_best, g),
            eta=jnp.where(reduce, c["eta"] / 2, c["eta"]), x_best=x_best, g_best=g_best, l_best=l_best, l_prev=lv,
            x_adv=x_adv, success=c["success"] | s, n_inc=jnp.where(is_ckpt, 0, n_inc),
            l_best_check=jnp.where(is_ckpt, l_best, c["l_best_check"]),
            reduced_check=jnp.where(is_ckpt, osc | stale, c["reduced_check"]))
        return c, None

    xs = (jnp.arange(steps, dtype=jnp.int32), jnp.asarray(sched), jnp.asarray(win, x.dtype))
    c, _ = jax.lax.scan(body, init, xs)
    return ApgdResult(x_adv=jnp.where(c["success"], c["x_adv"], c["x_best"]), success=c["success"], loss=c["l_best"])


def apgd_restarts(f: Callable, x, y, key, eps, *, steps: int, norm: str, loss: str, n_restarts: int = 1,
                  n_target_classes: int = 9, clip=(0.0, 1.0), **kw) -> ApgdResult:
    """APGD with ``n_restarts`` random starts (keys ``fold_in(key, r)``), and for a targeted loss
    over the ``n_target_classes`` classes of the highest clean logits other than ``y`` (AutoAttack's
    APGD-T); returns the first successful run, else the one of the highest loss."""
    targeted = loss.endswith("-targeted")
    C = jax.eval_shape(f, x).shape[0]
    if targeted:
        n_t = min(int(n_target_classes), C - 1)
        z0 = f(x)
        order = jnp.argsort(-jnp.where(jnp.arange(C, dtype=jnp.int32) == jnp.asarray(y, jnp.int32), -jnp.inf, z0))
        targets = order[:n_t]
    else:
        targets = jnp.zeros(1, jnp.int32)
    best = None
    for t in range(targets.shape[0]):
        for r in range(n_restarts):
            k = jax.random.fold_in(key, t * n_restarts + r)
            res = apgd_example(f, x, y, k, eps, steps=steps, norm=norm, loss=loss,
                               target=targets[t] if targeted else None, clip=clip, **kw)
            if best is None:
                best = res
                continue
            take = (~best.success & res.success) | (~best.success & ~res.success & (res.loss > best.loss))
            best = jax.tree.map(lambda a, b: jnp.where(take, b, a), best, res)
    return best


def min_classes(loss: str) -> int:
    """The fewest logits a loss needs (DLR sorts three, targeted DLR four)."""
    return {"ce": 1, "ce-targeted": 2, "dlr": 3, "dlr-targeted": 4}[loss]


def check_loss(loss: str, C: int) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    if C < min_classes(loss):
        raise ValueError(f"loss {loss!r} needs at least {min_classes(loss)} classes, the model has {C}"
                         + (" (the binary head: use loss='ce')" if C == 1 else ""))

