"""Robust accuracy of any model, against a list of ε, with PGD, APGD or an attack of your own.

:func:`robust_accuracy` is what Foolbox's ``attack(fmodel, x, y, epsilons=[...])`` followed by an
accuracy, or RobustBench's ``clean_accuracy`` beside AutoAttack, gives: for every ε the fraction
of examples classified correctly at their clean point *and* at every adversarial point found,
beside the clean accuracy. ``attack="apgd"`` takes, per example, the worst case over APGD-CE and
APGD-DLR (AutoAttack's first two attacks; ``"apgd-t"`` adds the targeted DLR attack, its third);
the binary head (one logit) has no DLR loss and runs APGD-CE alone.

``print(result)`` shows a small table::

      eps  clean  robust (apgd)
    0.100  0.990  0.953
    0.300  0.990  0.012
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Bool, Float, PRNGKeyArray, Shaped
from tqdm.auto import tqdm

from jaxdyn._internal import checks as _checks
from jaxdyn.attacks.batch import apgd, per_example_fn, pgd_batch
from jaxdyn.core.losses import is_success

__all__ = ["RobustAccuracy", "robust_accuracy", "ATTACKS"]

#: attacks by name: what each runs
ATTACKS = {
    "pgd": "PGD (Madry et al.), `steps` steps of size `alpha` (default 2.5 eps / steps), random start",
    "apgd": "worst case of APGD-CE and APGD-DLR (Croce & Hein 2020), `steps` iterations each",
    "apgd-ce": "APGD with the cross-entropy",
    "apgd-dlr": "APGD with the DLR loss",
    "apgd-t": "worst case of APGD-CE, APGD-DLR and targeted APGD-DLR (9 target classes)",
}


@dataclasses.dataclass(frozen=True)
class RobustAccuracy:
    """Accuracies of a model on ``n`` examples: ``clean`` and ``robust[i]`` against ``eps[i]``;
    ``correct`` is the ``[len(eps), n]`` boolean robust correctness per example."""

    eps: tuple
    clean: float
    robust: tuple
    n: int
    attack: str
    norm: str
    settings: dict
    correct: Bool[np.ndarray, "E N"] = dataclasses.field(repr=False, compare=False)

    def as_dict(self) -> dict:
        """JSON-able: ``eps``, ``clean``, ``robust``, ``n``, ``attack``, ``norm``, ``settings``."""
        return dict(eps=list(self.eps), clean=self.clean, robust=list(self.robust), n=self.n, attack=self.attack,
                    norm=self.norm, settings=self.settings)

    def __str__(self) -> str:
        lines = [f"{'eps':>7}  {'clean':>6}  robust ({self.attack}, {self.norm}, n={self.n})"]
        lines += [f"{e:>7.4g}  {self.clean:>6.3f}  {r:.3f}" for e, r in zip(self.eps, self.robust)]
        return "\n".join(lines)


def robust_accuracy(model, x: Float[ArrayLike, " N *x"], y: Shaped[ArrayLike, " N"], *, eps,
                    attack: str | Callable = "pgd", variables=None, norm: str = "linf",
                    key: PRNGKeyArray | None = None, steps: int | None = None, alpha=None, n_restarts: int = 1,
                    clip=(0.0, 1.0), batch_size: int = 500, progress: bool = True) -> RobustAccuracy:
    """Clean and robust accuracy of ``model`` on ``(x, y)`` for every ε of ``eps``.

    Args:
      model: a per-example logits function ``f(x) -> z`` or a flax module (with ``variables``).
      x: ``[N, ...]`` examples inside ``clip``; y: ``[N]`` labels (±1 for the binary head).
      eps: one radius or a list of them (in the ``norm``'s geometry).
      attack: a name of :data:`ATTACKS` or a callable ``attack(x, y, eps, key) -> x_adv`` on a
        batch (its ``x_adv`` is checked to lie in the ε-ball and ``clip``).
      norm: ``"linf"`` or ``"l2"``.
      key: PRNG key (default ``jax.random.key(0)``); batch ``b`` uses ``fold_in(key, b)``.
      steps: PGD steps (default 40) or APGD iterations (default 100).
      alpha: PGD step size (default ``2.5 * eps / steps`` per ε); ignored by APGD.
      n_restarts: APGD random restarts.
      clip: box of valid inputs, ``None`` for none (normalised inputs).
      batch_size: examples per compiled call.
      progress: a tqdm bar over ε × batches.

    Returns:
      :class:`RobustAccuracy` (prints as a table). An example counts as robust at ε when it is
      classified correctly at ``x`` and at every adversarial point the attack(s) returned.
    """
    eps_list = tuple(float(e) for e in (np.atleast_1d(np.asarray(eps, float))))
    if not eps_list:
        raise ValueError("eps is empty: give one radius or a list of them")
    for e in eps_list:
        _checks.check_positive("eps", e)
    _checks.check_choice("norm", norm, ("linf", "l2"))
    if isinstance(attack, str):
        _checks.check_choice("attack", attack, ATTACKS)
    elif not callable(attack):
        raise ValueError(f"attack must be one of {sorted(ATTACKS)} or a callable, got {attack!r}")
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    if x.ndim < 2 or y.shape != x.shape[:1]:
        raise ValueError(f"x must be a batch [N, ...] and y [N] labels, got {list(x.shape)} and {list(y.shape)}")
    _checks.check_in_clip(x, clip)
    key = jax.random.key(0) if key is None else key
    g, params = per_example_fn(model, variables)
    predict = _predict_fn(g)
    steps = (40 if attack == "pgd" else 100) if steps is None else _checks.check_steps(steps)
    runs = _runs(attack, g, params, x[:1])
    n, bs = x.shape[0], int(batch_size)
    clean = np.zeros(n, bool)
    correct = np.zeros((len(eps_list), n), bool)
    bar = tqdm(total=len(eps_list) * -(-n // bs), desc=f"robust accuracy ({_name(attack)})", unit="batch",
               disable=not progress)
    for b, lo in enumerate(range(0, n, bs)):
        xb, yb = x[lo:lo + bs], y[lo:lo + bs]
        ok = np.asarray(predict(params, xb, yb))
        clean[lo:lo + bs] = ok
        kb = jax.random.fold_in(key, b)
        for i, e in enumerate(eps_list):
            for run in runs:
                xa = _attack_batch(run, model, xb, yb, e, kb, variables=variables, norm=norm, steps=steps,
                                   alpha=alpha, n_restarts=n_restarts, clip=clip)
                ok = ok & np.asarray(predict(params, xa, yb))
            correct[i, lo:lo + bs] = ok
            bar.update(1)
    bar.close()
    settings = dict(steps=steps, n_restarts=n_restarts if attack != "pgd" else None, clip=clip,
                    alpha=alpha if attack == "pgd" else None,
                    runs=[r if isinstance(r, str) else "callable" for r in runs])
    return RobustAccuracy(eps=eps_list, clean=float(clean.mean()), robust=tuple(float(c.mean()) for c in correct),
                          n=n, attack=_name(attack), norm=norm, settings=settings, correct=correct)


def _name(attack) -> str:
    return attack if isinstance(attack, str) else getattr(attack, "__name__", "callable")


def _runs(attack, g, params, x1) -> list:
    """The attacks one name stands for (DLR needs ≥ 3 logits, targeted DLR ≥ 4)."""
    if not isinstance(attack, str):
        return [attack]
    C = _checks.num_classes(functools.partial(g, params), x1[0])
    if attack == "apgd":
        return ["apgd-ce"] + (["apgd-dlr"] if C >= 3 else [])
    if attack == "apgd-t":
        return ["apgd-ce"] + (["apgd-dlr"] if C >= 3 else []) + (["apgd-dlr-t"] if C >= 4 else [])
    return [attack]


def _attack_batch(run, model, xb, yb, e, kb, *, variables, norm, steps, alpha, n_restarts, clip):
    if run == "pgd":
        a = 2.5 * e / steps if alpha is None else alpha
        return pgd_batch(model, xb, yb, eps=e, alpha=a, steps=steps, norm=norm, key=kb, clip=clip,
                         variables=variables).x_adv
    if isinstance(run, str):
        loss, targeted = {"apgd-ce": ("ce", False), "apgd-dlr": ("dlr", False), "apgd-dlr-t": ("dlr", True)}[run]
        return apgd(model, xb, yb, eps=e, norm=norm, loss=loss, targeted=targeted, steps=steps, n_restarts=n_restarts,
                    key=kb, variables=variables, clip=clip).x_adv
    xa = jnp.asarray(run(xb, yb, e, kb))
    _check_adversarial(xb, xa, e, norm, clip)
    return xa


def _check_adversarial(x, xa, eps, norm, clip, rtol: float = 1e-5) -> None:
    """A custom attack's ``x_adv``: the shape of ``x``, inside the ε-ball (up to rounding) and ``clip``."""
    if xa.shape != x.shape:
        raise ValueError(f"the attack returned x_adv of shape {list(xa.shape)} for x of shape {list(x.shape)}")
    d = np.asarray(xa - x, float).reshape(x.shape[0], -1)
    size = np.abs(d).max(axis=1) if norm == "linf" else np.linalg.norm(d, axis=1)
    if np.any(size > eps * (1 + rtol) + 1e-7):
        raise ValueError(f"the attack left the {norm} ball of radius {eps}: largest perturbation {size.max():.6g}")
    if clip is not None and (np.asarray(xa).min() < clip[0] or np.asarray(xa).max() > clip[1]):
        raise ValueError(f"the attack returned points outside clip={clip}")


@functools.lru_cache(maxsize=32)
def _predict_fn(g):
    """``fn(params, x, y) -> [B]`` bool: classified correctly."""
    return jax.jit(lambda p, x, y: jax.vmap(lambda xi, yi: jnp.logical_not(is_success(g(p, xi), yi)))(x, y))
