"""The demo's smoke path: both models train, evaluate, and the report holds their numbers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from manifold_align.train.metrics import read_metrics

DEMO = Path(__file__).parents[1] / "examples" / "demo.py"


@pytest.mark.slow
def test_fast_demo_writes_the_report_of_both_runs(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(DEMO), "--out", str(out), "--fast"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (out / "report.md").read_text()
    assert (out / "curves.png").stat().st_size > 1000
    for name in ("sphere", "oblique"):
        assert (out / name / "summary.md").is_file()
        last_eval = [r for r in read_metrics(out / name / "metrics.jsonl") if r["kind"] == "eval"][-1]
        assert 0.0 <= last_eval["zeroshot/mean_top1"] <= 1.0
    # the table's row holds exactly the two runs' measured values, in order, with chance
    evals = [[r for r in read_metrics(out / n / "metrics.jsonl") if r["kind"] == "eval"][-1]
             for n in ("sphere", "oblique")]
    row = next(line for line in report.splitlines() if line.startswith("| zero-shot colour top-1"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == f"{1 / 7:.3f}"
    assert cells[2:] == [f"{e['zeroshot/colour/top1']:.3f}" for e in evals]
    assert "Sphere(dim=" in report and "Oblique(" in report
    assert "retrieval image→text R@10" in report

    # a second demo into the same folder is refused rather than mixed with the first
    again = subprocess.run([sys.executable, str(DEMO), "--out", str(out), "--fast"],
                           capture_output=True, text=True, env=env, timeout=900)
    assert again.returncode == 2 and "not empty" in again.stderr
