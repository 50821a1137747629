"""Theorem 6 measured directly (Fig. 5's extension): the curvature that training on ``x + δ``
adds to each weight layer.

Theorem 6 expands the loss at ``h + Δh``, ``Δh = Wᵀδ̂``, to second order: as a function of the
row ``w_i`` of ``W`` the adversarial example adds the curvature ``δ̂_i² H_h`` (``H_h = ∂²L/∂h∂hᵀ``
at the clean ``x``). For layer ``j`` of a deep network with input ``a_j`` and output
``h_j = Φ_j(a_j, W_j) + b_j`` the same term is ``½ Φ_j(Δa_j, W_j)ᵀ H_{h_j} Φ_j(Δa_j, W_j)`` with
``Δa_j = a_j(x + δ) - a_j(x)`` (``= δ`` for the first layer); its Hessian in ``W_j`` is
``G_j = Φ_{Δa}^* H_h Φ_{Δa}``, and the reported factor is its trace

    T_j(δ) = tr G_j = Σ_c ||Φ_{Δa_j}^*(J_{z,h_j}ᵀ r_c)||²,   H_z = Σ_c r_c r_cᵀ,

which for a dense layer is ``Σ_i Δa_i² tr H_h = ||Δa_j||² tr H_{h_j}`` — the sum over rows of the
trace of Theorem 6's ``δ̂_i² H_h``. ``H_h = J_{z,h}ᵀ H_z J_{z,h}`` is exact (almost everywhere)
for the piecewise-linear networks here (ReLU, max-pool, conv, dense above ``h``). Every layer is
obtained from ``C`` vector-Jacobian products and ``C`` weight gradients, without changing the
model's code (Flax method interceptors). ``T_j`` of the clean input itself (``Δa_j → a_j(x)``)
is vanilla training's curvature of the same rows, ``x_i² H_h``.

Beside it, :func:`summarize_sharpness` reads the ``λ_max`` recorded along training
(:class:`jaxdyn.training.callbacks.SharpnessTracker`). The words of Fig. 5's claims are in
:mod:`jaxdyn.experiments.fig5.rules`; this module returns numbers and decisions.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.analyses.metrics import LayerTest, paired_log_excess
from jaxdyn.analyses.instability import bootstrap_family
from jaxdyn.analyses.verdicts import Verdict, combine
from jaxdyn.attacks.multistep import pgd
from jaxdyn.core.losses import hessian_z
from jaxdyn.core.params import layer_paths

__all__ = ["layer_inputs", "layer_outputs", "row_curvature", "measure_fn", "summarize", "compare_networks", "verdict",
           "verdict_tests", "factor_log_ratios", "summarize_sharpness", "FamilyVerdict", "KINDS", "VERDICT_TESTS"]

#: the perturbations whose factor is reported: the ℓ∞ PGD δ, an isotropic random direction of the
#: same ℓ2 norm (``x + r`` clipped into [0, 1] as ``x + δ`` is; unclipped in earlier versions), and the
#: clean input itself (vanilla training's rows)
KINDS = ("adv", "random", "clean")


def _hits(context, index):
    return context.method_name == "__call__" and tuple(context.module.path) in index


def layer_inputs(model, variables, x, paths):
    """``(z, [a_j])``: the logits and the input of each layer in ``paths`` for one example ``x``
    (batch axis of one kept: ``a_j`` is what the layer receives)."""
    index, got = {p: i for i, p in enumerate(paths)}, {}

    def icpt(next_fun, args, kwargs, context):
        if _hits(context, index) and tuple(context.module.path) not in got:
            got[tuple(context.module.path)] = args[0]
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(icpt):
        z = model.apply(variables, x[None])[0]
    return z, [got[p] for p in paths]


def row_curvature(model, variables, x, y, das, paths) -> jax.Array:
    """``[K, L]``: ``T_j`` (module docstring) of layer ``j`` for each of ``K`` sets of layer-input
    changes ``das`` (a list over layers of ``[K, *a_j.shape]``), ``H_h`` at the clean ``x``."""
    index = {p: i for i, p in enumerate(paths)}

    def z_of(shifts):
        def icpt(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            return out + shifts[index[tuple(context.module.path)]] if _hits(context, index) else out

        with nn.intercept_methods(icpt):
            return model.apply(variables, x[None])[0]

    _, hs = layer_outputs(model, variables, x, paths)
    z, vjp = jax.vjp(z_of, [jnp.zeros_like(h) for h in hs])
    lam, V = jnp.linalg.eigh(hessian_z(z, y))
    R = (V * jnp.sqrt(jnp.maximum(lam, 0.0))[None, :]).T  # rows r_c: H_z = Σ_c r_c r_cᵀ
    us = jax.vmap(lambda r: vjp(r)[0])(R)  # per layer [C, *h_j.shape]

    mods = layer_modules(model, variables, x, paths)

    def weight_grads(da, u):  # Φ_{Δa_j}^* u_j for every layer j: the layer alone, applied to Δa_j
        out = []
        for j, p in enumerate(paths):
            node = variables["params"]
            for k in p:
                node = node[k]
            out.append(jnp.sum(jax.grad(lambda K: jnp.vdot(u[j], mods[j].apply(
                {"params": {**node, "kernel": K}}, da[j])))(node["kernel"]) ** 2))
        return jnp.stack(out)

    per_c = lambda da: jnp.sum(jax.vmap(lambda u: weight_grads(da, u))(us), axis=0)  # noqa: E731
    return jax.vmap(per_c)(das)


def layer_modules(model, variables, x, paths) -> list:
    """Unbound copies of the layers in ``paths`` (to apply one layer alone with its own params)."""
    index, got = {p: i for i, p in enumerate(paths)}, {}

    def icpt(next_fun, args, kwargs, context):
        if _hits(context, index) and tuple(context.module.path) not in got:
            got[tuple(context.module.path)] = context.module.clone(parent=None)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(icpt):
        jax.eval_shape(lambda v, t: model.apply(v, t[None]), variables, x)
    return [got[p] for p in paths]


def layer_outputs(model, variables, x, paths):
    """``(z, [h_j])``: the logits and each layer's output (one example, batch axis of one)."""
    index, got = {p: i for i, p in enumerate(paths)}, {}

    def icpt(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if _hits(context, index) and tuple(context.module.path) not in got:
            got[tuple(context.module.path)] = out
        return out

    with nn.intercept_methods(icpt):
        z = model.apply(variables, x[None])[0]
    return z, [got[p] for p in paths]


def measure_fn(model, variables, *, pgd_steps: int):
    """Jitted ``(variables, x [N,…], y [N], key, eps, alpha) -> {"adv", "random", "clean": [N, L],
    "delta_l2": [N]}``: ``T_j`` for the ℓ∞ PGD perturbation (random start, clipped to [0, 1]), for an
    isotropic Gaussian direction scaled to the PGD ``δ``'s ℓ2 norm (``x + r`` clipped into [0, 1]
    exactly as ``x + δ`` is), and for the clean rows. One compile per
    architecture (a standard and an adversarially trained network share it)."""
    paths = layer_paths(model, variables)

    def one(v, x, y, key, eps, alpha):
        f = lambda t: model.apply(v, t[None])[0]  # noqa: E731
        k1, k2 = jax.random.split(key)
        d = pgd(f, x, y, eps=eps, alpha=alpha, steps=pgd_steps, norm="linf", key=k1)
        r = jax.random.normal(k2, x.shape, x.dtype)
        r = jnp.clip(x + r * jnp.linalg.norm(d) / jnp.linalg.norm(r), 0.0, 1.0) - x  # clipped as δ is
        _, a0 = layer_inputs(model, v, x, paths)
        das = [[], [], a0]
        for i, p in enumerate((d, r)):
            das[i] = [a1 - a for a1, a in zip(layer_inputs(model, v, x + p, paths)[1], a0)]
        stacked = [jnp.stack([das[k][j] for k in range(3)]) for j in range(len(paths))]
        t = row_curvature(model, v, x, y, stacked, paths)
        return dict(adv=t[0], random=t[1], clean=t[2], delta_l2=jnp.linalg.norm(d))

    fn = jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0, None, None)))

    def call(variables, x, y, *, key, eps, alpha):
        dt = jax.tree.leaves(variables)[0].dtype
        keys = jax.random.split(key, len(x))
        out = fn(variables, jnp.asarray(x, dt), jnp.asarray(y), keys, jnp.asarray(eps, dt), jnp.asarray(alpha, dt))
        return dict(jax.tree.map(np.asarray, jax.device_get(out)), layers=["/".join(p) for p in paths])

    return call


