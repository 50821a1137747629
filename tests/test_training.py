"""Training: a step lowers the loss, adversarial examples respect the threat model, resuming is
bit-identical, the cache loads instead of retraining, bad flags fail clearly. Tiny models and a
few hundred examples so that the whole file runs in well under a minute on one core."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import training

from jaxdyn.datasets import loading as data

from jaxdyn.core import losses
from jaxdyn.core.models import get_model, init_variables
from jaxdyn.cli.app import main
from jaxdyn.training.loop import load_data
from jaxdyn.training.evaluation import accuracy
from jaxdyn.training.config import TrainConfig
from jaxdyn.core.models import logits_fn
from jaxdyn.attacks import multistep as attacks

pytestmark = pytest.mark.timeout(240)

TINY = dict(model="mlp3", width=1 / 32, n_train=256, n_test=100, batch_size=32, n_eval_robust=0)


@pytest.fixture(scope="module")
def batch(data_dir):
    x, y = data.load_mnist("test", data_dir=data_dir)
    x, y = data.subset(x, y, 64, seed=0)
    return np.asarray(x), np.asarray(y)


@pytest.mark.parametrize("name, binary", [("mlp3", None), ("cnn3", (3, 5))])
def test_train_step_lowers_the_loss(data_dir, name, binary):
    cfg = training.TrainConfig(model=name, width=1 / 8, binary=binary, lr=1e-3)
    x, y = data.load_mnist("test", data_dir=data_dir)
    if binary:
        x, y = data.binary_task(x, y, binary)
    x, y = (np.asarray(a[:64]) for a in (x, y))
    model = get_model(name, num_classes=cfg.num_classes, width=cfg.width)
    tx = training.make_optimizer(cfg)
    state = jax.jit(lambda k: training.create_state(model, tx, k))(jax.random.key(0, impl="unsafe_rbg"))

    @jax.jit
    def mean_loss_fn(params):
        z = model.apply({"params": params}, x)
        return jnp.mean(jax.vmap(losses.loss)(z, y))

    def mean_loss(params):
        return float(mean_loss_fn(params))

    before = mean_loss(state["params"])
    step = training.make_train_step(model, tx, cfg)
    zero = jnp.zeros((), jnp.float32)
    for i in range(3):
        state, loss = step(state, x, y, jax.random.key(i), zero, zero)
    assert int(state["step"]) == 3
    assert mean_loss(state["params"]) < before


@pytest.mark.slow  # default-suite time: batch-norm forward/backward is tested in test_models
def test_batchnorm_model_trains(data_dir, batch):
    """Batch-norm models train with batch statistics and update their running statistics."""
    cfg = training.TrainConfig(model="resnet18", width=1 / 16)
    x, y = batch
    model = get_model("resnet18", width=cfg.width)
    tx = training.make_optimizer(cfg)
    state = jax.jit(lambda k: training.create_state(model, tx, k))(jax.random.key(0, impl="unsafe_rbg"))
    stats0 = jax.tree.map(np.asarray, state["batch_stats"])
    step = training.make_train_step(model, tx, cfg)
    zero = jnp.zeros((), jnp.float32)
    state, loss0 = step(state, x[:16], y[:16], jax.random.key(0), zero, zero)
    assert np.isfinite(float(loss0))
    changed = jax.tree.map(lambda a, b: bool(np.any(a != np.asarray(b))), stats0, state["batch_stats"])
    assert any(jax.tree.leaves(changed))


@pytest.mark.parametrize("adv, eps", [("pgd-linf", 0.1), ("pgd-l2", 1.0), ("raw", 0.5)])
def test_adversarial_examples_respect_threat_model(batch, adv, eps):
    x, y = batch
    model = get_model("mlp3", width=1 / 8)
    variables = jax.jit(lambda k: init_variables(model, k))(jax.random.key(0, impl="unsafe_rbg"))
    perturb = jax.jit(lambda v, x, y, k, eps, alpha: training.perturb_batch(
        model, v, x, y, k, adv=adv, eps=eps, steps=5, alpha=alpha))
    d = perturb(variables, jnp.asarray(x), jnp.asarray(y), jax.random.key(1),
                jnp.asarray(eps, jnp.float32), jnp.asarray(2.5 * eps / 5, jnp.float32))
    d = np.asarray(d)
    assert d.shape == x.shape and d.dtype == np.float32
    assert np.all(np.abs(d).reshape(len(d), -1).max(axis=1) > 0)
    if adv == "pgd-linf":
        assert np.abs(d).max() <= eps * (1 + 1e-6)
    if adv == "pgd-l2":
        assert np.linalg.norm(d.reshape(len(d), -1), axis=1).max() <= eps * (1 + 1e-5)
    if adv != "raw":  # PGD clips to the pixel range; the raw A1 attack does not (docs/spec.md, A1)
        assert (x + d).min() >= 0.0 and (x + d).max() <= 1.0

    @jax.jit
    def losses_at(xx):
        return jax.vmap(losses.loss)(model.apply(variables, xx), jnp.asarray(y))

    assert float(jnp.mean(losses_at(x + d))) > float(jnp.mean(losses_at(x)))


@pytest.mark.parametrize("name, norm, random_start", [("mlp3", "linf", True), ("cnn3", "linf", True),
                                                     ("mlp3", "l2", True), ("mlp3", "linf", False)])
def test_training_attack_is_the_engines_pgd(batch, name, norm, random_start):
    """perturb_batch's lean PGD (training.step.pgd_delta) returns attacks.pgd's delta bit for bit
    (same random start, same steps; the analysis outputs are what it drops)."""

    x, y = (jnp.asarray(a[:6]) for a in batch)
    model = get_model(name, width=1 / 8)
    v = jax.jit(lambda k: init_variables(model, k))(jax.random.key(0, impl="unsafe_rbg"))
    eps, alpha = (0.3, 0.075) if norm == "linf" else (2.0, 0.5)

    @jax.jit
    def both(v, x, y, key, eps, alpha):
        lean = training.perturb_batch(model, v, x, y, key, adv=f"pgd-{norm}", eps=eps, steps=4, alpha=alpha,
                                      random_start=random_start)
        f = logits_fn(model, v)
        ref = jax.vmap(lambda xi, yi, ki: attacks.pgd(f, xi, yi, eps=eps, alpha=alpha, steps=4, norm=norm,
                                                      random_start=random_start, key=ki))(
            x, y, jax.random.split(key, x.shape[0]))
        return lean, ref

    lean, ref = both(v, x, y, jax.random.key(1), jnp.float32(eps), jnp.float32(alpha))
    assert np.all(np.asarray(lean) == np.asarray(ref)) and float(jnp.max(jnp.abs(lean))) > 0
    # invalid input (a label outside the head) gives NaN, as the engine's
    bad = both(v, x, y.at[0].set(10), jax.random.key(1), jnp.float32(eps), jnp.float32(alpha))[0]
    assert np.all(np.isnan(np.asarray(bad[0]))) and np.all(np.isfinite(np.asarray(bad[1:])))


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def test_resume_is_bit_identical(tmp_path, data_dir):
    # with an ε ramp: the attack strength of a step must be restored on resume as well
    cfg = training.TrainConfig(**TINY, epochs=2, adv="pgd-linf", eps=0.1, adv_steps=2, eps_warmup=0.5)
    # 256 / 32 = 8 steps per epoch, 16 in all; checkpoints at 3, 6, 8 (epoch end), 9, 12, 15, 16
    _, v_ref, info_ref = training.train(cfg, tmp_path / "ref", data_dir=data_dir, progress=False,
                                        ckpt_every=3)

    def kill(step, state, loss):
        if step == 11:
            raise training.TrainingInterrupted("killed")

    with pytest.raises(training.TrainingInterrupted):
        training.train(cfg, tmp_path / "run", data_dir=data_dir, progress=False, ckpt_every=3,
                       callback=kill)
    assert (tmp_path / "run" / "checkpoint.msgpack").exists()
    assert not (tmp_path / "run" / "final.msgpack").exists()
    _, v, info = training.train(cfg, tmp_path / "run", data_dir=data_dir, progress=False, ckpt_every=3)

    for a, b in zip(_leaves(v_ref), _leaves(v), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    strip = lambda ms: [{k: v for k, v in m.items() if "time" not in k} for m in ms]  # noqa: E731
    assert strip(info["metrics"]) == strip(info_ref["metrics"])
    assert [m["epoch"] for m in info["metrics"]] == [1, 2]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    cfg_json = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg_json["config_hash"] == cfg.hash()


def test_cache_loads_without_retraining(tmp_path, data_dir, monkeypatch):
    kw = dict(width=1 / 32, n_train=128, batch_size=32, n_test=50, n_eval_robust=20, eval_steps=2,
              cache_dir=tmp_path, data_dir=data_dir, progress=False, binary=(3, 5))
    model, v1, info1 = training.load_or_train("mlp3", **kw)
    assert 0.0 <= info1["test_accuracy"] <= 1.0 and 0.0 <= info1["robust_accuracy"] <= 1.0
    assert info1["config"]["num_classes"] == 1 and info1["param_count"] > 0
    # the final test accuracy is the last epoch's, reused: the same as measuring it again

    xte, yte = load_data(TrainConfig.from_dict(info1["config"]), data_dir)[2:]
    assert info1["test_accuracy"] == accuracy(model, v1, xte, yte) == info1["metrics"][-1]["test_accuracy"]
    assert model.apply(v1, jnp.zeros((2, 28, 28, 1), jnp.float32)).shape == (2, 1)

    def boom(*a, **k):
        raise AssertionError("a cached model must not be retrained")

    monkeypatch.setattr(training, "train", boom)
    _, v2, info2 = training.load_or_train("mlp3", **kw)
    for a, b in zip(_leaves(v1), _leaves(v2), strict=True):
        assert np.array_equal(a, b)
    assert info2["test_accuracy"] == info1["test_accuracy"]
    with pytest.raises(FileNotFoundError, match="no cached model"):
        training.load_or_train("mlp3", **{**kw, "seed": 1}, allow_train=False)


@pytest.mark.parametrize("kw, match", [
    (dict(model="nope"), "unknown model 'nope'.*mlp3"),
    (dict(model="mlp3", adv="pgd-linf", eps=-0.1), "eps must be"),
    (dict(model="mlp3", adv="fgsm"), "adv must be"),
    (dict(model="mlp3", binary=(3, 3)), "binary"),
    (dict(model="mlp3", eps=0.3), "without adv"),
    (dict(model="mlp3", width=0.0), "width"),
    (dict(model="mlp3", epochs=0), "epochs"),
    (dict(model="mlp3", lr=float("nan")), "lr"),
    (dict(model="mlp3", eps_warmup=0.5), "without adv"),
    (dict(model="mlp3", adv="pgd-l2", eps_warmup=2.0), "eps_warmup"),
    (dict(model="mlp3", schedule="linear"), "schedule"),
])
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        training.TrainConfig(**kw)


def test_quick_preset_covers_tables():
    for name in ["mlp3", "mlp4", "mlp5", "cnn3", "cnn4", "cnn5", "rescnn3", "rescnn4", "rescnn5", "rescnn10"]:
        for binary in (None, (3, 5)):
            training.TrainConfig(model=name, **training.quick_config(name, binary=binary))
        training.TrainConfig(model=name, **training.quick_config(name, binary=(3, 5), adv="pgd-linf"))
    with pytest.raises(ValueError, match="no quick preset"):
        training.quick_config("resnet50")


@pytest.mark.parametrize("argv, match", [
    (["--model", "nope"], "unknown model"),
    (["--model", "mlp3", "--adv", "pgd-linf", "--eps", "-1"], "eps must be"),
    (["--model", "mlp3", "--binary", "3,x"], "--binary"),
    (["--model", "mlp3", "--binary", "3"], "--binary"),
])
def test_cli_bad_flags(tmp_path, capsys, argv, match):

    assert main(["train", "--out", str(tmp_path), *argv]) == 2
    assert match.replace("\\", "") in capsys.readouterr().err


def test_cli_smoke(tmp_path, data_dir):

    rc = main(["train", "--out", str(tmp_path), "--model", "mlp3", "--width", "0.03125", "--n-train", "128",
               "--batch-size", "32", "--n-test", "50", "--n-eval-robust", "0", "--data-dir", data_dir,
               "--no-progress"])
    assert rc == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["config"]["model"] == "mlp3" and "test_accuracy" in res
    assert res["config"]["n_train"] == 128 and res["config_hash"]
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["command"] == "train" and cfg["n_train"] == 128
    assert (tmp_path / "final.msgpack").exists() and (tmp_path / "metrics.jsonl").exists()
