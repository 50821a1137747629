"""Kills during a sweep: ``kappa-sweep`` killed (SIGKILL) after its first β is stored resumes
from the stored pieces, and its results equal those of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.timeout(400)

BETAS = "1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,1e-1,3e-1,1"


def _cmd(out, betas=BETAS):
    # through the network and with enough steps that each β takes a moment (the kill lands mid-sweep)
    return [sys.executable, "-m", "jaxdyn", "kappa-sweep", "--scale", "tiny", "--betas", betas,
            "--n-samples", "2", "--steps", "3000", "--path", "network", "--no-progress", "--out", str(out)]


def _env(cache):
    return {**os.environ, "JAXDYN_CACHE_DIR": str(cache), "MPLBACKEND": "Agg", "JAXDYN_NO_PIN": "1"}


def _strip(results):
    """The results less the timings (``seconds`` of each row)."""
    return {**results, "rows": [{k: v for k, v in r.items() if k != "seconds"} for r in results["rows"]]}


def test_sigkill_then_resume(data_dir, tmp_path):
    cache = tmp_path / "cache"
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    # the clean run also trains the tiny model into the cache, so the killed run starts sweeping at once
    subprocess.run(_cmd(clean), env=_env(cache), check=True, capture_output=True, timeout=300)

    proc = subprocess.Popen(_cmd(killed), env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    pieces = killed / "pieces"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if pieces.exists() and any(p.suffix == ".json" for p in pieces.iterdir()):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if proc.returncode == 0:
        pytest.skip("the sweep finished before it could be killed (machine too fast for this grid)")
    assert proc.returncode == -signal.SIGKILL
    kept = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in pieces.glob("*.json")}
    assert 1 <= len(kept) < len(BETAS.split(","))
    assert json.loads((killed / "run.json").read_text())["status"] == "running"
    assert not (killed / "kappa_sweep.json").exists()
    for p in pieces.glob("*.json"):  # every stored piece is whole JSON (atomic writes)
        json.loads(p.read_text())

    # a different config is refused: the pieces of the killed run are not mixed into it
    r = subprocess.run(_cmd(killed, "1e-2"), env=_env(cache), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and "--force" in r.stderr
    assert {p.name for p in pieces.glob("*.json")} == set(kept)

    # the same command resumes (the notice is printed with progress on: no --no-progress here)
    resume = [a for a in _cmd(killed) if a != "--no-progress"]
    r = subprocess.run(resume, env=_env(cache), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming in {killed}: {len(kept)} finished piece(s) kept" in r.stdout
    a = json.loads((clean / "kappa_sweep.json").read_text())
    b = json.loads((killed / "kappa_sweep.json").read_text())
    assert _strip(a) == _strip(b)
    # the rows of the kept pieces were read back, not recomputed: their timings are the killed run's
    seconds = {r["beta"]: r["seconds"] for r in b["rows"]}
    for _, blob in kept.values():
        row = json.loads(blob)
        assert seconds[row["beta"]] == row["seconds"]
    assert json.loads((killed / "run.json").read_text())["status"] == "ok"
    assert not pieces.exists()  # folded into the results
