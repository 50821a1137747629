"""Appendix D/J and Figure 1's measurements: Theorem 2's prediction against few-step PGD of every
variant (norm, ε, α, clip; frozen and free gating) beside the ``g_x``-only baseline, the gate flips
and λ₁ change an attack causes (Appendix J), and Figure 1's arrays.

* :data:`PGD_VARIANTS`, :data:`FIG1_VARIANTS`, :data:`FIG1_MODEL` — the attacks of Appendix D and
  the ones Figure 1 draws;
* :func:`make_pgd_fn`, :func:`make_raw_free_fn`, :func:`make_fig1_fn` — the jitted per-batch
  measurements (one compile per gating for every PGD variant);
* :func:`match_variants`, :func:`match_eps_grid`, :func:`raw_free_rows`, :func:`fig1_raw` — one
  network's rows over a digit set (means over digits, chunked, and the per-digit values in ``digits``),
  records :class:`GatingMatch`, :class:`EpsMatch`, :class:`RawFlips`; :func:`summarize_matching` —
  ranges over networks; :func:`digit_ratio`, :func:`digit_split` — the per-digit statistics' inputs;
* :func:`flip_rate`, :func:`attack_row` — the attack regime (Appendix J's verdict β).
"""

from __future__ import annotations

import functools
import math
from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._internal.sharding import chunked
from jaxdyn.analyses.metrics import cosine
from jaxdyn.attacks.multistep import attack
from jaxdyn.attacks.variants import variant, variant_attack
from jaxdyn.core.gating import flip_fraction, input_jacobian
from jaxdyn.core.models import logits_fn
from jaxdyn.core.theory import match_beta, predict, prepare, structured_eigenpairs, theorem2

__all__ = ["PGD_VARIANTS", "FIG1_VARIANTS", "FIG1_MODEL", "GATINGS", "GatingMatch", "EpsMatch", "RawFlips",
           "flip_rate", "ATTACK_FLIPS", "attack_row", "appendix_j", "make_pgd_fn", "make_raw_free_fn", "make_fig1_fn",
           "pgd_fns", "match_variants", "match_eps_grid", "raw_free_rows", "fig1_raw", "summarize_matching",
           "PGD_DIGIT_KEYS", "RAW_DIGIT_KEYS", "digit_split", "digit_ratio"]

#: (name, norm, eps, clip, alpha-rule) of the Appendix-D attacks; ``"ball"``: α = ε/steps,
#: ``"madry"``: α = 2.5 ε/steps.
PGD_VARIANTS = (
    ("l2 eps=0.1", "l2", 0.1, None, "ball"), ("l2 eps=1", "l2", 1.0, None, "ball"),
    ("l2 eps=1 clip", "l2", 1.0, (0.0, 1.0), "ball"), ("l2 eps=1 madry", "l2", 1.0, (0.0, 1.0), "madry"),
    ("linf eps=0.01", "linf", 0.01, None, "ball"), ("linf eps=0.1", "linf", 0.1, None, "ball"),
    ("linf eps=0.1 clip", "linf", 0.1, (0.0, 1.0), "ball"), ("linf eps=0.1 madry", "linf", 0.1, (0.0, 1.0), "madry"),
)
#: Figure 1's PGD columns (key in the JSON -> Appendix-D attack), a small and a typical budget each
FIG1_VARIANTS = {"l2_small": "l2 eps=0.1", "l2": "l2 eps=1", "linf_small": "linf eps=0.01", "linf": "linf eps=0.1"}
#: the network whose arrays Figure 1 draws
FIG1_MODEL = "mlp3"
#: the gatings every Appendix-D attack runs under (A2, and the true network)
GATINGS = ("frozen", "free")


class GatingMatch(NamedTuple):
    """One Appendix-D attack under one gating, means (and maxima) over digits."""

    one_minus_cos: float
    one_minus_cos_first_order: float
    flip_fraction: float
    eig_rel_change: float
    mean_beta: float
    mean_beta_lambda1: float
    one_minus_cos_max: float
    eig_rel_change_max: float
    digits: dict | None = None


