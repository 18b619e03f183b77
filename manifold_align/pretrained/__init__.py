"""Pretrained CLIP in and out: OpenCLIP files and Hugging Face folders, OpenCLIP-style entry points.

* [load_pretrained][manifold_align.pretrained.load.load_pretrained]: an OpenCLIP ``state_dict`` file or a Hugging Face ``CLIPModel``
  folder -> our sphere [TwoTower][manifold_align.models.two_tower.TwoTower] (format and architecture
  detected; ``safetensors`` and ``torch`` only, no peer package needed).
* [export_openclip][manifold_align.pretrained.export.export_openclip], [export_huggingface][manifold_align.pretrained.export.export_huggingface]: back out, loadable by the peers.
* [create_model_and_transforms][manifold_align.pretrained.factory.create_model_and_transforms], [create_model][manifold_align.pretrained.factory.create_model], [get_tokenizer][manifold_align.pretrained.factory.get_tokenizer]:
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
