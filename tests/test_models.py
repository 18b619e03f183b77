"""Encoders, head and two-tower model: shapes, masks, pooling, manifold membership, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from manifold_align.losses import InfoNCE, LossOutput, Temperature
from manifold_align.manifolds import Oblique, Sphere
from manifold_align.models import (
    ManifoldHead,
    TextTransformer,
    Transformer,
    TwoTower,
    VisionTransformer,
    build_model,
)
from manifold_align.models.transformer import SelfAttention

EOT = 2  # an EOT id that is *not* the largest id, as a trained BPE tokenizer gives


def small(manifold: str = "oblique", **overrides):
    """A very small model for fast tests (32 x 32 images, width 32, 2 layers)."""
    kwargs = dict(
        vision_width=32, vision_layers=2, vision_heads=4, patch_size=8, image_size=32,
        text_width=32, text_layers=2, text_heads=4, vocab_size=64, context_length=12,
        eot_id=EOT, manifold=manifold,
        tokens=4 if manifold == "oblique" else 1, token_dim=8,
    )
    kwargs.update(overrides)
    return build_model("tiny", **kwargs)


def captions(batch: int, length: int = 12, eot_at: int = 7, seed: int = 0) -> torch.Tensor:
    """SOT=1, random ids in [3, 64) up to ``eot_at``, EOT=2 there, then random "padding"."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(3, 64, (batch, length), generator=g)
    t[:, 0] = 1
    t[:, eot_at] = EOT
    return t


