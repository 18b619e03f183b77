"""``manifold-align eval --checkpoint DIR [--set key=value ...]``: evaluate a trained run.

1. Resolve ``DIR`` (a run folder, its ``checkpoints/`` folder, or one ``step_*`` checkpoint)
   to a complete checkpoint.
2. Read the resolved run config that checkpoint was written with (its ``state.json``, the
   one file the model is rebuilt from) and apply the ``--set`` overrides; only evaluation settings may change (``eval.*``, ``train.device``,
   ``train.precision``): anything else would describe another model.
3. Rebuild the tokenizer and the model from that config and load the weights (safetensors,
   nothing unpickled).
4. Render the synthetic held-out splits, run zero-shot classification, retrieval and the
   geometry diagnostics ([manifold_align.evaluate.suite.evaluate_model][manifold_align.evaluate.suite.evaluate_model]); with
   ``--table FILE`` also retrieval and geometry on a CSV/TSV of image paths and captions
   ([manifold_align.evaluate.suite.table_retrieval][manifold_align.evaluate.suite.table_retrieval]).
   With ``--benchmark NAME=PATH`` (repeatable) instead: zero-shot classification or retrieval
   on standard datasets on disk ([manifold_align.evaluate.standard][manifold_align.evaluate.standard]), every one checked
   before the model is loaded; without ``--benchmark`` and ``--table``, the run's own
   ``eval.benchmarks`` (if any) are evaluated besides the held-out set.
5. Print a markdown table and update ``eval.json`` (default: in the run folder): held-out
   results at the top level, each benchmark evaluation appended to its ``"benchmarks"``
   list ([manifold_align.evaluate.report.update_eval_json][manifold_align.evaluate.report.update_eval_json]).

Exit status 0 on success, 2 for a bad checkpoint, override, table or ``--out`` (one line on
stderr names it).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from manifold_align.cli.errors import fail
from manifold_align.cli.options import add_set_option, check_out_file
from manifold_align.config import ConfigError, from_dict, merge_overrides, parse_overrides, to_dict

__all__ = ["add_arguments", "format_table", "run"]

#: Config keys ``--set`` may change at evaluation time (a key or a section).
EVAL_KEYS = ("eval", "train.device", "train.precision")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--checkpoint``, ``--set``, ``--out``, ``--table``, ``--benchmark``,
    ``--karcher``, ``--chunk-size``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="a run folder, its checkpoints/ folder, or one step_* checkpoint",
    )
    source.add_argument(
        "--pretrained",
        metavar="PATH",
        help="an OpenCLIP state_dict file or a Hugging Face CLIPModel folder (evaluated on "
        "--benchmark / --table only; needs --out; tokenized with CLIP's BPE)",
    )
    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="with --pretrained: the architecture (ViT-B-32, ViT-B-16, ViT-L-14, with "
        "-quickgelu for OpenAI's weights); default: inferred from the file",
    )
    add_set_option(
        parser,
        "override an evaluation setting: eval.zeroshot_samples, eval.retrieval_samples, "
        "eval.batch_size, train.device, train.precision (repeatable)",
    )
    parser.add_argument(
        "--out", default=None, metavar="FILE", help="where to write eval.json (default: run folder)"
    )
    parser.add_argument(
        "--table",
        default=None,
        metavar="FILE",
        help="also evaluate retrieval on a CSV/TSV of image paths and captions (rows naming "
        "the same image are its captions); columns from data.csv.image_column/caption_column",
    )
    parser.add_argument(
        "--benchmark",
        dest="benchmarks",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="evaluate on a standard dataset on disk (repeatable): imagenet1k, cifar10, cifar100, "
        "folder/<name>, wds/<name> (zero-shot); coco, flickr30k (retrieval); options after the "
        "path, e.g. NAME=PATH,templates=imagenet1k-7 (see docs/evaluation-standard.md); the "
        "held-out synthetic evaluation is then skipped",
    )
    parser.add_argument(
        "--karcher",
        action="store_true",
        help="average prompt ensembles with the Karcher mean instead of the projected mean",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=1024,
        metavar="N",
        help="queries per block in retrieval and classification (bounds memory)",
    )


def _check_override_keys(overrides: list[str]) -> None:
    """Raise ``ConfigError`` for an override outside `EVAL_KEYS`, naming it."""

    def keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for k, v in tree.items():
            key = f"{prefix}.{k}" if prefix else k
            out.extend(keys(v, key) if isinstance(v, dict) and v else [key])
        return out

    for key in keys(parse_overrides(overrides)):
        if not any(key == allowed or key.startswith(allowed + ".") for allowed in EVAL_KEYS):
            raise ConfigError(
                f"{key}: cannot be changed at evaluation (it describes the trained run); "
                f"allowed: eval.*, train.device, train.precision"
            )


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _retrieval_rows(retrieval: dict[str, Any], prefix: str) -> list[str]:
    lines = []
    n, m = retrieval["num_images"], retrieval["num_captions"]
    for key, value in retrieval.items():
        if "@" in key:
            direction, k = key.split("@")
            # a random ranking, one caption per image: the one match lands in the top k
            # with probability k / N; with several captions per image no single number fits
            chance = min(1.0, int(k) / n) if n == m else None
            name = f"{prefix}{direction.replace('_', ' ')} R@{k}"
            lines.append(f"| {name} | {_fmt(value)} | {_fmt(chance)} |")
    return lines


def _geometry_rows(geometry: dict[str, Any], prefix: str) -> list[str]:
    sim = geometry["similarity"]
    low, high = sim["similarity_range"]
    rows = [
        (f"positive similarity (range [{low:g}, {high:g}])", sim["pos_mean"]),
        ("negative similarity", sim["neg_mean"]),
        ("gap", sim["gap"]),
    ]
    if "gap_logits" in sim:
        rows.append((f"gap in logits (scale {sim['scale']:.3g})", sim["gap_logits"]))
    rows += [
        ("alignment", geometry["alignment"]),
        ("uniformity (images)", geometry["uniformity_image"]),
        ("uniformity (texts)", geometry["uniformity_text"]),
    ]
    return [f"| {prefix}{name} | {_fmt(value)} | |" for name, value in rows]


def format_table(results: dict[str, Any]) -> str:
    """A markdown table of [evaluate_model][manifold_align.evaluate.suite.evaluate_model]'s result
    (and of ``results["table"]``, [table_retrieval][manifold_align.evaluate.suite.table_retrieval]'s)."""
    lines = ["| metric | value | chance |", "|---|---:|---:|"]
    for attribute, r in results.get("zeroshot", {}).items():
        for key in sorted(k for k in r if k.startswith("top")):
            k = key[3:]
            lines.append(
                f"| zero-shot {attribute} top-{k} ({r['num_classes']} classes) | "
                f"{_fmt(r[key])} | {_fmt(r[f'chance_top{k}'])} |"
            )
    if "zeroshot_mean_top1" in results:
        lines.append(f"| zero-shot mean top-1 | {_fmt(results['zeroshot_mean_top1'])} | |")
    if "retrieval" in results:
        lines += _retrieval_rows(results["retrieval"], "")
    if "geometry" in results:
        lines += _geometry_rows(results["geometry"], "")
    table = results.get("table")
    if table:
        prefix = f"table ({table['images']} images, {table['captions']} captions): "
        lines += _retrieval_rows(table["retrieval"], prefix)
        lines += _geometry_rows(table["geometry"], prefix)
        skipped = table["skipped"]["counts"]
        if skipped:
            listed = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items()))
            lines.append(f"| {prefix}rows skipped ({listed}) | {sum(skipped.values())} | |")
    return "\n".join(lines)


