"""Hypothesis strategies for jaxdyn property tests (needs the ``test`` extra: ``hypothesis``).

Draws are cheap and few-shaped: architectures come from a small catalogue
(:data:`~jaxdyn.testing.nets.ARCHS` by default, each with a head size from
:data:`~jaxdyn.testing.nets.HEADS`), inputs from :data:`~jaxdyn.testing.nets.SHAPES`, step counts
from a short fixed list; only the values (parameters, pixels, β, ε) vary freely, so a jitted
check compiles once per architecture. Everything is float64 (enable ``jax_enable_x64``).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from hypothesis import assume, strategies as st

from jaxdyn.core import losses
from jaxdyn.testing import nets
import math

__all__ = ["Problem", "net_specs", "networks", "logits_fns", "inputs", "labels", "problems", "betas",
           "step_counts", "norms", "epsilons", "quadratic_losses", "cross_entropies", "losses_in_z",
           "logit_vectors"]

seeds = st.integers(0, 2**31 - 1)


def net_specs(archs=nets.ARCHS, heads=nets.HEADS, shapes=(nets.SHAPES[0],)):
    """A :class:`~jaxdyn.testing.nets.NetSpec` from ``archs`` with a head from ``heads`` and an
    input shape from ``shapes``."""
    return st.builds(lambda a, C, s: dataclasses.replace(a, num_classes=C, shape=tuple(s)),
                     st.sampled_from(archs), st.sampled_from(heads), st.sampled_from(shapes))


def networks(specs=None):
    """``(model, variables)``: a random float64 piecewise-affine Flax network."""
    specs = net_specs() if specs is None else specs
    return st.builds(nets.build, specs, seeds)


def logits_fns(specs=None, *, plain: bool | None = None):
    """A per-example logits function ``f(x) -> z``: a Flax network bound to its variables, or
    (``plain=True``, or drawn when ``None``) a ReLU MLP written in plain JAX."""
    specs = net_specs() if specs is None else specs
    flax_f = st.builds(lambda s, k: nets.logits(s, nets.build(s, k)[1]), specs, seeds)
    plain_f = st.builds(lambda k, C: jax.tree_util.Partial(nets._plain_apply, nets.plain_mlp(k, num_classes=C)[1]),
                        seeds, st.sampled_from(nets.HEADS))
    if plain is None:
        return st.one_of(flax_f, plain_f)
    return plain_f if plain else flax_f


def inputs(shape=nets.SHAPES[0], *, lo: float = 0.0, hi: float = 1.0):
    """A uniform float64 image of ``shape`` in ``[lo, hi]`` (continuous: no ReLU or max-pool ties
    with probability one; :func:`~jaxdyn.testing.nets.kink_margin` reports the distance)."""
    return seeds.map(lambda k: lo + (hi - lo) * nets.random_input(k, shape))


def labels(num_classes: int):
    """A label valid for the head: ``±1.0`` for ``num_classes == 1``, else an int in range."""
    if num_classes == 1:
        return st.sampled_from([1.0, -1.0]).map(jnp.float64)
    return st.integers(0, num_classes - 1).map(jnp.int32)


class Problem(NamedTuple):
    """One drawn test case: the network (``spec``, ``model``, ``variables``; ``apply`` is the
    per-spec stable ``apply(variables, x)``, ``f`` the bound logits), one input, a valid label and
    the input's distance to the nearest ReLU kink."""

    spec: nets.NetSpec
    model: object
    variables: dict
    apply: object
    f: object
    x: jax.Array
    y: jax.Array
    kink_margin: float
    seed: int = 0

    def __repr__(self):
        return f"Problem({self.spec}, seed={self.seed}, y={self.y!r}, kink_margin={self.kink_margin:.3g})"


@st.composite
def problems(draw, specs=None, *, min_margin: float = 0.0):
    """A :class:`Problem`. ``min_margin > 0`` rejects inputs closer than that to a kink."""
    spec = draw(net_specs() if specs is None else specs)
    seed = draw(seeds)
    model, variables = nets.build(spec, seed)
    x = draw(inputs(spec.shape))
    margin = nets.kink_margin(model, variables, x)
    assume(margin >= min_margin)
    return Problem(spec, model, variables, nets.apply_fn(spec), nets.logits(spec, variables), x,
                   draw(labels(spec.num_classes)), margin, seed)


def betas(lo: float = 1e-3, hi: float = 3.0):
    """An attack strength β, log-uniform in ``[lo, hi]``."""

    return st.floats(math.log(lo), math.log(hi)).map(lambda t: float(math.exp(t)))


def step_counts(choices=(1, 5, 20)):
    """A step count from a short fixed list (steps are static: each value compiles once)."""
    return st.sampled_from(choices)


def norms(choices=("raw", "l2", "linf")):
    return st.sampled_from(choices)


def epsilons(norm: str = "linf"):
    """An ε-ball radius suited to ``norm`` for ``[0, 1]`` images of the default shape."""
    return st.floats(0.01, 0.5) if norm == "linf" else st.floats(0.05, 3.0)


def quadratic_losses(num_classes: int):
    """A :class:`~jaxdyn.testing.nets.QuadraticLoss` (constant PSD ``H_z``, where Theorems 1-5
    are exact under A2)."""
    return seeds.map(lambda k: nets.QuadraticLoss.random(k, num_classes))


def cross_entropies():
    """The cross-entropy of :mod:`jaxdyn.core.losses` (softmax or sigmoid by the head size)."""
    return st.just(losses.loss)


def losses_in_z(num_classes: int):
    """A quadratic loss or the cross-entropy."""
    return st.one_of(quadratic_losses(num_classes), cross_entropies())


def logit_vectors(num_classes: int, bound: float = 10.0):
    """A float64 logit vector ``[C]`` with entries in ``[-bound, bound]``."""
    return st.lists(st.floats(-bound, bound), min_size=num_classes, max_size=num_classes).map(
        lambda v: jnp.asarray(v, jnp.float64))
