"""Training metrics: one JSON object per line, and the plots a person reads at the end.

Each record has a ``kind`` (``"train"`` or ``"eval"``) and the optimizer ``step`` it belongs
to. A resumed run first drops the records written after the checkpoint it resumes from (and a
last line cut short by a kill), so the file ends up as if the run had never stopped; a
damaged line before the last stops the resume (`MetricsError`) before anything changes.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from manifold_align.files import write_atomic

__all__ = ["MetricsError", "MetricsWriter", "plot_metrics", "read_metrics"]


class MetricsError(ValueError):
    """A ``metrics.jsonl`` line that is not a UTF-8 JSON object; the message names the file and line."""


def _record(raw: bytes, path: Path, number: int) -> dict[str, Any]:
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MetricsError(f"{path}: line {number} is not UTF-8 text ({exc.reason} at byte "
                           f"{exc.start})") from None
    except json.JSONDecodeError as exc:
        raise MetricsError(f"{path}: line {number} is not JSON ({exc.msg}, column "
                           f"{exc.colno})") from None
    if not isinstance(record, dict):
        raise MetricsError(f"{path}: line {number} is a JSON {type(record).__name__}, "
                           f"expected an object (a record)")
    return record


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics JSONL file, in order (``[]`` if there is no file).

    Every newline-terminated line must be one UTF-8 JSON object (blank lines are skipped).
    Text after the last newline is what a run killed while writing leaves: it is kept if it
    is a whole record, else dropped with a ``RuntimeWarning`` naming the file and line.
    Nothing is written.

    Raises:
        MetricsError: a terminated line that is not UTF-8, not JSON or not an object
            (naming the file and the 1-based line number).
        OSError: the file cannot be read.
    """
    path = Path(path)
    if not path.exists():
        return []
    *lines, tail = path.read_bytes().split(b"\n")
    records = [_record(raw, path, n) for n, raw in enumerate(lines, 1) if raw.strip()]
    if tail.strip():
        try:
            records.append(_record(tail, path, len(lines) + 1))
        except MetricsError as exc:
            warnings.warn(f"{exc}; a last line cut short (the run was stopped while writing "
                          f"it) is ignored", RuntimeWarning, stacklevel=2)
    return records


class MetricsWriter:
    """Append-only JSONL metrics file, flushed after every record.

    Args:
        path: the ``metrics.jsonl`` file.
        resume_step: when resuming, the checkpoint's step: records with a larger ``step`` (and
            any partial line) are dropped first. ``None`` starts a new file.
        records: when resuming, the file's records as `read_metrics` returned them (read
            before anything in the run folder changed); ``None`` reads them here.

    Attributes:
        kept: the earlier records the file starts with (those up to ``resume_step``).

    Raises:
        MetricsError: when resuming, a damaged line (see `read_metrics`); the file is then
            left as it was.
    """

    def __init__(self, path: str | Path, resume_step: int | None = None,
                 records: Iterable[Mapping[str, Any]] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and records is None:
            records = read_metrics(self.path)
        kept = [] if resume_step is None else [
            dict(r) for r in records if r.get("step", 0) <= resume_step]
        self.kept = kept
        # replaced, not rewritten in place: a link planted at the path is never written through
        write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._fh = open(self.path, "a")

    def write(self, kind: str, step: int, values: Mapping[str, Any]) -> dict[str, Any]:
        """Append ``{"kind": kind, "step": step, **values}``; floats that are not finite become null."""
        record: dict[str, Any] = {"kind": kind, "step": int(step)}
        for key, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            record[key] = value
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        return record

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _series(records: Iterable[Mapping[str, Any]], kind: str, key: str) -> tuple[list, list]:
    xs, ys = [], []
    for r in records:
        if r.get("kind") == kind and isinstance(r.get(key), (int, float)):
            xs.append(r["step"])
            ys.append(r[key])
    return xs, ys


def _chance_key(key: str) -> str | None:
    """The metric a chance level belongs to (`a/chance_top1` -> `a/top1`), else `None`."""
    head, _, last = key.rpartition("/")
    if not last.startswith("chance_"):
        return None
    return f"{head}/{last[len('chance_'):]}" if head else last[len("chance_"):]


def plot_metrics(path: str | Path, out_dir: str | Path) -> list[Path]:
    """Write ``loss.png``, ``scale.png`` and (if any evaluation ran) ``eval.png``.

    ``loss.png``: training loss per step. ``scale.png``: the learned logit scale
    $1/\\tau$ and the positive/negative similarity means. ``eval.png``: every evaluation
    metric against the step, one panel each, with its chance level (a metric
    ``<prefix>/chance_<name>`` logged beside ``<prefix>/<name>``) as a dashed line in the same
    panel. All in the style of `manifold_align.plot_style` (150 dpi, readable fonts, plain
    tick labels without offset notation).

    Returns:
        The paths written.
    """
    from manifold_align import plot_style

    records = read_metrics(path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with plot_style.style():
        xs, ys = _series(records, "train", "loss")
        if xs:
            fig, axes = plot_style.panels(1, size=(6.4, 4.0))
            ax = axes[0][0]
            ax.plot(xs, ys, lw=1)
            ax.set_xlabel("step")
            ax.set_ylabel("training loss")
            written.append(plot_style.save(fig, out_dir / "loss.png"))

        xs, ys = _series(records, "train", "scale")
        if xs:
            fig, ((a1, a2),) = plot_style.panels(2, size=(5.2, 3.8))
            a1.plot(xs, ys, lw=1)
            a1.set_xlabel("step")
            a1.set_ylabel("logit scale 1/τ")
            for key, label in (("pos_sim", "positive pairs"), ("neg_sim", "negative pairs")):
                sx, sy = _series(records, "train", key)
                if sx:
                    a2.plot(sx, sy, lw=1, label=label)
            a2.set_xlabel("step")
            a2.set_ylabel("mean similarity")
            if a2.lines:
                a2.legend()
            written.append(plot_style.save(fig, out_dir / "scale.png"))

        numeric = sorted(
            {k for r in records if r.get("kind") == "eval" for k, v in r.items()
             if k not in ("kind", "step") and isinstance(v, (int, float))}
        )
        chance = {_chance_key(k): k for k in numeric if _chance_key(k) in numeric}
        keys = [k for k in numeric if k not in chance.values()]
        if keys:
            cols = min(3, len(keys))
            rows = math.ceil(len(keys) / cols)
            fig, axes = plot_style.panels(cols, rows, size=(4.2, 3.0))
            flat = [ax for row in axes for ax in row]
            for ax, key in zip(flat, keys):
                ex, ey = _series(records, "eval", key)
                ax.plot(ex, ey, marker="o", lw=1, label=key.rpartition("/")[2])
                if key in chance:
                    _, cy = _series(records, "eval", chance[key])
                    plot_style.chance_line(ax, cy[-1])
                    ax.legend(loc="best")
                ax.set_title(key)
                ax.set_xlabel("step")
            for ax in flat[len(keys):]:
                ax.axis("off")
            written.append(plot_style.save(fig, out_dir / "eval.png"))
    return written
