"""An exclusive lock on a run directory, so two processes never train into the same ``--out``.

::

    from outer_train.run_lock import run_lock, RunLockError
    with run_lock("runs/default"):          # RunLockError if another live process holds it
        ...                                 # train / write into the directory

The lock is ``<run_dir>/.lock``: an advisory ``fcntl.flock`` on that file plus a one-line JSON
record of the holder (``pid``, ``host``, ``started``). The kernel releases the flock when the holder
exits in any way (including ``kill -9``), so liveness never depends on the record. On entry:

* flock free, record empty — the directory was released cleanly: take it;
* flock free, record names a process — that process died without releasing (a *stale* lock):
  take it over and warn in one line naming the dead pid;
* flock held — raise :class:`RunLockError` (a :class:`learned_opt.errors.UserError`: one line,
  exit 2 on the command line) naming the holder's pid and host.

On exit the record is emptied (the file is kept: unlinking a lock file that another process may
have just opened would let two processes hold "the" lock). The lock is not re-entrant: a second
``run_lock`` on the same directory inside one process fails like one from another process.
Multi-host runs should lock in one process only (the checkpoint writer); flock on NFS is emulated
with POSIX record locks by Linux clients.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from learned_opt.errors import UserError

LOCK_FILE = ".lock"
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}  # flock errors of lock-less filesystems


class RunLockError(UserError):
    """The run directory is locked by another live process."""


def _stderr_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _read_record(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    text = raw.decode("utf-8", "replace").strip()
    if not text:
        return {}
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return {"raw": text[:200]}
    return record if isinstance(record, dict) else {"raw": text[:200]}


def _describe(record: dict) -> str:
    if "pid" in record:
        host = record.get("host")
        return f"process {record['pid']}" + (f" on host {host}" if host else "")
    return "another process" + (f" (lock record {record['raw']!r})" if "raw" in record else "")


def lock_holder(run_dir: str | os.PathLike) -> dict | None:
    """The record of the live process holding ``run_dir``'s lock, or None if it is free."""
    path = Path(run_dir) / LOCK_FILE
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return _read_record(fd) or {}
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike,
             warn: Callable[[str], None] | None = _stderr_warning) -> Iterator[Path]:
    """Hold ``run_dir``'s exclusive lock for the ``with`` block (creating the directory).

    Yields the lock file's path. Raises :class:`RunLockError` naming the holder's pid when a live
    process holds it; calls ``warn`` (one line) when taking over a dead process's stale lock.
    """
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create run directory {run_dir}: {err.strerror or err}") from err
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise UserError(f"cannot open lock file {path}: {err.strerror or err}") from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = _read_record(fd)
                raise RunLockError(f"run directory {run_dir} is in use by {_describe(holder)} "
                                   f"(lock {path}); wait for it to finish or choose another output "
                                   f"directory") from None
            if err.errno in _UNSUPPORTED:
                if warn is not None:
                    warn(f"the filesystem of {run_dir} does not support file locks; the run directory "
                         f"is not protected against a second process")
                yield path
                return
            raise
        stale = _read_record(fd)
        if stale and warn is not None:
            warn(f"taking over the stale lock {path} of {_describe(stale)}, which is no longer running")
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(record) + "\n").encode())
        os.fsync(fd)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # released cleanly: an empty record
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


__all__ = ["LOCK_FILE", "RunLockError", "lock_holder", "run_lock"]
