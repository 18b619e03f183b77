"""Accounting for samples that could not be read, so none is dropped silently.

A reader that meets an unreadable sample (truncated image bytes, a missing caption, a file
that is not there, a shard that ends mid-record) never raises and never drops it quietly:
it hands on a [SkippedSample][manifold_align.data.skipped.SkippedSample] marker in place of the sample. `Collate` takes the markers out of each batch and counts them in a
[SkippedSamples][manifold_align.data.skipped.SkippedSamples] record that travels *with the batch*, so the counts reach the
training process even when the batch was built in a ``DataLoader`` worker. The trainer adds
the per-batch records together and logs [SkippedSamples.as_metrics][manifold_align.data.skipped.SkippedSamples.as_metrics].

Reasons ([REASONS][manifold_align.data.skipped.REASONS]) are short snake-case strings; the record keeps the count per
reason and the first few keys per reason so a person can find the bad files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from manifold_align.config import ConfigError

__all__ = [
    "BAD_CAPTION",
    "BAD_ROW",
    "CORRUPT_IMAGE",
    "EMPTY_CAPTION",
    "MISSING_CAPTION",
    "MISSING_FILE",
    "MISSING_IMAGE",
    "REASONS",
    "TOO_MANY_PIXELS",
    "UNREADABLE_SHARD",
    "SampleError",
    "SkippedSample",
    "SkippedSamples",
    "UnusableDataError",
]

CORRUPT_IMAGE = "corrupt_image"
"""The image bytes are truncated or not an image Pillow can decode."""
MISSING_IMAGE = "missing_image"
"""A webdataset record with a caption but no image member."""
MISSING_FILE = "missing_file"
"""A table row whose image path does not exist or cannot be opened."""
MISSING_CAPTION = "missing_caption"
"""A record or row without a caption field."""
EMPTY_CAPTION = "empty_caption"
"""A caption that is empty after stripping whitespace."""
BAD_CAPTION = "bad_caption"
"""Caption bytes that are not valid UTF-8."""
UNREADABLE_SHARD = "unreadable_shard"
"""A shard that cannot be opened or whose tar stream breaks off (counted once per break)."""
TOO_MANY_PIXELS = "too_many_pixels"
"""An image whose header declares more pixels than the reader's ``max_image_pixels``."""
BAD_ROW = "bad_row"
"""A table row the CSV parser cannot read (e.g. a field over ``csv.field_size_limit()``)."""

REASONS: tuple[str, ...] = (
    CORRUPT_IMAGE,
    MISSING_IMAGE,
    MISSING_FILE,
    MISSING_CAPTION,
    EMPTY_CAPTION,
    BAD_CAPTION,
    UNREADABLE_SHARD,
    TOO_MANY_PIXELS,
    BAD_ROW,
)
"""Every reason a reader of this package reports."""


class UnusableDataError(ConfigError):
    """The configured data gave nothing to train on for longer than a bound allows.

    Raised instead of reading on forever when no batch of at least two readable samples
    comes out of a source (every sample of an epoch, or ``max_consecutive_skips`` samples in
    a row, unreadable); the message says how many samples were skipped and why
    ([SkippedSamples.summary][manifold_align.data.skipped.SkippedSamples.summary]). A [ConfigError][manifold_align.config.ConfigError], since
    the remedy is to point the configuration at usable data.
    """


