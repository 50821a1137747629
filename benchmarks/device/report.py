"""The device check's summary: the headline numbers of each item's JSON, ``device_check.json`` and
``device_check.md`` (device, nvidia-smi, versions, each item's status, time and key numbers)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["read_json", "write_text", "key_numbers", "nvidia_smi", "write_summary", "markdown"]


def read_json(path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


#: key patterns of the headline numbers, most important first (the summary table shows the first)
_KEYS = ("speedup", "ratio", "per_s", "projected", "accuracy", "kappa", "met", "max_rel_diff", "device_kind",
         "backend", "tfds", "startup_s", "epoch_end_s", "eval_time_s", "traces", "executables", "compile_s", "time_s",
         "median_s")


def key_numbers(res, prefix: str = "", limit: int = 40) -> dict:
    """The headline leaves of a result JSON: keys naming a speed-up, ratio, throughput, accuracy,
    projection or κ (``models.cnn3.speedup`` style paths), at most ``limit``."""
    found: dict = {}

    def walk(node, path, depth):
        if depth > 7:
            return
        if isinstance(node, dict):
            for k, v in node.items():
                p = f"{path}.{k}" if path else str(k)
                if isinstance(v, (dict, list)):
                    walk(v, p, depth + 1)
                elif any(s in str(k) for s in _KEYS) and isinstance(v, (int, float, str, bool)) \
                        and not str(k).endswith("runs_s"):
                    found[p] = v
        elif isinstance(node, list) and node and isinstance(node[0], dict) and len(node) <= 16:
            for i, v in enumerate(node):
                walk(v, f"{path}[{v.get('model', v.get('batch', v.get('steps', i)))}]", depth + 1)

    if isinstance(res, dict):
        walk({k: v for k, v in res.items() if k not in ("machine", "config", "argv")}, prefix, 0)
    rank = {p: min(i for i, s in enumerate(_KEYS) if s in p.rsplit(".", 1)[-1]) for p in found}
    return {p: found[p] for p in sorted(found, key=lambda p: rank[p])[:limit]}  # stable: file order within a rank


def nvidia_smi() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        return subprocess.run([exe], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"nvidia-smi failed: {e}"


def write_summary(out: Path, records: list[dict], args, wall_s: float) -> dict:
    env = read_json(out / "env.json") or {}
    summary = dict(
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), tiny=bool(args.tiny),
        budget_s=args.budget_s, wall_s=round(wall_s, 1), data_dir=str(args.data_dir) if args.data_dir else None,
        train_steps=args.train_steps, device=env.get("device_kind"), devices=env.get("devices"),
        backend=env.get("backend"), versions=env.get("versions"), tfds_imported=env.get("tfds_imported"),
        nvidia_smi=nvidia_smi(), items=records)
    write_text(out / "device_check.json", json.dumps(summary, indent=2, default=str))
    write_text(out / "device_check.md", markdown(summary))
    return summary


def write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown(s: dict) -> str:
    lines = [f"# Device check ({'tiny, CPU smoke run' if s['tiny'] else 'GPU sizes'})", "",
             f"Date {s['date']}; device **{s['device']}** ({s['backend']}, {len(s['devices'] or [])} device(s)); "
             f"budget {s['budget_s']:.0f} s, wall {s['wall_s']:.0f} s; train slices {s['train_steps']} steps; "
             f"MNIST: {s['data_dir'] or 'none (benchmarks on random images)'}.", "",
             f"Versions: {json.dumps(s['versions'])}. tensorflow-datasets imported: {s['tfds_imported']}.", "",
             "| item | status | time (s) | key numbers |", "|---|---|---|---|"]
    for r in s["items"]:
        kn = "; ".join(f"{k} = {_fmt(v)}" for k, v in list(r["key_numbers"].items())[:14])
        lines.append(f"| {r['name']} | {r['status'].replace('|', '/')} | {r['time_s']:.1f} | {kn} |")
    if s["nvidia_smi"]:
        lines += ["", "```", s["nvidia_smi"].rstrip(), "```"]
    return "\n".join(lines) + "\n"
