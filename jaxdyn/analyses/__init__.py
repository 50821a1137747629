"""The analyses behind the paper's tables and figures: attack-regime sweeps, Table 2's real-attack
measurement, Figure 2's growth runs and fits, Figures 3-4's binary-network influence and its rank
statistics, weight-gradient instability and curvature, error metrics, rank statistics and the verdict
statistics.

The public surface is :data:`__all__`: the names below, each imported from its module on first use
(:func:`jaxdyn._internal.lazy.attach`), and the submodules.
"""

from __future__ import annotations

from jaxdyn._internal.lazy import attach

#: submodules
SUBMODULES = ('curvature', 'growth', 'growth_runs', 'influence_measure', 'influence_ranks', 'instability',
              'kappa_beta', 'metrics', 'progress', 'real_attack', 'regimes', 'regimes_ode', 'stats',
              'table1_protocol', 'table1_verdicts', 'variant_matching', 'verdicts',)

#: public name -> the submodule that defines it
_API: dict[str, str] = {
    **dict.fromkeys((
        'FamilyVerdict', 'KINDS', 'VERDICT_TESTS', 'compare_networks', 'layer_inputs', 'layer_outputs',
        'factor_log_ratios', 'row_curvature', 'summarize_sharpness', 'verdict', 'verdict_tests'
    ), 'curvature'),
    **dict.fromkeys((
        'CAUSE_VALUES', 'CLAIMS', 'DR2_THRESHOLD', 'N_RESAMPLES', 'RATE_CONST', 'RATE_FACTOR', 'STAT_NAMES',
        'bootstrap_test', 'cell_family', 'claim_statistics', 'digit_values', 'finite_count', 'summarize_run'
    ), 'growth'),
    **dict.fromkeys((
        'growth_attack_fn', 'growth_curves', 'growth_free_attack_fn', 'growth_theory_fn', 'norm_fits', 'relative_grid'
    ), 'growth_runs'),
    **dict.fromkeys(('binary_influence', 'first_layer_size', 'influence_baselines'), 'influence_measure'),
    **dict.fromkeys((
        'COSINES', 'FIRST_ORDER', 'X_COUNTED', 'X_KEYS', 'Y_KEYS', 'dominance', 'dominance_controls', 'group_curve',
        'influence_controls', 'influence_correlations'
    ), 'influence_ranks'),
    **dict.fromkeys((
        'CONTROLS', 'LEGACY_CONTROLS', 'MATCH_TOL', 'MIN_DIGITS', 'N_RESAMPLES', 'VERDICT_CONTROLS',
        'bootstrap_family', 'bootstrap_test', 'control_tests', 'instability', 'log_ratios', 'match_by_loss',
        'random_direction', 'random_loss_matched', 'read_controls', 'summarize_instability'
    ), 'instability'),
    **dict.fromkeys(('LONG_WORK', 'kappa_vs_beta'), 'kappa_beta'),
    **dict.fromkeys((
        'LayerTest', 'cosine', 'fit_linear', 'fit_log_linear', 'growth_fits', 'kappa', 'kappa_first_order',
        'kappa_prime', 'one_minus_cos', 'paired_log_excess', 'per_sample_norm', 'spearman',
        'weight_gradient_instability'
    ), 'metrics'),
    **dict.fromkeys((
        'EQUATIONS', 'L2_STEP_FACTOR', 'PAPER_FIELDS', 'PaperProtocol', 'RECORD_FIELDS', 'attack_influence',
        'beta_for_A', 'delta_hat_norm', 'delta_hat_phi', 'digit_errors', 'eq11_kappa', 'eq11_predict',
        'l2_attack_phi', 'make_batch_fn', 'make_sweep_fn', 'paper_kappa',
        'paper_protocol', 'real_attack_kappa', 'real_attack_phi', 'real_attack_sweep'
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
        'C3_MAX_COS', 'C3_MIN_DIGITS', 'c3_turns', 'make_prep_fn', 'measure'
    ), 'table1_protocol'),
    **dict.fromkeys((
        'ATTACK_FLIPS', 'EpsMatch', 'FIG1_MODEL', 'FIG1_VARIANTS', 'GATINGS', 'GatingMatch', 'PGD_DIGIT_KEYS',
        'PGD_VARIANTS', 'RAW_DIGIT_KEYS', 'RawFlips', 'appendix_j', 'attack_row', 'digit_ratio', 'digit_split',
        'fig1_raw', 'flip_rate', 'make_fig1_fn', 'make_pgd_fn', 'make_raw_free_fn', 'match_eps_grid',
        'match_variants', 'pgd_fns', 'raw_free_rows', 'summarize_matching'
    ), 'variant_matching'),
    **dict.fromkeys((
        'Interval', 'Verdict', 'bootstrap_draws', 'combine', 'decide', 'hierarchical_bootstrap', 'holm',
        'holm_verdicts', 'per_seed', 'pvalue_verdict', 'side_verdict', 'statistic_record'
    ), 'verdicts'),
}

__getattr__, __dir__, __all__ = attach(__name__, _API, SUBMODULES)