class SampleError(Exception):
    """A sample that cannot be used, with the reason it is skipped.

    Args:
        reason: one of [REASONS][manifold_align.data.skipped.REASONS] (any short string is accepted).
        key: the sample's key (webdataset ``__key__``, table path or row number).
        detail: a short human-readable explanation (the underlying error).
    """

    def __init__(self, reason: str, key: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {key}" + (f" ({detail})" if detail else ""))
        self.reason = reason
        self.key = key
        self.detail = detail

    def marker(self) -> SkippedSample:
        """The [SkippedSample][manifold_align.data.skipped.SkippedSample] that stands in for this sample in a stream."""
        return SkippedSample(reason=self.reason, key=self.key, detail=self.detail)


@dataclass(frozen=True)
class SkippedSample:
    """Marker that replaces an unreadable sample in a dataset's output.

    Attributes:
        reason: why it was skipped, one of [REASONS][manifold_align.data.skipped.REASONS].
        key: the sample's key (webdataset key, file path or row number).
        detail: the underlying error message, shortened.
    """

    reason: str
    key: str
    detail: str = ""


class SkippedSamples:
    """Counts of skipped samples by reason, with up to ``max_examples`` keys per reason.

    Records add with ``+`` / ``+=`` (counts sum; examples are kept up to the limit), so the
    per-batch records of many workers or many steps combine into one. A record is picklable
    and round-trips through [to_dict][manifold_align.data.skipped.SkippedSamples.to_dict] / [from_dict][manifold_align.data.skipped.SkippedSamples.from_dict] (JSON-safe, for checkpoints).

    Args:
        max_examples: how many example keys to keep per reason (``>= 0``).

    Raises:
        ValueError: if ``max_examples`` is negative.
    """

    def __init__(self, max_examples: int = 5) -> None:
        if max_examples < 0:
            raise ValueError(f"max_examples: got {max_examples}, expected >= 0")
        self.max_examples = int(max_examples)
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    # -- recording -------------------------------------------------------------------------
    def record(self, reason: str, key: str = "", detail: str = "") -> None:
        """Count one skipped sample under ``reason``; keep ``key`` if there is room.

        Raises:
            ValueError: if ``reason`` is empty.
        """
        if not reason:
            raise ValueError(
                "reason: got an empty string, expected a reason such as 'corrupt_image'"
            )
        self.counts[reason] = self.counts.get(reason, 0) + 1
        keep = self.examples.setdefault(reason, [])
        if len(keep) < self.max_examples:
            keep.append(f"{key}: {detail}" if detail else str(key))

    def add(self, sample: SkippedSample) -> None:
        """Count a [SkippedSample][manifold_align.data.skipped.SkippedSample] marker."""
        self.record(sample.reason, sample.key, sample.detail)

    def update(self, markers: Iterable[SkippedSample]) -> None:
        """Count every marker of ``markers``."""
        for marker in markers:
            self.add(marker)

    def handler(self, reason: str = UNREADABLE_SHARD) -> Callable[[Exception], bool]:
        """A webdataset exception handler that records the error and continues.

        ``webdataset`` calls ``handler(exn)`` when a stage fails; returning ``True`` makes it
        skip the item and go on. A [SampleError][manifold_align.data.skipped.SampleError] is counted under its own reason;
        any other exception under ``reason`` with its message as the detail.

        Returns:
            A handler that records ``exn`` and returns ``True``.
        """

        def _handle(exn: Exception) -> bool:
            if isinstance(exn, SampleError):
                self.record(exn.reason, exn.key, exn.detail)
            else:
                parts = [str(a) for a in getattr(exn, "args", ()) if isinstance(a, str)]
                key = parts[-1] if len(parts) > 1 else ""
                detail = f"{type(exn).__name__}: {parts[0] if parts else exn}"
                self.record(reason, key, detail[:200])
            return True

        return _handle

    # -- combining and reporting -----------------------------------------------------------
    @property
    def total(self) -> int:
        """Number of skipped samples over all reasons."""
        return sum(self.counts.values())

    def __len__(self) -> int:
        return self.total

    def __bool__(self) -> bool:
        return self.total > 0

    def __iadd__(self, other: SkippedSamples) -> SkippedSamples:
        if not isinstance(other, SkippedSamples):
            return NotImplemented
        for reason, count in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + count
            keep = self.examples.setdefault(reason, [])
            room = self.max_examples - len(keep)
            keep.extend(other.examples.get(reason, [])[: max(room, 0)])
        return self

    def __add__(self, other: SkippedSamples) -> SkippedSamples:
        if not isinstance(other, SkippedSamples):
            return NotImplemented
        out = SkippedSamples(self.max_examples)
        out += self
        out += other
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SkippedSamples):
            return NotImplemented
        return self.counts == other.counts and self.examples == other.examples

    __hash__ = None  # mutable

    def as_metrics(self, prefix: str = "data/skipped") -> dict[str, int]:
        """Flat scalars for a metrics log: ``{prefix: total, prefix/<reason>: count, ...}``."""
        out = {prefix: self.total}
        for reason in sorted(self.counts):
            out[f"{prefix}/{reason}"] = self.counts[reason]
        return out

    def summary(self) -> str:
        """One human-readable line, e.g. ``3 skipped: corrupt_image=2 (a, b), missing_caption=1 (c)``."""
        if not self:
            return "0 skipped"
        parts = []
        for reason in sorted(self.counts):
            examples = ", ".join(self.examples.get(reason, []))
            parts.append(f"{reason}={self.counts[reason]}" + (f" ({examples})" if examples else ""))
        return f"{self.total} skipped: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: ``{"counts": {...}, "examples": {...}, "max_examples": n}``."""
        return {
            "counts": dict(self.counts),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "max_examples": self.max_examples,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> SkippedSamples:
        """Inverse of [to_dict][manifold_align.data.skipped.SkippedSamples.to_dict].

        Raises:
            ValueError: if ``state`` lacks ``counts`` or a count is not a non-negative int.
        """
        if "counts" not in state:
            raise ValueError(f"state: got keys {sorted(state)}, expected 'counts'")
        out = cls(int(state.get("max_examples", 5)))
        for reason, count in state["counts"].items():
            if not isinstance(count, int) or count < 0:
                raise ValueError(
                    f"state['counts'][{reason!r}]: got {count!r}, expected an int >= 0"
                )
            out.counts[str(reason)] = count
        for reason, keys in state.get("examples", {}).items():
            out.examples[str(reason)] = [str(k) for k in keys][: out.max_examples]
        return out

    def __repr__(self) -> str:
        return f"SkippedSamples({self.summary()})"
