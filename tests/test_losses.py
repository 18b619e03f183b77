"""InfoNCE and SigmoidLoss against straightforward references; diagnostics; bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from manifold_align import Euclidean, Oblique, Product, Sphere
from manifold_align.losses import (
    InfoNCE,
    LossOutput,
    SigmoidLoss,
    Temperature,
    info_nce_from_logits,
    sigmoid_from_logits,
)

MANIFOLDS = [
    Sphere(6),
    Oblique(3, 4),
    Product(Sphere(3), Oblique(2, 3)),
    Euclidean(5),
]


def points(m, b, *, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return m.projx(torch.randn(b, *m.point_shape, generator=g, dtype=dtype))


def ref_info_nce(x, y, scale):
    """OpenCLIP's formulation: two products, two cross-entropies."""
    xf, yf = x.reshape(len(x), -1), y.reshape(len(y), -1)
    labels = torch.arange(len(x))
    return 0.5 * (
        F.cross_entropy(scale * xf @ yf.T, labels) + F.cross_entropy(scale * yf @ xf.T, labels)
    )


def ref_sigmoid(logits, bias):
    b = logits.shape[-1]
    z = 2 * torch.eye(b, dtype=logits.dtype) - 1
    return -F.logsigmoid(z * (logits + bias)).sum() / b


@pytest.mark.parametrize("m", MANIFOLDS, ids=repr)
@pytest.mark.parametrize("b", [1, 2, 9])
@pytest.mark.parametrize("temp", ["learnable", "fixed", "none"])
def test_info_nce_matches_cross_entropy_reference(m, b, temp):
    t = {
        "learnable": Temperature.learnable(init=7.0),
        "fixed": Temperature.fixed(3.0),
        "none": Temperature.none(),
    }[temp].double()
    x = points(m, b, seed=1).requires_grad_()
    y = points(m, b, seed=2).requires_grad_()
    out = InfoNCE(m, t)(x, y)
    assert isinstance(out, LossOutput) and out.loss.dim() == 0
    ref = ref_info_nce(x, y, t.scale_as(torch.float64))
    torch.testing.assert_close(out.loss, ref, rtol=1e-12, atol=1e-12)
    params = [x, y, *t.parameters()]
    got = torch.autograd.grad(out.loss, params)
    want = torch.autograd.grad(ref, params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_info_nce_uses_the_manifold_similarity_not_cosine():
    """Oblique(4, 3) logits range [-4, 4]: perfectly aligned pairs give logits 4 on the diagonal."""
    m = Oblique(4, 3)
    x = points(m, 5)
    loss = InfoNCE(m)(x, x).loss
    sim = torch.einsum("ikd,jkd->ij", x, x)
    assert sim.diagonal().allclose(torch.full((5,), 4.0, dtype=torch.float64))
    want = 0.5 * (F.cross_entropy(sim, torch.arange(5)) + F.cross_entropy(sim.T, torch.arange(5)))
    torch.testing.assert_close(loss, want)


def test_info_nce_from_logits_batched_equals_loop_forward_and_backward():
    g = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    logits.requires_grad_(True)
    out = info_nce_from_logits(logits)
    assert out.shape == (2, 3)
    labels = torch.arange(5)
    weights = torch.randn(2, 3, generator=g, dtype=torch.float64)  # a non-uniform upstream grad
    (got,) = torch.autograd.grad((out * weights).sum(), logits)
    ref = torch.zeros_like(out)
    for i in range(2):
        for j in range(3):
            lij = logits[i, j]
            ref[i, j] = 0.5 * (F.cross_entropy(lij, labels) + F.cross_entropy(lij.T, labels))
    torch.testing.assert_close(out, ref)
    (want,) = torch.autograd.grad((ref * weights).sum(), logits)
    torch.testing.assert_close(got, want)
    small = logits[0, :1, :3, :3].detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(info_nce_from_logits, (small,))


def test_info_nce_from_logits_upcasts_half_and_float32_under_autocast():
    logits = torch.randn(4, 6, 6).to(torch.bfloat16)
    out = info_nce_from_logits(logits)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, info_nce_from_logits(logits.float()))


@pytest.mark.parametrize("b", [1, 4])
def test_sigmoid_from_logits_matches_reference_and_batches(b):
    g = torch.Generator().manual_seed(3)
    logits = 5 * torch.randn(3, b, b, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-2.5, dtype=torch.float64, requires_grad=True)
    out = sigmoid_from_logits(logits, bias)
    assert out.shape == (3,)
    for i in range(3):
        torch.testing.assert_close(out[i], ref_sigmoid(logits[i], bias))
    assert torch.autograd.gradcheck(sigmoid_from_logits, (logits, bias))


