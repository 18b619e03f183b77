"""Input checks shared by the losses: shapes, batch lengths, dtypes, devices, finiteness."""

from __future__ import annotations

import math

import torch

from manifold_align.manifolds.base import ContrastiveManifold

__all__ = [
    "check_finite_scalar",
    "check_logits",
    "check_tile_size",
    "first_order_only",
    "flat_pair",
]


def first_order_only(name: str) -> None:
    """Raise inside a hand-written backward asked for second derivatives.

    Autograd runs a backward with grad mode on exactly when the caller asked for
    ``create_graph=True`` (a gradient penalty, a Hessian-vector product). The hand-written
    backwards here compute their gradients without a graph of their own, so continuing would
    make every second derivative through them silently zero; ``once_differentiable`` raises
    only when the incoming gradient requires grad, which a plain penalty's does not.

    Raises:
        RuntimeError: grad mode is on, naming ``name`` and the way out.
    """
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"{name}: the backward is hand-written and first-order only; second derivatives "
            f"(create_graph=True) are not supported. For a gradient penalty, build the logits "
            f"with manifold.similarity and use torch.nn.functional.cross_entropy, which "
            f"autograd differentiates twice."
        )


def check_tile_size(tile_size: object) -> None:
    """Accept ``None`` or a positive int (``True`` is not a tile size).

    Raises:
        ValueError: anything else, naming ``tile_size``.
    """
    if tile_size is not None and (
        isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1
    ):
        raise ValueError(f"tile_size: expected None or a positive int, got {tile_size!r}")


def _check_points(manifold: ContrastiveManifold, t: object, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {t.dtype}")
    manifold._check_trailing(t, name)
    ps = tuple(manifold.point_shape)
    if t.dim() != len(ps) + 1 or t.shape[0] == 0:
        raise ValueError(
            f"{name}: expected shape (B, {', '.join(map(str, ps))}) with B >= 1 for {manifold!r}, "
            f"got {tuple(t.shape)}"
        )
    return t


def _check_finite(t: torch.Tensor, name: str) -> None:
    bad = ~torch.isfinite(t)
    if bool(bad.any()):  # the device sync that makes this check opt-in
        rows = bad.reshape(t.shape[0], -1).any(dim=1).nonzero().flatten()
        raise ValueError(
            f"{name}: features contain NaN or Inf in {rows.numel()} of {t.shape[0]} rows "
            f"(first: row {int(rows[0])})"
        )


def flat_pair(
    manifold: ContrastiveManifold,
    image: torch.Tensor,
    text: torch.Tensor,
    *,
    check_finite: bool = False,
    check_points: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a batch of paired points and return them flat, in the loss's compute dtype.

    Shapes: ``image`` and ``text`` are ``(B, *manifold.point_shape)``; the result is two
    ``(B, manifold.flat_dim)`` tensors in float32 (float64 stays float64), still attached to the
    autograd graph (the upcast's backward casts gradients back to the input dtype).

    Args:
        manifold: the manifold both batches live on.
        image: image-side points.
        text: text-side points, paired row by row with ``image``.
        check_finite: also reject NaN/Inf entries; this costs one device synchronisation.
        check_points: also reject points off the manifold
            (`ContrastiveManifold.check_membership`, its default tolerance); one device
            synchronisation per batch, O(B D) work next to the loss's O(B^2 D).

    Raises:
        TypeError: a non-tensor, a non-floating dtype, or the two on different devices.
        ValueError: a wrong point shape, an empty batch, batches of different lengths, or
            (with ``check_finite``) non-finite features, (with ``check_points``) points off
            the manifold (or NaN); the message names the argument.
    """
    image = _check_points(manifold, image, "image")
    text = _check_points(manifold, text, "text")
    if image.shape[0] != text.shape[0]:
        raise ValueError(
            f"image, text: expected batches of equal length (row i of image pairs with row i of "
            f"text), got image {tuple(image.shape)} and text {tuple(text.shape)}"
        )
    if image.device != text.device:
        raise TypeError(
            f"image, text: expected tensors on one device, got {image.device} and {text.device}"
        )
    if check_finite:
        _check_finite(image, "image")
        _check_finite(text, "text")
    if check_points:
        manifold.check_membership(image, "image")
        manifold.check_membership(text, "text")
    dtype = torch.promote_types(torch.promote_types(image.dtype, text.dtype), torch.float32)
    return manifold.flatten(image).to(dtype), manifold.flatten(text).to(dtype)


def check_logits(logits: object, name: str = "logits") -> torch.Tensor:
    """Return ``logits`` if it is a floating ``(*batch, B, B)`` tensor with ``B >= 1``.

    Raises:
        TypeError: not a floating-point tensor.
        ValueError: fewer than two dimensions or the last two sizes differ.
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        got = logits.dtype if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TypeError(f"{name}: expected a floating-point tensor, got {got}")
    if logits.dim() < 2 or logits.shape[-1] != logits.shape[-2] or logits.shape[-1] == 0:
        raise ValueError(
            f"{name}: expected shape (*batch, B, B) with B >= 1 (row i pairs with column i), "
            f"got {tuple(logits.shape)}"
        )
    return logits


def check_finite_scalar(value: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` if the 0-dim ``value`` is NaN or infinite.

    The losses call it under ``check_finite`` for the scale and the bias: a diverged
    ``logit_scale`` turns every later loss into NaN, and this says which number did it.
    Reading the value back costs one device synchronisation.
    """
    v = float(value.detach())
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite value, got {v}")
