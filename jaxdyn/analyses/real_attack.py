"""Table 2's real-attack measurement: ``φ*`` measured at Theorem 2's ``δ̂`` and at real attacks,
and Theorems 3-5 (Eqs. 9-11, :mod:`jaxdyn.core.influence`) applied against it as κ′.

The module has three parts, in this order:

1. **The measured side, per example** (no Eq. 9-11 enters): :func:`delta_hat_phi` (the paper's
   protocol: ``φ*`` at Theorem 2's ``δ̂`` under A2, and its variants), :func:`real_attack_phi` (the
   raw attack A1 gives ``δ*`` and ``H̄_z``; :func:`jaxdyn.core.influence.measure` at ``δ*`` gives
   ``φ*``), :func:`l2_attack_phi` (the same for a real ℓ2 attack, Eq. 11) and
   :func:`attack_influence` (Figs. 3-4's per-sample quantities under a real attack).
2. **The theory against the measurement (κ′)**: :func:`paper_kappa` (the paper protocol's κ′ of
   Eqs. 9-11 and its variants), :func:`real_attack_kappa` (Eqs. 9 and 10 against a real attack,
   beside first-order and null baselines), :func:`eq11_predict` / :func:`eq11_kappa` (Eq. 11
   against a real ℓ2 attack). The theory enters here only. A real-attack row holds one record per
   equation (:data:`EQUATIONS`), each with κ′ and its baselines (:data:`RECORD_FIELDS`).
3. **One network**: the jitted per-batch builders (:func:`make_batch_fn`, :func:`make_sweep_fn`)
   and the per-network measurements Table 2 runs (:func:`paper_protocol`, :func:`real_attack_sweep`).

**Eq. 11 against a real ℓ2 attack.** Eq. 11 predicts ``φ^(norm) = g̃_xᵀ Δg̃_x^(norm)`` for training
on ``x + δ̂^(norm)``, ``δ̂^(norm) = C δ̂ / ||δ̂||``, the paper's stand-in for an ℓ2 attack of norm
``C``. Here ``C`` is not chosen: it is the measured norm ``||δ^(ℓ2)||`` of a real ℓ2 PGD attack
(normalised steps, projected on the ℓ2 ball), and ``φ*`` is measured at ``δ^(ℓ2)`` on the network
(free or frozen gating). The theory enters only in :func:`eq11_kappa`.

**e^A cancels for a binary head**: ``||δ̂|| = (e^A - 1)|g_z| / (H̄_z ||g̃_x||)`` (Theorem 2), so Eq. 11
is the linear response of ``g_z`` to a step of norm ``C`` along ``g̃_x``; its first-order baseline reads the
formula literally (``e^A → 1 + A`` in the numerator, Theorem 2's ``||δ̂||``); the null is ``φ̂ = 0``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._internal.sharding import chunked
from jaxdyn.analyses.metrics import kappa_prime, per_sample_norm
from jaxdyn.analyses.variant_matching import flip_rate
from jaxdyn.attacks.multistep import attack, logit_space_attack
from jaxdyn.core import influence
from jaxdyn.core.influence import influence_A, measure, theorem3, theorem4, theorem5
from jaxdyn.core.gating import gate_pattern
from jaxdyn.core.losses import grad_z, loss
from jaxdyn.core.theory import predict

__all__ = ["delta_hat_phi", "real_attack_phi", "L2_STEP_FACTOR", "l2_attack_phi", "attack_influence", "paper_kappa",
           "real_attack_kappa", "delta_hat_norm", "eq11_predict", "eq11_kappa", "make_batch_fn", "make_sweep_fn",
           "PAPER_FIELDS", "PaperProtocol", "paper_protocol", "real_attack_sweep", "RECORD_FIELDS",
           "EQUATIONS", "beta_for_A", "digit_errors"]

#: the fields of one equation's κ′ record in a real-attack row (``row["eq9"]``, ``"eq10"``, ``"eq11"``):
#: κ′, its first-order and its null baseline
RECORD_FIELDS = ("kappa_prime", "first_order", "null")
#: the equations of a real-attack row, each a record of :data:`RECORD_FIELDS` (and more)
EQUATIONS = ("eq9", "eq10", "eq11")

#: the ℓ2 attack's step is ``L2_STEP_FACTOR * eps / steps`` (the usual PGD choice: the ball's
#: surface is reached well before the last step)
L2_STEP_FACTOR = 2.5


# --- 1. the measured side, per example ----------------------------------------------------------


def delta_hat_phi(z_of: Callable, W: jax.Array, x: jax.Array, y, *, beta, delta_star: jax.Array, hbar: jax.Array,
                  eta, norm_c) -> dict:
    """The paper protocol's measured side for one example: Theorem 2's ``δ̂`` (with the attack's
    ``H̄_z``, ``hbar`` ``[1, 1]``), and :func:`jaxdyn.core.influence.measure` at ``δ̂`` under A2
    (``phi``, ``phi_ori``, ``phi_adv``, ``g_z``, ``gx_norm2``, ``q``, ``dgw_norm``), with free
    gating (``phi_free``), at the attack's ``δ*`` (``phi_attack``) and at ``norm_c δ̂``
    (``phi_norm``, Eq. 11); ``phi_one_scalar``, the one-scalar reconstruction of ``φ*``
    (docs/theory.md); ``hbar_z``, ``delta_hat_norm``, ``delta_star`` (flat)."""
    f = lambda xx: z_of(W, xx)  # noqa: E731
    pred = predict(f, x, y, hbar, beta=beta)
    dh = pred.delta_hat
    m = measure(z_of, W, x, y, dh, eta=eta, gating="frozen")
    m_free = measure(z_of, W, x, y, dh, eta=eta, gating="free")
    m_star = measure(z_of, W, x, y, delta_star, eta=eta, gating="frozen")
    m_norm = measure(z_of, W, x, y, norm_c * dh, eta=eta, gating="frozen")
    gt = jax.grad(lambda t: f(t)[0])(x)  # the one-scalar reconstruction of φ* (docs/theory.md)
    r = grad_z(f(x) + jnp.vdot(gt, dh), y)[0] / m.g_z
    phi_r = influence.phi_one_scalar(r=r, A=influence_A(beta, hbar[0, 0], m.gx_norm2), phi_ori=m.phi_ori,
                                     g_z=m.g_z, hbar_z=hbar[0, 0], q=m.q, eta=eta)
    return dict(
        phi_one_scalar=phi_r, hbar_z=hbar[0, 0], phi=m.phi, phi_ori=m.phi_ori, phi_adv=m.phi_adv, g_z=m.g_z,
        gx_norm2=m.gx_norm2, q=m.q, dgw_norm=m.dgw_norm, phi_free=m_free.phi, phi_attack=m_star.phi,
        phi_norm=m_norm.phi, delta_hat_norm=jnp.linalg.norm(dh), delta_star=delta_star.ravel(),
    )


def real_attack_phi(z_of: Callable, W: jax.Array, x: jax.Array, y, *, beta, steps: int, eta,
                    gating: str = "free", loss_fn: Callable = loss, logit_space: bool = False) -> dict:
    """Table 2's measured side for one example (no Eq. 9-11 enters): the raw attack (A1, ``α =
    β/steps``, ``gating``) gives ``δ*`` and ``H̄_z``; :func:`measure` at ``δ*`` (same gating) gives
    ``phi`` (``φ*``), ``phi_adv``, ``phi_ori``, ``g_z``, ``gx_norm2``, ``q``; also ``hbar_z``,
    ``A``, ``delta_l2``, ``delta_linf``, ``success_step``, ``dgw_norm`` and ``delta`` (``δ*``). ``logit_space``
    (frozen gating only): the exact A2 attack in logit space (:func:`logit_space_attack`, the same ``δ*``, cheaper)."""
    f = lambda t: z_of(W, t)  # noqa: E731
    if logit_space and gating != "frozen":
        raise ValueError("the logit-space attack is the frozen-gating (A2) attack")
    r = (logit_space_attack(f, x, y, steps=steps, beta=beta, loss_fn=loss_fn) if logit_space else
         attack(f, x, y, steps=steps, beta=beta, norm="raw", gating=gating, loss_fn=loss_fn))
    m = measure(z_of, W, x, y, r.delta, eta=eta, gating=gating, loss_fn=loss_fn)
    hbar = r.hbar_z[0, 0]
    return dict(phi=m.phi, phi_adv=m.phi_adv, phi_ori=m.phi_ori, g_z=m.g_z, gx_norm2=m.gx_norm2, q=m.q,
                hbar_z=hbar, A=influence_A(beta, hbar, m.gx_norm2), delta_l2=jnp.linalg.norm(r.delta),
                delta_linf=jnp.max(jnp.abs(r.delta)), success_step=r.success_step, dgw_norm=m.dgw_norm, delta=r.delta)


def beta_for_A(f: Callable, x: jax.Array, y, *, a_target, steps: int, gating: str, n_iter: int = 2):
    """The per-digit β at which ``A = β H̄_z(β) ||g̃_x||²`` of the raw attack (``steps``, ``gating``) hits
    ``a_target``: start at the closed form with the clean-input ``H_z``, then ``n_iter`` attacks, each
    a secant step on ``log A`` against ``log β`` (the first with slope 1: the closed form at the
    attack's ``H̄_z``; slopes clipped to [1/4, 4]). The caller measures the ``A`` it reaches. Under frozen
    gating the attack is the exact A2 attack in logit space (:func:`logit_space_attack`: one Jacobian)."""
    gt = jax.grad(lambda t: f(t)[0])(x)
    g2, la_t = jnp.vdot(gt, gt), jnp.log(a_target)

    def run(beta):
        if gating == "frozen":
            return logit_space_attack(f, x, y, steps=steps, beta=beta, jacobian=gt.reshape(1, -1))
        return attack(f, x, y, steps=steps, beta=beta, norm="raw", gating=gating)

    def body(k, c):
        lb_prev, la_prev, lb = c
        r = run(jnp.exp(lb))
        la = jnp.log(jnp.maximum(influence_A(jnp.exp(lb), r.hbar_z[0, 0], g2), 1e-300))
        d = lb - lb_prev
        ok = (k > 0) & (jnp.abs(d) > 1e-9)
        slope = jnp.clip(jnp.where(ok, (la - la_prev) / jnp.where(ok, d, 1.0), 1.0), 0.25, 4.0)
        return lb, la, lb + (la_t - la) / slope

    lb0 = la_t - jnp.log(influence.influence_A_clean(f, x, y))
    return jnp.exp(jax.lax.fori_loop(0, n_iter, body, (lb0, jnp.zeros_like(lb0), lb0))[2])


def digit_errors(phi, pred, pred_first_order) -> dict:
    """Per digit: the relative error ``|φ* - φ̂| / |φ*|`` of a prediction (``err``), of its first-order
    baseline (``err_first_order``) and their ``ratio`` (theory / first order; ``|φ*|`` cancels), as lists."""
    phi, p, p1 = (np.asarray(a, np.float64) for a in (phi, pred, pred_first_order))
    with np.errstate(divide="ignore", invalid="ignore"):
        e, e1 = np.abs(phi - p) / np.abs(phi), np.abs(phi - p1) / np.abs(phi)
        ratio = np.abs(phi - p) / np.abs(phi - p1)
    return dict(err=e.tolist(), err_first_order=e1.tolist(), ratio=ratio.tolist())


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


# --- 2. the theory against the measurement (κ′) -------------------------------------------------


def paper_kappa(out: dict, beta: float, *, eta: float, norm_c: float) -> dict:
    """The paper protocol's κ′ of Eqs. 9-11 and the variants, from one :func:`make_batch_fn` output
    (``out``: :func:`delta_hat_phi`'s per-sample arrays): ``kappa_prime`` (Eq. 9), its first-order
    baseline, Eq. 10 (with first-order and ``φ̂ = φ_ori`` baselines), Eq. 11 (``C = norm_c ||δ̂||``),
    Eq. 9 against ``φ*`` with free gating and at ``δ*``; ``one_scalar_rel_err``, ``mean_A``,
    ``A_weighted``, ``mean_abs_phi``, ``frac_phi_negative``, ``frac_lemma1``, ``attack_success_rate``."""
    hz, gz, q, po = (jnp.asarray(out[k]) for k in ("hbar_z", "g_z", "q", "phi_ori"))
    A = influence_A(beta, hz, jnp.asarray(out["gx_norm2"]))
    common = dict(A=A, phi_ori=po, g_z=gz, hbar_z=hz, q=q, eta=eta)
    phi9 = theorem3(**common)
    phi9_1 = theorem3(**common, first_order=True)
    phi10 = theorem4(**common)
    dn = jnp.asarray(out["delta_hat_norm"])
    phi11 = theorem5(**common, c=norm_c * dn, delta_norm=dn)
    phi = jnp.asarray(out["phi"])
    kp = lambda a, b: float(kappa_prime(jnp.asarray(a), b))  # noqa: E731
    return dict(
        beta=beta,
        kappa_prime=kp(phi, phi9),
        kappa_prime_first_order=kp(phi, phi9_1),
        kappa_prime_eq10=kp(out["phi_adv"], phi10),
        kappa_prime_eq10_first_order=kp(out["phi_adv"], theorem4(**common, first_order=True)),
        kappa_prime_eq10_null=kp(out["phi_adv"], po),
        one_scalar_rel_err=float(jnp.max(jnp.abs(phi - jnp.asarray(out["phi_one_scalar"]))) / jnp.max(jnp.abs(phi))),
        kappa_prime_eq11=kp(out["phi_norm"], phi11),
        kappa_prime_free=kp(out["phi_free"], phi9),
        kappa_prime_attack=kp(out["phi_attack"], phi9),
        mean_A=float(jnp.mean(A)),
        A_weighted=float(jnp.sum(jnp.abs(phi) * A) / jnp.sum(jnp.abs(phi))),
        mean_abs_phi=float(jnp.mean(jnp.abs(phi))),
        frac_phi_negative=float(jnp.mean(phi < 0)),
        frac_lemma1=float(jnp.mean(hz >= gz**2)),
        attack_success_rate=float(np.mean(out["success"])),
    )


def real_attack_kappa(q: dict, *, eta) -> dict:
    """κ′ of Eqs. 9 and 10 against the measured ``φ*`` (``q``: the per-sample ``[N]`` arrays of
    :func:`real_attack_phi`), one record per equation (:data:`RECORD_FIELDS`): ``{"eq9": {...},
    "eq10": {...}}``, each with ``kappa_prime`` and two baselines computed the same way:
    ``first_order`` (``e^A → 1 + A``) and ``null`` (``φ̂ = 0`` for Eq. 9, ``φ̂ = φ^(ori)`` for
    Eq. 10: "no adversarial effect"); Eq. 9's ``sign_agreement``: the fraction of samples with
    ``sign φ̂ = sign φ*`` (``sign_agreement_first_order`` for first order); per digit
    :func:`digit_errors`.
    The theory enters here
    only, through :func:`jaxdyn.core.theorem3` / ``theorem4``; the measurement never calls them."""
    g = lambda k: jnp.asarray(q[k])  # noqa: E731
    common = dict(A=g("A"), phi_ori=g("phi_ori"), g_z=g("g_z"), hbar_z=g("hbar_z"), q=g("q"), eta=eta)
    phi, adv = g("phi"), g("phi_adv")
    p9, p9_1 = theorem3(**common), theorem3(**common, first_order=True)
    p10, p10_1 = theorem4(**common), theorem4(**common, first_order=True)

    def kp(a, b):
        return float(jnp.mean(jnp.abs(a - b)) / jnp.mean(jnp.abs(a)))

    sign = lambda a, b: float(jnp.mean(jnp.sign(a) == jnp.sign(b)))  # noqa: E731
    return dict(eq9=dict(kappa_prime=kp(phi, p9), first_order=kp(phi, p9_1), null=kp(phi, jnp.zeros_like(phi)),
                         sign_agreement=sign(p9, phi), sign_agreement_first_order=sign(p9_1, phi),
                         **digit_errors(phi, p9, p9_1)),
                eq10=dict(kappa_prime=kp(adv, p10), first_order=kp(adv, p10_1), null=kp(adv, common["phi_ori"]),
                          **digit_errors(adv, p10, p10_1)))


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
    """Eq. 11's record: ``kappa_prime`` against the measured ``φ*`` at the ℓ2 attack, beside the
    ``first_order`` and the ``null`` (``φ̂ = 0``) baselines computed the same way, and
    ``sign_agreement``, the fraction of samples with ``sign φ̂ = sign φ*``; also ``c_median`` (the
    median ``C``) and ``A_median``; per digit, :func:`digit_errors`. ``beta`` may be per digit."""
    phi = jnp.asarray(q["phi"])
    p, p1 = eq11_predict(q, beta=beta, eta=eta), eq11_predict(q, beta=beta, eta=eta, first_order=True)
    kp = lambda b: float(jnp.mean(jnp.abs(phi - b)) / jnp.mean(jnp.abs(phi)))  # noqa: E731
    A = influence_A(beta, jnp.asarray(q["hbar_z"]), jnp.asarray(q["gx_norm2"]))
    return dict(kappa_prime=kp(p), first_order=kp(p1), null=kp(jnp.zeros_like(phi)),
                sign_agreement=float(jnp.mean(jnp.sign(p) == jnp.sign(phi))),
                c_median=float(jnp.median(jnp.asarray(q["c"]))), A_median=float(jnp.median(A)),
                **digit_errors(phi, p, p1))


# --- 3. one network: the jitted builders and Table 2's per-network measurements -----------------


def make_batch_fn(model, path, steps: int, *, eta: float, norm_c: float):
    """Jitted ``(variables, x [B,28,28,1], y [B], beta, network_attack) -> dict of per-sample
    arrays`` (:func:`delta_hat_phi`'s, ``success`` and ``delta_logit_space``). ``network_attack``
    (a traced bool, ``lax.cond``: one compile for both): run the A2 attack through the network
    (:func:`jaxdyn.attacks.multistep.attack`, the headline) or in logit space (exact, cheap: the β
    grid); ``delta_logit_space`` is the logit-space δ* (to check the agreement with the headline)."""

    def one(variables, x, y, beta, network_attack):
        z_of, W, _ = influence.first_layer_fn(model, variables, path=path)
        f = lambda xx: z_of(W, xx)  # noqa: E731
        lsa = logit_space_attack(f, x, y, steps=steps, beta=beta)
        fro = jax.lax.cond(network_attack, lambda: attack(f, x, y, steps=steps, beta=beta, gating="frozen"),
                           lambda: lsa)
        out = delta_hat_phi(z_of, W, x, y, beta=beta, delta_star=fro.delta, hbar=fro.hbar_z, eta=eta, norm_c=norm_c)
        out["success"] = fro.success_step >= 0
        out["delta_logit_space"] = lsa.delta.ravel()
        return out

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None, None)))


def make_sweep_fn(model, path, steps: int, *, eta: float, n_iter: int = 2):
    """Jitted ``(variables, x, y, a_target) -> {gating: per-sample dict}``: the real-attack protocol's
    measurement per digit at its own β (:func:`beta_for_A`, free and frozen gating apart, the target
    traced: one compile per architecture): :func:`real_attack_phi` at that β (with ``beta``,
    ``gate_flips``: ReLU units whose state at ``x + δ*`` differs from ``x``; ``gate_units``); under A2 (in
    logit space, exact) also Eq. 11's ℓ2 attack, ``"l2"`` (:func:`l2_attack_phi`, budget ``||δ*||₂``)."""

    def one(variables, x, y, a_target):
        z_of, W, _ = influence.first_layer_fn(model, variables, path=path)
        f = lambda t: z_of(W, t)  # noqa: E731
        gates = gate_pattern(model.apply, variables, x)
        out = {}
        for g in ("free", "frozen"):
            beta = beta_for_A(f, x, y, a_target=a_target, steps=steps, gating=g, n_iter=n_iter)
            q = real_attack_phi(z_of, W, x, y, beta=beta, steps=steps, eta=eta, gating=g, logit_space=g == "frozen")
            d = q.pop("delta")
            q.update(beta=beta, gate_flips=jnp.sum(gate_pattern(model.apply, variables, x + d) != gates),
                     gate_units=jnp.asarray(gates.size))
            if g == "frozen":  # Eq. 11 (under A2): an ℓ2 attack, budget the raw δ*'s ℓ2 norm
                q["l2"] = l2_attack_phi(z_of, W, x, y, eps=q["delta_l2"], steps=steps, eta=eta, gating=g)
            out[g] = q
        return out

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None)))


