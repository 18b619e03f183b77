"""Encoders with ``k`` output tokens, the head onto the manifold, the two-tower model, named configs.

* [VisionTransformer][manifold_align.models.vision.VisionTransformer]: ViT with ``k`` class tokens, ``(B, C, H, W) -> (B, k, W_v)``.
* [TextTransformer][manifold_align.models.text.TextTransformer]: causal text transformer, ``(B, L) -> (B, k, W_t)``.
* [ManifoldHead][manifold_align.models.head.ManifoldHead]: shared projection of the ``k`` tokens then ``manifold.projx``.
* [TwoTower][manifold_align.models.two_tower.TwoTower]: ``encode_image``, ``encode_text`` (manifold points) and ``forward`` (the loss).
* [build_model][manifold_align.models.registry.build_model], [list_models][manifold_align.models.registry.list_models], [model_config][manifold_align.models.registry.model_config], [ModelConfig][manifold_align.models.registry.ModelConfig]:
  ``tiny``, ``ViT-B-32``, ``ViT-B-16``, ``ViT-L-14``, each also as ``-oblique``.
"""

from manifold_align.models.head import ManifoldHead
from manifold_align.models.registry import ModelConfig, build_model, list_models, model_config
from manifold_align.models.text import TextTransformer
from manifold_align.models.transformer import Transformer
from manifold_align.models.two_tower import Features, TwoTower
from manifold_align.models.vision import VisionTransformer

__all__ = [
    "Features",
    "ManifoldHead",
    "ModelConfig",
    "TextTransformer",
    "Transformer",
    "TwoTower",
    "VisionTransformer",
    "build_model",
    "list_models",
    "model_config",
]
