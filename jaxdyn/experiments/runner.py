"""Running one experiment of :data:`jaxdyn.experiments.EXPERIMENTS` into a directory.

:func:`execute` is the one place where an experiment's files are written:

* ``config.json``: the resolved config (the frozen dataclass, not the command-line flags);
* ``<name>.json``: the results, with ``experiment``, ``scale``, ``seed`` and ``config`` added and
  ``verdict`` (claim id -> verdict) as a summary;
* the plots (``plot(results, out)``) and ``claims.json`` (``claims(results)``);
* ``run.json``: status, fingerprint (config and, from ``reproduce``, a hash of the source) and
  run time — what decides whether stored results can be reused.

Existing results are never overwritten silently: the same fingerprint is reused, a different one
needs ``force`` (or ``overwrite``, which ``reproduce`` passes for its own stage directories).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from jaxdyn.experiments.claims import could_not_read
from jaxdyn.results import check_writable, read_json, to_json_tree, write_json_atomic

__all__ = ["execute", "results_file", "safe_claims", "outputs"]


def results_file(exp: ModuleType) -> str:
    return exp.name.replace("-", "_") + ".json"


def safe_claims(exp: ModuleType, results: Any) -> list[dict]:
    """``exp.claims(results)``; results it cannot read give one "does not hold" claim saying so."""
    try:
        if not isinstance(results, dict):
            raise TypeError(f"results are a {type(results).__name__}, not a dict")
        return list(exp.claims(results))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        return [could_not_read(f"{exp.name}.results", exp.title, e)]


def outputs(out: Path) -> dict[str, list[str]]:
    """The PNGs and Markdown tables in ``out`` (what a report links and ``--figures-dir`` copies)."""
    out = Path(out)
    return {"png": sorted(str(p) for p in out.glob("*.png")), "md": sorted(str(p) for p in out.glob("*.md"))}


def _reusable(out: Path, exp: ModuleType, fp: dict) -> tuple[bool, bool]:
    """(stored results match ``fp``, some other run's results are stored there)."""
    res_path = out / results_file(exp)
    if not res_path.exists():
        return False, False
    try:
        rec = read_json(out / "run.json")
    except (OSError, ValueError):
        return False, True
    same = rec.get("fingerprint") == fp and rec.get("status") == "ok"
    return same, not same


def execute(exp: ModuleType, cfg, out, *, progress: bool = True, force: bool = False, overwrite: bool = False,
            fingerprint: dict | None = None, figures_dir=None) -> dict:
    """Run ``exp`` with config ``cfg`` into ``out`` (or reuse stored results of the same config).

    Args:
      exp: an experiment module (the protocol of :mod:`jaxdyn.experiments`).
      cfg: ``exp.config(...)``.
      out: the run directory (created; checked writable before any work).
      force: recompute even when results of the same config exist (and replace them).
      overwrite: replace results of a *different* config (``reproduce`` owns its stage directories).
      fingerprint: more to match before reuse (``reproduce``: a hash of the source).
      figures_dir: also copy the PNGs and Markdown tables there.

    Returns:
      ``{"results", "claims", "cached", "runtime_s", "png", "md"}``.
    """
    out = check_writable(out)
    fp = {"experiment": exp.name, "config": to_json_tree(cfg), **(fingerprint or {})}
    same, other = _reusable(out, exp, fp)
    if same and not force:
        results = read_json(out / results_file(exp))
        rec = read_json(out / "run.json")
        record = dict(results=results, claims=safe_claims(exp, results), cached=True,
                      runtime_s=rec.get("runtime_s", 0.0), **outputs(out))
        _copy_outputs(record, figures_dir)
        return record
    if other and not (force or overwrite):
        raise ValueError(f"{out} already holds results of another {exp.name} run (a different config); pass "
                         "--force to replace them or choose another --out")
    write_json_atomic(out / "run.json", dict(status="running", fingerprint=fp))
    write_json_atomic(out / "config.json", fp["config"])
    t0 = time.perf_counter()
    body = exp.run(cfg, out, progress)
    runtime = time.perf_counter() - t0
    results = {"experiment": exp.name, "scale": cfg.scale, "seed": getattr(cfg, "seed", None),
               "config": fp["config"], **body}
    exp.plot(results, out)
    claims = safe_claims(exp, results)
    write_json_atomic(out / results_file(exp), {**results, "verdict": {c["id"]: c["verdict"] for c in claims}})
    write_json_atomic(out / "claims.json", claims)
    write_json_atomic(out / "run.json", dict(status="ok", fingerprint=fp, runtime_s=runtime))
    record = dict(results=results, claims=claims, cached=False, runtime_s=runtime, **outputs(out))
    _copy_outputs(record, figures_dir)
    return record


def _copy_outputs(record: dict, figures_dir) -> None:
    if figures_dir is None:
        return
    fd = Path(figures_dir)
    fd.mkdir(parents=True, exist_ok=True)
    for p in record["png"] + record["md"]:
        shutil.copy2(p, fd / Path(p).name)
