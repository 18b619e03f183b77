"""The configs shipped inside the package, found by name.

``manifold_align/configs/train/*.yaml`` are runs for ``manifold-align train`` and
``manifold_align/configs/simulate/*.yaml`` sweeps for ``manifold-align simulate``; a config's
name is its file name without ``.yaml`` (``tiny-oblique``), its description the first
clause (up to the first ``.``, ``?``, ``!`` or ``:``) of the comment block at the top of the
file. They are package data, so a
``pip install`` has them too: ``--config tiny-oblique`` works from any folder, and
``manifold-align configs`` lists them.

```python
from manifold_align.configs import resolve_config, shipped_configs
resolve_config("tiny-oblique", "train")        # .../manifold_align/configs/train/tiny-oblique.yaml
resolve_config("my-run.yaml", "train")         # a file of one's own: returned as given
[c.name for c in shipped_configs("simulate")]  # ['batch_concepts', 'quick', ...]
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from manifold_align.config import ConfigError

__all__ = ["KINDS", "ShippedConfig", "resolve_config", "shipped_configs"]

#: The kinds of shipped config: one folder each, one command each.
KINDS = ("train", "simulate")

_ROOT = Path(__file__).resolve().parent
_SENTENCE_END = re.compile(r"[.?!:](\s|$)")


@dataclass(frozen=True)
class ShippedConfig:
    """One shipped config: ``name`` (file stem), ``kind`` (its folder), ``path``, ``description``."""

    name: str
    kind: str
    path: Path
    description: str


def _description(path: Path) -> str:
    """The first clause of the file's leading ``#`` comment (a line indented past ``#  ``, a
    usage example, ends the comment); ``""`` when the file starts with no comment."""
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        body = line[1:]
        if not body.strip() or body.startswith("  "):
            break
        words.append(body.strip())
    text = " ".join(words)
    end = _SENTENCE_END.search(text)
    return text[: end.start() + 1].rstrip(":").strip() if end else text


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")


def shipped_configs(kind: str | None = None) -> list[ShippedConfig]:
    """The shipped configs of ``kind`` (``"train"`` or ``"simulate"``; ``None``: both), by name.

    Raises:
        ValueError: ``kind`` is not one of `KINDS`.
    """
    kinds = KINDS if kind is None else (kind,)
    out: list[ShippedConfig] = []
    for k in kinds:
        _check_kind(k)
        for path in sorted((_ROOT / k).glob("*.yaml")):
            out.append(ShippedConfig(path.stem, k, path, _description(path)))
    return out


def resolve_config(value: str | Path, kind: str) -> Path:
    """The file a ``--config`` value names: a path as given, a bare name looked up.

    A value with a folder part (``runs/x.yaml``, ``./tiny-oblique``) or a bare name that is a
    file in the working folder is used as it is (a file always wins over a shipped name; a
    path that cannot be read is reported by ``load_config``). Any other bare value is looked
    up among the shipped configs of ``kind`` by name (``tiny-oblique``, with or without
    ``.yaml``).

    Raises:
        ConfigError: a bare value that is neither a file nor a shipped name; the message
            lists the shipped names of ``kind``.
        ValueError: ``kind`` is not one of `KINDS`.
    """
    _check_kind(kind)
    path = Path(value)
    if path.is_file() or str(value) != path.name:  # a file, or a path with a folder part
        return path
    name = path.name.removesuffix(".yaml")
    for config in shipped_configs(kind):
        if config.name == name:
            return config.path
    names = ", ".join(c.name for c in shipped_configs(kind))
    raise ConfigError(
        f"config {str(value)!r}: not a file, and not the name of a shipped {kind} config "
        f"(shipped: {names}; see manifold-align configs)"
    )
