"""One folder, one run: a second run into an ``--out`` that a live run holds is refused
at once — one ``error:`` line naming the holder's pid, exit code 2, no work done — and the folder
is taken over as soon as the holder is gone (SIGKILL included: the OS releases its lock).

The holder is a real second process that takes the lock through the same API and sleeps."""

import os
import signal
import subprocess
import sys
import time

import pytest

from jaxdyn.cli import app as cli

from jaxdyn._internal import runlock
from jaxdyn.experiments import load, runner

pytestmark = pytest.mark.timeout(240)

HOLD = ("import sys, time\nfrom jaxdyn._internal.runlock import hold\n"
        "with hold(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")


@pytest.fixture
def holder(tmp_path):
    """A live process holding ``tmp_path / "out"``."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "JAXDYN_NO_PIN": "1"})
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc, out
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


COMMANDS = {
    "experiment": ["kappa-sweep", "--scale", "tiny", "--betas", "1e-3", "--n-samples", "2", "--no-progress"],
    "reproduce": ["reproduce", "--scale", "tiny", "--only", "fig4", "--no-progress"],
    "train": ["train", "--model", "mlp3", "--quick", "--no-progress"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_second_run_refused_at_once(holder, command, capsys, monkeypatch, tmp_path):
    proc, out = holder
    cache = tmp_path / "cache"
    monkeypatch.setenv("JAXDYN_CACHE_DIR", str(cache))
    before = sorted(p.name for p in out.iterdir())
    t0 = time.monotonic()
    assert cli.main(COMMANDS[command] + ["--out", str(out)]) == 2
    assert time.monotonic() - t0 < 10  # refused, not waited for
    line = _one_error_line(capsys)
    assert f"pid {proc.pid}" in line and "in use" in line and str(out) in line
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written
    assert not cache.exists() or not any(cache.iterdir())  # no work done
    assert proc.poll() is None and runlock.holder(out)["pid"] == proc.pid


def test_library_entry_points_refuse_too(holder):
    proc, out = holder
    exp = load("kappa-sweep")
    with pytest.raises(runlock.OutInUse, match=f"pid {proc.pid}"):
        runner.execute(exp, exp.config("tiny"), out, progress=False)
    with pytest.raises(runlock.OutInUse, match=f"pid {proc.pid}"):
        with runlock.hold(out):
            pass


def test_taken_over_when_the_holder_is_killed(holder, capsys):
    proc, out = holder
    assert runlock.holder(out)["pid"] == proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # the killed holder's note is still there (nothing could remove it), but its lock is gone
    assert runlock.holder(out)["pid"] == proc.pid
    # a report of no stored stages (exit 1: stages missing) — but written, not refused
    code = cli.main(["reproduce", "--scale", "tiny", "--report-only", "--no-progress", "--out", str(out)])
    assert code == 1 and (out / "REPORT.md").exists()
    err = capsys.readouterr().err
    assert "in use" not in err and "stage(s) not run" in err
    assert runlock.holder(out) is None  # released at the end of the run
    with runlock.hold(out):
        assert runlock.holder(out)["pid"] == os.getpid()


def test_hold_is_reentrant_and_released(tmp_path):
    out = tmp_path / "o"
    with runlock.hold(out):
        with runlock.hold(out):  # the command line and execute() hold the same folder
            assert runlock.holder(out)["pid"] == os.getpid()
        assert runlock.holder(out)["pid"] == os.getpid()
        code = ("import sys\nfrom jaxdyn._internal.runlock import hold, OutInUse\n"
                "try:\n    hold(sys.argv[1]).__enter__()\nexcept OutInUse as e:\n    print(e)\n")
        r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=60)
        assert f"pid {os.getpid()}" in r.stdout
    assert runlock.holder(out) is None and sorted(os.listdir(out)) == []  # lock and note removed
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=60)
    assert r.stdout == "" and r.returncode == 0  # free again