def summarize(standard: dict, adversarial: dict) -> dict:
    """Per layer, on the same digits: the median ``T_j`` of each kind and network, and the paired
    comparisons (:func:`jaxdyn.analyses.metrics.paired_log_excess`) ``at_vs_vanilla`` (the adversarially
    trained network's ``T_j(δ)`` against the standard one's), ``adv_vs_random`` (on the
    adversarially trained network, ``δ`` against the random direction of its norm),
    ``adv_vs_random_standard`` and ``adv_vs_clean`` (both networks: ``T_j(δ)`` against the clean
    rows' ``T_j``, i.e. Theorem 6's extra curvature against vanilla training's own)."""
    med = lambda a: np.median(np.asarray(a, float), axis=0).tolist()  # noqa: E731
    out = {"layers": standard["layers"], "n_digits": int(len(standard["adv"])),
           "median": {f"{net}_{k}": med(r[k]) for net, r in (("standard", standard), ("adversarial", adversarial))
                      for k in KINDS},
           "at_vs_vanilla": paired_log_excess(adversarial["adv"], standard["adv"]),
           "adv_vs_random": paired_log_excess(adversarial["adv"], adversarial["random"]),
           "adv_vs_random_standard": paired_log_excess(standard["adv"], standard["random"]),
           "adv_vs_clean": {net: paired_log_excess(r["adv"], r["clean"])
                            for net, r in (("standard", standard), ("adversarial", adversarial))}}
    out["delta_l2_median"] = {"standard": float(np.median(standard["delta_l2"])),
                              "adversarial": float(np.median(adversarial["delta_l2"]))}
    return out


