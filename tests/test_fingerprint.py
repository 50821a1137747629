"""Fingerprints that cover what ran: a ``reproduce`` stage is reused only when all of
jaxdyn's source, its config, the data's md5, the library versions and JAX's dtype flags are
those of the stored run; a model-cache entry only when the training code is the same.

On the old main the stage fingerprint hashed a hand-kept list of modules (and a file that no
longer existed): editing ``regimes.py`` left a cached stage "fresh" — the end-to-end test below
edits a module no stage names, in a copy of the package, and sees the stage recomputed."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from jaxdyn import training


from jaxdyn.datasets import loading as data

from jaxdyn._internal import fingerprint as F
from jaxdyn.experiments import load, reproduce, runner

pytestmark = pytest.mark.timeout(300)

ROOT = F.PACKAGE_ROOT


def _copy_package(tmp_path) -> Path:
    dst = tmp_path / "src" / "jaxdyn"
    shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


def _touch(path: Path, text: str = "\n# edited by a test\n") -> None:
    path.write_text(path.read_text() + text)


def test_source_files_are_every_module():
    walked = {Path(d, f) for d, _, fs in os.walk(ROOT) if "__pycache__" not in d for f in fs if f.endswith(".py")}
    files = F.source_files()
    assert set(files) == walked
    assert [p.relative_to(ROOT).as_posix() for p in files] == sorted(p.relative_to(ROOT).as_posix() for p in files)
    names = {p.relative_to(ROOT).as_posix() for p in files}
    for m in ("analyses/regimes.py", "attacks/flow.py", "analyses/stats.py", "experiments/_common/core.py",
              "training/loop.py"):
        assert m in names


@pytest.mark.parametrize("module", ["analyses/regimes.py", "analyses/stats.py", "analyses/variant_matching.py",
                                    "experiments/_common/tables.py", "experiments/report.py", "testing/laws.py"])
def test_source_hash_follows_any_module(tmp_path, module):
    copy = _copy_package(tmp_path)
    same = F.source_hash(root=copy)
    assert same == F.source_hash()  # content, not location
    _touch(copy / module)
    assert F.source_hash(root=copy) != same


def test_source_hash_sees_new_and_renamed_modules(tmp_path):
    copy = _copy_package(tmp_path)
    h0 = F.source_hash(root=copy)
    (copy / "extra.py").write_text("X = 1\n")
    h1 = F.source_hash(root=copy)
    (copy / "extra.py").rename(copy / "extra2.py")
    h2 = F.source_hash(root=copy)
    assert len({h0, h1, h2}) == 3


def test_training_key_covers_the_training_code_only(tmp_path):
    names = {p.relative_to(ROOT).as_posix() for p in F.training_source_files()}
    assert {"training/loop.py", "training/step.py", "core/models.py", "core/losses.py", "attacks/multistep.py",
            "datasets/loading.py"} <= names
    assert not any(n.startswith("experiments/") for n in names)
    copy = _copy_package(tmp_path)
    h0 = F.training_source_hash(copy)
    _touch(copy / "experiments" / "fig2.py")  # not training code: the trained networks stay valid
    assert F.training_source_hash(copy) == h0
    _touch(copy / "core" / "models.py")
    h1 = F.training_source_hash(copy)
    _touch(copy / "attacks" / "_loop.py")  # imported by attacks (adversarial training), not named anywhere
    assert len({h0, h1, F.training_source_hash(copy)}) == 3


def test_model_cache_key_is_deterministic_and_follows_code(monkeypatch):
    cfg = training.TrainConfig(model="mlp3", width=1 / 16, n_train=256)
    key = cfg.cache_key()
    assert key == training.TrainConfig(model="mlp3", width=1 / 16, n_train=256).cache_key()
    assert cfg.run_name() == f"mlp3-{key[:16]}"
    monkeypatch.setattr(F, "training_source_hash", lambda root=None: "0" * 64)
    assert cfg.cache_key() != key
    monkeypatch.undo()
    monkeypatch.setattr(F, "library_versions", lambda: {"jax": "0.0.0"})
    assert cfg.cache_key() != key


def test_stage_fingerprint_covers_libraries_flags_and_data(tmp_path, monkeypatch, data_dir):
    fp = F.stage_fingerprint("fig4", data_dir)
    assert set(fp["libraries"]) == set(F.LIBRARIES) and fp["libraries"]["jax"] == jax.__version__
    assert fp["flags"]["jax_enable_x64"] == str(jax.config.jax_enable_x64)
    assert fp["data"]["md5"] == {n: data.MNIST_MD5[n] for n in data.MNIST_MD5}
    assert F.stage_fingerprint("fig4", data_dir) == fp  # deterministic
    x64 = jax.config.jax_enable_x64
    try:
        jax.config.update("jax_enable_x64", not x64)
        assert F.stage_fingerprint("fig4", data_dir)["flags"] != fp["flags"]
    finally:
        jax.config.update("jax_enable_x64", x64)
    monkeypatch.setattr(F, "library_versions", lambda: {**fp["libraries"], "optax": "9.9"})
    assert F.stage_fingerprint("fig4", data_dir) != fp


def test_data_fingerprint_is_the_md5_of_the_files_read(tmp_path, monkeypatch, data_dir):
    other = tmp_path / "mnist"
    other.mkdir()
    for name in data.MNIST_MD5:
        (other / name).symlink_to(Path(data_dir) / name)
    assert data.fingerprint(other) == data.fingerprint(data_dir)
    victim = other / "t10k-labels-idx1-ubyte.gz"
    victim.unlink()
    victim.write_bytes((Path(data_dir) / victim.name).read_bytes() + b"\0")
    changed = data.fingerprint(other)
    assert changed["md5"][victim.name] != data.MNIST_MD5[victim.name]
    monkeypatch.setenv("JAXDYN_DATA_DIR", str(other))  # the same resolution as load_mnist
    assert data.fingerprint() == changed


def _reproduce(src: Path, out: Path, cache: Path, data_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src.parent), "JAXDYN_CACHE_DIR": str(cache), "MPLBACKEND": "Agg",
           "JAXDYN_DATA_DIR": str(data_dir)}
    cmd = [sys.executable, "-m", "jaxdyn", "reproduce", "--scale", "tiny", "--only", "fig4", "--no-progress",
           "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=src.parent)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _reused(out: Path) -> bool:
    return "| fig4 | reused |" in (out / "REPORT.md").read_text()


def test_stage_reused_only_for_the_same_source(tmp_path, monkeypatch):
    """In process, with a stand-in for fig4's computation (the caching is under test, not fig4):
    the same source reuses the stage; an edit of ``regimes.py`` in the package that the
    fingerprint reads (a copy) recomputes it; ``--force`` recomputes regardless."""

    exp = load("fig4")
    calls = []
    monkeypatch.setattr(exp, "run", lambda cfg, out, progress=True: calls.append(1) or {"value": len(calls)})
    monkeypatch.setattr(exp, "plot", lambda results, out: None)
    monkeypatch.setattr(exp, "claims", lambda results: [])
    copy = _copy_package(tmp_path)
    monkeypatch.setattr(F, "PACKAGE_ROOT", copy)
    out = tmp_path / "out"

    def stage():
        return reproduce.reproduce(scale="tiny", out=out, only=["fig4"], progress=False)["stages"]["fig4"]

    assert not stage()["cached"] and len(calls) == 1
    assert stage()["cached"] and len(calls) == 1
    _touch(copy / "analyses" / "regimes.py")
    assert not stage()["cached"] and len(calls) == 2
    assert stage()["cached"] and len(calls) == 2
    (copy / "experiments" / "_common" / "new_helper.py").write_text("Y = 2\n")
    assert not stage()["cached"] and len(calls) == 3


def test_single_command_results_are_not_stale_either(tmp_path, monkeypatch, capsys):
    """``execute`` (every experiment command) keys stored results the same way: the same source
    reuses them, an edited module recomputes them (no ``--force`` needed: same config), and
    another config is still refused without ``--force``."""

    exp = load("kappa-sweep")
    calls = []
    monkeypatch.setattr(exp, "run", lambda cfg, out, progress=True: calls.append(1) or {"rows": []})
    monkeypatch.setattr(exp, "plot", lambda results, out: None)
    monkeypatch.setattr(exp, "claims", lambda results: [])
    copy = _copy_package(tmp_path)
    monkeypatch.setattr(F, "PACKAGE_ROOT", copy)
    out, cfg = tmp_path / "out", exp.config("tiny")
    assert not runner.execute(exp, cfg, out, progress=False)["cached"]
    assert runner.execute(exp, cfg, out, progress=False)["cached"] and len(calls) == 1
    _touch(copy / "attacks" / "flow.py")
    assert not runner.execute(exp, cfg, out, progress=False)["cached"] and len(calls) == 2
    assert "recomputing" in capsys.readouterr().out
    monkeypatch.setattr(F, "library_versions", lambda: {"jax": "0.0.1"})
    assert not runner.execute(exp, cfg, out, progress=False)["cached"] and len(calls) == 3
    with pytest.raises(ValueError, match="--force"):
        runner.execute(exp, exp.config("tiny", n_samples=3), out, progress=False)


@pytest.mark.slow
def test_editing_a_module_no_stage_names_recomputes_the_stage(tmp_path, data_dir):
    """End to end, in a copy of the package run as a subprocess: same source -> the stage is
    reused; ``regimes.py`` (which fig4 neither imports nor names) edited -> recomputed, the
    trained network still reused (regimes is not training code)."""
    src = _copy_package(tmp_path)
    out, cache = tmp_path / "out", tmp_path / "cache"
    _reproduce(src, out, cache, data_dir)
    assert not _reused(out)
    entries = sorted(p.name for p in cache.iterdir())
    _reproduce(src, out, cache, data_dir)
    assert _reused(out)
    _touch(src / "analyses" / "regimes.py")
    _reproduce(src, out, cache, data_dir)
    assert not _reused(out)
    assert sorted(p.name for p in cache.iterdir()) == entries  # no retraining
    run = json.loads((out / "fig4" / "run.json").read_text())
    assert run["fingerprint"]["source_sha256"] == F.source_hash(root=src)
