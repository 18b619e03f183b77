"""Writing files the way other tools do: atomically, never through a link, with the umask's modes.

Files written here get mode ``0o666 & ~umask`` and folders ``0o777 & ~umask`` (``0644`` and
``0755`` under the usual umask ``022``), as ``cp`` or ``mkdir`` would give; temporary files
and folders (``tempfile``, and safetensors' own writer) are created ``0600``/``0700``, so
[apply_umask][manifold_align.files.apply_umask] gives them the ordinary modes before they are renamed into place.

[write_atomic][manifold_align.files.write_atomic] writes a temporary file beside the target and renames it over the
target with one ``os.replace``: a reader sees the old or the new content, never half, and a
symbolic link at the target is *replaced*, never written through.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["apply_umask", "current_umask", "fsync_dir", "fsync_file", "write_atomic"]


def current_umask() -> int:
    """This process's umask (read from ``/proc/self/status`` where it is available).

    Reading it elsewhere means setting it and setting it back (``os.umask``), which a
    concurrent thread could observe; ``/proc`` avoids that on Linux.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | Path, umask: int | None = None) -> None:
    """Give ``path`` (and, for a folder, everything below it) the umask's ordinary modes.

    Files get ``0o666 & ~umask``, folders ``0o777 & ~umask``; symbolic links are left alone
    (never followed).
    """
    mask = current_umask() if umask is None else umask
    path = Path(path)
    if path.is_symlink():
        return
    if path.is_dir():
        for base, dirs, names in os.walk(path):
            for name in names:
                if not os.path.islink(os.path.join(base, name)):
                    os.chmod(os.path.join(base, name), 0o666 & ~mask)
            for name in dirs:
                if not os.path.islink(os.path.join(base, name)):
                    os.chmod(os.path.join(base, name), 0o777 & ~mask)
        os.chmod(path, 0o777 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


def fsync_file(path: str | Path) -> None:
    """Flush ``path``'s content to disk."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: str | Path) -> None:
    """Flush folder ``path``'s entries (renames into it) to disk, where the platform allows."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: str | bytes, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file and one ``os.replace``.

    A symbolic link at ``path`` is replaced by the new file, never followed. With
    ``durable`` the file (and the rename) is flushed to disk before returning.

    Returns:
        ``path``.

    Raises:
        OSError: the folder is missing or not writable, or the disk is full (the old
            ``path`` is then unchanged and no temporary file is left behind).
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + path.name, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path
