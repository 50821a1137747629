"""One folder, one run: a lock on ``--out`` while a command writes there.

:func:`hold` takes ``<out>/.jaxdyn.lock`` with :mod:`filelock` (an OS lock, ``flock``): the
operating system releases it when the holding process ends, however it ends (SIGKILL included),
so a folder whose holder is gone is taken over at once by the next run. A run that ends
removes the lock file (a killed one cannot: the next run takes the file over). The holder's pid, host,
command and start time are kept beside it in ``<out>/.jaxdyn.lock.holder`` (JSON; the lock file itself
is truncated by every contender, so it cannot carry them), for the message of a refused run.

A second run into a held folder does not wait: it raises :class:`OutInUse` (a ``ValueError``:
the command line reports one ``error:`` line naming the holder's pid, exit code 2, as for any
other ``--out`` that cannot be used). Holding is re-entrant within a process (``reproduce``
holds ``--out`` and each stage its sub-folder; the command line and :func:`execute
<jaxdyn.experiments.runner.execute>` both hold the same folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from filelock import FileLock, Timeout

from jaxdyn._internal.results import check_writable, write_json_atomic

__all__ = ["OutInUse", "hold", "holder", "LOCK_NAME", "INFO_NAME"]

LOCK_NAME, INFO_NAME = ".jaxdyn.lock", ".jaxdyn.lock.holder"

_held: dict[str, list] = {}  # resolved folder -> [FileLock, depth]
_guard = threading.Lock()


class OutInUse(ValueError):
    """``--out`` is held by another live run."""


def holder(out) -> dict | None:
    """What the holder of ``out`` wrote about itself (``pid``, ``host``, ``command``, ``since``), or
    ``None`` when nothing readable is there."""
    try:
        info = json.loads((Path(out) / INFO_NAME).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


@contextlib.contextmanager
def hold(out):
    """Hold ``out`` (created and checked writable first) for the duration of the block; raise
    :class:`OutInUse` at once when another live process holds it."""
    out = check_writable(out)
    key = str(out.resolve())
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is None:
        try:
            lock = _acquire(out / LOCK_NAME)
        except Timeout:
            info = holder(out) or {}
            who = f"pid {info['pid']}" if "pid" in info else "a process whose pid is not recorded yet"
            where = f" on {info['host']}" if info.get("host") not in (None, socket.gethostname()) else ""
            cmd = f" ({info['command']})" if info.get("command") else ""
            raise OutInUse(f"{out} is in use by another run: {who}{where}{cmd}; wait for it to end or choose "
                           "another --out") from None
        try:
            write_json_atomic(out / INFO_NAME, {"pid": os.getpid(), "host": socket.gethostname(),
                                                "command": " ".join(sys.argv), "since": time.time()})
        except BaseException:
            lock.release()
            raise
        entry = [lock, 1]
        with _guard:
            _held[key] = entry
    try:
        yield out
    finally:
        with _guard:
            entry[1] -= 1
            last = entry[1] == 0
            if last:
                del _held[key]
        if last:  # the files go before the lock: a run that finds them gone creates new ones
            for name in (INFO_NAME, LOCK_NAME):
                with contextlib.suppress(OSError):
                    (out / name).unlink()
            entry[0].release()


def _acquire(path: Path) -> FileLock:
    """Take the lock at ``path`` without waiting (``Timeout`` when held). The holder removes the
    lock file before releasing it, so a lock taken on a file that was removed meanwhile is not the
    folder's lock: then try again on the new file."""
    for _ in range(100):
        lock = FileLock(path, timeout=0)
        lock.acquire(timeout=0)
        fd = getattr(getattr(lock, "_context", None), "lock_file_fd", None)
        try:
            same = fd is None or os.fstat(fd).st_ino == os.stat(path).st_ino
        except OSError:
            same = False
        if same:
            return lock
        lock.release()
    raise Timeout(str(path))
