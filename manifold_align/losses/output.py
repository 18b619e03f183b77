"""What every contrastive loss returns: the loss and a few cheap, detached diagnostics."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

if TYPE_CHECKING:
    from manifold_align.manifolds.base import ContrastiveManifold

__all__ = [
    "LossOutput",
    "pair_diagnostics",
    "pair_logits",
    "pair_logits_and_similarity",
    "pair_similarity",
]


class LossOutput(NamedTuple):
    """A loss value and its diagnostics; unpacks as ``loss, diagnostics = criterion(x, y)``.

    ``criterion(x, y).backward()`` and ``.item()`` act on the loss, as on the tensor an
    OpenCLIP ``ClipLoss`` returns; arithmetic needs the tensor (``out.loss + penalty``).

    Attributes:
        loss: 0-dim float32 tensor (float64 for float64 inputs), differentiable.
        diagnostics: detached float32 0-dim tensors, at least ``scale``, ``pos_sim`` (mean
            positive similarity), ``neg_sim`` (mean off-diagonal similarity) and ``gap_logits``
            (``scale * (pos_sim - neg_sim)``). They stay on the features' device: reading them
            with ``float()`` is the caller's (synchronising) choice.
    """

    loss: torch.Tensor
    diagnostics: dict[str, torch.Tensor]

    def backward(self, *args, **kwargs) -> None:
        """``self.loss.backward(...)``, so ``loss_fn(x, y).backward()`` works as with OpenCLIP's
        ``ClipLoss`` (which returns the bare tensor); the diagnostics stay on the tuple."""
        self.loss.backward(*args, **kwargs)

    def item(self) -> float:
        """``self.loss.item()``: the loss as a Python float (synchronises the device)."""
        return self.loss.item()


def pair_similarity(
    manifold: ContrastiveManifold, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """``similarity(x, y)`` of flat features ``(N, D), (M, D) -> (N, M)``."""
    return manifold.similarity(manifold.unflatten(x), manifold.unflatten(y))


def pair_logits(
    manifold: ContrastiveManifold, x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """``scale * similarity(x, y)`` of flat features ``(N, D), (M, D) -> (N, M)``.

    On a `bilinear` manifold the scale multiplies ``x`` first (``N D`` products instead of
    ``N M``, and the hand-written backward of the logits sees one matmul); otherwise
    (`Lorentz`, whose similarity is a distance) it multiplies the similarity.
    """
    return pair_logits_and_similarity(manifold, x, y, scale)[0]


def pair_logits_and_similarity(
    manifold: ContrastiveManifold, x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[pair_logits][manifold_align.losses.output.pair_logits] and, on a manifold that is not
    `bilinear`, the similarity matrix they scale (``None`` on a bilinear one, whose
    diagnostics need no matrix), so that a loss forms it once for the logits and for
    [pair_diagnostics][manifold_align.losses.output.pair_diagnostics]."""
    if manifold.bilinear:
        return pair_similarity(manifold, x * scale, y), None
    similarity = pair_similarity(manifold, x, y)
    return scale * similarity, similarity


@torch.no_grad()
def pair_diagnostics(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    manifold: ContrastiveManifold | None = None,
    *,
    similarity: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Mean positive and negative similarity of flat feature batches, in O(B D), no B x B pass.

    Math, with $S = x y^\\top$ ($B \\times B$):
    $\\mathrm{pos} = \\operatorname{tr}(S) / B = \\frac1B \\sum_i \\langle x_i, y_i\\rangle$;
    $\\mathrm{neg} = (\\sum_{ij} S_{ij} - \\operatorname{tr} S) / (B^2 - B)$ with
    $\\sum_{ij} S_{ij} = \\langle \\sum_i x_i, \\sum_j y_j\\rangle$;
    $\\mathrm{gap} = s\\,(\\mathrm{pos} - \\mathrm{neg})$. ``neg_sim`` is NaN when ``B == 1``.
    For a ``manifold`` that is not `bilinear` (`Lorentz`), $S$ is the manifold's
    ``similarity(x, y)`` matrix and the same means are read from it: pass the matrix the loss
    already formed as ``similarity`` (the losses here do), else it is formed again, in
    $O(B^2 D)$.

    Args:
        x: ``(B, D)`` flat image features.
        y: ``(B, D)`` flat text features.
        scale: 0-dim scale tensor.
        manifold: the features' manifold; needed only when it is not bilinear.
        similarity: the ``(B, B)`` matrix ``similarity(x, y)`` of a non-bilinear manifold, as
            the loss formed it (read detached); ignored on a bilinear one.

    Computed in float32 (float64 stays float64) even under autocast.

    Returns:
        Dict of detached float32 0-dim tensors ``scale``, ``pos_sim``, ``neg_sim``, ``gap_logits``.
    """
    b = x.shape[0]
    dtype = torch.promote_types(x.dtype, torch.float32)
    x = x.detach().to(dtype)
    y = y.detach().to(dtype)
    with torch.autocast(x.device.type, enabled=False):  # vecdot would autocast to bf16 on CPU
        if manifold is not None and not manifold.bilinear:
            if similarity is None:
                similarity = pair_similarity(manifold, x, y)
            s = similarity.detach().to(dtype)
            trace, total = s.diagonal().sum(), s.sum()
        else:
            trace = torch.linalg.vecdot(x, y).sum()
            total = torch.dot(x.sum(0), y.sum(0))
    pos = trace / b
    neg = (total - trace) / (b * b - b) if b > 1 else torch.full_like(trace, float("nan"))
    scale = scale.detach().to(dtype)
    out = {"scale": scale, "pos_sim": pos, "neg_sim": neg, "gap_logits": scale * (pos - neg)}
    return {k: v.float() for k, v in out.items()}
