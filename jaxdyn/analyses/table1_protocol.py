"""Table 1's measurement of one network (:mod:`jaxdyn.experiments.table1` orchestrates it), per digit and
per gating (frozen: A2, exact, in logit space; free: the real network), from
:mod:`jaxdyn.analyses.progress`:

* **progress**: each digit's ``t_success`` within the budget ``beta_max`` (the digits that never flip,
  and those misclassified at ``x``, apart), then at ``β_i = s · t_success,i`` for each ``s`` of
  ``s_grid``: Theorem 2's relative error ``‖δ̂ − δ*‖/‖δ*‖`` (δ* the m-step raw attack, ``m = s · steps``,
  ``α = t_success,i / steps``), the first-order one ``‖β g_x − δ*‖/‖δ*‖`` and their ratio; the
  ablations of ``H̄_z`` (time-uniform, ``c · H̄_z`` over :data:`jaxdyn.analyses.progress.C_GRID`);
  the saturation past the flip (growth of ``‖δ*‖``, of ``‖δ̂‖`` and of ``‖g‖`` from ``s = 1`` to the
  largest ``s``);
* **paper protocol**: the ``steps``-step attack at the documented β for every digit: the pooled
  ``κ = Σ‖δ* − δ̂‖ / Σ‖δ*‖`` (a ratio of sums, the paper's) and its first-order version, with the
  per-digit relative errors beside;
* **C.3**: per digit ``cos(δ*, g_x)`` and ``|cos(δ*, v₁)|`` at the paper protocol's β (small ``βλ₁``)
  and at the largest ``s`` (large), and ``|cos(g_x, v₁)|`` at ``x`` (the premise, :func:`c3_turns`).

One compile of the attack per network shape and gating (``α`` per digit is an input), one of the
theory for every network of the same input size.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np

from jaxdyn._internal.sharding import chunked
from jaxdyn.analyses import progress as P
from jaxdyn.core.models import logits_fn
from jaxdyn.core.theory import clean_alignment, prepare

__all__ = ["make_prep_fn", "measure", "c3_turns", "C3_MAX_COS", "C3_MIN_DIGITS"]

#: C.3's defaults: the clean-point alignment ``|cos(g_x, v₁)|`` above which a digit cannot show
#: C.3's turn, and the fewest such digits a network needs to enter the test
C3_MAX_COS, C3_MIN_DIGITS = 0.9, 4
GATINGS = ("frozen", "free")


_CACHE: dict = {}


def _cached(key, build):
    """One jitted function per key (a network's architecture and the static settings): every seed of
    an architecture reuses its compile."""
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def make_prep_fn(model):
    """Jitted ``(variables, x [B,28,28,1], y [B]) -> (J [B,C,n], z [B,C], g_z [B,C])`` at the clean
    digits (:func:`jaxdyn.core.theory.prepare`): everything the theory needs from the network (A2
    freezes it at ``x``)."""
    return jax.jit(jax.vmap(lambda v, x, y: prepare(logits_fn(model, v), x, y), in_axes=(None, 0, 0)))


_alignment = jax.jit(jax.vmap(clean_alignment))


def _list(a) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, np.float64).ravel()]


def _rel(cmp: dict, key: str, j: int, keep) -> np.ndarray:
    v = cmp[key][:, j] / cmp["norm"][:, j]
    return np.where(keep, v, np.nan)


def _gating(fn, cfg: dict, xs, ys, J, z, gz, chunk, ks, j1) -> dict:
    steps, s_grid, beta_max, rounds = cfg["steps"], cfg["s_grid"], cfg["beta_max"], cfg["rounds"]
    N, n, M = len(ys), J.shape[2], max(ks)
    run = lambda d0, a: chunked(fn, xs, ys, J, z, d0, a, chunk=chunk)  # noqa: E731
    # the budget: `rounds` chained attacks of M steps at α_b = β_max / (rounds · M)
    a_b = beta_max / (rounds * M)
    d0, margins = np.zeros((N, n)), []
    for r in range(rounds):
        out = run(d0, np.full(N, a_b))
        margins.append(out["margin"] if r == 0 else out["margin"][:, 1:])
        d0 = out["delta"]
    t = P.t_success(np.concatenate(margins, axis=1), a_b)
    flipped = np.isfinite(t) & (t > 0)
    status = np.where(flipped, "flipped", np.where(np.isfinite(t), "misclassified", "never"))
    # refined: the first misclassified state of an attack with the fine step α_i = t_i / steps
    t_fine = P.t_success(run(np.zeros((N, n)), np.where(flipped, t, beta_max) / steps)["margin"],
                         np.where(flipped, t, beta_max) / steps, interpolate=False)
    t = np.where(flipped & np.isfinite(t_fine) & (t_fine > 0), t_fine, t)
    # the progress: one attack per digit with α_i = t_i / steps, read at k_s = s · steps
    alpha = np.where(flipped, t, beta_max) / steps
    out = run(np.zeros((N, n)), alpha)
    beta = np.asarray(ks, np.float64)[None, :] * alpha[:, None]
    cmp = P.compare_fn(J, gz, out["d"], out["h_paper"], out["h_uniform"], beta)
    at = lambda key, j: _rel(cmp, key, j, flipped)  # noqa: E731
    by_s = []
    for j, (s, k) in enumerate(zip(s_grid, ks)):
        hat, fo, uni = at("err_hat", j), at("err_fo", j), at("err_uniform", j)
        rel_c = np.where(flipped[:, None], cmp["err_c"][:, j] / cmp["norm"][:, j, None], np.nan)
        mis = np.asarray(jax.vmap(P.margin)(out["z"][:, j], ys)) < 0
        by_s.append(dict(s=float(s), steps=int(k), rel_hat=_list(hat), rel_first_order=_list(fo),
                         ratio=_list(hat / fo), rel_uniform=_list(uni), ratio_uniform=_list(uni / fo),
                         rel_c=[_list(r) if f else None for r, f in zip(rel_c, flipped)],
                         cos_delta_gx=_list(np.where(flipped, cmp["cos_delta_gx"][:, j], np.nan)),
                         delta_norm=_list(np.where(flipped, cmp["norm"][:, j], np.nan)),
                         misclassified_at_s=float(np.mean(mis[flipped])) if flipped.any() else None))
    jm = int(np.argmax(s_grid))
    grow = lambda a: _list(np.where(flipped, a[:, jm] / a[:, j1], np.nan))  # noqa: E731
    saturation = dict(s_from=float(s_grid[j1]), s_to=float(s_grid[jm]), delta_growth=grow(cmp["norm"]),
                      hat_growth=grow(cmp["hat_norm"]), grad_growth=grow(out["gnorm"]))
    # the paper protocol: the steps-step attack at the documented β (checkpoint s = 1 of α = β / steps)
    a_p = cfg["beta"] / steps
    pout = run(np.zeros((N, n)), np.full(N, a_p))
    pc = P.compare_fn(J, gz, pout["d"], pout["h_paper"], pout["h_uniform"],
                      np.asarray(ks, np.float64)[None, :] * np.full((N, 1), a_p))
    ok = np.ones(N, bool)
    paper = dict(kappa=float(pc["err_hat"][:, j1].sum() / pc["norm"][:, j1].sum()),
                 kappa_first_order=float(pc["err_fo"][:, j1].sum() / pc["norm"][:, j1].sum()),
                 rel_hat=_list(_rel(pc, "err_hat", j1, ok)), rel_first_order=_list(_rel(pc, "err_fo", j1, ok)),
                 cos_delta_gx=_list(pc["cos_delta_gx"][:, j1]))
    c3 = dict(lo_cos_delta_gx=_list(pc["cos_delta_gx"][:, j1]), lo_cos_delta_v1=_list(pc["cos_delta_v1"][:, j1]),
              hi_cos_delta_gx=_list(cmp["cos_delta_gx"][:, jm]), hi_cos_delta_v1=_list(cmp["cos_delta_v1"][:, jm]),
              hi_keep=[bool(f) for f in flipped])
    prog = dict(beta_max=float(beta_max), budget_alpha=float(a_b), t_success=_list(np.where(flipped, t, np.nan)),
                status=[str(s) for s in status], n_flipped=int(flipped.sum()), n_never=int((status == "never").sum()),
                n_misclassified=int((status == "misclassified").sum()), by_s=by_s, saturation=saturation,
                c_grid=list(P.C_GRID))
    return dict(progress=prog, paper_protocol=paper, c3=c3)


def measure(model, variables, xs, ys, *, steps: int, s_grid: Sequence[float], beta_max: float, rounds: int,
            beta: float, chunk: int | None, gatings: Sequence[str] = GATINGS,
            f: Callable | None = None) -> dict:
    """Table 1's numbers of one network on the digits ``xs``, ``ys`` (see the module docstring):
    ``{"progress": {gating: ...}, "paper_protocol": {gating: ...}, "c3": {gating: ..., "cos_gx_v1_clean":
    [...]}}``, per-digit lists (``None``: a digit that does not enter). ``s_grid`` must contain 1."""
    if 1.0 not in [float(s) for s in s_grid]:
        raise ValueError(f"s_grid must contain 1 (the flip itself), got {s_grid!r}")
    arch = (type(model).__name__, repr(model))
    prep = _cached((arch, "prep"), lambda: make_prep_fn(model))
    J, z, gz = chunked(lambda xb, yb: prep(variables, xb, yb), np.asarray(xs), np.asarray(ys), chunk=chunk)
    ks = P.checkpoints(s_grid, steps)
    j1 = [float(s) for s in s_grid].index(1.0)
    cfg = dict(steps=steps, s_grid=[float(s) for s in s_grid], beta_max=beta_max, rounds=rounds, beta=beta)
    out: dict = {"progress": {}, "paper_protocol": {}, "c3": {}}
    for g in gatings:
        if f is None:
            jitted = _cached((arch, g, max(ks), ks), lambda g=g: P.scan_fn(
                g, max(ks), ks, apply=lambda v, x: logits_fn(model, v)(x)))
            fn = lambda *a, jitted=jitted: jitted(variables, *a)  # noqa: E731
        else:
            fn = P.scan_fn(g, max(ks), ks, f)
        r = _gating(fn, cfg, np.asarray(xs), np.asarray(ys), J, z, gz, chunk, ks, j1)
        for k in out:
            out[k][g] = r[k]
    out["c3"]["cos_gx_v1_clean"] = _list(_alignment(J, z, gz, ys))
    return out


def c3_turns(rec: dict, gating: str, max_cos: float) -> tuple[np.ndarray, int]:
    """``(t, n_digits)``: per eligible digit (``|cos(g_x, v₁)| < max_cos`` at ``x``, flipped within the
    budget, finite numbers) ``t = min(cos(δ*, g_x) − |cos(δ*, v₁)| at the small end, |cos(δ*, v₁)| −
    cos(δ*, g_x) at the large end)`` from a row's ``c3`` record; C.3 holds on a digit with margin ``M``
    when ``t ≥ M``. ``n_digits``: all digits recorded."""
    g = rec[gating]
    arr = lambda k: np.asarray([np.nan if v is None else v for v in g[k]], np.float64)  # noqa: E731
    align = np.asarray([np.nan if v is None else v for v in rec["cos_gx_v1_clean"]], np.float64)
    t = np.minimum(arr("lo_cos_delta_gx") - arr("lo_cos_delta_v1"), arr("hi_cos_delta_v1") - arr("hi_cos_delta_gx"))
    keep = (align < max_cos) & np.isfinite(t) & np.asarray(g["hi_keep"], bool)
    return t[keep], int(align.size)