def images(batch: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --- transformer ------------------------------------------------------------------------


def reference_attention(attn: SelfAttention, x: torch.Tensor, allowed: torch.Tensor | None):
    """softmax(q k^T / sqrt(h) masked) v written out, as an independent check of SDPA use."""
    b, n, w = x.shape
    h = attn.heads
    q, k, v = attn.in_proj(x).split(w, dim=-1)
    q, k, v = (t.view(b, n, h, w // h).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(w // h)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    y = scores.softmax(-1) @ v
    return attn.out_proj(y.transpose(1, 2).reshape(b, n, w))


def test_attention_matches_written_out_softmax_attention():
    torch.manual_seed(0)
    attn = SelfAttention(16, 4)
    x = torch.randn(3, 5, 16)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(attn(x), reference_attention(attn, x, None))
    torch.testing.assert_close(attn(x, is_causal=True), reference_attention(attn, x, causal))
    mask = torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(1)) > 0.4
    mask |= torch.eye(5, dtype=torch.bool)  # every row attends somewhere
    torch.testing.assert_close(attn(x, attn_mask=mask), reference_attention(attn, x, mask))


def test_transformer_init_follows_clip_stds():
    torch.manual_seed(0)
    width, layers = 256, 4
    t = Transformer(width, layers, heads=4)
    block = t.blocks[1]
    expected = {
        "in_proj": width**-0.5,
        "out_proj": width**-0.5 * (2 * layers) ** -0.5,
        "c_fc": (2 * width) ** -0.5,
        "c_proj": width**-0.5 * (2 * layers) ** -0.5,
    }
    got = {
        "in_proj": block.attn.in_proj.weight.std().item(),
        "out_proj": block.attn.out_proj.weight.std().item(),
        "c_fc": block.mlp.c_fc.weight.std().item(),
        "c_proj": block.mlp.c_proj.weight.std().item(),
    }
    for name, std in expected.items():
        assert got[name] == pytest.approx(std, rel=0.03), name
    assert torch.count_nonzero(block.attn.in_proj.bias) == 0


def test_transformer_rejects_bad_shapes_and_sizes():
    t = Transformer(16, 1, 4)
    with pytest.raises(ValueError, match="x: expected shape"):
        t(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="attn_mask"):
        t(torch.randn(2, 5, 16), attn_mask=torch.ones(5, 5, dtype=torch.bool), is_causal=True)
    with pytest.raises(ValueError, match="heads"):
        Transformer(30, 1, 4)
    with pytest.raises(ValueError, match="layers"):
        Transformer(16, 0, 4)


def _grads(model, x, t):
    model.zero_grad(set_to_none=True)
    model(x, t).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_grad_checkpointing_recomputes_blocks_and_gives_the_same_gradients():
    torch.manual_seed(0)
    model = small()
    x, t = images(4), captions(4)
    plain = _grads(model, x, t)

    calls = []
    hooks = [  # a pre-hook: the recomputation may stop early, before forward hooks run
        b.register_forward_pre_hook(lambda *_: calls.append(1))
        for tower in (model.vision, model.text)
        for b in tower.transformer.blocks
    ]
    model.set_grad_checkpointing(True)
    checkpointed = _grads(model, x, t)
    n_blocks = len(hooks)
    assert len(calls) == 2 * n_blocks  # every block ran again in the backward pass
    calls.clear()
    with torch.no_grad():
        model(x, t)
    assert len(calls) == n_blocks  # no recomputation without autograd
    for h in hooks:
        h.remove()

    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-7,
                                   msg=name)


# --- vision -----------------------------------------------------------------------------


def test_vision_shapes_and_class_tokens():
    torch.manual_seed(0)
    vit = VisionTransformer(32, 8, width=32, layers=1, heads=4, tokens=3)
    x = images(2)
    feats = vit.forward_features(x)
    assert feats.shape == (2, 3 + 16, 32)
    out = vit(x)
    assert out.shape == (2, 3, 32)
    torch.testing.assert_close(out, vit.ln_post(feats[:, :3]))
    assert vit.positional_embedding.shape == (3 + 16, 32)
    # the k class tokens are distinct outputs, not copies
    assert (out[:, 0] - out[:, 1]).abs().max() > 1e-3


def test_vision_patches_are_strided_conv_with_positions():
    torch.manual_seed(0)
    vit = VisionTransformer(16, 8, width=16, layers=1, heads=2, tokens=1)
    x = images(1, 16)
    swapped = x.clone()
    swapped[..., :8, :8], swapped[..., :8, 8:] = x[..., :8, 8:], x[..., :8, :8]
    # swapping two patches changes the output only through the positional embedding
    assert not torch.allclose(vit(x), vit(swapped), atol=1e-5)
    with torch.no_grad():
        vit.positional_embedding[1:] = vit.positional_embedding[1]
    torch.testing.assert_close(vit(x), vit(swapped))


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((2, 1, 32, 32), "images: expected 3 channels"),
        ((2, 3, 30, 30), "images: height and width must be divisible by patch_size 8"),
        ((2, 3, 40, 40), "images: expected 32 x 32"),
        ((3, 32, 32), "images: expected shape"),
    ],
)
def test_vision_rejects_bad_images(shape, match):
    vit = VisionTransformer(32, 8, width=16, layers=1, heads=2)
    with pytest.raises(ValueError, match=match):
        vit(torch.randn(*shape))


