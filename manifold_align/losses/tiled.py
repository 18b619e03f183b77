"""Strip kernels: the contrastive losses of ``S = scale * x @ y.T`` a few rows at a time.

Each kernel walks over strips of ``T`` rows, ``S[r:r+T, :] = scale * x[r:r+T] @ y.T``, so that
no ``B x B`` matrix is ever held, and has a hand-written, first-order backward. They rely on
``similarity(x, y) == flatten(x) @ flatten(y).T``, which every manifold of this library
guarantees, and run with autocast disabled in the features' dtype (float32 or float64).

* **Symmetric InfoNCE** ([TiledInfoNCE][manifold_align.losses.tiled.TiledInfoNCE],
  [tiled_info_nce][manifold_align.losses.tiled.tiled_info_nce]):

  $$L = \\frac{1}{2N}\\sum_i \\big(\\operatorname{lse}_j S_{ij} - S_{ii}\\big)
      + \\frac{1}{2N}\\sum_j \\big(\\operatorname{lse}_i S_{ij} - S_{jj}\\big).$$

  The forward yields each strip's row logsumexps at once and keeps the column logsumexps
  online (running maximum $m_j$ and sum $l_j \\leftarrow l_j e^{m_j - m_j'} + \\sum_i
  e^{S_{ij} - m_j'}$); only ``O(N)`` statistics are saved. The backward recomputes each strip,
  $G = \\frac{g}{2N}\\big(e^{S - \\mathrm{lse}^{\\text{row}}} + e^{S - \\mathrm{lse}^{\\text{col}}}
  - 2E\\big)$, then $\\nabla x = s\\,G y$, $\\nabla y = s\\,G^\\top x$ and
  $\\partial L/\\partial s = \\sum_i \\langle x_i, (G y)_i\\rangle$: four products of
  $N^2 D$ in all.
* **Row cross-entropy** ([RowsCrossEntropy][manifold_align.losses.tiled.RowsCrossEntropy]):
  $\\sum_i (\\operatorname{lse}_j S_{ij} - S_{i, o + i})$ for a block of rows whose positives
  sit at columns $o, o+1, \\dots$: one direction of the distributed InfoNCE on one rank.
* **Sigmoid (SigLIP)** ([TiledSigmoid][manifold_align.losses.tiled.TiledSigmoid],
  [tiled_sigmoid][manifold_align.losses.tiled.tiled_sigmoid],
  [sigmoid_sweep][manifold_align.losses.tiled.sigmoid_sweep]): with $t = S + b$,

  $$\\sum_{ij} \\operatorname{softplus}(-z_{ij} t_{ij}),\\qquad
  \\frac{\\partial}{\\partial t_{ij}} = -z_{ij}\\,\\sigma(-z_{ij} t_{ij}),$$

  $z = +1$ at the positives, $-1$ elsewhere. Every term depends on one logit only, so the
  gradient needs no statistic of the whole matrix: the forward sweep forms each strip's
  $G$ while the strip is in cache and accumulates $G y$, $G^\\top (s x)$, $\\sum G$ at once.
  Three products of $N^2 D$ (the least any SigLIP can do: the logits and the two feature
  gradients), no recomputation, and only ``O(N D)`` saved; the backward multiplies by the
  incoming gradient.
"""

from __future__ import annotations

import torch

from manifold_align.losses.validation import first_order_only

__all__ = [
    "SIGMOID_TILE",
    "RowsCrossEntropy",
    "TiledInfoNCE",
    "TiledSigmoid",
    "sigmoid_sweep",
    "tiled_info_nce",
    "tiled_sigmoid",
]

#: Rows per strip of the sigmoid kernel when none is given: large enough for the matrix
#: products to run at full speed, small enough for a strip of ``B = 16384`` columns (32 MiB)
#: to stay near the cache between its product and its element-wise passes.
SIGMOID_TILE = 512


def _no_autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, enabled=False)


def _check_tile(tile_size: object, name: str = "tile_size") -> None:
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1:
        raise ValueError(f"{name}: expected a positive int, got {tile_size!r}")


