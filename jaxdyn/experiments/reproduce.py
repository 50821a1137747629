"""Reproduce everything (Tables 1-2, Appendix D/J, Figures 1-5) and write REPORT.md.

``python -m jaxdyn reproduce`` runs the experiments of :data:`jaxdyn.experiments.REPRODUCE`,
each with :func:`jaxdyn.experiments.runner.execute` in its own sub-directory of ``--out``, then
merges their claims into one ``claims.json`` and renders ``REPORT.md`` beside it
(:mod:`jaxdyn.experiments.report`, which decides nothing).

A stage is reused when its fingerprint matches: the resolved config, a hash of all of jaxdyn's
source (every module: an edit anywhere recomputes), the md5 of the MNIST files read, the versions
of jax/jaxlib/flax/optax/numpy and JAX's dtype flags (:mod:`jaxdyn._internal.fingerprint`; ``--force``
recomputes). Trained
networks are cached separately (``JAXDYN_CACHE_DIR``), so even a forced run does not retrain.

Scales: ``--quick`` (default; CI's 2 CPU cores), ``--full`` (the paper's scale, for a GPU), and
``--scale tiny`` (hidden; a seconds-long smoke test).
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Sequence

from jaxdyn.experiments import REPRODUCE, load
from jaxdyn.experiments._common import SCALES
from jaxdyn._internal.results import WriteError, copy_atomic, read_json, write_json_atomic, write_text_atomic
from jaxdyn.experiments._common import progress_bar
from jaxdyn.experiments import report
from jaxdyn._internal.runlock import hold
from jaxdyn.experiments.runner import outputs, results_file, safe_claims
import jax
from jaxdyn.experiments.runner import execute
from jaxdyn.experiments._common import TABLE_MODELS
from jaxdyn._internal.fingerprint import stage_fingerprint

RESULT_NAME = "reproduce.json"
#: the command reads MNIST: the command line gives it ``--data-dir``
READS_DATA = True

def _fingerprint(exp) -> dict:
    """The stage's cache key besides its config (:func:`jaxdyn._internal.fingerprint.stage_fingerprint`):
    all of jaxdyn's source, the data's md5, the library versions and JAX's dtype flags."""

    return stage_fingerprint(exp.name)


def _missing(stage: str, why: str) -> dict:
    return {"stage": stage, "status": "missing", "error": why, "runtime_s": 0.0, "cached": False, "png": [],
            "md": [], "claims": []}


#: the stages that take ``table_models`` (the networks of Tables 1-2 and the appendix)
TABLE_STAGES = ("table1", "table2", "appendix")


