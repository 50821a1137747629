"""The timing discipline of the benchmarks (docs/performance.md), and their tables and JSON output.

* every path is compiled ahead of time (``jit(...).lower(args).compile()``); the compile time is
  reported separately and never mixed into run times;
* the compiled executable is run once more as a warm-up (excluded, reported as ``first_run_s``)
  unless that would double the cost of a very slow reference, then ``repeats`` times with
  ``jax.block_until_ready``; the median is the figure, min/max are kept in the JSON;
* both sides of a comparison run in one process, one after the other, so the ratio printed side
  by side saw the same machine state.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import jax

from jaxdyn._internal.results import write_json_atomic

__all__ = [
    "timed", "timed_cpu", "compile_and_time", "time_compiled", "time_torch", "primary_key", "t_", "summarize",
    "memory_stats", "fmt_s", "print_table", "write_results", "finish",
]


def timed(fn, *args):
    """``(seconds, output)`` of one call, waiting for the result (wall clock)."""
    t, _, out = timed_cpu(fn, *args)
    return t, out


def timed_cpu(fn, *args):
    """``(wall seconds, process CPU seconds, output)`` of one call, waiting for the result.

    The CPU time (all threads of this process) is the robust figure on a shared, loaded CPU:
    pinned to one core, it is what the call would take with the core to itself. On a GPU it only
    counts the host's share; use the wall time there.
    """
    c0, t0 = time.process_time(), time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0, time.process_time() - c0, out


def compile_and_time(jitted, *args, repeats: int = 5, warmup: bool = True, budget_s: float | None = None):
    """Compile ``jitted`` for ``args`` ahead of time, then time the executable.

    Args:
      jitted: a ``jax.jit``-ed function (or anything with ``.lower``).
      args: its (placed) arguments.
      repeats: maximum number of timed runs.
      warmup: run once before timing (excluded). Turn off for slow references whose first run
        costs as much as a timed one (compilation is done already, ahead of time).
      budget_s: stop repeating once the timed runs took this long (at least one run).

    Returns:
      ``(timing, output)``: ``timing`` has ``compile_s`` / ``compile_cpu_s``, ``first_run_s``
      (``None`` without warm-up), ``runs_s``, ``median_s``, ``min_s``, ``max_s``, the process CPU
      times ``cpu_runs_s`` / ``cpu_median_s``, ``repeats`` and, where XLA reports it, ``memory``
      (bytes of arguments, outputs and temporaries of the compiled program).
    """
    c0, t0 = time.process_time(), time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s, compile_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    timing, out = time_compiled(compiled, *args, repeats=repeats, warmup=warmup, budget_s=budget_s)
    return dict(compile_s=compile_s, compile_cpu_s=compile_cpu_s, **timing), out


def time_compiled(compiled, *args, repeats: int = 5, warmup: bool = True, budget_s: float | None = None):
    """Time an executable compiled already; same knobs and result as :func:`compile_and_time`
    without ``compile_s``."""
    first = None
    out = None
    if warmup:
        first, out = timed(compiled, *args)
    runs, cpus = [], []
    for _ in range(max(1, repeats)):
        t, c, out = timed_cpu(compiled, *args)
        runs.append(t)
        cpus.append(c)
        if budget_s is not None and sum(runs) >= budget_s:
            break
    timing = summarize(runs, cpus)
    timing.update(first_run_s=first, memory=memory_stats(compiled))
    return timing, out


def primary_key() -> str:
    """The timing that ratios and throughputs use: process CPU time on the CPU backend (the
    benchmarks run pinned to one core of a machine that other jobs share, and CPU time does not
    count the time the core spent on them), wall time on accelerators (where the host CPU time
    means nothing). Both are always recorded."""
    return "cpu_median_s" if jax.default_backend() == "cpu" else "median_s"


def t_(timing: dict) -> float:
    """The primary time of a timing dict (see :func:`primary_key`)."""
    return timing[primary_key()]


def summarize(runs: list[float], cpus: list[float]) -> dict:
    """Median/min/max of wall and CPU times of the timed runs."""
    return dict(runs_s=runs, cpu_runs_s=cpus, repeats=len(runs), median_s=statistics.median(runs),
                min_s=min(runs), max_s=max(runs), cpu_median_s=statistics.median(cpus))


def memory_stats(compiled) -> dict | None:
    """XLA's buffer assignment of a compiled program (the peak it plans for), in bytes."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 -- not every backend reports it
        return None
    if m is None:
        return None
    out = {k: int(getattr(m, f"{k}_size_in_bytes", 0)) for k in ("argument", "output", "temp", "alias")}
    out["peak_estimate"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
    return out


def time_torch(fn, repeats):
    """Warm-up call (excluded), then ``repeats`` timed calls of a host callable (the PyTorch sides);
    same fields as the jax timings. ``fn`` must wait for its result (on CUDA: ``torch.cuda.synchronize``)."""
    first, _, out = timed_cpu(fn)
    runs, cpus = [], []
    for _ in range(max(1, repeats)):
        t, c, out = timed_cpu(fn)
        runs.append(t)
        cpus.append(c)
    return dict(first_run_s=first, **summarize(runs, cpus)), out


def fmt_s(t: float | None) -> str:
    if t is None:
        return "-"
    if t >= 1:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.2f} ms"
    return f"{t * 1e6:.1f} us"


def print_table(rows: list[dict], cols: list[str]) -> None:
    """Print ``rows`` as an aligned text table with the given columns."""
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def write_results(path: Path, results: dict) -> None:
    write_json_atomic(Path(path), results)
    print(f"[bench] results written to {Path(path).resolve()}")


def finish(out, rows: list, results: dict, *, note: str = "(median)") -> dict:
    """The end of every benchmark: the table of ``rows`` (timings by :func:`primary_key`) and the
    results JSON written to ``out``; returns ``results``."""
    print(f"\ntimes: {primary_key()} {note}")
    print_table(rows, list(rows[0]))
    write_results(out, results)
    return results