def _table_and_benchmarks(
    model: Any, tokenizer: Any, table: Any, benchmarks: list[Any], args: argparse.Namespace,
    config: Any, options: dict[str, Any],
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``(--table's retrieval or None, {benchmark name: result})`` for one loaded model.

    Raises:
        ValueError: an unusable table (naming ``--table``) or benchmark (naming it).
    """
    from manifold_align.evaluate.standard import evaluate_benchmark
    from manifold_align.evaluate.suite import table_retrieval

    table_result = None
    if table is not None:
        try:
            table_result = table_retrieval(model, tokenizer, table, **options)
        except ValueError as exc:
            raise ValueError(f"--table {args.table}: {exc}") from None
        table_result["path"] = str(args.table)
    standard = {bench.spec.name: evaluate_benchmark(
        model, tokenizer, bench, karcher=args.karcher, num_workers=config.eval.num_workers,
        **options) for bench in benchmarks}
    return table_result, standard


def _pretrained(args: argparse.Namespace, device: Any) -> tuple[Any, Any, str, str]:
    """``(model, tokenizer, name, path)`` for ``--pretrained``: a sphere CLIP and CLIP's BPE.

    Raises:
        ConfigError: the file cannot be read as CLIP weights, or its vocabulary is not CLIP's.
    """
    from manifold_align.data.tokenizer import clip_tokenizer
    from manifold_align.pretrained import load_pretrained
    from manifold_align.pretrained.architecture import registered_name
    from manifold_align.pretrained.factory import CLIP_VOCAB_SIZE

    try:
        model = load_pretrained(args.pretrained, args.model, device=device)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--pretrained {args.pretrained}: {exc}") from None
    if model.config.vocab_size != CLIP_VOCAB_SIZE:
        raise ConfigError(
            f"--pretrained {args.pretrained}: a vocabulary of {model.config.vocab_size}, not "
            f"CLIP's {CLIP_VOCAB_SIZE}; evaluate it through manifold_align.evaluate with its "
            f"own tokenizer"
        )
    return model, clip_tokenizer(model.config.context_length), args.model or registered_name(model.config) or "CLIP", \
        str(args.pretrained)


def run(args: argparse.Namespace) -> int:
    """Evaluate the checkpoint ``args.checkpoint`` (or the CLIP weights ``args.pretrained``);
    print a table, write ``eval.json``.

    Returns:
        0 on success; 2 (with a message on stderr) for a missing or unloadable checkpoint, a
        bad override or table, or an unusable ``--out``.
    """
    from manifold_align.data.synthetic import SyntheticConfig
    from manifold_align.data.tabular import CaptionTable
    from manifold_align.evaluate.benchmarks import open_benchmark, parse_benchmark
    from manifold_align.evaluate.report import format_benchmark_table, update_eval_json
    from manifold_align.evaluate.suite import evaluate_model, synthetic_heldout
    from manifold_align.train.checkpoint import CheckpointError, find_checkpoint, read_state
    from manifold_align.train.config import RunConfig
    from manifold_align.train.evaluation import benchmark_specs
    from manifold_align.train.run import load_trained, resolve_device

    if args.pretrained is not None:
        return _run_pretrained(args)
    if args.model is not None:
        return fail("eval", "--model: only with --pretrained (a run knows its model)")
    try:
        if args.chunk_size < 1:
            raise ConfigError(f"--chunk-size: expected a positive integer, got {args.chunk_size}")
        ckpt = find_checkpoint(args.checkpoint, Path(args.checkpoint) / "checkpoints")
        run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
        out = Path(args.out) if args.out else run_dir / "eval.json"
        check_out_file(out)
        _check_override_keys(args.overrides)
        state = read_state(ckpt)  # the one file the configuration is read from
        config = from_dict(RunConfig, merge_overrides(state["config"], args.overrides))
        appearance = SyntheticConfig(**config.data.synthetic.appearance)  # checked at load
        step = state["step"]
        from_config = False
        try:  # every benchmark is checked before the model is loaded
            specs = [parse_benchmark(b) for b in args.benchmarks]
            from_config = not specs and not args.table
            if from_config:  # the run's own eval.benchmarks
                specs = benchmark_specs(config.eval.benchmarks)
            benchmarks = [open_benchmark(spec) for spec in specs]
        except ValueError as exc:
            raise ConfigError(str(exc) if not from_config else f"eval.benchmarks: {exc}") from None
        synthetic = (not args.benchmarks) and (
            config.eval.zeroshot_samples > 0 or config.eval.retrieval_samples > 0)
        if not synthetic and not args.table and not benchmarks:
            raise ConfigError(
                "eval.zeroshot_samples, eval.retrieval_samples: both are 0, and no --table, "
                "--benchmark or eval.benchmarks is given; nothing to evaluate"
            )
        table = None
        if args.table:
            try:
                table = CaptionTable(
                    args.table,
                    image_column=config.data.csv.image_column,
                    caption_column=config.data.csv.caption_column,
                )
            except (OSError, ValueError) as exc:
                raise ConfigError(f"--table {args.table}: {exc}") from None
        device = resolve_device(config.train.device)
        model, tokenizer, _ = load_trained(ckpt, device=device, config=config)
    except (ConfigError, CheckpointError) as exc:
        return fail("eval", str(exc))

    options = {
        "batch_size": config.eval.batch_size,
        "device": device,
        "precision": config.train.precision,
        "chunk_size": args.chunk_size,
    }
    results: dict[str, Any] = {"manifold": repr(model.manifold)}
    if synthetic:
        heldout = synthetic_heldout(
            zeroshot_samples=config.eval.zeroshot_samples,
            retrieval_samples=config.eval.retrieval_samples,
            seed=config.data.synthetic.seed,
            image_size=model.vision.image_size,
            config=appearance,
        )
        results.update(evaluate_model(model, tokenizer, heldout, karcher=args.karcher, **options))
        results["retrieval_scanned"] = heldout.retrieval_scanned
    try:
        table_result, standard = _table_and_benchmarks(
            model, tokenizer, table, benchmarks, args, config, options)
    except ValueError as exc:
        return fail("eval", str(exc))
    if table_result is not None:
        results["table"] = table_result
    results = {
        "checkpoint": str(ckpt),
        "step": step,
        "model": config.model.name,
        **results,
        "karcher": bool(args.karcher),
        "config": to_dict(config),
    }
    entry = None
    if standard:
        entry = {key: results[key] for key in ("checkpoint", "step", "model", "manifold", "karcher")}
        entry["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        entry["results"] = standard
    try:
        update_eval_json(out, results if (synthetic or table is not None) else None, entry)
    except ValueError as exc:
        return fail("eval", f"--out {exc}")
    print(f"{config.model.name} at step {step} on {results['manifold']} ({ckpt})")
    if synthetic or table is not None:
        print(format_table(results))
    if standard:
        print(format_benchmark_table(standard))
    print(f"wrote {out}")
    return 0


def _run_pretrained(args: argparse.Namespace) -> int:
    """``eval --pretrained PATH``: the standard benchmarks (and ``--table``) on CLIP weights."""
    from manifold_align.data.tabular import CaptionTable
    from manifold_align.evaluate.benchmarks import open_benchmark, parse_benchmark
    from manifold_align.evaluate.report import format_benchmark_table, update_eval_json
    from manifold_align.train.config import RunConfig
    from manifold_align.train.run import resolve_device

    try:
        if args.chunk_size < 1:
            raise ConfigError(f"--chunk-size: expected a positive integer, got {args.chunk_size}")
        if args.out is None:
            raise ConfigError("--out: with --pretrained, name the eval.json to write")
        out = Path(args.out)
        check_out_file(out)
        _check_override_keys(args.overrides)
        if not args.benchmarks and not args.table:
            raise ConfigError("--pretrained: give --benchmark NAME=PATH or --table FILE")
        config = from_dict(RunConfig, merge_overrides(to_dict(RunConfig()), args.overrides))
        try:  # every benchmark is checked before the model is loaded
            benchmarks = [open_benchmark(parse_benchmark(b)) for b in args.benchmarks]
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        table = None
        if args.table:
            try:
                table = CaptionTable(args.table, image_column=config.data.csv.image_column,
                                     caption_column=config.data.csv.caption_column)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"--table {args.table}: {exc}") from None
        device = resolve_device(config.train.device)
        model, tokenizer, name, path = _pretrained(args, device)
    except ConfigError as exc:
        return fail("eval", str(exc))
    options = {"batch_size": config.eval.batch_size, "device": device,
               "precision": config.train.precision, "chunk_size": args.chunk_size}
    try:
        table_result, standard = _table_and_benchmarks(
            model, tokenizer, table, benchmarks, args, config, options)
    except ValueError as exc:
        return fail("eval", str(exc))
    results = {} if table_result is None else {"table": table_result}
    head = {"checkpoint": path, "step": None, "model": name, "manifold": repr(model.manifold),
            "karcher": bool(args.karcher)}
    top = {**head, **results} if table is not None else None
    entry = None
    if standard:
        entry = {**head, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "results": standard}
    try:
        update_eval_json(out, top, entry)
    except ValueError as exc:
        return fail("eval", f"--out {exc}")
    print(f"{name} (pretrained) on {head['manifold']} ({path})")
    if top is not None:
        print(format_table(top))
    if standard:
        print(format_benchmark_table(standard))
    print(f"wrote {out}")
    return 0
