"""The error a checkpoint gets when its tensors are not the ones an architecture needs.

A checkpoint matches when its key set equals the expected one and every shape agrees:

$$\\mathrm{keys}(C) = \\mathrm{keys}(E), \\qquad \\mathrm{shape}(C_k) = \\mathrm{shape}(E_k)\\ \\forall k.$$

Anything else raises [CheckpointMismatchError][manifold_align.pretrained.errors.CheckpointMismatchError] naming the first offending keys (in
sorted order) of each kind: missing, unexpected, wrong shape. Nothing is dropped or padded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["CheckpointMismatchError", "PretrainedError", "check_shapes", "mismatches"]

_SHOWN = 5


class PretrainedError(ValueError):
    """A pretrained checkpoint cannot be read, is of an unknown layout, or cannot be written."""


class CheckpointMismatchError(PretrainedError):
    """A checkpoint's keys or shapes differ from those the architecture expects.

    Attributes:
        missing: expected keys absent from the checkpoint (sorted).
        unexpected: checkpoint keys the architecture does not have (sorted).
        wrong_shapes: ``(key, found shape, expected shape)`` triples (sorted by key).
    """

    def __init__(
        self,
        message: str,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        wrong_shapes: Sequence[tuple[str, tuple[int, ...], tuple[int, ...]]] = (),
    ) -> None:
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.wrong_shapes = list(wrong_shapes)


def _first(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")


def mismatches(
    found: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]]
) -> tuple[list[str], list[str], list[tuple[str, tuple[int, ...], tuple[int, ...]]]]:
    """``(missing, unexpected, wrong_shapes)`` of ``found`` against ``expected`` key -> shape."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [
        (k, tuple(found[k]), tuple(expected[k]))
        for k in sorted(set(found) & set(expected))
        if tuple(found[k]) != tuple(expected[k])
    ]
    return missing, unexpected, wrong


def check_shapes(
    found: Mapping[str, Sequence[int]],
    expected: Mapping[str, Sequence[int]],
    source: str,
    what: str,
) -> None:
    """Raise unless ``found`` and ``expected`` (key -> shape) hold the same keys and shapes.

    Args:
        found: the checkpoint's key -> shape.
        expected: the architecture's key -> shape, in the checkpoint's own naming.
        source: where ``found`` came from (a path), for the message.
        what: what was expected (e.g. ``"ViT-B-32 in OpenCLIP's layout"``), for the message.

    Raises:
        CheckpointMismatchError: naming the first few missing keys, unexpected keys and
            keys of the wrong shape (found vs expected), with their counts.
    """
    missing, unexpected, wrong = mismatches(found, expected)
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_first(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_first(unexpected)}")
    if wrong:
        shown = [f"{k} is {f}, expected {e}" for k, f, e in wrong]
        parts.append(f"wrong shapes ({len(wrong)}): {_first(shown)}")
    raise CheckpointMismatchError(
        f"{source}: not a checkpoint of {what}: " + "; ".join(parts), missing, unexpected, wrong
    )
