"""Theorems 1 and 2 (the perturbation of an m-step / infinite-step raw attack), Lemma 1 and the
limits of conclusion C.3.

Two equivalent ways to evaluate each theorem:

* the **n x n path** (reference): eigendecompose ``H̄_x = J^T H̄_z J`` (``[n, n]``) and sum over
  its eigenpairs, Eq. (5)/(6);
* the **C x C path**: since ``g_x = J^T g_z`` and ``φ(J^T H̄_z J) J^T = J^T φ(H̄_z J J^T)``
  (push-through), ``δ̂ = β J^T φ(β H̄_z G) g_z`` with ``G = J J^T`` (``[C, C]``) and
  ``φ(s) = (e^s - 1)/s``. The matrix function is evaluated exactly, without inverting ``H̄_z G``
  (singular for softmax), by one ``(C+1) x (C+1)`` matrix exponential:
  ``expm([[M, b], [0, 0]]) = [[e^M, φ(M) b], [0, 1]]``. Theorem 1 is the same with
  ``[[I + αM, α g_z], [0, 1]]^m``, whose corner is ``Σ_{k<m} (I + αM)^k α g_z``.

Derivation of Theorem 1 in these variables (A1, A2, ``H_z`` replaced by ``H̄_z``): with
``δ^(t) = J^T a_t``, ``g_{x+δ} ≈ J^T (g_z + H̄_z J δ)`` so
``a_{t+1} = (I + α H̄_z G) a_t + α g_z`` and ``g_{x+δ^(m)} ≈ J^T (I + α H̄_z G)^m g_z``.

All vectors in the ``*_flat`` functions are flattened inputs (``[n]``); :func:`predict` works on
one example in its own shape.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import expm
from jaxtyping import Array, ArrayLike, Bool, Float, Int, ScalarLike

from jaxdyn._internal import checks as _checks
from jaxdyn.core.gating import input_jacobian
from jaxdyn.core.losses import grad_z, hessian_z

__all__ = [
    "Prediction",
    "ExamplePrediction",
    "phi",
    "hbar_z_weighted",
    "theorem2",
    "theorem1",
    "theorem2_eig",
    "NormCurve",
    "theorem2_norms",
    "theorem1_norms",
    "theorem1_eig",
    "structured_eigenpairs",
    "clean_alignment",
    "predict",
    "normalized",
    "lemma1_sigmoid_margin",
]


class Prediction(NamedTuple):
    """Theorem 1 or 2 on flattened inputs (:func:`theorem2`, :func:`theorem1`, the ``*_eig`` references).

    Attributes:
      delta: ``[n]``, the predicted perturbation ``δ̂``.
      grad: ``[n]``, the predicted gradient ``g_{x+δ̂}``.
    """

    delta: Float[Array, " n"]
    grad: Float[Array, " n"]


class ExamplePrediction(NamedTuple):
    """Theorem 2 (or 1) for one example, in the example's own shape (:func:`predict`).

    Attributes:
      delta_hat: the predicted perturbation ``δ̂``, shape of ``x``.
      grad_hat: the predicted gradient ``g_{x+δ̂}``, shape of ``x``.
      g_x: the clean input gradient ``g_x = Jᵀ g_z``, shape of ``x`` (the first-order prediction's
        direction).
      g_z: ``[C]``, the loss gradient in the logits at ``x``.
      J: ``[C, n]``, the input Jacobian of the logits at ``x`` (``n = x.size``).

    ``delta_hat``, ``grad_hat``, ``g_x`` and ``g_z`` are NaN for invalid input found under ``jit``.
    """

    delta_hat: Float[Array, "*x"]
    grad_hat: Float[Array, "*x"]
    g_x: Float[Array, "*x"]
    g_z: Float[Array, " C"]
    J: Float[Array, "C n"]


def phi(s: Float[Array, "*s"]) -> Float[Array, "*s"]:
    """``φ(s) = (e^s - 1)/s`` with ``φ(0) = 1`` (``expm1`` for accuracy near 0)."""
    small = jnp.abs(s) < 1e-8
    safe = jnp.where(small, 1.0, s)
    return jnp.where(small, 1.0 + 0.5 * s, jnp.expm1(safe) / safe)


def hbar_z_weighted(H_seq: Float[Array, "T C C"], step_norms: Float[Array, " T"],
                    mask: Bool[Array, " T"] | None = None) -> Float[Array, "C C"]:
    """The ``H̄_z`` of docs/spec.md, ``Σ_{t=1}^{m-1} ||Δx^(t)|| H_z^(t) / Σ ||Δx^(t)||``, from a
    recorded trajectory.

    Args:
      H_seq: ``[T, C, C]``, ``H_z`` at ``x + δ^(t)`` for ``t = 0..T-1``.
      step_norms: ``[T]``, ``||Δx^(t)|| = ||δ^(t) - δ^(t-1)||`` (``0`` at ``t = 0``).
      mask: ``[T]`` booleans, the steps that enter (e.g. ``1 <= t <= m_success - 1``: the average
        up to a traced stopping step); ``None``: all. Without a mask only ``t = 1..m-1`` enter
        when the first ``m`` entries of an ``m``-step trajectory are passed.
    Returns:
      ``[C, C]``; ``H_seq[0]`` (``H_z`` at ``x``) where no step has weight (``m = 1``, empty mask),
      as :func:`jaxdyn.attacks.multistep.attack` falls back.
    """
    w = step_norms if mask is None else jnp.where(mask, step_norms, 0.0)
    wsum = jnp.sum(w)
    mean = jnp.einsum("t,tij->ij", w, H_seq) / jnp.where(wsum > 0, wsum, 1.0)
    return jnp.where(wsum > 0, mean, H_seq[0])


def _corner(E, C):
    return E[:C, C], E[:C, :C]


def theorem2(J: Float[Array, "C n"], g_z: Float[Array, " C"], hbar_z: Float[Array, "C C"], beta: ScalarLike
             ) -> Prediction:
    """Theorem 2, Eq. (6), by the ``C x C`` path.

    ``δ̂ = β J^T φ(β H̄_z G) g_z`` and ``g_{x+δ̂} = J^T e^{β H̄_z G} g_z``.

    Args:
      J: ``[C, n]`` input Jacobian of the logits at ``x``.
      g_z: ``[C]`` loss gradient in the logits at ``x``.
      hbar_z: ``[C, C]`` averaged logit Hessian.
      beta: total attack strength (traced).
    Returns:
      :class:`Prediction` of flattened ``[n]`` vectors.
    """
    _checks.check_theory_inputs(J, g_z, hbar_z)
    _checks.check_positive("beta", beta)
    C = g_z.shape[0]
    M = beta * (hbar_z @ (J @ J.T))
    top = jnp.concatenate([M, (beta * g_z)[:, None]], axis=1)
    A = jnp.concatenate([top, jnp.zeros((1, C + 1), M.dtype)], axis=0)
    a, eM = _corner(expm(A), C)
    return Prediction(J.T @ a, J.T @ (eM @ g_z))


def theorem1(J: Float[Array, "C n"], g_z: Float[Array, " C"], hbar_z: Float[Array, "C C"], alpha: ScalarLike,
             steps: int | Int[Array, ""]) -> Prediction:
    """Theorem 1, Eq. (5), by the ``C x C`` path (``m = steps`` static, ``alpha`` traced; ``steps``
    may also be a JAX integer scalar, traced: one compile for every ``m``, the same products).

    ``δ^(m) ≈ J^T Σ_{k<m} (I + α H̄_z G)^k α g_z`` and ``g ≈ J^T (I + α H̄_z G)^m g_z``: the
    residual ``ρ`` of Eq. (5) is the difference from the real m-step attack.
    """
    power = _matrix_power_traced if _checks.traced_steps(steps) else jnp.linalg.matrix_power
    steps = steps if _checks.traced_steps(steps) else _checks.check_steps(steps)
    _checks.check_positive("alpha", alpha)
    _checks.check_theory_inputs(J, g_z, hbar_z)
    C = g_z.shape[0]
    P = jnp.eye(C, dtype=g_z.dtype) + alpha * (hbar_z @ (J @ J.T))
    top = jnp.concatenate([P, (alpha * g_z)[:, None]], axis=1)
    bottom = jnp.concatenate([jnp.zeros((1, C), P.dtype), jnp.ones((1, 1), P.dtype)], axis=1)
    a, Pm = _corner(power(jnp.concatenate([top, bottom], axis=0), steps), C)
    return Prediction(J.T @ a, J.T @ (Pm @ g_z))


def _matrix_power_traced(A, m):
    """``A^m`` for a traced integer ``m`` (0 <= m < 2^31) by binary powering over its 31 bits."""
    def body(i, c):
        R, B = c
        return jnp.where((m >> i) & 1, R @ B, R), B @ B

    return jax.lax.fori_loop(0, 31, body, (jnp.eye(A.shape[0], dtype=A.dtype), A))[0]


def theorem2_eig(g_x: Float[Array, " n"], hbar_x: Float[Array, "n n"], beta: ScalarLike) -> Prediction:
    """Theorem 2, Eq. (6), by the ``n x n`` eigendecomposition (the reference).

    ``δ̂ = Σ_i (e^{βλ_i} - 1)/λ_i γ_i v_i`` (``β γ_i v_i`` where ``λ_i = 0``),
    ``g_{x+δ̂} = Σ_i e^{βλ_i} γ_i v_i``, ``γ_i = g_x^T v_i``. ``g_x``: ``[n]``, ``hbar_x``: ``[n, n]``.
    """
    _checks.check_eig_inputs(g_x, hbar_x)
    _checks.check_positive("beta", beta)
    lam, V = jnp.linalg.eigh(0.5 * (hbar_x + hbar_x.T))
    gamma = V.T @ g_x
    return Prediction(V @ (beta * phi(beta * lam) * gamma), V @ (jnp.exp(beta * lam) * gamma))


class NormCurve(NamedTuple):
    """The norms of a prediction along a curve of ``T`` strengths or step counts.

    Attributes:
      delta: ``[T]``, ``||δ̂||`` at each point of the curve.
      grad: ``[T]``, ``||g_{x+δ̂}||`` at each point.
    """

    delta: Float[Array, " T"]
    grad: Float[Array, " T"]


def _eigen_coordinates(J: jax.Array, g_x: jax.Array, hbar_z: jax.Array):
    """``(λ [C], γ = Vᵀ g_x [C], ||g_⊥||²)`` for the eigenpairs of ``H̄_x = Jᵀ H̄_z J``."""
    lam, V = structured_eigenpairs(J, hbar_z)
    gam = V.T @ g_x
    return lam, gam, jnp.maximum(jnp.vdot(g_x, g_x) - jnp.vdot(gam, gam), 0.0)


def theorem2_norms(J: Float[Array, "C n"], g_x: Float[Array, " n"], hbar_z: Float[Array, "C C"],
                   betas: Float[ArrayLike, " T"]) -> NormCurve:
    """The norms of Theorem 2's prediction for each ``β`` of ``betas`` (``[T]``), from the
    eigenpairs ``(λ_i, v_i)`` of ``H̄_x = Jᵀ H̄_z J`` (``C x C`` problem, Fig. 2):
    ``||g(β)||² = Σ e^{2βλ_i} γ_i² + ||g_⊥||²`` and
    ``||δ̂(β)||² = Σ (β φ(βλ_i) γ_i)² + β² ||g_⊥||²``, ``γ_i = g_xᵀ v_i``, ``g_⊥`` the part of
    ``g_x`` outside their span. ``J``: ``[C, n]``; ``g_x = Jᵀ g_z``: ``[n]``.
    Equal to the norms of :func:`theorem2` at each β, for the cost of one eigendecomposition."""
    lam, gam, perp2 = _eigen_coordinates(J, g_x, hbar_z)
    beta = jnp.asarray(betas, g_x.dtype)
    bl = beta[:, None] * lam[None, :]
    g2 = jnp.sum(jnp.exp(2 * bl) * gam[None, :] ** 2, axis=1) + perp2
    d2 = jnp.sum((beta[:, None] * phi(bl) * gam[None, :]) ** 2, axis=1) + beta**2 * perp2
    return NormCurve(jnp.sqrt(d2), jnp.sqrt(g2))


def theorem1_norms(J: Float[Array, "C n"], g_x: Float[Array, " n"], hbar_z: Float[Array, "C C"], alpha: ScalarLike,
                   t: Int[ArrayLike, " T"]) -> NormCurve:
    """The norms of Theorem 1's prediction after each number of steps in ``t`` (``[T]``, traced):
    growth ``(1 + αλ_i)^t`` in place of ``e^{βλ_i}``, ``δ`` coefficients ``((1 + αλ_i)^t - 1)/λ_i``
    (``αt`` where ``λ_i = 0``); arguments as :func:`theorem2_norms`. Equal to the norms of
    :func:`theorem1` with ``steps = t`` (for ``αλ_i > -1``)."""
    lam, gam, perp2 = _eigen_coordinates(J, g_x, hbar_z)
    tt = jnp.asarray(t).astype(g_x.dtype)
    beta = alpha * tt
    log1 = tt[:, None] * jnp.log1p(alpha * lam)[None, :]
    small = jnp.abs(lam) < 1e-300
    c1 = jnp.where(small[None, :], beta[:, None], jnp.expm1(log1) / jnp.where(small, 1.0, lam)[None, :])
    g1 = jnp.sum(jnp.exp(2 * log1) * gam[None, :] ** 2, axis=1) + perp2
    d1 = jnp.sum((c1 * gam[None, :]) ** 2, axis=1) + beta**2 * perp2
    return NormCurve(jnp.sqrt(d1), jnp.sqrt(g1))


def theorem1_eig(g_x: Float[Array, " n"], hbar_x: Float[Array, "n n"], alpha: ScalarLike, steps: int) -> Prediction:
    """Theorem 1, Eq. (5), by the ``n x n`` eigendecomposition.

    Coefficients ``((1 + αλ)^m - 1)/λ`` (``m α`` where ``λ = 0``), evaluated as
    ``expm1(m log1p(αλ))/λ`` for accuracy when ``αλ`` is small.
    """
    steps = _checks.check_steps(steps)
    _checks.check_eig_inputs(g_x, hbar_x)
    _checks.check_positive("alpha", alpha)
    lam, V = jnp.linalg.eigh(0.5 * (hbar_x + hbar_x.T))
    gamma = V.T @ g_x
    al = alpha * lam
    ok = al > -1
    log_growth = steps * jnp.log1p(jnp.where(ok, al, 0.0))
    growth = jnp.where(ok, jnp.exp(log_growth), (1 + al) ** steps)
    em1 = jnp.where(ok, jnp.expm1(log_growth), growth - 1)
    small = jnp.abs(lam) < 1e-300
    coef = jnp.where(small, steps * alpha, em1 / jnp.where(small, 1.0, lam))
    return Prediction(V @ (coef * gamma), V @ (growth * gamma))


def structured_eigenpairs(J: Float[Array, "C n"], hbar_z: Float[Array, "C C"]
                          ) -> tuple[Float[Array, " C"], Float[Array, "n C"]]:
    """The (at most ``C``) non-trivial eigenpairs of ``H̄_x = J^T H̄_z J`` from a ``C x C``
    problem, in descending order.

    With ``H̄_z = P P^T`` (PSD by Lemma 1) and ``B = P^T J``, ``H̄_x = B^T B``; if
    ``B B^T u = λ u`` then ``v = B^T u / sqrt(λ)`` is a unit eigenvector of ``H̄_x``.
    Returns ``(lam: [C], V: [n, C])``; columns with ``λ = 0`` are zero.
    """
    s, U = jnp.linalg.eigh(0.5 * (hbar_z + hbar_z.T))
    P = U * jnp.sqrt(jnp.clip(s, 0.0))[None, :]
    B = P.T @ J
    lam, W = jnp.linalg.eigh(B @ B.T)
    lam, W = lam[::-1], W[:, ::-1]
    pos = lam > 1e-12 * jnp.maximum(lam[0], 1e-300)
    V = (B.T @ W) / jnp.where(pos, jnp.sqrt(jnp.where(pos, lam, 1.0)), jnp.inf)[None, :]
    return jnp.where(pos, lam, 0.0), V


def predict(f: Callable, x: Float[Array, "*x"], y: ScalarLike, hbar_z: Float[Array, "C C"] | None = None, *,
            beta: ScalarLike, steps: int | None = None, loss_fn: Callable | None = None) -> ExamplePrediction:
    """Theorem 2 (or Theorem 1 when ``steps`` is given, with ``α = β/steps``) for one example.

    Args:
      f: per-example logits function.
      x: the clean example (any shape).
      y: its label.
      hbar_z: ``[C, C]`` averaged logit Hessian (e.g. ``attack(...).hbar_z``); ``None`` uses
        ``H_z`` at ``x``.
      beta: total strength.
      steps: ``None`` for Theorem 2 (infinite steps); an int for Theorem 1.
      loss_fn: ``(z, y) -> scalar``; default the cross-entropy of :mod:`jaxdyn.core.losses`.
    Returns:
      :class:`ExamplePrediction`: ``delta_hat`` and ``grad_hat`` (``g_{x+δ̂}``) in ``x``'s shape,
      ``g_x``, ``g_z``, ``J`` (``[C, n]``).
    """
    n_classes = _checks.check_call(f, x, y, labels=loss_fn is None)
    if steps is not None:
        steps = _checks.check_steps(steps)
    _checks.check_positive("beta", beta)  # before the Jacobian, not after it
    z = f(x)
    J = input_jacobian(f, x)
    if loss_fn is None:
        gz = grad_z(z, y)
        hz = hessian_z(z, y) if hbar_z is None else hbar_z
    else:
        gz = jax.grad(loss_fn)(z, y)
        hz = jax.hessian(loss_fn)(z, y) if hbar_z is None else hbar_z
    if steps is None:
        pred = theorem2(J, gz, hz, beta)
    else:
        pred = theorem1(J, gz, hz, beta / steps, steps)
    ok = _checks.valid(y, n_classes, x, hz)  # under jit: NaN out for invalid input (never a clean δ̂)
    nan = lambda a: jnp.where(ok, a, jnp.nan)  # noqa: E731
    return ExamplePrediction(
        delta_hat=nan(pred.delta.reshape(x.shape)), grad_hat=nan(pred.grad.reshape(x.shape)),
        g_x=nan((J.T @ gz).reshape(x.shape)), g_z=nan(gz), J=J,
    )


def normalized(delta: Float[Array, "*x"], C: ScalarLike) -> Float[Array, "*x"]:
    """``δ̂^(norm) = C δ̂ / ||δ̂||`` (Sec. 3.2): ``C = ||δ^(ℓ2)||`` for ℓ2 attacks, ``C_ℓ∞`` for
    the effective ℓ∞ component."""
    return C * delta / jnp.linalg.norm(delta)


def lemma1_sigmoid_margin(z: Float[Array, " 1"], y: ScalarLike) -> Float[Array, ""]:
    """Lemma 1 (sigmoid): ``H_z - g_z^2``, which is ``>= 0`` whenever ``y z > 0``.

    Closed form: ``s(1-s) - (1-s)^2 = (1-s)(2s-1)`` with ``s = sigmoid(y z)``."""
    return hessian_z(z, y)[0, 0] - grad_z(z, y)[0] ** 2


# --- the network at a clean input (Tables 1-2, Appendix D)


def prepare(f: Callable, x: Float[Array, "*x"], y: ScalarLike, *, loss_fn: Callable | None = None
            ) -> tuple[Float[Array, "C n"], Float[Array, " C"], Float[Array, " C"]]:
    """What Theorems 1/2 need from the network at one clean example, which A2 freezes there.

    Args:
      f: per-example logits function; x: the clean example (any shape); y: its label.
      loss_fn: ``(z, y) -> scalar``; default the cross-entropy of :mod:`jaxdyn.core.losses`.
    Returns:
      ``(J, z, g_z)``: the input Jacobian ``[C, n]``, the logits ``[C]`` and ``∂L/∂z`` ``[C]``
      (``g_x = Jᵀ g_z``). ``jax.vmap`` it for a batch.
    """
    _checks.check_call(f, x, y, labels=loss_fn is None)
    z = f(x)
    gz = grad_z(z, y) if loss_fn is None else jax.grad(loss_fn)(z, y)
    return input_jacobian(f, x), z, gz


# --- Appendix D: matching β


def match_beta(J: Float[Array, "C n"], g_z: Float[Array, " C"], hbar_z: Float[Array, "C C"], target_norm: ScalarLike,
               *, iters: int = 100) -> Float[Array, ""]:
    """The β at which Theorem 2's ``||δ̂(β)||`` equals ``target_norm`` (one example).

    Appendix D compares δ̂ with a few-step PGD perturbation at the point of the flow at the
    attack's distance. ``||δ̂(β)|| ≥ β ||g_x||`` for ``H̄_z ⪰ 0`` (every ``φ(βλ_i) ≥ 1``), so the
    root lies in ``[10⁻¹² β₀, β₀]`` with ``β₀ = target/||g_x||``; ``iters`` bisections on
    ``log β`` (a ``lax.fori_loop``: jittable, vmappable). ``J``: ``[C, n]``, ``g_z``: ``[C]``,
    ``hbar_z``: ``[C, C]``."""
    hi = target_norm / jnp.linalg.norm(J.T @ g_z)
    lo = hi * 1e-12

    def body(_, lh):
        lo, hi = lh
        mid = jnp.sqrt(lo * hi)
        small = jnp.linalg.norm(theorem2(J, g_z, hbar_z, mid).delta) < target_norm
        return jnp.where(small, mid, lo), jnp.where(small, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return jnp.sqrt(lo * hi)


__all__ += ["prepare", "match_beta"]


def clean_alignment(J: Float[Array, "C n"], z: Float[Array, " C"], g_z: Float[Array, " C"], y: ScalarLike
                    ) -> Float[Array, ""]:
    """``|cos(g_x, v₁)|`` at a clean example: ``g_x = Jᵀ g_z`` against the top eigenvector ``v₁`` of
    ``H_x = Jᵀ H_z J``, ``H_z`` at the clean logits ``z`` (C.3's premise: where it is ≈ 1 the
    attack's turn from ``g_x`` to ``v₁`` cannot be observed)."""
    _, V = structured_eigenpairs(J, hessian_z(z, y))
    g_x = J.T @ g_z
    return jnp.abs(jnp.vdot(g_x, V[:, 0])) / jnp.maximum(jnp.linalg.norm(g_x), 1e-300)
