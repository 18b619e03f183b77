"""SigLIP's strip kernel equals the loss over the logits, in value and in every gradient.

The reference is autograd through ``sigmoid_from_logits`` on the explicit ``B x B`` logits
(``-logsigmoid`` of the signed logits, OpenCLIP's formula); the kernel never builds them and
forms its gradients during the forward sweep.
"""

from __future__ import annotations

import pytest
import torch

from manifold_align import Oblique, Sphere
from manifold_align.losses import SigmoidLoss, Temperature, sigmoid_from_logits, tiled_sigmoid
from manifold_align.losses.tiled import SIGMOID_TILE, TiledSigmoid, sigmoid_sweep


def pairs(m, b, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = m.projx(torch.randn(b, *m.point_shape, generator=g, dtype=torch.float64))
    y = m.projx(x + 0.8 * torch.randn(b, *m.point_shape, generator=g, dtype=torch.float64))
    return x.to(dtype), y.to(dtype)


def reference(m, x0, y0, log_scale, bias):
    """Loss and gradients by autograd through the explicit logits."""
    x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
    ls = torch.tensor(log_scale, dtype=torch.float64, requires_grad=True)
    bb = torch.tensor(bias, dtype=torch.float64, requires_grad=True)
    dtype = x.dtype
    logits = m.similarity(m.unflatten(m.flatten(x) * ls.exp().to(dtype)), y)
    loss = sigmoid_from_logits(logits, bb.to(dtype))
    loss.backward()
    return loss.detach(), x.grad, y.grad, ls.grad, bb.grad


def ours(m, x0, y0, log_scale, bias, tile_size):
    x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
    crit = SigmoidLoss(m, Temperature.learnable(init=1.0, max=1e9), bias, tile_size=tile_size)
    crit = crit.double()  # float64 parameters: the comparison is the kernel's, not theirs
    with torch.no_grad():
        crit.temperature.logit_scale.fill_(log_scale)
    out = crit(x, y)
    out.loss.backward()
    return out.loss.detach(), x.grad, y.grad, crit.temperature.logit_scale.grad, crit.logit_bias.grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("m", [Sphere(6), Oblique(3, 4)], ids=repr)
@pytest.mark.parametrize(("b", "tile"), [(1, None), (7, 3), (9, 1), (16, 64), (33, 8), (20, 20)])
def test_kernel_equals_autograd_through_the_logits(dtype, m, b, tile):
    x, y = pairs(m, b, dtype, seed=b)
    want = reference(m, x, y, 1.5, -2.0)
    got = ours(m, x, y, 1.5, -2.0, tile)
    rtol, atol = (1e-12, 1e-14) if dtype == torch.float64 else (2e-6, 1e-7)
    for name, g, w in zip(("loss", "x", "y", "log scale", "bias"), got, want, strict=True):
        assert g.dtype == w.dtype, name
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol, msg=name)
    assert float(want[0]) > 1e-3 and float(want[4].abs()) > 1e-3  # nothing vanishes


def test_every_tile_size_gives_the_same_result():
    m = Sphere(8)
    x, y = pairs(m, 50, torch.float64, seed=3)
    results = [ours(m, x, y, 2.0, -1.0, tile) for tile in (None, 1, 7, 49, 50, 51, 1000)]
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


def test_gradcheck_including_scale_bias_and_an_offset_block():
    """Square with positives on the diagonal, a row block of a wider matrix, and no positives."""
    g = torch.Generator().manual_seed(0)

    def leaf(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()

    scale = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-0.6, dtype=torch.float64, requires_grad=True)
    for rows, cols, offset in ((5, 5, 0), (3, 8, 4), (4, 6, None)):
        x, y = leaf(rows, 3), leaf(cols, 3)
        assert torch.autograd.gradcheck(
            lambda a, c, s, t, o=offset: TiledSigmoid.apply(a, c, s, t, 2, o), (x, y, scale, bias)
        )


def test_offset_block_equals_the_rows_of_the_full_loss():
    """Positives at columns offset + i: the block's sum is those rows of the full matrix's."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(9, 4, generator=g, dtype=torch.float64), torch.randn(9, 4, generator=g,
                                                                             dtype=torch.float64)
    s, b = torch.tensor(2.0, dtype=torch.float64), torch.tensor(-1.0, dtype=torch.float64)
    t = s * x @ y.T + b
    z = 2 * torch.eye(9, dtype=torch.float64) - 1
    per_row = torch.nn.functional.softplus(-z * t).sum(dim=1)
    got, *_ = sigmoid_sweep(x[3:7], y, s, b, 2, 3)
    torch.testing.assert_close(got, per_row[3:7].sum())
    negatives, *_ = sigmoid_sweep(x[3:7], y, s, b, 3, None)
    torch.testing.assert_close(negatives, torch.nn.functional.softplus(t[3:7]).sum())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_exact_beyond_softplus_threshold(dtype):
    """Positives at logit 25 cost log(1 + exp(-25)) = 1.39e-11 and pull with sigmoid(-25)."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=dtype, requires_grad=True)
    y = x.detach().clone()
    crit = SigmoidLoss(Sphere(2), scale=55.0, bias_init=-30.0)  # positives 25, negatives -30
    loss = crit(x, y).loss
    loss.backward()

    def sp(t):  # log(1 + e^t) in float64 for t << 0
        return float(torch.log1p(torch.exp(torch.tensor(t, dtype=torch.float64))))

    def sig(t):
        return float(torch.sigmoid(torch.tensor(t, dtype=torch.float64)))

    assert float(loss.detach()) == pytest.approx((2 * sp(-25.0) + 2 * sp(-30.0)) / 2, rel=1e-6)
    want = torch.tensor([-27.5 * sig(-25.0), 27.5 * sig(-30.0)], dtype=dtype)
    torch.testing.assert_close(x.grad[0], want, rtol=1e-6, atol=0)
    assert float(crit.logit_bias.grad) == pytest.approx(-sig(-25.0) + sig(-30.0), rel=1e-5)


