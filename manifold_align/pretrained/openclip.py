"""OpenCLIP's names for our sphere CLIP tensors (``open_clip.model.CLIP``'s ``state_dict``).

Our model and OpenCLIP's ``CLIP`` hold the same tensors one for one; only names and three
layouts differ:

| ours | OpenCLIP |
| --- | --- |
| ``vision.class_embedding`` ``(1, W)`` | ``visual.class_embedding`` ``(W,)`` |
| ``vision.transformer.blocks.{i}.attn.in_proj.weight`` | ``visual.transformer.resblocks.{i}.attn.in_proj_weight`` |
| ``image_head.proj.weight`` ``(d, W)`` | ``visual.proj`` ``(W, d)`` (transposed) |
| ``text.token_embedding.weight``, ``text.positional_embedding``, ``text.ln_final.*`` | the same without ``text.`` |
| ``text_head.proj.weight`` ``(d, W)`` | ``text_projection`` ``(W, d)`` (transposed) |
| ``loss.temperature.logit_scale`` | ``logit_scale`` |

OpenCLIP pools the text tower at ``argmax`` of the ids (our ``eot_id=None``) and does not
record the MLP activation in the ``state_dict``: ``ViT-B-32`` is GELU, ``ViT-B-32-quickgelu``
(OpenAI's weights) QuickGELU, so the name says which.
"""

from __future__ import annotations

from manifold_align.models import ModelConfig
from manifold_align.pretrained.architecture import QUICKGELU_SUFFIX
from manifold_align.pretrained.layout import Rule, transformer_rules

__all__ = ["openclip_name", "openclip_rules"]

_BLOCK = {
    "ln_1.weight": "ln_1.weight",
    "ln_1.bias": "ln_1.bias",
    "attn.in_proj.weight": "attn.in_proj_weight",
    "attn.in_proj.bias": "attn.in_proj_bias",
    "attn.out_proj.weight": "attn.out_proj.weight",
    "attn.out_proj.bias": "attn.out_proj.bias",
    "ln_2.weight": "ln_2.weight",
    "ln_2.bias": "ln_2.bias",
    "mlp.c_fc.weight": "mlp.c_fc.weight",
    "mlp.c_fc.bias": "mlp.c_fc.bias",
    "mlp.c_proj.weight": "mlp.c_proj.weight",
    "mlp.c_proj.bias": "mlp.c_proj.bias",
}


def openclip_rules(config: ModelConfig) -> list[Rule]:
    """The [Rule][manifold_align.pretrained.layout.Rule] s of a sphere ``config`` in OpenCLIP's layout.

    Raises:
        ValueError: if ``config`` is not a sphere model (``tokens != 1``).
    """
    if config.manifold != "sphere" or config.tokens != 1:
        raise ValueError(
            f"config: OpenCLIP's CLIP is a sphere model with one class token, got "
            f"manifold={config.manifold!r}, tokens={config.tokens}"
        )
    rules = [
        Rule("vision.class_embedding", ("visual.class_embedding",), "flatten"),
        Rule("vision.positional_embedding", ("visual.positional_embedding",)),
        Rule("vision.conv1.weight", ("visual.conv1.weight",)),
        Rule("vision.ln_pre.weight", ("visual.ln_pre.weight",)),
        Rule("vision.ln_pre.bias", ("visual.ln_pre.bias",)),
        *transformer_rules(
            "vision.transformer.blocks", "visual.transformer.resblocks", config.vision_layers, _BLOCK
        ),
        Rule("vision.ln_post.weight", ("visual.ln_post.weight",)),
        Rule("vision.ln_post.bias", ("visual.ln_post.bias",)),
        Rule("image_head.proj.weight", ("visual.proj",), "transpose"),
        Rule("text.token_embedding.weight", ("token_embedding.weight",)),
        Rule("text.positional_embedding", ("positional_embedding",)),
        *transformer_rules(
            "text.transformer.blocks", "transformer.resblocks", config.text_layers, _BLOCK
        ),
        Rule("text.ln_final.weight", ("ln_final.weight",)),
        Rule("text.ln_final.bias", ("ln_final.bias",)),
        Rule("text_head.proj.weight", ("text_projection",), "transpose"),
        Rule("loss.temperature.logit_scale", ("logit_scale",)),
    ]
    return rules


def openclip_name(name: str, config: ModelConfig) -> str:
    """OpenCLIP's model name for our architecture ``name`` with ``config``'s activation.

    ``("ViT-B-32", gelu) -> "ViT-B-32"``, ``("ViT-B-32", quick_gelu) -> "ViT-B-32-quickgelu"``.
    """
    base = name.removesuffix(QUICKGELU_SUFFIX)
    return base + QUICKGELU_SUFFIX if config.activation == "quick_gelu" else base
