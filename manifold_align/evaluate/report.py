"""Reporting benchmark results: a markdown table with chance levels, and ``eval.json``.

``eval.json`` keeps every evaluation of a run: the latest held-out (synthetic) results at the
top level, as before, and a list ``"benchmarks"`` to which each ``--benchmark`` evaluation is
appended (checkpoint, step, time and one result per benchmark), so evaluating ImageNet today
and COCO tomorrow keeps both.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from manifold_align.files import write_atomic

__all__ = ["format_benchmark_table", "update_eval_json"]


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}"


def _skipped(result: dict[str, Any]) -> str:
    counts = result["skipped"]["counts"]
    if not counts:
        return "0"
    return f"{sum(counts.values())} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"


def format_benchmark_table(results: dict[str, dict[str, Any]]) -> str:
    """A markdown table of [evaluate_benchmarks][manifold_align.evaluate.standard.evaluate_benchmarks]'s
    results: one row per metric, with the chance level of a random guess or ranking."""
    lines = ["| benchmark | metric | value | chance |", "|---|---|---:|---:|"]
    for name, r in results.items():
        if r["task"] == "zeroshot":
            c = r["num_classes"]
            for key in sorted(k for k in r if k.startswith("top")):
                k = key[3:]
                lines.append(f"| {name} | zero-shot top-{k} | {_fmt(r[key])} | {_fmt(r[f'chance_top{k}'])} |")
            lines.append(f"| {name} | mean per-class recall | {_fmt(r['mean_per_class_recall'])} | {_fmt(1 / c)} |")
            size = f"{r['num_images']} images, {c} classes, {r['num_templates']} templates"
        else:
            for direction in ("image_to_text", "text_to_image"):
                for key in sorted((k for k in r if k.startswith(direction + "@")), key=lambda k: int(k.split("@")[1])):
                    k = key.split("@")[1]
                    label = direction.replace("_to_", "->")
                    lines.append(f"| {name} | {label} R@{k} | {_fmt(r[key])} | {_fmt(r.get('chance_' + key))} |")
            size = f"{r['num_images']} images, {r['num_captions']} captions"
        lines.append(f"| {name} | evaluated | {size} | |")
        lines.append(f"| {name} | images skipped | {_skipped(r)} | |")
    return "\n".join(lines)


def update_eval_json(path: str | Path, top: dict[str, Any] | None = None,
                     benchmarks: dict[str, Any] | None = None) -> dict[str, Any]:
    """Update ``path``: ``top`` (if given) replaces the top level except the ``"benchmarks"``
    list, to which ``benchmarks`` (if given) is appended. Written atomically
    ([manifold_align.files.write_atomic][manifold_align.files.write_atomic]: temporary file, one rename, mode from the umask).

    Returns:
        The whole file's new content.

    Raises:
        ValueError: if ``path`` exists but is not a JSON object (it is left as it is).
    """
    path = Path(path)
    content: dict[str, Any] = {}
    if path.exists():
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: exists but is not readable JSON ({exc}); move it away first") from None
        if not isinstance(content, dict):
            raise ValueError(f"{path}: exists but is not a JSON object; move it away first")
    history = content.get("benchmarks")
    history = history if isinstance(history, list) else []
    if top is not None:
        content = dict(top)
    if benchmarks is not None:
        history = [*history, benchmarks]
    if history:
        content["benchmarks"] = history
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(content, indent=2))  # the umask's mode, never through a link
    return content
