"""The loss API as an OpenCLIP user types it: no silent footguns (issue 12)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from manifold_align.losses import InfoNCE, SigmoidLoss, Temperature, sigmoid_from_logits
from manifold_align.manifolds import Oblique, Sphere


def _pair(manifold, b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (b, *manifold.point_shape)
    return manifold.projx(torch.randn(shape, generator=g)), manifold.projx(
        torch.randn(shape, generator=g))


@pytest.mark.parametrize("loss_cls", [InfoNCE, SigmoidLoss])
def test_a_bare_number_is_refused_with_an_explanation(loss_cls):
    # A CLIP user means temperature 0.07 (scale 14.3); the old API took it as a scale of 0.07.
    with pytest.raises(TypeError, match=r"ambiguous.*scale=") as err:
        loss_cls(Sphere(8), 0.07)
    assert "Temperature" in str(err.value)


@pytest.mark.parametrize("loss_cls", [InfoNCE, SigmoidLoss])
def test_scale_and_temperature_keywords_say_which(loss_cls):
    m = Sphere(8)
    x, y = _pair(m)
    by_scale = loss_cls(m, scale=1 / 0.07)
    by_tau = loss_cls(m, temperature=0.07)
    by_object = loss_cls(m, Temperature.fixed(1 / 0.07))
    assert float(by_scale.temperature.scale) == pytest.approx(1 / 0.07)
    assert float(by_tau.temperature.scale) == pytest.approx(1 / 0.07)
    assert torch.equal(by_scale(x, y).loss, by_object(x, y).loss)
    assert torch.equal(by_tau(x, y).loss, by_object(x, y).loss)
    with pytest.raises(TypeError, match="only one of"):
        loss_cls(m, Temperature.none(), scale=2.0)
    with pytest.raises(ValueError, match="temperature"):
        loss_cls(m, temperature=-1.0)


def test_loss_output_backward_is_the_loss_backward():
    m = Oblique(2, 4)
    x, y = _pair(m)
    x.requires_grad_(True)
    loss_fn = InfoNCE(m, Temperature.learnable(manifold=m))
    loss_fn(x, y).backward()  # what a ClipLoss user types
    g1 = x.grad.clone()
    x.grad = None
    loss, diagnostics = loss_fn(x, y)  # the diagnostics are still there
    loss.backward()
    assert torch.equal(g1, x.grad)
    assert set(diagnostics) >= {"scale", "pos_sim", "neg_sim", "gap_logits"}
    assert loss_fn(x, y).item() == pytest.approx(loss.item())


@pytest.mark.parametrize(("manifold", "half_width"), [
    (Sphere(16), 1), (Oblique(4, 8), 4), (Oblique(16, 32), 16)])
def test_learnable_defaults_follow_the_similarity_range(manifold, half_width):
    t = Temperature.learnable(manifold=manifold)
    # CLIP's initial logit range +-1/0.07 and cap +-100, whatever the similarity's range.
    assert t.scale.item() * half_width == pytest.approx(1 / 0.07, rel=1e-6)
    assert t.max * half_width == pytest.approx(100.0)


def test_sphere_defaults_on_a_wider_manifold_are_refused():
    with pytest.raises(ValueError, match=r"Temperature.learnable\(manifold="):
        InfoNCE(Oblique(16, 32), Temperature.learnable())
    InfoNCE(Sphere(8), Temperature.learnable())  # CLIP's defaults are right on the sphere
    InfoNCE(Oblique(16, 32), Temperature.learnable(init=1.0, max=100 / 16))  # explicit: taken


@pytest.mark.parametrize("value", [100.0, 1 / 0.07, 14.285714285714286, 3.3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_fixed_scale_is_exactly_the_number_given(value, dtype):
    t = Temperature.fixed(value)
    assert t.scale_as(dtype).item() == torch.tensor(value, dtype=dtype).item()
    assert float(t.scale) == torch.tensor(value, dtype=torch.float32).item()


def test_fixed_scale_reaches_the_loss_exactly_in_float64():
    m = Sphere(4)
    x, y = (t.double() for t in _pair(m))
    got = InfoNCE(m, scale=100.0)(x, y).loss
    logits = 100.0 * (x @ y.T)
    want = 0.5 * (torch.nn.functional.cross_entropy(logits, torch.arange(6))
                  + torch.nn.functional.cross_entropy(logits.T, torch.arange(6)))
    assert got.item() == pytest.approx(want.item(), rel=1e-15, abs=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sigmoid_is_exact_above_softplus_threshold(dtype):
    # positives at logit 25 cost log(1 + exp(-25)) = 1.39e-11 each, not 0 (softplus's threshold)
    logits = torch.full((2, 2), -40.0, dtype=dtype)
    logits.fill_diagonal_(25.0)
    logits.requires_grad_(True)
    loss = sigmoid_from_logits(logits, 0.0)
    exact = (2 * math.log1p(math.exp(-25.0)) + 2 * math.log1p(math.exp(-40.0))) / 2
    assert loss.item() == pytest.approx(exact, rel=1e-6 if dtype == torch.float32 else 1e-12)
    loss.backward()
    # d/dt of log(1 + exp(-t)) at 25 is -sigmoid(-25) = -1.39e-11, divided by B = 2
    assert logits.grad[0, 0].item() == pytest.approx(-math.exp(-25.0) / (1 + math.exp(-25.0)) / 2,
                                                     rel=1e-6)


def test_common_script_imports_from_the_top_level_without_train_extras():
    code = (
        "import sys\n"
        "from manifold_align import Oblique, Sphere, Product, InfoNCE, SigmoidLoss, Temperature, "
        "RiemannianAdam\n"
        "bad = [m for m in ('tokenizers', 'safetensors', 'webdataset', 'PIL') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_the_library_prints_no_geoopt_jit_warning():
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", "import manifold_align"],
        capture_output=True, text=True, check=True)
    assert "jit" not in done.stderr, done.stderr


@pytest.mark.parametrize("tile_size", [None, 3])
@pytest.mark.parametrize("with_other_term", [False, True])
def test_second_derivatives_through_infonce_raise(tile_size, with_other_term):
    # a gradient penalty used to contribute a silent zero (alone it failed with an unrelated
    # "does not require grad" error, summed with another term it vanished)
    m = Oblique(2, 4)
    x, y = _pair(m)
    x.requires_grad_(True)
    loss = InfoNCE(m, scale=3.0, tile_size=tile_size)(x, y).loss
    with pytest.raises(RuntimeError, match="first-order only"):
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        penalty = g.pow(2).sum()
        (penalty + x.sum() if with_other_term else penalty).backward()


def test_first_order_gradients_are_unchanged_by_the_guard():
    m = Oblique(2, 4)
    x, y = _pair(m)
    x64 = x.double().requires_grad_(True)
    loss = InfoNCE(m, scale=3.0)(x64, y.double()).loss
    (g,) = torch.autograd.grad(loss, x64)
    logits = 3.0 * (x64.reshape(6, -1) @ y.double().reshape(6, -1).T)
    ref = 0.5 * (torch.nn.functional.cross_entropy(logits, torch.arange(6))
                 + torch.nn.functional.cross_entropy(logits.T, torch.arange(6)))
    (g_ref,) = torch.autograd.grad(ref, x64)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-14)
