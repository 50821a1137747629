"""Every attack: the shared m-step loop, raw / ℓ2 / ℓ∞ / PGD (:mod:`.multistep`), the traced variants
of Appendix D (:mod:`.variants`), the gradient flow of A3 (:mod:`.flow`), APGD and the batch entry
points (:mod:`.batch`), and robust accuracy (:mod:`.robust`).

The public surface is :data:`__all__`: the submodules, and the names below, each imported from its
module on first use (so that importing the package stays light and no import cycle can form).
"""

from __future__ import annotations

import importlib

#: submodules
SUBMODULES = ('apgd_attack', 'batch', 'flow', 'multistep', 'robust', 'variants',)

#: public name -> the submodule that defines it
_API: dict[str, str] = {
    **dict.fromkeys((
        'ApgdResult', 'LOSSES', 'apgd_example', 'apgd_restarts', 'check_loss', 'checkpoints', 'dlr_loss',
        'dlr_loss_targeted'
    ), 'apgd_attack'),
    **dict.fromkeys(('BatchAttack', 'apgd', 'example_keys', 'per_example_fn', 'pgd_batch'), 'batch'),
    **dict.fromkeys((
        'FAILED', 'FlowResult', 'INVALID', 'MAX_STEPS', 'ODESolution', 'OK', 'STATUS', 'dopri5', 'gradient_flow',
        'logit_space_flow'
    ), 'flow'),
    **dict.fromkeys((
        'AttackResult', 'SuccessStep', 'attack', 'calibrate_raw_alpha', 'logit_space_attack', 'pgd', 'sample_ball'
    ), 'multistep'),
    **dict.fromkeys(('ATTACKS', 'RobustAccuracy', 'robust_accuracy'), 'robust'),
    **dict.fromkeys(('variant', 'variant_attack'), 'variants'),
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
