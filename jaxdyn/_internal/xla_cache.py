"""JAX's persistent compilation cache for the command line, beside the model cache.

``python -m jaxdyn ...`` stores every compiled XLA program in ``<model cache>/xla`` (by default
``~/.cache/jaxdyn/models/xla``; with ``JAXDYN_CACHE_DIR=D``, ``D/xla``; the model listing skips
it), so a rerun — a resumed run, a second seed set, a forced stage — loads its programs instead of
compiling them again (measured on one CPU core: a tiny Table 1 rerun 87 s → 27 s of CPU). It only
ever holds compiled programs, keyed by JAX on the program, the flags and the versions; deleting it
costs one recompilation.

Set through JAX's own environment variables before jax is imported, so the command line's
``--help`` stays free of jax: ``JAX_COMPILATION_CACHE_DIR`` already set wins; ``JAXDYN_XLA_CACHE=0``
turns it off; ``JAXDYN_XLA_CACHE=<folder>`` puts it there. Library calls from Python are not
affected (set ``jax.config.update("jax_compilation_cache_dir", ...)`` yourself).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import MutableMapping

__all__ = ["xla_cache_dir", "enable_from_environment"]


def xla_cache_dir(env: MutableMapping[str, str] = os.environ) -> Path | None:
    """Where the command line keeps compiled programs (``None``: off, ``JAXDYN_XLA_CACHE=0``)."""
    own = env.get("JAXDYN_XLA_CACHE", "").strip()
    if own.lower() in ("0", "off", "false", "no"):
        return None
    if own:
        return Path(own).expanduser()
    models = env.get("JAXDYN_CACHE_DIR")
    return (Path(models).expanduser() if models else Path.home() / ".cache" / "jaxdyn" / "models") / "xla"


def enable_from_environment(env: MutableMapping[str, str] = os.environ) -> Path | None:
    """Point JAX's persistent compilation cache at :func:`xla_cache_dir` (every program, however quick
    its compile) unless ``JAX_COMPILATION_CACHE_DIR`` is set or the cache is off; must run before jax
    is imported. Returns the folder in use (``None`` when off)."""
    if "JAX_COMPILATION_CACHE_DIR" in env:
        return Path(env["JAX_COMPILATION_CACHE_DIR"])
    path = xla_cache_dir(env)
    if path is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(path)
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    return path
