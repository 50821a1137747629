"""Shared draws of the property tests: under the default hypothesis profile the networks come
from two architectures that together cover every feature (dense and conv first layers, max pool,
residual blocks, batch-norm, biases, binary and softmax heads), so each jitted check compiles
twice; under the "many" profile (conftest) from the whole catalogue of jaxdyn.testing."""

import dataclasses

from hypothesis import settings, strategies as st

from jaxdyn.testing import ARCHS, strategies as S

FEW = (dataclasses.replace(ARCHS[1], num_classes=1), dataclasses.replace(ARCHS[4], num_classes=3))


def many() -> bool:
    return settings().max_examples > 50


def specs(heads=None):
    """Network specs for a property test (``heads`` restricts the head sizes)."""
    if many():
        return S.net_specs() if heads is None else S.net_specs(heads=heads)
    few = [s for s in FEW if heads is None or s.num_classes in heads]
    if not few:  # e.g. a binary-only test: the conv architecture with a binary head
        few = [dataclasses.replace(FEW[0], num_classes=heads[0])]
    return st.sampled_from(few)


def problems(heads=None, **kw):
    return S.problems(specs(heads), **kw)
