"""A one-to-one map between our ``state_dict`` and a peer's: names and tensor layouts.

A [Rule][manifold_align.pretrained.layout.Rule] ties one of our tensors to one or more of the peer's, with a layout change
that is exact (a view, a transpose or a split; no arithmetic), so a round trip
``ours -> peer -> ours`` reproduces every tensor bit for bit:

* ``"copy"``: the same tensor under another name;
* ``"transpose"``: ``ours = theirs^T`` (a projection stored ``(W, d)`` by the peer, ``(d, W)``
  here);
* ``"flatten"``: ours ``(1, W)``, theirs ``(W,)`` (one class token);
* ``"qkv"``: ours the fused ``(3W, ...)`` input projection, theirs three ``(W, ...)`` tensors
  ``q, k, v`` in that order.

[transformer_rules][manifold_align.pretrained.layout.transformer_rules] enumerates a transformer stack's rules from a per-block name table,
which is all a peer's layout module has to provide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = [
    "Rule",
    "from_peer",
    "peer_shapes",
    "to_peer",
    "transformer_rules",
]

Kind = Literal["copy", "transpose", "flatten", "qkv"]

_BLOCK_KEYS = (
    "ln_1.weight",
    "ln_1.bias",
    "attn.in_proj.weight",
    "attn.in_proj.bias",
    "attn.out_proj.weight",
    "attn.out_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
)
"""The tensors of one of our [ResidualBlock][manifold_align.models.transformer.ResidualBlock] s."""


@dataclass(frozen=True)
class Rule:
    """Our tensor ``ours`` is the peer's ``theirs`` (one name, three for ``"qkv"``) under ``kind``."""

    ours: str
    theirs: tuple[str, ...]
    kind: Kind = "copy"


def transformer_rules(
    ours: str, theirs: str, layers: int, names: Mapping[str, str | tuple[str, str, str]]
) -> list[Rule]:
    """Rules of ``layers`` blocks ``{ours}.{i}.*`` <-> ``{theirs}.{i}.*``.

    Args:
        ours: our stack's prefix, e.g. ``"vision.transformer.blocks"``.
        theirs: the peer's stack's prefix.
        layers: the number of blocks.
        names: our block key (see ``_BLOCK_KEYS``) -> the peer's; a 3-tuple (``q, k, v``)
            marks a ``"qkv"`` split of our fused input projection.

    Raises:
        KeyError: if ``names`` does not cover every block tensor.
    """
    rules = []
    for i in range(layers):
        for key in _BLOCK_KEYS:
            peer = names[key]
            if isinstance(peer, tuple):
                rules.append(Rule(f"{ours}.{i}.{key}", tuple(f"{theirs}.{i}.{p}" for p in peer), "qkv"))
            else:
                rules.append(Rule(f"{ours}.{i}.{key}", (f"{theirs}.{i}.{peer}",)))
    return rules


def _export(rule: Rule, tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Our tensor -> the peer's tensors (views; the caller copies)."""
    if rule.kind == "copy":
        return (tensor,)
    if rule.kind == "transpose":
        return (tensor.t(),)
    if rule.kind == "flatten":
        return (tensor.reshape(-1),)
    return tuple(tensor.chunk(3, dim=0))


def _import(rule: Rule, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The peer's tensors -> our tensor (views or a concatenation)."""
    if rule.kind == "copy":
        return tensors[0]
    if rule.kind == "transpose":
        return tensors[0].t()
    if rule.kind == "flatten":
        return tensors[0].reshape(1, -1)
    return torch.cat(list(tensors), dim=0)


def peer_shapes(rules: Sequence[Rule], ours: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
    """The peer's key -> shape implied by our key -> shape ``ours`` (computed on meta tensors).

    Raises:
        KeyError: if a rule names a tensor ``ours`` lacks.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for rule in rules:
        meta = torch.empty(tuple(ours[rule.ours]), device="meta")
        for name, t in zip(rule.theirs, _export(rule, meta)):
            shapes[name] = tuple(t.shape)
    return shapes


def to_peer(rules: Sequence[Rule], state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our ``state_dict`` -> the peer's, every tensor a contiguous copy on the CPU.

    Raises:
        KeyError: if a rule names a tensor ``state`` lacks.
    """
    out: dict[str, torch.Tensor] = {}
    for rule in rules:
        for name, t in zip(rule.theirs, _export(rule, state[rule.ours].detach())):
            out[name] = t.to("cpu", copy=True).contiguous()
    return out


def from_peer(rules: Sequence[Rule], tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The peer's tensors -> our ``state_dict`` (keys of ``rules`` only).

    Raises:
        KeyError: if a rule names a peer tensor ``tensors`` lacks.
    """
    return {rule.ours: _import(rule, [tensors[n] for n in rule.theirs]) for rule in rules}
