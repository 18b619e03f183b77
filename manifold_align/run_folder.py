"""Claiming an output folder (a training run, a simulation sweep) without harming what is there.

[open_run_folder][manifold_align.run_folder.open_run_folder] is what a command does before it writes anything into its ``--out``:

1. create the folder if needed (it is removed again if the command then refuses or fails
   before writing into it);
2. take the folder's exclusive lock ([RunLock][manifold_align.run_lock.RunLock]): a second
   process writing into the same folder is refused, naming the holder's pid;
3. refuse a symbolic link inside the folder that leads out of it (a file written there
   would land elsewhere);
4. refuse a non-empty folder that is not a folder of the same kind (a simulation's output,
   a training run, someone's own files) unless ``overwrite``;
5. hand back a [RunFolder][manifold_align.run_folder.RunFolder]; its [claim][manifold_align.run_folder.RunFolder.claim] writes the kind marker
   ``.manifold-align.json`` once the command has accepted its inputs, so a command that
   refuses leaves an existing folder byte for byte as it was.

The kind of a folder is its marker's ``kind``; folders written before markers existed are
recognised by their files (``checkpoints/`` or ``model.yaml`` + ``tokenizer.json``: a
training run; ``results.json`` + ``trajectories.npz``: a simulation).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from manifold_align.files import apply_umask, write_atomic
from manifold_align.run_lock import LOCK_FILE, RunLock, RunLockedError

__all__ = ["KINDS", "MARKER", "RunFolder", "RunFolderError", "folder_kind", "open_run_folder"]

MARKER = ".manifold-align.json"
KINDS = ("train", "simulate")


class RunFolderError(RuntimeError):
    """An output folder cannot be used: in use by another process, someone else's files,
    a link out of it, or not a folder at all (the message names the path)."""


def folder_kind(folder: str | Path) -> str | None:
    """``"train"``, ``"simulate"``, ``"empty"``, ``"other"`` (someone else's files) or
    ``None`` (no such folder). The lock file alone does not make a folder non-empty."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    names = {p.name for p in folder.iterdir()} - {LOCK_FILE}
    if not names:
        return "empty"
    if MARKER in names:
        try:
            kind = json.loads((folder / MARKER).read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            kind = None
        return kind if kind in KINDS else "other"
    if "checkpoints" in names or {"model.yaml", "tokenizer.json"} <= names:
        return "train"
    if {"results.json", "trajectories.npz"} <= names:
        return "simulate"
    return "other"


def _links_out(folder: Path) -> list[tuple[Path, str]]:
    """Symbolic links below ``folder`` whose target lies outside it (never followed)."""
    root = folder.resolve()
    found = []
    for base, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = Path(base) / name
            if path.is_symlink():
                target = os.readlink(path)
                resolved = (path.parent / target).resolve()
                if resolved != root and root not in resolved.parents:
                    found.append((path, target))
    return found


_DESCRIBE = {
    "train": "a training run",
    "simulate": "a simulation's output",
    "other": "files that no manifold-align command wrote",
}


@dataclass
class RunFolder:
    """A locked output folder (see the module docstring).

    Attributes:
        path: the folder.
        kind: what the command will write (``"train"`` or ``"simulate"``).
        found: the folder's kind before the command ([folder_kind][manifold_align.run_folder.folder_kind]).
        lock: the held lock, or ``None`` where this process does not write (ranks > 0).
    """

    path: Path
    kind: str
    found: str | None
    lock: RunLock | None = None
    claimed: bool = field(default=False)

    def claim(self) -> None:
        """Write the kind marker (the command has accepted its inputs and starts writing)."""
        if self.claimed:
            return
        write_atomic(self.path / MARKER, json.dumps({"kind": self.kind}) + "\n")
        self.claimed = True


@contextlib.contextmanager
def open_run_folder(
    path: str | Path, kind: str, overwrite: bool = False, lock: bool = True
) -> Iterator[RunFolder]:
    """Create, lock and check the output folder ``path`` for a command of ``kind``.

    Args:
        path: the output folder (``--out``).
        kind: ``"train"`` or ``"simulate"``.
        overwrite: accept a non-empty folder of another kind (its files of the same names
            are then replaced; nothing else is removed).
        lock: take the folder's lock (``False`` on ranks that never write).

    Yields:
        The [RunFolder][manifold_align.run_folder.RunFolder]; the lock is released (and a folder this call created and
        nothing was written into is removed) when the block ends, however it ends.

    Raises:
        ValueError: an unknown ``kind``.
        RunFolderError: ``path`` is a file or cannot be created; another live process holds
            its lock (the pid is named); a link inside leads out of it; it holds another
            kind's files and ``overwrite`` is false.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    path = Path(path)
    try:
        created = not path.exists()
        is_file = not created and not path.is_dir()
    except OSError as exc:  # a name too long, a folder we may not look into
        raise RunFolderError(f"cannot use the output folder {path}: {exc.strerror}") from None
    if is_file:
        raise RunFolderError(f"{path} is a file, not a folder; choose a folder for the output")
    try:
        path.mkdir(parents=True, exist_ok=True)
        if created:
            apply_umask(path)
    except OSError as exc:
        raise RunFolderError(f"cannot create the output folder {path}: {exc.strerror}") from None
    held = RunLock(path) if lock else None
    try:
        if held is not None:
            try:
                held.acquire()
            except RunLockedError as exc:
                raise RunFolderError(str(exc)) from None
            except OSError as exc:
                raise RunFolderError(f"cannot lock the output folder {path}: {exc.strerror}") from None
        links = _links_out(path)
        if links:
            link, target = links[0]
            raise RunFolderError(
                f"{link} is a symbolic link to {target}, outside the output folder {path}; "
                f"a run never writes through links out of its folder: remove the link"
                + (f" (and {len(links) - 1} more)" if len(links) > 1 else "")
            )
        found = folder_kind(path)
        if found not in (None, "empty", kind) and not overwrite:
            raise RunFolderError(
                f"{path} is not empty and holds {_DESCRIBE[found]}; choose another folder, "
                f"or pass --overwrite to write into it anyway (its other files are kept)"
            )
        yield RunFolder(path, kind, found, held)
    finally:
        if held is not None:
            held.release()
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()  # only succeeds if nothing was written