_FNS: dict = {}


def compare_networks(model, v_std, v_adv, x_pool, y_pool, *, n: int, pgd_cfg: dict, seed: int = 0) -> dict:
    """:func:`summarize` of :func:`measure_fn` on a standard (``v_std``) and an adversarially
    trained (``v_adv``) network of one architecture, on the first ``n`` pool digits that both
    classify correctly (10-class heads), with the digits' indices and the time taken."""
    t0, c0 = time.perf_counter(), time.process_time()
    ok = np.ones(len(x_pool), bool)
    for v in (v_std, v_adv):
        z = np.asarray(jax.jit(model.apply)(v, jnp.asarray(x_pool, jax.tree.leaves(v)[0].dtype)))
        ok &= z.argmax(-1) == np.asarray(y_pool)
    idx = np.flatnonzero(ok)[:n]
    if not len(idx):
        raise ValueError("no pool digit is classified correctly by both networks")
    ckey = (model, int(pgd_cfg["steps"]))
    if ckey not in _FNS:  # one compile per architecture: every seed's networks share it
        _FNS[ckey] = measure_fn(model, v_std, pgd_steps=pgd_cfg["steps"])
    fn = _FNS[ckey]
    kw = dict(key=jax.random.key(seed + 7), eps=pgd_cfg["eps"], alpha=pgd_cfg["alpha"])
    res = {r: fn(v, np.asarray(x_pool)[idx], np.asarray(y_pool)[idx], **kw) for r, v in (("standard", v_std),
                                                                                       ("adversarial", v_adv))}
    per_digit = {r: {k: np.asarray(v[k]).tolist() for k in KINDS} for r, v in res.items()}
    return dict(summarize(res["standard"], res["adversarial"]), digits=idx.tolist(), per_digit=per_digit,
                time_s=dict(wall=time.perf_counter() - t0, cpu=time.process_time() - c0))


#: the paired comparisons Theorem 6's verdict rests on, per network and layer
VERDICT_TESTS = ("at_vs_vanilla", "adv_vs_random")


