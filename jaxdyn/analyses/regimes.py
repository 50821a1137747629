"""Where does the theory hold for *your* model? A sweep of the attack strength β.

For any per-example logits function ``f`` and a batch of examples, :func:`sweep` runs, for each β
of a grid, the ``m``-step raw attack (A1, ``α = β/m``) under frozen gating (A2) and/or on the real
network (free gating), and compares its perturbation δ* with Theorem 2's δ̂ (Eq. 6, with the
attack's own ``H̄_z``), Theorem 1 at the same ``m`` (Eq. 5) and the curvature-free first-order
baseline ``β g_x``, beside how strong the attack is (the dimensionless ``βλ₁(H̄_x)``, the
fraction of correctly classified examples it flips, ``‖δ*‖``) and conclusion C.3's directions
(``δ ∥ g_x`` at small β, ``δ ∥ v₁`` at large β).

Example — a model you define (any ``x -> logits`` function works; flax, equinox, plain JAX)::

    import jax, jax.numpy as jnp
    from jaxdyn.analyses.regimes import sweep

    jax.config.update("jax_enable_x64", True)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    W1 = jax.random.normal(k1, (64, 20)) / 8.0
    W2 = jax.random.normal(k2, (3, 20)) / 4.0

    def f(x):                                   # one example [64] -> logits [3]
        return W2 @ jax.nn.relu(x @ W1)

    xs = jax.random.normal(k3, (32, 64))
    ys = jnp.argmax(jax.vmap(f)(xs), axis=1)    # labels the model gets right
    rows = sweep(f, xs, ys, betas=(1e-2, 1e-1, 1.0), steps=100, flip_range=(0.05, 0.5))
    for r in rows:
        print(f"β={r['beta']:.3g} βλ₁={r['beta_lambda_max']:.2g} flips={r['flip_fraction']:.2f} "
              f"κ={r['kappa']:.2g} (first order {r['kappa_first_order']:.2g}) "
              f"free: κ={r['kappa_free']:.2g} ({r['kappa_free_first_order']:.2g})")

The theory beats its baseline where ``kappa`` is well below ``kappa_first_order``; with
``flip_range`` the grid is extended (by ``factor``) down until no more than ``flip_range[0]`` of
the examples flip and up until at least ``flip_range[1]`` do, so the sweep spans the paper's
small-β regime and the strengths at which an attack actually attacks.

With ``ode``, each row also carries the gradient flow ``dδ/dt = g_{x+δ}`` (:mod:`jaxdyn.attacks.flow`,
the ``m → ∞`` limit of the attack) as the reference: ``kappa_ode`` (δ̂ against it),
``euler_gap`` (the ``m``-step attack against it); :func:`convergence` gives κ(m) against it.

Costs: the frozen attack runs in logit space (:func:`jaxdyn.attacks.multistep.logit_space_attack`, one
Jacobian per example, then ``O(C²)`` per step) and the theory on the ``C x C`` path; the free
attack makes ``m`` forward and backward passes through ``f`` per example and β. Every function is
compiled once: β is traced, so the grid (and its extension) never recompiles.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.attacks import flow as _flow
from jaxdyn.attacks.multistep import attack, logit_space_attack
from jaxdyn.core.gating import GATINGS
from jaxdyn.core.losses import is_success
from jaxdyn.analyses.regimes_ode import cosine_rows, ode_compare, ode_free_example, ode_frozen_example, summarize_ode
from jaxdyn._internal.sharding import map_in_chunks as _map
from jaxdyn.analyses.stats import finite_median as _median
from jaxdyn.core.theory import clean_alignment, prepare, structured_eigenpairs, theorem1, theorem2

__all__ = ["sweep", "compare", "frozen_example", "free_example", "summarize", "ode_compare", "ode_frozen_example",
           "ode_free_example", "summarize_ode", "convergence", "ROW_FIELDS", "FREE_FIELDS", "C3_FIELDS", "ODE_FIELDS"]

#: the fields of a row with frozen gating (A2); ``beta`` and these, always
ROW_FIELDS = ("beta", "beta_lambda_max", "flip_fraction", "delta_l2", "delta_linf", "kappa", "kappa_theorem1",
              "kappa_first_order")
#: conclusion C.3's medians (frozen; ``_free`` versions with free gating)
C3_FIELDS = ("cos_delta_gx", "cos_delta_v1", "cos_hat_gx", "cos_hat_v1")
#: the free-gating fields: ``kappa_free``, ``kappa_free_first_order`` (the names of the tables)
#: and the ``_free`` version of every other per-attack field
FREE_FIELDS = ("kappa_free", "kappa_free_first_order", "kappa_theorem1_free", "beta_lambda_max_free",
               "flip_fraction_free", "delta_l2_free", "delta_linf_free") + tuple(f + "_free" for f in C3_FIELDS)

#: the ODE-reference fields of a row (frozen; ``kappa_ode_free``, ``kappa_ode_free_first_order`` and
#: ``<field>_free`` for the rest with free gating), see :func:`summarize_ode`
ODE_FIELDS = ("kappa_ode", "kappa_ode_first_order", "euler_gap", "cos_ode_gx", "cos_ode_v1", "ode_solved",
              "ode_steps", "ode_rejected")
#: the solver's default tolerances for the ODE reference (float64; δ's scale is set by rtol)
ODE_TOL = dict(rtol=1e-6, atol=1e-9, max_steps=4096)


def compare(delta, hbar_z, J, g_z, beta, *, steps: int, flipped=False) -> dict:
    """One example's attack against the theory evaluated with that attack's ``H̄_z``.

    Args:
      delta: ``[n]`` the attack's perturbation δ* (flattened); hbar_z: ``[C, C]`` its ``H̄_z``.
      J: ``[C, n]`` input Jacobian at the clean ``x``; g_z: ``[C]`` ``∂L/∂z`` there.
      beta: the attack's strength (traced); steps: its ``m`` (Theorem 1 at the same ``m``).
      flipped: whether the attack misclassified the example (passed through).
    Returns:
      Scalars: ``norm`` ``‖δ*‖₂``, ``linf`` ``‖δ*‖∞``; ``err_hat``, ``err_t1``, ``err_fo``:
      ``‖δ* − δ‖`` for Theorem 2's δ̂ (Eq. 6), Theorem 1's δ (Eq. 5, ``α = β/m``) and ``β g_x``;
      ``beta_lam`` ``β λ₁(H̄_x)``; ``flipped``; C.3's ``cos(δ*, g_x)``, ``|cos(δ*, v₁)|``,
      ``cos(δ̂, g_x)``, ``|cos(δ̂, v₁)|`` (:data:`C3_FIELDS`; ``v₁`` the top eigenvector of
      ``H̄_x = Jᵀ H̄_z J``, sign-free).
    """
    hat = theorem2(J, g_z, hbar_z, beta).delta
    t1 = theorem1(J, g_z, hbar_z, beta / jnp.asarray(steps, J.dtype), steps).delta
    gx = J.T @ g_z
    lam, V = structured_eigenpairs(J, hbar_z)
    v1 = V[:, 0]
    return dict(
        norm=jnp.linalg.norm(delta), linf=jnp.max(jnp.abs(delta)), err_hat=jnp.linalg.norm(delta - hat),
        err_t1=jnp.linalg.norm(delta - t1), err_fo=jnp.linalg.norm(delta - beta * gx), beta_lam=beta * lam[0],
        flipped=jnp.asarray(flipped), cos_delta_gx=cosine_rows(delta, gx), cos_delta_v1=jnp.abs(cosine_rows(delta, v1)),
        cos_hat_gx=cosine_rows(hat, gx), cos_hat_v1=jnp.abs(cosine_rows(hat, v1)),
    )


def frozen_example(J, z, g_z, y, beta, *, steps: int, with_delta: bool = False) -> dict:
    """:func:`compare` for the exact A2 raw attack of one example, run in logit space from its
    clean ``J`` (``[C, n]``), logits ``z`` and ``g_z`` (:func:`jaxdyn.core.theory.prepare`); flipped:
    misclassified by the A2 network at the end, ``z + J δ*``. ``with_delta``: also ``delta``
    (δ*, ``[n]``)."""
    res = logit_space_attack(lambda _: z, jnp.zeros(J.shape[1], J.dtype), y, steps=steps, beta=beta, jacobian=J)
    out = compare(res.delta, res.hbar_z, J, g_z, beta, steps=steps, flipped=is_success(z + J @ res.delta, y))
    return dict(out, delta=res.delta) if with_delta else out


def free_example(f: Callable, x, y, J, g_z, beta, *, steps: int, with_delta: bool = False) -> dict:
    """:func:`compare` for the raw attack on the real network ``f`` (free gating,
    :func:`jaxdyn.attacks.multistep.attack`) of one example ``x``; δ̂ from ``J``, ``g_z`` at ``x`` and the
    attack's own ``H̄_z``; flipped: ``f`` misclassifies ``x + δ*``. ``with_delta``: also ``delta``."""
    res = attack(f, x, y, steps=steps, beta=beta, norm="raw", gating="free")
    d = res.delta.ravel()
    out = compare(d, res.hbar_z, J, g_z, beta, steps=steps, flipped=is_success(f(x + res.delta), y))
    return dict(out, delta=d) if with_delta else out


