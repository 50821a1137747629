"""Table 1: κ, the error of Theorem 2's perturbation δ̂ against the real attack δ*, over the
range of strengths from the paper's regime to an attack that flips half the digits.

For each network of the table (``mlp3/4/5``, ``cnn3/4/5``, ``rescnn3/4/5/10``) trained on MNIST
(10 classes) and a fixed set of test digits (``data.subset`` of the test split, seeded; every
digit is kept for κ, the correctly classified ones count for the flip fraction):

* δ* is the ``m``-step raw attack (A1) ``δ ← δ + α g_{x+δ}``, ``α = β/m``, no projection, no
  clipping, under frozen gating (A2) or on the real network (free gating);
* δ̂ is Theorem 2 (Eq. 6) with ``H̄_z`` the step-length-weighted mean of ``H_z`` over δ*'s own
  trajectory (docs/spec.md), by the ``C x C`` path; ``κ = E||δ* - δ̂|| / E||δ*||``, float64 throughout;
  beside it Theorem 1 at the same ``m`` (``kappa_theorem1``: the ``O(1/m)`` gap removed) and the
  curvature-free baseline ``δ = β g_x`` (``kappa_first_order``).

``regimes`` (per network, :func:`jaxdyn.analyses.regimes.sweep`): a β grid (``betas``, extended by
``regime_factor`` until the flip fraction is ≤ ``flip_range[0]`` at the smallest β and ≥
``flip_range[1]`` at the largest, for frozen and free gating, at most ``max_betas`` rows) with
the median ``βλ₁(H̄_x)``, ``flip_fraction``, median ``‖δ*‖₂``/``‖δ*‖∞``, κ, Theorem 1, first
order, the same with free gating, and conclusion C.3's cosines. The frozen attack runs in logit
space (exact A2), the free one through the network; β is traced (one compile per network).

The ODE reference (:mod:`jaxdyn.attacks.flow`): the gradient flow ``dδ/dt = g_{x+δ}`` to ``t = β``, the
``m → ∞`` limit of the attack, solved adaptively; frozen at every β (logit space), free once, at
the free attack regime's β (``ode_max_steps`` bounds it: flows sliding along a ReLU kink are
reported unsolved). Per row ``kappa_ode``, ``kappa_ode_free``, first order against it and
``euler_gap``; ``kappa_vs_m_ode`` the m-step attack's convergence to it (``ode_m_grid``).

Claims (:mod:`jaxdyn.experiments.table1.rules`):

* **attack regime** (the headline): at the β whose flip fraction is nearest ``flip_target``
  (0.5), frozen and free apart, Theorem 2 must beat the first-order baseline by the factor
  ``verdict_factor`` (κ < first-order κ / F), both against the ODE reference where solved;
* **C.3**: cos(δ*, g_x) leads |cos(δ*, v₁)| by ``c3_margin`` at the smallest β
  and trails it by as much at the largest, per digit, on the digits with |cos(g_x, v₁)| <
  ``c3_max_cos`` at x (else "not testable" when fewer than ``c3_min_digits`` remain);
* **paper protocol**: κ at the documented small β (``beta``, 1e-3) with the A2 attack through
  the network, against the paper's range — kept because it is what the paper did; at this β no
  digit flips and κ is mostly the Euler gap, so it cannot tell a good theory from a bad one.

Also: ``kappa_vs_m`` (convergence in ``m`` at ``beta``, exact A2 attack in logit space, checked
against the network attack: ``logit_space_agreement``), ``beta_lambda1_weighted``
(``E[||δ*|| β λ_1] / E||δ*||``, the strength κ sees), ``mean_delta_norm``, ``attack_success_rate``.
The builders and the measurement are :mod:`jaxdyn.analyses.table1_protocol` and
:mod:`jaxdyn.analyses.regimes`; the tables and figures :mod:`jaxdyn.experiments.table1.plots`.
Choices are explained in ``docs/tables.md``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.analyses import regimes as R
from jaxdyn.analyses import table1_protocol as P
from jaxdyn.core.models import logits_fn
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.table1 import rules as _claims
from jaxdyn.experiments.table1 import plots as _plot

name = "table1"
title = "Table 1 — κ (Theorem 2)"

MODELS = C.TABLE_MODELS
PAPER_KAPPA = dict(zip(MODELS, (1.5e-5, 3.5e-6, 6.6e-7, 3.4e-7, 5.1e-8, 4.7e-8, 1.3e-5, 1.5e-5, 3.7e-5, 1.7e-4)))
#: the paper's range of κ over the ten networks
PAPER_RANGE = (4.7e-8, 1.7e-4)

_help = C.help_field


@dataclasses.dataclass(frozen=True)
class Config(C.TableAttackConfig):
    """The knobs of Table 1 (beside :class:`~jaxdyn.experiments._common.TableAttackConfig`'s)."""

    m_grid: tuple[int, ...] = _help("the κ(m) convergence study at β (A2 attack in logit space)")
    flip_range: tuple[float, float] = _help("the regimes span flip fractions from ≤ lo to ≥ hi (frozen and free)")
    regime_factor: float = _help("factor by which the regime grid is extended down/up to reach flip_range")
    max_betas: int = _help("cap on the regime grid's size per network (reported if hit)")
    flip_target: float = _help("the attack regime's headline: the β whose flip fraction is nearest this")
    verdict_factor: float = _help("F: the attack-regime claims hold where κ < first-order κ / F")
    ode_m_grid: tuple[int, ...] = _help(
        "κ(m) against the gradient flow (ODE) at the attack-regime β (free: m <= steps)")
    ode_rtol: float = _help("relative tolerance of the ODE reference (Dormand–Prince 5(4), jaxdyn.attacks.flow)")
    ode_max_steps: int = _help("the free ODE's cap on attempted steps per digit (then reported unsolved; frozen: 4096)")
    ode_free: str = _help("where the free-gating ODE runs: 'attack' (the free attack-regime β), 'all' or 'none'")
    c3_margin: float = _help("C.3's rule: the winning cosine must lead by at least this")
    c3_max_cos: float = _help("C.3's rule runs on the digits with |cos(g_x, v1)| below this at x (claims only)")
    c3_min_digits: int = _help("C.3 is 'not testable' on a network with fewer eligible digits (claims only)")


_REGIME = dict(flip_range=(0.05, 0.5), regime_factor=3.0, flip_target=0.5, verdict_factor=2.0, ode_rtol=1e-6,
               ode_free="attack", c3_margin=0.01, c3_max_cos=P.C3_MAX_COS,
               c3_min_digits=P.C3_MIN_DIGITS)
#: Scale presets. ``beta`` is the documented strength of the paper protocol; ``betas`` the start
#: of the regime grid (``beta`` is added to it).
SCALES = {
    "tiny": dict(models=("mlp3", "cnn3"), n_samples=4, steps=20, beta=1e-3, betas=(1e-3, 1e-1, 1.0), m_grid=(10, 40),
                 ode_m_grid=(10, 20), ode_max_steps=50, chunk=4, max_betas=6, seeds=(0,), **_REGIME,
                 **C.TABLE_TRAIN["tiny"]),
    "quick": dict(models=C.QUICK_TABLE_MODELS, n_samples=16, steps=200, beta=1e-3, betas=(1e-3, 0.1, 1.0, 3.0),
                  m_grid=(25, 50, 100, 200, 400, 1600, 6400, 25600, 102400),
                  ode_m_grid=(10, 30, 100, 300, 1000), ode_max_steps=100, chunk=16, max_betas=12, seeds=(0,),
                  **_REGIME, **C.TABLE_TRAIN["quick"]),
    "full": dict(models=MODELS, n_samples=1000, steps=1000, beta=1e-3, betas=(1e-4, 1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0),
                 m_grid=(100, 1000, 10000, 100000, 1000000),
                 ode_m_grid=(10, 30, 100, 300, 1000, 3000), ode_max_steps=1000,
                 chunk=250, max_betas=16, seeds=(0,), **_REGIME,
                 **C.TABLE_TRAIN["full"]),
}


def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    cfg = C.make_config(Config, SCALES, scale, overrides)
    C.check_table_models(cfg.models, scale, what="Table 1")
    C.check_fields(cfg, positive=("beta", "betas", "verdict_factor", "ode_rtol"),
                   counts=("n_samples", "steps", "m_grid", "ode_m_grid", "chunk", "max_betas", "ode_max_steps"))
    if not (0 < cfg.c3_max_cos <= 1 and isinstance(cfg.c3_min_digits, int) and cfg.c3_min_digits >= 1):
        raise ValueError(f"need 0 < c3_max_cos <= 1 and an integer c3_min_digits >= 1, got {cfg.c3_max_cos}, "
                         f"{cfg.c3_min_digits}")
    if cfg.ode_free not in ("attack", "all", "none") or not 0 <= cfg.c3_margin < 1:
        raise ValueError(f"ode_free must be 'attack', 'all' or 'none' and 0 <= c3_margin < 1, got {cfg.ode_free!r}, "
                         f"{cfg.c3_margin}")
    lo, hi = cfg.flip_range
    if not (0 <= lo <= hi <= 1 and 0 <= cfg.flip_target <= 1 and cfg.regime_factor > 1):
        raise ValueError(f"need 0 <= flip_range[0] <= flip_range[1] <= 1, 0 <= flip_target <= 1 and "
                         f"regime_factor > 1, got {cfg.flip_range}, {cfg.flip_target}, {cfg.regime_factor}")
    return cfg


# --- run -------------------------------------------------------------------------------


def table1_model(model_name: str, seed: int, cfg: Config, *, progress: bool) -> dict:
    """All Table-1 numbers of one network (see the module docstring)."""
    beta, steps, chunk = cfg.beta, cfg.steps, cfg.chunk
    t0 = time.perf_counter()
    model, variables, info = C.load_model(model_name, cfg.train, seed=seed, progress=progress,
                                          overrides=cfg.train_overrides)
    t_train = time.perf_counter() - t0
    x, y = C.fixed_digits(cfg.n_samples, seed=seed)
    b64 = lambda b: jnp.asarray(b, jnp.float64)  # noqa: E731
    prep = P.make_prep_fn(model)
    J, z, gz = (jnp.asarray(a) for a in C.chunked(lambda xb, yb: prep(variables, xb, yb), x, y, chunk=chunk))
    yj = jnp.asarray(y)

    # paper protocol: the A2 attack through the network at the documented β
    net = P.make_network_attack_fn(model, steps)
    head = C.chunked(lambda xb, yb, Jb, gb: net(variables, xb, yb, Jb, gb, b64(beta)), x, y, J, gz, chunk=chunk)
    lsa = jax.tree.map(np.asarray, P.make_logit_space_fn(steps, with_delta=True)(J, z, gz, yj, b64(beta)))
    agreement = float(np.max(np.linalg.norm(lsa["delta"] - head["delta"], axis=1) / head["norm"]))

    # the regimes: frozen (logit space) and free (through the network), β from the paper's to flips;
    # the ODE reference: frozen at every β (logit space, cheap); free at the free attack regime's β,
    # solved once by the κ(m) study there (its summary joins that row), or at every β ("all")
    f = logits_fn(model, variables)
    tol = dict(rtol=cfg.ode_rtol)  # frozen: the default cap (logit space, cheap); free: ode_max_steps
    free_tol = dict(tol, max_steps=cfg.ode_max_steps)
    regimes = R.sweep(f, x, y, betas=sorted(set(cfg.betas) | {beta}), steps=steps,
                      chunk=chunk, flip_range=tuple(cfg.flip_range), factor=cfg.regime_factor,
                      max_betas=cfg.max_betas, ode=("frozen", "free") if cfg.ode_free == "all" else ("frozen",),
                      ode_tol=free_tol if cfg.ode_free == "all" else tol)
    at_beta = next(r for r in regimes if r["beta"] == float(beta))
    t_conv, c_conv, conv_ode = time.perf_counter(), time.process_time(), {}
    for g, flip_key in (("frozen", "flip_fraction"), ("free", "flip_fraction_free")):
        p = C.regime_point(regimes, flip_key=flip_key, target=cfg.flip_target)
        if p is not None and (g == "frozen" or cfg.ode_free != "none"):
            grid = cfg.ode_m_grid if g == "frozen" else [m for m in cfg.ode_m_grid if m <= steps] or [steps]
            conv_ode[g] = R.convergence(f, x, y, beta=p["beta"], m_grid=grid, gating=g, chunk=chunk,
                                        ode_tol=tol if g == "frozen" else free_tol,
                                        summary_steps=steps if g == "free" else None)
            p.update(conv_ode[g].pop("summary", {}) if cfg.ode_free == "attack" else {})
    t_conv, c_conv = time.perf_counter() - t_conv, time.process_time() - c_conv
    return dict(
        model=model_name, beta=beta, steps=steps, n_samples=int(len(x)), dtype="float64",
        test_accuracy=info["test_accuracy"], **P.paper_protocol(head, beta),
        attack_success_rate=float(np.mean(head["success"])),
        kappa_free=at_beta.get("kappa_free"), kappa_free_first_order=at_beta.get("kappa_free_first_order"),
        paper_kappa=PAPER_KAPPA.get(model_name), logit_space_agreement=agreement,
        regimes=regimes, regime_range=P.regime_range(regimes, cfg.flip_range),
        kappa_vs_m=P.kappa_vs_m(J, z, gz, yj, b64(beta), cfg.m_grid),  # κ(m) at the documented β
        kappa_vs_m_ode=conv_ode, train_config=info.get("config"),
        time_s=dict(train_or_load=t_train, experiment=time.perf_counter() - t0 - t_train, kappa_vs_m_ode=t_conv,
                    kappa_vs_m_ode_cpu=c_conv),
    )


def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Table 1 at ``cfg``: one row per network; ``done`` holds the "done" criterion's numbers."""
    rows = C.over_models(lambda m, s: table1_model(m, s, cfg, progress=progress),
                         cfg.models, seeds=cfg.seeds, progress=progress, desc=name,
                         out=out)
    return C.table_results(cfg, rows, key="kappa", base="kappa_first_order", m_grid=list(cfg.m_grid),
                           flip_range=list(cfg.flip_range), flip_target=cfg.flip_target,
                           verdict_factor=cfg.verdict_factor, ode_m_grid=list(cfg.ode_m_grid), ode_rtol=cfg.ode_rtol,
                           c3_margin=cfg.c3_margin, c3_max_cos=cfg.c3_max_cos, c3_min_digits=cfg.c3_min_digits)


# --- claims and plots ---------------------------------------------------------------------


def claims(results: dict) -> list[dict]:
    """The attack-regime claims (the headline, when the rows have ``regimes``), C.3's, then the paper
    protocol's: κ is small (the paper's range) and below the first-order baseline at ``beta``
    (:mod:`jaxdyn.experiments.table1.rules`)."""
    return _claims.claims(results, paper_range=PAPER_RANGE)


def plot(results: dict, out: Path) -> None:
    """``table1.md``, ``table1_regimes.png`` and ``table1_convergence.png`` from the results
    (:mod:`jaxdyn.experiments.table1.plots`)."""
    _plot.plot(results, out)
