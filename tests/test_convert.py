"""Sphere -> oblique conversion (models.convert), ``model.init_from`` and ``optim.lr_scale``."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from manifold_align.config import ConfigError, load_config
from manifold_align.models import build_model
from manifold_align.models.convert import embedding_basis, sphere_to_oblique
from manifold_align.models.registry import ModelConfig
from manifold_align.train.checkpoint import find_checkpoint, read_state
from manifold_align.train.config import RunConfig
from manifold_align.train.init_from import initialize_from, load_source
from manifold_align.train.optimizers import build_optimizers
from manifold_align.train.run import load_trained, train

SMALL = {"vision_width": 32, "vision_layers": 1, "vision_heads": 2, "patch_size": 8,
         "image_size": 16, "text_width": 32, "text_layers": 1, "text_heads": 2,
         "vocab_size": 300, "context_length": 16, "eot_id": 1}
SPHERE = ModelConfig(**SMALL, manifold="sphere", tokens=1, token_dim=32)
OBLIQUE = ModelConfig(**SMALL, manifold="oblique", tokens=4, token_dim=8,
                      temperature_init=1.0, temperature_max=100 / 4)
SOT = 0


def _sphere(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(SPHERE)


def _tokens(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(3, 300, (n, 16), generator=g)
    tokens[:, 0] = SOT
    for i in range(n):
        tokens[i, 4 + i] = 1  # EOT, then padding
        tokens[i, 5 + i:] = 2
    return tokens


# --------------------------------------------------------------------------- the conversion


def test_towers_are_copied_and_new_rows_follow_the_documented_init():
    sphere = _sphere()
    model = sphere_to_oblique(sphere, OBLIQUE, sot_id=SOT, eot_position=5, jitter=0.0)
    assert model.config.manifold == "oblique" and model.manifold.point_shape == (4, 8)
    src, dst = sphere.state_dict(), model.state_dict()
    for name in src:
        if "transformer" in name or "ln_" in name or "conv1" in name or "token_embedding" in name:
            assert torch.equal(src[name], dst[name]), name
    k = 4
    assert torch.equal(model.vision.class_embedding, sphere.vision.class_embedding.expand(k, -1))
    assert torch.equal(model.vision.positional_embedding[:k],
                       sphere.vision.positional_embedding[:1].expand(k, -1))
    assert torch.equal(model.vision.positional_embedding[k:], sphere.vision.positional_embedding[1:])
    # caption rows keep their pretrained positions, shifted by k - 1
    assert torch.equal(model.text.positional_embedding[k:], sphere.text.positional_embedding[1:])
    # each summary row enters the transformer as the pretrained EOT token at position p = 5
    emb = sphere.text.token_embedding.weight
    want = emb[1] + sphere.text.positional_embedding[5]
    got = emb[SOT] + model.text.positional_embedding[:k]
    torch.testing.assert_close(got, want.expand(k, -1))


def test_head_is_the_pretrained_projection_onto_its_top_directions_and_scale_over_k():
    sphere = _sphere()
    with torch.no_grad():
        sphere.loss.temperature.logit_scale.fill_(math.log(40.0))
    model = sphere_to_oblique(sphere, OBLIQUE, sot_id=SOT)
    basis = embedding_basis(sphere, 8)
    torch.testing.assert_close(basis.T @ basis, torch.eye(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(model.image_head.proj.weight, basis.T @ sphere.image_head.proj.weight)
    torch.testing.assert_close(model.text_head.proj.weight, basis.T @ sphere.text_head.proj.weight)
    assert float(model.temperature.scale.detach()) == pytest.approx(40.0 / 4, rel=1e-5)
    # capped at the target's temperature_max
    with torch.no_grad():
        sphere.loss.temperature.logit_scale.fill_(math.log(100.0))
    assert float(sphere_to_oblique(sphere, OBLIQUE, sot_id=SOT).temperature.scale.detach()) == pytest.approx(25.0)


def test_oblique_similarity_is_k_times_the_pretrained_cosine_when_embeddings_span_d_dims():
    """If the sphere embeddings live in a d-dim subspace, the calibrated basis spans it, and
    on equal token outputs sum_i <x_i, y_i> = k cos(u, v) exactly."""
    sphere = _sphere()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        frame = torch.linalg.qr(torch.randn(32, 8, generator=g))[0]  # (D, d) orthonormal
        for head in (sphere.image_head, sphere.text_head):
            head.proj.weight.copy_(frame @ torch.randn(8, 32, generator=g))
    images, tokens = torch.randn(6, 3, 16, 16, generator=g), _tokens()
    model = sphere_to_oblique(sphere, OBLIQUE, sot_id=SOT, calibration=(images, tokens))
    z_img, z_txt = torch.randn(5, 1, 32, generator=g), torch.randn(7, 1, 32, generator=g)
    u, v = sphere.image_head(z_img), sphere.text_head(z_txt)
    x = model.image_head(z_img.expand(-1, 4, -1))
    y = model.text_head(z_txt.expand(-1, 4, -1))
    torch.testing.assert_close(model.manifold.similarity(x, y), 4 * (u @ v.T), atol=1e-5, rtol=1e-5)


def test_jitter_breaks_the_symmetry_that_would_keep_tokens_identical_for_ever():
    sphere = _sphere()
    images, tokens = torch.randn(4, 3, 16, 16), _tokens(4)
    for jitter, identical in ((0.0, True), (0.05, False)):
        model = sphere_to_oblique(sphere, OBLIQUE, sot_id=SOT, jitter=jitter)
        out = model(images, tokens)
        out.loss.backward()
        grad = model.vision.class_embedding.grad
        for z in (model.vision(images), model.text(tokens), grad[None]):
            same = torch.allclose(z[:, :1].expand_as(z), z, atol=1e-6, rtol=1e-5)
            assert same == identical, (jitter, z.shape)


def test_jitter_is_seeded_and_small():
    sphere = _sphere()
    a = sphere_to_oblique(sphere, OBLIQUE, sot_id=SOT, jitter=0.02, seed=7)
    b = sphere_to_oblique(sphere, OBLIQUE, sot_id=SOT, jitter=0.02, seed=7)
    c = sphere_to_oblique(sphere, OBLIQUE, sot_id=SOT, jitter=0.02, seed=8)
    assert torch.equal(a.vision.positional_embedding, b.vision.positional_embedding)
    assert not torch.equal(a.vision.positional_embedding, c.vision.positional_embedding)
    pos = sphere.vision.positional_embedding.detach()
    delta = a.vision.positional_embedding.detach()[:4] - pos[:1]
    assert float(delta.pow(2).mean().sqrt()) == pytest.approx(0.02 * float(pos.pow(2).mean().sqrt()),
                                                              rel=0.5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vision_layers": 2}, "target.vision_layers: 2 differs"),
        ({"token_dim": 64, "tokens": 1}, "token_dim: 64 exceeds"),
        ({"manifold": "sphere", "tokens": 1}, "expected an oblique model config"),
    ],
)
def test_mismatched_target_is_named(change, message):
    with pytest.raises(ValueError, match=message):
        sphere_to_oblique(_sphere(), dataclasses.replace(OBLIQUE, **change), sot_id=SOT)


def test_bad_source_and_arguments_are_named():
    oblique = build_model(OBLIQUE)
    with pytest.raises(ValueError, match="source: expected a sphere model"):
        sphere_to_oblique(oblique, OBLIQUE, sot_id=SOT)
    sphere = _sphere()
    with pytest.raises(ValueError, match="sot_id"):
        sphere_to_oblique(sphere, OBLIQUE, sot_id=300)
    with pytest.raises(ValueError, match="eot_position"):
        sphere_to_oblique(sphere, OBLIQUE, sot_id=SOT, eot_position=16)
    with pytest.raises(ValueError, match="jitter"):
        sphere_to_oblique(sphere, OBLIQUE, sot_id=SOT, jitter=-1.0)
    with pytest.raises(TypeError, match="target"):
        sphere_to_oblique(sphere, 3, sot_id=SOT)


def test_registry_name_target_takes_the_sources_vocabulary():
    sphere = build_model("tiny", vocab_size=300, eot_id=1)
    model = sphere_to_oblique(sphere, "tiny-oblique", sot_id=0)
    assert model.config.vocab_size == 300 and model.config.eot_id == 1
    assert model.manifold.point_shape == (8, 16)


# ----------------------------------------------------------------------------- lr_scale


def test_lr_scale_splits_groups_by_glob_and_zero_freezes():
    model = build_model(OBLIQUE)
    opt = build_optimizers(model, 1e-2, weight_decay=0.1,
                           lr_scale={"vision.transformer.*": 0.1, "text.*": 0.0})["adamw"]
    rate = {id(p): g["initial_lr"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert rate[id(named["vision.transformer.blocks.0.attn.in_proj.weight"])] == pytest.approx(1e-3)
    assert rate[id(named["text.transformer.blocks.0.mlp.c_fc.weight"])] == 0.0
    assert rate[id(named["image_head.proj.weight"])] == pytest.approx(1e-2)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(named)
    # a step with the trainer's lr = initial_lr x factor moves nothing of the frozen tower
    for group in opt.param_groups:
        group["lr"] = group["initial_lr"]
    before = {n: p.detach().clone() for n, p in named.items()}
    model(torch.randn(4, 3, 16, 16), _tokens(4)).loss.backward()
    opt.step()
    assert all(torch.equal(before[n], p) for n, p in named.items() if n.startswith("text."))
    assert not torch.equal(before["vision.transformer.blocks.0.attn.in_proj.weight"],
                           named["vision.transformer.blocks.0.attn.in_proj.weight"])


def test_lr_scale_rejects_a_glob_matching_nothing_and_bad_factors():
    model = build_model(OBLIQUE)
    with pytest.raises(ValueError, match=r"'visual\.\*' matches no trainable parameter"):
        build_optimizers(model, 1e-3, lr_scale={"visual.*": 0.1})
    with pytest.raises(ConfigError, match=r"optim.lr_scale.vision\*: expected a number >= 0"):
        load_config(RunConfig, None, ["optim.lr_scale={'vision*': -1}"])


# ----------------------------------------------------------------------------- init_from

MICRO = [
    "model.overrides={vision_width: 32, vision_layers: 1, vision_heads: 2, patch_size: 8,"
    " image_size: 16, text_width: 32, text_layers: 1, text_heads: 2, context_length: 16}",
    "data.synthetic.size=64",
    "data.batch_size=16",
    "train.steps=2",
    "train.log_every=1",
    "train.progress=false",
    "train.ckpt_every=0",
    "eval.zeroshot_samples=0",
    "eval.retrieval_samples=0",
]


def test_init_from_a_sphere_run_converts_keeps_step_0_and_fine_tunes(tmp_path):
    sphere_cfg = load_config(RunConfig, None, [*MICRO, "model.name=tiny",
                                               "model.overrides.token_dim=32"])
    train(sphere_cfg, tmp_path / "sphere")
    sets = [*MICRO, "model.name=tiny-oblique", "model.overrides.tokens=4",
            "model.overrides.token_dim=8", f"model.init_from={tmp_path / 'sphere'}",
            "optim.lr_scale={'vision.transformer.*': 0.1, 'text.transformer.*': 0.1}"]
    result = train(load_config(RunConfig, None, sets), tmp_path / "oblique")
    assert result.step == 2
    step0 = find_checkpoint(tmp_path / "oblique" / "checkpoints" / "step_00000000", tmp_path)
    assert read_state(step0)["step"] == 0
    start, tokenizer, _ = load_trained(step0)
    source, _, _ = load_trained(tmp_path / "sphere")
    expected = sphere_to_oblique(source, start.config, sot_id=tokenizer.sot_id)
    for name, tensor in expected.state_dict().items():
        assert torch.equal(tensor, start.state_dict()[name]), name
    # the fine-tuned run reloads from its own checkpoint without the source
    (tmp_path / "sphere" / "checkpoints" / "latest").unlink()
    model, _, config = load_trained(tmp_path / "oblique")
    assert model.manifold.point_shape == (4, 8) and config.model.init_from


def test_init_from_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.init_from: .* does not exist"):
        load_source(tmp_path / "nowhere")
    weights = tmp_path / "open_clip_model.safetensors"
    weights.write_bytes(b"")
    try:
        import manifold_align.pretrained  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"needs manifold_align\.pretrained"):
            load_source(weights)
    with pytest.raises(ConfigError, match="''"):
        load_config(RunConfig, None, ["model.init_from=''"])
    oblique = build_model(OBLIQUE)
    other = build_model(dataclasses.replace(OBLIQUE, tokens=2, token_dim=16))
    with pytest.raises(ConfigError, match="cannot start a model on Oblique"):
        initialize_from(oblique, other, SOT)


def test_initialize_from_the_same_manifold_copies_and_names_a_shape_mismatch():
    a, b = _sphere(0), _sphere(1)
    initialize_from(a, b, SOT)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(),
                                                 strict=True))
    wide = build_model(dataclasses.replace(SPHERE, vocab_size=400))
    with pytest.raises(ConfigError, match=r"text.token_embedding.weight has shape \(400, 32\)"):
        initialize_from(a, wide, SOT)




def test_a_source_pooling_at_the_largest_id_converts_with_the_runs_end_token(tmp_path):
    # an OpenCLIP source (eot_id None) pools at each row's largest id: for a run tokenizer
    # whose end id is its largest, that is its end token, not the model's last row
    from manifold_align.data.tokenizer import default_tokenizer
    from manifold_align.train.init_from import InitSource, check_tokenizer

    argmax = build_model(dataclasses.replace(SPHERE, eot_id=None))
    model = build_model(dataclasses.replace(OBLIQUE, eot_id=200))
    initialize_from(model, argmax, SOT)
    at_200 = build_model(dataclasses.replace(SPHERE, eot_id=200))
    at_200.load_state_dict(argmax.state_dict())
    expected = sphere_to_oblique(at_200, model.config, sot_id=SOT).state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    # a tokenizer whose end id (1) is not its largest would read captions elsewhere: refused
    tokenizer = default_tokenizer(16)
    run_model = build_model(dataclasses.replace(SPHERE, eot_id=tokenizer.eot_id))
    source = InitSource(argmax, None, tmp_path / "open_clip_model.safetensors")
    with pytest.raises(ConfigError, match=r"data\.tokenizer: .* end id 1 is not its largest id"):
        check_tokenizer(source, run_model, tokenizer)
    check_tokenizer(InitSource(argmax, tokenizer, tmp_path), run_model, tokenizer)  # ours: its own
