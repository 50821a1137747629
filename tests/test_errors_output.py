"""Output folders: ``--out`` checked writable before any work, results reused for the same
config, never replaced for another config without ``--force``, nothing written outside ``--out``
unless ``--figures-dir`` names the place."""

import os
from pathlib import Path

import pytest

from jaxdyn.cli import app as cli
import json
import shutil

pytestmark = pytest.mark.timeout(300)



def sweep(betas: str = "1e-3,1e-1") -> list[str]:
    return ["kappa-sweep", "--scale", "tiny", "--betas", betas, "--n-samples", "2", "--no-progress"]


SWEEP = sweep()


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in root.rglob("*") if p.is_file()}


def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


@pytest.fixture(scope="module")
def swept(tiny_env):
    """One finished tiny sweep in ``tiny_env/first`` (the model trained into the module's cache)."""
    out = tiny_env / "first"
    assert cli.main(SWEEP + ["--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("command", [SWEEP, ["train", "--model", "mlp3", "--quick"]])
def test_unwritable_out_fails_before_work(tmp_path, capsys, command, monkeypatch):
    """``--out`` below a regular file cannot be created (as root, permissions would not stop it):
    one ``error:`` line, exit 2, and no work done (the model cache stays empty)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("JAXDYN_CACHE_DIR", str(cache))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert cli.main(command + ["--out", str(blocker / "out")]) == 2
    line = _one_error_line(capsys)
    assert "cannot write to --out" in line and "a-file" in line
    assert not cache.exists() or not any(cache.iterdir())


def test_same_config_reuses(swept, capsys):
    before = _tree(swept)
    assert cli.main(SWEEP + ["--out", str(swept)]) == 0
    assert _tree(swept) == before  # nothing recomputed nor rewritten


def test_other_config_refused_without_force(swept, capsys):
    before = {p: (swept / p).read_bytes() for p in _tree(swept)}
    mtimes = _tree(swept)
    assert cli.main([*sweep("1e-2,1e-1"), "--out", str(swept)]) == 2
    line = _one_error_line(capsys)
    assert "another kappa-sweep run" in line and "--force" in line
    assert _tree(swept) == mtimes and {p: (swept / p).read_bytes() for p in before} == before


def test_force_replaces(tiny_env, swept, capsys):

    out = tiny_env / "forced"
    shutil.copytree(swept, out)
    assert cli.main([*sweep("1e-2"), "--out", str(out), "--force"]) == 0

    cfg = json.loads((out / "config.json").read_text())
    assert cfg["betas"] == [1e-2]
    assert not (out / "pieces").exists()


def test_nothing_written_outside_out(tiny_env, swept, tmp_path, monkeypatch):
    """Without ``--figures-dir``, a run from another folder writes only into ``--out`` (the model
    cache, ``JAXDYN_CACHE_DIR``, is the one other place, and the model is already there); in
    particular the repository's committed ``figures/`` is not touched."""
    repo_figures = Path(__file__).resolve().parents[1] / "figures"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    watched = {"cwd": cwd, "figures": repo_figures, "tiny_env": tiny_env}
    before = {k: _tree(v) for k, v in watched.items()}
    out = cwd / "run"
    assert cli.main([*sweep("1e-3"), "--out", str(out)]) == 0
    after = {k: _tree(v) for k, v in watched.items()}
    assert after["figures"] == before["figures"] and after["tiny_env"] == before["tiny_env"]
    assert {p.split(os.sep)[0] for p in set(after["cwd"]) - set(before["cwd"])} == {"run"}
    assert (out / "kappa_vs_beta.png").exists()


def test_figures_dir_copies(swept, tmp_path):
    fd = tmp_path / "figs"
    assert cli.main(SWEEP + ["--out", str(swept), "--figures-dir", str(fd)]) == 0  # reused results, still copied
    assert sorted(p.name for p in fd.iterdir()) == ["kappa_vs_beta.png"]


def test_bad_flag_values_exit_2(tmp_path, capsys):
    out = tmp_path / "o"
    assert cli.main([*sweep("-1"), "--out", str(out)]) == 2
    assert "beta" in _one_error_line(capsys).lower()
    assert not (out / "kappa_sweep.json").exists()
