"""The model zoo: shapes, parameter counts, piecewise affinity in x (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.core import losses
from jaxdyn.core.models import cast, get_model, init_variables, logits_fn, model_names, param_count, relu

pytestmark = pytest.mark.timeout(300)

ZOO = ["mlp3", "mlp4", "mlp5", "cnn3", "cnn4", "cnn5", "rescnn3", "rescnn4", "rescnn5", "rescnn10",
       "alexnet", "vgg11", "resnet18", "resnet50"]
# tiny widths so that every model compiles and runs in about a second on one core
TINY = {name: 1 / 16 for name in ZOO}
TINY.update({"mlp3": 1 / 32, "mlp4": 1 / 32, "mlp5": 1 / 32})


def test_registry_lists_the_zoo():
    assert set(ZOO) <= set(model_names())


def test_unknown_model_lists_names():
    with pytest.raises(ValueError, match="unknown model 'nope'.*mlp3.*resnet50"):
        get_model("nope")
    with pytest.raises(ValueError, match="width"):
        get_model("mlp3", width=0)


def _mlp_count(hidden, c):
    dims = (784, *hidden, c)
    return sum(a * b for a, b in zip(dims[:-1], dims[1:]))


def _conv(cin, cout, k=3, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


@pytest.mark.parametrize("c", [1, 10])
def test_param_counts_closed_form(c):
    """Counts against hand formulas (documented architectures, docs/models.md)."""
    assert param_count(get_model("mlp3", num_classes=c)) == _mlp_count((1024, 256), c)
    assert param_count(get_model("mlp4", num_classes=c)) == _mlp_count((1024, 256, 128), c)
    assert param_count(get_model("mlp5", num_classes=c)) == _mlp_count((1024, 256, 128, 64), c)
    head = lambda f: f * c + c  # noqa: E731
    assert param_count(get_model("cnn3", num_classes=c)) == _conv(1, 32) + _conv(32, 64) + head(49 * 64)
    assert param_count(get_model("cnn5", num_classes=c)) == (
        _conv(1, 32) + _conv(32, 32) + _conv(32, 64) + _conv(64, 64) + head(49 * 64))
    for n in (3, 4, 5, 10):
        assert param_count(get_model(f"rescnn{n}", num_classes=c)) == (
            _conv(1, 32) + (n - 2) * _conv(32, 32) + head(49 * 32))
    # the CIFAR-style ResNets have the well-known sizes (pytorch-cifar: 11,173,962 and 23,520,842
    # for 3 input channels and 10 classes; one input channel removes 2 * 9 * 64 weights)
    if c == 10:
        assert param_count(get_model("resnet18")) == 11_173_962 - 2 * 9 * 64
        assert param_count(get_model("resnet50")) == 23_520_842 - 2 * 9 * 64


def _init(model):
    # an rbg key: threefry's init compiles ~0.6 s per parameter tensor on CPU, rbg ~10x faster
    return init_variables(model, jax.random.key(0, impl="unsafe_rbg"))


def _numpy_init(model, seed=0):
    """He-scaled random variables built in numpy from the shapes alone: compiling the real
    initialiser of ResNet-50 takes ~6 s on one core, and these tests are about the forward map."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: _init(model))

    def leaf(path, s):
        name = jax.tree_util.keystr(path[-1:])
        if "kernel" in name:
            a = rng.normal(size=s.shape) * np.sqrt(2.0 / np.prod(s.shape[:-1]))
        elif "scale" in name or "var" in name:
            a = rng.uniform(0.5, 1.5, s.shape)
        else:  # biases, BN shifts and running means
            a = rng.normal(size=s.shape) * 0.1
        return jnp.asarray(a, s.dtype)

    variables = jax.tree_util.tree_map_with_path(leaf, shapes)
    # deep nets without normalised statistics blow the logits up (softmax saturates and H_z
    # underflows); rescale the head so that |z| ~ 1 (the gates do not change)
    x = jnp.asarray(rng.uniform(size=(4, 28, 28, 1)), jnp.float32)
    zmax = float(jnp.max(jnp.abs(jax.jit(model.apply)(variables, x))))
    params = dict(variables["params"])
    params["head"] = jax.tree.map(lambda p: p / jnp.asarray(zmax, p.dtype), params["head"])
    return {**variables, "params": params}