@pytest.mark.parametrize("m", MANIFOLDS[:2], ids=repr)
def test_sigmoid_loss_matches_reference_and_trains_bias_and_scale(m):
    t = Temperature.learnable(init=10.0, max=100.0).double()
    crit = SigmoidLoss(m, t, bias_init=-3.0).double()
    x = points(m, 7, seed=4).requires_grad_()
    y = points(m, 7, seed=5).requires_grad_()
    out = crit(x, y)
    logits = t.scale_as(torch.float64) * (x.reshape(7, -1) @ y.reshape(7, -1).T)
    ref = ref_sigmoid(logits, crit.logit_bias)
    torch.testing.assert_close(out.loss, ref)
    names = dict(crit.named_parameters())
    assert set(names) == {"logit_bias", "temperature.logit_scale"}
    params = [x, y, crit.logit_bias, t.logit_scale]
    for g, w in zip(torch.autograd.grad(out.loss, params), torch.autograd.grad(ref, params)):
        torch.testing.assert_close(g, w)
    assert out.diagnostics["bias"] == pytest.approx(-3.0)


@pytest.mark.parametrize("criterion", [InfoNCE, SigmoidLoss])
@pytest.mark.parametrize("m", MANIFOLDS[:2], ids=repr)
def test_diagnostics_match_explicit_similarity_matrix(criterion, m):
    x = points(m, 6, seed=6)
    y = points(m, 6, seed=7)
    out = criterion(m, Temperature.fixed(4.0))(x, y)
    s = m.similarity(x, y)
    pos = s.diagonal().mean()
    neg = (s.sum() - s.diagonal().sum()) / 30
    d = out.diagnostics
    for k in ("scale", "pos_sim", "neg_sim", "gap_logits"):
        assert d[k].dtype == torch.float32 and d[k].dim() == 0 and not d[k].requires_grad
    assert float(d["scale"]) == pytest.approx(4.0)
    assert float(d["pos_sim"]) == pytest.approx(float(pos), abs=1e-6)
    assert float(d["neg_sim"]) == pytest.approx(float(neg), abs=1e-6)
    assert float(d["gap_logits"]) == pytest.approx(4 * float(pos - neg), abs=1e-5)


def test_diagnostics_detached_with_learnable_scale_and_nan_negatives_for_one_pair():
    m = Sphere(4)
    t = Temperature.learnable(init=2.0)
    out = InfoNCE(m, t)(points(m, 1).float(), points(m, 1, seed=1).float())
    assert out.loss.item() == pytest.approx(0.0, abs=1e-7)  # one pair: no negatives
    assert not out.diagnostics["scale"].requires_grad
    assert math.isnan(float(out.diagnostics["neg_sim"]))


