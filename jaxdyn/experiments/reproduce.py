"""``python -m jaxdyn reproduce``: every table and figure of the paper in one command.

Runs, in order, Table 1, Table 2, Appendix D/J with Figure 1, and Figures 5, 2, 3, 4 (Figure 5 first
so that the standard AlexNet / VGG-11 it shares with Figure 2 are trained with its sharpness
callback), each stage in its own sub-directory of ``--out``; then writes ``REPORT.md`` (every
result beside the paper's claim, with a verdict computed from the measured numbers, see
:mod:`jaxdyn.experiments.report`).

Every stage is a module with ``run_experiment(*, scale, out, seed, progress) -> dict``. Its
returned dict is stored in ``<out>/<stage>/stage.json`` together with a fingerprint (scale, seed,
the module's scale preset and a hash of its source and of the modules in its ``DEPENDS``); a
second run reuses a stage whose fingerprint matches (``--force`` recomputes). Trained networks are cached separately
(``JAXDYN_CACHE_DIR``), so even a forced run does not retrain them.

Scales: ``--quick`` (default; CI's 2 CPU cores), ``--full`` (the paper's scale, for a GPU), and
``--scale tiny`` (hidden; seconds-long smoke test).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Sequence

from jaxdyn.cli import write_json_atomic

HELP = "Reproduce everything (Tables 1-2, Appendix D/J, Figures 1-5) and write REPORT.md."
RESULT_NAME = "reproduce.json"

STAGES: dict[str, str] = {
    "table1": "jaxdyn.experiments.table1",
    "table2": "jaxdyn.experiments.table2",
    "appendix": "jaxdyn.experiments.appendix",
    "fig5": "jaxdyn.experiments.fig5",
    "fig2": "jaxdyn.experiments.fig2",
    "fig3": "jaxdyn.experiments.fig3",
    "fig4": "jaxdyn.experiments.fig4",
}
SCALES = ("tiny", "quick", "full")


def _fingerprint(stage: str, mod, scale: str, seed: int) -> dict:
    from jaxdyn import __version__
    from jaxdyn.experiments.figures import jsonable_config

    preset = getattr(mod, "SCALES", {})
    preset = preset.get(scale) if isinstance(preset, dict) else None
    try:
        preset = jsonable_config(preset)
    except TypeError:
        preset = repr(preset)
    h = hashlib.sha256()
    for m in (mod, *(importlib.import_module(d) for d in getattr(mod, "DEPENDS", ()))):
        h.update(Path(m.__file__).read_bytes() if getattr(m, "__file__", None) else b"")
    return {"stage": stage, "scale": scale, "seed": seed, "version": __version__, "preset": preset,
            "source_sha256": h.hexdigest()}


def _outputs(stage_dir: Path) -> tuple[list[str], list[str]]:
    png = sorted(str(p) for p in stage_dir.glob("*.png"))
    md = sorted(str(p) for p in stage_dir.glob("*.md"))
    return png, md


def run_stage(stage: str, *, scale: str, out: Path, seed: int, progress: bool, force: bool,
              fingerprint: dict | None = None) -> dict:
    """Run (or reuse) one stage; returns its record (never raises for a failing stage: the
    error and traceback are recorded, so that the other stages and the report still run).
    ``fingerprint``: taken when the run started (default: now), so that a source file edited
    while a long run is in flight does not get the results of the code that was loaded."""
    modname = STAGES[stage]
    stage_dir = Path(out) / stage
    rec_path = stage_dir / "stage.json"
    if importlib.util.find_spec(modname) is None:
        return {"stage": stage, "status": "missing", "error": f"module {modname} is not available",
                "runtime_s": 0.0, "cached": False, "png": [], "md": []}
    mod = importlib.import_module(modname)
    fp = fingerprint or _fingerprint(stage, mod, scale, seed)
    if not force and rec_path.exists():
        try:
            rec = json.loads(rec_path.read_text())
        except ValueError:
            rec = {}
        if rec.get("fingerprint") == fp and rec.get("status") == "ok":
            png, md = _outputs(stage_dir)
            return {**rec, "cached": True, "png": png, "md": md}
    stage_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        results = mod.run_experiment(scale=scale, out=stage_dir, seed=seed, progress=progress)
        status, error = "ok", None
    except Exception as e:  # noqa: BLE001 — recorded in the report; the other stages still run
        results, status = None, "failed"
        error = f"{type(e).__name__}: {e}"
        (stage_dir / "error.txt").write_text(traceback.format_exc())
        print(f"[reproduce] stage {stage} failed: {error} (traceback in {stage_dir / 'error.txt'})", file=sys.stderr)
    rec = {"stage": stage, "module": modname, "status": status, "error": error, "fingerprint": fp,
           "runtime_s": time.perf_counter() - t0, "results": results}
    write_json_atomic(rec_path, rec)
    png, md = _outputs(stage_dir)
    return {**rec, "cached": False, "png": png, "md": md}


def load_stage(stage: str, *, out: Path) -> dict:
    """The record of a stage from an earlier run (``status="missing"`` when there is none)."""
    stage_dir = Path(out) / stage
    try:
        rec = json.loads((stage_dir / "stage.json").read_text())
    except (OSError, ValueError):
        return {"stage": stage, "status": "missing", "error": f"no results in {stage_dir}", "runtime_s": 0.0,
                "cached": False, "png": [], "md": []}
    png, md = _outputs(stage_dir)
    return {**rec, "cached": True, "png": png, "md": md}


def reproduce(*, scale: str = "quick", out: Path = Path("results/reproduce"), seed: int = 0, progress: bool = True,
              force: bool = False, figures_dir: Path | None = None, only: Sequence[str] | None = None,
              report_only: bool = False) -> dict:
    """Run every stage (or ``only`` some), write ``REPORT.md`` into ``out`` and, with
    ``figures_dir``, copy the PNGs, Markdown tables and the report there (links rewritten).
    ``report_only``: run nothing, rebuild the report from the stages' stored results.

    Returns ``{"scale", "seed", "total_s", "stages": {stage: {status, runtime_s, cached, error}},
    "verdicts": [...]}``.
    """
    from jaxdyn.experiments import report
    from jaxdyn.experiments.figures import progress_bar

    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")
    stages = list(STAGES) if only is None else list(only)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; choose from {list(STAGES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fps = {st: _fingerprint(st, importlib.import_module(STAGES[st]), scale, seed)
           for st in stages if not report_only and importlib.util.find_spec(STAGES[st]) is not None}
    records = []
    bar = progress_bar(stages, enabled=progress, desc=f"reproduce ({scale})")
    for stage in bar:
        bar.set_postfix(stage=stage)
        if report_only:
            records.append(load_stage(stage, out=out))
        else:
            records.append(run_stage(stage, scale=scale, out=out, seed=seed, progress=progress, force=force,
                                     fingerprint=fps.get(stage)))
    if report_only:  # the wall time of the run that made the results
        t0 -= sum(r.get("runtime_s") or 0.0 for r in records)
    total = time.perf_counter() - t0
    text = report.render(records, scale=scale, seed=seed, total_s=total, report_only=report_only)
    (out / "REPORT.md").write_text(text)
    if figures_dir is not None:
        fd = Path(figures_dir)
        fd.mkdir(parents=True, exist_ok=True)
        for rec in records:
            for p in rec.get("png", []) + rec.get("md", []):
                shutil.copy2(p, fd / Path(p).name)
        flat = report.render(records, scale=scale, seed=seed, total_s=total, link=lambda stage, p: Path(p).name,
                             report_only=report_only)
        (fd / "REPORT.md").write_text(flat)
    verdicts = [dict(stage=r["stage"], claim=c["claim"], verdict=c["verdict"])
                for r in records if r["status"] == "ok" for c in report.claims_for(r["stage"], r["results"])]
    return {"scale": scale, "seed": seed, "total_s": total, "report": str(out / "REPORT.md"),
            "stages": {r["stage"]: {k: r.get(k) for k in ("status", "runtime_s", "cached", "error")} for r in records},
            "verdicts": verdicts}


# --- CLI -----------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="scale", action="store_const", const="quick",
                   help="CI scale: narrow networks, few samples, for 2 CPU cores (default)")
    g.add_argument("--full", dest="scale", action="store_const", const="full",
                   help="the paper's scale (meant for a GPU)")
    g.add_argument("--scale", dest="scale", choices=SCALES, help=argparse.SUPPRESS)
    parser.set_defaults(scale="quick")
    parser.add_argument("--force", action="store_true", help="recompute stages whose results exist")
    parser.add_argument("--figures-dir", type=Path, default=None,
                        help="copy the PNGs, Markdown tables and REPORT.md here (the README shows figures/)")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rebuild REPORT.md (and --figures-dir) from the stored stage results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> dict:
    only = None if args.only is None else [s.strip() for s in args.only.split(",") if s.strip()]
    res = reproduce(scale=args.scale, out=args.out, seed=args.seed, progress=not args.no_progress,
                    force=args.force, figures_dir=args.figures_dir, only=only, report_only=args.report_only)
    failed = [s for s, r in res["stages"].items() if r["status"] != "ok"]
    print(f"REPORT: {res['report']} ({res['total_s'] / 60:.1f} min)")
    for v in res["verdicts"]:
        print(f"  [{v['stage']}] {v['verdict']:>14}: {v['claim']}")
    if failed:
        write_json_atomic(Path(args.out) / RESULT_NAME, res)
        print(f"stages not run or failed: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)
    return res
