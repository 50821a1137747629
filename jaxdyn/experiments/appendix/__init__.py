"""Appendix D and J checks and Figure 1, on the 10-class networks of Table 1.

**Appendix D** — few-step PGD against Theorem 2. Under A2 the infinitely-many-step ℓ2 attack
follows the same curve as the raw gradient flow, so δ̂ of Theorem 2 should point like the ℓ2-PGD
perturbation, and ``C δ̂/||δ̂||`` like the effective component of an ℓ∞-PGD perturbation
(``Σ_t α (σ_tᵀ sign g_t) σ_t``, ``σ_t = g_t/||g_t||``; Sec. 3.2). For each attack:

* the attack is :func:`jaxdyn.attacks.multistep.attack` with ``norm="l2"`` / ``"linf"`` (run as
  :func:`jaxdyn.attacks.variants.variant_attack`: one compile for all), ``steps`` few steps of size
  ``α = ε/steps`` from ``x`` (no random start; the ε-ball projection is then never active, so the
  attack is the normalised ascent the theory describes) — variants with clipping to [0, 1] and with
  Madry's ``α = 2.5 ε/steps`` (projection active) are reported beside it;
* δ̂ is Theorem 2 with ``H̄_z`` averaged over that attack's own trajectory (docs/spec.md's weights
  ``||Δx^(t)||``) and β chosen so that ``||δ̂(β)|| = ||δ^(ℓ2)||`` (resp. ``||δ^(effective)||``)
  — the point of the flow at the attack's distance (:func:`jaxdyn.core.theory.match_beta`). ``C``
  only scales, so ``1 - cos`` does not depend on it;
* the matching errors ``1 - cos(δ̂, δ^(ℓ2))`` and ``1 - cos(C δ̂/||δ̂||, δ^(effective,ℓ∞))`` per digit
  beside the ``g_x``-only baseline ``1 - cos(g_x, ·)``, frozen (A2) and free, also over an ε grid
  (``eps_l2``, ``eps_linf``: 0.01 to the usual budgets); the verdict: per ε, the median over digits of
  the per-digit ratio (Theorem 2's error / g_x's) below 1 (×2 beside), its interval a hierarchical
  bootstrap over the networks (architectures × ``seeds``) and their digits; digits the attack flipped
  are reported apart (past the decision boundary, outside the regime the theory describes), and the
  headline is a regime map over ε (:mod:`.rules`, :mod:`.stats`).

**Appendix J** — how much an attack changes what A2 freezes: the fraction of ReLU gates whose state
at ``x + δ`` differs from that at ``x`` (:func:`jaxdyn.core.gating.flip_fraction`) and the relative
change ``|λ_1(x+δ) - λ_1(x)| / λ_1(x)`` of the top eigenvalue of ``H̄_x = W̃ H̄_z W̃ᵀ`` when
``W̃ = Jᵀ`` is taken at ``x + δ`` instead of ``x`` (same ``H̄_z``: the change due to the gating
alone), for the free-gating raw attack over a β grid (verdict at the β where it flips half the
digits: :func:`jaxdyn.analyses.variant_matching.attack_row`) and for the free ℓ2/ℓ∞ PGD attacks above.

**Figure 1** — δ̂ against δ* (Table 1's setting) and against few-step PGD for the 3-layer MLP and
three digits, drawn from the results (``appendix.json``) only (:func:`plot_fig1`).

The measurements are :mod:`jaxdyn.analyses.variant_matching`; the claims :mod:`.claims`, the
Markdown table and Figure 1 :mod:`.plot`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from jaxdyn.analyses import variant_matching as vm
from jaxdyn.analyses.variant_matching import FIG1_MODEL, FIG1_VARIANTS, PGD_VARIANTS
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.appendix.rules import BASELINE_FLOOR, FACTOR_D, claims
from jaxdyn.experiments.appendix.plots import FIG1_TITLES, markdown, plot, plot_fig1

__all__ = ["name", "title", "PAPER", "PGD_VARIANTS", "FIG1_VARIANTS", "FIG1_TITLES", "FIG1_MODEL", "Config", "SCALES",
           "config", "appendix_model", "run", "claims", "FACTOR_D", "BASELINE_FLOOR", "plot", "plot_fig1", "markdown"]

name = "appendix"
title = "Appendix D/J and Figure 1"

#: the paper's numbers, kept in the results (``paper``)
PAPER = dict(l2="1e-6 … 1e-4", linf="3.4e-5 (average)", eig="1e-4 … 1e-2")

_help = C.help_field


@dataclasses.dataclass(frozen=True)
class Config(C.TableConfig):
    """The knobs of Appendix D/J and Figure 1 (beside ``TableConfig``'s; Figure 1 needs ``mlp3``)."""

    pgd_steps: int = _help("steps of the Appendix-D PGD attacks")
    variants: tuple[str, ...] = _help("labels of the Appendix-D attacks to run (PGD_VARIANTS)")
    raw_steps: int = _help("steps of Appendix J's free-gating raw attack")
    raw_betas: tuple[float, ...] = _help("β grid of Appendix J's raw attack")
    n_fig: int = _help("digits in Figure 1")
    fig_beta: float = _help("β of Figure 1's raw attack")
    fig_steps: int = _help("m of Figure 1's raw attack")
    eps_l2: tuple[float, ...] = _help("ε grid of the unclipped ℓ2-PGD attack (Appendix D against g_x alone)")
    eps_linf: tuple[float, ...] = _help("ε grid of the unclipped ℓ∞-PGD attack (Appendix D against g_x alone)")


_BASE = dict(models=C.TABLE_MODELS, pgd_steps=10, variants=tuple(v[0] for v in PGD_VARIANTS),
             raw_betas=(1e-3, 1e-2, 1e-1, 1.0, 3.0, 10.0), n_fig=3, fig_beta=1e-3,
             eps_l2=(0.01, 0.1, 0.5, 2.0), eps_linf=(0.01, 0.03, 0.1, 0.3))
SCALES = {
    "tiny": dict(_BASE, models=("mlp3", "cnn3"), n_samples=4, pgd_steps=5, variants=tuple(FIG1_VARIANTS.values()),
                 raw_steps=20, raw_betas=(1e-3, 1e-1), chunk=4, eps_l2=(0.01, 2.0), eps_linf=(0.3,), n_fig=2,
                 fig_steps=20, seeds=(0,), **C.TABLE_TRAIN["tiny"]),
    "quick": dict(_BASE, models=C.QUICK_TABLE_MODELS, n_samples=8, raw_steps=50, chunk=8, fig_steps=200,
                  seeds=(0, 1, 2), **C.TABLE_TRAIN["quick"]),
    "full": dict(_BASE, n_samples=1000, raw_steps=1000, chunk=250, fig_steps=1000, seeds=(0, 1, 2, 3, 4),
                 **C.TABLE_TRAIN["full"]),
}


def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    cfg = C.make_config(Config, SCALES, scale, overrides)
    C.check_table_models(cfg.models, scale, what="appendix")
    C.check_fields(cfg, positive=("raw_betas", "fig_beta", "eps_l2", "eps_linf"),
                   counts=("n_samples", "pgd_steps", "raw_steps", "chunk", "n_fig", "fig_steps"))
    C.check_models(cfg.variants, [v[0] for v in PGD_VARIANTS], what="Appendix-D attack")
    return cfg


def appendix_model(model_name: str, seed: int, cfg: Config, *, progress: bool) -> dict:
    """All Appendix D/J numbers of one network (and Figure 1's arrays for :data:`FIG1_MODEL`)."""
    t0, cpu = time.perf_counter(), _Cpu()
    model, variables, info = C.load_model(model_name, cfg.train, seed=seed, seeds=cfg.seeds, progress=progress,
                                          overrides=cfg.train_overrides)
    t_train = time.perf_counter() - t0
    cpu.lap("train_or_load")
    x, y = C.fixed_digits(cfg.n_samples, seed=seed)
    k, fns = cfg.n_fig, vm.pgd_fns(model, steps=cfg.pgd_steps)
    # Figure 1 draws one network: the first seed of FIG1_MODEL
    keep = list(FIG1_VARIANTS.values()) if model_name == FIG1_MODEL and seed == cfg.seeds[0] else []
    d_rows, arrays = vm.match_variants(fns, variables, x, y, [v for v in PGD_VARIANTS if v[0] in cfg.variants],
                                       steps=cfg.pgd_steps, chunk=cfg.chunk, keep=keep, n_keep=k)
    cpu.lap("appendix_d")
    eps_rows = vm.match_eps_grid(fns, variables, x, y, {"l2": cfg.eps_l2, "linf": cfg.eps_linf},
                                 steps=cfg.pgd_steps, chunk=cfg.chunk)
    cpu.lap("appendix_d_eps")
    j_rows = vm.raw_free_rows(model, variables, x, y, cfg.raw_betas, steps=cfg.raw_steps, chunk=cfg.chunk)
    cpu.lap("appendix_j")
    res = dict(model=model_name, n_samples=int(len(x)), dtype="float64", test_accuracy=info["test_accuracy"],
               appendix_d=d_rows, appendix_d_eps=eps_rows, appendix_j_raw=j_rows)
    if arrays:
        fig = {key: dict(attack=lbl, **arrays[lbl]) for key, lbl in FIG1_VARIANTS.items() if lbl in arrays}
        fig["raw"] = vm.fig1_raw(model, variables, x[:k], y[:k], beta=cfg.fig_beta, steps=cfg.fig_steps)
        fig["x"], fig["y"] = x[:k], y[:k]
        res["fig1"] = jax.tree.map(lambda a: np.asarray(a).tolist() if isinstance(a, np.ndarray) else a, fig)
        cpu.lap("fig1")
    res["time_s"] = dict(train_or_load=t_train, experiment=time.perf_counter() - t0 - t_train)
    res["cpu_s"] = cpu.laps  # process CPU time per part (compiles included where first paid)
    return res


class _Cpu:
    """Process CPU time (every thread) per part of one network's run, in ``laps``."""

    def __init__(self):
        self.t, self.laps = time.process_time(), {}

    def lap(self, part: str) -> None:
        t = time.process_time()
        self.laps[part] = t - self.t
        self.t = t


def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Appendix D/J (and Figure 1's arrays) at ``cfg``; ``summary`` holds the ranges over networks
    (:func:`jaxdyn.analyses.variant_matching.summarize_matching`)."""
    rows = C.over_models(lambda m, s: appendix_model(m, s, cfg, progress=progress),
                         cfg.models, seeds=cfg.seeds, progress=progress, desc=name,
                         out=out)
    return dict(dtype="float64", n_samples=cfg.n_samples, pgd_steps=cfg.pgd_steps, raw_steps=cfg.raw_steps,
                rows=rows, paper=PAPER, summary=vm.summarize_matching(rows))


# claims(results): :mod:`.claims`; plot(results, out): :mod:`.plot` (imported above)
