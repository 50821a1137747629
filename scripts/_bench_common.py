"""Shared helpers of the ``scripts/bench_*.py`` benchmarks: argument parsing, timing discipline,
data, models, machine description and JSON output.

Timing discipline (docs/performance.md):

* every path is compiled ahead of time (``jit(...).lower(args).compile()``); the compile time is
  reported separately and never mixed into run times;
* the compiled executable is run once more as a warm-up (excluded, reported as ``first_run_s``)
  unless that would double the cost of a very slow reference, then ``repeats`` times with
  ``jax.block_until_ready``; the median is the figure, min/max are kept in the JSON;
* both sides of a comparison run in one process, one after the other, so the ratio printed side
  by side saw the same machine state.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a clean clone without `pip install -e .`
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxdyn._internal.results import write_json_atomic  # noqa: E402

__all__ = [
    "REPO", "parser", "enable_x64", "timed", "timed_cpu", "summarize", "primary_key", "t_", "compile_and_time", "time_compiled", "memory_stats", "machine_info", "load_digits",
    "init_model", "write_results", "print_table", "rel_err_max", "fmt_s", "to_torch", "from_torch", "nchw",
]


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """Common flags: ``--out``, ``--tiny``, ``--seed``, ``--repeats``."""
    p = argparse.ArgumentParser(prog=f"scripts/{name}.py", description=description)
    p.add_argument("--out", type=Path, default=REPO / "results" / "bench" / f"{name}.json",
                   help="JSON output path (default results/bench/%(prog)s.json)")
    p.add_argument("--tiny", action="store_true",
                   help="smallest sizes, for the smoke test (seconds; the numbers mean nothing)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model init and data subset")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each fast path (median reported)")
    return p


def enable_x64() -> None:
    jax.config.update("jax_enable_x64", True)


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


def _cpu_model() -> str:
    try:
        txt = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in txt.splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def machine_info(extra_versions: dict | None = None) -> dict:
    """Machine, software versions, devices and date, for the JSON and the docs table."""
    import flax
    import jaxlib

    devs = jax.devices()
    info = dict(
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        cpu=_cpu_model(),
        cpu_affinity=sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        loadavg=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        backend=jax.default_backend(),
        devices=[str(d) for d in devs],
        device_kind=devs[0].device_kind,
        n_devices=len(devs),
        python=platform.python_version(),
        versions=dict(jax=jax.__version__, jaxlib=jaxlib.__version__, flax=flax.__version__,
                      numpy=np.__version__),
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        x64=bool(jax.config.jax_enable_x64),
    )
    if extra_versions:
        info["versions"].update(extra_versions)
    return info


def load_digits(n: int, *, seed: int = 0, dtype=np.float32, split: str = "test"):
    """``n`` MNIST digits ``x: [n, 28, 28, 1]`` in [0, 1] and labels ``y: int32 [n]``.

    MNIST comes from :func:`jaxdyn.datasets.loading.load_mnist` (the built-in files, or ``JAXDYN_DATA_DIR``).
    If it cannot be read the benchmark still runs on uniform random images (timings do not depend on pixel
    values) and says so: the returned ``source`` is ``"random"``.
    """
    from jaxdyn.datasets import loading as data

    try:
        x, y = data.load_mnist(split)
        x, y = data.subset(x, y, n, seed)
        source = f"mnist-{split}"
    except (FileNotFoundError, ImportError, OSError) as e:
        print(f"[bench] MNIST not available ({e}); using random images", file=sys.stderr)
        rng = np.random.default_rng(seed)
        x = rng.uniform(0, 1, (n, 28, 28, 1))
        y = rng.integers(0, 10, n)
        source = "random"
    return np.asarray(x, dtype), np.asarray(y, np.int32), source


def init_model(name: str, *, dtype=jnp.float32, seed: int = 0, num_classes: int = 10, width: float = 1.0):
    """A zoo model with its random-init variables cast to ``dtype``: ``(model, variables, info)``."""
    from jaxdyn.core import models

    model = models.get_model(name, num_classes=num_classes, width=width)
    variables = models.cast(models.init_variables(model, jax.random.key(seed)), dtype)
    info = dict(model=name, num_classes=num_classes, width=width, weights=f"random init (seed {seed})",
                params=models.param_count(variables), dtype=jnp.dtype(dtype).name)
    return model, variables, info


def rel_err_max(a, b) -> float:
    """``max_i ||a_i - b_i|| / ||b_i||`` over the samples (leading axis)."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    return float(np.max(np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-300)))


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


# --- PyTorch copies of zoo models (the bench extra; imported lazily) ----------------------------