def largest_saved(fn):
    """The largest tensor autograd saves while ``fn()`` runs (numel)."""
    sizes = [0]

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return max(sizes)


def test_saved_state_is_linear_in_the_batch():
    """Nothing of size B x B is kept for the backward (autograd through the logits keeps B x B)."""
    b, d = 48, 8
    x = Sphere(d).projx(torch.randn(b, d)).requires_grad_()
    y = Sphere(d).projx(torch.randn(b, d)).requires_grad_()
    s = torch.tensor(2.0, requires_grad=True)
    bias = torch.tensor(-1.0, requires_grad=True)
    assert largest_saved(lambda: tiled_sigmoid(x, y, s, bias, 8)) == b * d
    assert largest_saved(lambda: SigmoidLoss(Sphere(d), scale=2.0)(x, y)) == b * d
    assert largest_saved(lambda: sigmoid_from_logits(s * x @ y.T, bias)) == b * b


def test_only_the_gradients_asked_for():
    """A fixed scale, a frozen text side, a Python-float bias: those get no gradient work."""
    m = Sphere(5)
    x0, y0 = pairs(m, 10, torch.float64, seed=2)
    x = x0.clone().requires_grad_()
    loss = tiled_sigmoid(x, y0, 3.0, -1.0, 4)
    loss.backward()
    want = reference(m, x0, y0, float(torch.tensor(3.0).log()), -1.0)
    torch.testing.assert_close(loss.detach(), want[0])
    torch.testing.assert_close(x.grad, want[1])
    with torch.no_grad():
        assert tiled_sigmoid(x, y0, 3.0, -1.0, 4).grad_fn is None


def test_second_derivatives_are_refused_not_wrong():
    x = Sphere(3).projx(torch.randn(5, 3, dtype=torch.float64)).requires_grad_()
    y = Sphere(3).projx(torch.randn(5, 3, dtype=torch.float64))
    crit = SigmoidLoss(Sphere(3), scale=2.0)
    for loss in (tiled_sigmoid(x, y, 2.0, -1.0, 2), crit(x, y).loss + (x**2).sum()):
        with pytest.raises(RuntimeError, match=r"^SigLIP: .*first-order only"):
            torch.autograd.grad(loss, x, create_graph=True)


def test_default_tile_and_bad_tile_sizes():
    m = Sphere(3)
    assert SigmoidLoss(m).tile == SIGMOID_TILE and SigmoidLoss(m, tile_size=7).tile == 7
    assert "tile_size=7" in repr(SigmoidLoss(m, tile_size=7))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"^tile_size: expected None or a positive int"):
            SigmoidLoss(m, tile_size=bad)
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"^tile_size: expected a positive int"):
        tiled_sigmoid(x, x, 1.0, 0.0, 0)
    with pytest.raises(ValueError, match=r"^x, y: expected two \(N, D\) tensors of equal shape"):
        tiled_sigmoid(x, x[:3], 1.0, 0.0)
    with pytest.raises(ValueError, match=r"^bias: expected a 0-dim tensor"):
        tiled_sigmoid(x, x, 1.0, torch.zeros(2))


def test_benchmark_sigmoid_cases_come_out():
    """benchmarks/bench_losses.py's SigLIP cases in-process at a tiny size, with their ratios."""
    import argparse
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_losses.py"
    spec = importlib.util.spec_from_file_location("bench_losses", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        results = [
            bench.run_case({"impl": impl, "manifold": "sphere", "batch": 32, "reps": 2,
                            "threads": 1, "tile": tile})
            for impl, tile in (("sigmoid", None), ("sigmoid", 5), ("gemm3", None))
        ]
    finally:
        torch.set_num_threads(threads)
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-6)
    assert all(r["time_s"] > 0 and r["peak_extra_mib"] >= 0 for r in results)
    args = argparse.Namespace(threads=1, quick=False, batches=[1024], big=False, tile=1024,
                              sigmoid_big=65536, only="siglip")
    planned = bench.plan(args, peer=True)
    assert {(c["impl"], c["batch"]) for c in planned} == {
        ("openclip_siglip", 1024), ("gemm3", 1024), ("sigmoid", 1024), ("sigmoid", 65536)
    }