def test_vision_rejects_bad_construction_and_integer_images():
    with pytest.raises(ValueError, match="image_size: 30 is not divisible by patch_size 8"):
        VisionTransformer(30, 8, width=16, layers=1, heads=2)
    with pytest.raises(ValueError, match="tokens"):
        VisionTransformer(32, 8, width=16, layers=1, heads=2, tokens=0)
    vit = VisionTransformer(32, 8, width=16, layers=1, heads=2)
    with pytest.raises(TypeError, match="images"):
        vit(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


# --- text -------------------------------------------------------------------------------


def text_tower(tokens: int, eot_id: int | None = EOT) -> TextTransformer:
    torch.manual_seed(0)
    return TextTransformer(64, 12, width=32, layers=2, heads=4, tokens=tokens, eot_id=eot_id)


def test_eot_positions_first_eot_or_last_or_argmax():
    t = torch.tensor([[1, 5, 2, 9, 2], [1, 5, 6, 7, 8], [1, 2, 63, 3, 3]])
    assert text_tower(1).eot_positions(t).tolist() == [2, 4, 1]
    assert text_tower(1, eot_id=None).eot_positions(t).tolist() == [3, 4, 2]


def test_text_k1_pools_the_eot_output_like_clip():
    tower = text_tower(1)
    t = captions(3)
    out = tower(t)
    assert out.shape == (3, 1, 32)
    feats = tower.forward_features(t)
    torch.testing.assert_close(out[:, 0], tower.ln_final(feats[:, 7]))
    padded = t.clone()
    padded[:, 8:] = 0  # different padding after EOT: same output (causal, pooled at EOT)
    torch.testing.assert_close(tower(padded), out)
    changed = t.clone()
    changed[:, 3] = (t[:, 3] + 1 - 3) % 61 + 3
    assert (tower(changed) - out).abs().amax(dim=(1, 2)).min() > 1e-4


def test_text_k1_argmax_convention_without_eot_id():
    tower = text_tower(1, eot_id=None)
    t = captions(2)
    t[:, 5] = 63  # the largest id, so argmax pools at position 5
    torch.testing.assert_close(tower(t)[:, 0], tower.ln_final(tower.forward_features(t)[:, 5]))


def test_text_k_tokens_read_the_whole_caption_but_not_the_padding():
    k = 4
    tower = text_tower(k)
    t = captions(3)
    out = tower(t)
    assert out.shape == (3, k, 32)
    assert tower.positional_embedding.shape == (12 + k - 1, 32)
    assert tower.forward_features(t).shape == (3, 12 + k - 1, 32)
    # the k outputs differ only through their positions, yet differ
    assert (out[:, 0] - out[:, 1]).abs().max() > 1e-3
    # every one of the k outputs depends on a caption token before EOT (a purely causal
    # mask would leave them functions of SOT alone) ...
    for pos in (1, 6):
        changed = t.clone()
        changed[:, pos] = (t[:, pos] + 1 - 3) % 61 + 3
        assert (tower(changed) - out).abs().amax(dim=-1).min() > 1e-5, pos
    # ... and on nothing after EOT
    padded = t.clone()
    padded[:, 8:] = 0
    torch.testing.assert_close(tower(padded), out)


def test_text_caption_rows_keep_the_causal_mask_with_k_tokens():
    k = 3
    torch.manual_seed(0)
    # one layer: the summary rows carry no look-ahead yet, so this isolates the mask itself
    tower = TextTransformer(64, 12, width=32, layers=1, heads=4, tokens=k, eot_id=EOT)
    t = captions(2)
    later = t.clone()
    later[:, 6] = (t[:, 6] + 1 - 3) % 61 + 3  # caption row 6 sits at position 6 + k - 1
    f, g = tower.forward_features(t), tower.forward_features(later)
    torch.testing.assert_close(f[:, k : 6 + k - 1], g[:, k : 6 + k - 1])
    assert (f[:, 6 + k - 1] - g[:, 6 + k - 1]).abs().max() > 1e-4


def test_text_rejects_bad_tokens():
    tower = text_tower(2)
    with pytest.raises(ValueError, match=r"tokens: length 13 is outside \[1, context_length=12\]"):
        tower(torch.ones(2, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="tokens: expected shape"):
        tower(torch.ones(12, dtype=torch.long))
    with pytest.raises(ValueError, match="tokens: ids must lie in"):
        tower(torch.full((2, 5), 64))
    with pytest.raises(ValueError, match="tokens: ids must lie in"):
        tower(torch.full((2, 5), -1))
    with pytest.raises(TypeError, match="tokens"):
        tower(torch.ones(2, 5))
    with pytest.raises(ValueError, match="eot_id"):
        TextTransformer(64, 12, 32, 1, 4, eot_id=64)


# --- head -------------------------------------------------------------------------------


def test_oblique_head_is_a_shared_projection_then_per_token_normalisation():
    torch.manual_seed(0)
    head = ManifoldHead(24, Oblique(5, 8), tokens=5)
    z = torch.randn(3, 5, 24)
    out = head(z)
    assert out.shape == (3, 5, 8)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3, 5))
    torch.testing.assert_close(out, F.normalize(z @ head.proj.weight.T, dim=-1))


def test_sphere_head_is_clips_pooled_projection():
    torch.manual_seed(0)
    head = ManifoldHead(24, Sphere(8), tokens=1)
    z = torch.randn(3, 1, 24)
    out = head(z)
    assert out.shape == (3, 8)
    torch.testing.assert_close(out, F.normalize(z[:, 0] @ head.proj.weight.T, dim=-1))
    assert head.proj.weight.std().item() == pytest.approx(24**-0.5, rel=0.25)


