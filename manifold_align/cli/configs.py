"""``manifold-align configs``: list the configs shipped with the package, or print one.

```bash
manifold-align configs                       # every shipped name, by kind, with its description
manifold-align configs tiny-oblique > my.yaml  # its YAML, to edit and pass as --config my.yaml
```

A shipped name works wherever ``--config`` does (``manifold-align train --config tiny-oblique``).
Exit status 0, or 2 for a name that is not shipped (the message lists the names).
"""

from __future__ import annotations

import argparse

from manifold_align.config import ConfigError
from manifold_align.configs import KINDS, shipped_configs

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the optional ``NAME`` and ``--kind`` to ``parser``."""
    parser.add_argument("name", nargs="?", metavar="NAME",
                        help="print this shipped config's YAML instead of the list")
    parser.add_argument("--kind", choices=KINDS, default=None,
                        help="only this kind (train: manifold-align train; simulate: a sweep)")


def run(args: argparse.Namespace) -> int:
    """Print the list (``NAME  description`` under a heading per kind) or one config; 0.

    Raises:
        ConfigError: ``NAME`` is not a shipped config (of ``--kind``, when given).
    """
    kinds = KINDS if args.kind is None else (args.kind,)
    if args.name is not None:
        found = [c for c in shipped_configs(args.kind) if c.name == args.name]
        if not found:
            names = ", ".join(c.name for c in shipped_configs(args.kind))
            raise ConfigError(f"{args.name!r} is not a shipped config (shipped: {names})")
        print(found[0].path.read_text(encoding="utf-8"), end="")
        return 0
    for kind in kinds:
        configs = shipped_configs(kind)
        width = max((len(c.name) for c in configs), default=0)
        print(f"{kind} (manifold-align {kind} --config NAME):")
        for c in configs:
            print(f"  {c.name:<{width}}  {c.description}")
    return 0

