"""Figure 5's measurement (conclusion C.8): the per-layer instability of the weight gradient on
clean digits, on their adversarial examples and on two controls.

``Δ_j`` (:func:`jaxdyn.analyses.metrics.weight_gradient_instability`) grows with the loss level of the
input (for a confident softmax ``Δ_head ≈ ||h||²(1 - p_y)``), so any perturbation that raises the
loss raises it. ``Δ^(adv) > Δ^(ori)`` therefore says nothing about *adversarial* examples unless
``Δ^(adv)`` also exceeds

* **matched loss** — ``Δ^(ori)`` on other clean digits whose clean loss is closest to the loss of
  the adversarial example (:func:`match_by_loss`), and
* **random direction** — ``Δ`` on ``x + r`` with ``r`` an isotropic Gaussian direction scaled to the
  ℓ2 norm of ``δ``, ``x + r`` clipped into [0, 1] as ``x + δ`` is (:func:`random_direction`; in
  784 dimensions nearly orthogonal to ``∇L``).

Beside them, labelled as what it is, the **gradient step** (``grad_step``; called
``random_perturbation`` in results of earlier versions): a perturbation of the ℓ2 norm of ``δ`` that
raises the loss by the same amount, a random direction tilted towards the loss gradient until the
loss matches (:func:`random_loss_matched`), clipped like ``δ``. PGD's ``δ`` raises the loss more
than an ℓ2 step of its norm, so the tilt usually ends at ``θ = π/2`` (median sin θ 1 measured):
the ℓ2 gradient step, a one-step ℓ2 attack, adversarial itself; it is reported, not a control.

:func:`measure_fn` computes the five ``[N, L]`` arrays (``ori``, ``adv``, ``matched_loss``,
``random_direction``, ``grad_step``) with one compiled instability graph per architecture;
:func:`summarize_instability` gives the per-layer means and the paired Wilcoxon tests of one
network (:func:`jaxdyn.analyses.metrics.paired_log_excess`, descriptive). The verdicts rest on
:func:`control_tests` (per network, control and layer, the per-seed arrays of per-digit
:func:`log_ratios`) decided by :func:`bootstrap_family`: the median over digits and seeds with a
hierarchical bootstrap interval and bootstrap p-values each way (:func:`bootstrap_test`), Holm over
the family.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._internal.sharding import chunked
from jaxdyn.analyses.metrics import LayerTest, paired_log_excess, weight_gradient_instability
from jaxdyn.analyses.stats import finite_median as _median
from jaxdyn.analyses.verdicts import bootstrap_draws, holm_verdicts
from jaxdyn.attacks.multistep import pgd
from jaxdyn.core.losses import loss
from jaxdyn.core.params import layer_paths

__all__ = ["random_loss_matched", "random_direction", "match_by_loss", "measure_fn", "instability",
           "summarize_instability", "read_controls", "control_tests", "bootstrap_test", "bootstrap_family",
           "log_ratios", "N_RESAMPLES", "MIN_DIGITS", "MATCH_TOL", "CONTROLS", "VERDICT_CONTROLS",
           "LEGACY_CONTROLS"]

#: a clean digit matches an adversarial example when their losses differ by at most this factor
MATCH_TOL = 1.25
#: the comparisons with Δ^(adv), in the order of the JSON and the plot
CONTROLS = ("matched_loss", "random_direction", "grad_step")
#: the non-adversarial controls C.8's verdict rests on (``grad_step`` is a one-step attack)
VERDICT_CONTROLS = ("matched_loss", "random_direction")
#: keys of results written by earlier versions -> today's (the loss-matched tilt was "random_perturbation")
LEGACY_CONTROLS = {"random_perturbation": "grad_step"}
#: resamples of the hierarchical bootstrap behind each per-layer test: its smallest p-value
#: 1/(B + 1) = 2e-4 stays below Holm's first threshold for up to 250 one-sided tests (0.05/250)
N_RESAMPLES = 5000
#: a per-layer test needs this many digits (over its seeds); fewer: not testable
MIN_DIGITS = 5
_CLIP = (0.0, 1.0)


def _clipped(x, d, clip):
    return d if clip is None else jnp.clip(x + d, *clip) - x


def random_loss_matched(loss_fn, x, delta, key, *, iters: int = 30, clip=_CLIP) -> dict:
    """A perturbation with the ℓ2 norm of ``delta`` that raises the loss as much, as random as that
    allows (Fig. 5's ``grad_step``: at ``θ = π/2`` the ℓ2 gradient step, a one-step attack).

    ``d(θ) = ||δ|| (cos θ r̂ + sin θ ĝ)`` with ``ĝ`` the unit loss gradient at ``x`` and ``r̂`` a
    unit Gaussian direction orthogonal to it; ``θ ∈ [0, π/2]`` is set by bisection so that
    ``loss_fn(clip(x + d)) = loss_fn(x + δ)`` (the invariant ``L(θ_lo) < target ≤ L(θ_hi)`` finds a
    crossing whenever one exists). ``θ = 0`` (pure random) when the random direction already
    reaches the target; ``θ = π/2`` (the ℓ2 gradient step) when even that falls short (``reached``
    false). ``x + d`` is clipped into ``clip`` (PGD's image range, as ``x + δ``; ``None``: not
    clipped), so the returned perturbation's norm is at most ``||δ||``.

    Returns ``{"perturbation" (clipped), "theta", "sin_theta" (the gradient share), "cos_grad"
    (cosine of the perturbation with ``∇L``), "loss", "target", "reached" (|loss - target| ≤ 1e-3
    target)}``.
    """
    g = jax.grad(loss_fn)(x)
    gh = g / jnp.linalg.norm(g)
    r = jax.random.normal(key, x.shape, x.dtype)
    r = r - jnp.vdot(r, gh) * gh
    rh = r / jnp.linalg.norm(r)
    n = jnp.linalg.norm(delta)
    target = loss_fn(x + delta)

    def d(th):
        return n * (jnp.cos(th) * rh + jnp.sin(th) * gh)

    def L(th):
        return loss_fn(x + _clipped(x, d(th), clip))

    def body(_, c):
        lo, hi = c
        mid = 0.5 * (lo + hi)
        below = L(mid) < target
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    half_pi = jnp.asarray(jnp.pi / 2, x.dtype)
    _, hi = jax.lax.fori_loop(0, iters, body, (jnp.zeros((), x.dtype), half_pi))
    th = jnp.where(L(0.0) >= target, 0.0, jnp.where(L(half_pi) < target, half_pi, hi))
    lt, p = L(th), _clipped(x, d(th), clip)
    return dict(perturbation=p, theta=th, sin_theta=jnp.sin(th), cos_grad=jnp.vdot(p, gh) / jnp.linalg.norm(p),
                loss=lt, target=target, reached=jnp.abs(lt - target) <= 1e-3 * jnp.abs(target))


def random_direction(x, delta, key, *, clip=_CLIP):
    """Fig. 5's random control: an isotropic Gaussian direction scaled to the ℓ2 norm of ``delta``,
    ``x + r`` clipped into ``clip`` exactly as ``x + δ`` is (``None``: not clipped). Returns the
    (clipped) perturbation ``r``."""
    r = jax.random.normal(key, x.shape, x.dtype)
    return _clipped(x, r * (jnp.linalg.norm(delta) / jnp.linalg.norm(r)), clip)


def match_by_loss(target_loss, pool_loss, *, tol: float = MATCH_TOL) -> dict:
    """For each target loss the pool entry with the closest loss (in log; with replacement).

    Returns ``{"index": [N], "loss": [N] (the pool's), "ratio": [N] (pool / target), "matched": [N]
    (ratio within [1/tol, tol])}`` as NumPy arrays."""
    t = np.asarray(target_loss, np.float64)
    p = np.asarray(pool_loss, np.float64)
    lt, lp = np.log(np.maximum(t, 1e-300)), np.log(np.maximum(p, 1e-300))
    idx = np.argmin(np.abs(lp[None, :] - lt[:, None]), axis=1)
    ratio = p[idx] / t
    return dict(index=idx, loss=p[idx], ratio=ratio, matched=(ratio <= tol) & (ratio >= 1 / tol))


def measure_fn(model, variables, *, pgd_steps: int, normalizer: str = "fan_in"):
    """A function ``(variables, x, y, pool_x, pool_y, *, eta, pgd_cfg, key, chunk=None) -> dict``
    giving, per digit ``x_i`` and layer ``j``, ``Δ_j`` on ``x_i`` (``ori``), on ``x_i + δ_i``
    (``adv``, ℓ∞ PGD, random start, clipped to [0, 1]), on the clean pool digit matched in loss to
    ``x_i + δ_i`` (``matched_loss``), on ``x_i + r_i`` (``random_direction``,
    :func:`random_direction`) and on ``x_i + d_i`` (``grad_step``, :func:`random_loss_matched`),
    with the losses, the match and the controls' diagnostics (``cos_*_grad``: cosine with ``∇L``
    at ``x_i``; ``random_l2_ratio``: ``||r_i|| / ||δ_i||`` after the clip).

    Compiled once per architecture (``eta``, ε, α traced): the standard and the adversarially
    trained network share it; ``chunk`` bounds the rows per call of the instability graph."""
    paths = layer_paths(model, variables)

    def f_of(v):
        return lambda xx: model.apply(v, xx[None])[0]

    def perturb(v, x, y, key_data, eps, alpha):
        f = f_of(v)

        def one(xi, yi, k):
            d = pgd(f, xi, yi, eps=eps, alpha=alpha, steps=pgd_steps, norm="linf", key=k)
            lf = lambda xx: loss(f(xx), yi)  # noqa: E731
            rc = random_loss_matched(lf, xi, d, jax.random.fold_in(k, 1))
            r = random_direction(xi, d, jax.random.fold_in(k, 2))
            g = jax.grad(lf)(xi)
            cos = lambda a, b: jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))  # noqa: E731
            return dict(delta=d, control=rc["perturbation"], random=r, loss_clean=lf(xi), loss_adv=rc["target"],
                        loss_control=rc["loss"], gradient_share=rc["sin_theta"], reached=rc["reached"],
                        cos_control_adv=cos(rc["perturbation"], d), cos_grad_step_grad=rc["cos_grad"],
                        loss_random=lf(xi + r), cos_random_grad=cos(r, g), cos_random_adv=cos(r, d),
                        random_l2_ratio=jnp.linalg.norm(r) / jnp.linalg.norm(d),
                        delta_linf=jnp.max(jnp.abs(d)), delta_l2=jnp.linalg.norm(d))

        return jax.vmap(one)(x, y, jax.random.wrap_key_data(key_data))

    def rows(v, x, y, eta):
        def inst(xx, yy):
            return weight_gradient_instability(lambda w: loss(model.apply(w, xx[None])[0], yy), v, paths,
                                               eta=eta, normalizer=normalizer)

        # lax.map, not vmap: under vmap the per-row moved kernels make every convolution a grouped
        # one, which XLA:CPU runs ~4x slower than the row loop (same numbers to rounding)
        return jax.lax.map(lambda a: inst(*a), (x, y))

    jperturb, jrows = jax.jit(perturb), jax.jit(rows)
    jloss = jax.jit(lambda v, x, y: jax.vmap(lambda xi, yi: loss(f_of(v)(xi), yi))(x, y))

    def call(variables, x, y, pool_x, pool_y, *, eta, pgd_cfg, key, chunk=None):
        if pgd_cfg["steps"] != pgd_steps:
            raise ValueError(f"this function was built for {pgd_steps} PGD steps, got {pgd_cfg['steps']}")
        dt = jax.tree.leaves(variables)[0].dtype
        x, y = jnp.asarray(x, dt), jnp.asarray(y)
        keys = jax.random.key_data(jax.random.split(key, len(x)))
        p = jax.device_get(jperturb(variables, x, y, keys, jnp.asarray(pgd_cfg["eps"], dt),
                                    jnp.asarray(pgd_cfg["alpha"], dt)))
        pool_loss = np.asarray(jloss(variables, jnp.asarray(pool_x, dt), jnp.asarray(pool_y)))
        m = match_by_loss(p["loss_adv"], pool_loss)
        xm, ym = np.asarray(pool_x)[m["index"]], np.asarray(pool_y)[m["index"]]
        x0 = np.asarray(x)
        xs = np.concatenate([x0, x0 + p["delta"], xm, x0 + p["random"], x0 + p["control"]])
        ys = np.concatenate([np.asarray(y)] * 2 + [ym] + [np.asarray(y)] * 2)
        e = jnp.asarray(eta, dt)
        out = chunked(lambda a, b: jrows(variables, jnp.asarray(a, dt), jnp.asarray(b), e), xs, ys, chunk=chunk)
        ori, adv, mat, ran, grd = np.split(np.asarray(out), 5)
        diag = {k: np.asarray(p[k]) for k in p if k not in ("delta", "control", "random")}
        return {"layers": ["/".join(q) for q in paths], "ori": ori, "adv": adv, "matched_loss": mat,
                "random_direction": ran, "grad_step": grd, **diag, "loss_matched": m["loss"],
                "match_ratio": m["ratio"], "matched": m["matched"], "match_index": m["index"]}

    return call


def instability(model, variables, x, y, pool_x, pool_y, *, eta, pgd_cfg: dict, key,
                normalizer: str = "fan_in", chunk=None) -> dict:
    """:func:`measure_fn` built and called once. ``x``: ``[N, 28, 28, 1]``, ``y``: ``[N]``;
    ``pool_x``, ``pool_y``: clean digits to match in loss. Returns ``{"layers", "ori", "adv",
    "matched_loss", "random_direction", "grad_step"}`` (``[N, L]``) and per-digit diagnostics (``[N]``)."""
    fn = measure_fn(model, variables, pgd_steps=pgd_cfg["steps"], normalizer=normalizer)
    return fn(variables, x, y, pool_x, pool_y, eta=eta, pgd_cfg=pgd_cfg, key=key, chunk=chunk)


def summarize_instability(res: dict) -> dict:
    """Per-layer means of ``Δ^(ori)`` and ``Δ^(adv)`` (the paper's bars), their ratio and count,
    and ``controls``: per control the per-layer paired comparison of ``Δ^(adv)`` with it
    (:func:`jaxdyn.analyses.metrics.paired_log_excess`; the matched-loss control on the digits matched
    within :data:`MATCH_TOL`, the gradient step on those whose loss was reached, the random
    direction on all), with the means and the diagnostics; ``paper_protocol``: the same test of
    ``Δ^(adv)`` against ``Δ^(ori)``."""
    ori, adv = np.asarray(res["ori"], float), np.asarray(res["adv"], float)
    mo, ma = np.nanmean(ori, axis=0), np.nanmean(adv, axis=0)
    out = {"layers": res["layers"], "mean_ori": mo.tolist(), "mean_adv": ma.tolist(), "ratio": (ma / mo).tolist(),
           "layers_adv_greater": int(np.sum(ma > mo)), "n_layers": int(len(mo)),
           "frac_samples_adv_greater": np.nanmean(adv > ori, axis=0).tolist(),
           "paper_protocol": paired_log_excess(adv, ori)}
    if "matched_loss" not in res:
        return out
    n = len(ori)
    masks = {"matched_loss": np.asarray(res["matched"], bool), "grad_step": np.asarray(res["reached"], bool),
             "random_direction": np.ones(n, bool)}
    out["controls"] = {}
    for c in CONTROLS:
        arr = np.asarray(res[c], float)
        out["controls"][c] = dict(paired_log_excess(adv, arr, mask=masks[c]), mean=np.nanmean(arr, axis=0).tolist(),
                                  n_pairs=int(masks[c].sum()))
    matched_index = np.asarray(res["match_index"])[masks["matched_loss"]]
    out["controls"]["matched_loss"].update(median_loss_ratio=_median(res["match_ratio"]),
                                           n_distinct=int(len(set(matched_index.tolist()))))
    out["controls"]["grad_step"].update(
        median_gradient_share=_median(res["gradient_share"]), median_cos_with_adv=_median(res["cos_control_adv"]),
        median_cos_with_grad=_median(res["cos_grad_step_grad"]), kind="one-step ℓ2 attack (loss-matched tilt)")
    out["controls"]["random_direction"].update(
        median_cos_with_grad=_median(res["cos_random_grad"]), median_cos_with_adv=_median(res["cos_random_adv"]),
        median_l2_ratio=_median(res["random_l2_ratio"]), clipped=True)
    out["losses"] = {k: _median(res[k]) for k in ("loss_clean", "loss_adv", "loss_matched", "loss_control",
                                                  "loss_random")}
    out["delta_l2_median"] = _median(res["delta_l2"])
    return out


def read_controls(summary: dict) -> dict:
    """The ``controls`` of a :func:`summarize_instability` summary under today's keys: results written by
    earlier versions name the gradient step ``random_perturbation`` (:data:`LEGACY_CONTROLS`) and
    have no ``random_direction``, which then stays absent."""
    ctl = dict(summary.get("controls") or {})
    for old, new in LEGACY_CONTROLS.items():
        if old in ctl and new not in ctl:
            ctl[new] = ctl.pop(old)
    return ctl


def _draws(gs: list, n_resamples: int, seed: int) -> np.ndarray:
    """The bootstrap medians of :func:`jaxdyn.analyses.verdicts.hierarchical_bootstrap` (the same scheme and,
    for the same ``seed``, the same draws): networks with replacement, then digits within each."""
    return np.nanmedian(bootstrap_draws(gs, n_resamples=n_resamples, seed=seed), axis=1)


def bootstrap_test(groups, *, n_resamples: int = N_RESAMPLES, level: float = 0.95, seed: int = 0,
                   min_digits: int = MIN_DIGITS) -> dict:
    """One test of "the median per-digit value lies above 0" (a log-ratio: above ×1) over the networks
    of ``groups`` (one 1-D array of per-digit values per network): the median of the pooled finite
    values, its hierarchical bootstrap percentile interval (networks, then digits) and the bootstrap
    p-values of both one-sided hypotheses, ``p_greater = (1 + #{median* ≤ 0}) / (B + 1)`` and
    ``p_less = (1 + #{median* ≥ 0}) / (B + 1)``. Fewer than ``min_digits`` finite values: NaN
    (not testable: a percentile interval over a handful of digits means nothing)."""
    gs = [a[np.isfinite(a)] for a in (np.asarray(g, np.float64).ravel() for g in groups)]
    gs = [g for g in gs if g.size]
    n = sum(g.size for g in gs)
    nan = float("nan")
    if n < min_digits:
        return dict(value=nan, ci=[nan, nan], p_greater=nan, p_less=nan, n_digits=n, n_seeds=len(gs))
    boot = _draws(gs, n_resamples, seed)
    a = (1 - level) / 2
    lo, hi = np.quantile(boot, [a, 1 - a])
    b = n_resamples + 1
    return dict(value=float(np.median(np.concatenate(gs))), ci=[float(lo), float(hi)],
                p_greater=float((1 + np.sum(boot <= 0)) / b), p_less=float((1 + np.sum(boot >= 0)) / b),
                n_digits=n, n_seeds=len(gs))


def bootstrap_family(tests: Sequence[tuple[LayerTest, list]], *, alpha: float = 0.05, seed: int = 0,
                     n_resamples: int = N_RESAMPLES) -> list[dict]:
    """Per test (``(LayerTest, groups)``, :func:`bootstrap_test`), its record ``{network, comparison,
    layer (1-based), value, ci, p_greater, p_less, n_digits, n_seeds, verdict}``, the verdict after
    Holm over all ``2k`` one-sided p-values of the family (:func:`jaxdyn.analyses.verdicts.holm_verdicts`):
    holds when the excess (value > 0) is significant, does not hold when the deficit is, inconclusive
    otherwise, not testable without enough digits."""
    recs = [dict(network=t.network, comparison=t.comparison, layer=t.layer + 1,
                 **bootstrap_test(g, seed=seed, n_resamples=n_resamples)) for t, g in tests]
    vs = holm_verdicts([r["p_greater"] for r in recs], [r["p_less"] for r in recs], alpha=alpha)
    return [dict(r, verdict=str(v)) for r, v in zip(recs, vs)]


def log_ratios(res: dict, against: str) -> np.ndarray:
    """``[N, L]``: per digit and layer ``log Δ^(adv) − log Δ^(against)`` of one network's measurement
    (:func:`measure_fn`, as stored), ``against`` one of ``ori`` and :data:`CONTROLS`; NaN where a
    value is not positive and finite, and on the digits a control does not cover (the matched-loss
    control: not matched within :data:`MATCH_TOL`; the gradient step: loss not reached)."""
    adv, b = np.asarray(res["adv"], np.float64), np.asarray(res[against], np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.log(adv) - np.log(b)
    d[~(np.isfinite(d) & (adv > 0) & (b > 0))] = np.nan
    mask = {"matched_loss": "matched", "grad_step": "reached"}.get(against)
    if mask is not None and res.get(mask) is not None:
        d[~np.asarray(res[mask], bool)] = np.nan
    return d


def control_tests(runs: dict, comparisons: Sequence[str] = VERDICT_CONTROLS) -> list[tuple[LayerTest, list]]:
    """The tests of C.8's family: per network (``runs``: name -> list over its testable seeds of
    stored measurements, :func:`measure_fn`), comparison and layer, ``(LayerTest, groups)`` with
    ``groups`` the per-seed arrays of per-digit :func:`log_ratios` (for :func:`bootstrap_family`).
    A network without a testable seed gives tests without digits (not testable)."""
    out = []
    for m, rs in runs.items():
        n_layers = max((len(r["layers"]) for r in rs), default=0)
        for c in comparisons:
            lr = [log_ratios(r, c) for r in rs if c in r]
            out += [(LayerTest(m, c, j), [a[:, j] for a in lr]) for j in range(n_layers)]
    return out
