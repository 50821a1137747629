"""Table 2: κ', the error of Theorem 3 (Eq. 9) against the effect ``φ* = g̃_xᵀ Δg̃_x`` measured from
real weight gradients.

For each network of the table (``mlp3/4/5``, ``cnn3/4/5``, ``rescnn3/4/5/10``) with a binary
sigmoid head trained on MNIST digits 3 vs 5, and a fixed set of test digits of those classes:

1. the ``m``-step raw attack under frozen gating (A2) gives ``H̄_z`` (scalar) on its trajectory;
2. Theorem 2 gives ``δ̂`` with that ``H̄_z`` (:func:`jaxdyn.core.theory.predict`);
3. ``φ*`` is measured (:func:`jaxdyn.core.influence.measure`): ``Δg_W = ∂L(f(x+δ̂))/∂W - ∂L(f(x))/∂W``
   for the first layer's weights ``W`` (:func:`jaxdyn.core.influence.first_layer_fn`), and
   ``φ* = g̃_xᵀ Δg̃_x`` with ``Δg̃_x`` the jvp of ``W ↦ ∂z/∂x`` along ``-ηΔg_W`` — which is
   ``-ηΔg_W g̃_h`` for the MLPs' dense first layer and its generalisation for the conv first layer
   of the CNNs and ResCNNs (docs/theory.md). Gradients at ``x + δ̂`` are taken under A2 (the
   paper: "computed … under assumption A2"), ``gating="frozen"``;
4. ``φ̂`` from Eq. 9 with ``A = β H̄_z ||g̃_x||²`` and the measured ``φ^(ori)``, ``g_z``, ``q``;
5. ``κ' = E|φ* - φ̂| / E|φ*|`` (:func:`jaxdyn.analyses.metrics.kappa_prime`), float64.

Extra columns: first order (Eq. 9 with ``e^A → 1 + A``), Eq. 10 (``g_W^(adv)`` alone), Eq. 11
(paper protocol: ``C = norm_c ||δ̂||``; the real-attack rows: ``C`` the measured norm of a real ℓ2
attack), ``φ*`` on the real network (gates free at ``x + δ̂``) and at the real attack's δ*, ``E[A]``,
and κ'(β) over a grid (the grid uses the exact A2 attack in logit space for ``H̄_z``; the headline
column runs the attack through the network and records the agreement).

``η`` only scales ``φ*`` and ``φ̂`` alike (κ' does not depend on it); it is recorded. As in the
paper, the networks are adversarially trained (PGD-ℓ∞, ε = 0.3; at the quick scale with
``jaxdyn.training``'s ``QUICK_ADV`` preset); ``adv="none"`` (``--adv none``) trains them normally instead:
~100× larger ``A`` at the same β (adversarial training flattens ``g̃_x``).

The measurement (the jitted builders, the theory applied as κ′) is
:mod:`jaxdyn.analyses.real_attack`; the claims :mod:`jaxdyn.experiments.table2.rules`; the table and
figure :mod:`jaxdyn.experiments.table2.plots`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from jaxdyn._internal.checks import check_choice
from jaxdyn.analyses import real_attack as RA
from jaxdyn.core import influence
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.table2.plots import markdown, plot, plot_real_attack
from jaxdyn.experiments.table2.rules import FACTOR, PAPER_RANGE, THRESHOLD, claims, regime, regime_verdict

__all__ = ["name", "title", "MODELS", "PAPER_KAPPA_PRIME", "ADV_CHOICES", "BINARY", "Config", "SCALES", "config",
           "table2_model", "run", "claims", "PAPER_RANGE", "THRESHOLD", "FACTOR", "regime", "regime_verdict",
           "plot", "markdown", "plot_real_attack"]

name = "table2"
title = "Table 2 — κ′ (Theorem 3)"

MODELS = C.TABLE_MODELS
#: the paper's κ′ per network (Table 2)
PAPER_KAPPA_PRIME = dict(zip(MODELS, (3.9e-5, 8.8e-6, 1.5e-6, 8.5e-7, 1.3e-7, 1.2e-7, 3.4e-5, 3.9e-5, 9.0e-5,
                                      1.9e-4)))
ADV_CHOICES = ("none", "pgd-linf", "pgd-l2", "raw")
BINARY = (3, 5)

_help = C.help_field


@dataclasses.dataclass(frozen=True)
class Config(C.TableAttackConfig):
    """The knobs of Table 2 (beside :class:`~jaxdyn.experiments._common.TableAttackConfig`'s)."""

    adv: str = _help(f"adversarial training of the binary networks: one of {ADV_CHOICES}")
    eta: float = _help("learning rate η of the measured step (κ′ does not depend on it)")
    norm_c: float = _help("Eq. 11 uses C = norm_c ||δ̂||")
    A_targets: tuple[float, ...] = _help("real-attack sweep: per digit, the β at which its A = β H̄_z ||g̃_x||² "
                                         "hits each target (frozen and free gating apart)")
    sweep_steps: int = _help("steps m of the real-attack sweep's raw attack (α = β/m)")


_BASE = dict(models=MODELS, steps=200, beta=1e-3, betas=(1e-4, 1e-3, 1e-2, 1e-1, 1.0), adv="pgd-linf",
             eta=1e-3, norm_c=0.5, seeds=(0, 1, 2, 3, 4), A_targets=(1e-3, 1e-2, 0.1, 0.3, 1.0), sweep_steps=50)
#: Scale presets (the tiny scale, for tests, skips adversarial training).
SCALES = {
    "tiny": dict(_BASE, models=("mlp3", "cnn3"), n_samples=4, steps=20, betas=(1e-3, 1e-1), adv="none", chunk=4,
                 A_targets=(1e-3, 0.3), sweep_steps=10, seeds=(0,),
                 **C.TABLE_TRAIN["tiny"]),
    # quick: 3 networks per architecture at 8 digits each (more networks, fewer digits: a cost choice)
    "quick": dict(_BASE, models=C.QUICK_TABLE_MODELS, n_samples=8, chunk=8, seeds=(0, 1, 2),
                  **C.TABLE_TRAIN["quick"]),
    "full": dict(_BASE, n_samples=1000, steps=1000, chunk=250, **C.TABLE_TRAIN["full"]),
}


def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    cfg = C.make_config(Config, SCALES, scale, overrides)
    C.check_table_models(cfg.models, scale, what="Table 2")
    C.check_fields(cfg, positive=("beta", "betas", "eta", "norm_c", "A_targets"),
                   counts=("n_samples", "steps", "chunk", "sweep_steps"))
    check_choice("adv", cfg.adv, ADV_CHOICES)
    for k in [k for k in ("train", "train_overrides") if "binary" in (getattr(cfg, k) or {})]:  # a fixed task
        raise ValueError(f"{k}: 'binary' is Table 2's task {BINARY}, not a setting")
    return cfg


#: the jitted builders per architecture and settings, reused across seeds (one compile per architecture)
_FNS: dict = {}


def _fns(model_name: str, model, path, cfg: Config) -> tuple:
    key = (model_name, repr(model), tuple(path), cfg.steps, cfg.sweep_steps, cfg.eta, cfg.norm_c)
    if key not in _FNS:
        _FNS[key] = (RA.make_batch_fn(model, path, cfg.steps, eta=cfg.eta, norm_c=cfg.norm_c),
                     RA.make_sweep_fn(model, path, cfg.sweep_steps, eta=cfg.eta))
    return _FNS[key]


def table2_model(model_name: str, seed: int, cfg: Config, *, progress: bool) -> dict:
    """All Table-2 numbers of one network (see the module docstring): the paper protocol
    (:func:`jaxdyn.analyses.real_attack.paper_protocol`) and the real-attack sweep
    (:func:`jaxdyn.analyses.real_attack.real_attack_sweep`)."""
    beta, steps = cfg.beta, cfg.steps
    adv = None if cfg.adv == "none" else cfg.adv
    t0 = time.perf_counter()
    model, variables, info = C.load_model(model_name, cfg.train, binary=BINARY, adv=adv, seed=seed,
                                          seeds=cfg.seeds, progress=progress, overrides=cfg.train_overrides)
    t_train = time.perf_counter() - t0
    path = influence.first_layer_path(model, variables)
    x, y = C.fixed_digits(cfg.n_samples, seed=seed, binary=BINARY)
    batch_fn, sweep_fn = _fns(model_name, model, path, cfg)
    head, agreement, grid = RA.paper_protocol(model, variables, path, x, y, beta=beta, betas=cfg.betas, steps=steps,
                                              eta=cfg.eta, norm_c=cfg.norm_c, chunk=cfg.chunk, fn=batch_fn)
    paper = dict(beta=beta, steps=steps, gating="frozen", delta="Theorem 2's δ̂ (A2)",
                 **{k: head[k] for k in RA.PAPER_FIELDS})
    sweep = RA.real_attack_sweep(model, variables, path, x, y, A_targets=cfg.A_targets, steps=cfg.sweep_steps,
                                 eta=cfg.eta, chunk=cfg.chunk, fn=sweep_fn)
    return dict(
        model=model_name, beta=beta, steps=steps, n_samples=int(len(x)), dtype="float64",
        test_accuracy=info["test_accuracy"], **{k: v for k, v in head.items() if k != "beta"},
        paper_kappa_prime=PAPER_KAPPA_PRIME.get(model_name), first_layer="/".join(path),
        first_layer_kind="dense" if influence.get_param(variables, path).ndim == 2 else "conv",
        binary=list(BINARY), adv=adv, robust_accuracy=info.get("robust_accuracy"), eta=cfg.eta, norm_c=cfg.norm_c,
        logit_space_agreement=agreement, kappa_prime_vs_beta=grid, protocols=dict(paper=paper, real_attack=sweep),
        train_config=info.get("config"),
        time_s=dict(train_or_load=t_train, experiment=time.perf_counter() - t0 - t_train),
    )


def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Table 2 at ``cfg``: one row per network; ``done`` holds the "done" criterion's numbers."""
    rows = C.over_models(lambda m, s: table2_model(m, s, cfg, progress=progress),
                         cfg.models, seeds=cfg.seeds, progress=progress, desc=name,
                         out=out)
    return C.table_results(cfg, rows, key="kappa_prime", base="kappa_prime_first_order", eta=cfg.eta,
                           sweep_steps=cfg.sweep_steps, A_targets=list(cfg.A_targets),
                           norm_c=cfg.norm_c, binary=list(BINARY))


# claims(results): :mod:`.claims`; plot(results, out): :mod:`.plot` (imported above)
