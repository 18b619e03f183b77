"""The tiled InfoNCE equals the dense one (forward and backward) and keeps O(B) state."""

from __future__ import annotations

import argparse
import importlib.util
import math
from pathlib import Path

import pytest
import torch

from manifold_align import Oblique, Sphere
from manifold_align.losses import InfoNCE, Temperature, info_nce_from_logits, tiled_info_nce
from manifold_align.losses.tiled import TiledInfoNCE


def points(m, b, *, seed=0, dtype=torch.float32, near=None, pull=3.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, *m.point_shape, generator=g, dtype=dtype)
    if near is not None:
        z = z + pull * near  # correlated pairs: a peaked softmax, like a trained model
    return m.projx(z)


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("m", [Sphere(16), Oblique(4, 8)], ids=repr)
@pytest.mark.parametrize(("b", "tile"), [(1, 1), (7, 3), (33, 8), (64, 5), (50, 64), (40, 40)])
def test_tiled_matches_dense_forward_and_backward_float32(m, b, tile):
    # Pairs correlated enough for a peaked softmax, with a loss of order 1: a float32 loss near
    # 0 is lse - pos ~ 30 - 30, where either path only has ~1e-6 absolute accuracy.
    x0 = points(m, b, seed=b)
    y0 = points(m, b, seed=b + 1, near=x0, pull=0.5)
    results = []
    for tile_size in (None, tile):
        t = Temperature.learnable(init=30.0)
        x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
        out = InfoNCE(m, t, tile_size=tile_size)(x, y)
        out.loss.backward()
        results.append((out.loss.detach(), x.grad, y.grad, t.logit_scale.grad, out.diagnostics))
    (ld, gxd, gyd, gsd, dd), (lt, gxt, gyt, gst, dt) = results
    assert abs(float(lt - ld)) <= 1e-5 * abs(float(ld)) + 1e-7
    if b > 1:
        assert float(gsd) != 0.0
        assert rel_err(gxt, gxd) <= 1e-5
        assert rel_err(gyt, gyd) <= 1e-5
    assert abs(float(gst - gsd)) <= 1e-5 * abs(float(gsd)) + 1e-7
    for k in dd:
        torch.testing.assert_close(dt[k], dd[k], equal_nan=True)


def test_tiled_gradcheck_float64_including_scale():
    m = Oblique(2, 3)
    x = points(m, 7, seed=1, dtype=torch.float64).reshape(7, 6).requires_grad_()
    y = points(m, 7, seed=2, dtype=torch.float64).reshape(7, 6).requires_grad_()
    s = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: TiledInfoNCE.apply(a, b, c, 3), (x, y, s))


def test_tiled_equals_logits_reference_float64_at_large_scale():
    """Logits up to 1600 (Oblique(16, d) at scale 100), peaked pairs: exact online rescaling."""
    m = Oblique(16, 4)
    x = points(m, 21, seed=3, dtype=torch.float64)
    y = points(m, 21, seed=4, dtype=torch.float64, near=x)
    scale = torch.tensor(100.0, dtype=torch.float64)
    want = info_nce_from_logits(scale * m.similarity(x, y))
    got = tiled_info_nce(m.flatten(x), m.flatten(y), scale, 4)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_fixed_scale_gets_no_gradient_and_python_float_scale_works():
    x = torch.nn.functional.normalize(torch.randn(9, 5), dim=-1).requires_grad_()
    y = torch.nn.functional.normalize(torch.randn(9, 5), dim=-1)
    loss = tiled_info_nce(x, y, 4.0, 2)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    dense = info_nce_from_logits(4.0 * x.detach() @ y.T)
    torch.testing.assert_close(loss.detach(), dense)


def test_tiled_saves_only_linear_state():
    """Nothing of size B x B is kept for the backward (the dense path keeps its logits)."""
    b, d = 48, 8
    x = torch.randn(b, d, requires_grad=True)
    y = torch.randn(b, d, requires_grad=True)
    s = torch.tensor(2.0, requires_grad=True)
    tiled = tiled_info_nce(x, y, s, 8)
    saved = tiled.grad_fn.saved_tensors
    assert saved and max(t.numel() for t in saved) == b * d
    dense = info_nce_from_logits(s * x @ y.T)
    assert max(t.numel() for t in dense.grad_fn.saved_tensors) == b * b


def test_tiled_input_errors():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"^tile_size: expected a positive int"):
        tiled_info_nce(x, x, 1.0, 0)
    with pytest.raises(ValueError, match=r"^x, y: expected two \(N, D\) tensors of equal shape"):
        tiled_info_nce(x, x[:3], 1.0, 2)
    with pytest.raises(ValueError, match=r"^scale: expected a 0-dim tensor"):
        tiled_info_nce(x, x, torch.ones(1), 2)


def test_benchmark_smoke_numbers_come_out():
    """benchmarks/bench_losses.py in-process at a tiny size: each case yields time and memory."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_losses.py"
    spec = importlib.util.spec_from_file_location("bench_losses", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    results = []
    try:
        for impl, man in (("dense", "sphere"), ("tiled", "sphere"), ("tiled", "oblique")):
            case = {"impl": impl, "manifold": man, "batch": 32, "tile": 8, "reps": 2, "threads": 1}
            r = bench.run_case(case)
            assert r["time_s"] > 0 and r["cpu_s"] >= 0 and r["peak_extra_mib"] >= 0
            assert r["loss"] > 0 and math.isfinite(r["scale_grad"])
            results.append(r)
    finally:
        torch.set_num_threads(threads)
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-5)
    text = bench.report(results, "skipped (test)", 1.0, argparse.Namespace(threads=1))
    assert text.count("| ours") == 3
    assert "| B=32: tiled Oblique(8,64) / Sphere(512) time |" in text


def test_second_order_gradients_are_refused_not_wrong():
    """The hand-written backwards are first-order: asking for more must raise, not mislead."""
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, 3, dtype=torch.float64)
    for loss in (tiled_info_nce(x, y, 2.0, 2), info_nce_from_logits(2.0 * x @ y.T)):
        with pytest.raises(RuntimeError, match="first-order only"):
            torch.autograd.grad(loss, x, create_graph=True)
