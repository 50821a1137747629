"""Every training preset of the reproduction, in one place (plain dicts: no jax here).

Each preset is keyword arguments of :func:`jaxdyn.training.load_or_train` (the fields of
:class:`~jaxdyn.training.TrainConfig` but ``model``); the per-scale ones are dicts
``{"tiny": ..., "quick": ..., "full": ...}``. Who uses which:

===================  ==========================================================================
``QUICK``            per model, the quick scale of Tables 1-2 and Appendix D, the ``kappa-sweep``
                     command, ``train --quick`` and ``benchmarks/pgd_torch.py`` (through
                     :func:`quick_config`, with ``QUICK_EVAL`` and, when adversarial, ``QUICK_ADV``)
``TABLE``            Tables 1 and 2 (``table1``/``table2``) and Appendix D (``appendix``), per scale:
                     ``"quick"`` means :func:`quick_config`, with ``TABLE_OVERRIDES["quick"]``
                     (Table 2 adds ``binary=(3, 5)`` and, but at the tiny scale, ``adv="pgd-linf"``)
``FIGURE_VANILLA``   the standard training of the 10-class networks of Figs. 2 and 5 (``fig2``,
                     ``fig5``; one config, so both figures share the cached models)
``FIG3_ADV``         the adversarial training (PGD-ℓ∞, binary 3 vs 5) of Figs. 3 and 4 (``fig3``,
                     ``fig4``)
``FIG5_ADV``         the adversarial training (PGD-ℓ∞, 10 classes) of Fig. 5 (``fig5``)
===================  ==========================================================================

The model width of a figure is a choice of the figure (its ``SCALES``), not of the preset: pass it
as an override, ``get("figure-vanilla", model="cnn3", scale="tiny", width=1 / 16)``.
"""

from __future__ import annotations

__all__ = ["QUICK", "QUICK_ADV", "QUICK_EVAL", "quick_config", "TABLE", "TABLE_OVERRIDES",
           "FIGURE_VANILLA", "FIG3_ADV", "FIG5_ADV", "PRESETS", "get"]

# --- the quick scale -------------------------------------------------------------------------
#: Settings per model that train everything Tables 1-2 need (mlp3/4/5, cnn3/4/5, rescnn3/4/5/10,
#: 10-class and binary 3-vs-5) on 2 CPU cores in minutes: one epoch of Adam at 3e-3 decayed to 0
#: on a cosine; the MLPs at full width on the full training set (cheap), the convolutional nets at
#: half width on a fixed 10k subset. See docs/models.md for the accuracies and timings it gives.
_QUICK_OPT = dict(epochs=1, lr=3e-3, schedule="cosine")
QUICK: dict[str, dict] = {
    **{f"mlp{n}": dict(width=1.0, n_train=None, batch_size=128, **_QUICK_OPT) for n in (3, 4, 5)},
    **{f"cnn{n}": dict(width=0.5, n_train=10_000, batch_size=64, **_QUICK_OPT) for n in (3, 4, 5)},
    **{f"rescnn{n}": dict(width=0.5, n_train=10_000, batch_size=64, **_QUICK_OPT) for n in (3, 4, 5, 10)},
}
#: adversarial training at the quick scale (Table 2 uses the binary task): each example costs
#: adv_steps + 1 passes, so a fixed 2k subset, two epochs of batches of 32, 7 PGD steps, and ε
#: ramped up over the first half of the steps (without the ramp every quick model collapsed to
#: a constant classifier, docs/models.md)
QUICK_ADV = dict(n_train=2_000, epochs=2, batch_size=32, adv_steps=7, eps_warmup=0.5)
#: robust accuracy (PGD-40 l-inf, eps 0.3) on a fixed 200-example test subset
QUICK_EVAL = dict(n_eval_robust=200)


def quick_config(name: str, *, binary=None, adv=None, eps=None, seed: int = 0) -> dict:
    """Keyword arguments of :func:`load_or_train` for ``name`` at the quick scale."""
    if name not in QUICK:
        raise ValueError(f"no quick preset for {name!r}; presets: {', '.join(sorted(QUICK))}")
    kw = dict(QUICK[name], binary=binary, adv=adv, eps=eps, seed=seed, **QUICK_EVAL)
    if adv is not None:
        kw.update(QUICK_ADV)
    return kw


# --- Tables 1-2 and Appendix D ---------------------------------------------------------------
#: the networks of Tables 1-2 and Appendix D, per scale (``"quick"``: :func:`quick_config`)
TABLE = {
    "tiny": dict(width=1 / 16, epochs=1, n_train=512, batch_size=64, n_eval_robust=0),
    "quick": "quick",
    "full": dict(width=1.0, epochs=10, n_train=None, batch_size=128),
}
#: updates of :data:`TABLE` per scale: the quick preset's PGD-40 robust evaluation costs about as
#: much as the quick training of a conv net and no table uses it
TABLE_OVERRIDES = {"tiny": {}, "quick": dict(n_eval_robust=0), "full": {}}