#: the headline's fields of :func:`paper_kappa` that the paper protocol's record repeats
PAPER_FIELDS = ("kappa_prime", "kappa_prime_first_order", "kappa_prime_eq10", "kappa_prime_eq10_first_order",
                "kappa_prime_eq10_null", "mean_A", "one_scalar_rel_err")


class PaperProtocol(NamedTuple):
    """:func:`paper_protocol`'s result for one network."""

    #: :func:`paper_kappa` at the headline β, the A2 attack run through the network
    head: dict
    #: ``max_x ||δ*_logit space - δ*|| / ||δ*||``: the logit-space attack against the network's
    agreement: float
    #: :func:`paper_kappa` per β of the grid (the logit-space attack), β ascending
    grid: list


def paper_protocol(model, variables, path, x, y, *, beta: float, betas: Sequence[float], steps: int, eta: float,
                   norm_c: float, chunk: int | None, fn: Callable | None = None) -> PaperProtocol:
    """The paper protocol on one network: the headline at ``beta`` (the ``steps``-step A2 attack
    through the network gives ``H̄_z``; :func:`delta_hat_phi`; :func:`paper_kappa`), its agreement
    with the logit-space attack, and the κ′(β) grid over ``betas ∪ {beta}`` (one compile for all; ``fn``:
    a :func:`make_batch_fn` to reuse)."""
    fn = make_batch_fn(model, path, steps, eta=eta, norm_c=norm_c) if fn is None else fn

    def batches(network_attack, b):
        b, na = jnp.asarray(b, jnp.float64), jnp.asarray(network_attack)
        return chunked(lambda xb, yb: fn(variables, xb, yb, b, na), x, y, chunk=chunk)

    head_out = batches(True, beta)
    head = paper_kappa(head_out, beta, eta=eta, norm_c=norm_c)
    ds = head_out["delta_star"]
    agreement = float(np.max(per_sample_norm(head_out["delta_logit_space"] - ds) / per_sample_norm(ds)))
    grid = [paper_kappa(batches(False, b), b, eta=eta, norm_c=norm_c)
            for b in sorted(set(float(b) for b in betas) | {beta})]
    return PaperProtocol(head, agreement, grid)


