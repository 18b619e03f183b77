"""manifold_align.pretrained against real Hugging Face ``CLIPModel`` s (random weights).

Architectures: ``CLIPConfig()``'s defaults (OpenAI's ViT-B/32: QuickGELU, ``eos_token_id``
49407, pooled at its first occurrence) and our ``tiny`` sizes with GELU and the hub's legacy
``eos_token_id = 2`` (pooled at ``argmax``). Every parameter of the peer is perturbed first.
"""

from __future__ import annotations

import open_clip
import pytest
import torch
from pretrained_support import CAPTIONS, TOL, assert_state_equal, perturb, tiny_tokens
from transformers import CLIPConfig, CLIPModel

from manifold_align.models import build_model
from manifold_align.pretrained import PretrainedError, export_huggingface, load_pretrained

pytestmark = pytest.mark.filterwarnings("ignore")



def tiny_config(**text) -> CLIPConfig:
    """Our ``tiny``'s sizes as a ``CLIPConfig``."""
    return CLIPConfig(
        text_config={"vocab_size": 1024, "hidden_size": 128, "intermediate_size": 512,
                     "num_hidden_layers": 3, "num_attention_heads": 4,
                     "max_position_embeddings": 32, **text},
        vision_config={"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 3,
                       "num_attention_heads": 4, "image_size": 64, "patch_size": 8},
        projection_dim=128,
    )




def max_diff(peer: CLIPModel, ours, images, tokens) -> tuple[float, float]:
    with torch.no_grad():
        out = peer(input_ids=tokens, pixel_values=images)
        image = (out.image_embeds - ours.encode_image(images)).abs().max()
        text = (out.text_embeds - ours.encode_text(tokens)).abs().max()
    print(f"max |ours - peer|: image {float(image):.2e}, text {float(text):.2e}")  # shown by -rP
    return float(image), float(text)



def test_vit_b_32_from_save_pretrained_embeds_like_transformers(tmp_path):
    torch.manual_seed(0)
    peer = perturb(CLIPModel(CLIPConfig()), seed=0)
    peer.save_pretrained(tmp_path / "peer")
    ours = load_pretrained(tmp_path / "peer")
    assert ours.config.activation == "quick_gelu" and ours.config.eot_id == 49407
    assert ours.config.vision_width == 768 and ours.config.patch_size == 32
    images = torch.randn(2, 3, 224, 224)
    tokens = open_clip.get_tokenizer("ViT-B-32")(CAPTIONS)
    image, text = max_diff(peer, ours, images, tokens)
    assert image <= TOL and text <= TOL, (image, text)
    # ours -> transformers -> ours is bit-identical.
    back = CLIPModel.from_pretrained(export_huggingface(ours, tmp_path / "ours"))
    assert_state_equal(back.state_dict(), peer.state_dict())
    assert_state_equal(load_pretrained(tmp_path / "ours").state_dict(), ours.state_dict())


@pytest.mark.parametrize(
    ("text", "act", "eot_id"),
    [({"eos_token_id": 2, "hidden_act": "gelu"}, "gelu", None), ({"eos_token_id": 1023}, "quick_gelu", 1023)],
)
def test_tiny_loads_and_round_trips_through_transformers(tmp_path, text, act, eot_id):
    torch.manual_seed(1)
    config = tiny_config(**text)
    config.vision_config.hidden_act = config.text_config.hidden_act
    peer = perturb(CLIPModel(config), seed=1)
    peer.save_pretrained(tmp_path / "peer")
    ours = load_pretrained(tmp_path / "peer", "tiny")
    assert (ours.config.activation, ours.config.eot_id) == (act, eot_id)
    images, tokens = torch.randn(3, 3, 64, 64), tiny_tokens()
    image, diff_text = max_diff(peer, ours, images, tokens)
    assert image <= TOL and diff_text <= TOL, (image, diff_text)
    back = CLIPModel.from_pretrained(export_huggingface(ours, tmp_path / "ours"))
    assert_state_equal(back.state_dict(), peer.state_dict())
    image, diff_text = max_diff(back, ours, images, tokens)
    assert image <= TOL and diff_text <= TOL


def test_our_model_exported_to_transformers_embeds_like_ours(tmp_path):
    torch.manual_seed(2)
    ours = perturb(build_model("tiny", activation="quick_gelu"), seed=2)
    peer = CLIPModel.from_pretrained(export_huggingface(ours, tmp_path / "ours")).eval()
    image, text = max_diff(peer, ours, torch.randn(2, 3, 64, 64), tiny_tokens())
    assert image <= TOL and text <= TOL, (image, text)
    assert_state_equal(load_pretrained(tmp_path / "ours").state_dict(), ours.state_dict())


def test_a_transformers_model_of_other_sizes_is_refused(tmp_path):
    config = tiny_config()
    config.text_config.num_attention_heads = 8
    CLIPModel(config).save_pretrained(tmp_path / "peer")
    with pytest.raises(PretrainedError, match="no registered architecture"):
        load_pretrained(tmp_path / "peer")
    with pytest.raises(PretrainedError, match=r"text_heads: config\.json 8, tiny 4"):
        load_pretrained(tmp_path / "peer", "tiny")