# --- Figures 2-5 -----------------------------------------------------------------------------
#: standard (vanilla) training of the 10-class networks of Figs. 2 and 5, per scale
FIGURE_VANILLA = {
    "tiny": dict(n_train=256, epochs=1, batch_size=64, lr=1e-3, n_eval_robust=0),
    "quick": dict(n_train=10_000, epochs=1, batch_size=128, lr=1e-3, n_eval_robust=0),
    "full": dict(n_train=None, epochs=10, batch_size=128, lr=1e-3, n_eval_robust=1000),
}

#: adversarial training of the networks of Figs. 3-5 at the quick and full scales (ℓ∞ PGD, ε ramped
#: up over the first steps and a cosine learning-rate decay against collapse); quick ``lr`` 5e-4:
#: at 1e-3 (without the ramp) the quick AlexNet collapsed to a constant classifier
_FIGURE_ADV = {
    "quick": dict(adv="pgd-linf", eps=0.1, adv_steps=3, eps_warmup=0.5, batch_size=64, lr=5e-4,
                  schedule="cosine", n_train=5000, epochs=1, n_eval_robust=0),
    "full": dict(adv="pgd-linf", eps=0.3, adv_steps=10, eps_warmup=0.3, batch_size=128, lr=1e-3,
                 schedule="cosine", n_train=None, epochs=10, n_eval_robust=1000),
}

#: adversarial training of the binary (3 vs 5) networks of Figs. 3-4
FIG3_ADV = {
    "tiny": dict(_FIGURE_ADV["quick"], binary=(3, 5), n_train=256, adv_steps=1, eps=0.05),
    "quick": dict(_FIGURE_ADV["quick"], binary=(3, 5)),
    "full": dict(_FIGURE_ADV["full"], binary=(3, 5)),
}

#: adversarial training of the 10-class networks of Fig. 5 (its λ_max is tracked along training);
#: the tiny scale (tests) has neither ramp nor schedule. Quick: the figures' preset collapsed the
#: 10-class VGG-11 (test accuracy 0.52, below ``claims.ACCURACY_FLOOR``); chosen by test accuracy
#: alone (VGG-11, width 1/8, seed 0; 2 PGD steps): lr 1e-3 on 5k digits 0.56, lr 2e-3 0.56, lr 1e-3 in
#: batches of 32 0.75, lr 1e-3 on 10k digits in batches of 64 (156 steps) 0.83 (seed 1: 0.83) -- the last
FIG5_ADV = {
    "tiny": dict(adv="pgd-linf", eps=0.1, adv_steps=1, n_train=256, epochs=1, batch_size=64, lr=5e-4,
                 n_eval_robust=0),
    "quick": dict(_FIGURE_ADV["quick"], lr=1e-3, adv_steps=2, n_train=10_000),
    "full": _FIGURE_ADV["full"],
}

#: the per-scale presets by name, for :func:`get`
PRESETS = {"table": TABLE, "figure-vanilla": FIGURE_VANILLA, "fig3-adv": FIG3_ADV, "fig5-adv": FIG5_ADV}
_OVERRIDES = {"table": TABLE_OVERRIDES}


def get(preset, *, model: str, scale: str, binary=None, adv=None, seed: int = 0, **overrides) -> dict:
    """Keyword arguments of :func:`load_or_train` (``model`` apart) for ``model`` at ``scale``.

    Args:
      preset: a name of :data:`PRESETS` (``"table"``, ``"figure-vanilla"``, ``"fig3-adv"``,
        ``"fig5-adv"``), ``"quick"`` (:func:`quick_config` at every scale) or a dict
        ``{scale: kwargs or "quick"}``.
      binary, adv: set when given (a preset's own ``binary``/``adv`` is kept otherwise).
      seed: the training seed.
      overrides: other fields of :class:`~jaxdyn.training.TrainConfig`, applied last
        (e.g. the ``width`` of a figure's networks).
    """
    table = _table(preset)
    if scale not in table:
        raise ValueError(f"no scale {scale!r} in preset {preset!r}; scales: {', '.join(table)}")
    entry = table[scale]
    if entry == "quick":
        kw = quick_config(model, binary=binary, adv=adv, seed=seed)
    else:
        kw = dict(entry, seed=seed)
        kw.update({k: v for k, v in (("binary", binary), ("adv", adv)) if v is not None})
    if isinstance(preset, str):
        kw.update(_OVERRIDES.get(preset, {}).get(scale, {}))
    kw.update(overrides)
    return kw


def _table(preset) -> dict:
    if isinstance(preset, dict):
        return preset
    if preset == "quick":
        return {"tiny": "quick", "quick": "quick", "full": "quick"}
    if preset not in PRESETS:
        raise ValueError(f"unknown training preset {preset!r}; presets: quick, {', '.join(PRESETS)}")
    return PRESETS[preset]
