"""The paper's released text tower: bidirectional, post-norm, ``ln_embedding``, k copies of [CLS].

The release (github.com/minogame/clip-mtob) builds its text encoder from
``torch.nn.TransformerEncoder``; the tests here build that encoder from torch's own modules,
copy our weights into it, and ask for the same outputs, so the structure (mask, norm order,
embedding norm, pooling) is checked against an implementation that is not ours.
"""

import math

import pytest
import torch
from torch import nn

from manifold_align.models import build_model, list_models, model_config
from manifold_align.models.text import TextTransformer

V, L, W, HEADS, LAYERS = 40, 12, 32, 4, 2
SEP = 3  # the end token ([SEP]) of the rows below


def release_tower(tokens: int, **kw) -> TextTransformer:
    torch.manual_seed(0)
    tower = TextTransformer(V, L, W, LAYERS, HEADS, tokens=tokens, eot_id=SEP, mask="padding",
                            norm="post", embed_norm=True, pool="first", **kw)
    with torch.no_grad():  # non-trivial norms, so a swapped norm would show
        for name, p in tower.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_embedding.weight", "ln_final.weight")):
                p.uniform_(0.5, 1.5)
            elif "ln_" in name:
                p.normal_(0.0, 0.1)
    return tower.eval()


def rows(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids ``[CLS]=2, words, [SEP]=3, [PAD]=0 ...`` of different lengths, and BERT's attention mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(3, L, dtype=torch.long)
    mask = torch.zeros(3, L, dtype=torch.long)
    for i, n in enumerate((4, 7, L - 2)):
        ids[i, 0] = 2
        ids[i, 1:n + 1] = torch.randint(5, V, (n,), generator=g)
        ids[i, n + 1 if n + 1 < L else L - 1] = SEP
        mask[i, : min(n + 2, L)] = 1
    return ids, mask


def torch_encoder(tower: TextTransformer) -> nn.TransformerEncoder:
    """``nn.TransformerEncoder`` as the release builds it, holding ``tower``'s block weights."""
    layer = nn.TransformerEncoderLayer(W, HEADS, dim_feedforward=4 * W, dropout=0.0, activation="gelu")
    encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
    with torch.no_grad():
        for ours, ref in zip(tower.transformer.blocks, encoder.layers, strict=True):
            ref.self_attn.in_proj_weight.copy_(ours.attn.in_proj.weight)
            ref.self_attn.in_proj_bias.copy_(ours.attn.in_proj.bias)
            ref.self_attn.out_proj.weight.copy_(ours.attn.out_proj.weight)
            ref.self_attn.out_proj.bias.copy_(ours.attn.out_proj.bias)
            ref.linear1.load_state_dict(ours.mlp.c_fc.state_dict())
            ref.linear2.load_state_dict(ours.mlp.c_proj.state_dict())
            ref.norm1.load_state_dict(ours.ln_1.state_dict())
            ref.norm2.load_state_dict(ours.ln_2.state_dict())
    return encoder.eval()


def release_forward(tower: TextTransformer, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """The release's ``encode_text`` before its projection, written with torch's encoder."""
    k = tower.tokens
    ids = torch.cat([ids[:, :1].repeat(1, k - 1), ids], dim=1)
    attention = torch.cat([attention[:, :1].repeat(1, k - 1), attention], dim=1)
    x = tower.token_embedding(ids) + tower.positional_embedding[: ids.shape[1]]
    x = tower.ln_embedding(x)
    x = torch_encoder(tower)(x.permute(1, 0, 2), src_key_padding_mask=~attention.bool()).permute(1, 0, 2)
    return tower.ln_final(x)[:, :k]


@pytest.mark.parametrize("k", [1, 4])
def test_release_text_tower_equals_torch_transformer_encoder(k):
    tower = release_tower(k)
    ids, attention = rows()
    with torch.no_grad():
        ours = tower(ids)
        ref = release_forward(tower, ids, attention)
    assert ours.shape == (3, k, W)
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-5)


def test_release_mask_is_key_padding_only():
    tower = release_tower(4)
    ids, _ = rows()
    with torch.no_grad():
        base = tower(ids)
        # bidirectional: a caption row reads a later word, which a causal mask forbids
        feats = tower.forward_features(ids)
        later = ids.clone()
        later[0, 3] = (later[0, 3] + 1 - 5) % (V - 5) + 5
        changed = tower.forward_features(later)
        # the row of word 1 (sequence position k = 4) sees word 3 (position k + 2)
        assert not torch.allclose(feats[0, 4], changed[0, 4])
        # padding after [SEP] reaches nothing
        padded = ids.clone()
        padded[0, 7:] = 9
        torch.testing.assert_close(tower(padded)[0], base[0])
    mask = tower._padding_mask(tower.eot_positions(ids), ids.shape[1] + 3)
    assert mask.shape == (3, 1, 1, ids.shape[1] + 3)  # one row of keys per caption, no query axis


def test_release_sphere_pools_position_zero_not_eot():
    tower = release_tower(1)
    ids, _ = rows()
    with torch.no_grad():
        feats = tower.ln_final(tower.forward_features(ids))
        torch.testing.assert_close(tower(ids)[:, 0], feats[:, 0])
        assert not torch.allclose(tower(ids)[:, 0], feats[torch.arange(3), tower.eot_positions(ids)])


def test_release_text_options_are_checked():
    with pytest.raises(ValueError, match="mask: expected one of"):
        TextTransformer(V, L, W, 1, HEADS, mask="bidirectional")
    with pytest.raises(ValueError, match="pool: expected one of"):
        TextTransformer(V, L, W, 1, HEADS, pool="cls")
    with pytest.raises(ValueError, match="norm: expected one of"):
        TextTransformer(V, L, W, 1, HEADS, norm="sandwich")
    with pytest.raises(ValueError, match="text_mask: expected one of"):
        build_model("tiny", text_mask="full")
    with pytest.raises(ValueError, match="text_embed_norm: expected true or false"):
        build_model("tiny", text_embed_norm="yes")


def test_every_other_registered_config_keeps_clips_text_tower():
    for name in list_models():
        if name.endswith("-release"):
            continue
        c = model_config(name)
        assert (c.text_mask, c.text_norm, c.text_embed_norm, c.text_pool) == ("causal", "pre", False, "eot")
    for name in ("tiny", "tiny-oblique"):  # the large ones share the same code path
        text = build_model(name).text
        assert text.ln_embedding is None and text.transformer.norm == "pre" and text.mask == "causal"
        assert not any("ln_embedding" in n for n, _ in text.named_parameters())


def _torch_encoder_parameters(width: int, heads: int, layers: int) -> int:
    """Parameters of the release's ``nn.TransformerEncoder``, counted from torch's own modules."""
    with torch.device("meta"):
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width, dropout=0.0,
                                           activation="gelu")
        encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    return sum(p.numel() for p in encoder.parameters())


