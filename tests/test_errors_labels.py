"""Labels are checked against the head at every entry point: integers in [0, C) for a softmax
head, ±1 for the binary head (before the checks, y = 10 and -1 silently became class 9, y = 0 on the
binary head gave δ = 0)."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._internal import checks as _checks

from jaxdyn.attacks import multistep as attacks

from jaxdyn.core import losses

from jaxdyn.core import theory
from tests.helpers import small_input, small_net
from jaxdyn.cli import app as cli

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def nets():
    return small_net(num_classes=10)[2], small_net(num_classes=1)[2], small_input()


ENTRY_POINTS = {
    "attack": lambda f, x, y: attacks.attack(f, x, y, steps=2, beta=0.1),
    "pgd": lambda f, x, y: attacks.pgd(f, x, y, eps=0.1, alpha=0.01, steps=2, random_start=False),
    "logit_space_attack": lambda f, x, y: attacks.logit_space_attack(f, x, y, steps=2, beta=0.1),
    "predict": lambda f, x, y: theory.predict(f, x, y, beta=0.1),
    "predict_thm1": lambda f, x, y: theory.predict(f, x, y, beta=0.1, steps=3),
    "loss": lambda f, x, y: losses.loss(f(x), y),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("y, match", [
    (10, "label 10 is out of range for a 10-class head"),
    (-1, "label -1 is out of range"),
    (np.int64(12), "label 12 is out of range"),
    (jnp.int32(10), "label 10 is out of range"),
    (3.7, "integers in \\[0, 10\\), got 3.7"),
    (3.0, "integers in \\[0, 10\\)"),  # a float that happens to be whole is still not a class index
])
def test_softmax_head_refuses(nets, entry, y, match):
    f, _, x = nets
    with pytest.raises(ValueError, match=match):
        ENTRY_POINTS[entry](f, x, y)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("y", [0, 2, 0.5, -0.0, float("nan")])
def test_binary_head_refuses(nets, entry, y):
    _, fb, x = nets
    with pytest.raises(ValueError, match="binary head .* takes labels \\+1 or -1"):
        ENTRY_POINTS[entry](fb, x, y)


@pytest.mark.parametrize("entry", ["attack", "predict", "loss"])
def test_batch_of_labels_says_vmap(nets, entry):
    f, _, x = nets
    with pytest.raises(ValueError, match="scalar label for one example.*vmap"):
        ENTRY_POINTS[entry](f, x, jnp.array([1, 2]))


def test_valid_labels_pass(nets):
    f, fb, x = nets
    for y in (0, 9, np.int64(5), jnp.int32(3), np.uint8(7)):
        _checks.check_label(y, 10)
        assert np.isfinite(float(losses.loss(f(x), y)))
    for y in (1, -1, 1.0, jnp.float64(-1.0), np.int8(-1)):
        _checks.check_label(y, 1)
    r = attacks.attack(f, x, 9, steps=2, beta=0.1)
    assert bool(jnp.all(jnp.isfinite(r.delta))) and int(r.success_step) != _checks.INVALID_STEP
    r = attacks.attack(fb, x, -1.0, steps=2, beta=0.1)
    assert bool(jnp.all(jnp.isfinite(r.delta))) and bool(jnp.any(r.delta != 0))  # y = -1 is no δ = 0 case


def test_custom_loss_labels_not_checked(nets):
    """A custom ``loss_fn`` defines its own labels (e.g. a target vector): not range-checked."""
    f, _, x = nets
    target = jnp.zeros(10, jnp.float64).at[3].set(1.0)
    r = attacks.attack(f, x, 0, steps=2, beta=0.1, loss_fn=lambda z, y: jnp.sum((z - target) ** 2) + 0 * y)
    assert bool(jnp.all(jnp.isfinite(r.delta)))


def test_train_num_classes_mismatch_exits_2(capsys, tmp_path):
    """``train --num-classes 5`` on 10-class MNIST is refused before training (it exited 0 with
    accuracy 0.386)."""

    argv = ["train", "--model", "mlp3", "--num-classes", "5", "--n-train", "16", "--out", str(tmp_path / "t")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "10" in err[0]
    assert not (tmp_path / "t" / "final.msgpack").exists()