def test_float32_under_autocast_matches_plain_float32():
    m = Oblique(2, 8)
    x, y = points(m, 5, dtype=torch.float32), points(m, 5, seed=1, dtype=torch.float32)
    t = Temperature.fixed(20.0)
    plain = InfoNCE(m, t)(x, y).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dense = InfoNCE(m, t)(x, y).loss
        tiled = InfoNCE(m, t, tile_size=2)(x, y).loss
        sig = SigmoidLoss(m, t)(x, y).loss
    assert dense.dtype == tiled.dtype == sig.dtype == torch.float32
    torch.testing.assert_close(dense, plain, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(tiled, plain, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sig, SigmoidLoss(m, t)(x, y).loss, rtol=1e-6, atol=1e-6)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("criterion", [InfoNCE, SigmoidLoss])
def test_batches_of_different_length_raise(criterion):
    m = Sphere(4)
    with pytest.raises(ValueError, match=r"image, text: expected batches of equal length"):
        criterion(m)(points(m, 3), points(m, 4))


@pytest.mark.parametrize("criterion", [InfoNCE, SigmoidLoss])
def test_wrong_point_shape_names_argument(criterion):
    m = Oblique(2, 4)
    good = points(m, 3)
    with pytest.raises(ValueError, match=r"^image: .*\(\.\.\., 2, 4\)"):
        criterion(m)(torch.randn(3, 8, dtype=torch.float64), good)
    with pytest.raises(ValueError, match=r"^text: .*\(\.\.\., 2, 4\)"):
        criterion(m)(good, torch.randn(3, 4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^text: expected shape \(B, 2, 4\)"):
        criterion(m)(good, good.unsqueeze(0))
    with pytest.raises(ValueError, match=r"^image: expected shape \(B, 2, 4\) with B >= 1"):
        criterion(m)(good[:0], good[:0])


def test_non_float_and_non_tensor_raise_type_error():
    m = Sphere(3)
    with pytest.raises(TypeError, match=r"^image: expected a floating-point tensor"):
        InfoNCE(m)(torch.ones(2, 3, dtype=torch.int64), points(m, 2))
    with pytest.raises(TypeError, match=r"^text: expected a torch.Tensor"):
        InfoNCE(m)(points(m, 2), [[1.0, 0, 0]] * 2)


@pytest.mark.parametrize("criterion", [InfoNCE, SigmoidLoss])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_check_finite_names_the_argument(criterion, bad):
    m = Sphere(4)
    x, y = points(m, 5), points(m, 5, seed=1)
    x_bad = x.clone()
    x_bad[3, 1] = bad
    with pytest.raises(ValueError, match=r"^image: features contain NaN or Inf in 1 of 5 rows"):
        criterion(m, check_finite=True)(x_bad, y)
    with pytest.raises(ValueError, match=r"^text: .*row 3"):
        criterion(m, check_finite=True)(y, x_bad)
    # without the flag, no check: the NaN propagates (documented)
    assert not torch.isfinite(criterion(m)(x_bad, y).loss)


def test_bad_constructor_arguments():
    m = Sphere(3)
    with pytest.raises(TypeError, match=r"^manifold: expected a ContrastiveManifold"):
        InfoNCE("sphere")
    with pytest.raises(TypeError, match=r"^temperature: expected a Temperature"):
        InfoNCE(m, temperature="0.07")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"^tile_size: expected None or a positive int"):
            InfoNCE(m, tile_size=bad)
    with pytest.raises(ValueError, match=r"^bias_init: expected a finite number"):
        SigmoidLoss(m, bias_init=float("nan"))
    assert InfoNCE(m, temperature=5.0).temperature.mode == "fixed"


def test_logits_shape_errors():
    with pytest.raises(ValueError, match=r"^logits: expected shape \(\*batch, B, B\)"):
        info_nce_from_logits(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"^logits: expected shape"):
        sigmoid_from_logits(torch.zeros(5), 0.0)
    with pytest.raises(TypeError, match=r"^logits: expected a floating-point tensor"):
        info_nce_from_logits(torch.zeros(3, 3, dtype=torch.int32))


@pytest.mark.parametrize("rows", [1, 3, 7])
def test_dense_backward_row_chunks_match_reference(monkeypatch, rows):
    """The column term of the dense backward is added in row chunks; boundaries must not matter."""
    import manifold_align.losses.infonce as infonce

    monkeypatch.setattr(infonce, "_ROWS", rows)
    g = torch.Generator().manual_seed(9)
    logits = 3 * torch.randn(2, 7, 7, generator=g, dtype=torch.float64, requires_grad=True)
    (got,) = torch.autograd.grad(info_nce_from_logits(logits).sum(), logits)
    labels = torch.arange(7)
    ref = sum(0.5 * (F.cross_entropy(lg, labels) + F.cross_entropy(lg.T, labels)) for lg in logits)
    (want,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("criterion", [InfoNCE, SigmoidLoss])
def test_check_finite_names_a_diverged_scale_or_bias(criterion):
    m = Sphere(4)
    x, y = points(m, 3), points(m, 3, seed=1)
    t = Temperature.learnable(init=2.0)
    crit = criterion(m, t, check_finite=True)
    with torch.no_grad():
        t.logit_scale.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"^temperature: expected a finite value, got nan"):
        crit(x, y)
    if criterion is SigmoidLoss:
        with torch.no_grad():
            t.logit_scale.fill_(0.0)
            crit.logit_bias.fill_(float("-inf"))
        with pytest.raises(ValueError, match=r"^logit_bias: expected a finite value, got -inf"):
            crit(x, y)


def test_pair_diagnostics_exact_under_bf16_autocast():
    """Under CPU bf16 autocast vecdot would run in bf16 (pos_sim off by ~1e-3); it must not."""
    from manifold_align.losses.output import pair_diagnostics

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(64, 512, generator=g), dim=-1)
    y = torch.nn.functional.normalize(x + 0.3 * torch.randn(64, 512, generator=g), dim=-1)
    ref = pair_diagnostics(x, y, torch.tensor(10.0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = pair_diagnostics(x, y, torch.tensor(10.0))
    for key in ("pos_sim", "neg_sim", "gap_logits"):
        torch.testing.assert_close(got[key], ref[key], rtol=1e-6, atol=1e-6)