class FamilyVerdict(NamedTuple):
    """A family of tests decided together: the combined verdict and the counts behind it."""

    verdict: Verdict
    n_hold: int
    n_not_hold: int
    n_tests: int


def _log_ratio(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.log(a) - np.log(b)
    d[~(np.isfinite(d) & (a > 0) & (b > 0))] = np.nan
    return d


def factor_log_ratios(result: dict, comparison: str) -> np.ndarray:
    """``[N, L]`` per digit and layer, from one seed's :func:`compare_networks` (its ``per_digit``):
    ``at_vs_vanilla`` ``log T_j(δ)`` of the adversarially trained network minus the standard one's
    (same digits, each network's own δ); ``adv_vs_random`` on the adversarially trained network,
    ``log T_j(δ) − log T_j(r)``; NaN where a factor is not positive and finite."""
    pd = result["per_digit"]
    if comparison == "at_vs_vanilla":
        return _log_ratio(pd["adversarial"]["adv"], pd["standard"]["adv"])
    if comparison == "adv_vs_random":
        return _log_ratio(pd["adversarial"]["adv"], pd["adversarial"]["random"])
    raise ValueError(f"comparison must be one of {VERDICT_TESTS}, got {comparison!r}")


def verdict_tests(runs: dict) -> list[tuple[LayerTest, list]]:
    """The tests of Theorem 6's family: per network (``runs``: name -> list over its testable seeds of
    :func:`compare_networks` results), comparison of :data:`VERDICT_TESTS` and layer, ``(LayerTest,
    groups)`` with ``groups`` the per-seed per-digit :func:`factor_log_ratios` (for
    :func:`jaxdyn.analyses.instability.bootstrap_family`); a network without a testable seed gives tests
    without digits (not testable)."""
    out = []
    for m, rs in runs.items():
        n_layers = max((len(r["layers"]) for r in rs), default=0)
        for k in VERDICT_TESTS:
            lr = [factor_log_ratios(r, k) for r in rs]
            out += [(LayerTest(m, k, j), [a[:, j] for a in lr]) for j in range(n_layers)]
    return out


def verdict(runs: dict, *, alpha: float = 0.05, seed: int = 0) -> tuple[FamilyVerdict, list[dict]]:
    """The family of :func:`verdict_tests` decided by :func:`jaxdyn.analyses.instability.bootstrap_family`
    (per test the median per-digit log-ratio over seeds and digits, hierarchical bootstrap, Holm over
    the family) and combined by :func:`jaxdyn.analyses.verdicts.combine`: holds when every test holds (the
    AT network's ``T_j(δ)`` significantly above the vanilla network's and the random direction's),
    does not hold when every one is a significant deficit, holds partly when some hold and the rest do
    not, inconclusive otherwise, not testable with no digit. Returns ``(FamilyVerdict, records)``."""
    recs = bootstrap_family(verdict_tests(runs), alpha=alpha, seed=seed)
    vs = [Verdict(r["verdict"]) for r in recs]
    n = sum(v != Verdict.NOT_TESTABLE for v in vs)
    return FamilyVerdict(combine(vs), vs.count(Verdict.HOLDS), vs.count(Verdict.DOES_NOT_HOLD), n), recs


# --- λ_max along training ------------------------------------------------------------------


def summarize_sharpness(tracks: dict) -> dict:
    """Per architecture (``tracks``: ``{model: {"standard": records, "adversarial": records}}`` of
    :class:`jaxdyn.training.callbacks.SharpnessTracker`): the end-of-training ``λ_max`` of each run's
    own training loss (clean for standard, adversarial for adversarial training), their ratio
    adversarial / standard at the end and its mean along training."""
    out = {}
    for m, t in tracks.items():
        van, adv = t.get("standard") or [], t.get("adversarial") or []
        if not van or not adv:
            continue
        lv, la = van[-1]["lambda_clean"], adv[-1]["lambda_adv"]
        out[m] = {"lambda_standard_end": lv, "lambda_adversarial_end": la, "ratio_end": la / lv if lv else float("nan"),
                  "mean_ratio_along": float(np.mean([a["lambda_adv"] / v["lambda_clean"]
                                                     for v, a in zip(van, adv) if v["lambda_clean"]]))}
    return out
