"""Per-digit progress towards the flip: Theorem 2 against the raw attack at ``β_i = s · t_success,i``.

Each digit ``i`` has its own strength scale, ``t_success,i``: the smallest β at which its raw attack
(A1, ``δ ← δ + α g_{x+δ}``) flips it, read from one long attack with a fixed small step ``α_budget``
(the margin ``z_y − max_{j≠y} z_j`` interpolated linearly between the last step before the flip and
the first after it) within a stated budget ``β_max``; digits that never flip within it (and digits
misclassified at ``x``) are reported apart. Then, for each digit, one ``M``-step attack with
``α_i = t_success,i / m`` (``M = m · max(s)``) is read at the checkpoints ``k_s = s · m``: the state
there *is* the ``k_s``-step raw attack at ``β = s · t_success,i`` (same α), so every ``s`` comes from
one scan. At each checkpoint the scan also holds ``H̄_z`` two ways: the paper's step-length weights
``Σ_{t=1}^{k−1} ‖Δx^(t)‖ H_z^(t) / Σ ‖Δx^(t)‖`` (:mod:`jaxdyn.attacks.multistep`) and the time-uniform
mean ``Σ_{t=0}^{k−1} H_z^(t) / k``.

Gating: ``"frozen"`` (A2: ``z = z_0 + J δ``, exact, no pass through the network) or ``"free"`` (the
real network). The step count ``M`` is static, ``α`` a per-digit input: one compile per network
shape and gating; :func:`compare` (the theory at the checkpoints) compiles once per ``(C, n)``.

:func:`compare` gives per digit and checkpoint: ``‖δ*‖``, the errors ``‖δ̂ − δ*‖`` of Theorem 2 (Eq. 6)
with the paper's ``H̄_z``, with the time-uniform one and with ``c · H̄_z`` over a grid of ``c``, the
first-order error ``‖β g_x − δ*‖``, ``cos(δ*, g_x)``, ``|cos(δ*, v₁)|`` (``v₁`` of ``Jᵀ H̄_z J``) and
``‖δ̂‖``. The reference δ* is the m-step attack (``m = k_s``), not the gradient flow.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.core.losses import grad_z, hessian_z, loss
from jaxdyn.core.theory import structured_eigenpairs, theorem2

__all__ = ["scan_fn", "compare_fn", "t_success", "checkpoints", "margin", "C_GRID"]

#: the multiples ``c`` of the paper's ``H̄_z`` tried by the ablation (the best one is fitted per network)
C_GRID = tuple(float(c) for c in np.round(np.geomspace(0.05, 2.0, 33), 4))


def checkpoints(s_grid: Sequence[float], m: int) -> tuple[int, ...]:
    """The step ``k_s = round(s · m)`` of each ``s`` (≥ 1)."""
    return tuple(max(1, int(round(float(s) * m))) for s in s_grid)


def margin(z, y):
    """``z_y − max_{j≠y} z_j`` of one example (< 0: misclassified)."""
    zy = z[y]
    other = jnp.arange(z.shape[0], dtype=jnp.int32) != jnp.asarray(y).astype(jnp.int32)
    return zy - jnp.max(jnp.where(other, z, -jnp.inf))


def _evaluator(gating: str, f: Callable | None):
    """``evaluate(x, d, y, J, z0) -> (z, g_x flat)`` of one gating."""
    if gating == "frozen":
        def evaluate(x, d, y, J, z0):
            z = z0 + J @ d
            return z, J.T @ grad_z(z, y)
    else:
        def evaluate(x, d, y, J, z0):
            def lf(dd):
                z = f(x + dd.reshape(x.shape))
                return loss(z, y), z
            (_, z), g = jax.value_and_grad(lf, has_aux=True)(d)
            return z, g
    return evaluate


def scan_fn(gating: str, steps: int, ks: Sequence[int], f: Callable | None = None, *, apply: Callable | None = None):
    """Jitted ``(xs, ys, J, z0, d0, alpha) -> dict`` over a batch (``alpha``: ``[N]``, traced): the raw
    attack of ``steps`` steps from ``d0`` (``[N, n]``), per digit ``margin`` ``[N, steps+1]`` (state
    ``t = 0..steps``), ``delta`` ``[N, n]`` at the end, and at each checkpoint ``k`` of ``ks``:
    ``d`` ``[N, K, n]``, ``h_paper``/``h_uniform`` ``[N, K, C, C]``, ``z`` ``[N, K, C]``, ``gnorm``
    ``[N, K]`` (``‖g‖`` at the checkpoint's state). ``f``: the logits function (free gating). With
    ``apply(params, x) -> logits`` instead, the function takes ``params`` first (traced: one compile
    for every network of the same shape)."""
    if apply is None:
        inner = _scan(gating, steps, ks, lambda _, x: f(x))
        return lambda *a: inner(None, *a)
    return _scan(gating, steps, ks, apply)


def _scan(gating: str, steps: int, ks: Sequence[int], apply: Callable):
    ks = jnp.asarray(ks, jnp.int32)

    def one(params, x, y, J, z0, d0, alpha):
        evaluate = _evaluator(gating, lambda xx: apply(params, xx))
        C, K = J.shape[0], ks.shape[0]
        dt = J.dtype

        def record(buf, k, d, hp, hu, z, gn):
            hit = (ks == k)
            sel = lambda b, v: jnp.where(hit.reshape((K,) + (1,) * v.ndim), v[None], b)  # noqa: E731
            return tuple(sel(b, v) for b, v in zip(buf, (d, hp, hu, z, gn)))

        def body(carry, t):  # t = 0..steps: the state d^(t); H̄ over the steps before it, then step
            d, hsum, wsum, usum, prev, buf = carry
            z, g = evaluate(x, d, y, J, z0)
            hp = jnp.where(wsum > 0, hsum / jnp.where(wsum > 0, wsum, 1.0), hessian_z(z0, y))
            hu = usum / jnp.maximum(t, 1).astype(dt)
            buf = record(buf, t, d, hp, hu, z, jnp.linalg.norm(g))
            hz = hessian_z(z, y)
            step = alpha * g
            carry = (jnp.where(t < steps, d + step, d), hsum + prev * hz, wsum + prev, usum + hz,
                     jnp.linalg.norm(step), buf)
            return carry, margin(z, y)

        n = d0.shape[0]
        buf = (jnp.zeros((K, n), dt), jnp.zeros((K, C, C), dt), jnp.zeros((K, C, C), dt), jnp.zeros((K, C), dt),
               jnp.zeros((K,), dt))
        init = (d0, jnp.zeros((C, C), dt), jnp.zeros((), dt), jnp.zeros((C, C), dt), jnp.zeros((), dt), buf)
        (d, *_, buf), margins = jax.lax.scan(body, init, jnp.arange(steps + 1, dtype=jnp.int32))
        return dict(margin=margins, delta=d, d=buf[0], h_paper=buf[1], h_uniform=buf[2], z=buf[3], gnorm=buf[4])

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0, 0, 0, 0)))


def t_success(margins: np.ndarray, alpha, offset: np.ndarray | None = None, *, interpolate: bool = True
              ) -> np.ndarray:
    """Per digit the strength β at which the margin first drops below 0 (``margins``: ``[N, T+1]``,
    states ``t = 0..T`` of an attack with step ``alpha``, a scalar or ``[N]``; ``offset``: ``[N]`` steps
    taken before), interpolated linearly between the two states around the crossing (else the first
    misclassified state's β); ``0`` where the digit is misclassified at the first state, ``NaN`` where
    it never flips."""
    mg = np.asarray(margins, np.float64)
    al = np.broadcast_to(np.asarray(alpha, np.float64), (len(mg),))
    off = np.zeros(len(mg)) if offset is None else np.asarray(offset, np.float64)
    out = np.full(len(mg), np.nan)
    for i, row in enumerate(mg):
        neg = np.flatnonzero(row < 0)
        if neg.size == 0:
            continue
        k = int(neg[0])
        if k == 0:
            out[i] = al[i] * off[i]
            continue
        a, b = row[k - 1], row[k]
        out[i] = al[i] * (off[i] + (k - 1 + a / (a - b) if interpolate else k))
    return out


def _cos(a, b):
    return jnp.vdot(a, b) / jnp.maximum(jnp.linalg.norm(a) * jnp.linalg.norm(b), 1e-300)


def _compare_one(J, gz, d, hp, hu, beta, cs):
    gx = J.T @ gz
    hat = theorem2(J, gz, hp, beta).delta
    uni = theorem2(J, gz, hu, beta).delta
    err_c = jax.vmap(lambda c: jnp.linalg.norm(theorem2(J, gz, c * hp, beta).delta - d))(cs)
    _, V = structured_eigenpairs(J, hp)
    return dict(norm=jnp.linalg.norm(d), err_hat=jnp.linalg.norm(hat - d), err_uniform=jnp.linalg.norm(uni - d),
                err_fo=jnp.linalg.norm(beta * gx - d), err_c=err_c, cos_delta_gx=_cos(d, gx),
                cos_delta_v1=jnp.abs(_cos(d, V[:, 0])), cos_hat_v1=jnp.abs(_cos(hat, V[:, 0])),
                hat_norm=jnp.linalg.norm(hat))


@jax.jit
def _compare(J, gz, d, hp, hu, beta, cs):
    per_k = jax.vmap(_compare_one, in_axes=(None, None, 0, 0, 0, 0, None))
    return jax.vmap(per_k, in_axes=(0, 0, 0, 0, 0, 0, None))(J, gz, d, hp, hu, beta, cs)


def compare_fn(J, gz, d, hp, hu, beta, cs=C_GRID) -> dict:
    """The theory at the checkpoints (see the module docstring): ``J`` ``[N, C, n]``, ``gz`` ``[N, C]``,
    ``d`` ``[N, K, n]``, ``hp``/``hu`` ``[N, K, C, C]``, ``beta`` ``[N, K]`` (> 0); NumPy arrays
    ``[N, K]`` (``err_c``: ``[N, K, len(cs)]``). Compiled once per shape."""
    out = _compare(J, gz, d, hp, hu, jnp.asarray(beta, J.dtype), jnp.asarray(cs, J.dtype))
    return {k: np.asarray(v, np.float64) for k, v in jax.device_get(out).items()}
