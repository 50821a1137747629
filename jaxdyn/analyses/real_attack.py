"""Table 2's real-attack measurement: ``φ*`` measured at a real attack, and Theorems 3-5 against it.

* :func:`real_attack_phi` — Table 2's measured side for one example (the raw attack A1 gives
  ``δ*`` and ``H̄_z``; :func:`jaxdyn.core.influence.measure` at ``δ*`` gives ``φ*``);
* :func:`real_attack_kappa` — κ′ of Eqs. 9 and 10 against that ``φ*``, beside first-order and null
  baselines;
* :func:`l2_attack_phi`, :func:`eq11_kappa` — Theorem 5 (Eq. 11) against a real ℓ2 attack;
* :func:`attack_influence` — Figs. 3-4's per-sample quantities under a real attack.

Theorem 5 (Eq. 11) against a real ℓ2 attack (Table 2's real-attack protocol).

Eq. 11 predicts ``φ^(norm) = g̃_xᵀ Δg̃_x^(norm)`` for training on ``x + δ̂^(norm)``,
``δ̂^(norm) = C δ̂ / ||δ̂||``, the paper's stand-in for an ℓ2 attack of norm ``C``. Here ``C`` is
not chosen: it is the measured norm ``||δ^(ℓ2)||`` of a real ℓ2 PGD attack (normalised steps,
projected on the ℓ2 ball), and ``φ*`` is measured at ``δ^(ℓ2)`` on the network
(:func:`jaxdyn.core.influence.measure`, free or frozen gating). The theory enters only in
:func:`eq11_kappa`.

**Why e^A cancels for a binary head.** ``||δ̂|| = (e^A - 1)|g_z| / (H̄_z ||g̃_x||)`` (Theorem 2,
``δ̂ ∥ g̃_x``), so Eq. 11's ``C (e^A - 1)/||δ̂|| = C H̄_z ||g̃_x|| / |g_z|`` does not depend on
``A``: Eq. 11 is the linear response of ``g_z`` to a step of norm ``C`` along ``g̃_x``. The
first-order baseline reads the paper's formula literally with ``e^A → 1 + A`` in the numerator
and Theorem 2's ``||δ̂||`` (which scales the prediction by ``A / (e^A - 1)``); the null
predictor is ``φ̂ = 0`` (no adversarial effect on the training step).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxdyn.attacks.multistep import attack
from jaxdyn.core.influence import influence_A, measure, theorem3, theorem4, theorem5
from jaxdyn.core.losses import grad_z, loss

__all__ = ["real_attack_phi", "real_attack_kappa", "attack_influence", "L2_STEP_FACTOR", "l2_attack_phi",
           "delta_hat_norm", "eq11_predict", "eq11_kappa"]

#: the ℓ2 attack's step is ``L2_STEP_FACTOR * eps / steps`` (the usual PGD choice: the ball's
#: surface is reached well before the last step)
L2_STEP_FACTOR = 2.5


def l2_attack_phi(z_of: Callable, W: jax.Array, x: jax.Array, y, *, eps, steps: int, eta, gating: str = "free",
                  loss_fn: Callable = loss) -> dict:
    """The measured side of Eq. 11 for one example (no Eq. 9-11 enters): an ℓ2 PGD attack
    (``steps`` normalised steps of ``α = 2.5 eps / steps``, the ℓ2 ball of radius ``eps``, no
    clip, no random start, ``gating``) gives ``δ^(ℓ2)`` and its ``H̄_z``; :func:`measure` at
    ``δ^(ℓ2)`` (same gating) gives ``phi`` (``φ*``), ``phi_ori``, ``g_z``, ``gx_norm2``, ``q``.
    Also ``c = ||δ^(ℓ2)||`` (Eq. 11's ``C``), ``hbar_z`` and ``success_step``. ``eps`` may be
    traced (one compile for every budget)."""
    r = attack(lambda t: z_of(W, t), x, y, steps=steps, alpha=L2_STEP_FACTOR * eps / steps, norm="l2", eps=eps,
               gating=gating, loss_fn=loss_fn)
    m = measure(z_of, W, x, y, r.delta, eta=eta, gating=gating, loss_fn=loss_fn)
    return dict(phi=m.phi, phi_ori=m.phi_ori, g_z=m.g_z, gx_norm2=m.gx_norm2, q=m.q, hbar_z=r.hbar_z[0, 0],
                c=jnp.linalg.norm(r.delta), success_step=r.success_step)


def delta_hat_norm(*, A, g_z, hbar_z, gx_norm2, first_order: bool = False):
    """``||δ̂||`` of Theorem 2 for a binary head: ``(e^A - 1)|g_z| / (H̄_z ||g̃_x||)`` (``A`` in
    place of ``e^A - 1`` for ``first_order``)."""
    grow = A if first_order else jnp.expm1(A)
    return grow * jnp.abs(g_z) / (hbar_z * jnp.sqrt(gx_norm2))


def eq11_predict(q: dict, *, beta, eta, first_order: bool = False):
    """Eq. 11's ``φ̂`` per sample from ``q`` (:func:`l2_attack_phi`'s dict, arrays): ``C = q["c"]``,
    ``A = β H̄_z ||g̃_x||²`` with the ℓ2 attack's ``H̄_z``, ``||δ̂||`` exact (Theorem 2) in both
    cases; ``first_order`` replaces ``e^A`` by ``1 + A`` in the formula only."""
    g = lambda k: jnp.asarray(q[k])  # noqa: E731
    A = influence_A(beta, g("hbar_z"), g("gx_norm2"))
    dn = delta_hat_norm(A=A, g_z=g("g_z"), hbar_z=g("hbar_z"), gx_norm2=g("gx_norm2"))
    return theorem5(A=A, phi_ori=g("phi_ori"), g_z=g("g_z"), hbar_z=g("hbar_z"), q=g("q"), eta=eta, c=g("c"),
                    delta_norm=dn, first_order=first_order)


def eq11_kappa(q: dict, *, beta, eta) -> dict:
    """κ′ of Eq. 11 against the measured ``φ*`` at the ℓ2 attack, beside the first-order and the
    null (``φ̂ = 0``) baselines computed the same way, and the fraction of samples with
    ``sign φ̂ = sign φ*``; also the median ``C`` and the median ``A``."""
    phi = jnp.asarray(q["phi"])
    p, p1 = eq11_predict(q, beta=beta, eta=eta), eq11_predict(q, beta=beta, eta=eta, first_order=True)
    kp = lambda b: float(jnp.mean(jnp.abs(phi - b)) / jnp.mean(jnp.abs(phi)))  # noqa: E731
    A = influence_A(beta, jnp.asarray(q["hbar_z"]), jnp.asarray(q["gx_norm2"]))
    return dict(kappa_prime_eq11=kp(p), kappa_prime_eq11_first_order=kp(p1),
                kappa_prime_eq11_null=kp(jnp.zeros_like(phi)),
                sign_agreement_eq11=float(jnp.mean(jnp.sign(p) == jnp.sign(phi))),
                eq11_c_median=float(jnp.median(jnp.asarray(q["c"]))), eq11_A_median=float(jnp.median(A)))


def attack_influence(z_of: Callable, W: jax.Array, x: jax.Array, y, *, beta, steps: int, eta,
                     gating: str = "free") -> dict:
    """Figs. 3-4's per-sample quantities for one example of a binary network, under a real attack.

    Runs the raw attack (A1) with ``m = steps`` steps of ``α = β/m`` (trajectory recorded), then:
    ``hbar_z`` (the trajectory average of docs/spec.md, scalar), ``gx2 = ||g̃_x||²``, ``hbar_z_gx2``,
    ``A = β H̄_z ||g̃_x||²`` (:func:`influence_A`), ``A_hat = Σ_{t=1}^{m} α H̄_z ||g̃_{x+δ^(t)}||²``
    (Sec. 3.3; ``||g̃|| = ||g|| / |g_z|`` since ``g_x = g_z g̃_x`` for one logit), and from
    :func:`measure` on ``δ``: ``phi``, ``abs_phi``, ``dgw_norm``, ``dgw`` (``Δg_W``, shape of
    ``W``); ``delta_norm`` and ``success`` (the attack flipped the label).

    Under A2 (``gating="frozen"``) ``g̃`` is constant along the attack, so ``A_hat = A`` exactly.
    ``z_of``/``W``: :func:`first_layer_fn`; ``gating`` applies to the attack and to ``g_W(x + δ)``.
    """
    f = lambda t: z_of(W, t)  # noqa: E731
    r = attack(f, x, y, steps=steps, beta=beta, norm="raw", gating=gating, record=True)
    tr = r.trajectory
    gz = jax.vmap(lambda z: grad_z(z, y)[0])(tr["logits"])  # [m+1]
    gt2 = (tr["grad_norm"] / jnp.abs(gz)) ** 2  # ||g̃_{x+δ^(t)}||², t = 0..m
    hbar = r.hbar_z[0, 0]
    m = measure(z_of, W, x, y, r.delta, eta=eta, gating=gating)
    return dict(hbar_z=hbar, gx2=m.gx_norm2, hbar_z_gx2=hbar * m.gx_norm2, A=influence_A(beta, hbar, m.gx_norm2),
                A_hat=(beta / steps) * hbar * jnp.sum(gt2[1:]), phi=m.phi, abs_phi=jnp.abs(m.phi),
                dgw_norm=m.dgw_norm, dgw=m.dgw, delta_norm=jnp.linalg.norm(r.delta), success=r.success_step >= 0)


def real_attack_phi(z_of: Callable, W: jax.Array, x: jax.Array, y, *, beta, steps: int, eta,
                    gating: str = "free", loss_fn: Callable = loss) -> dict:
    """Table 2's measured side for one example (no Eq. 9-11 enters): the raw attack (A1, ``α =
    β/steps``, ``gating``) gives ``δ*`` and ``H̄_z``; :func:`measure` at ``δ*`` (same gating) gives
    ``phi`` (``φ*``), ``phi_adv``, ``phi_ori``, ``g_z``, ``gx_norm2``, ``q``; also ``hbar_z``,
    ``A``, ``delta_l2``, ``delta_linf``, ``success_step``."""
    r = attack(lambda t: z_of(W, t), x, y, steps=steps, beta=beta, norm="raw", gating=gating, loss_fn=loss_fn)
    m = measure(z_of, W, x, y, r.delta, eta=eta, gating=gating, loss_fn=loss_fn)
    hbar = r.hbar_z[0, 0]
    return dict(phi=m.phi, phi_adv=m.phi_adv, phi_ori=m.phi_ori, g_z=m.g_z, gx_norm2=m.gx_norm2, q=m.q,
                hbar_z=hbar, A=influence_A(beta, hbar, m.gx_norm2), delta_l2=jnp.linalg.norm(r.delta),
                delta_linf=jnp.max(jnp.abs(r.delta)), success_step=r.success_step)


def real_attack_kappa(q: dict, *, eta) -> dict:
    """κ′ of Eqs. 9 and 10 against the measured ``φ*`` (``q``: the per-sample ``[N]`` arrays of
    :func:`real_attack_phi`), beside two baselines computed the same way: first
    order (``e^A → 1 + A``) and the null predictor (``φ̂ = 0`` for Eq. 9, ``φ̂ = φ^(ori)`` for
    Eq. 10: "no adversarial effect"); ``sign_agreement``: the fraction of samples with
    ``sign φ̂ = sign φ*`` (also for first order). The theory enters here only, through
    :func:`jaxdyn.core.theorem3` / ``theorem4``; the measurement never calls them."""
    g = lambda k: jnp.asarray(q[k])  # noqa: E731
    common = dict(A=g("A"), phi_ori=g("phi_ori"), g_z=g("g_z"), hbar_z=g("hbar_z"), q=g("q"), eta=eta)
    phi, adv = g("phi"), g("phi_adv")
    p9, p9_1 = theorem3(**common), theorem3(**common, first_order=True)
    p10, p10_1 = theorem4(**common), theorem4(**common, first_order=True)

    def kp(a, b):
        return float(jnp.mean(jnp.abs(a - b)) / jnp.mean(jnp.abs(a)))

    sign = lambda a, b: float(jnp.mean(jnp.sign(a) == jnp.sign(b)))  # noqa: E731
    return dict(kappa_prime=kp(phi, p9), kappa_prime_first_order=kp(phi, p9_1),
                kappa_prime_null=kp(phi, jnp.zeros_like(phi)), sign_agreement=sign(p9, phi),
                sign_agreement_first_order=sign(p9_1, phi), kappa_prime_eq10=kp(adv, p10),
                kappa_prime_eq10_first_order=kp(adv, p10_1), kappa_prime_eq10_null=kp(adv, common["phi_ori"]))
