"""Running one experiment of :data:`jaxdyn.experiments.EXPERIMENTS` into a directory.

:func:`execute` is the one place where an experiment's files are written:

* ``config.json``: the resolved config (the frozen dataclass, not the command-line flags);
* ``<name>.json``: the results, with ``experiment``, ``scale``, ``seed`` and ``config`` added and
  ``verdict`` (claim id -> verdict) as a summary;
* the plots (``plot(results, out)``) and ``claims.json`` (``claims(results)``);
* ``run.json``: status, fingerprint (the config, a hash of all of jaxdyn's source, the data's md5,
  the library versions and JAX's dtype flags: :mod:`jaxdyn._internal.fingerprint`) and run time — what
  decides whether stored results can be reused.

Existing results are never overwritten silently: the same fingerprint is reused; another config
needs ``force`` (or ``overwrite``, which ``reproduce`` passes for its own stage directories); the
same config made by other code, data or libraries is stale and recomputed. The run holds ``out``
(:func:`jaxdyn._internal.runlock.hold`): a second run into it is refused.

Work is kept as it finishes: an experiment runs each piece (a network, a β) through
:class:`Pieces`, which stores it in ``<out>/pieces/`` at once; a run that is killed or fails keeps
them, and running it again with the same config resumes from them (a different config needs
``--force``, which discards them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import jax

from jaxdyn.experiments.claims import could_not_read
from jaxdyn._internal.fingerprint import stage_fingerprint
from jaxdyn._internal.runlock import hold
from jaxdyn._internal.results import (copy_atomic, read_json, remove_file, remove_stale_temps, to_json_tree,
                                      write_json_atomic)

__all__ = ["execute", "results_file", "safe_claims", "outputs", "Pieces"]


class Pieces:
    """The finished pieces of a run, one JSON file each in ``<out>/pieces/``.

    ``pieces.get(key, fn)`` returns the stored piece ``key`` or computes ``fn()``, stores it
    atomically and returns it — in both cases as it reads back from JSON, so a resumed run sees
    exactly what a fresh one does."""

    def __init__(self, out):
        self.dir = Path(out) / "pieces"

    def _path(self, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in str(key))
        return self.dir / f"{safe}.json"

    def get(self, key: str, fn):
        path = self._path(key)
        if path.exists():
            try:
                return read_json(path)
            except ValueError:  # a torn file cannot happen (atomic writes), but never trust it
                path.unlink()
        value = to_json_tree(fn())
        write_json_atomic(path, value)
        _after_piece_stored()
        return value

    def done(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.json")) if self.dir.exists() else []

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


#: test hook: ``JAXDYN_KILL_AFTER_PIECES=N`` SIGKILLs this process once it has stored N pieces (in all
#: the runs of the process together), to test that a killed run resumes to the same numbers
KILL_AFTER_PIECES_ENV = "JAXDYN_KILL_AFTER_PIECES"
_stored = [0]


def _after_piece_stored() -> None:
    _stored[0] += 1
    n = os.environ.get(KILL_AFTER_PIECES_ENV)
    if n and _stored[0] >= int(n):
        os.kill(os.getpid(), signal.SIGKILL)


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


def _reusable(out: Path, exp: ModuleType, fp: dict) -> tuple[bool, bool, bool, bool]:
    """(finished results of ``fp`` are stored, pieces of an unfinished run of ``fp`` are stored,
    results or pieces of another config are stored, results or pieces of the same config made by
    other code, data, libraries or flags — stale — are stored)."""
    stored = (out / results_file(exp)).exists() or bool(Pieces(out).done())
    if not stored:
        return False, False, False, False
    try:
        rec = read_json(out / "run.json")
    except (OSError, ValueError):
        return False, False, True, False
    old = rec.get("fingerprint")
    if old != fp:
        same_config = isinstance(old, dict) and all(old.get(k) == fp[k] for k in ("experiment", "config"))
        return False, False, not same_config, same_config
    finished = rec.get("status") == "ok" and (out / results_file(exp)).exists()
    return finished, not finished, False, False


def execute(exp: ModuleType, cfg, out, *, progress: bool = True, force: bool = False, overwrite: bool = False,
            fingerprint: dict | None = None, figures_dir=None) -> dict:
    """Run ``exp`` with config ``cfg`` into ``out`` (or reuse stored results of the same config).

    Args:
      exp: an experiment module (the protocol of :mod:`jaxdyn.experiments`).
      cfg: ``exp.config(...)``.
      out: the run directory (created; checked writable before any work).
      force: recompute even when results of the same config exist (and replace them).
      overwrite: replace results of a *different* config (``reproduce`` owns its stage directories).
      fingerprint: what else stored results must match to be reused; default
        :func:`jaxdyn._internal.fingerprint.stage_fingerprint` (all of jaxdyn's source, the data's md5, the
        library versions, JAX's dtype flags). Stored results of the same config but another
        fingerprint are stale: recomputed (pieces included) without ``force``.
      figures_dir: also copy the PNGs and Markdown tables there.

    Returns:
      ``{"results", "claims", "cached", "runtime_s", "png", "md"}``.

    Raises:
      jaxdyn._internal.runlock.OutInUse: another live run holds ``out`` (:func:`jaxdyn._internal.runlock.hold`).
      jaxdyn._internal.results.WriteError: a result could not be written (a full disk); what was written
        before is intact and the same call resumes from the stored pieces.
    """
    with hold(out) as out:
        for folder in (out, Pieces(out).dir):  # what a run killed in the middle of a write left behind
            remove_stale_temps(folder)
        return _execute(exp, cfg, out, progress=progress, force=force, overwrite=overwrite, fingerprint=fingerprint,
                        figures_dir=figures_dir)


def _execute(exp, cfg, out: Path, *, progress, force, overwrite, fingerprint, figures_dir) -> dict:
    x64 = jax.config.jax_enable_x64  # experiments switch float64 on: the caller's flag (in the key) is restored
    try:
        return _execute_as(exp, cfg, out, progress=progress, force=force, overwrite=overwrite, fingerprint=fingerprint,
                           figures_dir=figures_dir)
    finally:
        jax.config.update("jax_enable_x64", x64)


def _execute_as(exp, cfg, out: Path, *, progress, force, overwrite, fingerprint, figures_dir) -> dict:
    extra = stage_fingerprint(exp.name) if fingerprint is None else fingerprint
    fp = {"experiment": exp.name, "config": to_json_tree(cfg), **extra}
    same, resume, other, stale = _reusable(out, exp, fp)
    if same and not force:
        results = read_json(out / results_file(exp))
        rec = read_json(out / "run.json")
        record = dict(results=results, claims=safe_claims(exp, results), cached=True,
                      runtime_s=rec.get("runtime_s", 0.0), cpu_s=rec.get("cpu_s"), **outputs(out))
        _copy_outputs(record, figures_dir)
        return record
    if other and not (force or overwrite):
        raise ValueError(f"{out} already holds results of another {exp.name} run (a different config); pass "
                         "--force to replace them or choose another --out")
    if stale and not force:
        print(f"[{exp.name}] the results in {out} were made by other code, data, libraries or flags: recomputing")
    if force or other or stale:  # nothing of another run may end up mixed into this one
        Pieces(out).clear()
        for stale in (results_file(exp), "claims.json"):
            remove_file(out / stale)
    elif resume:
        print(f"[{exp.name}] resuming in {out}: {len(Pieces(out).done())} finished piece(s) kept")
    write_json_atomic(out / "run.json", dict(status="running", fingerprint=fp))
    write_json_atomic(out / "config.json", fp["config"])
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        body = exp.run(cfg, out, progress)
    except BaseException as e:  # the pieces stay; a rerun with the same config resumes from them
        with contextlib.suppress(OSError):  # on a full disk this may fail too: the first error is the one to see
            write_json_atomic(out / "run.json", dict(status="failed", fingerprint=fp,
                                                     error=f"{type(e).__name__}: {e}", pieces=Pieces(out).done()))
        raise
    runtime, cpu = time.perf_counter() - t0, time.process_time() - c0
    seeds = list(getattr(cfg, "seeds", None) or [getattr(cfg, "seed", 0)])
    results = {"experiment": exp.name, "scale": cfg.scale, "seeds": seeds,
               "config": fp["config"], **body}
    exp.plot(results, out)
    claims = safe_claims(exp, results)
    write_json_atomic(out / results_file(exp), {**results, "verdict": {c["id"]: c["verdict"] for c in claims}})
    write_json_atomic(out / "claims.json", claims)
    write_json_atomic(out / "run.json", dict(status="ok", fingerprint=fp, runtime_s=runtime, cpu_s=cpu))
    Pieces(out).clear()  # folded into the results
    record = dict(results=results, claims=claims, cached=False, runtime_s=runtime, cpu_s=cpu, **outputs(out))
    _copy_outputs(record, figures_dir)
    return record


def _copy_outputs(record: dict, figures_dir) -> None:
    if figures_dir is None:
        return
    fd = Path(figures_dir)
    for p in record["png"] + record["md"]:
        copy_atomic(p, fd / Path(p).name)
