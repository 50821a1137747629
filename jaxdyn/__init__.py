"""jaxdyn: the dynamics of multi-step adversarial attacks and of adversarial training, in JAX.

A reproduction and extension of Cheng et al., "Clarifying the Behavior and the Difficulty of
Adversarial Training", AAAI 2024. See ``docs/design.md`` for the conventions.

The public API is :data:`__all__`: the names most users need, each imported from its module on
first use (:func:`jaxdyn._internal.lazy.attach`), so that ``import jaxdyn`` stays light (no jax,
no optax until a function is touched), and the role packages (``docs/design.md``, "Layout").
"""

from __future__ import annotations

from jaxdyn._internal.lazy import attach
from jaxdyn._version import __version__

#: public name -> the module that defines it
_API: dict[str, str] = {
    **dict.fromkeys(("AttackResult", "attack", "logit_space_attack", "pgd"), "jaxdyn.attacks.multistep"),
    **dict.fromkeys(("BatchAttack", "apgd", "pgd_batch"), "jaxdyn.attacks.batch"),
    **dict.fromkeys(("binary_task", "load_mnist", "subset"), "jaxdyn.datasets.loading"),
    **dict.fromkeys(("FlowResult", "FlowStatus", "gradient_flow", "logit_space_flow"), "jaxdyn.attacks.flow"),
    **dict.fromkeys(("flip_fraction", "freeze", "input_jacobian"), "jaxdyn.core.gating"),
    **dict.fromkeys(("hbar_x_dense", "hvp", "input_hessian", "input_hessian_structured", "top_eigenpairs"),
                    "jaxdyn.core.hessian"),
    **dict.fromkeys(("grad_z", "hessian_z", "loss"), "jaxdyn.core.losses"),
    **dict.fromkeys(("kappa", "kappa_first_order", "kappa_prime", "one_minus_cos", "cosine", "spearman"),
                    "jaxdyn.analyses.metrics"),
    **dict.fromkeys(("theorem3", "theorem4", "theorem5"), "jaxdyn.core.influence"),
    **dict.fromkeys(("cast", "get_model", "init_variables", "logits_fn", "model_names"), "jaxdyn.core.models"),
    **dict.fromkeys(("RobustAccuracy", "robust_accuracy"), "jaxdyn.attacks.robust"),
    **dict.fromkeys(("shard_batch",), "jaxdyn._internal.sharding"),
    **dict.fromkeys(("predict", "prepare", "match_beta", "structured_eigenpairs", "theorem1", "theorem1_eig",
                     "theorem2", "theorem2_eig", "theorem1_norms", "theorem2_norms"), "jaxdyn.core.theory"),
    **dict.fromkeys(("load_or_train", "load_run"), "jaxdyn.training"),
}

#: the role packages, public too
SUBMODULES = ("core", "attacks", "analyses", "datasets", "training", "experiments", "testing", "cli")

__getattr__, __dir__, _names = attach(__name__, _API, SUBMODULES)
__all__ = _names + ["__version__"]
