"""Turning images, token ids or caption strings into manifold points, a batch at a time.

Each helper runs its encoder under ``torch.no_grad`` (and optionally bfloat16 autocast; the
model's heads still return float32 points), moves every batch to ``device``, checks that the
output is ``(B, *point_shape)`` and finite, and concatenates the batches into one
``(N, *point_shape)`` tensor on ``device``. Only one batch of inputs is held at a time, so a
``DataLoader`` over a large evaluation set streams through.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal

import torch
from torch import nn

from manifold_align.manifolds import ContrastiveManifold

__all__ = [
    "encode_batches",
    "encode_captions",
    "encode_images",
    "encode_tokens",
    "evaluating",
    "text_encoder",
]

Precision = Literal["fp32", "bf16"]


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (dropout off) for the block; restore its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _check_precision(precision: str) -> None:
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision: expected 'fp32' or 'bf16', got {precision!r}")


def _in_batches(x: torch.Tensor | Iterable, batch_size: int) -> Iterable:
    """A tensor is cut into ``batch_size`` rows at a time; any other iterable passes through."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if isinstance(x, torch.Tensor):
        return (x[i : i + batch_size] for i in range(0, x.shape[0], batch_size))
    return x


def encode_batches(
    encode: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[torch.Tensor | Sequence],
    manifold: ContrastiveManifold,
    *,
    device: torch.device | str = "cpu",
    precision: Precision = "fp32",
    name: str = "encode",
) -> torch.Tensor:
    """Concatenate ``encode(batch)`` over ``batches`` into ``(N, *point_shape)`` on ``device``.

    A batch is a tensor, or a tuple/list whose first entry is the tensor (as a ``DataLoader``
    over ``(input, target)`` pairs yields).

    Raises:
        ValueError: if there are no batches, an output is not ``(B, *point_shape)`` for the
            batch's ``B``, holds NaN/Inf, or is off the manifold by more than
            `MEMBERSHIP_ATOL` (naming ``name``, the batch number and the deviation).
    """
    _check_precision(precision)
    device = torch.device(device)
    ps = tuple(manifold.point_shape)
    out = []
    autocast = torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"
    )
    with torch.no_grad(), autocast:
        for b, batch in enumerate(batches):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            x = x.to(device, non_blocking=True)
            y = encode(x)
            if tuple(y.shape) != (x.shape[0], *ps):
                raise ValueError(
                    f"{name}: batch {b} gave shape {tuple(y.shape)}, expected "
                    f"({x.shape[0]}, {', '.join(map(str, ps))}) for {manifold!r}"
                )
            if not torch.isfinite(y).all():
                raise ValueError(f"{name}: batch {b} gave NaN or infinite points")
            manifold.check_membership(y, f"{name}: batch {b}")  # O(B D), like the line above
            out.append(y.float() if y.dtype in (torch.float16, torch.bfloat16) else y)
    if not out:
        raise ValueError(f"{name}: no batches to encode")
    return torch.cat(out)


def encode_images(
    model: nn.Module,
    images: torch.Tensor | Iterable,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    precision: Precision = "fp32",
) -> torch.Tensor:
    """``model.encode_image`` over ``images`` in eval mode: ``(N, *point_shape)``.

    Args:
        model: a two-tower model (``encode_image``, ``manifold``).
        images: a tensor ``(N, C, H, W)`` (cut into ``batch_size`` rows) or an iterable of
            batches (e.g. a ``DataLoader`` yielding ``images`` or ``(images, ...)``).
        batch_size: rows per batch when ``images`` is a tensor.
        device: where to run; defaults to the model's device.
        precision: ``"bf16"`` runs the towers under bfloat16 autocast.

    Raises:
        ValueError: as [encode_batches][manifold_align.evaluate.encode.encode_batches], or a non-positive ``batch_size``.
    """
    return _encode_with(model, "encode_image", images, batch_size, device, precision)


def encode_tokens(
    model: nn.Module,
    tokens: torch.Tensor | Iterable,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    precision: Precision = "fp32",
) -> torch.Tensor:
    """``model.encode_text`` over token ids ``(N, L)`` (or batches of them) in eval mode.

    Raises:
        ValueError: as [encode_batches][manifold_align.evaluate.encode.encode_batches], or a non-positive ``batch_size``.
    """
    return _encode_with(model, "encode_text", tokens, batch_size, device, precision)


def _encode_with(
    model: nn.Module,
    method: str,
    inputs: torch.Tensor | Iterable,
    batch_size: int,
    device: torch.device | str | None,
    precision: Precision,
) -> torch.Tensor:
    """``model.<method>`` over ``inputs`` (a tensor cut into batches, or batches) in eval mode."""
    device = _model_device(model) if device is None else torch.device(device)
    with evaluating(model):
        return encode_batches(
            getattr(model, method),
            _in_batches(inputs, batch_size),
            model.manifold,
            device=device,
            precision=precision,
            name=method,
        )


def encode_captions(
    model: nn.Module,
    tokenize: Callable[[list[str]], torch.Tensor],
    captions: Sequence[str],
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    precision: Precision = "fp32",
) -> torch.Tensor:
    """Tokenize and encode caption strings ``batch_size`` at a time: ``(N, *point_shape)``.

    Raises:
        ValueError: as [encode_batches][manifold_align.evaluate.encode.encode_batches], or a non-positive ``batch_size``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    texts = list(captions)
    batches = (tokenize(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size))
    return encode_tokens(model, batches, device=device, precision=precision)


def text_encoder(
    model: nn.Module, device: torch.device | str | None = None, precision: Precision = "fp32"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``tokens (B, L) -> model.encode_text(tokens on device)`` as float32, under the precision.

    ``device`` defaults to the model's; the result suits
    [build_classifier_from_prompts][manifold_align.evaluate.zeroshot.build_classifier_from_prompts].
    """
    _check_precision(precision)
    target = _model_device(model) if device is None else torch.device(device)

    def encode(tokens: torch.Tensor) -> torch.Tensor:
        with torch.autocast(
            device_type=target.type, dtype=torch.bfloat16, enabled=precision == "bf16"
        ):
            return model.encode_text(tokens.to(target)).float()

    return encode