def real_attack_sweep(model, variables, path, x, y, *, A_targets: Sequence[float], steps: int, eta: float,
                      chunk: int | None, fn: Callable | None = None) -> list[dict]:
    """The real-attack rows of one network: for each ``A_target`` and gating, each digit at its own β
    (:func:`beta_for_A`; ``fn``: a :func:`make_sweep_fn` to reuse, e.g. across seeds); per row the
    median β and measured ``A``, the flip rate of correctly classified digits, the median norms
    (``steps``: the raw attack's ``m``), ``digits`` (per digit: ``A``, ``beta``, ``gate_flips``,
    ``gate_flip_fraction``, ``dgw_norm``) and one record per equation, ``eq9``, ``eq10``
    (:func:`real_attack_kappa`) and ``eq11`` (:func:`eq11_kappa`): κ′ beside its baselines, pooled and
    per digit."""
    fn = make_sweep_fn(model, path, steps, eta=eta) if fn is None else fn
    rows = []
    for a_t in A_targets:
        a = jnp.asarray(a_t, jnp.float64)
        out = chunked(lambda xb, yb: fn(variables, xb, yb, a), x, y, chunk=chunk)
        for gating, q in out.items():
            digits = dict(A=q["A"], beta=q["beta"], gate_flips=q["gate_flips"], dgw_norm=q["dgw_norm"],
                          gate_flip_fraction=q["gate_flips"] / q["gate_units"])
            rows.append(dict(beta=float(np.median(q["beta"])), A_target=a_t, gating=gating, steps=steps,
                             A_median=float(np.median(q["A"])), flip_fraction=flip_rate(q["success_step"]),
                             delta_l2=float(np.median(q["delta_l2"])), delta_linf=float(np.median(q["delta_linf"])),
                             digits={k: np.asarray(v, np.float64).tolist() for k, v in digits.items()},
                             **real_attack_kappa(q, eta=eta),
                             **({"eq11": eq11_kappa(q["l2"], beta=q["beta"], eta=eta)} if "l2" in q else {})))
    return rows
