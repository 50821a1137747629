"""Writing results: atomic files, JSON of NumPy/JAX values, run directories.

Every file a command writes goes through here, so that a reader (or a killed run) never sees a
half-written file: the bytes go to a temporary file in the same directory, which is then
``os.replace``-d into place (atomic on POSIX). Files are created with the usual ``0o644`` mode
(``tempfile`` would make them ``0o600``). A write that fails (a full disk: ENOSPC; a read-only or
unwritable place) raises :class:`WriteError`, which names the file; the file keeps its old
content (or stays absent) and no temporary file is left. The command line reports it as one
``error:`` line, exit code 1.

This module imports neither jax nor numpy at import time.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
import dataclasses

__all__ = ["WriteError", "atomic_path", "write_bytes_atomic", "copy_atomic", "append_line_atomic",
           "remove_stale_temps", "remove_file", "write_text_atomic", "write_json_atomic", "jsonable", "to_json_tree",
           "read_json", "check_writable"]


#: the suffix of the temporary files (``.<name>.<random>.tmp``: no ``*.json`` / ``*.png`` glob sees them)
TEMP_SUFFIX = ".tmp"
#: test hook: ``JAXDYN_KILL_IN_WRITE=<text>`` SIGKILLs the process in the middle of writing a file whose
#: name contains ``<text>`` (its bytes in the temporary file, not yet in place) — a kill "anywhere"
KILL_IN_WRITE_ENV = "JAXDYN_KILL_IN_WRITE"


def _kill_hook(path: Path) -> None:
    what = os.environ.get(KILL_IN_WRITE_ENV)
    if what and what in path.name:
        os.kill(os.getpid(), signal.SIGKILL)


def remove_stale_temps(folder) -> list[str]:
    """Remove the temporary files a killed run left in ``folder`` (not below it); returns their
    names. Call it only while holding the folder (:func:`jaxdyn._internal.runlock.hold`)."""
    gone = []
    for p in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        if p.is_file():
            p.unlink(missing_ok=True)
            gone.append(p.name)
    return gone


class WriteError(OSError):
    """A result could not be written (a full disk, a read-only or unwritable file): the message
    names the file and the reason. The file is as it was before (old content or absent), never
    half-written. The command line reports it as one ``error:`` line, exit code 1. ``errno``,
    ``strerror`` and ``filename`` are those of the failed write."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


def _write_error(path: Path, e: OSError, verb: str = "write") -> WriteError:
    why = e.strerror or str(e)
    code = errno.errorcode.get(e.errno, "") if e.errno else ""
    err = WriteError(f"cannot {verb} {path}: {why}{f' ({code})' if code else ''}; the results written before "
                     "are intact")
    err.errno, err.strerror, err.filename = e.errno, e.strerror, str(path)
    return err


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in ``path``'s folder (same suffix) to write to; on success it is
    ``os.replace``-d onto ``path``, on failure removed. An ``OSError`` while writing (e.g. ENOSPC)
    becomes a :class:`WriteError` naming ``path``. For writers that want a file name, like
    matplotlib's ``savefig``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        _kill_hook(path)
        os.replace(tmp, path)
        tmp = None
    except WriteError:
        raise
    except OSError as e:
        raise _write_error(path, e) from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(path, blob: bytes) -> None:
    """Write ``blob`` to ``path`` atomically (parent directories are created); a failure raises
    :class:`WriteError` and leaves ``path`` as it was."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # no fsync: a killed process loses nothing written; a power cut is out of scope
            fh.write(blob)


def append_line_atomic(path, line: str) -> None:
    """Append one line to a small log file (e.g. ``metrics.jsonl``) by rewriting it atomically:
    a full disk or a kill never leaves half a line."""
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    write_bytes_atomic(path, old + line.rstrip("\n").encode("utf-8") + b"\n")


def remove_file(path) -> None:
    """Remove the file ``path`` if it is there; a failure (e.g. a directory in its place) raises
    :class:`WriteError`."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError as e:
        raise _write_error(Path(path), e, "remove") from e


def copy_atomic(src, dst) -> None:
    """Copy the file ``src`` to ``dst`` atomically (``--figures-dir``)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def jsonable(o):
    """``json.dump``'s ``default``: NumPy/JAX scalars and arrays, paths, dataclasses, tuples of
    those."""

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
