"""Memory-lean symmetric InfoNCE: strips of rows, online column logsumexp, hand-written backward.

With ``S = scale * x @ y.T`` (``N x N``), the symmetric InfoNCE is

    L = 1/(2N) * sum_i (lse_j S_ij - S_ii) + 1/(2N) * sum_j (lse_i S_ij - S_jj).

The forward pass walks over strips of ``T`` rows, ``S[r:r+T, :]``: each strip yields the exact
row logsumexps at once, and updates a running column logsumexp (running max ``m_j`` and sum
``l_j``, rescaled by ``exp(m_old - m_new)`` when the max grows). Only ``O(N)`` statistics are
kept. The backward pass recomputes each strip and forms

    dL/dS_ij = (exp(S_ij - lse_row_i) + exp(S_ij - lse_col_j) - 2 [i == j]) / (2N),

then ``dL/dx = scale * G @ y``, ``dL/dy = scale * G.T @ x`` and
``dL/dscale = sum_ij G_ij <x_i, y_j> = sum_i <x_i, (G @ y)_i>`` (no extra ``N x N`` pass).
Peak memory is a few ``T x N`` strips plus the features: it grows as ``N * T``, not ``N^2``.

The strip helpers work on a block of rows ``x`` whose positives sit at columns
``offset .. offset + len(x)`` of ``y``; they return *partial* column statistics. That is the
seam for a distributed version (each rank its rows, column statistics combined with
``logaddexp`` across ranks, ``dL/dy`` summed); :class:`TiledInfoNCE` is the single-process case
``offset = 0``.
"""

from __future__ import annotations

import torch

from manifold_align.losses.validation import first_order_only

__all__ = ["TiledInfoNCE", "strip_grads", "strip_stats", "tiled_info_nce"]


def _no_autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, enabled=False)


