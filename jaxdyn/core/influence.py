"""Theorems 3, 4 and 5 (Eqs. 9-11): the effect of an adversarial perturbation on how one training
step changes the input gradient, for a binary (sigmoid) network; and the measurement ``φ*`` of
that effect from weight gradients (:func:`measure`; the real attacks that feed it are in
:mod:`jaxdyn.analyses.real_attack`).

Notation (docs/spec.md, "Theory", one example, scalar logit ``z``):

* ``W`` the first layer's weights, ``h = Φ(x, W) + b₁`` its pre-activation, bilinear in
  ``(x, W)`` (``Φ(x, W) = Wᵀx`` for a dense layer, ``conv(x, W)`` for a conv);
* ``g̃_x = ∂z/∂x`` (``[n]``), ``g̃_h = ∂z/∂h``, ``g_z = ∂L/∂z``, ``H̄_z`` the trajectory-averaged
  ``∂²L/∂z²``, ``A = β H̄_z ||g̃_x||²``;
* ``g_W = ∂L(f(x))/∂W``, ``g_W^(adv) = ∂L(f(x + δ̂))/∂W``, ``Δg_W = g_W^(adv) - g_W`` (Eq. 7),
  ``η`` the learning rate;
* ``φ = g̃_xᵀ Δg̃_x`` with ``Δg̃_x = -η Δg_W g̃_h`` (dense first layer).

**The jvp generalisation (any first layer).** A training step ``W ← W + V`` changes the input
gradient by the directional derivative ``Δg̃_x = D_W[g̃_x(W)][V]``, a ``jax.jvp`` of
``W ↦ ∂z(W, x)/∂x``. For a dense first layer ``z = ψ(Wᵀx + b₁)`` with ``ψ`` piecewise affine,
``g̃_x(W) = W ∇ψ(h)`` and ``D_W[g̃_x][V] = V g̃_h + W ∇²ψ(h) Vᵀx = V g̃_h`` because
``∇²ψ = 0`` off the kinks: with ``V = -ηΔg_W`` this is the paper's ``-η Δg_W g̃_h``. The same
jvp is defined for a conv (or any bilinear) first layer, where no matrix ``Δg_W`` multiplies
``g̃_h``. In both cases ``φ(V) = ⟨u(g̃_x), V⟩`` with ``u(a) = ∂/∂W [J(W, x) a] = Φ_a^* g̃_h``
(the first layer's weight gradient of ``g̃_hᵀ Φ(a, W)``).

**The generalised Eq. 9.** Under A2 the network above ``h`` is affine, so
``g_W(x') = g_z(x') u(x')`` and, with ``Q(a, b) = ⟨u(a), u(b)⟩``,
``φ = -η [(g_z' - g_z) Q(g̃_x, x) + g_z' Q(g̃_x, δ)]``, ``g_z' = g_z(x + δ)``. For a binary
head ``H̄_x = H̄_z g̃_x g̃_xᵀ`` has one non-zero eigenvalue ``λ = H̄_z ||g̃_x||²`` with
eigenvector ``∥ g̃_x``, so Theorem 2 gives ``δ̂ = (e^A - 1) g_z g̃_x / (H̄_z ||g̃_x||²)`` and
``g_z' = e^A g_z`` (``g_z`` linear in ``z`` with slope ``H̄_z``). Substituting,

    φ̂ = (e^A - 1) φ^(ori) - η g_z² q / H̄_z (e^{2A} - e^A),   q = Q(g̃_x, g̃_x) / ||g̃_x||²,

with ``φ^(ori) = g̃_xᵀ Δg̃_x^(ori) = -η g_z Q(g̃_x, x)``. For a dense first layer
``Q(a, b) = (aᵀb) ||g̃_h||²``, so ``q = ||g̃_h||²`` and this is Eq. 9 verbatim. Eqs. 10 and 11
follow the same way (``δ = δ̂`` with ``g_W^(adv)`` alone, and ``δ = C δ̂ / ||δ̂||``).

The three equations are exact when the network is frozen (A2) and ``L`` is quadratic in ``z``
(constant ``H_z = H̄_z``); for the sigmoid loss ``g_z(x + δ̂)`` departs from ``e^A g_z`` at
second order in ``δ̂``, which is what Table 2's ``κ'`` measures (with ``H̄_z`` averaged over the
real attack, the leading error is ``O(A²)`` relative).

**First-order baseline.** Replacing ``e^A`` by ``1 + A`` (so ``e^{2A} = (e^A)²`` by
``(1 + A)²``) is exactly the same computation for the curvature-free perturbation
``δ = β g_x`` (``g_z' = g_z (1 + A)``, ``g̃_xᵀδ = A g_z / H̄_z``): ``first_order=True``.

The module holds the first layer's plumbing (:func:`first_layer_fn`, :func:`first_layer_output_grad`),
the theory (:func:`influence_A`, :func:`theorem3`-:func:`theorem5`, :func:`phi_one_scalar`,
:func:`phi_dense`) and :func:`measure`, the measurement of ``φ*`` at a given ``δ``: it needs no attack
(the attacks are :mod:`jaxdyn.analyses.real_attack`'s), it is what the theory's exactness tests check
Eqs. 9-11 against, and Figs. 3-4 use it too. Everything here is for **one example** (``jax.vmap``
it); nothing is jitted.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdyn._internal import checks as _checks
from jaxdyn.core.gating import GATINGS
from jaxdyn.core.losses import hessian_z, loss
from jaxdyn.core.params import first_layer_path, get_param, set_param  # re-exported: influence's API

__all__ = [
    "GATINGS",
    "Measurement",
    "first_layer_path",
    "get_param",
    "set_param",
    "first_layer_fn",
    "first_layer_output_grad",
    "influence_A",
    "influence_A_clean",
    "theorem3",
    "theorem4",
    "theorem5",
    "measure",
    "phi_dense",
    "u_map",
    "phi_one_scalar",
]


# --- the first layer as a function of its weights ----------------------------------------


def first_layer_fn(model: nn.Module, variables, *, path: Sequence[str] | None = None):
    """The logits as a function of the first layer's weights and one input.

    Args:
      model: a Flax module (``model.apply(variables, x[None])`` gives ``[1, C]``).
      variables: its variables.
      path: the first layer's module path; ``None`` finds it with :func:`first_layer_path`.

    Returns:
      ``(z_of, W, path)``: ``z_of(W, x) -> z: [C]`` for one example ``x``, the current kernel
      ``W`` (``[n, D]`` for a dense layer, ``[kh, kw, c_in, c_out]`` for a conv) and the path.
    """
    path = first_layer_path(model, variables) if path is None else tuple(path)
    W0 = get_param(variables, path)

    def z_of(W, x):
        return model.apply(set_param(variables, path, W), x[None])[0]

    return z_of, W0, path


def first_layer_output_grad(model: nn.Module, variables, x: jax.Array, *,
                            path: Sequence[str] | None = None) -> jax.Array:
    """``g̃_h = ∂z/∂h`` for one example and a scalar logit (``h`` the first layer's output).

    Obtained without touching the model's code: a method interceptor adds a shift ``s`` to the
    first layer's output and ``g̃_h = ∂z/∂s`` at ``s = 0``. Shape of ``h`` for one example
    (``[D]`` for a dense layer, ``[H, W, c_out]`` for a conv). Used by the tests and the dense
    formula :func:`phi_dense`.
    """
    path = first_layer_path(model, variables) if path is None else tuple(path)
    out_shape = []

    def probe(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and tuple(context.module.path) == path and not out_shape:
            out_shape.append(out.shape)
        return out

    with nn.intercept_methods(probe):
        jax.eval_shape(lambda x: model.apply(variables, x[None]), x)
    shape = out_shape[0]

    def z_of_shift(s):
        def shift(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if context.method_name == "__call__" and tuple(context.module.path) == path:
                out = out + s
            return out

        with nn.intercept_methods(shift):
            z = model.apply(variables, x[None])[0]
        if z.shape != (1,):
            raise ValueError(f"g̃_h needs a scalar (binary) logit, got logits of shape {z.shape}")
        return z[0]

    return jax.grad(z_of_shift)(jnp.zeros(shape, x.dtype))[0]


# --- Eqs. 9-11 ---------------------------------------------------------------------------


def influence_A(beta, hbar_z, gx_norm2):
    """``A = β H̄_z ||g̃_x||²`` (Theorem 3), the one non-zero eigenvalue of ``β H̄_x``."""
    return beta * hbar_z * gx_norm2


def influence_A_clean(f: Callable, x: jax.Array, y, *, beta=1.0) -> jax.Array:
    """:func:`influence_A` with ``H_z`` at the clean input: ``β H_z(x) ||g̃_x||²`` for one example
    of a binary (one-logit) network ``f`` (per unit β by default: what sets Fig. 3's β)."""
    _checks.check_example(x, y)
    z = f(x)
    if z.shape != (1,):
        raise ValueError(f"A is defined for a binary (sigmoid) head with one logit, got {z.shape}")
    gt = jax.grad(lambda t: f(t)[0])(x)
    return influence_A(beta, hessian_z(z, y)[0, 0], jnp.vdot(gt, gt))


def _growth(A, first_order):
    """``(e^A - 1, e^A)``, or ``(A, 1 + A)`` for the first-order baseline."""
    if first_order:
        return A, 1.0 + A
    em1 = jnp.expm1(A)
    return em1, 1.0 + em1


def theorem3(*, A, phi_ori, g_z, hbar_z, q, eta, first_order: bool = False):
    """Theorem 3, Eq. (9): the predicted ``φ̂ = g̃_xᵀ Δg̃_x``.

    ``φ̂ = (e^A - 1) φ^(ori) - η g_z² q / H̄_z (e^{2A} - e^A)``.

    Args (scalars, or arrays of one shape):
      A: ``β H̄_z ||g̃_x||²`` (:func:`influence_A`).
      phi_ori: ``g̃_xᵀ Δg̃_x^(ori)``, ``Δg̃_x^(ori) = -η g_W g̃_h`` (measured,
        :attr:`Measurement.phi_ori`).
      g_z: ``∂L/∂z`` at the clean input.
      hbar_z: ``H̄_z > 0``.
      q: ``||g̃_h||²`` for a dense first layer; its generalisation
        ``Q(g̃_x, g̃_x)/||g̃_x||²`` otherwise (:attr:`Measurement.q`).
      eta: learning rate (``φ̂`` is linear in it).
      first_order: replace ``e^A`` by ``1 + A`` (the curvature-free baseline ``δ = β g_x``).
    """
    e1, e = _growth(A, first_order)
    return e1 * phi_ori - eta * g_z**2 * q / hbar_z * (e * e1)


def theorem4(*, A, phi_ori, g_z, hbar_z, q, eta, first_order: bool = False):
    """Theorem 4, Eq. (10): ``g̃_xᵀ Δg̃_x^(adv)`` with ``Δg̃_x^(adv) = -η g_W^(adv) g̃_h``.

    ``= e^A φ^(ori) - η g_z² q (e^{2A} - e^A) / H̄_z`` (arguments as :func:`theorem3`)."""
    e1, e = _growth(A, first_order)
    return e * phi_ori - eta * g_z**2 * q / hbar_z * (e * e1)


def theorem5(*, A, phi_ori, g_z, hbar_z, q, eta, c, delta_norm, first_order: bool = False):
    """Theorem 5, Eq. (11): ``g̃_xᵀ Δg̃_x^(norm)`` for ``δ̂^(norm) = C δ̂ / ||δ̂||``.

    With ``k = C / ||δ̂||``:
    ``= k (e^A - 1) φ^(ori) - η g_z² q / H̄_z (k (e^A - 1) + k² (e^A - 1)²)``, which is the
    paper's ``C (e^A/||δ̂|| - 1/||δ̂||) ... - C η g_z² q / H̄_z (e^A/||δ̂|| - 1/||δ̂||
    + C (e^A/||δ̂|| - 1/||δ̂||)²)``. ``c``: ``C``; ``delta_norm``: ``||δ̂||``; others as
    :func:`theorem3`. ``C = ||δ̂||`` gives Eq. (9).
    """
    e1, _ = _growth(A, first_order)
    k = c / delta_norm
    return k * e1 * phi_ori - eta * g_z**2 * q / hbar_z * (k * e1 + (k * e1) ** 2)


def phi_one_scalar(*, r, A, phi_ori, g_z, hbar_z, q, eta):
    """Eq. 9 with ``r = g_z(x + δ̂)/g_z`` left free (binary head, A2, Theorem 2's ``δ̂ ∥ g̃_x``):
    ``φ = (r - 1) φ^(ori) - η g_z² q (e^A - 1) r / H̄_z``. ``r = e^A``: :func:`theorem3`;
    ``r = g_z(z + g̃_xᵀδ̂)/g_z``: exactly the ``φ*`` :func:`measure` finds at ``δ̂`` under A2
    (docs/theory.md, "why the paper's protocol is close to an identity")."""
    return (r - 1.0) * phi_ori - eta * g_z**2 * q / hbar_z * jnp.expm1(A) * r


def phi_dense(g_x: jax.Array, delta_g_W: jax.Array, g_h: jax.Array, *, eta) -> jax.Array:
    """The paper's dense formula ``g̃_xᵀ Δg̃_x = -η g̃_xᵀ Δg_W g̃_h`` (Theorem 3).

    ``g_x``: ``[n]`` (or the input's shape), ``delta_g_W``: ``[n, D]`` (Flax's dense kernel is
    ``W`` with ``h = Wᵀx + b₁``), ``g_h``: ``[D]``.
    """
    g_x = jnp.ravel(g_x)
    if delta_g_W.ndim != 2 or delta_g_W.shape != (g_x.shape[0], g_h.shape[0]):
        raise ValueError(f"delta_g_W must be [n, D] = [{g_x.shape[0]}, {g_h.shape[0]}], got {delta_g_W.shape}")
    return -eta * (g_x @ delta_g_W @ g_h)


# --- measuring φ* from real gradients -------------------------------------------------------


class Measurement(NamedTuple):
    """Real, measured quantities of one example (Table 2).

    Attributes:
      phi: ``φ* = g̃_xᵀ Δg̃_x`` with ``Δg̃_x`` the jvp of ``W ↦ g̃_x(W)`` along ``-ηΔg_W``.
      phi_ori: ``g̃_xᵀ Δg̃_x^(ori)`` (direction ``-η g_W``).
      phi_adv: ``g̃_xᵀ Δg̃_x^(adv)`` (direction ``-η g_W^(adv)``, Eq. 10's left side).
      g_z: ``∂L/∂z`` at ``x``.
      gx_norm2: ``||g̃_x||²``.
      q: ``Q(g̃_x, g̃_x)/||g̃_x||²`` (``= ||g̃_h||²`` for a dense first layer).
      dgw_norm: ``||Δg_W||`` (Fig. 3's other axis).
      dgw: ``Δg_W`` itself (the shape of ``W``; Fig. 4's direction).
    """

    phi: jax.Array
    phi_ori: jax.Array
    phi_adv: jax.Array
    g_z: jax.Array
    gx_norm2: jax.Array
    q: jax.Array
    dgw_norm: jax.Array
    dgw: jax.Array


def u_map(z_of: Callable, W: jax.Array, x: jax.Array, a: jax.Array) -> jax.Array:
    """``u(a) = ∂/∂W [J(W, x) a] = Φ_a^* g̃_h`` (shape of ``W``): the first layer's weight gradient
    of ``g̃_hᵀ Φ(a, W)``. For a dense layer ``u(a) = a g̃_hᵀ``. ``z_of(W, x) -> [1]``."""

    def lin(W):
        return jax.jvp(lambda xx: z_of(W, xx)[0], (x,), (a,))[1]

    return jax.grad(lin)(W)


def measure(
    z_of: Callable,
    W: jax.Array,
    x: jax.Array,
    y,
    delta: jax.Array,
    *,
    eta,
    gating: str = "frozen",
    loss_fn: Callable = loss,
) -> Measurement:
    """Measure ``φ*`` (and friends) for one example from real weight gradients (Table 2).

    ``g_W^(adv) = ∂L(z(W, x + δ))/∂W`` and ``g_W = ∂L(z(W, x))/∂W`` by autodiff, ``Δg_W`` their
    difference (Eq. 7), and ``φ* = g̃_xᵀ D_W[g̃_x(W)][-ηΔg_W]`` by one ``jax.jvp`` (see the module
    docstring for why this is ``-η g̃_xᵀ Δg_W g̃_h`` for a dense first layer).

    Args:
      z_of: ``(W, x) -> z: [1]`` (:func:`first_layer_fn` of a binary model).
      W: the first layer's kernel.
      x: the clean example.
      y: its label in {-1, +1}.
      delta: the perturbation (``δ̂`` of Theorem 2 for Eqs. 9/10, ``δ̂^(norm)`` for Eq. 11).
      eta: learning rate ``η`` (``φ*`` is linear in it).
      gating: ``"frozen"`` (default; the paper measures ``φ*`` "under assumption A2"): the
        gradient at ``x + δ`` is taken on the network with every gate as at ``x``, i.e. on
        ``z(W, x) + J(W, x) δ`` — which for a piecewise-affine net has the same derivatives in
        ``W`` as the gate-frozen network. ``"free"``: on the real network at ``x + δ``.
      loss_fn: ``(z, y) -> scalar`` (default the sigmoid cross-entropy); a loss quadratic in
        ``z`` makes Eqs. 9-11 exact under ``gating="frozen"`` (tests).

    Returns:
      :class:`Measurement` of scalars.
    """
    _checks.check_choice("gating", gating, GATINGS)
    _checks.check_example(x, y)
    if x.shape != delta.shape:
        raise ValueError(f"delta must have the shape of x {x.shape}, got {delta.shape}")
    z0 = z_of(W, x)
    if z0.shape != (1,):
        raise ValueError(f"Theorems 3-5 are for a binary (sigmoid) head with one logit, got {z0.shape}")

    def zscalar(W, xx):
        return z_of(W, xx)[0]

    def g_x_of(W):  # g̃_x(W) = ∂z/∂x at the clean x
        return jax.grad(zscalar, argnums=1)(W, x)

    if gating == "frozen":
        def z_at(W, x2):
            z, dz = jax.jvp(lambda xx: z_of(W, xx), (x,), (x2 - x,))
            return z + dz
    else:
        z_at = z_of

    def g_W(x2):
        return jax.grad(lambda W: loss_fn(z_at(W, x2), y))(W)

    gx = g_x_of(W)
    gW0 = g_W(x)
    gWa = g_W(x + delta)
    dgW = gWa - gW0

    def phi_along(V):
        return jnp.vdot(gx, jax.jvp(g_x_of, (W,), (V,))[1])

    gz = jax.grad(loss_fn)(z0, y)[0]
    gx_norm2 = jnp.vdot(gx, gx)
    ug = u_map(z_of, W, x, gx)
    return Measurement(
        phi=phi_along(-eta * dgW),
        phi_ori=phi_along(-eta * gW0),
        phi_adv=phi_along(-eta * gWa),
        g_z=gz,
        gx_norm2=gx_norm2,
        q=jnp.vdot(ug, ug) / gx_norm2,
        dgw_norm=jnp.linalg.norm(dgW),
        dgw=dgW,
    )