class EpsMatch(NamedTuple):
    """One unclipped PGD attack (α = ε/steps) of the ε grid under one gating, means over digits."""

    norm: str
    eps: float
    gating: str
    steps: int
    one_minus_cos: float
    one_minus_cos_first_order: float
    flip_fraction: float
    label_flips: float
    digits: dict | None = None


class RawFlips(NamedTuple):
    """Appendix J for the free-gating raw attack at one β, means (and a maximum) over digits."""

    beta: float
    steps: int
    flip_fraction: float
    eig_rel_change: float
    eig_rel_change_max: float
    mean_delta_norm: float
    label_flips: float
    digits: dict | None = None


def appendix_j(model, variables, f, x, delta, J, hbar_z) -> dict:
    """Appendix J at ``x + δ``: the fraction of flipped ReLU gates and ``|Δλ₁| / λ₁`` of ``H̄_x``
    with ``W̃ = Jᵀ`` at ``x + δ`` instead of ``x`` (same ``H̄_z``); ``lam0`` the clean λ₁."""
    lam0, lam1 = (structured_eigenpairs(Jx, hbar_z)[0][0] for Jx in (J, input_jacobian(f, x + delta)))
    return dict(flip_fraction=flip_fraction(model.apply, variables, x, x + delta),
                eig_rel_change=jnp.abs(lam1 - lam0) / lam0, lam0=lam0)


@functools.lru_cache(maxsize=32)
def make_pgd_fn(model, *, steps: int, gating: str):
    """Jitted ``(variables, x, y, v) -> dict``: one Appendix-D attack (``v``:
    :func:`jaxdyn.attacks.variants.variant`, traced: one compile per ``gating`` for every norm, ε, α
    and clip) and its comparison with Theorem 2 (``δ̂`` with the attack's ``H̄_z``, β matched to the
    attack's norm; the target is ``δ`` for ℓ2, the effective component for ℓ∞) and with the
    ``g_x``-only baseline ``1 - cos(g_x, ·)``, plus the Appendix-J gate flips and λ₁ change at its
    endpoint. Cached per ``(model, steps, gating)`` (equal modules hash equal): the seeds of one
    architecture share one compile, as do the :func:`make_raw_free_fn` and :func:`make_fig1_fn` ones."""

    def one(variables, x, y, v):
        f = logits_fn(model, variables)
        res = variant_attack(f, x, y, v, steps=steps, gating=gating)
        target = jnp.where(v["l2"], res.delta, res.delta_effective)
        J, _, gz = prepare(f, x, y)
        beta = match_beta(J, gz, res.hbar_z, jnp.linalg.norm(target))
        dh = theorem2(J, gz, res.hbar_z, beta).delta.reshape(x.shape)
        j = appendix_j(model, variables, f, x, res.delta, J, res.hbar_z)
        return dict(
            one_minus_cos=1.0 - cosine(dh, target), one_minus_cos_first_order=1.0 - cosine(J.T @ gz, target),
            beta=beta, beta_lambda1=beta * j.pop("lam0"), **j, delta=res.delta, target=target, delta_hat=dh,
            success_step=res.success_step)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None)))


@functools.lru_cache(maxsize=32)
def make_raw_free_fn(model, *, steps: int):
    """Jitted ``(variables, x, y, beta) -> dict``: Appendix J for the free-gating raw attack (and
    its ``success_step``, :func:`flip_rate`)."""

    def one(variables, x, y, beta):
        f = logits_fn(model, variables)
        res = attack(f, x, y, steps=steps, beta=beta, norm="raw", gating="free")
        j = appendix_j(model, variables, f, x, res.delta, input_jacobian(f, x), res.hbar_z)
        return dict(flip_fraction=j["flip_fraction"], eig_rel_change=j["eig_rel_change"],
                    delta_norm=jnp.linalg.norm(res.delta), success_step=res.success_step)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None)))


@functools.lru_cache(maxsize=32)
def make_fig1_fn(model, *, steps: int):
    """Jitted ``(variables, x, y, beta) -> dict``: δ* (frozen raw attack) and δ̂ for Figure 1."""

    def one(variables, x, y, beta):
        f = logits_fn(model, variables)
        res = attack(f, x, y, steps=steps, beta=beta, norm="raw", gating="frozen")
        return dict(delta_star=res.delta, delta_hat=predict(f, x, y, res.hbar_z, beta=beta).delta_hat)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None)))


