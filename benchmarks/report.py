"""Write ``docs/benchmarks.md`` from the JSON results of one ``scripts/bench.sh`` run.

Two sub-commands:

* ``machine --out FILE``: record the machine and the software (CPU model, cores, torch,
  OpenCLIP and geoopt versions, threads, date, the command) at the start of a run;
* ``page --results DIR --out FILE``: read ``machine.json``, ``losses.json``, ``radam.json``,
  ``throughput.json``, ``scaling.json``, ``tokenizer.json``, ``eval.json`` and
  ``durations.tsv`` from ``DIR`` (any of the benchmark files may be missing: its section then
  says so) and write the markdown page:
  the ratios at a glance, one section per benchmark with its table and plot, and how to
  reproduce it.

Every ratio is ``ours / peer`` from the same run: below 1, ours is faster or smaller.
Nothing here measures anything; the page is a pure function of the results folder.

Usage::

    python benchmarks/report.py machine --out benchmarks/results/machine.json --threads 1
    python benchmarks/report.py page --results benchmarks/results --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path

# --- machine ------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The ``model name`` of ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int, command: str, mode: str) -> dict:
    """What ran, where and when."""
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": _version("torch"),
        "open_clip_torch": _version("open_clip_torch"),
        "geoopt": _version("geoopt"),
        "threads": threads,
        "command": command,
        "mode": mode,
    }


# --- reading ------------------------------------------------------------------------------


def _load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _find(records: list[dict], **kw) -> dict | None:
    for r in records:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def _div(a: dict | None, b: dict | None, key: str) -> float | None:
    if a is None or b is None or not a.get(key) or not b.get(key):
        return None
    return a[key] / b[key]


# --- ratios -------------------------------------------------------------------------------


def loss_ratios(losses: list[dict]) -> list[tuple[str, float | None, float | None, float | None]]:
    """``(comparison, wall ratio, CPU ratio, peak-memory ratio)`` per batch size."""
    rows = []
    for b in sorted({r["batch"] for r in losses}):
        peer = _find(losses, impl="openclip", batch=b)
        sphere = {}
        for impl in ("dense", "tiled"):
            ours = sphere[impl] = _find(losses, impl=impl, manifold="sphere", batch=b)
            if ours and peer:
                rows.append((f"InfoNCE {impl}, Sphere(512) / OpenCLIP ClipLoss, B={b}",
                             _div(ours, peer, "time_s"), _div(ours, peer, "cpu_s"),
                             _div(ours, peer, "peak_extra_mib")))
        for impl in ("dense", "tiled"):
            obl = _find(losses, impl=impl, manifold="oblique", batch=b)
            if obl and sphere[impl]:
                rows.append((f"InfoNCE {impl}, Oblique(8, 64) / Sphere(512), B={b}",
                             _div(obl, sphere[impl], "time_s"), _div(obl, sphere[impl], "cpu_s"),
                             _div(obl, sphere[impl], "peak_extra_mib")))
        peer = _find(losses, impl="openclip_siglip", batch=b)
        ours = _find(losses, impl="sigmoid", manifold="sphere", batch=b)
        floor = _find(losses, impl="gemm3", batch=b)
        if floor and peer:
            rows.append((f"SigLIP floor (3 bare products) / OpenCLIP SigLipLoss, B={b}",
                         _div(floor, peer, "time_s"), _div(floor, peer, "cpu_s"), None))
        if ours and peer:
            rows.append((f"SigLIP, Sphere(512) / OpenCLIP SigLipLoss, B={b}",
                         _div(ours, peer, "time_s"), _div(ours, peer, "cpu_s"),
                         _div(ours, peer, "peak_extra_mib")))
        obl = _find(losses, impl="sigmoid", manifold="oblique", batch=b)
        if obl and ours:
            rows.append((f"SigLIP, Oblique(8, 64) / Sphere(512), B={b}",
                         _div(obl, ours, "time_s"), _div(obl, ours, "cpu_s"),
                         _div(obl, ours, "peak_extra_mib")))
    return rows


def radam_ratios(radam: dict) -> list[tuple[str, float | None, float | None]]:
    """``(comparison, wall ratio, CPU ratio)``: ours against geoopt, fused Adam and its
    bandwidth floor, per layout and thread count."""
    rows = []
    recs = radam["results"]
    for layout, threads in dict.fromkeys((r["layout"], r.get("threads")) for r in recs):
        at = f", {threads} thread{'s' if threads != 1 else ''}" if threads is not None else ""
        ours = _find(recs, layout=layout, optimizer="ours", **_threads(threads))
        for peer, label in (("geoopt", "geoopt RiemannianAdam"), ("fused", "torch fused Adam")):
            other = _find(recs, layout=layout, optimizer=peer, **_threads(threads))
            rows.append((f"RiemannianAdam step, {layout}{at} / {label}",
                         _div(ours, other, "ms_per_step"), _div(ours, other, "cpu_ms_per_step")))
        if ours and ours.get("floor_ms"):
            rows.append((f"RiemannianAdam step, {layout}{at} / its bandwidth floor",
                         ours["ms_per_step"] / ours["floor_ms"], ours.get("cpu_ratio_to_floor")))
    return rows


def _threads(threads: int | None) -> dict:
    """``_find`` filter on the thread count (absent in results written before it was kept)."""
    return {} if threads is None else {"threads": threads}


def throughput_ratios(tp: dict) -> list[tuple[str, float | None, float | None]]:
    """``(comparison, step-time ratio, CPU ratio)`` of each of our models against OpenCLIP."""
    return [
        (f"training step, {r['model']} / OpenCLIP {r['config']}, batch {r['batch']}",
         r.get("ratio_time"), r.get("ratio_cpu"))
        for r in tp["results"]
        if r["model"] != "OpenCLIP" and "ratio_time" in r
    ]


def tokenizer_ratios(tok: dict) -> list[tuple[str, float | None, float | None]]:
    """``(comparison, wall ratio, CPU ratio)`` of our CLIP tokenizer against OpenCLIP's."""
    return [
        (f"CLIP tokenizer, {r['captions']:,} {r['corpus']} captions / OpenCLIP's",
         r.get("ratio_time"), r.get("ratio_cpu"))
        for r in tok["results"]
    ]