def test_head_is_float32_under_bf16_autocast_and_finite_at_zero():
    torch.manual_seed(0)
    head = ManifoldHead(16, Oblique(2, 4), tokens=2)
    z = torch.randn(3, 2, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(z.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3, 2))
    assert torch.isfinite(head(torch.zeros(1, 2, 16))).all()


def test_head_rejects_token_mismatch_and_bad_input():
    with pytest.raises(ValueError, match=r"tokens: the encoder emits 4 token\(s\)"):
        ManifoldHead(16, Sphere(8), tokens=4)
    with pytest.raises(ValueError, match="needs exactly 3"):
        ManifoldHead(16, Oblique(3, 8), tokens=2)
    head = ManifoldHead(16, Oblique(3, 8), tokens=3)
    with pytest.raises(ValueError, match=r"z: expected token outputs of shape \(B, 3, 16\)"):
        head(torch.randn(2, 3, 15))


# --- two towers -------------------------------------------------------------------------


@pytest.mark.parametrize("manifold", ["sphere", "oblique"])
def test_encodings_lie_on_the_manifold(manifold):
    model = small(manifold)
    x, t = images(5), captions(5)
    with torch.no_grad():
        xi, yt = model.encode_image(x), model.encode_text(t)
    shape = (5, *model.manifold.point_shape)
    assert xi.shape == shape and yt.shape == shape
    for p in (xi, yt):
        assert p.dtype == torch.float32
        torch.testing.assert_close(p.norm(dim=-1), torch.ones(shape[:-1]))
        assert model.manifold.check_point_on_manifold(p)


@pytest.mark.parametrize("manifold", ["sphere", "oblique"])
def test_forward_backward_reaches_every_parameter(manifold):
    model = small(manifold)
    out, feats = model(images(8), captions(8), return_features=True)
    assert isinstance(out, LossOutput)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert feats.image.shape == (8, *model.manifold.point_shape)
    loss = model.loss(feats.image, feats.text).loss
    torch.testing.assert_close(loss, out.loss)
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert model.temperature.logit_scale.grad.abs() > 0


def test_bf16_autocast_forward_backward():
    model = small("oblique")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, feats = model(images(8), captions(8), return_features=True)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert feats.image.dtype == torch.float32
    torch.testing.assert_close(feats.text.norm(dim=-1), torch.ones(8, 4))
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_two_tower_properties_and_errors():
    model = small("oblique")
    assert model.manifold.point_shape == (4, 8)
    assert isinstance(model.temperature, Temperature)
    assert model.config.tokens == 4
    with pytest.raises(ValueError, match="images, tokens: batch sizes differ"):
        model(images(3), captions(4))
    vit = VisionTransformer(32, 8, width=16, layers=1, heads=2, tokens=2)
    txt = TextTransformer(64, 12, width=16, layers=1, heads=2, tokens=1)
    with pytest.raises(ValueError, match=r"vision: tokens: the encoder emits 2 token\(s\)"):
        TwoTower(vit, txt, InfoNCE(Sphere(8)))
    with pytest.raises(ValueError, match="text: tokens"):
        TwoTower(vit, txt, InfoNCE(Oblique(2, 8)))
    with pytest.raises(TypeError, match="loss"):
        TwoTower(vit, txt, torch.nn.MSELoss())


@pytest.mark.parametrize("k", [1, 3])
def test_text_outputs_follow_each_rows_own_eot(k):
    tower = text_tower(k)
    t = captions(3)
    t[:, 7] = 5
    eot = [3, 7, 11]
    for row, e in enumerate(eot):
        t[row, e] = EOT
    out = tower(t)
    after, before = t.clone(), t.clone()
    for row, e in enumerate(eot):
        after[row, e + 1 :] = 0  # anything after this row's EOT
        before[row, e - 1] = (t[row, e - 1] + 1 - 3) % 61 + 3  # the token just before it
    torch.testing.assert_close(tower(after), out)
    assert (tower(before) - out).abs().amax(dim=-1).min() > 1e-5
