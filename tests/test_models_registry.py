"""Named configurations: exact parameter counts, validation, overrides, config-file round trip."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from manifold_align.config import ConfigError, from_dict, to_dict
from manifold_align.manifolds import Oblique, Sphere
from manifold_align.models import ModelConfig, build_model, list_models, model_config

NAMES = [
    "tiny",
    "tiny-oblique",
    "tiny-lorentz",
    "tiny-sphere-lorentz",
    "ViT-B-32",
    "ViT-B-32-oblique",
    "ViT-B-16",
    "ViT-B-16-oblique",
    "ViT-B-16-lorentz",
    "ViT-L-14",
    "ViT-L-14-oblique",
    "ViT-B-16-oblique-release",
    "ViT-B-16-sphere-release",
]

# CLIP's published totals (OpenAI's models, including the logit scale).
CLIP_PARAMETERS = {"ViT-B-32": 151_277_313, "ViT-B-16": 149_620_737, "ViT-L-14": 427_616_513}


def closed_form_parameters(c: ModelConfig) -> int:
    """Parameter count written out from the architecture, independently of the modules.

    Block: attention 4W^2 + 4W, MLP 8W^2 + 5W, two norms 4W -> 12 W^2 + 13 W.
    Vision: patch conv (no bias) 3 p^2 W + k class tokens + (k + N) positions + ln_pre + ln_post.
    Text: V W token embedding + (L + k - 1) positions + ln_final (+ ln_embedding). Heads: W d each (no bias).
    Loss: the learnable logit scale (1) and, for the sigmoid loss, its bias (1).
    Hyperbolic: a Lorentz factor's time coordinate is not a head output; each head has its
    log scale (1) and the manifold its log curvature (1, when learned).
    """
    k, d = c.tokens, c.token_dim
    wv, wt = c.vision_width, c.text_width
    block = lambda w: 12 * w * w + 13 * w  # noqa: E731
    n_patches = (c.image_size // c.patch_size) ** 2
    vision = (
        3 * c.patch_size**2 * wv + k * wv + (k + n_patches) * wv + 2 * wv
        + c.vision_layers * block(wv) + 2 * wv
    )
    text = c.vocab_size * wt + (c.context_length + k - 1) * wt + c.text_layers * block(wt) + 2 * wt
    text += 2 * wt * c.text_embed_norm
    free = {"sphere": d, "oblique": d, "lorentz": d, "sphere-lorentz": 2 * d}[c.manifold]
    hyperbolic = c.manifold in ("lorentz", "sphere-lorentz")
    heads = wv * free + wt * free + 2 * hyperbolic
    loss = (c.temperature == "learnable") + (c.loss == "sigmoid")
    return vision + text + heads + loss + (hyperbolic and c.learn_curvature)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_every_named_model():
    assert list_models() == NAMES
    with pytest.raises(ValueError, match="unknown model 'ViT-H-14'; known: tiny, tiny-oblique"):
        model_config("ViT-H-14")


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_the_closed_form(name):
    model = build_model(name, device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert count(model) == closed_form_parameters(model_config(name))


@pytest.mark.parametrize("name", sorted(CLIP_PARAMETERS))
def test_sphere_forms_have_exactly_clips_parameter_count(name):
    assert count(build_model(name, device="meta")) == CLIP_PARAMETERS[name]


@pytest.mark.parametrize(
    ("name", "manifold", "shape"),
    [
        ("ViT-B-16", Sphere, (512,)),
        ("ViT-B-16-oblique", Oblique, (16, 32)),
        ("ViT-B-32-oblique", Oblique, (16, 32)),
        ("ViT-L-14", Sphere, (768,)),
        ("ViT-L-14-oblique", Oblique, (16, 48)),
        ("tiny-oblique", Oblique, (8, 16)),
    ],
)
def test_named_manifolds(name, manifold, shape):
    model = build_model(name, device="meta")
    assert isinstance(model.manifold, manifold)
    assert model.manifold.point_shape == shape
    assert model.vision.tokens == model.text.tokens == (shape[0] if len(shape) == 2 else 1)


def test_clip_sizes():
    b16, l14 = model_config("ViT-B-16"), model_config("ViT-L-14")
    assert (b16.vision_width, b16.vision_layers, b16.vision_heads, b16.patch_size) == (768, 12, 12, 16)
    assert (b16.text_width, b16.text_layers, b16.text_heads) == (512, 12, 8)
    assert (l14.vision_width, l14.vision_layers, l14.vision_heads, l14.patch_size) == (1024, 24, 16, 14)
    assert (l14.text_width, l14.text_layers, l14.text_heads, l14.token_dim) == (768, 12, 12, 768)
    assert model_config("ViT-B-16-oblique").embed_dim == b16.embed_dim == 512


def test_overrides_reach_the_model():
    model = build_model(
        "tiny", device="meta", vocab_size=300, eot_id=5, context_length=20,
        manifold="oblique", tokens=4, token_dim=32, grad_checkpointing=True,
    )
    assert model.text.token_embedding.num_embeddings == 300
    assert model.text.eot_id == 5
    assert model.text.positional_embedding.shape[0] == 20 + 4 - 1
    assert model.manifold.point_shape == (4, 32)
    assert model.vision.transformer.grad_checkpointing and model.text.transformer.grad_checkpointing
    assert model.config == dataclasses.replace(
        model_config("tiny"), vocab_size=300, eot_id=5, context_length=20,
        manifold="oblique", tokens=4, token_dim=32, grad_checkpointing=True,
    )


def test_temperature_and_loss_choices():
    sphere = build_model("tiny")
    assert sphere.temperature.scale.item() == pytest.approx(1 / 0.07, rel=1e-6)
    assert sphere.temperature.max == 100.0
    oblique = build_model("ViT-B-16-oblique", device="meta")
    assert oblique.temperature.max == pytest.approx(100.0 / 16)
    fixed = build_model("tiny", temperature="fixed", temperature_init=5.0)
    assert not any("logit_scale" in n for n, _ in fixed.named_parameters())
    assert fixed.temperature.scale.item() == pytest.approx(5.0)
    none = build_model("tiny", temperature="none")
    assert none.temperature.scale.item() == 1.0
    sig = build_model("tiny", loss="sigmoid", sigmoid_bias_init=-3.0)
    assert sig.loss.logit_bias.item() == -3.0
    tiled = build_model("tiny", device="meta", loss_tile_size=16)
    assert tiled.loss.tile_size == 16
    sig_tiled = build_model("tiny", device="meta", loss="sigmoid", loss_tile_size=16)
    assert sig_tiled.loss.tile_size == 16 and sig_tiled.loss.tile == 16


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"tokens": 4}, "tokens: the sphere takes one token"),
        ({"vision_heads": 5}, "vision_heads: 5 does not divide vision_width 128"),
        ({"text_heads": 3}, "text_heads: 3 does not divide text_width 128"),
        ({"image_size": 60}, "image_size: 60 is not divisible by patch_size 8"),
        ({"eot_id": 1024}, r"eot_id: expected an id in \[0, 1024\)"),
        ({"token_dim": 0}, "token_dim: expected a positive integer"),
        ({"temperature_max": 1.0}, "temperature_max: expected >= temperature_init"),
        ({"temperature_init": -1.0}, "temperature_init: expected > 0"),
        ({"manifold": "hyperbolic"}, r"manifold: expected one of \('sphere', 'oblique', 'lorentz'"),
        ({"loss": "triplet"}, "loss: expected 'infonce' or 'sigmoid'"),
        ({"colour": "red"}, "unknown model override 'colour'; valid keys: activation, context_length"),
    ],
)
def test_bad_configs_name_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        build_model("tiny", device="meta", **overrides)


def test_build_model_rejects_a_wrong_config_type():
    with pytest.raises(TypeError, match="config_or_name"):
        build_model({"name": "tiny"})


def test_model_config_round_trips_through_the_config_loader():
    config = model_config("ViT-B-16-oblique")
    assert from_dict(ModelConfig, to_dict(config)) == config
    with pytest.raises(ConfigError, match=r"unknown key model\.widht"):
        from_dict(ModelConfig, {"widht": 3}, prefix="model")
    with pytest.raises(ConfigError, match=r"model\.manifold"):
        from_dict(ModelConfig, {"manifold": "torus"}, prefix="model")
    with pytest.raises(ConfigError, match="tokens: the sphere takes one token"):
        from_dict(ModelConfig, {"tokens": 2}, prefix="model")


def test_tiny_models_train_a_batch_of_eight_on_cpu():
    torch.manual_seed(0)
    for name, shape in (("tiny", (8, 128)), ("tiny-oblique", (8, 8, 16))):
        model = build_model(name, eot_id=1)
        images = torch.randn(8, 3, 64, 64, dtype=torch.float64)  # cast to the weights' dtype
        tokens = torch.randint(3, 1024, (8, 32))
        tokens[:, 0], tokens[:, 12] = 0, 1
        out, feats = model(images, tokens, return_features=True)
        assert feats.image.shape == feats.text.shape == shape
        torch.testing.assert_close(feats.text.norm(dim=-1), torch.ones(shape[:-1]))
        out.loss.backward()
        assert torch.isfinite(out.loss)
        assert all(p.grad is not None for p in model.parameters())
