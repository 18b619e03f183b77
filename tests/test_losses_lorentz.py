"""The contrastive losses on a manifold whose similarity is not bilinear (Lorentz): the
scale multiplies the similarity (never the features), diagnostics come from the similarity,
the tiled and ring forms refuse it, and the distributed InfoNCE still equals one process."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from gloo_ranks import join_gloo, run_ranks

from manifold_align import InfoNCE, Lorentz, Product, SigmoidLoss, Sphere, Temperature
from manifold_align.losses import to_distributed
from manifold_align.losses.distributed import distributed_sigmoid

B, WORLD = 8, 2


def batch(m, n=B, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (n, *m.point_shape)
    x = m.expmap0(torch.randn(shape, dtype=torch.float64, generator=g) * 0.5) if isinstance(
        m, Lorentz
    ) else m.random(*shape, dtype=torch.float64, generator=g)
    y = m.random(*shape, dtype=torch.float64, generator=g)
    return x.requires_grad_(True), y.requires_grad_(True)


@pytest.mark.parametrize("m", [Lorentz(4, curvature=0.5), Product(Sphere(3), Lorentz(3))], ids=repr)
def test_infonce_and_sigmoid_scale_the_similarity_not_the_features(m):
    x, y = batch(m)
    scale = 7.0
    out = InfoNCE(m, scale=scale)(x, y)
    logits = scale * m.similarity(x, y)
    labels = torch.arange(B)
    want = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    torch.testing.assert_close(out.loss, want)
    # scaling the features first (the bilinear shortcut) would give another loss entirely
    wrong = m.similarity(x * scale, y)
    assert not torch.allclose(wrong, logits)
    gx, gy = torch.autograd.grad(out.loss, (x, y))
    assert torch.isfinite(gx).all() and torch.isfinite(gy).all()
    d = out.diagnostics
    s = m.similarity(x, y).detach()
    torch.testing.assert_close(d["pos_sim"].double(), s.diagonal().mean(), atol=1e-6, rtol=0)
    off = (s.sum() - s.diagonal().sum()) / (B * B - B)
    torch.testing.assert_close(d["neg_sim"].double(), off, atol=1e-6, rtol=0)
    sig = SigmoidLoss(m, scale=scale, bias_init=-1.0)(x, y)
    z = 2 * torch.eye(B, dtype=x.dtype) - 1
    want = F.softplus(-z * (logits - 1.0)).sum() / B
    torch.testing.assert_close(sig.loss, want)


class _CountingSimilarity:
    """Wraps ``m.similarity`` and counts the calls that form a matrix of more than one row."""

    def __init__(self, m, monkeypatch):
        self.calls, self._inner = 0, m.similarity
        monkeypatch.setattr(m, "similarity", self)

    def __call__(self, x, y):
        if x.shape[0] > 1 and y.shape[0] > 1:
            self.calls += 1
        return self._inner(x, y)


@pytest.mark.parametrize("loss_type", [InfoNCE, SigmoidLoss])
@pytest.mark.parametrize("m", [Lorentz(4), Product(Sphere(3), Lorentz(3))], ids=repr)
def test_the_loss_forms_the_similarity_matrix_once_for_loss_and_diagnostics(m, loss_type, monkeypatch):
    x, y = batch(m)
    want = loss_type(m, scale=7.0)(x, y)
    counter = _CountingSimilarity(m, monkeypatch)
    got = loss_type(m, scale=7.0)(x, y)
    assert counter.calls == 1
    torch.testing.assert_close(got.loss, want.loss)
    for key, value in want.diagnostics.items():
        torch.testing.assert_close(got.diagnostics[key], value)


def test_infonce_on_lorentz_learns_the_curvature_and_scale_with_finite_gradients():
    m = Lorentz(4, learnable=True)
    loss = InfoNCE(m, Temperature.learnable(manifold=m))
    u = torch.randn(B, 5, requires_grad=True)
    x = m.expmap0(u)
    out = loss(x, m.expmap0(u.detach() + 0.1 * torch.randn(B, 5)))
    out.backward()
    assert torch.isfinite(u.grad).all()
    assert torch.isfinite(m.log_curvature.grad) and float(m.log_curvature.grad) != 0
    assert [n for n, _ in loss.named_parameters()] == ["manifold.log_curvature", "temperature.logit_scale"]


def test_tiled_and_ring_forms_refuse_a_non_bilinear_manifold():
    m = Lorentz(4)
    with pytest.raises(ValueError, match="tile_size"):
        InfoNCE(m, scale=5.0, tile_size=4)
    x, y = batch(m)
    with pytest.raises(ValueError, match="bilinear"):
        distributed_sigmoid(m, x.detach().flatten(1), y.detach().flatten(1),
                            torch.tensor(5.0, dtype=torch.float64), torch.tensor(0.0))


def _worker(rank, world, init_file, out_dir):
    join_gloo(rank, world, init_file)
    m = Lorentz(4, curvature=0.5)
    x, y = batch(m, B * world)
    rows = slice(rank * B, (rank + 1) * B)
    xl, yl = x.detach()[rows].clone().requires_grad_(True), y.detach()[rows].clone().requires_grad_(True)
    out = to_distributed(InfoNCE(m, scale=7.0))(xl, yl)
    out.loss.backward()
    torch.save({"loss": out.loss.detach(), "gx": xl.grad, "gy": yl.grad,
                "diagnostics": out.diagnostics}, f"{out_dir}/rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def test_distributed_infonce_on_lorentz_equals_one_process(tmp_path):
    run_ranks(_worker, WORLD, tmp_path, timeout_s=300)
    res = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    m = Lorentz(4, curvature=0.5)
    x, y = batch(m, B * WORLD)
    full = InfoNCE(m, scale=7.0)(x, y)
    gx, gy = torch.autograd.grad(full.loss, (x, y))
    torch.testing.assert_close(sum(r["loss"] for r in res) / WORLD, full.loss.detach())
    # each rank's share is the mean over its rows; the full-batch gradient is their mean
    torch.testing.assert_close(torch.cat([r["gx"] for r in res]) / WORLD, gx)
    torch.testing.assert_close(torch.cat([r["gy"] for r in res]) / WORLD, gy)
    # the global diagnostics, from each rank's own rows of S (two numbers all-reduced)
    for r in res:
        for key in ("scale", "pos_sim", "neg_sim", "gap_logits"):
            torch.testing.assert_close(r["diagnostics"][key], full.diagnostics[key])
