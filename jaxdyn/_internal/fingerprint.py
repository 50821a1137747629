"""What a cached result depends on, hashed: the source, the libraries, the flags, the data.

Two caches use it:

* ``reproduce`` reuses a stage's stored results only when :func:`stage_fingerprint` matches:
  the hash of **all** of jaxdyn's source (every ``.py`` under the package, :func:`source_hash`),
  the resolved config (added by :func:`jaxdyn.experiments.runner.execute`), the md5 of the MNIST
  files the run reads (:func:`jaxdyn.datasets.loading.fingerprint`), the versions of jax, jaxlib, flax,
  optax and numpy and JAX's dtype flags (:func:`environment`). An edit anywhere in the package
  recomputes every stage: no hand-kept list of modules can go stale.
* the model cache (:mod:`jaxdyn.training.cache`) names an entry by
  :meth:`jaxdyn.training.TrainConfig.run_name`, which hashes the config together with
  :func:`training_source_hash` (the training package and every jaxdyn module it imports,
  transitively, found by reading the imports — not a hand-kept list) and the library versions.
  Editing the training code therefore trains new networks; editing an experiment does not.

Every hash is deterministic: files in sorted order of their path relative to the package, each
fed as ``path``, its size and its bytes. This module imports neither jax nor numpy.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import sys
from pathlib import Path
from jaxdyn.datasets.loading import fingerprint as data_fingerprint
from jaxdyn._version import __version__
import jax

__all__ = ["PACKAGE_ROOT", "LIBRARIES", "DTYPE_FLAGS", "source_files", "source_hash", "training_source_files",
           "training_source_hash", "library_versions", "dtype_flags", "environment", "stage_fingerprint"]

#: the jaxdyn package folder
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
#: the libraries whose versions a cached result depends on
LIBRARIES = ("jax", "jaxlib", "flax", "optax", "numpy")
#: JAX's flags that change dtypes or rounding
DTYPE_FLAGS = ("jax_enable_x64", "jax_default_matmul_precision", "jax_numpy_dtype_promotion",
               "jax_default_prng_impl")


def source_files(root: Path | None = None) -> list[Path]:
    """Every ``.py`` file under ``root`` (default: the package), sorted by relative path."""
    root = Path(root) if root is not None else PACKAGE_ROOT
    files = [p for p in root.rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def source_hash(files=None, root: Path | None = None) -> str:
    """sha256 of ``files`` (default :func:`source_files`): each file's path relative to ``root``,
    its size and its content, in sorted order."""
    root = Path(root) if root is not None else PACKAGE_ROOT
    files = source_files(root) if files is None else sorted(Path(f) for f in files)
    h = hashlib.sha256()
    for f in files:
        blob = f.read_bytes()
        try:
            rel = f.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = f.name
        h.update(f"{rel}\0{len(blob)}\0".encode())
        h.update(blob)
    return h.hexdigest()


def _module_file(name: str, root: Path) -> Path | None:
    """The file of module ``jaxdyn.<...>`` under ``root`` (a package's ``__init__.py``)."""
    parts = name.split(".")[1:]
    base = root.joinpath(*parts) if parts else root
    if base.is_dir() and (base / "__init__.py").exists():
        return base / "__init__.py"
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    return None


def _imports(path: Path, root: Path) -> set[str]:
    """The ``jaxdyn`` modules ``path`` imports (at any level of the file, lazy imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "jaxdyn")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "jaxdyn":
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)  # `from jaxdyn import attacks`
    return {m for m in out if _module_file(m, root) is not None}


def training_source_files(root: Path | None = None) -> list[Path]:
    """The training package and every jaxdyn module it imports, transitively (with the
    ``__init__.py`` of each package on the way), sorted by relative path."""
    root = Path(root) if root is not None else PACKAGE_ROOT
    todo = [p for p in (root / "training").glob("*.py")]
    seen: set[Path] = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        for m in _imports(p, root):
            parts = m.split(".")
            for k in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
                f = _module_file(".".join(parts[:k]), root)
                if f is not None and f not in seen:
                    todo.append(f)
    return sorted(seen, key=lambda p: p.relative_to(root).as_posix())


@functools.lru_cache(maxsize=None)
def _training_hash(root: str, stamp: tuple) -> str:
    return source_hash(training_source_files(Path(root)), Path(root))


def training_source_hash(root: Path | None = None) -> str:
    """sha256 of :func:`training_source_files` (cached while no file of the package changes)."""
    root = Path(root) if root is not None else PACKAGE_ROOT
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in source_files(root))
    return _training_hash(str(root), stamp)


def library_versions() -> dict:
    """``{library: version}`` for :data:`LIBRARIES` (``None`` where one is not installed)."""
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = None
    return out


def dtype_flags() -> dict:
    """JAX's :data:`DTYPE_FLAGS` as set now (jax is imported for it)."""

    return {k: str(getattr(jax.config, k, None)) for k in DTYPE_FLAGS}


def environment() -> dict:
    """The library versions, JAX's dtype flags and the Python version."""
    return {"libraries": library_versions(), "flags": dtype_flags(),
            "python": ".".join(map(str, sys.version_info[:3]))}


def stage_fingerprint(exp_name: str, data_dir=None) -> dict:
    """What a ``reproduce`` stage's cached results depend on besides its config: the package
    version, :func:`source_hash`, :func:`environment` and the data's md5
    (:func:`jaxdyn.datasets.loading.fingerprint`)."""

    return {"version": __version__, "stage": exp_name, "source_sha256": source_hash(), **environment(),
            "data": data_fingerprint(data_dir)}
