"""CLIP tokenizer throughput on 100k captions: ours (``clip_tokenizer``) vs OpenCLIP's.

Both tokenizers turn the same captions into ``(N, 77)`` id rows, in the same process, one
chunk of captions each in turn (round-robin, so that load from other processes falls on both
alike); the rows are compared as they go, so the numbers are for equal output. Two corpora:

* ``synthetic``: captions of :class:`manifold_align.data.SyntheticCaptions` (a few hundred
  distinct words, plain ASCII: the bundled training data);
* ``web-like``: seeded random captions over 20,000 English words of CLIP's own vocabulary
  with capitals, punctuation, numbers, HTML entities, curly quotes, accents and emoji (many
  distinct words, some text that ``ftfy`` has to look at).

Also timed: building each tokenizer (ours reads the shipped merges and builds the
``tokenizers`` model; OpenCLIP's reads the same file into Python dicts). Needs OpenCLIP: run it
in ``.venv-peers``. Prints a markdown table; ``--json PATH`` writes the numbers.

Usage::

    .venv-peers/bin/python benchmarks/bench_tokenizer.py --json benchmarks/results/tokenizer.json
    .venv-peers/bin/python benchmarks/bench_tokenizer.py --quick     # 2,000 captions (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # tokenizers' thread pool: one core, as OpenCLIP

import open_clip
import torch

from manifold_align.data import SyntheticCaptions
from manifold_align.data.clip_bpe import byte_symbols, clip_backend
from manifold_align.data.tokenizer import clip_tokenizer

_EXTRAS = ["&amp;", "&#39;s", "’s", "—", "café", "naïve", "Zürich", "🐶", "❤️", "(2019)", "#1",
           "...", "!", "?", ",", ",", ",", ".", "."]


def synthetic_captions(n: int, seed: int = 0) -> list[str]:
    """``n`` captions of the synthetic training split (10% caption noise)."""
    return list(SyntheticCaptions("train", n, seed=seed, noise=0.1).captions())


def web_like_captions(n: int, seed: int = 0) -> list[str]:
    """``n`` seeded captions of 4..24 words over 20,000 words of CLIP's vocabulary.

    Words are the merges that end a word (``...</w>``), letters only, of 3+ letters, drawn
    with Zipf weights by merge rank; one word in six gets a capital, one in eight is followed
    by an extra from a list of punctuation, entities, accents and emoji.
    """
    backend = clip_backend()
    start = 2 * len(byte_symbols())
    words = []
    for i in range(start, backend.get_vocab_size()):
        token = backend.id_to_token(i)
        if token.endswith("</w>") and token[:-4].isascii() and token[:-4].isalpha():
            if len(token) >= 7:
                words.append(token[:-4])
        if len(words) == 20_000:
            break
    weights = [1.0 / (r + 10) for r in range(len(words))]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chosen = rng.choices(words, weights, k=rng.randint(4, 24))
        parts = []
        for w in chosen:
            parts.append(w.capitalize() if rng.random() < 1 / 6 else w)
            if rng.random() < 1 / 8:
                parts.append(rng.choice(_EXTRAS))
        out.append(" ".join(parts))
    return out


def _timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    rows = fn()
    return rows, time.perf_counter() - w0, time.process_time() - c0


def compare(captions: list[str], ours, peer, chunk: int) -> dict:
    """Tokenize ``captions`` chunk by chunk with both, alternating who goes first."""
    totals = {"ours": [0.0, 0.0], "openclip": [0.0, 0.0]}
    mismatched = 0
    for k, i in enumerate(range(0, len(captions), chunk)):
        part = captions[i : i + chunk]
        order = [("ours", ours), ("openclip", peer)]
        rows = {}
        for name, tok in order if k % 2 == 0 else order[::-1]:
            rows[name], wall, cpu = _timed(lambda tok=tok, part=part: tok(part))
            totals[name][0] += wall
            totals[name][1] += cpu
        mismatched += int((rows["ours"] != rows["openclip"]).any(dim=1).sum())
    n = len(captions)
    return {
        "captions": n,
        "mean_chars": sum(map(len, captions)) / n,
        "rows_differing": mismatched,
        "ours": {"wall_s": totals["ours"][0], "cpu_s": totals["ours"][1],
                 "captions_per_s": n / totals["ours"][0]},
        "openclip": {"wall_s": totals["openclip"][0], "cpu_s": totals["openclip"][1],
                     "captions_per_s": n / totals["openclip"][0]},
        "ratio_time": totals["ours"][0] / totals["openclip"][0],
        "ratio_cpu": totals["ours"][1] / totals["openclip"][1],
    }


def load_times(repeats: int) -> dict:
    """Best of ``repeats`` builds of each tokenizer (the file read each time)."""
    ours, peer = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        clip_tokenizer()
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        open_clip.tokenizer.SimpleTokenizer()
        peer.append(time.perf_counter() - t0)
    return {"ours_s": min(ours), "openclip_s": min(peer), "ratio": min(ours) / min(peer)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--quick", action="store_true", help="2,000 captions, chunks of 500")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.captions, args.chunk = 2_000, 500
    torch.set_num_threads(args.threads)
    load = load_times(2 if args.quick else 5)
    ours, peer = clip_tokenizer(), open_clip.get_tokenizer("ViT-B-32")
    results = []
    for corpus, make in (("synthetic", synthetic_captions), ("web-like", web_like_captions)):
        captions = make(args.captions)
        results.append({"corpus": corpus, **compare(captions, ours, peer, args.chunk)})
    load1 = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = {
        "meta": {
            "open_clip_torch": open_clip.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "chunk": args.chunk,
            "load_average_after": list(load1) if load1 else None,
            "command": " ".join(["benchmarks/bench_tokenizer.py",
                                 *(sys.argv[1:] if argv is None else argv)]),
        },
        "load": load,
        "results": results,
    }
    print("| corpus | captions | mean chars | ours captions/s | OpenCLIP captions/s | "
          "time ours/OpenCLIP | CPU ours/OpenCLIP | rows differing |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['corpus']} | {r['captions']} | {r['mean_chars']:.0f} | "
              f"{r['ours']['captions_per_s']:.0f} | {r['openclip']['captions_per_s']:.0f} | "
              f"{r['ratio_time']:.2f} | {r['ratio_cpu']:.2f} | {r['rows_differing']} |")
    print(f"\nbuild: ours {load['ours_s']:.3f} s, OpenCLIP {load['openclip_s']:.3f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
