"""OpenCLIP's entry points over our models: switching is an import line.

>>> import manifold_align.pretrained as open_clip                          # doctest: +SKIP
>>> model, _, preprocess = open_clip.create_model_and_transforms(
...     "ViT-B-32", pretrained="open_clip_model.safetensors")             # doctest: +SKIP
>>> tokenizer = open_clip.get_tokenizer("ViT-B-32")                        # doctest: +SKIP

Arguments keep OpenCLIP's names and meanings where both have them. What differs:
``pretrained`` is a local path (a file saved by OpenCLIP or a Hugging Face folder), never a
download tag; ``encode_image``/``encode_text`` already return unit vectors (OpenCLIP's
``normalize=True``); the scale is ``model.temperature.scale`` (OpenCLIP's
``model.logit_scale.exp()``), and ``model(images, tokens)`` returns the loss.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from manifold_align.models import TwoTower, build_model
from manifold_align.pretrained.architecture import QUICKGELU_SUFFIX, resolve_name
from manifold_align.pretrained.load import load_pretrained

__all__ = ["create_model", "create_model_and_transforms", "get_tokenizer"]

_PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "amp": torch.float32,
    "amp_bf16": torch.float32,
    "amp_bfloat16": torch.float32,
    "fp16": torch.float16,
    "pure_fp16": torch.float16,
    "bf16": torch.bfloat16,
    "pure_bf16": torch.bfloat16,
}
CLIP_VOCAB_SIZE = 49408
"""The vocabulary of OpenAI's CLIP tokenizer, which [get_tokenizer][manifold_align.pretrained.factory.get_tokenizer] returns."""
OPENCLIP_TRAIN_SCALE = (0.9, 1.0)
"""OpenCLIP's default area range of the training crop."""


def _name(model_name: str, force_quick_gelu: bool) -> str:
    if force_quick_gelu and not model_name.endswith(QUICKGELU_SUFFIX):
        return model_name + QUICKGELU_SUFFIX
    return model_name


def create_model(
    model_name: str,
    pretrained: str | os.PathLike | None = None,
    load_weights: bool = True,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    jit: bool = False,
    force_quick_gelu: bool = False,
    **model_kwargs: Any,
) -> TwoTower:
    """Our model for OpenCLIP's ``model_name``, random or loaded from ``pretrained``.

    Args:
        model_name: ``"ViT-B-32"``, ``"ViT-B-16"``, ``"ViT-L-14"``, ``"tiny"``, each also with
            ``-quickgelu`` (QuickGELU MLPs, OpenAI's weights).
        pretrained: ``None`` (random weights) or the local path of an OpenCLIP ``state_dict``
            file or a Hugging Face ``CLIPModel`` folder (see
            [load_pretrained][manifold_align.pretrained.load.load_pretrained]).
        load_weights: ``False`` ignores ``pretrained`` (random weights), as OpenCLIP.
        precision: ``"fp32"`` and the ``"amp*"`` modes keep float32 weights; ``"fp16"``,
            ``"pure_fp16"``, ``"bf16"``, ``"pure_bf16"`` cast every weight (layer norms too;
            the heads still project and normalise in float32).
        device: where the model lives.
        jit: must be false (no TorchScript here).
        force_quick_gelu: QuickGELU MLPs, as the ``-quickgelu`` suffix.
        **model_kwargs: [ModelConfig][manifold_align.models.registry.ModelConfig] overrides for a random
            model (none with ``pretrained``: the checkpoint fixes the architecture).

    Raises:
        ValueError: an unknown name or precision, ``jit=True``, or overrides with
            ``pretrained``; a ``pretrained`` that is a download tag rather than a path.
        FileNotFoundError, ~manifold_align.pretrained.PretrainedError: from loading.
    """
    if jit:
        raise ValueError("jit: TorchScript models are not supported; use jit=False")
    if precision not in _PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(_PRECISIONS)}, got {precision!r}")
    name = _name(model_name, force_quick_gelu)
    if pretrained is None or not load_weights:
        _, config = resolve_name(name)
        model = build_model(config, device=device, **model_kwargs)
    else:
        if model_kwargs:
            raise ValueError(
                f"model_kwargs: {', '.join(sorted(model_kwargs))} cannot change a pretrained "
                f"architecture; the checkpoint fixes it"
            )
        if not os.path.exists(pretrained):
            raise ValueError(
                f"pretrained: {str(pretrained)!r} is not an existing file or folder; "
                f"manifold-align loads local checkpoints only (no download tags: save the "
                f"OpenCLIP model's state_dict, or a Hugging Face save_pretrained folder)"
            )
        model = load_pretrained(pretrained, name, device=device).train()
    return model.to(dtype=_PRECISIONS[precision])


def create_model_and_transforms(
    model_name: str,
    pretrained: str | os.PathLike | None = None,
    load_weights: bool = True,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    jit: bool = False,
    force_quick_gelu: bool = False,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    **model_kwargs: Any,
) -> tuple[TwoTower, Any, Any]:
    """``(model, preprocess_train, preprocess_val)`` as OpenCLIP returns them.

    ``preprocess_val``: RGB, bicubic resize of the shorter side to the model's image size,
    centre crop, ``x = (p / 255 - mean) / std`` with CLIP's mean and std (or ``image_mean``,
    ``image_std``). ``preprocess_train``: a random resized crop of area ``U(0.9, 1)`` instead
    of resize and crop (OpenCLIP's default; no flip). Both are
    [ImageTransform][manifold_align.data.transforms.ImageTransform] s (Pillow, no torchvision).
    Other arguments as [create_model][manifold_align.pretrained.factory.create_model].

    Raises:
        ValueError, FileNotFoundError, ~manifold_align.pretrained.PretrainedError: as
            [create_model][manifold_align.pretrained.factory.create_model] raises them; ``ValueError`` also for a mean/std that is not 3
            numbers.
    """
    from manifold_align.data.transforms import CLIP_MEAN, CLIP_STD, ImageTransform

    model = create_model(
        model_name, pretrained, load_weights, precision, device, jit, force_quick_gelu,
        **model_kwargs,
    )
    size = model.config.image_size
    mean = CLIP_MEAN if image_mean is None else tuple(image_mean)
    std = CLIP_STD if image_std is None else tuple(image_std)
    train = ImageTransform(size, mean, std, train=True, scale=OPENCLIP_TRAIN_SCALE)
    return model, train, ImageTransform(size, mean, std)


def get_tokenizer(model_name: str = "", context_length: int | None = None) -> Any:
    """OpenAI CLIP's BPE tokenizer (offline) for ``model_name``: ``texts -> (N, L)`` ids.

    Args:
        model_name: one of our CLIP architectures (``""``: the default CLIP tokenizer).
        context_length: ``L``; default the model's (77 for the CLIP sizes).

    Raises:
        ValueError: an unknown name, or a model whose vocabulary is not CLIP's 49,408
            (``tiny``: use [manifold_align.data.tokenizer.default_tokenizer][manifold_align.data.tokenizer.default_tokenizer] or your own).
    """
    length = 77
    if model_name:
        base, config = resolve_name(model_name)
        if config.vocab_size != CLIP_VOCAB_SIZE:
            raise ValueError(
                f"model_name: {base!r} has a vocabulary of {config.vocab_size}, not CLIP's "
                f"{CLIP_VOCAB_SIZE}; tokenize for it with manifold_align.data.tokenizer"
            )
        length = config.context_length
    from manifold_align.data.tokenizer import clip_tokenizer

    return clip_tokenizer(context_length=length if context_length is None else context_length)
