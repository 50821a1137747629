"""Run folders: a corrupt cached model names its file and the way out; files are mode 0644;
``cli.main`` leaves the caller's ``jax_enable_x64`` as it was."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from jaxdyn.cli import app as cli
from jaxdyn.experiments.runner import Pieces
from jaxdyn._internal.results import read_json

pytestmark = pytest.mark.timeout(300)

SWEEP = ["kappa-sweep", "--scale", "tiny", "--betas", "1e-2", "--n-samples", "2", "--no-progress"]


@pytest.fixture(scope="module")
def run(tiny_env):
    out = tiny_env / "run"
    assert cli.main(SWEEP + ["--out", str(out)]) == 0
    return out, Path(os.environ["JAXDYN_CACHE_DIR"])


def test_files_are_0644(run):
    out, cache = run
    files = [p for root in (out, cache) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "final.msgpack" for p in files) and any(p.name == "kappa_sweep.json" for p in files)
    modes = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o644"}, modes


def test_truncated_cached_model_names_file(run, capsys, tmp_path):
    out, cache = run
    final = next(cache.rglob("final.msgpack"))
    blob = final.read_bytes()
    try:
        final.write_bytes(blob[: len(blob) // 2])
        assert cli.main(SWEEP + ["--out", str(tmp_path / "o")]) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and err[0].startswith("error:")
        assert str(final) in err[0] and "corrupt" in err[0] and "delete" in err[0]
    finally:
        final.write_bytes(blob)


def test_corrupt_stored_results_name_file(tmp_path):

    p = tmp_path / "kappa_sweep.json"
    p.write_text('{"betas": [0.1, ')
    with pytest.raises(ValueError, match=f"{p}.*not valid JSON.*delete it"):
        read_json(p)


def test_corrupt_piece_is_recomputed(tmp_path):

    pieces = Pieces(tmp_path)
    assert pieces.get("beta=0.1", lambda: {"k": 1}) == {"k": 1}
    (pieces.dir / "beta=0.1.json").write_text("{")
    assert pieces.get("beta=0.1", lambda: {"k": 2}) == {"k": 2}
    assert pieces.done() == ["beta=0.1"]


_X64 = """
import sys, jax
jax.config.update("jax_enable_x64", {x64})
from jaxdyn.cli import app as cli
rc = cli.main({argv!r})
assert jax.config.jax_enable_x64 is {x64}, "x64 changed"
rc2 = cli.main(["kappa-sweep", "--scale", "tiny", "--betas", "-1", "--out", {bad!r}])  # an error path
assert rc2 == 2 and jax.config.jax_enable_x64 is {x64}, "x64 changed on error"
print("rc", rc)
"""


@pytest.mark.parametrize("x64", [False])  # the case; True costs another process
def test_cli_main_restores_x64(run, tmp_path, x64):
    out, _ = run
    code = _X64.format(x64=x64, argv=SWEEP + ["--out", str(tmp_path / "o")], bad=str(tmp_path / "bad"))
    env = {**os.environ, "JAXDYN_NO_PIN": "1"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and "rc 0" in r.stdout, r.stderr[-2000:]
