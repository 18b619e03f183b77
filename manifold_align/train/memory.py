"""What one rank's GPU holds during training: a memory model of the towers and the loss.

Per rank, with ``P`` parameters, per-rank batch ``b``, ``W`` ranks, global batch ``B = W b``,
flat feature dimension ``D`` (``tokens x token_dim``) and activation element size ``e`` bytes
(4 in fp32, 2 under bf16 autocast):

* **Model state**: fp32 weights, gradients and the two Adam moments, ``4 + 4 + 8 = 16 P``
  bytes (AdamW and Riemannian Adam keep the same two moments per entry); under bf16
  autocast, the cached bf16 copies of the weights add ``2 P``.
* **Activations** of a pre-norm transformer block with a 4x MLP, per sample, for ``s`` tokens
  of width ``h``: ``c s h e`` bytes with ``c = 17`` saved ``s x h`` tensors (two LayerNorm
  inputs, the QKV input, Q, K, V, the attention output, the projection input, the MLP input,
  the ``4h`` hidden before and after GELU), with fused attention (PyTorch's
  ``scaled_dot_product_attention`` on GPU keeps no ``s x s`` scores). Summed over the
  ``L`` layers of both towers: ``b sum_towers L c s h e``. With gradient checkpointing each
  block keeps only its fp32 input (``4 s h``) and one block at a time is recomputed:
  ``b sum_towers (4 L s h + c s h e)``.
* **Loss** (float32 logits, see docs/losses.md): dense InfoNCE ``4 * 4 b B`` (two ``b x B``
  blocks and their softmax), tiled ``2 * 4 T B``; the sigmoid loss works in strips of ``T``
  rows (512 unless ``loss_tile_size`` says otherwise): ring ``2 * 4 min(T, b) b``, gather
  ``2 * 4 min(T, b) B``; plus the gathered features and their gradients,
  ``2 * 4 * 2 B D`` (InfoNCE) or ``2 * 4 B D`` (sigmoid).

It leaves out the CUDA context (~0.5 GiB), the allocator's fragmentation, the
communication buckets of DDP (``4 P`` bytes at most) and the input batch; count 10-20 % on
top. It is a model for planning, not a measurement.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch

from manifold_align.losses.tiled import SIGMOID_TILE
from manifold_align.models.registry import ModelConfig, build_model, model_config

__all__ = [
    "ACTIVATION_TENSORS",
    "MemoryEstimate",
    "activation_bytes",
    "estimate_memory",
    "loss_bytes",
    "memory_table",
    "parameter_count",
]

#: ``c``: saved ``s x h`` tensors per transformer block and sample (see the module docstring).
ACTIVATION_TENSORS = 17

GiB = 2**30
LossKind = Literal["infonce", "infonce-tiled", "sigmoid-ring", "sigmoid-gather"]


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one rank holds at the peak of a training step, by part.

    Attributes:
        parameters: parameter count ``P``.
        model_state: weights, gradients and Adam moments (``16 P``, plus ``2 P`` under bf16).
        activations: both towers' saved activations for the rank's batch.
        loss: the loss's logits and the gathered features with their gradients.
    """

    parameters: int
    model_state: int
    activations: int
    loss: int

    @property
    def total(self) -> int:
        """``model_state + activations + loss``."""
        return self.model_state + self.activations + self.loss


def parameter_count(config: ModelConfig | str) -> int:
    """``P``: the model's parameters, counted on a model built on the ``meta`` device (no memory).

    Raises:
        ValueError: an unknown model name.
    """
    config = model_config(config) if isinstance(config, str) else config
    with torch.device("meta"):
        model = build_model(config)
    return sum(p.numel() for p in model.parameters())


def _element_bytes(precision: str) -> int:
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision: expected 'fp32' or 'bf16', got {precision!r}")
    return 4 if precision == "fp32" else 2


