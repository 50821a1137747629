"""Appendix D/J and Figure 1: Theorem 2's prediction against attacks of every variant, and the
baselines it is compared with.

* :func:`make_pgd_fn`, :func:`make_raw_free_fn`, :func:`make_fig1_fn` — Appendix D (Theorem 2
  against few-step PGD, with the ``g_x``-only baseline), Appendix J (gate flips and the change of
  λ₁ of ``H̄_x`` at the attack's endpoint) and Figure 1's arrays, jitted over a batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdyn.core import influence
from jaxdyn.attacks.multistep import attack
from jaxdyn.core.gating import flip_fraction, input_jacobian
from jaxdyn.analyses.metrics import cosine
from jaxdyn.core.models import logits_fn
from jaxdyn.attacks.variants import variant_attack
from jaxdyn.core.theory import match_beta, predict, prepare, structured_eigenpairs, theorem2

__all__ = ["flip_rate", "ATTACK_FLIPS", "attack_row", "appendix_j", "make_pgd_fn", "make_raw_free_fn", "make_fig1_fn"]




def appendix_j(model, variables, f, x, delta, J, hbar_z) -> dict:
    """Appendix J at ``x + δ``: the fraction of flipped ReLU gates and ``|Δλ₁| / λ₁`` of ``H̄_x``
    with ``W̃ = Jᵀ`` at ``x + δ`` instead of ``x`` (same ``H̄_z``); ``lam0`` the clean λ₁."""
    lam0, lam1 = (structured_eigenpairs(Jx, hbar_z)[0][0] for Jx in (J, input_jacobian(f, x + delta)))
    return dict(flip_fraction=flip_fraction(model.apply, variables, x, x + delta),
                eig_rel_change=jnp.abs(lam1 - lam0) / lam0, lam0=lam0)


def make_pgd_fn(model, *, steps: int, gating: str):
    """Jitted ``(variables, x, y, v) -> dict``: one Appendix-D attack (``v``:
    :func:`jaxdyn.attacks.variants.variant`, traced: one compile per ``gating`` for every norm, ε, α
    and clip) and its comparison with Theorem 2 (``δ̂`` with the attack's ``H̄_z``, β matched to the
    attack's norm; the target is ``δ`` for ℓ2, the effective component for ℓ∞) and with the
    ``g_x``-only baseline ``1 - cos(g_x, ·)``, plus the Appendix-J gate flips and λ₁ change at its
    endpoint."""

    def one(variables, x, y, v):
        f = logits_fn(model, variables)
        res = variant_attack(f, x, y, v, steps=steps, gating=gating)
        target = jnp.where(v["l2"], res.delta, res.delta_effective)
        J, _, gz = prepare(f, x, y)
        beta = match_beta(J, gz, res.hbar_z, jnp.linalg.norm(target))
        dh = theorem2(J, gz, res.hbar_z, beta).delta.reshape(x.shape)
        j = appendix_j(model, variables, f, x, res.delta, J, res.hbar_z)
        return dict(
            one_minus_cos=1.0 - cosine(dh, target), one_minus_cos_first_order=1.0 - cosine(J.T @ gz, target),
            beta=beta, beta_lambda1=beta * j.pop("lam0"), **j, delta=res.delta, target=target, delta_hat=dh,
            success_step=res.success_step)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None)))


def make_raw_free_fn(model, *, steps: int):
    """Jitted ``(variables, x, y, beta) -> dict``: Appendix J for the free-gating raw attack (and
    its ``success_step``, :func:`flip_rate`)."""

    def one(variables, x, y, beta):
        f = logits_fn(model, variables)
        res = attack(f, x, y, steps=steps, beta=beta, norm="raw", gating="free")
        j = appendix_j(model, variables, f, x, res.delta, input_jacobian(f, x), res.hbar_z)
        return dict(flip_fraction=j["flip_fraction"], eig_rel_change=j["eig_rel_change"],
                    delta_norm=jnp.linalg.norm(res.delta), success_step=res.success_step)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None)))


def make_fig1_fn(model, *, steps: int):
    """Jitted ``(variables, x, y, beta) -> dict``: δ* (frozen raw attack) and δ̂ for Figure 1."""

    def one(variables, x, y, beta):
        f = logits_fn(model, variables)
        res = attack(f, x, y, steps=steps, beta=beta, norm="raw", gating="frozen")
        return dict(delta_star=res.delta, delta_hat=predict(f, x, y, res.hbar_z, beta=beta).delta_hat)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None)))


def flip_rate(success_step) -> float:
    """The fraction of the correctly classified digits (``success_step != 0``, valid) that the
    attack flipped (``success_step > 0``); NaN when none is correctly classified."""
    import numpy as np

    s = np.asarray(success_step)
    correct = (s > 0) | (s == -1)
    return float(np.sum(s > 0) / np.sum(correct)) if np.any(correct) else float("nan")


#: Appendix J's verdict β: the smallest β at which the raw attack flips this fraction of the
#: correctly classified digits (the attack regime of Tables 1-2)
ATTACK_FLIPS = 0.5


def attack_row(rows: list) -> dict:
    """The row (``{"beta", "label_flips", ...}``) of the smallest β whose attack flips ≥
    :data:`ATTACK_FLIPS` of the correctly classified digits; the largest β if none does."""
    hit = [j for j in rows if j.get("label_flips", 0) >= ATTACK_FLIPS]
    return min(hit, key=lambda j: j["beta"]) if hit else max(rows, key=lambda j: j["beta"])
