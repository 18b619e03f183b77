"""Hugging Face ``transformers``' ``CLIPModel``: its tensor names and its ``config.json``.

Names: ``vision_model.*`` / ``text_model.*`` towers whose blocks
(``encoder.layers.{i}``) split our fused input projection into ``self_attn.{q,k,v}_proj``,
``pre_layrnorm`` / ``post_layernorm`` around the vision stack, ``final_layer_norm`` after the
text stack, ``visual_projection.weight`` and ``text_projection.weight`` stored ``(d, W)`` as
ours, and ``logit_scale``.

Configuration: ``save_pretrained`` writes only the values that differ from ``CLIPConfig``'s
defaults, so `config_from_huggingface` fills the rest with those defaults
(``_TEXT_DEFAULTS``, ``_VISION_DEFAULTS``). Pooling of the text tower:

* ``eos_token_id == 2`` (the configuration of OpenAI's checkpoints on the hub) makes
  ``transformers`` pool at ``argmax`` of the ids: our ``eot_id=None``;
* any other ``eos_token_id`` pools at its first occurrence: our ``eot_id``. (A row without
  it pools at position 0 in ``transformers`` and at ``L - 1`` here; CLIP's tokenizers always
  write the end token.)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from manifold_align.models import ModelConfig
from manifold_align.pretrained.errors import PretrainedError
from manifold_align.pretrained.layout import Rule, transformer_rules

__all__ = ["config_from_huggingface", "huggingface_config", "huggingface_rules"]

LEGACY_EOS = 2
"""An ``eos_token_id`` of 2 selects ``argmax`` pooling in ``transformers``' CLIP."""

_TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 512,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "eos_token_id": 49407,
}
_VISION_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 32,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
_PROJECTION_DEFAULT = 512
_ACTIVATIONS = {"gelu": "gelu", "quick_gelu": "quick_gelu"}  # HF name -> ours
_LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's, which our towers use

_BLOCK = {
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "attn.in_proj.weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    "attn.in_proj.bias": ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"),
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}


def huggingface_rules(config: ModelConfig) -> list[Rule]:
    """The [Rule][manifold_align.pretrained.layout.Rule] s of a sphere ``config`` in ``CLIPModel``'s layout.

    Raises:
        ValueError: if ``config`` is not a sphere model (``tokens != 1``).
    """
    if config.manifold != "sphere" or config.tokens != 1:
        raise ValueError(
            f"config: Hugging Face's CLIPModel is a sphere model with one class token, got "
            f"manifold={config.manifold!r}, tokens={config.tokens}"
        )
    v, t = "vision_model", "text_model"
    return [
        Rule("vision.class_embedding", (f"{v}.embeddings.class_embedding",), "flatten"),
        Rule("vision.positional_embedding", (f"{v}.embeddings.position_embedding.weight",)),
        Rule("vision.conv1.weight", (f"{v}.embeddings.patch_embedding.weight",)),
        Rule("vision.ln_pre.weight", (f"{v}.pre_layrnorm.weight",)),
        Rule("vision.ln_pre.bias", (f"{v}.pre_layrnorm.bias",)),
        *transformer_rules("vision.transformer.blocks", f"{v}.encoder.layers", config.vision_layers, _BLOCK),
        Rule("vision.ln_post.weight", (f"{v}.post_layernorm.weight",)),
        Rule("vision.ln_post.bias", (f"{v}.post_layernorm.bias",)),
        Rule("image_head.proj.weight", ("visual_projection.weight",)),
        Rule("text.token_embedding.weight", (f"{t}.embeddings.token_embedding.weight",)),
        Rule("text.positional_embedding", (f"{t}.embeddings.position_embedding.weight",)),
        *transformer_rules("text.transformer.blocks", f"{t}.encoder.layers", config.text_layers, _BLOCK),
        Rule("text.ln_final.weight", (f"{t}.final_layer_norm.weight",)),
        Rule("text.ln_final.bias", (f"{t}.final_layer_norm.bias",)),
        Rule("text_head.proj.weight", ("text_projection.weight",)),
        Rule("loss.temperature.logit_scale", ("logit_scale",)),
    ]


def _int(section: Mapping[str, Any], key: str, where: str) -> int:
    """``section[key]`` as an int; a square ``[n, n]`` (image and patch sizes) counts as ``n``.

    Raises:
        PretrainedError: naming ``where.key`` for anything else.
    """
    value = section[key]
    if isinstance(value, (list, tuple)) and len(value) in (1, 2) and len(set(value)) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise PretrainedError(f"{where}.{key}: expected an integer, got {value!r}")
    return value


