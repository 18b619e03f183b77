"""``load_pretrained``: a CLIP checkpoint (OpenCLIP file or Hugging Face folder) into our model.

The result is the [TwoTower][manifold_align.models.two_tower.TwoTower] of the matching registered sphere
architecture, float32, with the checkpoint's tensors copied one for one (a layout change at
most, see [manifold_align.pretrained.layout][manifold_align.pretrained.layout]) and its learned ``logit_scale`` as the
learnable [Temperature][manifold_align.losses.temperature.Temperature]'s (``scale = exp(logit_scale)``).
"""

from __future__ import annotations

import dataclasses
import os

import torch

from manifold_align.models import ModelConfig, TwoTower, build_model, model_config
from manifold_align.pretrained.architecture import (
    QUICKGELU_SUFFIX,
    expected_shapes,
    infer_name,
    resolve_name,
    sphere_names,
)
from manifold_align.pretrained.errors import PretrainedError, check_shapes
from manifold_align.pretrained.formats import Checkpoint, read_checkpoint
from manifold_align.pretrained.huggingface import (
    ARCHITECTURE_FIELDS,
    config_from_huggingface,
    huggingface_rules,
)
from manifold_align.pretrained.layout import from_peer
from manifold_align.pretrained.openclip import openclip_rules

__all__ = ["load_pretrained"]

_POSITION_IDS = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")


def _openclip_config(ckpt: Checkpoint, name: str | None) -> tuple[str, ModelConfig]:
    found = {k: tuple(v.shape) for k, v in ckpt.tensors.items()}
    if name is None:
        name = infer_name(found, openclip_rules, str(ckpt.path), "OpenCLIP")
    return name, resolve_name(name)[1]


def _huggingface_config(ckpt: Checkpoint, name: str | None) -> tuple[str, ModelConfig]:
    fields = config_from_huggingface(ckpt.config or {}, str(ckpt.path / "config.json"))
    behaviour = {"activation": fields.pop("activation"), "eot_id": fields.pop("eot_id")}
    if name is None:
        matches = [
            n for n in sphere_names()
            if all(getattr(model_config(n), f) == fields[f] for f in ARCHITECTURE_FIELDS)
        ]
        if len(matches) != 1:
            shown = ", ".join(f"{f}={fields[f]}" for f in ARCHITECTURE_FIELDS)
            raise PretrainedError(
                f"{ckpt.path}: config.json ({shown}) matches "
                + (f"several architectures ({', '.join(matches)}); pass name=" if matches
                   else f"no registered architecture ({', '.join(sphere_names())})")
            )
        name = matches[0]
    base, config = resolve_name(name)
    differ = [
        f"{f}: config.json {fields[f]}, {base} {getattr(config, f)}"
        for f in ARCHITECTURE_FIELDS
        if getattr(config, f) != fields[f]
    ]
    if differ:
        raise PretrainedError(f"{ckpt.path}: not a {base} checkpoint; " + "; ".join(differ))
    if name.endswith(QUICKGELU_SUFFIX) and behaviour["activation"] != "quick_gelu":
        raise PretrainedError(
            f"{ckpt.path}: name {name!r} asks for QuickGELU but config.json's hidden_act is "
            f"{behaviour['activation']!r}"
        )
    return base, dataclasses.replace(config, **behaviour)


def _drop_position_ids(ckpt: Checkpoint) -> None:
    """Older ``transformers`` stored ``position_ids = arange(n)`` buffers; accept exactly those."""
    for key in _POSITION_IDS:
        ids = ckpt.tensors.get(key)
        if ids is None:
            continue
        if not torch.equal(ids.reshape(-1).long(), torch.arange(ids.numel())):
            raise PretrainedError(f"{ckpt.path}: {key} is not arange({ids.numel()}); refusing to drop it")
        del ckpt.tensors[key]


def load_pretrained(
    path: str | os.PathLike,
    name: str | None = None,
    *,
    device: torch.device | str | None = None,
) -> TwoTower:
    """Load a CLIP checkpoint into our sphere [TwoTower][manifold_align.models.two_tower.TwoTower].

    Args:
        path: an OpenCLIP ``state_dict`` file (``.safetensors``, or ``.pt``/``.pth``/``.bin``
            read with ``torch.load(weights_only=True)``; the ``{"state_dict": ...}`` wrapper
            and ``module.`` prefixes are accepted) or a Hugging Face ``CLIPModel`` folder
            (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``).
        name: our architecture (``"ViT-B-32"``, ``"ViT-B-16"``, ``"ViT-L-14"``, ``"tiny"``),
            with ``-quickgelu`` for OpenAI's QuickGELU weights in an OpenCLIP file (a
            Hugging Face ``config.json`` states its activation itself). ``None`` infers it
            from the tensor shapes (OpenCLIP, read as GELU) or the ``config.json``.
        device: where the model is built; ``None`` is torch's default device.

    Returns:
        The model in eval mode, float32, on ``device``; ``model.config`` records the
        architecture, the activation and the text pooling (``eot_id``: ``None`` pools at
        ``argmax`` of the ids as OpenCLIP does).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ~manifold_align.pretrained.PretrainedError: an unreadable or unknown file, a
            ``config.json`` we cannot express, a name that does not fit, or (as
            [CheckpointMismatchError][manifold_align.pretrained.errors.CheckpointMismatchError]) tensors whose keys or
            shapes are not the architecture's, naming the first offending keys.
        ValueError: an unknown or oblique ``name``.
    """
    ckpt = read_checkpoint(path)
    scale = ckpt.tensors.get("logit_scale")
    if scale is not None and scale.dim() > 0 and scale.numel() == 1:
        ckpt.tensors["logit_scale"] = scale.reshape(())  # some writers store it as (1,)
    if ckpt.format == "openclip":
        name, config = _openclip_config(ckpt, name)
        rules, layout = openclip_rules(config), "OpenCLIP"
    else:
        _drop_position_ids(ckpt)
        name, config = _huggingface_config(ckpt, name)
        rules, layout = huggingface_rules(config), "Hugging Face CLIPModel"
    found = {k: tuple(v.shape) for k, v in ckpt.tensors.items()}
    check_shapes(found, expected_shapes(config, rules), str(ckpt.path), f"{name} in {layout}'s layout")
    bad = sorted(k for k, v in ckpt.tensors.items() if not v.is_floating_point())
    if bad:
        raise PretrainedError(f"{ckpt.path}: tensors {', '.join(bad[:5])} are not floating point")
    model = build_model(config, device=device)
    model.load_state_dict(from_peer(rules, ckpt.tensors), strict=True)
    return model.eval()