@pytest.mark.parametrize(("name", "k", "d"), [("ViT-B-16-oblique-release", 16, 32),
                                              ("ViT-B-16-sphere-release", 1, 512)])
def test_release_configs_build_the_released_structure(name, k, d):
    c = model_config(name)
    model = build_model(name, device="meta")
    text, vision = model.text, model.vision
    # text tower: WordPiece ids, k copies of [CLS], ln_embedding, post-norm, key padding only
    assert text.token_embedding.weight.shape == (30522, 512)
    assert text.positional_embedding.shape == (77 + k - 1, 512)
    assert text.ln_embedding.weight.shape == (512,)
    assert text.mask == "padding" and text.pool == "first" and text.tokens == k
    assert len(text.transformer.blocks) == 12 and text.transformer.norm == "post"
    assert text.transformer.blocks[0].attn.heads == 8
    # image tower: ViT-B/16 with k class tokens; heads: one bias-free projection each
    assert vision.class_embedding.shape == (k, 768)
    assert vision.positional_embedding.shape == (196 + k, 768)
    assert model.image_head.proj.weight.shape == (d, 768) and model.image_head.proj.bias is None
    assert model.text_head.proj.weight.shape == (d, 512)
    # parameter count: the text blocks as torch's nn.TransformerEncoder, the rest written out
    text_count = (30522 * 512 + (77 + k - 1) * 512 + 2 * 512 + _torch_encoder_parameters(512, 8, 12)
                  + 2 * 512)
    block = 12 * 768**2 + 13 * 768
    vision_count = 3 * 16**2 * 768 + k * 768 + (196 + k) * 768 + 2 * 768 + 12 * block + 2 * 768
    heads = 768 * d + 512 * d
    assert sum(p.numel() for p in text.parameters()) == text_count
    assert sum(p.numel() for p in model.parameters()) == text_count + vision_count + heads + 1
    # temperature: log-scale starts at log(1/0.07) (the release); cap exp(3.95) oblique, 100 sphere
    assert c.temperature == "learnable" and c.temperature_init == pytest.approx(1 / 0.07)
    cap = math.exp(3.95) if k > 1 else 100.0
    assert c.temperature_max == pytest.approx(cap)


def test_clip_checkpoints_are_never_matched_to_the_release_tower():
    from manifold_align.pretrained.architecture import sphere_names

    assert "ViT-B-16-sphere-release" not in sphere_names()
    assert {"tiny", "ViT-B-32", "ViT-B-16", "ViT-L-14"} <= set(sphere_names())
