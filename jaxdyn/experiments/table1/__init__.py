"""Table 1: Theorem 2's perturbation δ̂ against the real raw attack δ*, per digit, along each digit's
own progress towards its flip, frozen (A2) and free gating apart.

For each network of the table (``mlp3/4/5``, ``cnn3/4/5``, ``rescnn3/4/5/10``) trained on MNIST, one
network per seed (``seeds``; each seed draws its own fixed test digits), and each digit:

* ``t_success``: the smallest β at which its raw attack (A1, ``δ ← δ + α g_{x+δ}``) flips it, within
  the budget ``beta_max`` (``budget_rounds`` chained attacks of ``max(s_grid) · steps`` steps at one small
  α); digits that never flip within it (and those misclassified at ``x``) are counted apart;
* at ``β_i = s · t_success,i`` for each ``s`` of ``s_grid``: δ* the m-step attack (``m = s · steps``,
  ``α = t_success,i / steps``), Theorem 2's relative error ``‖δ̂ − δ*‖/‖δ*‖`` (``H̄_z`` the paper's
  step-length-weighted mean over δ*'s own trajectory), the first order's ``‖β g_x − δ*‖/‖δ*‖``, and
  their ratio; the reference is the m-step attack (not the gradient flow);
* the causes: ``H̄_z`` time-uniform and ``c · H̄_z`` (``c`` fitted per network) at ``ablation_s``; the
  saturation past the flip (``‖δ*‖``, ``‖δ̂‖`` and ``‖g‖`` from ``s = 1`` to the largest ``s``);
* the paper protocol: κ at the documented β (``beta``), a pooled ratio of sums, per-digit errors beside;
* C.3's cosines at the paper protocol's β and at the largest ``s``.

The measurement is :mod:`jaxdyn.analyses.table1_protocol` (on :mod:`jaxdyn.analyses.progress`); the
claims :mod:`jaxdyn.experiments.table1.rules`; the table and figure
:mod:`jaxdyn.experiments.table1.plots`. Choices are explained in ``docs/tables.md``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from jaxdyn.analyses import table1_protocol as P
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

    s_grid: tuple[float, ...] = _help("the fractions s of each digit's t_success at which δ̂ is compared (with 1)")
    beta_max: float = _help("the budget: digits whose attack has not flipped them by β = beta_max are counted apart")
    budget_rounds: int = _help("t_success's attack: this many chained attacks of max(s_grid)·steps steps to beta_max")
    ablation_s: tuple[float, ...] = _help("the s at which the H̄_z ablations (time-uniform, c·H̄_z) are reported")
    verdict_factor: float = _help("F: the ×F report beside the ×1 verdict (ratio < 1/F)")
    c3_margin: float = _help("C.3's rule: the winning cosine must lead by at least this")
    c3_max_cos: float = _help("C.3's rule runs on the digits with |cos(g_x, v1)| below this at x (claims only)")
    c3_min_digits: int = _help("C.3: a network with fewer eligible digits does not enter the test (claims only)")


_COMMON = dict(s_grid=(0.25, 0.5, 0.75, 0.9, 1.0, 1.5), ablation_s=(0.9, 1.0), verdict_factor=2.0, c3_margin=0.01,
               c3_max_cos=P.C3_MAX_COS, c3_min_digits=P.C3_MIN_DIGITS, beta=1e-3, betas=(1e-3,))
#: Scale presets. ``beta`` is the documented strength of the paper protocol. The quick scale trades
#: digits for networks (3 seeds × 16 digits), decided before any verdict was read.
SCALES = {
    "tiny": dict(models=("mlp3", "cnn3"), n_samples=4, steps=20, beta_max=10.0, budget_rounds=1, chunk=4,
                 seeds=(0,), **_COMMON, **C.TABLE_TRAIN["tiny"]),
    "quick": dict(models=C.QUICK_TABLE_MODELS, n_samples=16, steps=200, beta_max=30.0, budget_rounds=4, chunk=16,
                  seeds=(0, 1, 2), **_COMMON, **C.TABLE_TRAIN["quick"]),
    "full": dict(models=MODELS, n_samples=1000, steps=1000, beta_max=30.0, budget_rounds=4, chunk=250,
                 seeds=(0, 1, 2, 3, 4), **_COMMON, **C.TABLE_TRAIN["full"]),
}


def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    cfg = C.make_config(Config, SCALES, scale, overrides)
    C.check_table_models(cfg.models, scale, what="Table 1")
    C.check_fields(cfg, positive=("beta", "beta_max", "s_grid", "ablation_s", "verdict_factor"),
                   counts=("n_samples", "steps", "chunk", "budget_rounds"))
    if 1.0 not in cfg.s_grid or not set(cfg.ablation_s) <= set(cfg.s_grid):
        raise ValueError(f"s_grid must contain 1 and every ablation_s, got {cfg.s_grid}, {cfg.ablation_s}")
    if not (0 < cfg.c3_max_cos <= 1 and isinstance(cfg.c3_min_digits, int) and cfg.c3_min_digits >= 1):
        raise ValueError(f"need 0 < c3_max_cos <= 1 and an integer c3_min_digits >= 1, got {cfg.c3_max_cos}, "
                         f"{cfg.c3_min_digits}")
    if not 0 <= cfg.c3_margin < 1:
        raise ValueError(f"need 0 <= c3_margin < 1, got {cfg.c3_margin}")
    return cfg


# --- run -------------------------------------------------------------------------------


def table1_model(model_name: str, seed: int, cfg: Config, *, progress: bool) -> dict:
    """All Table-1 numbers of one network (see the module docstring)."""
    t0, c0 = time.perf_counter(), time.process_time()
    model, variables, info = C.load_model(model_name, cfg.train, seed=seed, seeds=cfg.seeds, progress=progress,
                                          overrides=cfg.train_overrides)
    t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
    x, y = C.fixed_digits(cfg.n_samples, seed=seed)
    m = P.measure(model, variables, x, y, steps=cfg.steps, s_grid=cfg.s_grid, beta_max=cfg.beta_max,
                  rounds=cfg.budget_rounds, beta=cfg.beta, chunk=cfg.chunk)
    pp = m["paper_protocol"]["frozen"]
    return dict(
        model=model_name, beta=cfg.beta, steps=cfg.steps, n_samples=int(len(x)), dtype="float64",
        test_accuracy=info["test_accuracy"], kappa=pp["kappa"], kappa_first_order=pp["kappa_first_order"],
        paper_kappa=PAPER_KAPPA.get(model_name), **m, train_config=info.get("config"),
        time_s=dict(train_or_load=t_train, train_or_load_cpu=c_train, experiment=time.perf_counter() - t0 - t_train,
                    experiment_cpu=time.process_time() - c0 - c_train))


def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Table 1 at ``cfg``: one row per network (architecture and seed); ``done`` holds the "done"
    criterion's numbers (the paper protocol's pooled κ)."""
    rows = C.over_models(lambda m, s: table1_model(m, s, cfg, progress=progress),
                         cfg.models, seeds=cfg.seeds, progress=progress, desc=name, out=out)
    return C.table_results(cfg, rows, key="kappa", base="kappa_first_order", s_grid=list(cfg.s_grid),
                           ablation_s=list(cfg.ablation_s), beta_max=cfg.beta_max, verdict_factor=cfg.verdict_factor,
                           c3_margin=cfg.c3_margin, c3_max_cos=cfg.c3_max_cos, c3_min_digits=cfg.c3_min_digits,
                           seeds=list(cfg.seeds))


# --- claims and plots ---------------------------------------------------------------------


def claims(results: dict) -> list[dict]:
    """The progress claims (the headline regime map, frozen and free), C.3's, then the paper protocol's
    (:mod:`jaxdyn.experiments.table1.rules`)."""
    return _claims.claims(results, paper_range=PAPER_RANGE)


def plot(results: dict, out: Path) -> None:
    """``table1.md`` and ``table1_progress.png`` from the results (:mod:`jaxdyn.experiments.table1.plots`)."""
    _plot.plot(results, out)
