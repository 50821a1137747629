"""The budgeted scheduler of the device check: each item a subprocess in its own process group,
killed on its timeout, never past the global budget; a failure never stops the others."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from benchmarks.device.plan import REPO
from benchmarks.device.report import key_numbers, read_json

__all__ = ["run_items"]


def run_items(items: list[dict], out: Path, *, budget_s: float, env: dict | None = None,
              reserve_s: float = 5.0, clock=time.monotonic) -> list[dict]:
    """Run each item as a subprocess (own process group, killed on timeout), never past
    ``budget_s`` in total; returns one record per item (``status`` ok / failed / timeout /
    skipped ... / not present)."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t0 = clock()
    records = []
    for it in items:
        rec = dict(name=it["name"], argv=[str(a) for a in it["argv"]], json=it["json"], time_s=0.0)
        Path(it["json"]).unlink(missing_ok=True)  # a JSON left by an earlier run must not pass for this one
        left = budget_s - (clock() - t0) - reserve_s
        if it.get("skip"):
            rec["status"] = it["skip"]
        elif left < it["min_s"]:
            rec["status"] = f"skipped: budget spent ({max(left, 0):.0f} s left of {budget_s:.0f} s)"
        else:
            timeout = min(it["timeout_s"], left)
            rec.update(_run_one(it, logs / f"{it['name']}.log", timeout, env))
            rec["timeout_s"] = round(timeout, 1)
        rec["key_numbers"] = key_numbers(read_json(it["json"])) if rec["status"] == "ok" else {}
        print(f"[device_check] {rec['name']:24s} {rec['status']:40.40s} {rec['time_s']:7.1f} s", flush=True)
        records.append(rec)
    return records


def _run_one(it: dict, log: Path, timeout: float, env: dict | None) -> dict:
    t = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.Popen(it["argv"], stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the item and its children only
            proc.wait()
            rc = None
        except BaseException:  # interrupted (Ctrl-C, SIGTERM): leave no orphan behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    dt = time.monotonic() - t
    if rc is None:
        status = f"timeout after {timeout:.0f} s"
    elif rc != 0:
        status = f"failed (exit {rc}): {_last_line(log)}"
    elif not Path(it["json"]).exists():
        status = "failed: no JSON written"
    else:
        status = "ok"
    return dict(status=status, rc=rc, time_s=round(dt, 2), log=str(log))


def _last_line(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""
