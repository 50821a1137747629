"""Static mistakes raise at trace time: the dtype of the labels, the rank and shape of
the inputs and non-integer step counts are known when ``jit`` or ``vmap`` traces a call, so they
raise the same ``ValueError`` there as eagerly — only *value* errors (NaN pixels, a label value
out of range) stay the documented NaN δ / ``success_step == INVALID_STEP``
(tests/test_errors_nan_jit.py, unchanged).

On the old main a float label of a softmax head under ``vmap`` gave an all-NaN δ and
``success_step == -2`` without a word (eagerly: "labels of a 10-class head are integers")."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.attacks import multistep as attacks

from jaxdyn.attacks import flow

from jaxdyn.core import hessian

from jaxdyn.core import losses

from jaxdyn.core import theory
from tests.helpers import SHAPE, small_input, small_net

pytestmark = pytest.mark.timeout(180)

F4 = small_net(num_classes=4)[2]
FB = small_net(num_classes=1)[2]
X = small_input()

#: entry point -> (x, y) -> an array (the per-example call of each public function taking x and y)
CALLS = {
    "attack": lambda f, x, y: attacks.attack(f, x, y, steps=2, beta=0.5).delta,
    "pgd": lambda f, x, y: attacks.pgd(f, x, y, eps=0.1, alpha=0.02, steps=2, random_start=False),
    "logit_space_attack": lambda f, x, y: attacks.logit_space_attack(f, x, y, steps=2, beta=0.5).delta,
    "predict": lambda f, x, y: theory.predict(f, x, y, beta=0.5).delta_hat,
    "predict_m": lambda f, x, y: theory.predict(f, x, y, beta=0.5, steps=3).delta_hat,
    "prepare": lambda f, x, y: theory.prepare(f, x, y)[2],
    "gradient_flow": lambda f, x, y: flow.gradient_flow(f, x, y, beta=0.5, max_steps=64).delta,
    "logit_space_flow": lambda f, x, y: flow.logit_space_flow(f, x, y, beta=0.5, max_steps=64).delta,
    "loss": lambda f, x, y: losses.loss(f(x), y),
    "grad_z": lambda f, x, y: losses.grad_z(f(x), y),
    "hvp": lambda f, x, y: hessian.hvp(f, x, y, jnp.ones_like(x)),
}


def _run(mode, fn, x, y):
    if mode == "eager":
        return fn(x, y)
    if mode == "jit":
        return jax.jit(fn)(x, y)
    return jax.vmap(fn)(jnp.stack([x, x]), jnp.stack([y, y]))


MODES = ("eager", "jit", "vmap")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("label", [jnp.float32(1.0), jnp.bool_(True)])
def test_non_integer_label_of_a_softmax_head(call, mode, label):
    fn = lambda x, y: CALLS[call](F4, x, y)  # noqa: E731
    with pytest.raises(ValueError, match=r"labels of a 4-class head are integers in \[0, 4\)"):
        _run(mode, fn, X, label)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("call", ["attack", "predict", "loss", "gradient_flow"])
def test_bool_or_complex_label_of_the_binary_head(call, mode):
    fn = lambda x, y: CALLS[call](FB, x, y)  # noqa: E731
    for label in (jnp.bool_(True), jnp.complex64(1.0)):
        with pytest.raises(ValueError, match="binary head"):
            _run(mode, fn, X, label)


@pytest.mark.parametrize("mode", ["jit"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_batch_of_labels_says_vmap(call, mode):
    fn = lambda x, y: CALLS[call](F4, x, y)  # noqa: E731
    with pytest.raises(ValueError, match="vmap"):
        _run(mode, fn, X, jnp.array([1, 2], jnp.int32))


@pytest.mark.parametrize("mode", ["jit", "vmap"])
@pytest.mark.parametrize("call", sorted(set(CALLS) - {"loss", "grad_z", "hvp"}))
@pytest.mark.parametrize("bad", ["batch", "int"])
def test_bad_input_rank_or_dtype(call, mode, bad):
    """A batch where one example is expected (the logits come out [B, C]) and integer pixels
    raise while tracing."""
    fn = lambda x, y: CALLS[call](F4, x, y)  # noqa: E731
    x = jnp.stack([X, X]) if bad == "batch" else (X * 255).astype(jnp.int32)
    with pytest.raises(ValueError, match="one example|dtype"):
        _run(mode, fn, x, jnp.int32(1))


@pytest.mark.parametrize("mode", ["jit"])
@pytest.mark.parametrize("steps", [2.0, 2.5, np.float64(3), jnp.float32(3), True, "3"])
@pytest.mark.parametrize("call", ["attack", "pgd", "logit_space_attack", "predict", "theorem1"])
def test_non_integer_steps(call, mode, steps):
    if call == "theorem1":
        J, z, gz = theory.prepare(F4, X, jnp.int32(1))
        fn = lambda x, y: theory.theorem1(J, gz, losses.hessian_z(z, y), 0.1, steps).delta  # noqa: E731
    else:
        fn = {
            "attack": lambda x, y: attacks.attack(F4, x, y, steps=steps, beta=0.5).delta,
            "pgd": lambda x, y: attacks.pgd(F4, x, y, eps=0.1, alpha=0.02, steps=steps, random_start=False),
            "logit_space_attack": lambda x, y: attacks.logit_space_attack(F4, x, y, steps=steps, beta=0.5).delta,
            "predict": lambda x, y: theory.predict(F4, x, y, beta=0.5, steps=steps).delta_hat,
        }[call]
    with pytest.raises((ValueError, TypeError), match="steps"):
        _run(mode, fn, X, jnp.int32(1))


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("which", ["theorem1", "theorem2"])
def test_theorem_shapes_agree(which, mode):
    J, z, gz = theory.prepare(F4, X, jnp.int32(1))
    hz = losses.hessian_z(z, jnp.int32(1))
    call = (lambda J, g, h: theory.theorem2(J, g, h, 0.5)) if which == "theorem2" else \
        (lambda J, g, h: theory.theorem1(J, g, h, 0.1, 3))
    run = call if mode == "eager" else jax.jit(call)
    for args, match in [((J, gz[:3], hz), "shapes do not agree"), ((J, gz, hz[:3, :3]), "shapes do not agree"),
                        ((J.reshape(-1), gz, hz), "dimensions"), ((J, gz[None], hz), "dimensions"),
                        ((J.astype(jnp.int32), gz, hz), "floating")]:
        with pytest.raises(ValueError, match=match):
            run(*args)
    assert bool(jnp.all(jnp.isfinite(run(J, gz, hz).delta)))


@pytest.mark.parametrize("which", ["theorem1_eig", "theorem2_eig"])
def test_eig_path_shapes_under_jit(which):
    n = int(np.prod(SHAPE))
    g, H = jnp.ones(n), jnp.eye(n)
    call = (lambda g, H: theory.theorem2_eig(g, H, 0.5)) if which == "theorem2_eig" else \
        (lambda g, H: theory.theorem1_eig(g, H, 0.1, 3))
    for args in [(g, jnp.eye(n - 1)), (g.reshape(SHAPE), H), (g[:-1], H)]:
        with pytest.raises(ValueError, match="g_x|hbar_x"):
            jax.jit(call)(*args)
    assert bool(jnp.all(jnp.isfinite(jax.jit(call)(g, H).delta)))


def test_loss_logits_rank_under_vmap():
    with pytest.raises(ValueError, match=r"shape \[C\]"):
        jax.vmap(losses.loss)(jnp.ones((2, 3, 4)), jnp.array([1, 2], jnp.int32))
    with pytest.raises(ValueError, match="floating"):
        jax.jit(losses.loss)(jnp.ones(4, jnp.int32), jnp.int32(1))


@pytest.mark.parametrize("label", [np.int16(1), 1])
def test_integer_labels_of_any_width_pass_under_jit(label):
    d = jax.jit(lambda x, y: attacks.attack(F4, x, y, steps=2, beta=0.5).delta)(X, label)
    assert bool(jnp.all(jnp.isfinite(d)))
    d = jax.jit(lambda x, y: attacks.attack(FB, x, y, steps=2, beta=0.5).delta)(X, jnp.float64(-1.0))
    assert bool(jnp.all(jnp.isfinite(d)))
