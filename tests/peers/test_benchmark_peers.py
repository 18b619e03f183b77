"""The benchmarks' peers are built with our models' shapes."""

import sys
from pathlib import Path

from manifold_align.models import build_model, model_config

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_throughput


def test_throughput_peer_has_our_shape():
    peer = bench_throughput.openclip_model(model_config("tiny"))
    ours = build_model("tiny")
    assert sum(p.numel() for p in peer.parameters()) == sum(p.numel() for p in ours.parameters())
