"""The ``manifold-align`` command line: the one layer that parses arguments, prints and exits.

``manifold-align simulate``, ``train``, ``eval`` and ``configs`` each live in a module of this package
(`simulate`, `train`, `eval`, `configs`) exposing ``add_arguments(parser)`` and
``run(args) -> int``; a module is imported only when its command is chosen, so
``manifold-align simulate`` never imports the trainer. The options they share (``--config``,
``--set``, checks of ``--out``) are in `options`; library code raises, and
`errors` answers bad input with exit status 2 and one line on stderr naming the key or
file (and the install command for a missing optional package).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from manifold_align.cli.errors import run_command

__all__ = ["COMMANDS", "build_parser", "main"]

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("manifold_align.cli.simulate", "toy equilibrium simulation sweeps"),
    "train": ("manifold_align.cli.train", "train a two-tower model from a config"),
    "eval": ("manifold_align.cli.eval", "zero-shot and retrieval evaluation of a run"),
    "configs": ("manifold_align.cli.configs", "list the shipped configs (names for --config)"),
}


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only the ``chosen`` sub-command's module is imported."""
    parser = argparse.ArgumentParser(
        prog="manifold-align", description="Contrastive image-text alignment on manifolds."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``manifold-align ARGV``; return the exit status (0 ok, 2 bad input, 3 diverged)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(chosen).parse_args(argv)
    return run_command(args.command, args._module, args)


if __name__ == "__main__":
    sys.exit(main())
