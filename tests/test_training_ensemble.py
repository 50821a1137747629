"""The seeds of one architecture trained together (:mod:`jaxdyn.training.ensemble`) and their cache
entries (``load_or_train_seeds``, the experiments' ``load_model(seeds=...)``). Tiny models (width
1/16, 256 examples, 4 steps) so that the file runs in seconds on one core."""

import importlib
import json

import numpy as np
import pytest

import jax

from jaxdyn import training
from jaxdyn.training import ensemble
from jaxdyn.experiments import _common as C

pytestmark = pytest.mark.timeout(240)

TINY = dict(width=1 / 16, n_train=256, batch_size=64, n_test=50, n_eval_robust=0, epochs=1)
#: an ensemble member against its solo twin after the 4 steps of TINY: the two programs round
#: differently (docs/performance.md), by float32 rounding only, far below this bound, while two
#: seeds differ by O(1) (checked below)
SOLO_ATOL = 1e-5


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def _same(v1, v2):
    return all(np.array_equal(a, b) for a, b in zip(_leaves(v1), _leaves(v2), strict=True))


def _max_diff(v1, v2):
    return max(float(np.max(np.abs(a - b))) for a, b in zip(_leaves(v1), _leaves(v2), strict=True))


def _cfg(seed, trainer="ensemble", **kw):
    return training.TrainConfig(model="mlp3", seed=seed, trainer=trainer, **{**TINY, **kw})


@pytest.fixture
def kw(tmp_path, data_dir):
    return dict(TINY, cache_dir=tmp_path / "cache", data_dir=data_dir, progress=False)


@pytest.fixture
def calls(monkeypatch):
    """The seeds of every ensemble trained (the real training runs)."""
    seen, real = [], ensemble.train_ensemble

    def spy(cfgs, run_dirs, **k):
        seen.append([c.seed for c in cfgs])
        return real(cfgs, run_dirs, **k)

    monkeypatch.setattr(ensemble, "train_ensemble", spy)
    return seen


def test_members_are_their_own_seeds(tmp_path, data_dir):
    """Members differ from each other; a member is the same network whatever the other members
    (one-seed ensemble, other order: bit for bit) and its solo twin within rounding."""
    run = lambda name, seeds: ensemble.train_ensemble(  # noqa: E731
        [_cfg(s) for s in seeds], [tmp_path / f"{name}{s}" for s in seeds], data_dir=data_dir, progress=False)
    pair = run("a", [0, 1])
    (_, v0, info0), (_, v1, info1) = pair
    assert _max_diff(v0, v1) > 0.1  # two seeds: two networks
    assert info0["config"]["seed"] == 0 and info1["config"]["seed"] == 1
    assert info0["ensemble"]["seeds"] == [0, 1] and info0["config"]["trainer"] == "ensemble"
    assert _same(run("b", [1, 0])[1][1], v0)
    assert _same(run("c", [0])[0][1], v0)
    _, solo, solo_info = training.train(_cfg(0, "solo"), tmp_path / "solo", data_dir=data_dir, progress=False)
    assert _max_diff(solo, v0) < SOLO_ATOL
    assert set(solo_info) <= set(info0) and set(info0) - set(solo_info) == {"ensemble"}
    assert info0["test_accuracy"] == pytest.approx(solo_info["test_accuracy"], abs=2 / 50)


def test_cache_entries_are_independent_and_not_retrained(kw, calls):
    out = training.load_or_train_seeds("mlp3", [0, 1], **kw)
    assert calls == [[0, 1]]
    dirs = [info["run_dir"] for _, _, info in out]
    assert len(set(dirs)) == 2 and all(training.TrainConfig(model="mlp3", seed=s, trainer="ensemble", **TINY)
                                       .run_name() in d for s, d in zip((0, 1), dirs))
    again = training.load_or_train_seeds("mlp3", [2, 1, 0], **kw)
    assert calls == [[0, 1], [2]]  # only the missing seed
    assert _same(again[2][1], out[0][1]) and _same(again[1][1], out[1][1])
    # a solo network never shares an entry with an ensemble member
    _, _, solo = training.load_or_train("mlp3", seed=0, **kw)
    assert solo["run_dir"] not in dirs and solo["config"]["trainer"] == "solo"
    with pytest.raises(FileNotFoundError):
        training.load_or_train_seeds("mlp3", [3], allow_train=False, **kw)


def test_load_model_trains_the_missing_seeds_together(kw, calls, monkeypatch):
    monkeypatch.setenv("JAXDYN_CACHE_DIR", str(kw["cache_dir"]))
    train = {k: v for k, v in kw.items() if k not in ("cache_dir", "progress")}
    _, v1, info1 = C.load_model("mlp3", train, seed=1, seeds=(0, 1), progress=False)
    assert calls == [[0, 1]] and info1["config"]["seed"] == 1
    _, v0, info0 = C.load_model("mlp3", train, seed=0, seeds=(0, 1), progress=False)
    assert calls == [[0, 1]] and info0["config"]["seed"] == 0 and info0["run_dir"] != info1["run_dir"]
    assert jax.tree.leaves(v0)[0].dtype == np.float64
    with pytest.raises(ValueError, match="not among"):
        C.load_model("mlp3", train, seed=2, seeds=(0, 1), progress=False)
    # a convolutional network is trained alone (the vmapped convolution is the slower path on CPU)
    assert training.prefers_ensemble("mlp3") and not training.prefers_ensemble("cnn3")
    _, _, info = C.load_model("cnn3", train, seed=1, seeds=(0, 1), progress=False)
    assert calls == [[0, 1]] and info["config"]["trainer"] == "solo" and info["config"]["seed"] == 1


def test_paths_refuse_the_other_trainer(tmp_path, data_dir):
    with pytest.raises(ValueError, match="trainer"):
        training.TrainConfig(model="mlp3", trainer="bagging")
    with pytest.raises(ValueError, match="solo"):
        training.train(_cfg(0), tmp_path / "a", data_dir=data_dir, progress=False)
    with pytest.raises(ValueError, match="ensemble"):
        ensemble.train_ensemble([_cfg(0, "solo")], [tmp_path / "b"], data_dir=data_dir)
    with pytest.raises(ValueError, match="differ only in their seed"):
        ensemble.train_ensemble([_cfg(0), _cfg(1, lr=1e-2)], [tmp_path / "c", tmp_path / "d"], data_dir=data_dir)
    with pytest.raises(ValueError, match="distinct"):
        ensemble.train_ensemble([_cfg(0), _cfg(0)], [tmp_path / "e", tmp_path / "f"], data_dir=data_dir)
    assert _cfg(0).hash() != _cfg(0, "solo").hash()
    assert _cfg(0, "solo").hash() == training.TrainConfig(model="mlp3", seed=0, **TINY).hash()


def test_bench_ensemble_tiny(tmp_path):
    """``python -m benchmarks.ensemble --tiny`` runs end to end (its timings mean nothing) and
    neither path compiles again for another seed: the compile cost stays flat in the seeds."""
    bench = importlib.import_module("benchmarks.ensemble")
    out = tmp_path / "bench.json"
    bench.main(["--tiny", "--out", str(out)])
    r = json.loads(out.read_text())["models"]["mlp3"]
    assert r["sequential"]["compiles_per_seed"][0] > 0 and r["sequential"]["compiles_per_seed"][1:] == [0]
    assert r["ensemble"]["compiles"][0] > 0 and r["ensemble"]["compiles"][1] == 0
    assert len(r["ensemble"]["test_accuracy"]) == 2
