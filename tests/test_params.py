"""Parameter-tree paths: the first layer, the weight layers in forward order, get/set one leaf."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.core import influence

from jaxdyn.core import params
from jaxdyn.core.models import cast, get_model, init_variables

NETS = [("two_layer", 0.2), ("mlp3", 1 / 32), ("cnn3", 1 / 8), ("rescnn4", 1 / 8)]


def _binary_net(name, width, seed=0):
    model = get_model(name, num_classes=1, width=width)
    return model, cast(init_variables(model, jax.random.key(seed)), jnp.float64)


def _shapes(name, width):
    model = get_model(name, num_classes=10, width=width)
    return model, jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))  # shapes suffice


def test_first_layer_path_is_the_layer_that_sees_the_input():
    for name, width in NETS + [("resnet18", 1 / 16), ("alexnet", 1 / 16)]:
        model = get_model(name, num_classes=1, width=width)
        variables = jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))  # shapes suffice
        path = params.first_layer_path(model, variables)
        W = params.get_param(variables, path)
        # a dense first layer eats the flattened image, a conv one its single channel
        assert (W.ndim == 2 and W.shape[0] == 784) or (W.ndim == 4 and W.shape[2] == 1), (name, path)
    # jax.tree sorts keys ("Conv_0" < "stem"): the first kernel in the tree is NOT the first layer
    model, variables = _binary_net("rescnn4", 1 / 8)
    assert params.first_layer_path(model, variables) == ("stem",)
    assert jax.tree_util.keystr(jax.tree_util.tree_flatten_with_path(variables["params"])[0][0][0]) \
        != "['stem']['bias']"


def test_set_param_round_trip():
    model, variables = _binary_net("mlp3", 1 / 32)
    path = params.first_layer_path(model, variables)
    W = params.get_param(variables, path)
    v2 = params.set_param(variables, path, 2 * W)
    np.testing.assert_array_equal(params.get_param(v2, path), 2 * W)
    np.testing.assert_array_equal(params.get_param(variables, path), W)  # original untouched
    with pytest.raises(ValueError, match="no parameter 'bias'"):
        params.get_param(variables, path, "bias")  # the zoo MLPs have no biases


def test_influence_reexports_the_tree_helpers():
    assert influence.first_layer_path is params.first_layer_path
    assert influence.get_param is params.get_param and influence.set_param is params.set_param


def test_layer_paths_in_forward_order():
    model, v = _shapes("alexnet", 1 / 32)
    paths = params.layer_paths(model, v)
    assert len(paths) == 8 and paths[-1] == ("head",)
    assert params.get_param(v, paths[0]).shape[2] == 1  # the conv that sees the image
    model, v = _shapes("rescnn4", 1 / 8)
    assert params.layer_paths(model, v)[0] == ("stem",)  # though "Conv_0" sorts first in the tree
    model, v = _shapes("vgg11", 1 / 32)
    assert len(params.layer_paths(model, v)) == 11
    assert params.layer_paths(model, v)[0] == params.first_layer_path(model, v)
