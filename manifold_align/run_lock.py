"""An exclusive lock on a run folder: one process writes into a folder at a time.

The lock is ``<folder>/.lock``, held with ``fcntl.flock`` for the life of the process and
naming its holder inside (``{"pid", "host", "since", "argv"}``). The kernel drops a flock
when its holder dies (even by ``kill -9``), so a lock file left by a dead process is
*stale*: it is simply taken over. A lock still held by another process is refused with
[RunLockedError][manifold_align.run_lock.RunLockedError], naming that process. On release the file is removed (only by its
holder), so a folder a refused run touched is left as it was.

On a file system without ``flock`` (some network mounts) the lock falls back to the pid
and host written inside: a lock of a dead process on this host is taken over, a lock of a
live one or of another host is refused (delete ``.lock`` by hand once sure it is stale).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["LOCK_FILE", "RunLock", "RunLockedError"]

LOCK_FILE = ".lock"
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class RunLockedError(RuntimeError):
    """Another live process holds the run folder's lock (its pid and host are named)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    pid, host = holder.get("pid"), holder.get("host")
    if pid is None:
        return "another process (it has not written its pid yet)"
    since = f" since {holder['since']}" if holder.get("since") else ""
    return f"pid {pid} on host {host}{since}"


class RunLock:
    """The lock on ``folder`` (which must exist); use as a context manager or call
    [acquire][manifold_align.run_lock.RunLock.acquire] / [release][manifold_align.run_lock.RunLock.release].

    Attributes:
        path: the lock file ``<folder>/.lock``.
        stale: the holder record of a stale lock this process took over, else ``None``.

    Raises:
        RunLockedError: from [acquire][manifold_align.run_lock.RunLock.acquire], when a live process holds the lock.
        OSError: the folder is missing or not writable.
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.stale: dict[str, Any] | None = None
        self._fd: int | None = None

    # -- holder record -----------------------------------------------------------------
    def _read(self, fd: int) -> dict[str, Any]:
        try:
            raw = os.pread(fd, 4096, 0)
            holder = json.loads(raw.decode())
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def _write(self, fd: int) -> None:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "argv": sys.argv,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)

    def _dead_here(self, holder: dict[str, Any]) -> bool:
        pid = holder.get("pid")
        return (isinstance(pid, int) and holder.get("host") == socket.gethostname()
                and pid != os.getpid() and not _pid_alive(pid))

    # -- acquire / release ---------------------------------------------------------------
    def acquire(self) -> RunLock:
        """Take the lock; see the class docstring."""
        import fcntl

        if self._fd is not None:
            return self
        for _ in range(20):  # retried only when the file was replaced under us
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._read(fd)
                os.close(fd)
                if self._dead_here(holder):
                    # flock held by an orphan that inherited the descriptor (e.g. a data
                    # worker) while the recorded holder is dead: look again, then break it.
                    time.sleep(0.2)
                    if self._break_if_unchanged(holder):
                        continue
                raise RunLockedError(
                    f"{self.path.parent} is in use by {_describe(holder)}: two runs must not "
                    f"write into one folder; wait for it to end or choose another folder"
                ) from None
            except OSError as exc:
                if exc.errno not in _NO_FLOCK:
                    os.close(fd)
                    raise
                self._fallback(fd)
                return self
            if not self._same_file(fd):
                os.close(fd)  # the holder released (and removed) it meanwhile: try again
                continue
            self.stale = self._read(fd) or self.stale  # a dead holder's record, if any
            self._write(fd)
            self._fd = fd
            return self
        raise RunLockedError(f"{self.path}: could not take the lock (it keeps being replaced)")

    def _same_file(self, fd: int) -> bool:
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)

    def _break_if_unchanged(self, holder: dict[str, Any]) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return True
        try:
            if self._read(fd) != holder:
                return False
            self.path.unlink()
        finally:
            os.close(fd)
        self.stale = holder
        return True

    def _fallback(self, fd: int) -> None:
        """No flock on this file system: trust the pid and host written inside."""
        holder = self._read(fd)
        if holder and holder.get("pid") != os.getpid() and not self._dead_here(holder):
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is in use by {_describe(holder)} (this file system has "
                f"no flock; if that process is gone, delete {self.path})"
            )
        self.stale = holder or None
        self._write(fd)
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            if self._same_file(self._fd):
                self.path.unlink()
        except OSError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
