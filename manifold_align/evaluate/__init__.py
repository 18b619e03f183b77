"""Evaluation of embeddings on a manifold: zero-shot classification, retrieval, geometry.

Every metric takes plain tensors of manifold points and the manifold, so it can be used (and
tested) without a model; [manifold_align.evaluate.encode][manifold_align.evaluate.encode] turns a model and data into
such points, [manifold_align.evaluate.suite][manifold_align.evaluate.suite] runs everything on held-out data, and
[manifold_align.cli.eval][manifold_align.cli.eval] is ``manifold-align eval``.
"""

from manifold_align.evaluate.encode import (
    encode_batches,
    encode_captions,
    encode_images,
    encode_tokens,
    evaluating,
)
from manifold_align.evaluate.geometry import (
    alignment,
    geometry_diagnostics,
    similarity_gap,
    token_similarity_stats,
    uniformity,
)
from manifold_align.evaluate.retrieval import retrieval_recall, topk_indices
from manifold_align.evaluate.zeroshot import (
    build_classifier,
    build_classifier_from_prompts,
    classify,
    fill_templates,
)

__all__ = [
    "alignment",
    "build_classifier",
    "build_classifier_from_prompts",
    "classify",
    "encode_batches",
    "encode_captions",
    "encode_images",
    "encode_tokens",
    "evaluating",
    "fill_templates",
    "geometry_diagnostics",
    "retrieval_recall",
    "similarity_gap",
    "token_similarity_stats",
    "topk_indices",
    "uniformity",
]
