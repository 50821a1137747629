"""jaxdyn: the dynamics of multi-step adversarial attacks and of adversarial training, in JAX.

A reproduction and extension of Cheng et al., "Clarifying the Behavior and the Difficulty of
Adversarial Training", AAAI 2024. See ``docs/design.md`` for the conventions.
"""

from jaxdyn.attacks import AttackResult, attack, logit_space_attack, pgd
from jaxdyn.data import binary_task, load_mnist, subset
from jaxdyn.gating import flip_fraction, freeze, input_jacobian
from jaxdyn.hessian import hbar_x_dense, hvp, input_hessian, input_hessian_structured, top_eigenpairs
from jaxdyn.losses import grad_z, hessian_z, loss
from jaxdyn.metrics import kappa, kappa_first_order, kappa_prime, one_minus_cos
from jaxdyn.influence import theorem3, theorem4, theorem5
from jaxdyn.models import cast, get_model, init_variables, logits_fn, model_names
from jaxdyn.sharding import shard_batch
from jaxdyn.theory import predict, structured_eigenpairs, theorem1, theorem1_eig, theorem2, theorem2_eig

from jaxdyn.training import load_or_train

__version__ = "0.1.0"
