"""Pretrained CLIP in and out: OpenCLIP files and Hugging Face folders, OpenCLIP-style entry points.

* :func:`load_pretrained`: an OpenCLIP ``state_dict`` file or a Hugging Face ``CLIPModel``
  folder -> our sphere :class:`~manifold_align.models.TwoTower` (format and architecture
  detected; ``safetensors`` and ``torch`` only, no peer package needed).
* :func:`export_openclip`, :func:`export_huggingface`: back out, loadable by the peers.
* :func:`create_model_and_transforms`, :func:`create_model`, :func:`get_tokenizer`:
  OpenCLIP's entry points with its argument names, so switching is an import line.
"""

from manifold_align.pretrained.errors import CheckpointMismatchError, PretrainedError
from manifold_align.pretrained.export import export_huggingface, export_openclip
from manifold_align.pretrained.factory import (
    create_model,
    create_model_and_transforms,
    get_tokenizer,
)
from manifold_align.pretrained.load import load_pretrained

__all__ = [
    "CheckpointMismatchError",
    "PretrainedError",
    "create_model",
    "create_model_and_transforms",
    "export_huggingface",
    "export_openclip",
    "get_tokenizer",
    "load_pretrained",
]
