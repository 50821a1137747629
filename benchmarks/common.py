"""What every benchmark shares besides the clocks (:mod:`benchmarks.timing`): the command-line flags,
data, models and the description of the machine."""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import subprocess
import sys
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from jaxdyn.core import models
from jaxdyn.datasets import loading as data

REPO = Path(__file__).resolve().parents[1]

__all__ = ["REPO", "parser", "enable_x64", "machine_info", "load_digits", "init_model", "rel_err_max"]


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """Common flags: ``--out``, ``--tiny``, ``--seed``, ``--repeats``; ``name`` (``bench_theorem2``) names the
    JSON (``results/bench/bench_theorem2.json``, as before) and the module (``benchmarks.theorem2``)."""
    prog = f"python -m benchmarks.{name.removeprefix('bench_')}"
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--out", type=Path, default=REPO / "results" / "bench" / f"{name}.json",
                   help=f"JSON output path (default results/bench/{name}.json)")
    p.add_argument("--tiny", action="store_true",
                   help="smallest sizes, for the smoke test (seconds; the numbers mean nothing)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model init and data subset")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each fast path (median reported)")
    return p


def enable_x64() -> None:
    jax.config.update("jax_enable_x64", True)


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
