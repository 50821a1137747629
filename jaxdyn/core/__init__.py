"""The theory engine: losses in logit space, ReLU gating (A2), curvature, Theorems 1-5, models and
parameter trees. Everything here works on one example and a per-example logits function ``f``.

The public surface is :data:`__all__`: the names below, each imported from its module on first use
(:func:`jaxdyn._internal.lazy.attach`), and the submodules.
"""

from __future__ import annotations

from jaxdyn._internal.lazy import attach

#: submodules
SUBMODULES = ('gating', 'hessian', 'influence', 'losses', 'models', 'params', 'theory',)

#: public name -> the submodule that defines it
_API: dict[str, str] = {
    **dict.fromkeys(('GATINGS', 'flip_fraction', 'freeze', 'gate_pattern', 'input_jacobian'), 'gating'),
    **dict.fromkeys((
        'hbar_x_dense', 'hessian_z', 'hessian_z_autodiff', 'hvp', 'input_hessian', 'input_hessian_structured',
        'param_hessian_top_eigenvalue', 'top_eigenpairs'
    ), 'hessian'),
    **dict.fromkeys((
        'Measurement', 'first_layer_fn', 'first_layer_output_grad', 'first_layer_path', 'get_param', 'influence_A',
        'influence_A_clean', 'measure', 'phi_dense', 'phi_one_scalar', 'set_param', 'theorem3', 'theorem4',
        'theorem5', 'u_map'
    ), 'influence'),
    **dict.fromkeys(('grad_z', 'is_success', 'loss'), 'losses'),
    **dict.fromkeys((
        'AlexNet', 'CNN', 'MLP', 'ResCNN', 'ResNet', 'TwoLayer', 'VGG', 'cast', 'get_model', 'init_variables',
        'logits_fn', 'model_names', 'param_count', 'register', 'relu'
    ), 'models'),
    **dict.fromkeys(('layer_paths',), 'params'),
    **dict.fromkeys((
        'ExamplePrediction', 'NormCurve', 'Prediction', 'clean_alignment', 'hbar_z_weighted', 'lemma1_sigmoid_margin',
        'match_beta', 'normalized', 'phi', 'predict', 'prepare', 'structured_eigenpairs', 'theorem1', 'theorem1_eig',
        'theorem1_norms', 'theorem2', 'theorem2_eig', 'theorem2_norms'
    ), 'theory'),
}

__getattr__, __dir__, __all__ = attach(__name__, _API, SUBMODULES)
