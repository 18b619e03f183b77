"""The ``manifold-align`` command: one sub-command per job, each defined next to its code.

``manifold-align simulate``, ``train`` and ``eval`` are thin dispatchers; each sub-command
module exposes ``add_arguments(parser)`` and ``run(args) -> int`` and is imported only when
chosen, so ``manifold-align simulate`` never imports the trainer.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("manifold_align.cli.simulate", "toy equilibrium simulation sweeps"),
    "train": ("manifold_align.cli.train", "train a two-tower model from a config"),
    "eval": ("manifold_align.cli.eval", "zero-shot and retrieval evaluation of a run"),
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
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(chosen).parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