def eval_ratios(ev: dict) -> list[tuple[str, float | None, float | None]]:
    """``(comparison, wall ratio, CPU ratio)``: our evaluation against clip_benchmark's."""
    rows = []
    for r in ev["speed"]:
        for task, label in (("zeroshot", "zero-shot"), ("retrieval", "retrieval")):
            rows.append((f"{label} evaluation, {r['model']} / clip_benchmark, "
                         f"{r['images']} images, batch {r['batch']}",
                         r.get(f"{task}_ratio"), r.get(f"{task}_ratio_cpu")))
    return rows


# --- page ---------------------------------------------------------------------------------


def _section_losses(losses: list[dict] | None) -> list[str]:
    out = ["## Losses: InfoNCE and SigLIP against OpenCLIP's `ClipLoss` and `SigLipLoss`", ""]
    if losses is None:
        return [*out, "Not run (no `losses.json`).", ""]
    out += [
        "`benchmarks/bench_losses.py`: forward + backward of the symmetric InfoNCE on `B`",
        "pairs of 512-dimensional points, each case in its own process (peak memory is that",
        "case's alone: resident-set peak over the inputs). Ours dense (one `B x B` logits",
        "buffer, hand-written backward) and tiled (strips of rows, `O(B)` saved state) on",
        "`Sphere(512)` and `Oblique(8, 64)`; the peer is OpenCLIP's `ClipLoss` on the same",
        "flat features. The SigLIP sigmoid loss (`SigmoidLoss`, learnable scale init 10 and",
        "bias init -10) is measured the same way against OpenCLIP's `SigLipLoss` given the",
        "same scale and bias; ours works in strips of 512 rows and forms its gradients in the",
        "forward sweep (three products of `B^2 D`, `O(B D)` saved). *3 bare products* is the",
        "floor of any SigLIP here: the logits `x @ y.T`, then `G @ y` and `G.T @ x`, into",
        "buffers allocated beforehand. Time is the fastest repetition after the first.",
        "",
        "| implementation | manifold | B | wall (s) | CPU (s) | peak extra (MiB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in losses:
        impl = {"openclip": "OpenCLIP ClipLoss", "openclip_siglip": "OpenCLIP SigLipLoss",
                "dense": "ours InfoNCE dense", "sigmoid": "ours SigLIP",
                "gemm3": "3 bare products (SigLIP floor)"}.get(
            r["impl"], f"ours InfoNCE tiled (T={r.get('tile')})")
        man = "flat 512" if r["impl"].startswith("openclip") or r["impl"] == "gemm3" else (
            "Sphere(512)" if r["manifold"] == "sphere" else "Oblique(8, 64)")
        out.append(f"| {impl} | {man} | {r['batch']} | {r['time_s']:.3f} | "
                   f"{r['cpu_s']:.3f} | {r['peak_extra_mib']:.0f} |")
    out += ["", "| ratio | wall | CPU | peak memory |", "|---|---:|---:|---:|"]
    out += [f"| {d} | {_fmt(w)} | {_fmt(c)} | {_fmt(m)} |" for d, w, c, m in loss_ratios(losses)]
    loads = [r["load_average"] for r in losses if r.get("load_average") is not None]
    if loads:
        out += ["", f"Load average (1 min) at the end of each case: {min(loads):.1f} to "
                f"{max(loads):.1f}: wall times include waiting for a core, CPU times do not."]
    out += [""] + [line for r in losses if r["impl"] == "sigmoid" and r["batch"] >= 32768
                   for line in _big_sigmoid(r)]
    return [*out, "", "![loss benchmark](img/bench_suite_losses.png)", ""]


def _big_sigmoid(r: dict) -> list[str]:
    """The sigmoid loss alone at a large batch: its whole-process and extra peak memory."""
    return [
        f"**SigLIP at B = {r['batch']:,}** (strips of 512 rows, `O(B D)` saved): the whole "
        f"process peaks at {r['peak_total_mib'] / 1024:.2f} GiB "
        f"({r['peak_total_mib'] * 2**20 / 1e9:.2f} GB; aim: under 3 GB), of which "
        f"{r['peak_extra_mib'] / 1024:.2f} GiB is the forward + backward's own working memory "
        f"beyond the inputs; {r['time_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU. Dense logits "
        f"alone would be {4 * r['batch'] ** 2 / 2**30:.0f} GiB.",
        "",
    ]


def _section_radam(radam: dict | None) -> list[str]:
    out = ["## Optimizer: Riemannian Adam against geoopt and torch's fused Adam", ""]
    if radam is None:
        return [*out, "Not run (no `radam.json`).", ""]
    meta = radam.get("meta", {})
    load = meta.get("load_average_before_after") or [None, None]
    out += [
        "`benchmarks/bench_radam.py`: one step on the same parameter and gradient, the three",
        "optimizers and a tensor copy stepped round-robin, median ms/step after warm-up, at",
        "each thread count in the same run. Fused Adam is Euclidean (no projection, no",
        "retraction). The *floor* is the memory traffic a step cannot avoid, timed as",
        "tensor copies of the parameter's size in the same round-robin (a copy makes three",
        "passes: it reads the source, reads the destination into the cache before writing",
        "it, and writes it): ours reads $x, g, m$ and writes $x, m$ (5 passes), fused Adam",
        "reads $p, g, m, v$ and writes $p, m, v$ (7 passes); *GB/s* is the copy's rate.",
        "CPU time (all threads of the process) leaves out waiting for a core: on a shared",
        "machine it is the steadier ratio.",
        f"geoopt {meta.get('geoopt', '?')}, row kernel of ours: {meta.get('kernel', '?')},",
        f"load average {_fmt(load[0], 1)} -> {_fmt(load[1], 1)} on {meta.get('cpu_count', '?')} cores.",
        "",
        "| layout | shape | threads | optimizer | wall ms | CPU ms | / fused Adam (wall) "
        "| / fused Adam (CPU) | / geoopt (CPU) | GB/s (copy, CPU) | floor CPU ms | / floor (CPU) "
        "| state (MiB) |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in radam["results"]:
        shape = " x ".join(map(str, r["shape"]))
        out.append(f"| {r['layout']} | {shape} | {r.get('threads', '?')} | {r['optimizer']} | "
                   f"{r['ms_per_step']:.1f} | {_fmt(r.get('cpu_ms_per_step'), 1)} | "
                   f"{r['ratio_to_fused']:.2f} | {_fmt(r.get('cpu_ratio_to_fused'))} | "
                   f"{_fmt(r.get('cpu_ratio_to_geoopt'), 3)} | "
                   f"{_fmt(r.get('cpu_bandwidth_gb_s'), 1)} | {_fmt(r.get('cpu_floor_ms'), 1)} | "
                   f"{_fmt(r.get('cpu_ratio_to_floor'))} | {r['state_mib']:.1f} |")
    out += ["", "| ratio | wall | CPU |", "|---|---:|---:|"]
    out += [f"| {d} | {_fmt(w)} | {_fmt(c)} |" for d, w, c in radam_ratios(radam)]
    return [*out, ""]


def _rounds(steps) -> str:
    if isinstance(steps, dict):
        return ", ".join(f"{n} ({name})" for name, n in steps.items())
    return str(steps)


def _section_throughput(tp: dict | None) -> list[str]:
    out = ["## Training throughput against OpenCLIP's model of the same shape", ""]
    if tp is None:
        return [*out, "Not run (no `throughput.json`).", ""]
    meta = tp["meta"]
    out += [
        "`benchmarks/bench_throughput.py`: one training step (forward, backward, optimizer",
        "step, temperature clamp) on a batch of random images and captions. Ours is",
        "`build_model(name)` with the trainer's optimizers; the `-oblique` form has 16 (ViT)",
        "or 8 (tiny) class and output tokens. The peer is `open_clip.CLIP` built in code with",
        "the same widths, depths, heads, patch and image size, context length, vocabulary and",
        "embedding size (no pretrained weights), OpenCLIP's `ClipLoss` and AdamW with",
        "OpenCLIP's decay exclusions. The equal parameter counts show the sphere model and",
        "the peer are the same shape. Steps are timed round-robin, order rotated each round,",
        f"median of {_rounds(meta.get('steps'))} rounds after {meta.get('warmup')} warm-up "
        "step(s); "
        f"{meta.get('precision')} on {meta.get('device')}, torch threads: {meta.get('threads')}.",
        f"Peer: {meta.get('peer')}.",
        "",
        "The `-oblique` forms are not the same computation: their towers carry `k - 1` more",
        "tokens (columns *image seq* and *text seq*: `k` class tokens before the patches,",
        "`k` copies of the start token), so they cost more by construction; the sphere rows",
        "are the like-for-like comparison.",
        "",
        "| config | model | batch | parameters | k | image seq | text seq | step wall (s) "
        "| step CPU (s) | samples/s | time / OpenCLIP | CPU / OpenCLIP |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in tp["results"]:
        out.append(f"| {r['config']} | {r['model']} | {r['batch']} | {r['params']:,} | "
                   f"{r.get('k', '-')} | {r.get('image_seq', '-')} | {r.get('text_seq', '-')} | "
                   f"{r['step_s']:.3f} | {r['step_cpu_s']:.3f} | {r['samples_per_s']:.2f} | "
                   f"{_fmt(r.get('ratio_time'))} | {_fmt(r.get('ratio_cpu'))} |")
    return [*out, "", "![throughput](img/bench_throughput.png)", ""]


def _section_scaling(sc: dict | None) -> list[str]:
    out = ["## How the costs grow", ""]
    if sc is None:
        return [*out, "Not run (no `scaling.json`).", ""]
    out += [
        "`benchmarks/bench_scaling.py`. **Loss**: our dense InfoNCE, forward + backward, on",
        "`Sphere(512)` and `Oblique(k, 512/k)` for several token counts `k` (every `k` up to",
        "the grid's largest `B`, above it `Sphere(512)` and `Oblique(8, 64)` only), one child",
        "process, peak memory per case by resetting the resident-set peak. **Optimizer**: one",
        "step on a `Sphere(64)` parameter of `R` rows, ours, torch's fused Adam and geoopt,",
        "round-robin. The exponent `a` is the least-squares slope of `log cost` on `log n`.",
        "The similarity is one `(B, 512) x (512, B)` product whatever `k` is, so the loss",
        "should cost the same for every `k` and grow like `B^2`; the optimizer like `R`.",
        "The loss's scale is `1 / (0.07 k)`, so the logits span the same range for every `k`",
        "(a fixed `1 / 0.07` at `k = 32` makes most `exp` results subnormal floats, a slow",
        "CPU path that measures the float format rather than the geometry).",
        "",
        "| cost | series | against | exponent a (cost ~ n^a) |",
        "|---|---|---|---:|",
    ]
    out += [f"| {f['cost']} | {f['series']} | {f['against']} | {_fmt(f['exponent'])} |"
            for f in sc["fits"]]
    sphere = {r["batch"]: r for r in sc["loss"] if r["tokens"] is None}
    rel = [(_div(r, sphere.get(r["batch"]), "cpu_s"), r) for r in sc["loss"] if r["tokens"]]
    rel = [(v, r) for v, r in rel if v is not None]
    if rel:
        lo, hi = min(rel, key=lambda t: t[0]), max(rel, key=lambda t: t[0])
        out += ["", f"Over every `Oblique(k, 512/k)` case, the CPU time relative to "
                f"`Sphere(512)` at the same `B` ranges from {lo[0]:.2f} ({lo[1]['manifold']}, "
                f"B={lo[1]['batch']}) to {hi[0]:.2f} ({hi[1]['manifold']}, B={hi[1]['batch']})."]
    out += ["", "![loss scaling](img/bench_scaling_loss.png)", "",
            "| B | manifold | wall (s) | CPU (s) | CPU / Sphere(512) | peak extra (MiB) |",
            "|---:|---|---:|---:|---:|---:|"]
    for r in sc["loss"]:
        rel = _div(r, sphere.get(r["batch"]), "cpu_s")
        mem = _fmt(r["peak_extra_mib"], 0)
        out.append(f"| {r['batch']} | {r['manifold']} | {r['time_s']:.4f} | {r['cpu_s']:.4f} | "
                   f"{_fmt(rel)} | {mem} |")
    out += _scaling_siglip(sc.get("siglip"))
    out += ["", "![optimizer scaling](img/bench_scaling_optim.png)", "",
            "| rows x 64 | optimizer | wall ms/step | CPU ms/step | wall / fused Adam "
            "| CPU / fused Adam |", "|---:|---|---:|---:|---:|---:|"]
    out += [f"| {r['rows']} | {r['optimizer']} | {1e3 * r['time_s']:.2f} | "
            f"{1e3 * r['cpu_s']:.2f} | {r['ratio_to_fused']:.2f} | "
            f"{r['cpu_ratio_to_fused']:.2f} |" for r in sc["optimizer"]]
    return [*out, ""]


def _scaling_siglip(siglip: list[dict] | None) -> list[str]:
    """The SigLIP sweep: ours against OpenCLIP's at each B, and the plot."""
    if not siglip:
        return []
    peer = {r["batch"]: r for r in siglip if r["impl"] == "openclip"}
    out = ["", "**SigLIP** (`siglip` sweep, same child process): our `SigmoidLoss` (strips of",
           "512 rows, gradients formed in the forward sweep) and OpenCLIP's `SigLipLoss` on",
           "`Sphere(512)` features, scale 10, bias -10. Time grows like `B^2` for both (three",
           "products of `B^2 D` each); our memory like `B`, OpenCLIP's like `B^2`.", "",
           "![SigLIP scaling](img/bench_scaling_siglip.png)", "",
           "| B | SigLIP | wall (s) | CPU (s) | peak extra (MiB) | CPU / OpenCLIP "
           "| memory / OpenCLIP |", "|---:|---|---:|---:|---:|---:|---:|"]
    for r in siglip:
        p = peer.get(r["batch"])
        out.append(f"| {r['batch']} | {r['series']} | {r['time_s']:.4f} | {r['cpu_s']:.4f} | "
                   f"{_fmt(r['peak_extra_mib'], 0)} | {_fmt(_div(r, p, 'cpu_s'))} | "
                   f"{_fmt(_div(r, p, 'peak_extra_mib'))} |")
    return out


def _section_tokenizer(tok: dict | None) -> list[str]:
    out = ["## CLIP tokenizer against OpenCLIP's", ""]
    if tok is None:
        return [*out, "Not run (no `tokenizer.json`).", ""]
    meta, load = tok["meta"], tok["load"]
    out += [
        "`benchmarks/bench_tokenizer.py`: `clip_tokenizer()` (OpenAI CLIP's BPE shipped with",
        "the package, run through Hugging Face `tokenizers`) and",
        f"`open_clip.get_tokenizer(\"ViT-B-32\")` (open_clip_torch {meta.get('open_clip_torch')},",
        "pure Python) turn the same captions into `(N, 77)` rows, in one process, chunks of",
        f"{meta.get('chunk')} captions taken in turn; the rows are compared as they go (column",
        "*rows differing*). *synthetic*: the bundled captions (few distinct words, ASCII);",
        "*web-like*: seeded captions over 20,000 words of CLIP's vocabulary with capitals,",
        "punctuation, HTML entities, curly quotes, accents and emoji. Both clean with `ftfy`",
        "as OpenCLIP does (ours skips it on printable ASCII without `&`, which it leaves",
        f"unchanged). One thread each. Building the tokenizer: ours {load['ours_s']:.2f} s,",
        f"OpenCLIP's {load['openclip_s']:.2f} s (best of several).",
        "",
        "| corpus | captions | mean chars | ours wall (s) | OpenCLIP wall (s) | ours CPU (s) "
        "| OpenCLIP CPU (s) | wall ours / OpenCLIP | CPU ours / OpenCLIP | rows differing |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    out += [f"| {r['corpus']} | {r['captions']:,} | {r['mean_chars']:.0f} | "
            f"{r['ours']['wall_s']:.1f} | {r['openclip']['wall_s']:.1f} | "
            f"{r['ours']['cpu_s']:.1f} | {r['openclip']['cpu_s']:.1f} | "
            f"{_fmt(r['ratio_time'])} | {_fmt(r['ratio_cpu'])} | {r['rows_differing']} |"
            for r in tok["results"]]
    load_after = (meta.get("load_average_after") or [None])[0]
    if load_after is not None:
        out += ["", f"Load average {load_after:.1f} on {meta.get('cpu_count')} cores at the end "
                "of the run: wall times include waiting for a core, CPU times do not."]
    return [*out, ""]


def _section_eval(ev: dict | None) -> list[str]:
    out = ["## Evaluation against CLIP_benchmark", ""]
    if ev is None:
        return [*out, "Not run (no `eval.json`).", ""]
    meta, agree = ev["meta"], ev["agreement"]
    out += [
        "`benchmarks/bench_eval.py` (see [CLIP_benchmark as a client](clip-benchmark.md)).",
        "**Agreement**: `tiny` and `tiny-oblique` fitted for "
        f"{agree['fit_steps']} steps, {agree['n_classify']} zero-shot images "
        f"({agree['classes']} colour classes, {agree['templates']} templates) and "
        f"{agree['n_retrieval']} retrieval images ({agree['captions_per_image']} captions each)",
        f"in CLIP_benchmark's webdataset layout, evaluated by clip_benchmark "
        f"{meta.get('clip_benchmark')} (fp32) and by ours. In clip_benchmark's names",
        "`image_retrieval` is text -> image, `text_retrieval` image -> text; *one sample* is",
        "what one image or query changes in the metric.",
        "",
        "| case | metric | ours | clip_benchmark | one sample |",
        "|---|---|---:|---:|---:|",
    ]
    out += [f"| {r['case']} | {r['metric']} | {r['ours']:.4f} | {r['clip_benchmark']:.4f} | "
            f"{r['tolerance']:.4f} |" for r in agree["rows"]]
    out += [
        "",
        "Oblique, 4 templates: clip_benchmark's flat prompt mean and our manifold mean pick a "
        f"different top-1 class for {100 * agree['oblique_top1_disagreement']:.1f}% of the "
        "images.",
        "",
        "**Speed**: the same random-init model encodes the same images and prompts, both",
        "sides fed ready-made batches of the same size; median of "
        f"{meta.get('rounds')} round-robin rounds, torch threads: {meta.get('threads')};",
        f"load average {_fmt(meta.get('load_average_at_start'), 1)} on {meta.get('cores')} "
        "cores at the start, so the CPU-time ratio is the steadier one.",
        "",
        "| model | task | images | classes x templates | batch | ours (s) | clip_benchmark (s) "
        "| wall ratio | CPU ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in ev["speed"]:
        for task in ("zeroshot", "retrieval"):
            ct = f"{r['classes']} x {r['templates']}" if task == "zeroshot" else "-"
            out.append(f"| {r['model']} | {task} | {r['images']} | {ct} | {r['batch']} | "
                       f"{r[f'{task}_ours_s']:.3f} | {r[f'{task}_clip_benchmark_s']:.3f} | "
                       f"{_fmt(r[f'{task}_ratio'])} | {_fmt(r[f'{task}_ratio_cpu'])} |")
    return [*out, ""]


def page(results: Path) -> str:
    """The markdown page of a results folder."""
    m = _load(results / "machine.json") or {}
    losses = _load(results / "losses.json")
    radam = _load(results / "radam.json")
    tp = _load(results / "throughput.json")
    sc = _load(results / "scaling.json")
    tok = _load(results / "tokenizer.json")
    ev = _load(results / "eval.json")
    durations = {}
    if (results / "durations.tsv").exists():
        for line in (results / "durations.tsv").read_text().splitlines():
            name, _, secs = line.partition("\t")
            durations[name] = int(secs)

    out = [
        "# Benchmarks",
        "",
        "<!-- Generated by benchmarks/report.py from benchmarks/results/; do not edit. -->",
        "",
        "Every cost here is measured next to a peer **in the same run, on the same machine,",
        "with the same threads**, and reported as a ratio `ours / peer` (below 1: ours is",
        "faster or smaller). Absolute times depend on the machine and its load; the",
        "ratios are what carry over.",
        "",
    ]
    gpu = str(m.get("mode", "")).startswith("gpu")
    if not gpu:
        load = (m.get("load_average_at_start") or [None])[0]
        shared = load is not None and load >= 0.5 * (m.get("cores") or 1)
        out += [
            "!!! note \"A small, shared machine\"" if shared else "!!! note \"CPU timings\"",
            f"    This run used {m.get('cores', '?')} CPU cores"
            + (" that other jobs were using at the same time" if shared else ""),
            f"    (load average {_fmt(load, 1)} at the start), so wall-clock times are noisy.",
            "    Contenders are interleaved (round-robin) so that load falls on all of them",
            "    alike, and process CPU time is given next to wall time: it is the steadier of",
            "    the two here. No GPU was available: the sizes are CPU sizes, fp32.",
            "",
        ]
    out += [
        "## Machine and software",
        "",
        "| | |",
        "|---|---|",
        f"| date | {m.get('date_utc', '?')} |",
        f"| CPU | {m.get('cpu', '?')}, {m.get('cores', '?')} cores |",
        f"| torch threads | {m.get('threads', '?')} |",
        f"| platform | {m.get('platform', '?')}, Python {m.get('python', '?')} |",
        f"| torch | {m.get('torch', '?')} |",
        f"| open_clip_torch | {m.get('open_clip_torch') or 'not installed (peer skipped)'} |",
        f"| geoopt | {m.get('geoopt', '?')} |",
        f"| mode | {m.get('mode', '?')} |",
    ]
    if durations:
        total = sum(durations.values())
        parts = ", ".join(f"{k} {v} s" for k, v in durations.items())
        out.append(f"| wall time | {total} s ({parts}) |")
    out += [
        "",
        "Reproduce (creates `.venv-peers` with OpenCLIP, geoopt and CLIP_benchmark on first use, then runs",
        "every benchmark and rewrites this page, its plots and `benchmarks/results/`):",
        "",
        "```bash",
        f"{m.get('command', 'bash scripts/bench.sh')}   # the run on this page",
        "bash scripts/bench.sh --quick   # smoke run with small sizes, into runs/bench-quick/",
        "```",
        "",
        "## Ratios at a glance",
        "",
        "| comparison | wall | CPU | peak memory |",
        "|---|---:|---:|---:|",
    ]
    if losses:
        out += [f"| {d} | {_fmt(w)} | {_fmt(c)} | {_fmt(mm)} |"
                for d, w, c, mm in loss_ratios(losses)]
    if radam:
        out += [f"| {d} | {_fmt(w)} | {_fmt(c)} | |" for d, w, c in radam_ratios(radam)]
    if tp:
        out += [f"| {d} | {_fmt(w)} | {_fmt(c)} | |" for d, w, c in throughput_ratios(tp)]
    if tok:
        out += [f"| {d} | {_fmt(w)} | {_fmt(c)} | |" for d, w, c in tokenizer_ratios(tok)]
    if ev:
        out += [f"| {d} | {_fmt(w)} | {_fmt(c)} | |" for d, w, c in eval_ratios(ev)]
    out.append("")
    for section in (_section_losses(losses), _section_radam(radam), _section_throughput(tp),
                    _section_scaling(sc), _section_tokenizer(tok), _section_eval(ev)):
        out += section
    if gpu:
        return "\n".join(out)
    out += [
        "## On a GPU",
        "",
        "`bash benchmarks/gpu.sh` runs the same benchmarks with CUDA and GPU sizes: the",
        "losses from `B = 1024` to `65536`, `ViT-B-32` at batch 256 under bf16 autocast, the",
        "optimizer at 4M rows. It writes to `runs/bench-gpu/` and touches nothing else.",
        "**It has not been run for this page** (no GPU was available); nothing depends on it.",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_m = sub.add_parser("machine", help="record machine and software at the start of a run")
    p_m.add_argument("--out", type=Path, required=True)
    p_m.add_argument("--threads", type=int, required=True)
    p_m.add_argument("--command", default="bash scripts/bench.sh")
    p_m.add_argument("--mode", default="full")
    p_p = sub.add_parser("page", help="write the markdown page from a results folder")
    p_p.add_argument("--results", type=Path, required=True)
    p_p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.cmd == "machine":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        info = machine(args.threads, args.command, args.mode)
        args.out.write_text(json.dumps(info, indent=2) + "\n")
    else:
        if not args.results.is_dir():
            parser.error(f"--results: {args.results} is not a folder")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(page(args.results))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