# the large models compile for seconds each: `slow` (their architecture is the same code at any width)
_BIG = ("vgg11", "resnet18", "resnet50")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _BIG else n for n in ZOO])
def test_model(name):
    """Shapes, dtypes, gate recording and piecewise affinity (linearisation) of one model."""
    model = get_model(name, num_classes=10, width=TINY[name])
    # binary head: shapes only (no compile)
    binary = get_model(name, num_classes=1, width=TINY[name])
    x32 = jnp.zeros((3, 28, 28, 1), jnp.float32)
    assert jax.eval_shape(lambda x: binary.apply(_init(binary), x), x32).shape == (3, 1)

    variables = _numpy_init(model)
    assert param_count(variables) == param_count(model)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(3, 28, 28, 1)), jnp.float32)
    z, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["gates"]))(variables, x)
    assert z.shape == (3, 10) and z.dtype == jnp.float32
    gates = jax.tree.leaves(state["gates"])
    assert gates and all(g.shape[0] == 3 for g in gates)

    # float64 parameters and input give float64 logits (no dtype hard-coded in the layers)
    v64 = cast(variables, jnp.float64)
    f = logits_fn(model, v64)
    x1 = jnp.asarray(rng.uniform(size=(28, 28, 1)))
    d = jnp.asarray(rng.normal(size=(28, 28, 1))) * 1e-7

    @jax.jit
    def check(x, d):
        z, f_lin = jax.linearize(f, x)
        return z, f(x + d), z + f_lin(d)

    z0, z_exact, z_lin = check(x1, d)
    assert z0.dtype == jnp.float64
    # f is affine on the cell holding x and x + d, so the only error is float64 rounding
    # (|z| ~ 1, eps ~ 1e-16 times a few hundred operations)
    np.testing.assert_allclose(np.asarray(z_exact), np.asarray(z_lin), rtol=0, atol=1e-9)


BIG = {"alexnet", "vgg11", "resnet18", "resnet50"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in ZOO]
)
def test_input_hessian_is_gauss_newton(name):
    """The input Hessian of the loss equals J^T H_z J (docs/spec.md, "Notation"), float64. The four big
    models take ~10 s each to compile this, so they run with ``-m slow``."""
    model = get_model(name, num_classes=10, width=TINY[name])
    variables = cast(_numpy_init(model, 2), jnp.float64)
    f = logits_fn(model, variables)
    x = jnp.asarray(np.random.default_rng(3).uniform(size=(28, 28, 1)))
    y = 3

    @jax.jit
    def both(x):
        H = jax.hessian(lambda x: losses.loss(f(x), y))(x).reshape(784, 784)
        J = jax.jacrev(f)(x).reshape(10, 784)
        return H, J.T @ losses.hessian_z(f(x), y) @ J

    H, H_struct = both(x)
    scale = float(jnp.max(jnp.abs(H_struct)))
    assert scale > 0
    # both sides are sums of the same products in a different order: relative rounding ~1e-14
    np.testing.assert_allclose(np.asarray(H), np.asarray(H_struct), rtol=0, atol=1e-10 * scale)


def test_relu_inside_submodules_records():
    """`relu(self, h)` from a submodule (a residual block) sows into the same collection."""
    model = get_model("resnet18", width=1 / 16)
    x = jnp.zeros((1, 28, 28, 1), jnp.float32)
    state = jax.eval_shape(lambda: model.apply(_init(model), x, mutable=["gates"])[1])
    flat = jax.tree_util.tree_flatten_with_path(state["gates"])[0]
    assert any("BasicBlock" in jax.tree_util.keystr(p) for p, _ in flat)
    assert relu is not None  # the public helper is exported


def test_batchnorm_train_mode_updates_stats():
    model = get_model("resnet18", width=1 / 16)
    variables = jax.jit(_init, static_argnums=0)(model)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 28, 28, 1)), jnp.float32)
    z, upd = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    assert z.shape == (4, 10)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], upd["batch_stats"])
    assert any(jax.tree.leaves(changed))
