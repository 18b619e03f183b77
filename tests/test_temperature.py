"""Temperature: modes, CLIP's projection after an optimizer step, state dicts, errors."""

from __future__ import annotations

import math

import pytest
import torch

from manifold_align import Sphere
from manifold_align.losses import InfoNCE, Temperature


def test_learnable_is_log_parameterized_float32_scalar():
    t = Temperature.learnable(init=1 / 0.07, max=100.0)
    assert t.mode == "learnable"
    (name, p), *rest = list(t.named_parameters())
    assert not rest and name == "logit_scale" and p.dim() == 0 and p.requires_grad
    assert float(p.detach()) == pytest.approx(math.log(1 / 0.07))
    assert t.scale.dtype == torch.float32 and t.scale.dim() == 0
    assert float(t.scale.detach()) == pytest.approx(1 / 0.07, rel=1e-6)
    assert t().requires_grad
    assert "mode=learnable" in repr(t) and "max=100" in repr(t)


def test_clamp_after_optimizer_step_projects_to_max():
    t = Temperature.learnable(init=90.0, max=100.0)
    opt = torch.optim.SGD(t.parameters(), lr=1.0)
    (-t.scale).backward()  # pushes the scale up: d(-exp(l))/dl = -90, so l grows by 90
    opt.step()
    assert float(t.scale.detach()) > 100.0
    assert t.clamp_() is t
    assert float(t.logit_scale.detach()) == pytest.approx(math.log(100.0))
    assert float(t.scale.detach()) == pytest.approx(100.0, rel=1e-6)
    # below the cap the projection is the identity
    with torch.no_grad():
        t.logit_scale.fill_(math.log(5.0))
    t.clamp_()
    assert float(t.scale.detach()) == pytest.approx(5.0, rel=1e-6)


def test_uncapped_learnable_never_clamps():
    t = Temperature.learnable(init=2.0, max=math.inf)
    with torch.no_grad():
        t.logit_scale.fill_(10.0)
    t.clamp_()
    assert float(t.logit_scale.detach()) == 10.0


@pytest.mark.parametrize(
    ("t", "scale"),
    [(Temperature.fixed(12.5), 12.5), (Temperature.none(), 1.0)],
    ids=["fixed", "none"],
)
def test_fixed_and_none_have_no_trainable_parameters(t, scale):
    assert list(t.parameters()) == []
    assert float(t.scale.detach()) == pytest.approx(scale)
    assert t.scale.dtype == torch.float32 and not t.scale.requires_grad
    assert t.state_dict() == {}
    before = float(t.scale.detach())
    t.clamp_()
    assert float(t.scale.detach()) == before
    loss = InfoNCE(Sphere(3), t)
    assert [n for n, _ in loss.named_parameters()] == []


def test_loss_parameters_are_named_for_weight_decay_exclusion():
    loss = InfoNCE(Sphere(3), Temperature.learnable())
    (name, p), *_ = list(loss.named_parameters())
    assert name == "temperature.logit_scale" and p.ndim < 2


def test_state_dict_round_trip_and_mode_mismatch_fails():
    a = Temperature.learnable(init=3.0)
    with torch.no_grad():
        a.logit_scale.fill_(1.5)
    b = Temperature.learnable(init=7.0)
    b.load_state_dict(a.state_dict())
    assert float(b.logit_scale.detach()) == 1.5
    with pytest.raises(RuntimeError, match="logit_scale"):
        Temperature.fixed(3.0).load_state_dict(a.state_dict())


def test_to_half_keeps_scale_float32():
    t = Temperature.learnable(init=14.0).to(torch.bfloat16)
    assert t.scale.dtype == torch.float32


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Temperature.learnable(init=0.0), "^init: expected a finite number > 0"),
        (lambda: Temperature.learnable(init=float("nan")), "^init: expected a finite number > 0"),
        (lambda: Temperature.learnable(init=200.0, max=100.0), r"^init: expected init <= max"),
        (lambda: Temperature.learnable(max=-1.0), "^max: expected a number > 0"),
        (lambda: Temperature.fixed(-2.0), "^value: expected a finite number > 0"),
        (lambda: Temperature.fixed(float("inf")), "^value: expected a finite number > 0"),
        (lambda: Temperature("cold", 1.0, 1.0), "^mode: expected one of"),
    ],
)
def test_bad_values_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_non_number_raises_type_error():
    with pytest.raises(TypeError, match=r"^value: expected a positive number, got str"):
        Temperature.fixed("10")
