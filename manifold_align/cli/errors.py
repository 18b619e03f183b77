"""Bad input to exit status 2 and one line on stderr: the one place the CLI turns errors into words.

Library code raises; a command's ``run`` lets its exceptions through and `run_command`
answers those that mean bad input (a config key, an argument, a file, a checkpoint, the
machine: a folder that cannot be written, a full disk, a missing optional package) with
``manifold-align COMMAND: error: MESSAGE``, one line naming the key or file, and status 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from manifold_align.config import ConfigError
from manifold_align.run_folder import RunFolderError

__all__ = ["TRAIN_EXTRA", "UsageError", "describe", "fail", "run_command"]

#: Top-level modules of the optional ``train`` extra (``pip install 'manifold-align[train]'``).
TRAIN_EXTRA = ("tokenizers", "safetensors", "webdataset", "PIL")


class UsageError(ValueError):
    """A command-line argument that cannot be used; the message names the option."""


def _one_line(text: str) -> str:
    """Join a multi-line message into one line (``"a:\\n  b\\n  c"`` -> ``"a: b; c"``)."""
    out = ""
    for part in (p.strip() for p in str(text).splitlines()):
        if part:
            out += part if not out else (" " if out.endswith(":") else "; ") + part
    return out


def fail(command: str, message: str, status: int = 2, label: str = "error") -> int:
    """Print ``manifold-align COMMAND: LABEL: MESSAGE`` (one line) to stderr; return ``status``."""
    print(f"manifold-align {command}: {label}: {_one_line(message)}", file=sys.stderr)
    return status


def _checkpoint_error() -> type[Exception] | None:
    # Matched without importing the trainer: if one was raised, its module is loaded.
    module = sys.modules.get("manifold_align.train.checkpoint")
    return getattr(module, "CheckpointError", None)


def describe(exc: BaseException) -> str | None:
    """The message for an exception that means bad input, or ``None`` for anything else.

    ``ConfigError``, `UsageError`, ``RunFolderError`` (an ``--out`` in use, of another
    kind, or with a link out of it) and ``CheckpointError`` carry their own message;
    an ``OSError`` becomes ``FILE: REASON``; a ``ModuleNotFoundError`` of the ``train``
    extra names the package and the install command.
    """
    checkpoint_error = _checkpoint_error()
    if isinstance(exc, (ConfigError, UsageError, RunFolderError)) or (
        checkpoint_error is not None and isinstance(exc, checkpoint_error)
    ):
        return str(exc)
    if isinstance(exc, ModuleNotFoundError):
        package = (exc.name or "").partition(".")[0]
        if package in TRAIN_EXTRA:
            return (
                f"this command needs the optional package '{package}', which is not "
                f"installed: pip install 'manifold-align[train]'"
            )
        return None
    if isinstance(exc, OSError):
        if exc.errno is None:  # raised with a message of its own
            return str(exc)
        reason = exc.strerror or str(exc)
        return f"{exc.filename}: {reason}" if exc.filename else reason
    return None


def run_command(command: str, module: str, args: argparse.Namespace) -> int:
    """Import sub-command ``module`` and return its ``run(args)``; bad input -> 2 and one line."""
    try:
        return int(importlib.import_module(module).run(args) or 0)
    except Exception as exc:  # re-raised below unless it is bad input
        message = describe(exc)
        if message is None:
            raise
        return fail(command, message)
