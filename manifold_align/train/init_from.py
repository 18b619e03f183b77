"""``model.init_from``: start a run from trained weights, converting sphere -> oblique if asked.

A fresh run whose config names ``model.init_from: PATH``:

1. loads the source (`load_source`): a run folder or checkpoint of ours
   ([load_trained][manifold_align.train.run.load_trained], with its tokenizer, which the run then
   uses: token ids must mean what the source's embedding rows learnt), or an OpenCLIP /
   Hugging Face checkpoint through ``manifold_align.pretrained.load_pretrained`` (the run's
   ``data.tokenizer`` must then be that model's tokenizer; `check_tokenizer` refuses one
   that makes the model read the text at another token than the pretrained model did);
2. builds the run's model from ``model.name`` as usual and fills it (`initialize_from`):
   the source's weights one for one when both sit on the same manifold, or
   [sphere_to_oblique][manifold_align.models.convert.sphere_to_oblique] when the source is a sphere
   model and ``model.name`` an oblique one;
3. writes that model as the run's ``step_00000000`` checkpoint
   (`save_initial_checkpoint`), so ``manifold-align eval`` measures the starting point
   and ``--resume latest`` restarts from it.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from manifold_align.config import ConfigError
from manifold_align.data.skipped import SkippedSamples
from manifold_align.data.tokenizer import Tokenizer
from manifold_align.manifolds import Oblique, Sphere
from manifold_align.models.convert import sphere_to_oblique
from manifold_align.models.two_tower import TwoTower
from manifold_align.train.checkpoint import save_checkpoint

__all__ = [
    "InitSource",
    "check_tokenizer",
    "initialize_from",
    "load_source",
    "save_initial_checkpoint",
]


@dataclass
class InitSource:
    """A loaded ``model.init_from``: the model and, for our own runs, its tokenizer."""

    model: TwoTower
    tokenizer: Tokenizer | None
    path: Path


def _is_ours(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).exists() for name in ("checkpoints", "state.json", "latest")
    )


def load_source(path: str | Path) -> InitSource:
    """Load ``model.init_from``: our run folder or checkpoint, else a pretrained file/folder.

    Raises:
        ConfigError: ``path`` does not exist, holds no complete checkpoint, or is a pretrained
            file while ``manifold_align.pretrained`` is not installed (naming the key).
    """
    from manifold_align.train.checkpoint import CheckpointError
    from manifold_align.train.run import load_trained

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"model.init_from: {path} does not exist")
    if _is_ours(path):
        try:
            model, tokenizer, _ = load_trained(path)
        except CheckpointError as exc:
            raise ConfigError(f"model.init_from: {exc}") from None
        return InitSource(model, tokenizer, path)
    try:
        from manifold_align.pretrained import load_pretrained
    except ImportError:
        raise ConfigError(
            f"model.init_from: {path} is not a run folder or checkpoint of manifold-align, and "
            f"loading OpenCLIP / Hugging Face weights needs manifold_align.pretrained, which "
            f"this installation lacks"
        ) from None
    try:
        model = load_pretrained(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"model.init_from: {exc}") from None
    return InitSource(model, None, path)


def check_tokenizer(source: InitSource, model: TwoTower, tokenizer: Tokenizer) -> None:
    """Refuse a run tokenizer under which ``model`` would pool the text unlike the pretrained source.

    An OpenCLIP source (``eot_id`` ``None``) reads each caption at its row's largest id, CLIP's
    end token; ``model`` reads it at ``model.config.eot_id`` (the tokenizer's end id unless
    ``model.overrides.eot_id`` says otherwise). The two agree on every row iff that id is the
    tokenizer's largest, $\\mathrm{eot} = V - 1$. A run of ours brings its own tokenizer and is
    not checked.

    Raises:
        ConfigError: naming ``data.tokenizer``, the end id and the largest id.
    """
    pooled = model.config.eot_id if model.config is not None else None
    if source.tokenizer is not None or source.model.config.eot_id is not None or pooled is None:
        return
    if pooled != tokenizer.vocab_size - 1:
        raise ConfigError(
            f"data.tokenizer: model.init_from {source.path} reads each caption at its largest "
            f"id (CLIP's end-of-text), but this tokenizer's end id {pooled} is not its largest "
            f"id {tokenizer.vocab_size - 1}; use that model's own tokenizer (data.tokenizer: "
            f"clip for CLIP's)"
        )


@torch.no_grad()
def initialize_from(model: TwoTower, source: TwoTower, sot_id: int, **convert: Any) -> None:
    """Overwrite ``model``'s weights with ``source``'s, converted onto its manifold if needed.

    Same manifold: the state is copied one for one (strict). Sphere source, oblique
    ``model``: [sphere_to_oblique][manifold_align.models.convert.sphere_to_oblique] with ``model.config``
    as the target and ``sot_id`` the tokenizer's start id (``convert``: its other keywords).
    A source that pools at each row's largest id (``eot_id`` ``None``: OpenCLIP's) is
    converted as pooling at ``model.config.eot_id``, the run tokenizer's end token (the
    largest id of its rows, see `check_tokenizer`), so the summary rows imitate that token.

    Raises:
        ConfigError: another pair of manifolds, or weights that do not fit (naming the
            first offending key and both shapes).
    """
    src, dst = source.manifold, model.manifold
    if isinstance(src, Sphere) and isinstance(dst, Oblique):
        try:
            if source.config.eot_id is None and model.config.eot_id is not None:
                source = copy.copy(source)  # the same tensors; only the config read differs
                source.config = dataclasses.replace(source.config, eot_id=model.config.eot_id)
            source = sphere_to_oblique(source, model.config, sot_id=sot_id, **convert)
        except ValueError as exc:
            raise ConfigError(f"model.init_from: {exc}") from None
    elif type(src) is not type(dst) or src.point_shape != dst.point_shape:
        raise ConfigError(
            f"model.init_from: cannot start a model on {dst!r} from one on {src!r}; "
            f"only the same manifold or a sphere -> oblique conversion is supported"
        )
    target = model.state_dict()
    state = source.state_dict()
    for name in sorted(set(target) | set(state)):
        if name not in state or name not in target:
            where = "source" if name not in state else "model"
            raise ConfigError(f"model.init_from: key {name!r} is missing from the {where}")
        if state[name].shape != target[name].shape:
            raise ConfigError(
                f"model.init_from: {name} has shape {tuple(state[name].shape)} in the source, "
                f"the model expects {tuple(target[name].shape)} (check model.name and overrides)"
            )
    model.load_state_dict(state)


def save_initial_checkpoint(
    run_dir: str | Path,
    model: torch.nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    config_tree: dict[str, Any],
    global_batch: int,
    world_size: int,
    files: dict[str, str | Path],
) -> Path:
    """Write ``model`` as the run's step-0 checkpoint (resumable: no batch consumed yet).

    Returns:
        The checkpoint directory ``<run>/checkpoints/step_00000000``.
    """
    extra = {"batches": 0, "skipped": SkippedSamples().to_dict(), "global_batch": global_batch,
             "world_size": world_size}
    return save_checkpoint(Path(run_dir) / "checkpoints", 0, model, optimizers, extra,
                           config_tree, files=files)
