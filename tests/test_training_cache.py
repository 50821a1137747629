"""The model cache with trackers (``load_or_train(callbacks=...)``), unreadable run files, and the
training presets. Tiny models (width 1/16, 256 examples, one epoch) so that the file runs in
seconds on one core."""

import numpy as np
import pytest

import jax

from jaxdyn import training
from jaxdyn.training import presets
from jaxdyn.experiments import _common as C

pytestmark = pytest.mark.timeout(240)

TINY = dict(width=1 / 16, n_train=256, batch_size=64, n_test=50, n_eval_robust=0, epochs=1)


class StepTracker:
    """Records the step numbers it is called at (and counts its calls, to detect retraining)."""

    name = "steps"

    def __init__(self, every: int = 1):
        self.every, self.calls = every, 0

    def config(self):
        return {"every": self.every}

    def start(self, model, cfg, run_dir):
        self.steps = []

    def callback(self, step, state, loss):
        self.calls += 1
        if step % self.every == 0:
            self.steps.append(int(step))

    def records(self, run_dir):
        return list(self.steps)


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def _same(v1, v2):
    return all(np.array_equal(a, b) for a, b in zip(_leaves(v1), _leaves(v2), strict=True))


@pytest.fixture
def kw(tmp_path, data_dir):
    return dict(TINY, cache_dir=tmp_path, data_dir=data_dir, progress=False)


def test_tracker_records_are_cached(kw, tmp_path, monkeypatch):
    tr = StepTracker()
    _, v1, info1 = training.load_or_train("mlp3", callbacks=[tr], **kw)
    assert info1["callbacks"] == {"steps": [1, 2, 3, 4]}  # 256 // 64 steps
    run_dir = tmp_path / training.TrainConfig(model="mlp3", **TINY).run_name()
    assert (run_dir / "steps.json").exists() and not (tmp_path / f"{run_dir.name}-track").exists()

    def boom(*a, **k):
        raise AssertionError("a cached model with its records must not be retrained")

    monkeypatch.setattr(training, "train", boom)
    tr2 = StepTracker()
    _, v2, info2 = training.load_or_train("mlp3", callbacks=[tr2], **kw)
    assert tr2.calls == 0 and info2["callbacks"] == {"steps": [1, 2, 3, 4]}
    assert _same(v1, v2)
    # records of another tracker config are missing: not trained without permission
    with pytest.raises(FileNotFoundError, match="no cached model with records"):
        training.load_or_train("mlp3", callbacks=[StepTracker(every=2)], allow_train=False, **kw)


def test_cached_model_without_records_trains_a_track_copy(kw, tmp_path):
    _, v0, info0 = training.load_or_train("mlp3", **kw)
    run_dir = tmp_path / training.TrainConfig(model="mlp3", **TINY).run_name()
    assert "callbacks" not in info0
    tr = StepTracker(every=2)
    _, v1, info1 = training.load_or_train("mlp3", callbacks=[tr], **kw)
    track_dir = tmp_path / f"{run_dir.name}-track"
    assert info1["run_dir"] == str(track_dir) and (track_dir / "steps.json").exists()
    assert not (run_dir / "steps.json").exists()
    assert info1["callbacks"]["steps"] == [2, 4] and _same(v0, v1)
    # a tracker of another config: the -track copy is redone, deterministically
    tr3 = StepTracker(every=3)
    _, v3, info3 = training.load_or_train("mlp3", callbacks=[tr3], **kw)
    assert tr3.calls == 4 and info3["callbacks"]["steps"] == [3] and _same(v0, v3)


def test_experiments_load_model_passes_callbacks(kw, monkeypatch, tmp_path):
    """The experiments' loader (``_common.load_model``) passes trackers through to the cache."""

    monkeypatch.setenv("JAXDYN_CACHE_DIR", str(tmp_path))
    train = {k: v for k, v in kw.items() if k not in ("cache_dir", "progress")}
    _, variables, info = C.load_model("mlp3", train, progress=False, callbacks=[StepTracker()])
    assert info["callbacks"]["steps"] == [1, 2, 3, 4]
    assert jax.tree.leaves(variables)[0].dtype == np.float64  # cast for verification


@pytest.mark.parametrize("victim", ["final.msgpack", "info.json"])
def test_corrupt_run_file_names_it(kw, tmp_path, victim):
    _, _, info = training.load_or_train("mlp3", **kw)
    path = tmp_path / training.TrainConfig(model="mlp3", **TINY).run_name() / victim
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated") as e:
        training.load_or_train("mlp3", **kw)
    assert str(path) in str(e.value) and "delete the run directory" in str(e.value)


def test_corrupt_checkpoint_names_it(tmp_path, data_dir):
    cfg = training.TrainConfig(model="mlp3", **TINY)

    def kill(step, state, loss):
        if step == 3:
            raise training.TrainingInterrupted("killed")

    with pytest.raises(training.TrainingInterrupted):
        training.train(cfg, tmp_path, data_dir=data_dir, progress=False, ckpt_every=2, callback=kill)
    ckpt = tmp_path / "checkpoint.msgpack"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt or truncated") as e:
        training.train(cfg, tmp_path, data_dir=data_dir, progress=False)
    assert str(ckpt) in str(e.value) and "delete it" in str(e.value)


def test_presets():
    for scale in ("tiny", "quick", "full"):
        for name in presets.PRESETS:
            kw = presets.get(name, model="cnn3", scale=scale, seed=1, width=0.25)
            cfg = training.TrainConfig(model="cnn3", **kw)
            assert cfg.seed == 1 and cfg.width == 0.25
    assert presets.get("table", model="mlp3", scale="quick") == dict(
        training.quick_config("mlp3"), n_eval_robust=0)
    assert presets.get("fig3-adv", model="cnn3", scale="tiny")["binary"] == (3, 5)
    assert presets.get("table", model="mlp3", scale="full", binary=(3, 5), adv="pgd-linf")["adv"] == "pgd-linf"
    with pytest.raises(ValueError, match="unknown training preset"):
        presets.get("nope", model="mlp3", scale="tiny")
    with pytest.raises(ValueError, match="no scale"):
        presets.get("table", model="mlp3", scale="huge")
