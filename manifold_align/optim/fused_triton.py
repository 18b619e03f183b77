r"""The one-pass CUDA kernel of the row-normalized Riemannian Adam step, written in Triton.

The same update as [manifold_align.optim.fused_cpu][] (formulas in
[manifold_align.optim.rowwise][]): each program loads a tile of whole rows of $x$, $g$, $m$
and their second moments once, does every step of the update in registers (row sums by
`tl.sum` along the row), and stores $x$, $m$, $v$ once. Arithmetic is in the dtype of the
optimizer state (float32 for float16/bfloat16 parameters, which are converted on load and
rounded on store); the step's scalars are passed in a small tensor of that dtype, so a
float64 parameter is updated entirely in float64.

Importing this module imports Triton (shipped with torch's CUDA wheels on Linux). With
`TRITON_INTERPRET=1` set before the import, Triton's interpreter runs the kernel on CPU
tensors, which is how the tests check it on a machine without a GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from manifold_align.optim.rowwise import RowAdamHyper

__all__ = ["row_adam_triton_"]

#: Numbers per program (rows per program = this / the padded row length, at least 1).
TILE_ELEMENTS = 4096


@triton.jit
def _rows_kernel(
    x_ptr, g_ptr, m_ptr, v_ptr, vmax_ptr, h_ptr, n_rows, d,
    AMSGRAD: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """One tile of ``BLOCK_ROWS`` rows; ``h_ptr``: sign, wd, 1 - beta1, beta2, 1 - beta2,
    bias correction 2, eps, lr / bias correction 1, in the state's dtype."""
    pid = tl.program_id(0)
    rows = pid * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    cols = tl.arange(0, BLOCK_D)
    row_mask = rows < n_rows
    mask = row_mask[:, None] & (cols[None, :] < d)
    offs = rows.to(tl.int64)[:, None] * d + cols[None, :]
    sign = tl.load(h_ptr + 0)
    wd = tl.load(h_ptr + 1)
    w1 = tl.load(h_ptr + 2)
    beta2 = tl.load(h_ptr + 3)
    w2 = tl.load(h_ptr + 4)
    bc2 = tl.load(h_ptr + 5)
    eps = tl.load(h_ptr + 6)
    step_scale = tl.load(h_ptr + 7)
    m = tl.load(m_ptr + offs, mask=mask, other=0.0)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(m.dtype)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(m.dtype)
    a = tl.sum(x * g, axis=1)
    xx = tl.sum(x * x, axis=1)
    coef = (xx * -wd + wd) - sign * a
    r = sign * g + coef[:, None] * x
    m = m + w1 * (r - m)
    v = tl.load(v_ptr + rows, mask=row_mask, other=0.0)
    v = v * beta2 + w2 * tl.sum(r * r, axis=1)
    tl.store(v_ptr + rows, v, mask=row_mask)
    if AMSGRAD:
        v = tl.maximum(tl.load(vmax_ptr + rows, mask=row_mask, other=0.0), v)
        tl.store(vmax_ptr + rows, v, mask=row_mask)
    s = (1.0 / (tl.sqrt(v / bc2) + eps)) * step_scale
    y = x - s[:, None] * m
    # padding rows (past n_rows) are all zeros: divide by 1 there, not by 0
    inv = 1.0 / tl.sqrt(tl.where(row_mask, tl.sum(y * y, axis=1), 1.0))
    xm = tl.sum(y * m, axis=1) * inv
    x = y * inv[:, None]
    m = m - xm[:, None] * x
    tl.store(x_ptr + offs, x.to(x_ptr.dtype.element_ty), mask=mask)
    tl.store(m_ptr + offs, m, mask=mask)


def row_adam_triton_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    max_exp_avg_sqs: list[torch.Tensor] | None,
    h: RowAdamHyper,
) -> None:
    """Riemannian Adam step on row-normalized parameters of one device, one kernel launch each.

    Same arguments and results as [row_adam_][manifold_align.optim.rowwise.row_adam_] (to
    rounding). Parameters and gradients may be float16/bfloat16/float32/float64; the state
    (``exp_avgs`` and the ``(..., 1)`` second moments) is float32 or float64 and contiguous.
    A non-contiguous parameter or gradient is worked on in a contiguous copy.
    """
    if not params:
        return
    d = params[0].shape[-1]
    dtype = exp_avgs[0].dtype
    device = params[0].device
    hyper = torch.tensor(h.kernel_scalars(), dtype=dtype).to(device)
    block_d = triton.next_power_of_2(d)
    block_rows = max(1, TILE_ELEMENTS // block_d)
    maxes = list(max_exp_avg_sqs) if max_exp_avg_sqs is not None else [None] * len(params)
    for p, g, m, v, vmax in zip(params, grads, exp_avgs, exp_avg_sqs, maxes):
        n = p.numel() // d
        x = p if p.is_contiguous() else p.contiguous()
        gc = g if g.is_contiguous() else g.contiguous()
        grid = (triton.cdiv(n, block_rows),)
        _rows_kernel[grid](
            x, gc, m, v, vmax if vmax is not None else v, hyper, n, d,
            AMSGRAD=vmax is not None, BLOCK_ROWS=block_rows, BLOCK_D=block_d,
        )
        if x is not p:
            p.copy_(x)
