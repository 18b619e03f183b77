"""Encoders with ``k`` output tokens, the head onto the manifold, the two-tower model, named configs.

* :class:`VisionTransformer`: ViT with ``k`` class tokens, ``(B, C, H, W) -> (B, k, W_v)``.
* :class:`TextTransformer`: causal text transformer, ``(B, L) -> (B, k, W_t)``.
* :class:`ManifoldHead`: shared projection of the ``k`` tokens then ``manifold.projx``.
* :class:`TwoTower`: ``encode_image``, ``encode_text`` (manifold points) and ``forward`` (the loss).
* :func:`build_model`, :func:`list_models`, :func:`model_config`, :class:`ModelConfig`:
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
