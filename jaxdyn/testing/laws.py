"""Checkers of the paper's exact laws: the analytic cases where the theory must hold to rounding
(a loss quadratic in ``z`` under A2), Lemma 1, the limits of C.3, the closed forms of the losses,
the ℓ∞ step and the law of the ℓ2 random start. Conventions as :mod:`jaxdyn.testing.checkers`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.attacks import multistep as attacks

from jaxdyn.core import gating

from jaxdyn.core import influence

from jaxdyn.core import losses

from jaxdyn.analyses import metrics

from jaxdyn.core import theory
from jaxdyn.testing.checkers import bind_params, jit_static, assert_close, rtol_for
from jaxdyn.testing.nets import QuadraticLoss

__all__ = ["assert_quadratic_loss_exact", "assert_eqs_9_to_11_exact", "assert_lemma1",
           "assert_c3_limits", "assert_loss_derivatives", "assert_linf_steps_exact",
           "assert_l2_start_uniform"]


@jit_static(("steps",))
def _quad_core(f, params, x, quad, beta, steps, loss_static=None):
    fx = bind_params(f, params)
    r = attacks.logit_space_attack(fx, x, 0, beta=beta, steps=steps, loss_fn=quad)
    t1 = theory.predict(fx, x, 0, quad.A, beta=beta, steps=steps, loss_fn=quad).delta_hat
    t2 = theory.predict(fx, x, 0, quad.A, beta=beta, loss_fn=quad).delta_hat
    r_net = attacks.attack(fx, x, 0, beta=beta, steps=steps, gating="frozen", loss_fn=quad)
    return r.delta, r.hbar_z, t1, t2, r_net.delta


def assert_quadratic_loss_exact(f, x, quad: QuadraticLoss, *, beta, steps=(50, 500), params=None,
                                rtol=None, min_gap=1e-6):
    """For a loss quadratic in ``z`` (``H_z = A`` constant) under A2: the m-step attack has
    ``H̄_z = A`` and IS Theorem 1 (to rounding), the network and logit-space attacks agree, and
    its gap to Theorem 2 (the gradient flow) is Theorem 1's residual, ``O(1/m)``: ten times the
    steps, a tenth of the gap (ratio in (8, 12)), provided the gap is above ``min_gap``."""
    tol = rtol or rtol_for(x)
    gaps = []
    for m in steps:
        d, hbar, t1, t2, d_net = _quad_core(f, params, x, quad, jnp.asarray(beta, x.dtype), m)
        assert_close(hbar, quad.A, tol, "quadratic loss: H_bar_z != A")
        assert_close(d, t1, tol, f"quadratic loss: {m}-step attack != Theorem 1")
        assert_close(d_net, d, tol, f"quadratic loss: frozen-network attack != logit-space attack ({m} steps)")
        gaps.append(float(metrics.kappa(d[None], t2[None])))
    for (m1, g1), (m2, g2) in zip(zip(steps, gaps), zip(steps[1:], gaps[1:])):
        if g1 > min_gap:
            ratio = (g1 / g2) / (m2 / m1)
            if not 0.8 < ratio < 1.2:
                raise AssertionError(f"Theorem 2 gap is not O(1/m): kappa {g1:.3e} at m={m1}, {g2:.3e} at m={m2}")
    return gaps


def _quad1(s, c):
    """Binary quadratic loss ``c (z + y s)² / 2`` (``H_z = c``)."""
    return lambda z, y: 0.5 * c * (z[0] + y * s) ** 2


def assert_eqs_9_to_11_exact(z_of, W, x, *, eta=0.05, A=0.6, c=0.3, rtol=None):
    """Theorems 3-5 (Eqs. 9, 10, 11) hold to rounding for a binary network under A2 with a loss
    quadratic in ``z`` (``L = c (z + y|z₀|)²/2``, ``y = sign z₀``), with β chosen so that the
    exponent is ``A`` (both terms of Eq. 9 O(1)). ``z_of(W, x) -> [1]``, ``W`` the first layer's
    kernel (:func:`jaxdyn.core.influence.first_layer_fn`)."""
    tol = rtol or rtol_for(x)

    def fx(xx):
        return z_of(W, xx)

    z0 = float(fx(x)[0])
    y = 1.0 if z0 >= 0 else -1.0
    quad = _quad1(abs(z0), c)
    J = gating.input_jacobian(fx, x)
    gz = jax.grad(quad)(fx(x), y)
    beta = A / (c * float(jnp.sum(J**2)))
    hbar = jnp.full((1, 1), c, x.dtype)
    dhat = theory.theorem2(J, gz, hbar, beta).delta.reshape(x.shape)
    m = influence.measure(z_of, W, x, y, dhat, eta=eta, gating="frozen", loss_fn=quad)
    common = dict(A=influence.influence_A(beta, c, m.gx_norm2), phi_ori=m.phi_ori, g_z=m.g_z, hbar_z=c,
                  q=m.q, eta=eta)
    assert_close(m.phi, influence.theorem3(**common), tol, "Eq. 9 (Theorem 3)")
    assert_close(m.phi_adv, influence.theorem4(**common), tol, "Eq. 10 (Theorem 4)")
    dn = float(jnp.linalg.norm(dhat))
    for C in (0.3 * dn, 2.5 * dn):
        mn = influence.measure(z_of, W, x, y, C * dhat / dn, eta=eta, gating="frozen", loss_fn=quad)
        assert_close(mn.phi, influence.theorem5(**common, c=C, delta_norm=dn), tol, f"Eq. 11 (Theorem 5), C={C:.3g}")


def assert_lemma1(z, y):
    """Lemma 1: softmax ``H_z`` is PSD; sigmoid ``H_z >= g_z²`` whenever ``y z > 0``."""
    H = np.asarray(losses.hessian_z(z, y))
    tol = 10 * float(jnp.finfo(z.dtype).eps)
    if z.shape[0] == 1:
        if float(y) * float(z[0]) > 0 and not float(theory.lemma1_sigmoid_margin(z, y)) >= -tol:
            raise AssertionError(f"Lemma 1 (sigmoid): H_z < g_z^2 at y z = {float(y) * float(z[0])!r}")
        if not H[0, 0] >= 0:
            raise AssertionError("Lemma 1 (sigmoid): H_z < 0")
    elif not np.linalg.eigvalsh(H).min() >= -tol:
        raise AssertionError(f"Lemma 1 (softmax): H_z not PSD, min eigenvalue {np.linalg.eigvalsh(H).min()!r}")


def assert_loss_derivatives(z, y, loss_fn=losses.loss, rtol=None):
    """The closed forms ``grad_z``/``hessian_z`` of :mod:`jaxdyn.core.losses` equal ``jax.grad`` /
    ``jax.hessian`` of the loss (relative to the largest entry)."""
    tol = rtol or rtol_for(z)  # relative to the largest entry: the sigmoid's tiny s(1-s) passes
    assert_close(losses.grad_z(z, y), jax.grad(loss_fn)(z, y), tol, "g_z != jax.grad(L)")
    assert_close(losses.hessian_z(z, y), jax.hessian(loss_fn)(z, y), tol, "closed-form H_z != jax.hessian(L)")


def assert_c3_limits(f, x, y, *, params=None, hbar_z=None):
    """Conclusion C.3 with ``H̄_z`` (default ``H_z`` at ``x``): ``H̄_z = 0`` gives exactly
    ``δ̂ = β g_x``; small β: ``δ̂ ∥ g_x``; large β: ``δ̂ ∥ v_1``, the top eigenvector of ``H̄_x``."""
    fx = bind_params(f, params)
    z = fx(x)
    J = gating.input_jacobian(fx, x)
    gz = losses.grad_z(z, y)
    hz = losses.hessian_z(z, y) if hbar_z is None else hbar_z
    gx = J.T @ gz
    tol = rtol_for(x)
    assert_close(theory.theorem2(J, gz, jnp.zeros_like(hz), 0.7).delta, 0.7 * gx, tol, "C.3: H_bar_z = 0 != beta g_x")
    lam, V = theory.structured_eigenpairs(J, hz)
    if not float(lam[0]) > 0:
        raise AssertionError("C.3: H_bar_x has no positive eigenvalue")
    small = theory.theorem2(J, gz, hz, 1e-6 / float(lam[0])).delta
    if not 1 - float(metrics.cosine(small, gx)) < 1e-8:
        raise AssertionError("C.3: small beta, delta_hat is not parallel to g_x")
    gap = float(lam[0] - lam[1]) / float(lam[0]) if lam.shape[0] > 1 else 1.0
    if gap > 0.05:  # the large-β limit is reached at β ~ 1/(λ1 - λ2)
        big = theory.theorem2(J, gz, hz, 60.0 / (gap * float(lam[0]))).delta
        if not 1 - abs(float(metrics.cosine(big, V[:, 0]))) < 1e-8:
            raise AssertionError("C.3: large beta, delta_hat is not parallel to v_1")


@jit_static(("steps",))
def _linf_core(f, params, x, y, alpha, steps, loss_static=None):
    fx = bind_params(f, params)
    r = attacks.attack(fx, x, y, alpha=alpha, steps=steps, norm="linf")
    g0 = jax.grad(lambda xx: losses.loss(fx(xx), y))(x)
    return r.delta, g0


def assert_linf_steps_exact(f, x, y, *, alpha, steps=3, params=None):
    """An unprojected ℓ∞ attack moves every coordinate by exactly ``±α`` per step: after one
    step ``δ = α sign(g_x)``, after ``m`` steps ``δ/α`` is an integer of ``m``'s parity in
    ``[-m, m]`` (where no gradient entry is 0)."""
    alpha = jnp.asarray(alpha, x.dtype)
    d1, g0 = _linf_core(f, params, x, y, alpha, 1)
    assert_close(d1, alpha * jnp.sign(g0), 4 * float(jnp.finfo(x.dtype).eps), "l_inf: one step != alpha sign(g_x)")
    dm, _ = _linf_core(f, params, x, y, alpha, steps)
    k = np.asarray(dm / alpha)
    nz = np.asarray(g0 != 0)
    ok = (np.abs(k - np.round(k)) < 1e-9 * steps) & (np.abs(k) <= steps + 1e-9) & (np.round(k) % 2 == steps % 2)
    if not np.all(ok[nz]):
        raise AssertionError(f"l_inf: delta/alpha is not a sum of {steps} signs: {k[nz][~ok[nz]][:5]}")


def assert_l2_start_uniform(sample, n: int, eps: float, *, num: int = 4000, key=None, level: float = 1e-3):
    """``sample(key) -> [n]`` draws uniformly from the ℓ2 ball of radius ``eps``: every draw is
    in the ball, the radius has CDF ``(r/eps)^n`` and the direction is isotropic (Kolmogorov-
    Smirnov test of ``(r/eps)^n ~ U(0, 1)`` and a mean-direction test, each at ``level``)."""
    key = jax.random.key(1) if key is None else key
    pts = np.asarray(jax.jit(jax.vmap(sample))(jax.random.split(key, num))).reshape(num, -1)
    if pts.shape[1] != n:
        raise ValueError(f"samples have {pts.shape[1]} coordinates, expected {n}")
    r = np.linalg.norm(pts, axis=1)
    assert_in = 10 * np.finfo(pts.dtype).eps * eps
    if not r.max() <= eps + assert_in:
        raise AssertionError(f"l2 start outside the ball: {r.max()!r} > {eps!r}")
    u = np.sort((r / eps) ** n)
    ecdf = np.arange(1, num + 1) / num
    D = max(np.max(ecdf - u), np.max(u - (ecdf - 1 / num)))
    crit = math.sqrt(-0.5 * math.log(level / 2)) / math.sqrt(num)  # asymptotic KS critical value
    if not D < crit:
        raise AssertionError(f"l2 start radius law: KS distance {D:.4f} >= {crit:.4f} at level {level}")
    mean_dir = (pts / np.maximum(r[:, None], 1e-300)).mean(axis=0)
    # each coordinate of a uniform unit vector has variance 1/n: the mean of num of them 1/(n num)
    z = float(np.sum(mean_dir**2) * n * num)  # ~ chi2(n)
    if not z < n + 6 * math.sqrt(2 * n) + 10:
        raise AssertionError(f"l2 start directions are not isotropic (chi2 {z:.1f}, n = {n})")
