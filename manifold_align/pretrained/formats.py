"""Reading and writing checkpoint files: OpenCLIP ``state_dict`` files and Hugging Face folders.

Never a full pickle: ``.pt``/``.pth``/``.bin``/``.ckpt`` files are read with
``torch.load(weights_only=True)`` (tensors and plain containers only), ``.safetensors`` with
``safetensors``. What [read_checkpoint][manifold_align.pretrained.formats.read_checkpoint] accepts:

* a **file** in OpenCLIP's layout: the bare ``state_dict``, or the ``{"state_dict": ...}``
  its trainer writes (with ``epoch``, ``optimizer``, ...), with or without the ``module.``
  prefix of ``DistributedDataParallel`` on every key;
* a **folder** as ``CLIPModel.save_pretrained`` writes it: ``config.json`` and
  ``model.safetensors`` (or ``pytorch_model.bin``; sharded ``*.index.json`` too).
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from manifold_align.pretrained.errors import PretrainedError

__all__ = ["Checkpoint", "read_checkpoint", "read_tensors", "write_json", "write_tensors"]

_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_SAFETENSORS = ".safetensors"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
HF_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_DDP_PREFIX = "module."


@dataclass
class Checkpoint:
    """What [read_checkpoint][manifold_align.pretrained.formats.read_checkpoint] found.

    Attributes:
        format: ``"openclip"`` or ``"huggingface"``.
        tensors: key -> tensor, unwrapped (no ``state_dict`` wrapper, no ``module.`` prefix).
        path: the file or folder read.
        config: the parsed ``config.json`` of a Hugging Face folder, else ``None``.
    """

    format: Literal["openclip", "huggingface"]
    tensors: dict[str, torch.Tensor]
    path: Path
    config: dict[str, Any] | None = None


def _safetensors():
    try:
        import safetensors.torch
    except ImportError as exc:  # pragma: no cover - safetensors ships with the train extra
        raise ImportError(
            "reading or writing .safetensors needs the 'safetensors' package: "
            "pip install 'manifold-align[train]'"
        ) from exc
    return safetensors.torch


def read_tensors(path: str | os.PathLike) -> dict[str, Any]:
    """The raw mapping stored in one file (``.safetensors`` or a ``weights_only`` torch file).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        PretrainedError: for another suffix, a file ``weights_only`` refuses (a full pickle or
            a TorchScript archive) or one that is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    suffix = path.suffix.lower()
    if suffix == _SAFETENSORS:
        try:
            return dict(_safetensors().load_file(str(path), device="cpu"))
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise PretrainedError(f"{path}: not a readable .safetensors file ({exc})") from None
    if suffix not in _PICKLE_SUFFIXES:
        raise PretrainedError(
            f"{path}: unknown checkpoint suffix {path.suffix!r}; expected .safetensors or one "
            f"of {', '.join(_PICKLE_SUFFIXES)} (read with torch.load(weights_only=True))"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PretrainedError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({first}); only plain "
            f"state_dicts are loaded, never a full pickle or a TorchScript archive (load such a "
            f"file yourself, from a source you trust, and save its state_dict())"
        ) from None
    if not isinstance(data, Mapping):
        raise PretrainedError(f"{path}: expected a state_dict (a mapping), got {type(data).__name__}")
    return dict(data)


def _unwrap(data: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """Drop OpenCLIP's trainer wrapper and the ``module.`` prefix; check every value is a tensor."""
    if "state_dict" in data and isinstance(data["state_dict"], Mapping):
        data = data["state_dict"]
    tensors = dict(data)
    if tensors and all(k.startswith(_DDP_PREFIX) for k in tensors):
        tensors = {k[len(_DDP_PREFIX) :]: v for k, v in tensors.items()}
    bad = sorted(k for k, v in tensors.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise PretrainedError(
            f"{path}: entries {', '.join(map(repr, bad[:5]))} are not tensors; expected a "
            f"state_dict (or OpenCLIP's {{'state_dict': ...}} wrapper)"
        )
    return tensors


def _shards(folder: Path) -> list[Path]:
    """The weight files a ``*.index.json`` of ``folder`` names.

    Raises:
        PretrainedError: no index (and no weights file), or an index without a ``weight_map``.
    """
    for index in HF_INDEXES:
        if (folder / index).is_file():
            try:
                weight_map = json.loads((folder / index).read_text())["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise PretrainedError(f"{folder / index}: no readable weight_map ({exc})") from None
            return [folder / name for name in sorted(set(weight_map.values()))]
    raise PretrainedError(
        f"{folder}: no weights found; expected one of {', '.join(HF_WEIGHTS + HF_INDEXES)}"
    )


def _read_folder(folder: Path) -> Checkpoint:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise PretrainedError(
            f"{folder}: a folder checkpoint needs config.json and {' or '.join(HF_WEIGHTS)} "
            f"(as CLIPModel.save_pretrained writes them); config.json is missing"
        )
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise PretrainedError(f"{config_file}: not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise PretrainedError(f"{config_file}: expected a JSON object, got {type(config).__name__}")
    # One weights file (model.safetensors preferred), else the shards an index names.
    files = [folder / name for name in HF_WEIGHTS if (folder / name).is_file()][:1]
    if not files:
        files = _shards(folder)
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        tensors.update(_unwrap(read_tensors(file), file))
    return Checkpoint("huggingface", tensors, folder, config)


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read an OpenCLIP checkpoint file or a Hugging Face ``CLIPModel`` folder.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        PretrainedError: unreadable file, unknown suffix, non-tensor entries, a folder without
            ``config.json`` or weights, or a file holding Hugging Face names (pass its folder,
            whose ``config.json`` fixes the architecture) or neither layout's names.
    """
    path = Path(path)
    if path.is_dir():
        return _read_folder(path)
    tensors = _unwrap(read_tensors(path), path)
    if any(k.startswith(("vision_model.", "text_model.")) for k in tensors):
        raise PretrainedError(
            f"{path}: holds Hugging Face CLIPModel names; pass the folder that holds it and its "
            f"config.json instead of the file"
        )
    if not any(k.startswith("visual.") for k in tensors):
        first = ", ".join(sorted(tensors)[:5]) or "(none)"
        raise PretrainedError(
            f"{path}: neither OpenCLIP ('visual.*') nor Hugging Face CLIP names; first keys: {first}"
        )
    return Checkpoint("openclip", tensors, path)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_tensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write ``tensors`` to ``path`` atomically: ``.safetensors``, else ``torch.save``.

    Raises:
        PretrainedError: for a suffix other than ``.safetensors``, ``.pt``, ``.pth``, ``.bin``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == _SAFETENSORS:
        st = _safetensors()
        _atomic_write(path, lambda p: st.save_file(dict(tensors), str(p), metadata={"format": "pt"}))
    elif suffix in _PICKLE_SUFFIXES:
        _atomic_write(path, lambda p: torch.save(dict(tensors), p))
    else:
        raise PretrainedError(
            f"{path}: unknown suffix {path.suffix!r}; expected .safetensors or one of "
            f"{', '.join(_PICKLE_SUFFIXES)}"
        )
    return path


def write_json(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    path = Path(path)
    _atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n"))
    return path