def config_from_huggingface(cfg: Mapping[str, Any], source: str = "config.json") -> dict[str, Any]:
    """Our [ModelConfig][manifold_align.models.registry.ModelConfig] fields read from a ``CLIPModel`` ``config.json``.

    Returns:
        ``vision_width, vision_layers, vision_heads, patch_size, image_size, text_width,
        text_layers, text_heads, vocab_size, context_length, token_dim, activation, eot_id``.

    Raises:
        PretrainedError: naming the key, for another ``model_type`` than ``"clip"``, an MLP
            that is not ``4 x`` the width, a layer-norm epsilon other than ``1e-5``, other
            than 3 image channels, an activation other than ``gelu``/``quick_gelu``, or
            different activations in the two towers.
    """
    model_type = cfg.get("model_type", "clip")
    if model_type != "clip":
        raise PretrainedError(f"{source}: model_type is {model_type!r}, expected 'clip' (CLIPModel)")
    text = {**_TEXT_DEFAULTS, **(cfg.get("text_config") or {})}
    vision = {**_VISION_DEFAULTS, **(cfg.get("vision_config") or {})}
    acts = []
    for where, section in ((f"{source} text_config", text), (f"{source} vision_config", vision)):
        width = _int(section, "hidden_size", where)
        if _int(section, "intermediate_size", where) != 4 * width:
            raise PretrainedError(
                f"{where}.intermediate_size: expected 4 x hidden_size = {4 * width}, "
                f"got {section['intermediate_size']}"
            )
        eps = section["layer_norm_eps"]
        if not math.isclose(float(eps), _LAYER_NORM_EPS, rel_tol=1e-9):
            raise PretrainedError(f"{where}.layer_norm_eps: expected {_LAYER_NORM_EPS}, got {eps}")
        act = section["hidden_act"]
        if act not in _ACTIVATIONS:
            raise PretrainedError(
                f"{where}.hidden_act: expected one of {sorted(_ACTIVATIONS)}, got {act!r}"
            )
        acts.append(_ACTIVATIONS[act])
    if acts[0] != acts[1]:
        raise PretrainedError(
            f"{source}: text_config.hidden_act {acts[0]!r} and vision_config.hidden_act "
            f"{acts[1]!r} differ; both towers share one activation here"
        )
    if _int(vision, "num_channels", f"{source} vision_config") != 3:
        raise PretrainedError(f"{source} vision_config.num_channels: expected 3, got {vision['num_channels']}")
    eos = _int(text, "eos_token_id", f"{source} text_config")
    return {
        "vision_width": vision["hidden_size"],
        "vision_layers": _int(vision, "num_hidden_layers", f"{source} vision_config"),
        "vision_heads": _int(vision, "num_attention_heads", f"{source} vision_config"),
        "patch_size": _int(vision, "patch_size", f"{source} vision_config"),
        "image_size": _int(vision, "image_size", f"{source} vision_config"),
        "text_width": text["hidden_size"],
        "text_layers": _int(text, "num_hidden_layers", f"{source} text_config"),
        "text_heads": _int(text, "num_attention_heads", f"{source} text_config"),
        "vocab_size": _int(text, "vocab_size", f"{source} text_config"),
        "context_length": _int(text, "max_position_embeddings", f"{source} text_config"),
        "token_dim": cfg.get("projection_dim", _PROJECTION_DEFAULT),
        "activation": acts[0],
        "eot_id": None if eos == LEGACY_EOS else eos,
    }


def huggingface_config(config: ModelConfig, logit_scale: float) -> dict[str, Any]:
    """A complete ``CLIPModel`` ``config.json`` for a sphere ``config`` (every field written).

    ``eot_id=None`` (``argmax`` pooling) is written as ``eos_token_id = 2``, the value that
    selects ``argmax`` pooling in ``transformers``; ``logit_scale`` (the log of the scale)
    becomes ``logit_scale_init_value``.
    """
    if config.manifold != "sphere" or config.tokens != 1:
        raise ValueError(f"config: expected a sphere model, got manifold={config.manifold!r}")
    eos = LEGACY_EOS if config.eot_id is None else config.eot_id
    common = {"hidden_act": config.activation, "layer_norm_eps": _LAYER_NORM_EPS, "projection_dim": config.token_dim}
    text = {
        "model_type": "clip_text_model",
        "vocab_size": config.vocab_size,
        "hidden_size": config.text_width,
        "intermediate_size": 4 * config.text_width,
        "num_hidden_layers": config.text_layers,
        "num_attention_heads": config.text_heads,
        "max_position_embeddings": config.context_length,
        "eos_token_id": eos,
        **common,
    }
    vision = {
        "model_type": "clip_vision_model",
        "hidden_size": config.vision_width,
        "intermediate_size": 4 * config.vision_width,
        "num_hidden_layers": config.vision_layers,
        "num_attention_heads": config.vision_heads,
        "num_channels": 3,
        "image_size": config.image_size,
        "patch_size": config.patch_size,
        **common,
    }
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": config.token_dim,
        "logit_scale_init_value": float(logit_scale),
        "text_config": text,
        "vision_config": vision,
        "dtype": "float32",
    }


ARCHITECTURE_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(ModelConfig)
    if f.name
    in (
        "vision_width", "vision_layers", "vision_heads", "patch_size", "image_size",
        "text_width", "text_layers", "text_heads", "vocab_size", "context_length", "token_dim",
    )
)
"""The [ModelConfig][manifold_align.models.registry.ModelConfig] fields a ``config.json`` fixes and a registered name must match."""
