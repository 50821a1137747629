"""Property-based testing for jaxdyn and for your own models (``docs/testing.md``).

* :mod:`jaxdyn.testing.checkers` / :mod:`jaxdyn.testing.laws`: ``assert_*`` property checkers
  usable on any per-example logits function ``f`` (no hypothesis needed);
* :mod:`jaxdyn.testing.nets`: small random piecewise-affine networks (:class:`NetSpec`,
  :func:`build`), a plain-JAX MLP, :class:`QuadraticLoss`;
* :mod:`jaxdyn.testing.strategies`: hypothesis strategies. It needs the ``test`` extra
  (``pip install -e ".[test]"`` in a clone of the repository) and is imported only when one of its
  names is first used, so ``import jaxdyn.testing`` works without hypothesis.

The checks are numerical identities in float64: enable ``jax_enable_x64`` first.
"""

from __future__ import annotations

import importlib

from jaxdyn.testing.checkers import (RTOL, assert_batch_equals_loop, assert_close, assert_frozen_equals_logit_space,
                                     assert_in_ball, assert_no_retrace, assert_piecewise_affine,
                                     assert_theorem2_paths_agree, rtol_for)
from jaxdyn.testing.laws import (assert_c3_limits, assert_eqs_9_to_11_exact, assert_l2_start_uniform,
                                 assert_lemma1, assert_linf_steps_exact, assert_loss_derivatives,
                                 assert_quadratic_loss_exact)
from jaxdyn.testing.nets import (ARCHS, HEADS, SHAPES, NetSpec, QuadraticLoss, apply_fn, build, kink_margin,
                                 label_for, logits, plain_mlp, random_input)

_STRATEGIES = ("Problem", "net_specs", "networks", "logits_fns", "inputs", "labels", "problems", "betas",
               "step_counts", "norms", "epsilons", "quadratic_losses", "cross_entropies", "losses_in_z",
               "logit_vectors")

__all__ = [
    "ARCHS", "HEADS", "NetSpec", "Problem", "QuadraticLoss", "RTOL", "SHAPES", "apply_fn",
    "assert_batch_equals_loop", "assert_c3_limits", "assert_close", "assert_eqs_9_to_11_exact",
    "assert_frozen_equals_logit_space", "assert_in_ball", "assert_l2_start_uniform", "assert_lemma1",
    "assert_linf_steps_exact", "assert_loss_derivatives", "assert_no_retrace", "assert_piecewise_affine",
    "assert_quadratic_loss_exact", "assert_theorem2_paths_agree", "betas", "build", "cross_entropies", "epsilons",
    "inputs", "kink_margin", "label_for", "labels", "logit_vectors", "logits", "logits_fns", "losses_in_z",
    "net_specs", "networks", "norms", "plain_mlp", "problems", "quadratic_losses", "random_input", "rtol_for",
    "step_counts", "strategies"
]


def __getattr__(name: str):
    if name == "strategies" or name in _STRATEGIES:
        mod = importlib.import_module("jaxdyn.testing.strategies")
        value = mod if name == "strategies" else getattr(mod, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jaxdyn.testing' has no attribute {name!r}")
