"""Writing results: atomic files, JSON of NumPy/JAX values, run directories.

Every file a command writes goes through here, so that a reader (or a killed run) never sees a
half-written file: the bytes go to a temporary file in the same directory, which is then
``os.replace``-d into place (atomic on POSIX). Files are created with the usual ``0o644`` mode
(``tempfile`` would make them ``0o600``).

This module imports neither jax nor numpy at import time.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

__all__ = ["write_bytes_atomic", "write_text_atomic", "write_json_atomic", "jsonable", "to_json_tree",
           "read_json", "check_writable"]


def write_bytes_atomic(path, blob: bytes) -> None:
    """Write ``blob`` to ``path`` atomically (parent directories are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def jsonable(o):
    """``json.dump``'s ``default``: NumPy/JAX scalars and arrays, paths, dataclasses, tuples of
    those."""
    import dataclasses

    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item") and getattr(o, "ndim", None) == 0:
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def to_json_tree(obj):
    """``obj`` as it reads back from JSON (tuples become lists, arrays lists, dataclasses dicts):
    the form in which configs are compared."""
    return json.loads(json.dumps(obj, default=jsonable))


def write_json_atomic(path, obj) -> None:
    """Write ``obj`` as indented JSON atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=jsonable) + "\n")


def read_json(path):
    """The JSON in ``path``; a corrupt or truncated file raises ``ValueError`` naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete it to recompute") from None


def check_writable(out) -> Path:
    """Create ``out`` (a directory) if needed and check that files can be written there, before
    any work starts. Raises ``ValueError`` with the reason otherwise."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out, prefix=".write-test.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ValueError(f"cannot write to --out {out}: {e.strerror or e}") from None
    return out
