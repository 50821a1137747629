"""Every attack: the shared m-step loop, raw / ℓ2 / ℓ∞ / PGD (:mod:`.multistep`), the traced variants
of Appendix D (:mod:`.variants`), the gradient flow of A3 (:mod:`.flow`), the norm-traced
attack of Fig. 2 (:mod:`.traced`), APGD and the batch entry
points (:mod:`.batch`), and robust accuracy (:mod:`.robust`).

The public surface is :data:`__all__`: the names below, each imported from its module on first use
(:func:`jaxdyn._internal.lazy.attach`), and the submodules.
"""

from __future__ import annotations

from jaxdyn._internal.lazy import attach

#: submodules
SUBMODULES = ('apgd_attack', 'batch', 'flow', 'multistep', 'robust', 'traced', 'variants',)

#: public name -> the submodule that defines it
_API: dict[str, str] = {
    **dict.fromkeys((
        'ApgdResult', 'LOSSES', 'apgd_example', 'apgd_restarts', 'check_loss', 'checkpoints', 'dlr_loss',
        'dlr_loss_targeted'
    ), 'apgd_attack'),
    **dict.fromkeys(('BatchAttack', 'apgd', 'example_keys', 'per_example_fn', 'pgd_batch'), 'batch'),
    **dict.fromkeys(('FlowResult', 'FlowStatus', 'gradient_flow', 'logit_space_flow'), 'flow'),
    **dict.fromkeys((
        'AttackResult', 'SuccessStep', 'attack', 'calibrate_raw_alpha', 'logit_space_attack', 'pgd', 'sample_ball'
    ), 'multistep'),
    **dict.fromkeys(('ATTACKS', 'RobustAccuracy', 'robust_accuracy'), 'robust'),
    **dict.fromkeys(('TRACE_KEYS', 'free_attack_traced_norm'), 'traced'),
    **dict.fromkeys(('variant', 'variant_attack'), 'variants'),
}

__getattr__, __dir__, __all__ = attach(__name__, _API, SUBMODULES)
