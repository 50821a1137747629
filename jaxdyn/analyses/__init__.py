"""The analyses behind the paper's tables and figures: attack-regime sweeps, Table 2's real-attack
measurement, growth fits, weight-gradient instability and curvature, error metrics, rank statistics
and the verdict statistics.

The public surface is :data:`__all__`: the submodules, and the names below, each imported from its
module on first use (so that importing the package stays light and no import cycle can form).
"""

from __future__ import annotations

import importlib

#: submodules
SUBMODULES = ('curvature', 'growth', 'instability', 'metrics', 'real_attack', 'regimes', 'regimes_ode', 'stats',
              'variant_matching', 'verdicts',)

#: public name -> the submodule that defines it
_API: dict[str, str] = {
    **dict.fromkeys((
        'KINDS', 'VERDICT_TESTS', 'compare_networks', 'describe', 'layer_inputs', 'layer_outputs', 'row_curvature',
        'verdict', 'verdict_tests'
    ), 'curvature'),
    **dict.fromkeys((
        'R2_EXP', 'RATE_CONST', 'RATE_FACTOR', 'RATE_FACTOR_LOOSE', 'classify_cell', 'growth_verdict', 'rate_verdict',
        'summarize_run'
    ), 'growth'),
    **dict.fromkeys((
        'CONTROLS', 'LEGACY_CONTROLS', 'MATCH_TOL', 'VERDICT_CONTROLS', 'instability', 'match_by_loss',
        'random_direction', 'random_loss_matched', 'read_controls', 'summarize_instability'
    ), 'instability'),
    **dict.fromkeys((
        'cosine', 'fit_linear', 'fit_log_linear', 'kappa', 'kappa_first_order', 'kappa_prime', 'one_minus_cos',
        'per_sample_norm', 'spearman', 'weight_gradient_instability'
    ), 'metrics'),
    **dict.fromkeys((
        'EQUATIONS', 'L2_STEP_FACTOR', 'PAPER_FIELDS', 'PaperProtocol', 'RECORD_FIELDS', 'attack_influence',
        'delta_hat_norm', 'delta_hat_phi', 'eq11_kappa', 'eq11_predict', 'l2_attack_phi', 'make_batch_fn',
        'make_sweep_fn', 'paper_kappa', 'paper_protocol', 'real_attack_kappa', 'real_attack_phi', 'real_attack_sweep'
    ), 'real_attack'),
    **dict.fromkeys((
        'C3_FIELDS', 'FREE_FIELDS', 'ODE_FIELDS', 'ROW_FIELDS', 'compare', 'convergence', 'free_example',
        'frozen_example', 'ode_compare', 'ode_free_example', 'ode_frozen_example', 'summarize_ode', 'sweep'
    ), 'regimes'),
    **dict.fromkeys((
        'cos_to_mean', 'finite_median', 'gaussian_rows', 'norm_only_null', 'null_summary', 'paired',
        'partial_spearman', 'spearman_rows'
    ), 'stats'),
    **dict.fromkeys((
        'ATTACK_FLIPS', 'appendix_j', 'attack_row', 'flip_rate', 'make_fig1_fn', 'make_pgd_fn', 'make_raw_free_fn'
    ), 'variant_matching'),
    **dict.fromkeys((
        'Interval', 'Verdict', 'combine', 'hierarchical_bootstrap', 'holm', 'per_seed', 'pvalue_verdict',
        'side_verdict', 'statistic_record'
    ), 'verdicts'),
}

__all__ = sorted(_API) + list(SUBMODULES)


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    elif name in SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
