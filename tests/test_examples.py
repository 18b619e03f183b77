"""The packing example runs end to end in its fast mode and keeps its iterates on the manifolds."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _example(name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``examples/<name>`` with ``args`` in a fresh interpreter; capture its output."""
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_oblique_packing_fast(tmp_path):
    out = tmp_path / "packing"
    proc = _example("oblique_packing.py", "--fast", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "packing.png").stat().st_size > 1000
    results = json.loads((out / "packing.json").read_text())
    assert set(results) == {"Sphere(64)", "Oblique(8, 8)"}
    for record in results.values():
        assert len(record["loss"]) == 40
        # Riemannian Adam keeps every iterate on its manifold (float32).
        assert record["max_off_manifold"] < 1e-5
        # Pushing points apart lowers the uniformity loss.
        assert record["loss"][-1] < record["loss"][0]


def test_oblique_packing_rejects_indivisible_dim(tmp_path):
    proc = _example("oblique_packing.py", "--dim", "10", "--tokens", "4", "--out", str(tmp_path),
                    timeout=120)
    assert proc.returncode == 2
    assert "--dim 10 must be divisible by --tokens 4" in proc.stderr


def test_finetune_pretrained_fast(tmp_path):
    out = tmp_path / "finetune"
    proc = _example("finetune_pretrained.py", "--fast", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((out / "results.json").read_text())
    assert list(rows) == ["sphere (source)", "oblique, step 0 (converted)", "oblique, step 3 (fine-tuned)"]
    for metrics in rows.values():
        assert 0.0 <= metrics["zeroshot/mean_top1"] <= 1.0
        assert 0.0 <= metrics["retrieval/image_to_text@1"] <= metrics["retrieval/image_to_text@10"]
    assert (out / "finetune" / "checkpoints" / "step_00000000" / "model.safetensors").is_file()
    assert "| oblique, step 0 (converted) |" in (out / "report.md").read_text()
    # a second run refuses the same folder (exit 2, nothing overwritten)
    again = _example("finetune_pretrained.py", "--fast", "--out", str(out), timeout=120)
    assert again.returncode == 2 and "exists; choose another --out" in again.stderr


def test_make_benchmark_datasets_writes_every_layout(tmp_path):
    argv = [str(tmp_path), "--images-per-class", "1", "--retrieval-images", "3"]
    proc = _example("make_benchmark_datasets.py", *argv, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "imagenet1k" / "val" / "n01440764").is_dir()
    assert (tmp_path / "wds_colours" / "test" / "nshards.txt").is_file()
    assert json.loads((tmp_path / "coco" / "dataset_coco.json").read_text())["images"][0]["split"] == "test"
    again = _example("make_benchmark_datasets.py", *argv, timeout=120)
    assert again.returncode == 2 and "already exist" in again.stderr


def test_topology_ablation_fast(tmp_path):
    out = tmp_path / "ablation"
    proc = _example("topology_ablation.py", "--fast", "--seeds", "0", "1", "--out", str(out),
                    timeout=600)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "ablation.json").read_text())
    assert list(results["runs"]) == ["sphere-s1", "oblique-s1", "sphere-sk"]
    k = results["k"]
    for name, scale in (("sphere-s1", 1.0), ("oblique-s1", 1.0), ("sphere-sk", float(k))):
        runs = results["runs"][name]
        assert sorted(runs) == ["0", "1"]
        for row in runs.values():
            assert row["scale"] == scale  # fixed temperatures stay where they were put
            assert 0.0 <= row["zeroshot_top1"] <= 1.0 and 0.0 <= row["i2t_r1"] <= 1.0
        mean, std = results["summary"][name]["gap_logits"]
        values = [row["gap_logits"] for row in runs.values()]
        assert mean == sum(values) / 2 and std >= 0.0
    assert (out / "ablation.png").stat().st_size > 1000
    assert "| `oblique-s1` |" in (out / "ablation.md").read_text()
    assert (out / "runs" / "sphere-sk-seed1" / "metrics.jsonl").is_file()
    again = _example("topology_ablation.py", "--fast", "--out", str(out), timeout=120)
    assert again.returncode == 2 and "is not empty" in again.stderr
