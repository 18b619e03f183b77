"""Our sphere [TwoTower][manifold_align.models.two_tower.TwoTower] out to OpenCLIP and Hugging Face.

* [export_openclip][manifold_align.pretrained.export.export_openclip]: a ``state_dict`` file that ``open_clip.create_model(name)`` loads
  with ``strict=True`` (``name`` is ours, with ``-quickgelu`` for a QuickGELU model; see
  `openclip_name`).
* [export_huggingface][manifold_align.pretrained.export.export_huggingface]: a folder (``config.json`` + ``model.safetensors``) that
  ``transformers.CLIPModel.from_pretrained(folder)`` loads.

Every tensor of the model is written; one that neither layout has (a sigmoid loss's bias, an
oblique model's extra tokens) is an error, never dropped.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from manifold_align.models import ModelConfig, TwoTower
from manifold_align.pretrained.errors import PretrainedError
from manifold_align.pretrained.formats import write_json, write_tensors
from manifold_align.pretrained.huggingface import huggingface_config, huggingface_rules
from manifold_align.pretrained.layout import Rule, to_peer
from manifold_align.pretrained.openclip import openclip_rules

__all__ = ["export_huggingface", "export_openclip"]

_LOGIT_SCALE = "loss.temperature.logit_scale"


def _config(model: TwoTower) -> ModelConfig:
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise PretrainedError(
            "model: has no ModelConfig (build it with build_model or load_pretrained)"
        )
    if config.manifold != "sphere" or config.tokens != 1:
        raise PretrainedError(
            f"model: OpenCLIP and Hugging Face CLIP are sphere models with one class token; "
            f"this one is manifold={config.manifold!r} with tokens={config.tokens}"
        )
    return config


def _state(model: TwoTower, rules: list[Rule], layout: str) -> dict[str, torch.Tensor]:
    """Our tensors in the peer's layout; the temperature's log-scale as ``logit_scale``."""
    state = dict(model.state_dict())
    state[_LOGIT_SCALE] = model.temperature.log_scale.detach().reshape(())
    leftover = sorted(set(state) - {r.ours for r in rules})
    if leftover:
        raise PretrainedError(
            f"model: tensors {', '.join(leftover[:5])} have no place in {layout}'s layout"
        )
    return to_peer(rules, state)


def _refuse_overwrite(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it")


def export_openclip(model: TwoTower, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` as an OpenCLIP ``state_dict`` (``.safetensors``, or ``torch.save`` for ``.pt``/``.bin``).

    The text tower must pool at ``argmax`` of the ids as OpenCLIP does: ``eot_id`` ``None`` or
    the largest id of the vocabulary (the two agree on every row that holds its end token).

    Returns:
        ``path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false (nothing is written).
        ~manifold_align.pretrained.PretrainedError: the model is not a sphere CLIP, pools at
            another end token, holds a tensor OpenCLIP has no place for, or ``path`` has an
            unknown suffix.
    """
    config = _config(model)
    if config.eot_id not in (None, config.vocab_size - 1):
        raise PretrainedError(
            f"model: its text tower pools at the first eot_id={config.eot_id}, OpenCLIP's at "
            f"argmax of the ids; they agree only for eot_id None or {config.vocab_size - 1}"
        )
    path = Path(path)
    _refuse_overwrite(path, overwrite)
    return write_tensors(_state(model, openclip_rules(config), "OpenCLIP"), path)


def export_huggingface(
    model: TwoTower, folder: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Write ``model`` as a ``CLIPModel`` folder: ``config.json`` and ``model.safetensors``.

    The folder is created if needed. ``eot_id=None`` is written as ``eos_token_id = 2`` (the
    value that makes ``transformers`` pool at ``argmax``); any other ``eot_id`` as itself.

    Returns:
        ``folder``.

    Raises:
        FileExistsError: ``folder`` already holds ``config.json`` or ``model.safetensors`` and
            ``overwrite`` is false (nothing is written).
        ~manifold_align.pretrained.PretrainedError: the model is not a sphere CLIP or holds a
            tensor ``CLIPModel`` has no place for.
    """
    config = _config(model)
    folder = Path(folder)
    for name in ("config.json", "model.safetensors"):
        _refuse_overwrite(folder / name, overwrite)
    tensors = _state(model, huggingface_rules(config), "Hugging Face CLIPModel")
    folder.mkdir(parents=True, exist_ok=True)
    write_tensors(tensors, folder / "model.safetensors")
    write_json(huggingface_config(config, float(tensors["logit_scale"])), folder / "config.json")
    return folder