def activation_bytes(
    config: ModelConfig, batch: int, precision: str = "bf16", grad_checkpointing: bool | None = None
) -> int:
    """Both towers' saved activations for ``batch`` samples (see the module docstring).

    Vision tokens ``s = (image_size / patch_size)^2 + tokens``; text tokens
    ``s = context_length``. ``grad_checkpointing=None`` takes the config's setting.

    Raises:
        ValueError: ``batch < 1`` or an unknown ``precision``.
    """
    if batch < 1:
        raise ValueError(f"batch: expected >= 1, got {batch}")
    e = _element_bytes(precision)
    ckpt = config.grad_checkpointing if grad_checkpointing is None else grad_checkpointing
    vision_tokens = (config.image_size // config.patch_size) ** 2 + config.tokens
    per_sample = 0
    for layers, tokens, width in (
        (config.vision_layers, vision_tokens, config.vision_width),
        (config.text_layers, config.context_length, config.text_width),
    ):
        block = ACTIVATION_TENSORS * tokens * width * e
        per_sample += (4 * layers * tokens * width + block) if ckpt else layers * block
    return batch * per_sample


def loss_bytes(kind: LossKind, batch: int, world_size: int, dim: int, tile: int = 1024) -> int:
    """The loss's working memory on one rank (float32; see the module docstring).

    Args:
        kind: ``"infonce"``, ``"infonce-tiled"``, ``"sigmoid-ring"`` or ``"sigmoid-gather"``.
        batch: ``b``, pairs per rank.
        world_size: ``W``; the global batch is ``B = W b``.
        dim: ``D``, the flat feature dimension.
        tile: ``T``, rows per strip of the tiled InfoNCE and of the sigmoid loss.

    Raises:
        ValueError: an unknown ``kind`` or a non-positive size.
    """
    for name, value in (("batch", batch), ("world_size", world_size), ("dim", dim), ("tile", tile)):
        if value < 1:
            raise ValueError(f"{name}: expected >= 1, got {value}")
    b, B = batch, batch * world_size
    if kind == "infonce":
        return 4 * 4 * b * B + 2 * 4 * 2 * B * dim
    if kind == "infonce-tiled":
        return 2 * 4 * min(tile, b) * B + 2 * 4 * 2 * B * dim
    if kind == "sigmoid-ring":
        return 2 * 4 * min(tile, b) * b + 2 * 4 * 2 * b * dim
    if kind == "sigmoid-gather":
        return 2 * 4 * min(tile, b) * B + 2 * 4 * B * dim
    raise ValueError(
        f"kind: expected 'infonce', 'infonce-tiled', 'sigmoid-ring' or 'sigmoid-gather', got {kind!r}"
    )


def estimate_memory(
    config: ModelConfig | str,
    batch: int,
    world_size: int = 1,
    precision: str = "bf16",
    grad_checkpointing: bool | None = None,
    loss: LossKind | None = None,
) -> MemoryEstimate:
    """One rank's peak training memory for model ``config`` at per-rank batch ``batch``.

    ``loss=None`` takes the config's loss (``infonce``, tiled when ``loss_tile_size`` is set,
    or ``sigmoid-ring``).

    Raises:
        ValueError: an unknown model name, precision or loss kind, or a non-positive size.
    """
    config = model_config(config) if isinstance(config, str) else config
    params = parameter_count(config)
    state = 16 * params + (2 * params if _element_bytes(precision) == 2 else 0)
    if loss is None:
        if config.loss == "sigmoid":
            loss = "sigmoid-ring"
        else:
            loss = "infonce-tiled" if config.loss_tile_size else "infonce"
    dim = config.tokens * config.token_dim
    default_tile = SIGMOID_TILE if loss.startswith("sigmoid") else 1024
    return MemoryEstimate(
        parameters=params,
        model_state=state,
        activations=activation_bytes(config, batch, precision, grad_checkpointing),
        loss=loss_bytes(loss, batch, world_size, dim, config.loss_tile_size or default_tile),
    )


def memory_table(
    rows: list[tuple[str, int, int, bool]], precision: str = "bf16", loss: LossKind = "infonce"
) -> str:
    """A Markdown table of [estimate_memory][manifold_align.train.memory.estimate_memory] for ``(model, batch, world_size, grad_ckpt)`` rows."""
    lines = [
        f"| model | per-GPU batch | GPUs (global batch) | grad ckpt | params | model state "
        f"| activations | loss ({loss}) | total |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, batch, world_size, ckpt in rows:
        cfg = dataclasses.replace(model_config(name), grad_checkpointing=ckpt)
        est = estimate_memory(cfg, batch, world_size, precision, ckpt, loss)
        lines.append(
            f"| {name} | {batch} | {world_size} ({batch * world_size}) | {'yes' if ckpt else 'no'} "
            f"| {est.parameters / 1e6:.1f} M | {est.model_state / GiB:.2f} GiB "
            f"| {est.activations / GiB:.2f} GiB | {est.loss / GiB:.2f} GiB "
            f"| {est.total / GiB:.1f} GiB |"
        )
    return "\n".join(lines)
