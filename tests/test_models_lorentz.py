"""Training on Lorentz and on a sphere x Lorentz product: the head (MERU's projection, scale,
expmap0), the registered configs, and evaluation on hyperbolic features."""

from __future__ import annotations

import pytest
import torch

from manifold_align import Lorentz, Product, Sphere
from manifold_align.evaluate.geometry import geometry_diagnostics
from manifold_align.evaluate.retrieval import retrieval_recall
from manifold_align.evaluate.zeroshot import classify
from manifold_align.models.head import ManifoldHead
from manifold_align.models.registry import build_model, model_config
from manifold_align.train.optimizers import split_parameters

SMALL = dict(vocab_size=64, eot_id=2, vision_layers=1, text_layers=1, vision_width=32,
             text_width=32, vision_heads=2, text_heads=2, token_dim=8, context_length=8,
             image_size=16)


def test_lorentz_head_is_merus_projection_scale_and_expmap0():
    m = Lorentz(6, radius=2.0)
    head = ManifoldHead(10, m, 1)
    assert head.proj.weight.shape == (6, 10)  # the time coordinate is not a free output
    torch.testing.assert_close(head.log_scale.exp(), torch.tensor(6**-0.5))
    z = torch.randn(4, 1, 10)
    x = head(z)
    v = head.log_scale.exp() * (z[:, 0] @ head.proj.weight.T)
    v = v * torch.clamp(2.0 / v.norm(dim=-1, keepdim=True), max=1.0)
    torch.testing.assert_close(x, m.expmap0(torch.cat([torch.zeros(4, 1), v], -1)))
    assert m.check_point_on_manifold(x)
    assert torch.all(m.dist0(head(100 * z)) <= 2.0 + 1e-4)  # capped at the radius
    (100 * head(z)).sum().backward()
    assert torch.isfinite(head.log_scale.grad) and head.log_scale.grad != 0


def test_product_head_maps_each_factor():
    m = Product(Sphere(3), Lorentz(4))
    head = ManifoldHead(10, m, 1)
    assert head.proj.weight.shape == (3 + 4, 10)
    x = head(torch.randn(5, 1, 10))
    assert x.shape == (5, 3 + 5) and m.check_point_on_manifold(x)


def test_registered_configs_build_and_train_a_step():
    assert model_config("ViT-B-16-lorentz").token_dim == 512
    assert isinstance(build_model("ViT-B-16-lorentz", device="meta").manifold, Lorentz)
    for name, kind in (("tiny-lorentz", Lorentz), ("tiny-sphere-lorentz", Product)):
        model = build_model(name, **SMALL)
        assert isinstance(model.manifold, kind)
        images = torch.randn(4, 3, 16, 16)
        tokens = torch.randint(3, 64, (4, 8))
        x = model.encode_image(images)
        assert model.manifold.check_point_on_manifold(x)
        out = model(images, tokens)
        out.loss.backward()
        names = {n for n, p in model.named_parameters() if p.grad is not None}
        assert any(n.endswith("log_curvature") for n in names), names
        assert {"image_head.log_scale", "text_head.log_scale"} <= names
        # the shared manifold's curvature is one parameter, not decayed
        split = split_parameters(model)
        no_decay = [n for n, _ in split.no_decay]
        assert sum(n.endswith("log_curvature") for n in no_decay) == 1


def test_evaluation_reads_lorentz_features_through_the_manifold():
    m = Lorentz(5)
    g = torch.Generator().manual_seed(0)
    x = m.expmap0(torch.randn(40, 6, generator=g, dtype=torch.float64))
    y = m.expmap0(m.logmap0(x) + 0.05 * torch.randn(40, 6, generator=g, dtype=torch.float64))
    rec = retrieval_recall(x, y, m, ks=(1,))
    assert rec["image_to_text@1"] > 0.9 and rec["text_to_image@1"] > 0.9
    acc = classify(x, y[:10], m, torch.arange(40) % 10, ks=(1,))
    assert acc["top1"] >= 0.25 - 1e-9
    geo = geometry_diagnostics(x, y, m, scale=2.0)
    s = m.similarity(x, y)
    off = (s.sum() - s.diagonal().sum()) / (40 * 39)
    assert abs(geo["similarity"]["pos_mean"] - float(s.diagonal().mean())) < 1e-9
    assert abs(geo["similarity"]["neg_mean"] - float(off)) < 1e-9
    assert abs(geo["alignment"] - float(m.dist2(x, y).mean())) < 1e-9
    assert geo["tokens"]["pos_mean"] == [geo["similarity"]["pos_mean"]]


def test_entailment_weight_adds_the_cone_term_and_is_a_config_key():
    from manifold_align.config import ConfigError, load_config
    from manifold_align.losses import EntailmentConeLoss
    from manifold_align.train.config import RunConfig

    model = build_model("tiny-lorentz", **SMALL, entailment_weight=0.2)
    images, tokens = torch.randn(4, 3, 16, 16), torch.randint(3, 64, (4, 8))
    out, f = model(images, tokens, return_features=True)
    cone = EntailmentConeLoss(model.manifold)(f.image, f.text)
    torch.testing.assert_close(out.loss, model.loss(f.image, f.text).loss + 0.2 * cone.loss)
    assert {"entailment", "violated"} <= set(out.diagnostics)
    assert build_model("tiny-lorentz", **SMALL).entailment is None  # default 0: no term
    config = load_config(RunConfig, None, ["model.name=tiny-lorentz",
                                           "model.overrides={entailment_weight: 0.2}"])
    assert config.model.overrides["entailment_weight"] == 0.2
    with pytest.raises(ConfigError, match="entailment_weight"):
        load_config(RunConfig, None, ["model.name=tiny", "model.overrides={entailment_weight: 0.2}"])
