"""The options several commands share: ``--config``, ``--set`` and checks of ``--out``.

An ``--out`` is checked before any work starts and without creating anything: a path that
is (or lies under) a file, a name longer than the file system allows, or a folder this user
cannot write is refused with a `UsageError` naming it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from manifold_align.cli.errors import UsageError

__all__ = ["add_config_option", "add_set_option", "check_out_file", "check_out_folder"]


def add_config_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--config FILE|NAME`` (a YAML file or a shipped config's name; ``None`` when not given).

    The command resolves the value with
    [resolve_config][manifold_align.configs.resolve_config].
    """
    parser.add_argument("--config", type=Path, default=None, metavar="FILE|NAME", help=help_text)


def add_set_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``; values are read as YAML."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help=help_text,
    )


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (as a link or otherwise)."""
    current = path
    while not os.path.lexists(current) and current != current.parent:
        current = current.parent
    return current


def _check_folder(folder: Path, flag: str, shown: Path) -> None:
    """Raise ``UsageError`` unless ``folder`` is, or could be created as, a writable folder."""
    folder = Path(os.path.abspath(folder))
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise UsageError(f"{flag} {shown}: {existing} exists and is not a folder")
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):  # pragma: no cover - platforms without pathconf
        name_max = 255
    for part in folder.relative_to(existing).parts:
        if len(os.fsencode(part)) > name_max:
            raise UsageError(
                f"{flag} {shown}: name too long: a folder name of {len(os.fsencode(part))} "
                f"bytes, this file system allows {name_max}"
            )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {shown}: {existing} is not writable by this user")


def check_out_folder(path: str | Path, flag: str = "--out") -> None:
    """Refuse an output folder that cannot be created or written (creates nothing).

    Raises:
        UsageError: ``path`` is a file or lies under one, has a name too long for its file
            system, or this user cannot write it (or, when absent, its nearest parent).
    """
    _check_folder(Path(path), flag, Path(path))


def check_out_file(path: str | Path, flag: str = "--out") -> None:
    """Refuse an output file path that is a folder or whose folder cannot be written.

    Raises:
        UsageError: ``path`` is a folder, its name is too long, or its folder fails
            `check_out_folder`.
    """
    path = Path(path)
    _check_folder(path.parent, flag, path)  # first: it refuses names too long to look up
    if len(os.fsencode(path.name)) > 255:
        raise UsageError(f"{flag} {path}: name too long: {len(os.fsencode(path.name))} bytes")
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; expected a file name, e.g. {path / 'eval.json'}")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag} {path}: is not writable by this user")
