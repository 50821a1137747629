"""NaN inside ``jit`` / ``vmap``: the eager checks cannot run there, so an invalid input (NaN
pixels, a label outside the head) gives a NaN perturbation and ``success_step == -2``
(``INVALID_STEP``), never δ = 0 reported as a success at step 0.

Each entry point is compiled once (module fixture) and fed good and bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.attacks import multistep as attacks

from jaxdyn.core import models

from jaxdyn.core import theory
from jaxdyn._internal.checks import INVALID_STEP
from tests.helpers import small_input, small_net

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def fns():
    f, fb = small_net(num_classes=4)[2], small_net(num_classes=1)[2]
    return dict(
        attack=jax.jit(lambda x, y: attacks.attack(f, x, y, steps=3, beta=0.5)),
        attack_b=jax.jit(jax.vmap(lambda x, y: attacks.attack(fb, x, y, steps=2, beta=0.5))),
        attack_v=jax.jit(jax.vmap(lambda x, y: attacks.attack(f, x, y, steps=3, beta=0.5))),
        pgd=jax.jit(lambda x, y: attacks.pgd(f, x, y, eps=0.1, alpha=0.02, steps=2, random_start=False)),
        lsa=jax.jit(lambda x, y: attacks.logit_space_attack(f, x, y, steps=2, beta=0.5)),
        predict=jax.jit(lambda x, y: theory.predict(f, x, y, beta=0.5).delta_hat),
        f=f,
    )


X = small_input()
NAN_X = X.at[2, 3, 0].set(jnp.nan)


def y(v):
    return jnp.int32(v)


def _row(r, i):
    return jax.tree_util.tree_map(lambda a: a[i], r)


def _assert_flagged(r):
    assert bool(jnp.all(jnp.isnan(r.delta))), "an invalid input must give a NaN perturbation"
    assert int(r.success_step) == INVALID_STEP


def _assert_clean(r):
    assert bool(jnp.all(jnp.isfinite(r.delta))) and int(r.success_step) != INVALID_STEP


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf, -jnp.inf])
def test_bad_pixel_under_jit(fns, bad):
    _assert_flagged(fns["attack"](X.at[0, 0, 0].set(bad), y(1)))


def test_nan_pixel_under_vmap_flags_only_that_row(fns):
    r = fns["attack_v"](jnp.stack([X, NAN_X, X]), jnp.array([1, 1, 2], jnp.int32))
    _assert_clean(_row(r, 0))
    _assert_flagged(_row(r, 1))
    _assert_clean(_row(r, 2))


@pytest.mark.parametrize("label", [4, -1, 100])
def test_label_out_of_range_under_jit(fns, label):
    _assert_flagged(fns["attack"](X, y(label)))


@pytest.mark.parametrize("label", [0.0, 2.0, 0.5, float("nan")])
def test_binary_label_under_vmap(fns, label):
    r = fns["attack_b"](jnp.stack([X, X]), jnp.array([-1.0, label]))
    _assert_clean(_row(r, 0))
    _assert_flagged(_row(r, 1))


def test_pgd_under_jit(fns):
    assert bool(jnp.all(jnp.isnan(fns["pgd"](NAN_X, y(1)))))
    assert bool(jnp.all(jnp.isnan(fns["pgd"](X, y(7)))))
    assert bool(jnp.all(jnp.isfinite(fns["pgd"](X, y(1)))))


def test_logit_space_attack_under_jit(fns):
    _assert_flagged(fns["lsa"](NAN_X, y(1)))
    _assert_flagged(fns["lsa"](X, y(7)))
    _assert_clean(fns["lsa"](X, y(1)))


def test_predict_under_jit(fns):
    assert bool(jnp.all(jnp.isnan(fns["predict"](NAN_X, y(1)))))
    assert bool(jnp.all(jnp.isnan(fns["predict"](X, y(9)))))
    assert bool(jnp.all(jnp.isfinite(fns["predict"](X, y(2)))))


def test_valid_input_under_jit_unchanged(fns):
    """The flag changes nothing for valid input: jit and eager agree."""
    eager = attacks.attack(fns["f"], X, y(1), steps=3, beta=0.5)
    jitted = fns["attack"](X, y(1))
    np.testing.assert_allclose(jitted.delta, eager.delta, rtol=1e-12)
    assert int(jitted.success_step) == int(eager.success_step) != INVALID_STEP


def test_nan_parameters_flagged():
    """NaN weights (a diverged training run) poison z: flagged like a NaN pixel, even eagerly
    (the eager checks look at x, not at the weights)."""
    net, variables, _ = small_net(num_classes=4)
    bad = jax.tree_util.tree_map(lambda a: jnp.full_like(a, jnp.nan), variables)
    r = attacks.attack(models.logits_fn(net, bad), X, y(1), steps=2, beta=0.5)
    assert not (int(r.success_step) == 0 and bool(jnp.all(r.delta == 0))), "NaN must never read as success"
    _assert_flagged(r)


def test_eager_nan_raises(fns):
    with pytest.raises(ValueError, match="NaN or infinite"):
        attacks.attack(fns["f"], NAN_X, 1, steps=2, beta=0.5)