def to_torch(model, variables):
    """A ``torch.nn.Sequential`` computing the same logits as the flax ``model`` (NCHW input).

    Supports :class:`jaxdyn.core.models.MLP` and :class:`jaxdyn.core.models.CNN` (the ``mlp*`` and ``cnn*``
    zoo models).
    """
    import torch
    from torch import nn

    from jaxdyn.core import models

    params = variables["params"]

    def t(a):
        return torch.from_numpy(np.array(a, np.float32))

    layers = []
    if isinstance(model, models.MLP):
        names = ["first"] + [f"Dense_{i}" for i in range(len(model.features) - 1)] + ["head"]
        layers.append(nn.Flatten())  # one channel: (c, h, w) and (h, w, c) orders coincide
        for i, name in enumerate(names):
            k = params[name]["kernel"]
            lin = nn.Linear(k.shape[0], k.shape[1], bias=model.use_bias)
            lin.weight.data = t(k).T.contiguous()
            if model.use_bias:
                lin.bias.data = t(params[name]["bias"])
            layers.append(lin)
            if i < len(names) - 1:
                layers.append(nn.ReLU())
    elif isinstance(model, models.CNN):
        i = 0
        hw, c = 28, 1
        for stage in model.stages:
            for ch in stage:
                p = params[f"Conv_{i}"]
                conv = nn.Conv2d(c, ch, 3, padding=1)  # flax SAME, stride 1
                conv.weight.data = t(p["kernel"]).permute(3, 2, 0, 1).contiguous()
                conv.bias.data = t(p["bias"])
                layers += [conv, nn.ReLU()]
                c, i = ch, i + 1
            layers.append(nn.AvgPool2d(2))
            hw //= 2
        layers.append(nn.Flatten())
        k = np.asarray(params["head"]["kernel"], np.float32)  # rows in (h, w, c) order
        k = k.reshape(hw, hw, c, -1).transpose(2, 0, 1, 3).reshape(hw * hw * c, -1)
        head = nn.Linear(k.shape[0], k.shape[1])
        head.weight.data = torch.from_numpy(np.ascontiguousarray(k.T))
        head.bias.data = t(params["head"]["bias"])
        layers.append(head)
    else:
        raise ValueError(f"no PyTorch converter for {type(model).__name__} (supported: MLP, CNN)")
    return nn.Sequential(*layers).eval()


def nchw(x):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2)))


def from_torch(model, tmodel, variables):
    """The inverse of :func:`to_torch`: ``variables`` (a template of the same model, e.g. the
    initial weights) with every parameter replaced by the current one of ``tmodel`` (float32).
    Used to evaluate a PyTorch-trained copy with jaxdyn's evaluation, so both sides of a
    comparison are measured by the same code."""
    from jaxdyn.core import models

    mods = [m for m in tmodel if hasattr(m, "weight")]
    params = variables["params"]
    new = {}

    def a(t):
        return np.asarray(t.detach().cpu().numpy(), np.float32)

    if isinstance(model, models.MLP):
        names = ["first"] + [f"Dense_{i}" for i in range(len(model.features) - 1)] + ["head"]
        for name, lin in zip(names, mods, strict=True):
            new[name] = {"kernel": a(lin.weight).T.copy()}
            if model.use_bias:
                new[name]["bias"] = a(lin.bias)
    elif isinstance(model, models.CNN):
        convs, head = mods[:-1], mods[-1]
        for i, conv in enumerate(convs):
            new[f"Conv_{i}"] = {"kernel": a(conv.weight).transpose(2, 3, 1, 0).copy(), "bias": a(conv.bias)}
        k_old = np.asarray(params["head"]["kernel"])
        c = convs[-1].weight.shape[0]
        hw = int(round((k_old.shape[0] // c) ** 0.5))
        k = a(head.weight).T  # rows in (c, h, w) order
        new["head"] = {"kernel": k.reshape(c, hw, hw, -1).transpose(1, 2, 0, 3).reshape(hw * hw * c, -1).copy(),
                       "bias": a(head.bias)}
    else:
        raise ValueError(f"no PyTorch converter for {type(model).__name__} (supported: MLP, CNN)")
    if set(new) != set(params):
        raise ValueError(f"parameter names differ: {sorted(new)} vs {sorted(params)}")
    out = dict(variables)
    out["params"] = jax.tree.map(lambda old, n: jnp.asarray(n, old.dtype), dict(params), new)
    return out


class TorchPGD:
    """The loop of ``torchattacks.PGD.forward`` (3.5.1: random start, sign step, projection, clip to
    [0, 1], mean cross-entropy), for a host that has torch but not torchattacks (the device
    machine). Same attributes ``eps`` / ``alpha``; used only when torchattacks is missing, and
    then the JSON says so."""

    def __init__(self, model, eps, alpha, steps, random_start=True):
        self.model, self.eps, self.alpha, self.steps, self.random_start = model, eps, alpha, steps, random_start

    def __call__(self, images, labels):
        import torch
        import torch.nn.functional as F

        given_training = self.model.training
        self.model.eval()
        images = images.clone().detach()
        adv = images.clone().detach()
        if self.random_start:
            adv = torch.clamp(adv + torch.empty_like(adv).uniform_(-self.eps, self.eps), 0, 1).detach()
        for _ in range(self.steps):
            adv.requires_grad = True
            cost = F.cross_entropy(self.model(adv), labels)
            grad = torch.autograd.grad(cost, adv, retain_graph=False, create_graph=False)[0]
            adv = adv.detach() + self.alpha * grad.sign()
            delta = torch.clamp(adv - images, min=-self.eps, max=self.eps)
            adv = torch.clamp(images + delta, min=0, max=1).detach()
        self.model.train(given_training)
        return adv


def full_fp32(torch=None) -> str:
    """Make both libraries compute float32 matrix products in full float32 (no TF32) and return
    the setting's name for the JSON. On recent NVIDIA GPUs both JAX and PyTorch (cuDNN) default to
    TF32 for float32 products (about 1e-3 relative), so the flax and PyTorch copies of a model
    would disagree by more than rounding and the two sides would not run the same arithmetic.
    On CPU this changes nothing."""
    jax.config.update("jax_default_matmul_precision", "highest")
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return "float32, full precision (TF32 off in JAX and PyTorch)"