def resolve_table_models(spec: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"all"`` -> the ten networks, a comma list or sequence -> those (checked by each stage's
    config), ``None`` -> the scale's preset (the quick scale runs one network per family)."""

    if spec is None:
        return None
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    if not names:
        raise ValueError("table_models: name at least one network, or 'all'")
    return tuple(TABLE_MODELS) if names == ["all"] else tuple(names)


def parse_seeds(spec: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"0,1,2"`` or a sequence -> ``(0, 1, 2)`` (distinct non-negative integers, ``ValueError``
    otherwise); ``None`` -> ``None`` (each stage's preset)."""

    if spec is None:
        return None
    items = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    try:
        seeds = tuple(int(s) for s in items)
    except (TypeError, ValueError):
        raise ValueError(f"seeds must be a comma list of integers, got {spec!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct non-negative integers, at least one, got {spec!r}")
    return seeds


def _overrides(seeds, models) -> dict:
    return {**({} if seeds is None else dict(seeds=tuple(seeds))),
            **({} if models is None else dict(models=tuple(models)))}


def run_stage(stage: str, *, scale: str, out: Path, seeds: Sequence[int] | None, progress: bool, force: bool,
              fingerprint: dict | None = None, models: Sequence[str] | None = None) -> dict:
    """Run (or reuse) one stage; returns its record. Never raises for a failing stage: the error
    and traceback are recorded (``<stage>/error.txt``) so that the other stages and the report
    still run. ``fingerprint``: taken when the run started, so that a source file edited while a
    long run is in flight does not get the results of the code that was loaded."""


    stage_dir = Path(out) / stage
    exp = load(stage)
    t0 = time.perf_counter()
    x64 = jax.config.jax_enable_x64  # a stage switches float64 on; the next stage starts as this one did
    try:
        cfg = exp.config(scale, **_overrides(seeds, models))
        rec = execute(exp, cfg, stage_dir, progress=progress, force=force, overwrite=True,
                      fingerprint=fingerprint or _fingerprint(exp))
    except WriteError:  # a full disk or an unwritable file: the whole command stops (cli: one line)
        raise
    except Exception as e:  # noqa: BLE001 — recorded in the report; the other stages still run
        error = f"{type(e).__name__}: {e}"
        stage_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(stage_dir / "error.txt", traceback.format_exc())
        print(f"[reproduce] stage {stage} failed: {error} (traceback in {stage_dir / 'error.txt'})", file=sys.stderr)
        return {**_missing(stage, error), "status": "failed", "runtime_s": time.perf_counter() - t0}
    finally:
        jax.config.update("jax_enable_x64", x64)
    return {"stage": stage, "status": "ok", "error": None, **rec}


def load_stage(stage: str, *, out: Path) -> dict:
    """The record of a stage from an earlier run (``status="missing"`` when there is none)."""

    stage_dir = Path(out) / stage
    exp = load(stage)
    try:
        results = read_json(stage_dir / results_file(exp))
        run = read_json(stage_dir / "run.json")
    except (OSError, ValueError):
        return _missing(stage, f"no results in {stage_dir}")
    return {"stage": stage, "status": "ok", "error": None, "results": results, "claims": safe_claims(exp, results),
            "cached": True, "runtime_s": run.get("runtime_s", 0.0), "cpu_s": run.get("cpu_s"), **outputs(stage_dir)}


def reproduce(*, scale: str = "quick", out: Path = Path("results/reproduce"),
              seeds: str | Sequence[int] | None = None, progress: bool = True,
              force: bool = False, figures_dir: Path | None = None, only: Sequence[str] | None = None,
              report_only: bool = False, table_models: str | Sequence[str] | None = None) -> dict:
    """Run every stage (or ``only`` some), write ``claims.json`` and ``REPORT.md`` into ``out`` and,
    with ``figures_dir``, copy the PNGs, Markdown tables and the report there (links rewritten).
    ``report_only``: run nothing, rebuild the report from the stages' stored results.
    ``table_models``: the networks of :data:`TABLE_STAGES` (:func:`resolve_table_models`; default: the scale's).

    ``seeds``: the networks' seeds of every stage (:func:`parse_seeds`; default: each stage's preset).

    Returns ``{"scale", "seeds", "total_s", "report", "stages": {stage: {status, runtime_s, cached,
    error}}, "verdicts": [{stage, id, claim, verdict}]}``.
    """

    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")
    stages = list(REPRODUCE) if only is None else list(only)
    unknown = [s for s in stages if s not in REPRODUCE]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; choose from {list(REPRODUCE)}")
    models, seeds = resolve_table_models(table_models), parse_seeds(seeds)
    if not report_only:  # bad names or seeds fail here, before any stage runs
        for st in stages:
            load(st).config(scale, **_overrides(seeds, models if st in TABLE_STAGES else None))
    with hold(out) as out:
        return _reproduce(scale=scale, out=out, seeds=seeds, progress=progress, force=force, figures_dir=figures_dir,
                          stages=stages, report_only=report_only, models=models)


def _reproduce(*, scale, out, seeds, progress, force, figures_dir, stages, report_only, models) -> dict:

    t0 = time.perf_counter()
    fps = {} if report_only else {st: _fingerprint(load(st)) for st in stages}
    records = []
    bar = progress_bar(stages, enabled=progress, desc=f"reproduce ({scale})")
    for stage in bar:
        bar.set_postfix(stage=stage)
        records.append(load_stage(stage, out=out) if report_only else
                       run_stage(stage, scale=scale, out=out, seeds=seeds, progress=progress, force=force,
                                 fingerprint=fps[stage], models=models if stage in TABLE_STAGES else None))
    if report_only:  # the wall time of the run that made the results
        t0 -= sum(r.get("runtime_s") or 0.0 for r in records)
    total = time.perf_counter() - t0
    claims = [dict(c, stage=r["stage"]) for r in records for c in r["claims"]]
    write_json_atomic(out / "claims.json", claims)
    write_text_atomic(out / "REPORT.md", report.render(records, scale=scale, seeds=seeds, total_s=total,
                                                         report_only=report_only))
    if figures_dir is not None:
        fd = Path(figures_dir)
        for rec in records:
            for p in rec.get("png", []) + rec.get("md", []):
                copy_atomic(p, fd / Path(p).name)
        text = report.render(records, scale=scale, seeds=seeds, total_s=total, link=lambda stage, p: Path(p).name,
                             report_only=report_only)
        write_text_atomic(fd / "REPORT.md", text)
    verdicts = [dict(stage=c["stage"], id=c["id"], claim=c["claim"], verdict=c["verdict"]) for c in claims]
    return {"scale": scale, "seeds": None if seeds is None else list(seeds), "total_s": total,
            "report": str(out / "REPORT.md"),
            "stages": {r["stage"]: {k: r.get(k) for k in ("status", "runtime_s", "cpu_s", "cached", "error")}
                       for r in records},
            "verdicts": verdicts}
