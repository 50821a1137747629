"""Kill anywhere, resume to the same numbers: a command SIGKILLed at a chosen point of an
experiment — after a piece is stored, or in the middle of writing a file (its bytes in a
temporary file, not yet in place) — then run again, gives results identical to an uninterrupted
run; leftovers of the killed write are removed, nothing half-written is ever read.

The kill points are two test hooks: ``JAXDYN_KILL_AFTER_PIECES=N`` (:mod:`jaxdyn.experiments.runner`)
and ``JAXDYN_KILL_IN_WRITE=<name>`` (:mod:`jaxdyn._internal.results`). tests/test_errors_kills.py kills a
sweep at a random moment instead."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jaxdyn.cli import app as cli

from jaxdyn._internal import runlock
from jaxdyn._internal.results import TEMP_SUFFIX

pytestmark = pytest.mark.timeout(600)

SWEEP = ["kappa-sweep", "--scale", "tiny", "--betas", "1e-3,1e-2,1e-1", "--n-samples", "2", "--no-progress"]


def _command(argv, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """The command in a fresh process (as a user runs it: JAX's default flags, which the stored
    results' fingerprint records — the test process has its own, set by conftest)."""
    env = {**os.environ, "MPLBACKEND": "Agg", "JAXDYN_NO_PIN": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "jaxdyn", *argv], env=env, capture_output=True, text=True,
                          timeout=300)


def _killed(argv, env_extra: dict) -> subprocess.CompletedProcess:
    r = _command(argv, env_extra)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])
    return r


def _resumed(argv) -> subprocess.CompletedProcess:
    r = _command(argv)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stdout or "reused" in r.stdout, r.stdout[-2000:]
    return r


def _temps(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob(f"*{TEMP_SUFFIX}"))


def _rows(path: Path) -> list[dict]:
    """The sweep's rows less their timings."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads(path.read_text())["rows"]]


@pytest.mark.slow  # ~60 s on one core (two killed runs in subprocesses); tests/test_errors_kills.py is the default one
def test_sweep_killed_after_a_piece_and_mid_write_resumes_identically(tiny_env):
    clean, out = tiny_env / "clean", tiny_env / "killed"
    assert cli.main(SWEEP + ["--out", str(clean)]) == 0  # trains the tiny network into the module's cache

    _killed(SWEEP + ["--out", str(out)], {"JAXDYN_KILL_AFTER_PIECES": "1"})
    assert [p.name for p in (out / "pieces").glob("*.json")] == ["beta=0.001.json"]
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    assert runlock.holder(out) is not None  # the killed run's note is left; its lock is not

    # killed again, in the middle of writing the figure (every piece done, no results yet)
    _killed(SWEEP + ["--out", str(out)], {"JAXDYN_KILL_IN_WRITE": "kappa_vs_beta.png"})
    assert len(list((out / "pieces").glob("*.json"))) == 3
    assert _temps(out) and not (out / "kappa_vs_beta.png").exists() and not (out / "kappa_sweep.json").exists()

    r = _resumed(SWEEP + ["--out", str(out)])
    assert "resuming" in r.stdout and "recomputing" not in r.stdout
    assert _rows(out / "kappa_sweep.json") == _rows(clean / "kappa_sweep.json")
    a, b = (json.loads((d / "kappa_sweep.json").read_text()) for d in (clean, out))
    assert a["verdict"] == b["verdict"] and a["config"] == b["config"]
    assert _temps(out) == [] and not (out / "pieces").exists() and runlock.holder(out) is None


TIMINGS = {"seconds", "time_s", "runtime_s", "cpu_s", "train_time_s", "epoch_times_s"}


def _untimed(obj):
    """``obj`` less its wall-clock timings (at any depth): what a resumed run must reproduce."""
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if k not in TIMINGS}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


def _reproduce(out):
    return ["reproduce", "--scale", "tiny", "--only", "fig4", "--no-progress", "--out", str(out)]


@pytest.mark.slow
@pytest.mark.parametrize("kill", [{"JAXDYN_KILL_AFTER_PIECES": "1"}, {"JAXDYN_KILL_IN_WRITE": "fig4.json"}],
                         ids=["after-piece", "mid-results-write"])
def test_reproduce_stage_killed_resumes_identically(tiny_env, kill):
    """A ``reproduce`` stage (fig4, tiny) killed after its network's piece or while writing its
    results file; the same command then gives the uninterrupted run's results and claims."""
    clean, out = tiny_env / "rep-clean", tiny_env / f"rep-{next(iter(kill))}"
    if not (clean / "fig4" / "fig4.json").exists():
        assert cli.main(_reproduce(clean)) == 0
    _killed(_reproduce(out), kill)
    assert not (out / "fig4" / "fig4.json").exists() and not (out / "REPORT.md").exists()
    r = _resumed(_reproduce(out))
    assert "recomputing" not in r.stdout
    if "JAXDYN_KILL_AFTER_PIECES" in kill:
        assert "[fig4] resuming" in r.stdout and "1 finished piece(s) kept" in r.stdout
    a, b = (json.loads((d / "fig4" / "fig4.json").read_text()) for d in (clean, out))
    assert _untimed(a) == _untimed(b)
    ca, cb = (json.loads((d / "claims.json").read_text()) for d in (clean, out))
    assert ca == cb
    assert _temps(out) == []
