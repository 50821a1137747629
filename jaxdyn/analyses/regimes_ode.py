"""The gradient-flow reference of :mod:`jaxdyn.analyses.regimes` (split from it to keep each file short):
one example's flow ``dδ/dt = g_{x+δ}`` (:mod:`jaxdyn.attacks.flow`, the ``m → ∞`` limit of the attack)
against Theorem 2, the first-order baseline and the ``m``-step attack, and a row's summary of it.
Every name is re-exported by :mod:`jaxdyn.analyses.regimes`."""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import numpy as np

from jaxdyn.attacks import flow as _flow
from jaxdyn.analyses.stats import finite_median as _median
from jaxdyn.core.theory import structured_eigenpairs, theorem2

__all__ = ["ode_compare", "ode_frozen_example", "ode_free_example", "summarize_ode"]


def cosine_rows(a, b):
    return jnp.vdot(a, b) / jnp.maximum(jnp.linalg.norm(a) * jnp.linalg.norm(b), 1e-300)


def ode_compare(sol, delta_m, J, g_z, beta) -> dict:
    """One example's gradient-flow solution ``sol`` (:class:`jaxdyn.attacks.flow.FlowResult`, δ flattened
    or not) against Theorem 2 with the flow's own ``H̄_z``, the first-order ``β g_x`` and the
    ``m``-step attack's ``delta_m`` (``[n]``). Returns scalars: ``ode_ok`` (solved), ``ode_norm``
    ``‖δ_ode‖``, ``ode_err_hat``/``ode_err_fo``/``ode_err_m`` (``‖δ_ode − ·‖`` for δ̂, ``β g_x``,
    δ*_m), C.3's ``cos(δ_ode, g_x)`` and ``|cos(δ_ode, v₁)|`` (``v₁`` of ``Jᵀ H̄_z J``, the flow's
    ``H̄_z``), ``ode_accepted``, ``ode_rejected``."""
    ok = sol.status == _flow.FlowStatus.OK
    d = jnp.where(ok, sol.delta.ravel(), 0.0)
    hz = jnp.where(ok, sol.hbar_z, jnp.zeros_like(sol.hbar_z))
    hat = theorem2(J, g_z, hz, beta).delta
    gx = J.T @ g_z
    _, V = structured_eigenpairs(J, hz)
    return dict(ode_ok=ok, ode_norm=jnp.linalg.norm(d), ode_err_hat=jnp.linalg.norm(d - hat),
                ode_err_fo=jnp.linalg.norm(d - beta * gx), ode_err_m=jnp.linalg.norm(d - delta_m),
                cos_ode_gx=cosine_rows(d, gx), cos_ode_v1=jnp.abs(cosine_rows(d, V[:, 0])), ode_accepted=sol.accepted,
                ode_rejected=sol.rejected)


def ode_frozen_example(J, z, g_z, y, beta, delta_m, **tol) -> dict:
    """:func:`ode_compare` for the A2 gradient flow of one example, solved in logit space
    (:func:`jaxdyn.attacks.flow.logit_space_flow`) from its clean ``J``, ``z``; ``tol``: the solver's
    ``rtol``, ``atol``, ``max_steps``."""
    sol = _flow.logit_space_flow(lambda _: z, jnp.zeros(J.shape[1], J.dtype), y, beta=beta, jacobian=J, **tol)
    return ode_compare(sol, delta_m, J, g_z, beta)


def ode_free_example(f: Callable, x, y, J, g_z, beta, delta_m, **tol) -> dict:
    """:func:`ode_compare` for the gradient flow on the real network ``f`` (free gating,
    :func:`jaxdyn.attacks.flow.gradient_flow`) of one example ``x``."""
    sol = _flow.gradient_flow(f, x, y, beta=beta, gating="free", **tol)
    return ode_compare(sol, delta_m, J, g_z, beta)


def summarize_ode(p: dict, suffix: str = "") -> dict:
    """The ODE-reference fields of one gating (:data:`ODE_FIELDS`) from per-example numbers of
    :func:`ode_compare`, over the examples whose flow was solved (``ode_solved`` of them; the
    others hit ``max_steps`` or failed, and count nowhere): ``kappa_ode`` = Σ‖δ_ode − δ̂‖ /
    Σ‖δ_ode‖ (δ̂ with the flow's ``H̄_z``), ``kappa_ode_first_order`` (``β g_x``), ``euler_gap`` =
    Σ‖δ*_m − δ_ode‖ / Σ‖δ_ode‖, medians of the C.3 cosines and of the solver's step counts. With
    ``suffix="_free"``: ``kappa_ode_free``, ``kappa_ode_free_first_order``, ``<field>_free``."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    ok = p["ode_ok"] > 0
    den = float(np.sum(p["ode_norm"][ok]))
    ratio = lambda e: float(np.sum(p[e][ok]) / den) if den > 0 else float("nan")  # noqa: E731
    k = "kappa_ode" + suffix
    return {k: ratio("ode_err_hat"), k + "_first_order": ratio("ode_err_fo"), "euler_gap" + suffix: ratio("ode_err_m"),
            "cos_ode_gx" + suffix: _median(p["cos_ode_gx"][ok]), "cos_ode_v1" + suffix: _median(p["cos_ode_v1"][ok]),
            "ode_solved" + suffix: int(ok.sum()), "ode_steps" + suffix: _median(p["ode_accepted"][ok]),
            "ode_rejected" + suffix: _median(p["ode_rejected"][ok])}