def flip_rate(success_step) -> float:
    """The fraction of the correctly classified digits (``success_step != 0``, valid) that the
    attack flipped (``success_step > 0``); NaN when none is correctly classified."""
    s = np.asarray(success_step)
    correct = (s > 0) | (s == -1)
    return float(np.sum(s > 0) / np.sum(correct)) if np.any(correct) else float("nan")


#: Appendix J's verdict β: the smallest β at which the raw attack flips this fraction of the
#: correctly classified digits (the attack regime of Tables 1-2)
ATTACK_FLIPS = 0.5


def attack_row(rows: list) -> dict:
    """The row (``{"beta", "label_flips", ...}``) of the smallest β whose attack flips ≥
    :data:`ATTACK_FLIPS` of the correctly classified digits; the largest β if none does."""
    hit = [j for j in rows if j.get("label_flips", 0) >= ATTACK_FLIPS]
    return min(hit, key=lambda j: j["beta"]) if hit else max(rows, key=lambda j: j["beta"])


def pgd_fns(model, *, steps: int) -> dict:
    """``{gating: make_pgd_fn(...)}`` for :data:`GATINGS` (compiled on first use, shared by every
    variant and ε of one network)."""
    return {g: make_pgd_fn(model, steps=steps, gating=g) for g in GATINGS}


def _mean(out, key) -> float:
    return float(np.mean(out[key]))


def _digits(out, keys) -> dict:
    """The per-digit values of ``keys`` (JSON-ready lists: the unit of the verdicts' statistics)."""
    return {k: np.asarray(out[k]).tolist() for k in keys}


#: per-digit keys kept for every PGD attack (Appendix D) and raw attack (Appendix J)
PGD_DIGIT_KEYS = ("one_minus_cos", "one_minus_cos_first_order", "flip_fraction", "eig_rel_change", "success_step")
RAW_DIGIT_KEYS = ("flip_fraction", "eig_rel_change", "success_step")


def match_variants(fns: Mapping, variables, x, y, variants: Sequence[tuple], *, steps: int, chunk: int | None,
                   keep: Sequence[str] = (), n_keep: int = 0) -> tuple[list[dict], dict]:
    """Appendix D of one network: per attack of ``variants`` (rows of :data:`PGD_VARIANTS`) its row
    ``{attack, norm, eps, alpha, steps, clip, frozen, free}`` (one :class:`GatingMatch` per gating,
    as a dict), and ``{label: {delta, target, delta_hat}}``, the frozen-gating arrays of the first
    ``n_keep`` digits for the labels in ``keep`` (Figure 1)."""
    rows, arrays = [], {}
    for label, norm, eps, clip, rule in variants:
        alpha = (1.0 if rule == "ball" else 2.5) * eps / steps
        row = dict(attack=label, norm=norm, eps=eps, alpha=alpha, steps=steps, clip=clip)
        for gating in GATINGS:
            fn, v = fns[gating], variant(norm, eps, alpha, clip)
            out = chunked(lambda xb, yb: fn(variables, xb, yb, v), x, y, chunk=chunk)
            row[gating] = GatingMatch(
                *(_mean(out, k) for k in ("one_minus_cos", "one_minus_cos_first_order", "flip_fraction",
                                          "eig_rel_change", "beta", "beta_lambda1")),
                one_minus_cos_max=float(np.max(out["one_minus_cos"])),
                eig_rel_change_max=float(np.max(out["eig_rel_change"])),
                digits=_digits(out, PGD_DIGIT_KEYS))._asdict()
            if gating == "frozen" and label in keep:
                arrays[label] = {k: out[k][:n_keep] for k in ("delta", "target", "delta_hat")}
        rows.append(row)
    return rows, arrays


