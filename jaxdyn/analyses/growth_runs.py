"""Figure 2's measurement (conclusion C.2): the recorded attacks, their growth fits and Theorem 2's
curves for one network (:func:`growth_curves`), built from jitted per-network functions, and the
trajectories put on the relative-progress axis ``t / m_success`` of the figure (:func:`relative_grid`).

The raw attack (A1) and the ℓ2 / ℓ∞ baselines run free (the real network, one compile for the
three norms: :func:`jaxdyn.attacks.traced.free_attack_traced_norm`) and frozen (A2, in logit space);
the raw attack's α is set per digit (:func:`jaxdyn.attacks.multistep.calibrate_raw_alpha`). The summaries
and verdict rules over these numbers are in :mod:`jaxdyn.analyses.growth`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxdyn._internal.results import to_json_tree
from jaxdyn.analyses.metrics import growth_fits
from jaxdyn.attacks.multistep import NORMS, attack, calibrate_raw_alpha, logit_space_attack
from jaxdyn.attacks.traced import TRACE_KEYS, free_attack_traced_norm
from jaxdyn.core.gating import GATINGS, input_jacobian
from jaxdyn.core.losses import grad_z, loss
from jaxdyn.core.models import logits_fn
from jaxdyn.core.theory import hbar_z_weighted, structured_eigenpairs, theorem1_norms, theorem2_norms

__all__ = ["growth_attack_fn", "growth_free_attack_fn", "growth_theory_fn", "norm_fits", "growth_curves",
           "relative_grid"]


@functools.lru_cache(maxsize=32)
def growth_attack_fn(model, norm: str, gating: str, steps: int):
    """A jitted ``(variables, x [B,...], y [B], alpha [B], J [B, C, n] or None) -> dict`` running one
    attack per sample (Fig. 2 runs the free-gating ones by :func:`growth_free_attack_fn`). Cached per
    architecture: the seeds of one architecture share its compiles (the weights are arguments)."""
    def run(variables, x, y, alpha, jacobian=None):
        f = logits_fn(model, variables)
        def one(xi, yi, alpha, Ji):
            if gating == "frozen" and norm in ("raw", "l2"):
                # exact A2 attack in logit space (one Jacobian, given or computed, then C-dim steps)
                r = logit_space_attack(f, xi, yi, steps=steps, alpha=alpha, norm=norm, record=True, jacobian=Ji)
            else:
                r = attack(f, xi, yi, steps=steps, alpha=alpha, norm=norm, gating=gating, record=True)
            return dict(success_step=r.success_step, **{k: r.trajectory[k] for k in TRACE_KEYS})

        return jax.vmap(one)(x, y, alpha, jacobian)

    return jax.jit(run)


@functools.lru_cache(maxsize=16)
def growth_free_attack_fn(model, steps: int):
    """A jitted ``(variables, x, y, alpha, k) -> dict``: :func:`growth_attack_fn` under free gating with
    the norm ``NORMS[k]`` traced (:func:`jaxdyn.attacks.traced.free_attack_traced_norm`: one compile for
    the raw, ℓ2 and ℓ∞ attacks instead of three; the same numbers to float64 rounding)."""
    def run(variables, x, y, alpha, k):
        f = logits_fn(model, variables)
        def one(xi, yi, a):
            s, tr = free_attack_traced_norm(f, xi, yi, steps=steps, alpha=a, norm_index=k)
            return dict(success_step=s, **tr)

        return jax.vmap(one)(x, y, alpha)

    return jax.jit(run)


@functools.lru_cache(maxsize=16)
def growth_theory_fn(model, steps: int):
    """Jitted predicted norm curves for ``t = 0..steps`` (:func:`jaxdyn.core.theory.theorem2_norms`,
    ``β = αt``, and :func:`~jaxdyn.core.theory.theorem1_norms`) with the ``H̄_z`` of docs/spec.md averaged over each
    sample's trajectory up to its ``m_success``, and Theorem 2 with ``H_z`` at the clean input."""

    def run(variables, x, y, alpha, H_seq, step_norm, success_step, jacobian=None):
        f = logits_fn(model, variables)
        t = jnp.arange(steps + 1)
        tf = t.astype(x.dtype)

        def one(xi, yi, alpha, Hs, sn, ms, Ji):
            J = input_jacobian(f, xi) if Ji is None else Ji
            gx = J.T @ grad_z(f(xi), yi)
            hbar = hbar_z_weighted(Hs, sn, (t >= 1) & (t <= ms.astype(t.dtype) - 1))
            t2, t1 = theorem2_norms(J, gx, hbar, alpha * tf), theorem1_norms(J, gx, hbar, alpha, t)
            tc = theorem2_norms(J, gx, Hs[0], alpha * tf)
            return dict(lambda1=structured_eigenpairs(J, hbar)[0][0], grad_norm=t2.grad, delta_norm=t2.delta,
                        grad_norm_t1=t1.grad, delta_norm_t1=t1.delta,
                        lambda1_clean=structured_eigenpairs(J, Hs[0])[0][0], grad_norm_clean=tc.grad,
                        delta_norm_clean=tc.delta)

        return jax.vmap(one)(x, y, alpha, H_seq, step_norm, success_step, jacobian)

    return jax.jit(run)


