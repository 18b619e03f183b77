"""The typed YAML loader: overrides, unknown keys and wrong types are named."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from manifold_align.config import (
    ConfigError,
    dump_config,
    load_config,
    parse_overrides,
    read_yaml,
)


@dataclasses.dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclasses.dataclass
class Run:
    name: str = "run"
    steps: int = 10
    precision: Literal["fp32", "bf16"] = "fp32"
    tokens: list[int] = dataclasses.field(default_factory=lambda: [1, 8])
    seed: int | None = None
    optim: Optim = dataclasses.field(default_factory=Optim)

    def __post_init__(self):
        if self.steps <= 0:
            raise ValueError(f"steps must be positive, got {self.steps}")


def test_defaults_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 20\noptim:\n  lr: 0.1\n")
    cfg = load_config(Run, path, ["optim.lr=3e-4", "tokens=[2, 4]", "seed=7"])
    assert cfg.steps == 20
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.optim.betas == (0.9, 0.999)
    assert cfg.tokens == [2, 4]
    assert cfg.seed == 7


def test_roundtrip_through_dump(tmp_path):
    cfg = load_config(Run, None, ["precision=bf16", "optim.betas=[0.8, 0.9]"])
    dump_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(Run, tmp_path / "resolved.yaml") == cfg


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["optim.lrr=1"], "unknown key optim.lrr"),
        (["stepz=1"], "unknown key stepz"),
        (["steps=ten"], "steps: got 'ten', expected an integer"),
        (["precision=fp8"], "precision: got 'fp8', expected one of"),
        (["optim.betas=[0.9]"], "optim.betas: got 1 items, expected 2"),
        (["steps=0"], "steps must be positive"),
        (["optim=3"], "optim: got 3, expected a mapping"),
        (["noequals"], "not of the form key=value"),
        (["tokens=[1, x]"], "tokens[1]"),
    ],
)
def test_errors_name_the_key(overrides, needle):
    with pytest.raises(ConfigError, match=None) as info:
        load_config(Run, None, overrides)
    assert needle in str(info.value)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(Run, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Run, bad)


def test_parse_overrides_nests_and_parses_yaml():
    assert parse_overrides(["a.b=1", "a.c=x", "d=[1, 2]", "e=true"]) == {
        "a": {"b": 1, "c": "x"},
        "d": [1, 2],
        "e": True,
    }


def test_yaml_refuses_duplicate_keys_but_allows_merge_overrides():
    first = r"f: not valid YAML: line 2, column 1: duplicate key 'a' \(first given on line 1\)"
    with pytest.raises(ConfigError, match=first):
        read_yaml("a: 1\na: 2\n", "f")
    with pytest.raises(ConfigError, match=r"duplicate key 'b'"):
        read_yaml("x: {b: 1, c: 2, b: 3}\n", "f")
    # a merge key ("<<: *base") may be overridden by an explicit key: not a duplicate
    assert read_yaml("base: &b {a: 1, c: 2}\nrun:\n  <<: *b\n  a: 5\n", "f")["run"] == {"a": 5, "c": 2}
    assert read_yaml("- {a: 1}\n- {a: 2}\n", "f") == [{"a": 1}, {"a": 2}]