def strip_stats(
    x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor, offset: int, tile: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward statistics of the rows ``x`` of ``S = scale * x @ y.T``, ``tile`` rows at a time.

    Math: row ``lse_j S_ij`` exactly per strip; column ``lse_i S_ij`` online, with a running
    maximum ``m_j`` and sum ``l_j <- l_j exp(m_j - m_j') + sum_i exp(S_ij - m_j')``.

    Args:
        x: ``(b, D)`` a block of rows (all rows in the single-process loss).
        y: ``(N, D)`` all columns.
        scale: 0-dim, same dtype as ``x``.
        offset: column of row 0's positive; row ``i`` pairs with column ``offset + i``.
        tile: rows per strip; the working set is about two ``tile x N`` buffers.

    Returns:
        ``row_lse (b,)``; ``col_lse (N,)`` over these ``b`` rows only (combine row blocks with
        ``torch.logaddexp``); ``pos (b,)``: ``S[i, offset + i]``.
    """
    b, n = x.shape[0], y.shape[0]
    row_lse = x.new_empty(b)
    pos = x.new_empty(b)
    col_max = x.new_full((n,), float("-inf"))
    col_sum = x.new_zeros(n)
    yt = y.T
    for start in range(0, b, tile):
        s = torch.mm(x[start : start + tile], yt).mul_(scale)
        row_lse[start : start + tile] = torch.logsumexp(s, dim=1)
        pos[start : start + tile] = s.diagonal(offset=offset + start)
        new_max = torch.maximum(col_max, s.amax(dim=0))
        col_sum.mul_((col_max - new_max).exp_()).add_(s.sub_(new_max).exp_().sum(dim=0))
        col_max = new_max
    return row_lse, col_max + col_sum.log(), pos


def strip_grads(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    offset: int,
    tile: int,
    row_lse: torch.Tensor,
    col_lse: torch.Tensor,
    weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward of :func:`strip_stats`'s rows: recompute each strip, return three products.

    Math, per strip: ``G = weight / 2 * (exp(S - row_lse[:, None]) + exp(S - col_lse[None, :])
    - 2 E)`` with ``E`` the positives' mask; then ``dL/dx = scale * G @ y``,
    ``dL/dy = scale * G.T @ x`` and ``dL/dscale = sum_ij G_ij <x_i, y_j> =
    sum_i <x_i, (G @ y)_i>``.

    Args:
        x: ``(b, D)`` this block's rows, as for :func:`strip_stats`.
        y: ``(N, D)`` all columns, as for :func:`strip_stats`.
        scale: 0-dim logit scale, as for :func:`strip_stats`.
        offset: column index of this block's first positive, as for :func:`strip_stats`.
        tile: rows per strip, as for :func:`strip_stats`.
        row_lse: ``(b,)`` this block's row logsumexps.
        col_lse: ``(N,)`` the *global* column logsumexps (all row blocks combined).
        weight: 0-dim, ``grad_output / N`` for the mean loss over ``N`` pairs.

    Returns:
        ``grad_x (b, D)``; this block's *partial* ``grad_y (N, D)`` and ``grad_scale`` (0-dim),
        to be summed over row blocks.
    """
    b = x.shape[0]
    grad_x = torch.empty_like(x)
    grad_y = torch.zeros_like(y)
    grad_scale = x.new_zeros(())
    yt = y.T
    half = weight / 2
    for start in range(0, b, tile):
        xs = x[start : start + tile]
        s = torch.mm(xs, yt).mul_(scale)
        g = (s - row_lse[start : start + tile, None]).exp_()
        g.add_(s.sub_(col_lse).exp_())
        del s
        g.diagonal(offset=offset + start).sub_(2.0)
        g.mul_(half)
        gy = torch.mm(g, y)
        grad_scale += torch.linalg.vecdot(xs, gy).sum()
        grad_x[start : start + tile] = gy.mul_(scale)
        grad_y.addmm_(g.T, xs)
    return grad_x, grad_y.mul_(scale), grad_scale


class TiledInfoNCE(torch.autograd.Function):
    """Symmetric InfoNCE of ``S = scale * x @ y.T`` with ``O(N)`` saved state (see module docs).

    ``apply(x, y, scale, tile)``: ``x, y (N, D)`` same floating dtype, ``scale`` 0-dim of that
    dtype, ``tile`` rows per strip. Returns the 0-dim mean loss. Runs with autocast disabled in
    both passes.
    """

    @staticmethod
    def forward(ctx, x, y, scale, tile):  # type: ignore[override]
        with _no_autocast(x.device):
            row_lse, col_lse, pos = strip_stats(x, y, scale, 0, tile)
            loss = (row_lse.sum() + col_lse.sum() - 2 * pos.sum()) / (2 * x.shape[0])
        ctx.save_for_backward(x, y, scale, row_lse, col_lse)
        ctx.tile = tile
        return loss

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        first_order_only("tiled InfoNCE")
        x, y, scale, row_lse, col_lse = ctx.saved_tensors
        with _no_autocast(x.device):
            weight = grad_output.to(x.dtype) / x.shape[0]
            grad_x, grad_y, grad_scale = strip_grads(
                x, y, scale, 0, ctx.tile, row_lse, col_lse, weight
            )
        if not ctx.needs_input_grad[2]:
            grad_scale = None
        return grad_x, grad_y, grad_scale, None


def tiled_info_nce(
    x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor | float, tile_size: int
) -> torch.Tensor:
    """Symmetric InfoNCE of flat features in strips of ``tile_size`` rows; equals the dense loss.

    Math: ``L = mean_i (lse_j S_ij - S_ii) / 2 + mean_j (lse_i S_ij - S_jj) / 2`` with
    ``S = scale * x @ y.T``; computed in float32 (float64 stays float64) even under autocast.

    Args:
        x: ``(N, D)`` flat image features.
        y: ``(N, D)`` flat text features, row ``i`` paired with ``x[i]``.
        scale: 0-dim tensor (gradients flow to it) or a positive float.
        tile_size: rows per strip, ``>= 1``; peak memory about ``3 * 4 * tile_size * N`` bytes.

    Returns:
        0-dim loss tensor.

    Raises:
        ValueError: ``tile_size`` not a positive int, ``x``/``y`` not 2-D of equal shape,
            ``scale`` not 0-dim.
    """
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1:
        raise ValueError(f"tile_size: expected a positive int, got {tile_size!r}")
    if x.dim() != 2 or x.shape != y.shape or x.shape[0] == 0:
        raise ValueError(
            f"x, y: expected two (N, D) tensors of equal shape with N >= 1, "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    scale = torch.as_tensor(scale, device=x.device)
    if scale.dim() != 0:
        raise ValueError(f"scale: expected a 0-dim tensor, got shape {tuple(scale.shape)}")
    return TiledInfoNCE.apply(x.to(dtype), y.to(dtype), scale.to(dtype), tile_size)