def match_eps_grid(fns: Mapping, variables, x, y, grids: Mapping[str, Sequence[float]], *, steps: int,
                   chunk: int | None) -> list[dict]:
    """Appendix D over ε (``grids``: norm -> ε grid; unclipped, α = ε/steps): one :class:`EpsMatch`
    (as a dict) per norm, gating and ε, in that order."""
    rows = []
    for norm, grid in grids.items():
        for gating in GATINGS:
            for eps in grid:
                v = variant(norm, eps, eps / steps)
                out = chunked(lambda xb, yb: fns[gating](variables, xb, yb, v), x, y, chunk=chunk)
                rows.append(EpsMatch(norm, eps, gating, steps, _mean(out, "one_minus_cos"),
                                     _mean(out, "one_minus_cos_first_order"), _mean(out, "flip_fraction"),
                                     flip_rate(out["success_step"]), _digits(out, PGD_DIGIT_KEYS))._asdict())
    return rows


def raw_free_rows(model, variables, x, y, betas: Sequence[float], *, steps: int, chunk: int | None) -> list[dict]:
    """Appendix J of one network: one :class:`RawFlips` (as a dict) per β of the free-gating raw attack."""
    fn, rows = make_raw_free_fn(model, steps=steps), []
    for b in betas:
        b64 = jnp.asarray(b, jnp.float64)
        out = chunked(lambda xb, yb: fn(variables, xb, yb, b64), x, y, chunk=chunk)
        rows.append(RawFlips(b, steps, _mean(out, "flip_fraction"), _mean(out, "eig_rel_change"),
                             float(np.max(out["eig_rel_change"])), _mean(out, "delta_norm"),
                             flip_rate(out["success_step"]), _digits(out, RAW_DIGIT_KEYS))._asdict())
    return rows


def digit_split(digits: dict, values) -> dict:
    """Per-digit ``values`` (one per digit of an attack's ``digits``) split by what the attack did to
    the digit: ``{"unflipped": [...], "flipped": [...], "n_misclassified": k}`` — ``unflipped``: correctly
    classified at ``x`` and never misclassified along the attack (``success_step == -1``, the regime
    before the decision boundary the theory describes), ``flipped``: misclassified at some step ``t > 0``;
    digits misclassified at ``x`` (``t == 0``) and invalid ones only counted."""
    s, v = np.asarray(digits["success_step"]), np.asarray(values, np.float64)
    return dict(unflipped=v[s == -1], flipped=v[s > 0], n_misclassified=int(np.sum(s == 0)))


def digit_ratio(digits: dict, *, floor: float) -> np.ndarray:
    """Per digit, Theorem 2's matching error over the ``g_x``-only baseline's,
    ``(1 - cos(δ̂, ·)) / (1 - cos(g_x, ·))`` (NaN where the baseline is ≤ ``floor``: both errors at
    float resolution, no evidence either way)."""
    c, b = (np.asarray(digits[k], np.float64) for k in ("one_minus_cos", "one_minus_cos_first_order"))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > floor, c / b, np.nan)


def fig1_raw(model, variables, x, y, *, beta: float, steps: int) -> dict:
    """Figure 1's raw column: ``{attack, delta, target, delta_hat}`` of the frozen raw attack (δ*,
    itself the target) and Theorem 2's δ̂ at ``beta``, ``steps`` steps, on the digits ``x``."""
    out = jax.device_get(make_fig1_fn(model, steps=steps)(variables, x, y, jnp.asarray(beta, jnp.float64)))
    return dict(attack=f"raw, frozen, beta={beta:g}, m={steps}", delta=out["delta_star"], target=out["delta_star"],
                delta_hat=out["delta_hat"])


def _range(vals):
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return [min(vals), max(vals)] if vals else None


def summarize_matching(rows: Sequence[dict]) -> dict:
    """Ranges ``[min, max]`` over networks (``rows``: one network's results each, with
    ``appendix_d``) of the per-network means (``None`` where none is finite):
    ``one_minus_cos_range`` per attack and gating, ``one_minus_cos_first_order_range`` per attack."""
    d = [{a["attack"]: a for a in r["appendix_d"]} for r in rows]
    labels = sorted(d[0]) if rows else []
    return {
        "one_minus_cos_range": {lbl: {g: _range([a[lbl][g]["one_minus_cos"] for a in d]) for g in GATINGS}
                                for lbl in labels},
        "one_minus_cos_first_order_range": {lbl: _range([a[lbl]["frozen"]["one_minus_cos_first_order"] for a in d])
                                            for lbl in labels},
    }
