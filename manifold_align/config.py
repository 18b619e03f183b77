"""Typed configuration files: YAML in, validated dataclasses out, ``--set key=value`` overrides.

Every command (``simulate``, ``train``, ``eval``) describes its settings as a tree of
dataclasses. [load_config][manifold_align.config.load_config] reads a YAML file into that tree, applies command-line
overrides written as dotted paths (``--set optim.lr=3e-4``), and rejects unknown keys and
values of the wrong type with a [ConfigError][manifold_align.config.ConfigError] that names the offending key.
[dump_config][manifold_align.config.dump_config] writes the resolved tree back as YAML so every run keeps the exact
settings it ran with.

Files and ``--set`` values are read with a YAML loader that refuses a key given twice in one
mapping (plain PyYAML keeps the last one silently), and every error is one line: the file or
``--set`` key, the line and column, and what is wrong.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

__all__ = [
    "SEED_MAX",
    "ConfigError",
    "check_fields",
    "check_seed",
    "dump_config",
    "from_dict",
    "load_config",
    "merge_overrides",
    "parse_overrides",
    "read_yaml",
    "to_dict",
]

#: Largest accepted seed: numpy's global generator (seeded by every run) takes ``[0, 2**32)``.
SEED_MAX = 2**32 - 1


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base" may be overridden
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            seen = first_line.get(key)
        except TypeError:  # an unhashable key; the constructor below names it
            continue
        if seen is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first given on line {seen + 1})",
                key_node.start_mark,
            )
        first_line[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: ``line L, column C: problem``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())


def read_yaml(text: str, source: str) -> Any:
    """Parse YAML ``text`` (from ``source``, named in errors), refusing duplicate keys.

    Raises:
        ConfigError: ``"<source>: not valid YAML: line L, column C: <problem>"``.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from None


def check_seed(key: str, value: int) -> None:
    """Raise ``ConfigError`` naming ``key`` unless ``0 <= value <= SEED_MAX``."""
    if not 0 <= value <= SEED_MAX:
        raise ConfigError(f"{key}: expected a seed in [0, {SEED_MAX}], got {value}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert where lossless."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: got {value!r}, expected {_type_name(tp)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: got {value!r}, expected one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: got {value!r}, expected a mapping of {tp.__name__} fields")
        return from_dict(tp, value, prefix=key)
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ConfigError(f"{key}: got {value!r}, expected a list")
        items = list(value)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise ConfigError(f"{key}: got {len(items)} items, expected {len(args)}")
            out = [_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(items, args))]
        else:
            item_tp = args[0] if args else Any
            out = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(items)]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: got {value!r}, expected a mapping")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: got {value!r}, expected true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: got {value!r}, expected an integer")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "3e-4" (no dot) as a string; accept any float literal.
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{key}: got {value!r}, expected a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: got {value!r}, expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: got {value!r}, expected a string")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: got {value!r}, expected {_type_name(tp)}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types.

    Raises:
        ConfigError: naming the dotted key that is unknown, missing or of the wrong type.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or '<root>'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown key {where}{unknown[0]!s}; valid keys here: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{prefix or '<root>'}: {exc}") from None
    except ValueError as exc:  # __post_init__ validation
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{prefix + ': ' if prefix else ''}{exc}") from None
    return obj


def check_fields(cls: type, data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Check a partial mapping of dataclass ``cls``'s fields (e.g. overrides of some of them).

    Each key must be a field of ``cls`` and each value of its annotated type (converted
    where lossless, as in [from_dict][manifold_align.config.from_dict]); range checks stay with ``cls`` itself.

    Returns:
        The checked mapping, values converted.

    Raises:
        ConfigError: naming ``<prefix>.<key>`` for an unknown key or a value of a wrong type.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix}: got {data!r}, expected a mapping of {cls.__name__} fields")
    hints = typing.get_type_hints(cls)
    fields = sorted(f.name for f in dataclasses.fields(cls) if f.init)
    out = {}
    for name, value in data.items():
        if name not in fields:
            raise ConfigError(f"unknown key {prefix}.{name}; valid keys here: {', '.join(fields)}")
        out[name] = _coerce(value, hints[name], f"{prefix}.{name}")
    return out


def to_dict(obj: Any) -> Any:
    """Plain-Python (YAML-safe) form of a dataclass tree."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=[1, 2]"]`` into a nested dict; values are parsed as YAML.

    Raises:
        ConfigError: for an override without ``=``, with an empty key, or whose value is not
            valid YAML (naming ``--set <key>``).
    """
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key")
        value = read_yaml(raw, f"--set {key}: value {raw!r}") if raw.strip() else ""
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override")
        node[parts[-1]] = value
    return tree


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def merge_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """The plain tree ``data`` with the ``key=value`` ``overrides`` applied (they win).

    Raises:
        ConfigError: for a malformed override (see [parse_overrides][manifold_align.config.parse_overrides]).
    """
    return _merge(to_dict(dict(data)), parse_overrides(overrides))


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()
) -> T:
    """Read YAML ``path`` (optional), apply ``key=value`` overrides, validate into ``cls``.

    Defaults come from the dataclass; the file overrides them; ``overrides`` win last.

    Raises:
        ConfigError: unknown key, wrong type, or a file that cannot be read, is not UTF-8 or
            not valid YAML, or gives a key twice (naming the path and line).
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(
                f"config file {path}: not UTF-8 text: byte 0x{raw[exc.start]:02x} on line {line}"
            ) from None
        loaded = read_yaml(text, f"config file {path}")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"config file {path}: top level must be a mapping")
        data = dict(loaded)
    return from_dict(cls, merge_overrides(data, overrides))


def dump_config(obj: Any, path: str | Path) -> None:
    """Write the resolved config ``obj`` (a dataclass tree) to ``path`` as YAML."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))
