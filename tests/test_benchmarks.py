"""Smoke tests of the benchmark scripts: numbers come out, the page renders. Never timing.

Under ``.venv`` OpenCLIP is absent: the throughput benchmark must skip its peer and say so.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_throughput_quick_numbers_come_out(tmp_path, keep_threads):
    bench = _load("bench_throughput")
    out = bench.main(["--quick", "--threads", "1", "--json", str(tmp_path / "t.json")])
    assert json.loads((tmp_path / "t.json").read_text()) == json.loads(json.dumps(out))
    by_model = {r["model"]: r for r in out["results"]}
    # the registry's exact counts (docs/models.md): the models really were built and trained
    assert by_model["tiny"]["params"] == 1_391_361
    assert by_model["tiny-oblique"]["params"] == 1_365_377
    # tiny: 64 / 8 = 8 x 8 patches, context 32; the oblique form adds k - 1 = 7 tokens to each
    assert (by_model["tiny"]["k"], by_model["tiny"]["image_seq"], by_model["tiny"]["text_seq"]) == (
        1, 65, 32)
    assert (by_model["tiny-oblique"]["image_seq"], by_model["tiny-oblique"]["text_seq"]) == (72, 39)
    for r in by_model.values():
        assert r["batch"] == 8 and len(r["steps_s"]) == 1
        assert r["samples_per_s"] > 0 and math.isfinite(r["final_loss"])
    if importlib.util.find_spec("open_clip") is None:
        assert set(by_model) == {"tiny", "tiny-oblique"}
        assert "SKIPPED" in out["meta"]["peer"]
        assert not any("ratio_time" in r for r in out["results"])
    else:
        assert by_model["OpenCLIP"]["params"] == by_model["tiny"]["params"]
        assert by_model["OpenCLIP"]["ratio_time"] == pytest.approx(1.0)


def test_throughput_rejects_bad_batch_spec():
    bench = _load("bench_throughput")
    with pytest.raises(ValueError, match="--batch"):
        bench._parse_batches(["tiny=0"], {})
    with pytest.raises(ValueError, match="unknown model"):
        bench._parse_batches(["nope=8"], {})


def test_scaling_quick_numbers_come_out(tmp_path, keep_threads):
    bench = _load("bench_scaling")
    result = bench.main(["--quick", "--threads", "1", "--json", str(tmp_path / "s.json"),
                         "--plots", str(tmp_path)])
    assert {(r["batch"], r["manifold"]) for r in result["loss"]} == {
        (b, m) for b in (64, 256) for m in ("Sphere(512)", "Oblique(8, 64)")
    }
    for r in result["loss"]:
        assert r["time_s"] > 0 and r["cpu_s"] >= 0
        assert r["peak_extra_mib"] is None or r["peak_extra_mib"] >= 0
    assert {(r["rows"], r["optimizer"]) for r in result["optimizer"]} >= {
        (rows, who) for rows in (256, 1024) for who in ("ours", "torch fused Adam")
    }
    assert all(r["time_s"] > 0 for r in result["optimizer"])
    assert all(f["exponent"] is None or math.isfinite(f["exponent"]) for f in result["fits"])
    assert {(r["batch"], r["impl"]) for r in result["siglip"]} >= {(64, "ours"), (256, "ours")}
    assert all(r["cpu_s"] >= 0 and r["time_s"] > 0 for r in result["siglip"])
    assert {Path(p).name for p in result["plots"]} == {
        "bench_scaling_loss.png", "bench_scaling_optim.png", "bench_scaling_siglip.png"
    }
    assert all(Path(p).stat().st_size > 0 for p in result["plots"])
    assert "| 256 | Oblique(8, 64) |" in bench.markdown(result)


def test_scaling_exponent_is_the_log_log_slope():
    bench = _load("bench_scaling")
    assert bench.exponent([1024, 2048, 4096], [1.0, 4.0, 16.0]) == pytest.approx(2.0)
    assert bench.exponent([10, 100], [3.0, 30.0]) == pytest.approx(1.0)
    assert bench.exponent([10], [3.0]) is None


def _write(path: Path, obj) -> None:
    path.write_text(json.dumps(obj))


def test_report_page_ratios_and_missing_sections(tmp_path):
    report = _load("report")
    report.main(["machine", "--out", str(tmp_path / "machine.json"), "--threads", "1"])
    _write(tmp_path / "losses.json", [
        {"impl": "openclip", "manifold": "sphere", "batch": 1024, "time_s": 2.0, "cpu_s": 4.0,
         "peak_extra_mib": 100.0},
        {"impl": "dense", "manifold": "sphere", "batch": 1024, "time_s": 1.0, "cpu_s": 3.0,
         "peak_extra_mib": 25.0},
    ])
    _write(tmp_path / "throughput.json", {
        "meta": {"peer": "OpenCLIP 3.3.0", "steps": {"tiny": 2}, "warmup": 1,
                 "precision": "fp32", "device": "cpu", "threads": 1},
        "results": [
            {"config": "tiny", "model": "tiny", "batch": 8, "params": 10, "step_s": 0.3,
             "step_cpu_s": 0.3, "samples_per_s": 26.7, "ratio_time": 1.5, "ratio_cpu": 1.25},
            {"config": "tiny", "model": "OpenCLIP", "batch": 8, "params": 10, "step_s": 0.2,
             "step_cpu_s": 0.24, "samples_per_s": 40.0, "ratio_time": 1.0, "ratio_cpu": 1.0},
        ],
    })
    _write(tmp_path / "tokenizer.json", {
        "meta": {"open_clip_torch": "3.3.0", "chunk": 10},
        "load": {"ours_s": 0.5, "openclip_s": 0.25, "ratio": 2.0},
        "results": [{"corpus": "web-like", "captions": 20, "mean_chars": 80.0,
                     "rows_differing": 0, "ours": {"wall_s": 1.0, "cpu_s": 0.3},
                     "openclip": {"wall_s": 4.0, "cpu_s": 1.0}, "ratio_time": 0.25,
                     "ratio_cpu": 0.3}],
    })
    (tmp_path / "durations.tsv").write_text("losses\t7\nthroughput\t5\n")
    page = report.page(tmp_path)
    assert "| CLIP tokenizer, 20 web-like captions / OpenCLIP's | 0.25 | 0.30 | |" in page
    assert "| web-like | 20 | 80 | 1.0 | 4.0 | 0.3 | 1.0 | 0.25 | 0.30 | 0 |" in page
    assert "| InfoNCE dense, Sphere(512) / OpenCLIP ClipLoss, B=1024 | 0.50 | 0.75 | 0.25 |" in page
    assert "| training step, tiny / OpenCLIP tiny, batch 8 | 1.50 | 1.25 | |" in page
    assert "Not run (no `radam.json`)." in page and "Not run (no `scaling.json`)." in page
    assert "12 s (losses 7 s, throughput 5 s)" in page
    assert "bash scripts/bench.sh" in page and "benchmarks/gpu.sh" in page
    report.main(["page", "--results", str(tmp_path), "--out", str(tmp_path / "p.md")])
    assert (tmp_path / "p.md").read_text() == page


def test_report_eval_section_from_eval_json(tmp_path):
    report = _load("report")
    assert "Not run (no `eval.json`)." in report.page(tmp_path)
    speed = {"model": "tiny", "images": 512, "batch": 64, "classes": 42, "templates": 4,
             "zeroshot_ours_s": 1.0, "zeroshot_clip_benchmark_s": 2.0, "zeroshot_ratio": 0.5,
             "zeroshot_ratio_cpu": 0.6, "retrieval_ours_s": 3.0,
             "retrieval_clip_benchmark_s": 3.0, "retrieval_ratio": 1.0,
             "retrieval_ratio_cpu": 0.9}
    _write(tmp_path / "eval.json", {
        "meta": {"threads": 1, "rounds": 5, "clip_benchmark": "1.6.2"},
        "agreement": {"rows": [{"case": "tiny", "metric": "acc1", "ours": 0.5,
                                "clip_benchmark": 0.5, "tolerance": 0.01}],
                      "oblique_top1_disagreement": 0.125, "fit_steps": 20, "n_classify": 140,
                      "classes": 7, "templates": 4, "n_retrieval": 60, "captions_per_image": 2},
        "speed": [speed],
    })
    page = report.page(tmp_path)
    assert "| zero-shot evaluation, tiny / clip_benchmark, 512 images, batch 64 | 0.50 | 0.60 | |" in page
    assert "| tiny | acc1 | 0.5000 | 0.5000 | 0.0100 |" in page
    assert "different top-1 class for 12.5% of the images" in page
    assert "| tiny | retrieval | 512 | - | 64 | 3.000 | 3.000 | 1.00 | 0.90 |" in page
