"""Helpers shared by the experiments (private: the experiments' own toolbox, not public API).

One namespace (``from jaxdyn.experiments import _common as C``) over four files: generic helpers
(:mod:`.core`), the checks of JSON-valued fields (:mod:`.fields`), what the tables share (:mod:`.tables`)
and what Figures 3-4 share
(:mod:`.binary_influence`). No experiment imports another experiment: what two of them share lives here
or in the engine.

The public surface is :data:`__all__`: the names below, each imported from its module on first use
(:func:`jaxdyn._internal.lazy.attach`), and the submodules.
"""

from __future__ import annotations

from jaxdyn._internal.lazy import attach

#: submodules
SUBMODULES = ('binary_influence', 'core', 'fields', 'tables',)

#: public name -> the submodule that defines it
_API: dict[str, str] = {
    **dict.fromkeys(('BINARY_INFLUENCE_SCALES', 'BinaryInfluenceConfig', 'binary_influence_runs', 'rank_claim',
                     'rho_claim'), 'binary_influence'),
    **dict.fromkeys((
        'FIG5_ADV', 'FIGURE_ADV_BINARY', 'FIGURE_VANILLA', 'NetworksConfig', 'SCALES', 'TABLE_TRAIN', 'by_piece',
        'check_models', 'chunked', 'correct_subset', 'enable_x64', 'fixed_digits', 'fmt', 'fmt_sci', 'help_field',
        'load_model', 'make_config', 'md_table', 'progress_bar', 'save_figure', 'seeds_text', 'train_summary'
    ), 'core'),
    **dict.fromkeys(('TRAIN_KEYS', 'check_json_fields', 'check_keys', 'check_train_kwargs', 'did_you_mean'), 'fields'),
    **dict.fromkeys((
        'BEATS_FIRST_ORDER', 'ERROR_SMALL', 'FREE_CONTROL', 'QUICK_TABLE_MODELS', 'TABLE_LABELS', 'TABLE_MODELS',
        'TableAttackConfig', 'TableConfig', 'check_fields', 'check_table_models', 'done_criterion', 'over_models',
        'regime_point', 'regime_verdict_pairs', 'table_claims', 'table_results'
    ), 'tables'),
}

__getattr__, __dir__, __all__ = attach(__name__, _API, SUBMODULES)