def _check_square(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dim() != 2 or x.shape != y.shape or x.shape[0] == 0:
        raise ValueError(
            f"x, y: expected two (N, D) tensors of equal shape with N >= 1, "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def _scalar(value: torch.Tensor | float, name: str, device: torch.device) -> torch.Tensor:
    value = torch.as_tensor(value, device=device)
    if value.dim() != 0:
        raise ValueError(f"{name}: expected a 0-dim tensor, got shape {tuple(value.shape)}")
    return value


# --- symmetric InfoNCE ----------------------------------------------------------------------


def _strip_stats(
    x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor, tile: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row and column logsumexps and positives of ``S = scale * x @ y.T`` (``N x N``), by strips.

    Returns ``row_lse (N,)``, ``col_lse (N,)``, ``pos (N,)`` (the diagonal of ``S``).
    """
    n = x.shape[0]
    row_lse = x.new_empty(n)
    pos = x.new_empty(n)
    col_max = x.new_full((n,), float("-inf"))
    col_sum = x.new_zeros(n)
    yt = y.T
    for start in range(0, n, tile):
        s = torch.mm(x[start : start + tile], yt).mul_(scale)
        row_lse[start : start + tile] = torch.logsumexp(s, dim=1)
        pos[start : start + tile] = s.diagonal(offset=start)
        new_max = torch.maximum(col_max, s.amax(dim=0))
        col_sum.mul_((col_max - new_max).exp_()).add_(s.sub_(new_max).exp_().sum(dim=0))
        col_max = new_max
    return row_lse, col_max + col_sum.log(), pos


def _strip_grads(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    tile: int,
    row_lse: torch.Tensor,
    col_lse: torch.Tensor,
    weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of the InfoNCE w.r.t. ``x``, ``y`` and ``scale``, recomputing each strip.

    ``weight`` is ``grad_output / N``; per strip
    ``G = weight / 2 * (exp(S - row_lse) + exp(S - col_lse) - 2 E)``.
    """
    grad_x = torch.empty_like(x)
    grad_y = torch.zeros_like(y)
    grad_scale = x.new_zeros(())
    yt = y.T
    half = weight / 2
    for start in range(0, x.shape[0], tile):
        xs = x[start : start + tile]
        s = torch.mm(xs, yt).mul_(scale)
        g = (s - row_lse[start : start + tile, None]).exp_()
        g.add_(s.sub_(col_lse).exp_())
        del s
        g.diagonal(offset=start).sub_(2.0)
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
    both passes; first-order gradients only.
    """

    @staticmethod
    def forward(ctx, x, y, scale, tile):  # type: ignore[override]
        with _no_autocast(x.device):
            row_lse, col_lse, pos = _strip_stats(x, y, scale, tile)
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
            grad_x, grad_y, grad_scale = _strip_grads(
                x, y, scale, ctx.tile, row_lse, col_lse, weight
            )
        if not ctx.needs_input_grad[2]:
            grad_scale = None
        return grad_x, grad_y, grad_scale, None


def tiled_info_nce(
    x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor | float, tile_size: int
) -> torch.Tensor:
    """Symmetric InfoNCE of flat features in strips of ``tile_size`` rows; equals the dense loss.

    Math: $L = \\frac{1}{2N}\\sum_i (\\operatorname{lse}_j S_{ij} - S_{ii}) +
    \\frac{1}{2N}\\sum_j (\\operatorname{lse}_i S_{ij} - S_{jj})$ with $S = s\\,x y^\\top$;
    computed in float32 (float64 stays float64) even under autocast.

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
    _check_tile(tile_size)
    _check_square(x, y)
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    scale = _scalar(scale, "scale", x.device)
    return TiledInfoNCE.apply(x.to(dtype), y.to(dtype), scale.to(dtype), tile_size)


# --- one direction of the distributed InfoNCE ------------------------------------------------


class RowsCrossEntropy(torch.autograd.Function):
    """``sum_i (lse_j S_ij - S_{i, offset + i})`` of ``S = scale * a @ b.T``, strip by strip.

    ``apply(a, b, scale, offset, tile)``: ``a (n, D)`` rows, ``b (N, D)`` all columns, ``scale``
    0-dim, all one floating dtype; positives at columns ``offset .. offset + n - 1``. Saves only
    the features and ``n`` logsumexps; the backward recomputes each ``tile x N`` strip and forms
    $G = g\\,(\\operatorname{softmax}_{\\text{row}}(S) - E)$, then $\\nabla a = s\\,G b$,
    $\\nabla b = s\\,G^\\top a$, $\\partial/\\partial s = \\sum_i \\langle a_i, (G b)_i\\rangle$.
    Runs with autocast disabled in both passes; first-order only.
    """

    @staticmethod
    def forward(ctx, a, b, scale, offset, tile):  # type: ignore[override]
        n = a.shape[0]
        with _no_autocast(a.device):
            lse = a.new_empty(n)
            pos = a.new_empty(n)
            bt = b.T
            for start in range(0, n, tile):
                s = torch.mm(a[start : start + tile], bt).mul_(scale)
                lse[start : start + tile] = torch.logsumexp(s, dim=1)
                pos[start : start + tile] = s.diagonal(offset=offset + start)
            loss = (lse - pos).sum()
        ctx.save_for_backward(a, b, scale, lse)
        ctx.offset, ctx.tile = offset, tile
        return loss

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        first_order_only("distributed InfoNCE")
        a, b, scale, lse = ctx.saved_tensors
        offset, tile = ctx.offset, ctx.tile
        with _no_autocast(a.device):
            weight = grad_output.to(a.dtype)
            grad_a = torch.empty_like(a)
            grad_b = torch.zeros_like(b)
            grad_scale = a.new_zeros(())
            bt = b.T
            for start in range(0, a.shape[0], tile):
                rows = a[start : start + tile]
                g = torch.mm(rows, bt).mul_(scale).sub_(lse[start : start + tile, None]).exp_()
                g.diagonal(offset=offset + start).sub_(1.0)
                g.mul_(weight)
                gb = torch.mm(g, b)
                grad_scale += torch.linalg.vecdot(rows, gb).sum()
                grad_a[start : start + tile] = gb.mul_(scale)
                grad_b.addmm_(g.T, rows)
            grad_b.mul_(scale)
        return grad_a, grad_b, grad_scale if ctx.needs_input_grad[2] else None, None, None


# --- sigmoid (SigLIP) -----------------------------------------------------------------------


def sigmoid_sweep(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    tile: int,
    offset: int | None,
    *,
    grad_rows: bool = False,
    grad_cols: bool = False,
    grad_sum: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """SigLIP's summed loss over ``t = scale * x @ y.T + bias`` and its gradient products, by
    strips.

    Math: $\\ell = \\sum_{ij} \\operatorname{softplus}(u_{ij})$ with $u = -z \\odot t$
    ($z_{i, o+i} = +1$ at the positives, $-1$ elsewhere), and
    $G = \\partial \\ell / \\partial t = -z \\odot \\sigma(u)$. Per strip of ``tile`` rows: one
    product into a reused buffer, the bias, the positives' sign flipped on the strip's diagonal
    (no label matrix), $\\sum \\operatorname{softplus}(u) = \\sum \\operatorname{log1p}(e^{-|u|})
    + \\sum \\max(u, 0)$ (exact in every dtype: ``1.39e-11`` at $u = -25$, where torch's
    ``softplus`` threshold or $\\log(1 + e^u)$ round to 0). On CPU that is three passes in
    place and two sums, measured 40% faster than ``torch.logaddexp(u, 0)`` (strips of 512 x
    1024, one thread); on other devices ``logaddexp``, one fused kernel. Then, if asked,
    $\\sigma(u)$ in place with the positives' sign flipped back: that is $G$, and $G y$,
    $G^\\top (s x)$ and $\\sum G$ follow while the strip is in cache.

    Args:
        x: ``(b, D)`` rows (image features).
        y: ``(N, D)`` columns (text features), same dtype.
        scale: 0-dim, the dtype of ``x``.
        bias: 0-dim, the dtype of ``x``.
        tile: rows per strip; the working set is two ``tile x N`` buffers.
        offset: row ``i``'s positive is column ``offset + i``; ``None``: no positives (a ring
            block of another rank's texts).
        grad_rows: also return $G y$ (for $\\nabla x$ and $\\partial/\\partial s$).
        grad_cols: also return $G^\\top (s x)$ (for $\\nabla y$).
        grad_sum: also return $\\sum G$ (for $\\partial/\\partial b$).

    Returns:
        ``(loss_sum, G y (b, D) or None, G^T (s x) (N, D) or None, sum G or None)``; the
        gradients of ``loss_sum`` are then $\\nabla x = s\\,G y$, $\\nabla y = G^\\top (s x)$,
        $\\partial/\\partial s = \\sum_i \\langle x_i, (G y)_i\\rangle$,
        $\\partial/\\partial b = \\sum G$.
    """
    b, n = x.shape[0], y.shape[0]
    rows = min(tile, b)
    xs = x * scale
    yt = y.T
    buf = x.new_empty(rows, n)
    out = x.new_empty(rows, n)
    zero = x.new_zeros(())
    loss = x.new_zeros(())
    gy = x.new_empty(b, x.shape[1]) if grad_rows else None
    gtx = torch.zeros_like(y) if grad_cols else None
    gsum = x.new_zeros(()) if grad_sum else None
    for start in range(0, b, rows):
        stop = min(start + rows, b)
        u = buf[: stop - start]
        torch.mm(xs[start:stop], yt, out=u)
        u.add_(bias)
        if offset is not None:
            u.diagonal(offset + start).neg_()
        if u.device.type == "cpu":
            w = out[: stop - start]  # log1p(exp(-|u|)), then max(u, 0): one buffer for both
            loss += torch.abs(u, out=w).neg_().exp_().log1p_().sum()
            loss += torch.clamp(u, min=0, out=w).sum()
        else:
            loss += torch.logaddexp(u, zero, out=out[: stop - start]).sum()
        if not (grad_rows or grad_cols or grad_sum):
            continue
        g = u.sigmoid_()
        if offset is not None:
            g.diagonal(offset + start).neg_()
        if grad_sum:
            gsum += g.sum()
        if grad_rows:
            torch.mm(g, y, out=gy[start:stop])
        if grad_cols:
            gtx.addmm_(g.T, xs[start:stop])
    return loss, gy, gtx, gsum


class TiledSigmoid(torch.autograd.Function):
    """SigLIP's summed loss of ``t = scale * x @ y.T + bias`` with its gradients formed in the
    forward.

    ``apply(x, y, scale, bias, tile, offset)``: ``x (b, D)``, ``y (N, D)``, ``scale`` and
    ``bias`` 0-dim, all one floating dtype; ``offset`` as for
    [sigmoid_sweep][manifold_align.losses.tiled.sigmoid_sweep]. Returns the 0-dim sum
    $\\sum_{ij} \\operatorname{softplus}(-z_{ij} t_{ij})$.

    The loss is a sum of terms of one logit each, so its gradient is known once a strip is:
    when any input requires grad, the forward sweep also accumulates $G y$, $G^\\top (s x)$,
    $\\sum_i \\langle x_i, (G y)_i\\rangle$ and $\\sum G$ (the products each input needs, no
    more) and saves those ``O((b + N) D)`` numbers; the backward multiplies them by the
    incoming gradient. Under ``torch.no_grad`` (or with no input requiring grad) the forward
    is the loss alone, one product. Runs with autocast disabled; first-order only.
    """

    @staticmethod
    def forward(ctx, x, y, scale, bias, tile, offset):  # type: ignore[override]
        needs = ctx.needs_input_grad
        rows = needs[0] or needs[2]
        with _no_autocast(x.device):
            loss, gy, gtx, gsum = sigmoid_sweep(
                x, y, scale, bias, tile, offset,
                grad_rows=rows, grad_cols=needs[1], grad_sum=needs[3],
            )
            dscale = torch.linalg.vecdot(x, gy).sum() if rows else None
        ctx.save_for_backward(gy, gtx, scale, dscale, gsum)
        return loss

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        first_order_only("SigLIP")
        gy, gtx, scale, dscale, gsum = ctx.saved_tensors
        needs = ctx.needs_input_grad
        with _no_autocast(scale.device):
            g = grad_output.to(scale.dtype)
            grad_x = gy * (g * scale) if needs[0] else None
            grad_y = gtx * g if needs[1] else None
            grad_scale = dscale * g if needs[2] else None
            grad_bias = gsum * g if needs[3] else None
        return grad_x, grad_y, grad_scale, grad_bias, None, None


def tiled_sigmoid(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor | float,
    bias: torch.Tensor | float,
    tile_size: int | None = None,
) -> torch.Tensor:
    """SigLIP's sigmoid loss of flat features, in strips of rows; equals the loss over the logits.

    Math: $t = s\\,x y^\\top + b$, $L = \\frac1N \\sum_{ij} \\operatorname{softplus}(-z_{ij}
    t_{ij})$, $z$ = +1 on the diagonal, -1 elsewhere (as
    [sigmoid_from_logits][manifold_align.losses.sigmoid.sigmoid_from_logits]). Computed in
    float32 (float64 stays float64) even under autocast; the gradients w.r.t. ``x``, ``y``,
    ``scale`` and ``bias`` are formed during the forward sweep (see
    [TiledSigmoid][manifold_align.losses.tiled.TiledSigmoid]); first-order only.

    Args:
        x: ``(N, D)`` flat image features.
        y: ``(N, D)`` flat text features, row ``i`` paired with ``x[i]``.
        scale: 0-dim tensor (gradients flow to it) or a positive float.
        bias: 0-dim tensor (gradients flow to it) or a float.
        tile_size: rows per strip, ``None`` for ``SIGMOID_TILE`` (512); peak memory about
            ``2 * 4 * tile_size * N`` bytes beyond the features and their gradients.

    Returns:
        0-dim loss tensor.

    Raises:
        ValueError: ``tile_size`` not ``None`` or a positive int, ``x``/``y`` not 2-D of equal
            shape, ``scale`` or ``bias`` not 0-dim.
    """
    tile = SIGMOID_TILE if tile_size is None else tile_size
    _check_tile(tile)
    _check_square(x, y)
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    scale = _scalar(scale, "scale", x.device).to(dtype)
    bias = _scalar(bias, "bias", x.device).to(dtype)
    loss = TiledSigmoid.apply(x.to(dtype), y.to(dtype), scale, bias, tile, 0)
    return loss / x.shape[0]