def summarize(p: dict, correct, suffix: str = "") -> dict:
    """A row's fields of one gating from the per-example numbers of :func:`compare` (arrays
    ``[N]``; ``correct``: ``[N]`` booleans, the examples classified correctly; ``suffix`` ``""``
    for frozen, ``"_free"`` for free, see :data:`FREE_FIELDS`): κ = Σ‖δ* − δ̂‖ / Σ‖δ*‖
    (:func:`jaxdyn.analyses.metrics.kappa`), medians over all examples, the flip fraction over the
    correctly classified ones."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    correct = np.asarray(correct, bool)
    den = float(np.sum(p["norm"]))
    kap = {k: float(np.sum(p[e]) / den) if den > 0 else float("nan")
           for k, e in (("kappa", "err_hat"), ("kappa_theorem1", "err_t1"), ("kappa_first_order", "err_fo"))}
    if suffix:
        kap = dict(kappa_free=kap["kappa"], kappa_free_first_order=kap["kappa_first_order"],
                   kappa_theorem1_free=kap["kappa_theorem1"])
    out = dict(beta_lambda_max=_median(p["beta_lam"]),
               flip_fraction=float(np.mean(p["flipped"][correct])) if correct.any() else float("nan"),
               delta_l2=_median(p["norm"]), delta_linf=_median(p["linf"]),
               **{k: _median(p[k]) for k in C3_FIELDS})
    return {**kap, **{k + suffix: v for k, v in out.items()}}


def _clean(v):
    return v if not isinstance(v, float) or math.isfinite(v) else None


def _compiled(f: Callable, steps: int, chunk: int | None, gating: Sequence[str], ode: Sequence[str], tol: dict):
    """The jitted functions of a sweep: ``prep(xs, ys)``, per gating ``fn(xs, ys, J, z, gz, beta)
    -> per-example numbers`` (with the frozen ODE reference, and the free attack's δ*, when asked)
    and ``ode_free(xs, ys, J, gz, delta_m, beta)`` (β traced; ``lax.map`` in chunks of ``chunk``)."""

    def batched(one):  # args: the per-example arrays, then β
        return jax.jit(lambda *args: _map(lambda a: one(*a, args[-1]), tuple(args[:-1]), chunk))

    prep = batched(lambda x, y, _: prepare(f, x, y))

    def frozen(x, y, J, z, gz, beta):
        out = frozen_example(J, z, gz, y, beta, steps=steps, with_delta="frozen" in ode)
        return dict(out, **ode_frozen_example(J, z, gz, y, beta, out.pop("delta"), **tol)) if "frozen" in ode else out

    def free(x, y, J, z, gz, beta):
        return free_example(f, x, y, J, gz, beta, steps=steps, with_delta="free" in ode)

    fns = {g: batched(dict(frozen=frozen, free=free)[g]) for g in gating}
    ode_free = batched(lambda x, y, J, gz, dm, beta: ode_free_example(f, x, y, J, gz, beta, dm, **tol))
    return prep, fns, ode_free if "free" in ode else None


def sweep(f: Callable[[jax.Array], jax.Array], xs, ys, *, betas: Sequence[float], steps: int,
          gating: Sequence[str] = ("frozen", "free"), chunk: int | None = None,
          flip_range: tuple[float, float] | None = None, factor: float = 3.0, max_betas: int = 16,
          ode: Sequence[str] | None = None, ode_free_betas: Callable[[list], Sequence[float]] | None = None,
          ode_tol: dict | None = None) -> list[dict]:
    """The theory against the real attack over a grid of strengths β (see the module docstring).

    Args:
      f: per-example logits function ``x -> z: [C]`` (softmax cross-entropy for ``C ≥ 2``, the
        sigmoid head with labels ±1 for ``C = 1``), e.g. :func:`jaxdyn.core.models.logits_fn`.
      xs: ``[N, *x.shape]`` examples; ys: ``[N]`` labels. κ and the medians are over all of
        them, ``flip_fraction`` over those ``f`` classifies correctly.
      betas: the β grid (each > 0; sorted, duplicates dropped).
      steps: the attack's ``m`` (``α = β/m``; static).
      gating: ``"frozen"`` (A2: the exact attack in logit space) and/or ``"free"`` (the real
        network, :func:`jaxdyn.attacks.multistep.attack`).
      chunk: examples per vectorised batch (bounds memory; ``None``: all at once).
      flip_range: ``(lo, hi)`` to extend the grid by ``factor``: below its smallest β until every
        gating's flip fraction is ≤ ``lo``, above its largest until every one is ≥ ``hi``, with
        at most ``max_betas`` rows in all (whether the range was reached can be read from the
        first and last rows).
      ode: the gatings whose gradient flow ``dδ/dt = g_{x+δ}`` (:mod:`jaxdyn.attacks.flow`, the
        infinite-step limit) is solved as a reference (a subset of ``gating``; default: the
        frozen one, cheap in logit space; the free one runs through ``f`` with an adaptive
        number of passes — see ``docs/tables.md`` for its cost).
      ode_free_betas: ``rows -> βs`` (called on the finished rows) to solve the free flow only
        at those β (e.g. the attack regime's); ``None``: at every β.
      ode_tol: the solver's ``rtol``, ``atol``, ``max_steps`` (default :data:`ODE_TOL`).
    Returns:
      One dict per β, ascending: ``beta`` and :data:`ROW_FIELDS` and :data:`C3_FIELDS` (frozen),
      :data:`FREE_FIELDS` (free), for the gatings asked; κ, ``kappa_theorem1`` (Theorem 1 at the
      same ``m``) and ``kappa_first_order`` (``δ = β g_x``) are ratios of sums as
      :func:`jaxdyn.analyses.metrics.kappa`; ``beta_lambda_max`` is the median of ``β λ₁(H̄_x)``
      (``H̄_x = Jᵀ H̄_z J``, ``H̄_z`` of that attack), ``delta_l2``/``delta_linf`` medians of
      ``‖δ*‖₂``/``‖δ*‖∞``, ``flip_fraction`` the fraction of correctly classified examples
      misclassified at ``x + δ*`` (frozen: by the A2 network ``z + J δ*``; free: by ``f``), the
      C.3 cosines medians of ``cos(δ, g_x)`` and ``|cos(δ, v₁)|`` for δ* (``delta``) and δ̂
      (``hat``); ``n_examples``, ``n_correct``, ``steps``; with ``ode``, :data:`ODE_FIELDS`
      (:func:`summarize_ode`; ``euler_gap`` is the m-step attack's distance to the flow) and
      ``ode_rtol``/``ode_atol``/``ode_max_steps``. Non-finite numbers are ``None``. The first and last
      rows' ``c3_per_digit``: per example ``cos_gx_v1_clean`` (:func:`jaxdyn.core.theory.clean_alignment`)
      and that row's ``cos_delta_gx``, ``cos_delta_v1`` (and ``_free``), lists (``None``: non-finite).
    """
    gating = tuple(gating)
    if not gating or any(g not in GATINGS for g in gating):
        raise ValueError(f"gating must be a non-empty subset of {GATINGS}, got {gating!r}")
    grid = sorted({float(b) for b in betas})
    if not grid or not all(math.isfinite(b) and b > 0 for b in grid):
        raise ValueError(f"betas must be finite and > 0, got {betas!r}")
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if flip_range is not None and not (0 <= flip_range[0] <= flip_range[1] <= 1 and factor > 1):
        raise ValueError(f"need 0 <= lo <= hi <= 1 and factor > 1, got flip_range={flip_range}, factor={factor}")
    ode = tuple(g for g in gating if g == "frozen") if ode is None else tuple(ode)
    if any(g not in gating for g in ode):
        raise ValueError(f"ode must be a subset of gating {gating!r}, got {ode!r}")
    tol = dict(ODE_TOL, **(ode_tol or {}))
    if set(tol) != set(ODE_TOL):
        raise ValueError(f"ode_tol takes {sorted(ODE_TOL)}, got {sorted(ode_tol)}")
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    prep, fns, ode_free = _compiled(f, int(steps), chunk, gating, ode, tol)
    J, z, gz = prep(xs, ys, jnp.zeros(()))
    correct = ~np.asarray(jax.vmap(is_success)(z, ys))
    aligned = np.asarray(jax.jit(jax.vmap(clean_alignment))(J, z, gz, ys), np.float64)
    dt = J.dtype
    rows: dict[float, dict] = {}
    c3: dict[float, dict] = {}  # per-example C.3 cosines, kept in the first and the last row
    free_deltas: dict[float, np.ndarray] = {}  # the free attack's δ*, for the free flow's euler_gap

    def row(b: float) -> dict:
        if b not in rows:
            r = dict(beta=b, steps=int(steps), n_examples=int(len(ys)), n_correct=int(correct.sum()))
            if ode:
                r.update(ode_rtol=tol["rtol"], ode_atol=tol["atol"], ode_max_steps=tol["max_steps"])
            for g, fn in fns.items():
                p = jax.device_get(fn(xs, ys, J, z, gz, jnp.asarray(b, dt)))
                if g == "free" and "delta" in p:
                    free_deltas[b] = p.pop("delta")
                r.update(summarize(p, correct, "" if g == "frozen" else "_free"))
                c3.setdefault(b, {}).update({k + ("" if g == "frozen" else "_free"): p[k] for k in C3_FIELDS[:2]})
                if g == "frozen" and "frozen" in ode:
                    r.update(summarize_ode(p))
            rows[b] = {k: _clean(v) for k, v in r.items()}
        return rows[b]

    def flips(r: dict) -> list[float]:
        fl = [r.get("flip_fraction" if g == "frozen" else "flip_fraction_free") for g in gating]
        return [v for v in fl if v is not None]

    for b in grid:
        row(b)
    if flip_range is not None:
        lo, hi = flip_range
        while len(rows) < max_betas and any(v > lo for v in flips(row(min(rows)))):
            row(min(rows) / factor)
        while len(rows) < max_betas and any(v < hi for v in flips(row(max(rows)))):
            row(max(rows) * factor)
    if ode_free is not None:
        at = sorted(rows) if ode_free_betas is None else ode_free_betas([rows[b] for b in sorted(rows)])
        for b in at:
            b = float(b)
            if b not in rows:
                raise ValueError(f"ode_free_betas returned β={b}, not a row of the grid")
            p = jax.device_get(ode_free(xs, ys, J, gz, jnp.asarray(free_deltas[b]), jnp.asarray(b, dt)))
            rows[b].update({k: _clean(v) for k, v in summarize_ode(p, "_free").items()})
    per = lambda a: [float(v) if math.isfinite(v) else None for v in np.asarray(a, np.float64)]  # noqa: E731
    for b in {min(rows), max(rows)}:
        rows[b]["c3_per_digit"] = {"cos_gx_v1_clean": per(aligned), **{k: per(v) for k, v in c3[b].items()}}
    return [rows[b] for b in sorted(rows)]


def convergence(f: Callable, xs, ys, *, beta: float, m_grid: Sequence[int], gating: str = "frozen",
                chunk: int | None = None, ode_tol: dict | None = None, summary_steps: int | None = None) -> dict:
    """κ(m): how the ``m``-step raw attack approaches the gradient flow (its ``m → ∞`` limit) at one β.

    Solves the flow once, then for each ``m`` of ``m_grid``: ``euler_gap`` = Σ‖δ*_m − δ_ode‖ /
    Σ‖δ_ode‖ (Euler's global error, ``O(1/m)``) and ``kappa`` = Σ‖δ*_m − δ̂‖ / Σ‖δ*_m‖ (Theorem 2
    with that attack's ``H̄_z``), over the examples whose flow was solved; ``kappa`` tends to the
    flow's ``kappa_ode`` (returned beside). ``gating``: ``"frozen"`` (logit space, cheap) or ``"free"``
    (through ``f``: ``m`` passes per example and ``m``). ``summary_steps``: also return ``summary``, a
    row's ODE fields (:func:`summarize_ode`) against that attack — what :func:`sweep` adds with
    ``ode``, without solving the flow twice. Other arguments as :func:`sweep`.
    """
    if gating not in GATINGS:
        raise ValueError(f"gating must be one of {GATINGS}, got {gating!r}")
    if not (math.isfinite(beta) and beta > 0) or not m_grid or any(int(m) != m or m < 1 for m in m_grid):
        raise ValueError(f"need beta > 0 and integer m >= 1, got beta={beta!r}, m_grid={m_grid!r}")
    tol = dict(ODE_TOL, **(ode_tol or {}))
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    mapped = lambda one: jax.jit(lambda *a: _map(lambda t: one(*t), a, chunk))  # noqa: E731
    J, z, gz = mapped(lambda x, y: prepare(f, x, y))(xs, ys)
    b = jnp.asarray(beta, J.dtype)
    zero = jnp.zeros(J.shape[2], J.dtype)

    def flow_one(x, y, J, z):
        if gating == "frozen":
            return _flow.logit_space_flow(lambda _: z, zero, y, beta=b, jacobian=J, **tol)
        return _flow.gradient_flow(f, x, y, beta=b, gating="free", **tol)

    sol = mapped(flow_one)(xs, ys, J, z)
    cmp = jax.jit(jax.vmap(lambda s, d, J, g: ode_compare(s, d, J, g, b)))
    out = dict(beta=float(beta), gating=gating, n_examples=int(len(ys)), ode_rtol=tol["rtol"], ode_atol=tol["atol"],
               ode_max_steps=tol["max_steps"], rows=[])
    grid = [int(m) for m in m_grid]

    def one(x, y, J, z, gz, m):
        if gating == "frozen":  # m traced: one compile for the whole grid (logit space)
            r = logit_space_attack(lambda _: z, zero, y, steps=m, beta=b, jacobian=J)
        else:  # through the network: a scan of static length per m
            r = attack(f, x, y, steps=int(m), beta=b, norm="raw", gating="free")
        return r.delta.ravel(), theorem2(J, gz, r.hbar_z, b).delta

    frozen_fn = (jax.jit(lambda m, *a: _map(lambda t: one(*t, m), a, chunk))
                 if gating == "frozen" else None)
    for m in grid + ([int(summary_steps)] if summary_steps is not None and summary_steps not in grid else []):
        if frozen_fn is not None:
            d, hat = frozen_fn(jnp.asarray(m, jnp.int32), xs, ys, J, z, gz)
        else:
            d, hat = mapped(lambda x, y, J, z, gz, m=m: one(x, y, J, z, gz, m))(xs, ys, J, z, gz)
        p = jax.device_get(cmp(sol, d, J, gz))
        ok = np.asarray(p["ode_ok"]) > 0
        d, hat = np.asarray(d)[ok], np.asarray(hat)[ok]
        den = np.linalg.norm(d, axis=1).sum()
        kap = float(np.linalg.norm(d - hat, axis=1).sum() / den) if den > 0 else float("nan")
        s = summarize_ode(p)
        out.update(kappa_ode=_clean(s["kappa_ode"]), ode_solved=s["ode_solved"], ode_steps=_clean(s["ode_steps"]))
        if m in grid:
            out["rows"].append(dict(steps=m, euler_gap=_clean(s["euler_gap"]), kappa=_clean(kap)))
        if m == summary_steps:
            out["summary"] = {k: _clean(v) for k, v in summarize_ode(p, "_free" if gating == "free" else "").items()}
    return out