@functools.lru_cache(maxsize=16)
def _net(model):
    """``(variables, x) -> logits`` of ``model``, one function object per architecture (a jit cache key)."""
    return lambda v, t: logits_fn(model, v)(t)


@jax.jit
def _grad_norm(f, x, y):
    """``||g_x||`` per sample of ``f`` (a :class:`jax.tree_util.Partial` holding the weights)."""
    return jax.vmap(lambda xi, yi: jnp.linalg.norm(jax.grad(lambda t: loss(f(t), yi))(xi)))(x, y)


def norm_fits(traj_delta, traj_grad, success):
    """:func:`jaxdyn.analyses.metrics.growth_fits` of ``||δ||`` (from ``t = 1``) and of ``||g||``."""
    return {"delta": growth_fits(traj_delta, success, start=1), "grad": growth_fits(traj_grad, success)}


def growth_curves(model, variables, x, y, *, step: float, max_steps: int, raw_target: int | None = None,
                  norms=NORMS, gatings=GATINGS, skip=(("frozen", "linf"),), progress: bool = True) -> dict:
    """Fig. 2's trajectories, fits and Theorem-2 rates for one network.

    ``x``: ``[N, 28, 28, 1]`` correctly classified digits, ``y``: ``[N]`` labels; ``step``: ℓ2
    length of the ℓ2 and ℓ∞ steps; ``max_steps``: ``m`` of the recorded scans; ``raw_target``: the
    raw attack's success step under A2 that sets each sample's α (``None``: one α_raw = step /
    median ||g_x||); ``skip``: ``(gating, norm)`` pairs left out (ℓ∞ under A2: the paper's frozen
    panel (e) shows the raw attack). Returns ``{"alpha": {norm: median α}, "alpha_raw": [N],
    "calibration_success_step": [N], "runs": {gating: {norm: {...}}}}``: per run the per-sample
    ``success_step``, ``delta_norm``/``grad_norm`` ``[N, max_steps+1]``, the fits and (raw attack)
    the Theorem-2 curves and rates, as nested lists.
    """
    dt = jax.tree.leaves(variables)[0].dtype
    x, y, n = jnp.asarray(x, dt), jnp.asarray(y), int(np.prod(x.shape[1:]))
    # the weights as a traced argument, not constants of the compiled graphs (faster compiles); one
    # function per architecture, so the seeds of one architecture share the compiles
    f = jax.tree_util.Partial(_net(model), variables)
    g0 = _grad_norm(f, x, y)
    N, calib = x.shape[0], None
    alpha_raw = np.full(N, step / float(np.median(np.asarray(g0))))
    if raw_target is not None and "raw" in norms:  # α per sample
        calib = calibrate_raw_alpha(f, x, y, target=raw_target, max_steps=max_steps, alpha0=step / np.asarray(g0))
        alpha_raw = calib["alpha"]
    # the input Jacobians at the clean digits, computed once: the frozen (logit-space) attacks and
    # the Theorem-2 curves take them instead of compiling a Jacobian through the network each
    J = calib["jacobian"] if calib is not None else jax.jit(jax.vmap(input_jacobian, in_axes=(None, 0)))(f, x)
    alphas = {"raw": alpha_raw, "l2": np.full(N, step), "linf": np.full(N, step / math.sqrt(n))}
    theory, free = growth_theory_fn(model, max_steps), growth_free_attack_fn(model, max_steps)
    runs: dict = {g: {} for g in gatings}
    runs_wanted = {(g, nm) for g in gatings for nm in norms} - set(skip)
    bar = tqdm(total=len(runs_wanted), disable=not progress, dynamic_ncols=True, desc=f"fig2 {type(model).__name__}",
               leave=False)
    for gating in gatings:
        for norm in norms:
            if (gating, norm) not in runs_wanted:
                continue
            fn = (functools.partial(free, k=jnp.int32(NORMS.index(norm))) if gating == "free" else
                  functools.partial(growth_attack_fn(model, norm, gating, max_steps), jacobian=J))
            res = jax.device_get(fn(variables, x, y, jnp.asarray(alphas[norm], dt)))
            succ, d, g = (np.asarray(res[k]) for k in ("success_step", "delta_norm", "grad_norm"))
            ok = succ > 0
            run = dict(success_step=succ, delta_norm=d, grad_norm=g, fits=norm_fits(d, g, np.where(ok, succ, 0)),
                       n_success=int(ok.sum()), n=int(len(succ)),
                       growth_grad=np.where(ok, g[np.arange(len(g)), np.maximum(succ, 0)] / g[:, 0], np.nan))
            if norm == "raw":
                th = jax.device_get(theory(variables, x, y, jnp.asarray(alphas[norm], dt), res["H_z"],
                                           res["step_norm"], jnp.asarray(succ), J))
                win = jnp.where(ok, succ, 0)
                fit = {k: norm_fits(th[f"delta_norm{k}"], th[f"grad_norm{k}"], win) for k in ("", "_t1", "_clean")}
                run["theory"] = dict(
                    {k: th[k] for k in ("lambda1", "lambda1_clean", "delta_norm", "grad_norm", "delta_norm_clean",
                                        "grad_norm_clean")},
                    rate_asymptotic=alphas[norm] * th["lambda1"], alpha=alphas[norm],
                    r2_delta=fit[""]["delta"]["r2"], r2_grad=fit[""]["grad"]["r2"],
                    grad_late_over_early=fit[""]["grad"]["rate_late"] / fit[""]["grad"]["rate_early"],
                    **{f"rate_fit_{q}{k}": fit[k][q]["rate"] for k in fit for q in ("delta", "grad")})
            runs[gating][norm] = run
            bar.update()
    bar.close()
    return {"alpha": {k: float(np.median(v)) for k, v in alphas.items()}, "alpha_raw": np.asarray(alpha_raw).tolist(),
            "calibration_success_step": None if calib is None else calib["success_step"].tolist(),
            "runs": to_json_tree(runs)}


def relative_grid(traj, succ, grid):
    """Interpolate each successful trajectory, divided by its value at ``m_success``, onto
    ``grid`` of relative progress ``t / m_success``; returns ``[N_ok, len(grid)]``."""
    rows = []
    for v, ms in zip(traj, succ):
        if ms <= 0:
            continue
        v = np.asarray(v, float)
        t = np.arange(len(v)) / ms
        ref = v[ms]
        if not np.isfinite(ref) or ref <= 0:
            continue
        rows.append(np.interp(grid, t, v / ref, right=np.nan))
    return np.asarray(rows) if rows else np.full((0, len(grid)), np.nan)
