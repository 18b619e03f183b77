r"""Riemannian Adam for row-normalized manifolds, fused row-wise and blocked for the cache.

A *row-normalized* manifold is one whose point is a stack of unit vectors along the last
axis: ``Sphere(d)`` (one row per point) and ``Oblique(k, d)`` (``k`` rows per point). On
such a manifold every operation of Riemannian Adam acts on each row on its own, with the
row as the *component* that owns one second-moment scalar. For a row $x$ (unit norm), its
Euclidean gradient $g$, first moment $m$ (tangent at $x$) and second moment $v$ (a scalar),
one step with step count $t$ is

$$
\begin{aligned}
e &= \sigma g + \lambda x, \qquad r = e - \langle x, e\rangle x
  &&\text{(Riemannian gradient; } \sigma = -1 \text{ if maximizing)}\\
m &\leftarrow \beta_1 m + (1 - \beta_1) r, \qquad
v \leftarrow \beta_2 v + (1 - \beta_2) \langle r, r\rangle\\
s &= \frac{\eta}{(1 - \beta_1^t)\,\bigl(\sqrt{v / (1 - \beta_2^t)} + \epsilon\bigr)}
  &&\text{(}v \text{ replaced by its running max under AMSGrad)}\\
x &\leftarrow \frac{x - s\,m}{\lVert x - s\,m\rVert}, \qquad
m \leftarrow m - \langle x, m\rangle x
  &&\text{(retraction, then transport by projection)}
\end{aligned}
$$

which is geoopt's ``RiemannianAdam`` step with ``egrad2rgrad = proju``, ``component_inner``
the row inner product and ``retr_transp`` = normalize + project.

Speed: the update is a dozen in-place row-wise torch operations. Run on a whole
``262144 x 64`` parameter each would stream the tensors through main memory again; instead
the rows are cut into blocks of `BLOCK_ELEMENTS` numbers per thread, small enough that
``x``, ``g``, ``m`` and the scratch ``r`` of a block stay in the CPU cache while all its
operations run. Main memory then sees roughly one read of ``x``, ``g``, ``m`` and one write
of ``x``, ``m`` per step; the second moment is one scalar per row. Parameters smaller than
half a block are packed together (one concatenation in, one ``_foreach_copy_`` out), so the
number of kernel launches grows with the total size, not with the number of parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["BLOCK_ELEMENTS", "RowAdamHyper", "row_adam_"]

#: Numbers per block and per intra-op thread on CPU (512 Ki: 2 MiB per float32 tensor, the
#: four tensors of a block well inside a 32 MiB L3). torch splits every operation evenly over
#: its threads, so a block holds this many numbers per thread. Measured on the 2-core
#: development machine (262144 x 64, one thread, ratio to fused Adam in the same run): 256 Ki,
#: 512 Ki and 1 Mi per block all gave 2.3-2.9x, within the noise of a shared machine, while
#: unblocked (one 16 Mi block) took 2.7x as long as blocked (median 135 vs 49 ms). Of those, 512 Ki is chosen because every
#: operation is one OpenMP parallel region, and on a busy machine each region waits for all
#: its threads: fewer blocks, fewer waits. On other devices there is no cache to fit and
#: every launch costs, so a parameter is one block there.
BLOCK_ELEMENTS = 1 << 19

HALF_DTYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class RowAdamHyper:
    """The scalars of one Riemannian Adam step, bias corrections included.

    Attributes:
        lr: learning rate $\\eta$.
        beta1: first-moment decay $\\beta_1$.
        beta2: second-moment decay $\\beta_2$.
        eps: denominator guard $\\epsilon$.
        weight_decay: L2 coefficient $\\lambda$ (added to the Euclidean gradient).
        amsgrad: normalize by the running maximum of $v$.
        maximize: ascend instead of descend ($\\sigma = -1$).
        bias_correction1: $1 - \\beta_1^t$.
        bias_correction2: $1 - \\beta_2^t$.
    """

    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    amsgrad: bool
    maximize: bool
    bias_correction1: float
    bias_correction2: float

    def kernel_scalars(self) -> tuple[float, ...]:
        """The scalars of the one-pass kernels, in their order: $\\sigma$, $\\lambda$,
        $1 - \\beta_1$, $\\beta_2$, $1 - \\beta_2$, $1 - \\beta_2^t$, $\\epsilon$,
        $\\eta / (1 - \\beta_1^t)$."""
        return (
            -1.0 if self.maximize else 1.0,
            self.weight_decay,
            1.0 - self.beta1,
            self.beta2,
            1.0 - self.beta2,
            self.bias_correction2,
            self.eps,
            self.lr / self.bias_correction1,
        )


def _row_dot(a: torch.Tensor, b: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    r"""``(n, d), (n, d) -> (n, 1)``: $\langle a_i, b_i\rangle$ per row, products in ``scratch``.

    ``torch.linalg.vecdot`` allocates a fresh ``(n, d)`` product on every call; on CPU that
    is a page-faulting allocation per block, which cost more than the arithmetic.
    """
    return torch.mul(a, b, out=scratch).sum(dim=-1, keepdim=True)


def _update_block(
    x: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    vmax: torch.Tensor | None,
    r: torch.Tensor,
    h: RowAdamHyper,
) -> None:
    """One step on a block of rows, in place on ``x, m, v, vmax``; ``r`` is scratch.

    Shapes: ``x, g, m, r`` are ``(n, d)``, ``v, vmax`` are ``(n, 1)``, one dtype. Eleven
    passes over the block, all in cache: two row dots (product + sum each), the gradient
    projection, the first-moment update, two row norms, the retraction step and its
    rescaling, and the transport.
    """
    a = _row_dot(x, g, r)  # <x, g>
    sign = -1.0 if h.maximize else 1.0
    if h.weight_decay:
        # r = sign g + wd x - <x, sign g + wd x> x = sign g + (wd (1 - <x, x>) - sign a) x
        xx = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_()
        coef = xx.mul_(-h.weight_decay).add_(h.weight_decay).sub_(a, alpha=sign)
    else:
        coef = a.mul_(-sign)
    if h.maximize:
        torch.addcmul(g, x, coef, value=-1.0, out=r).neg_()
    else:
        torch.addcmul(g, x, coef, out=r)
    m.lerp_(r, 1.0 - h.beta1)
    rr = torch.linalg.vector_norm(r, dim=-1, keepdim=True).square_()  # one pass, no temporary
    v.mul_(h.beta2).add_(rr, alpha=1.0 - h.beta2)
    if vmax is not None:
        torch.maximum(vmax, v, out=vmax)
        v = vmax
    scale = v.div(h.bias_correction2).sqrt_().add_(h.eps).reciprocal_()
    scale.mul_(h.lr / h.bias_correction1)
    x.addcmul_(m, scale, value=-1.0)
    x.mul_(torch.linalg.vector_norm(x, dim=-1, keepdim=True).reciprocal_())
    m.addcmul_(x, _row_dot(x, m, r), value=-1.0)


def _work(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` itself when it already has ``dtype``, else a converted copy."""
    return t if t.dtype == dtype else t.to(dtype)


def row_adam_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    max_exp_avg_sqs: list[torch.Tensor] | None,
    h: RowAdamHyper,
    *,
    block_elements: int | None = None,
) -> None:
    """Riemannian Adam step (module docstring) on row-normalized parameters, in place.

    Args:
        params: tensors ``(..., d)``, one device, one dtype and one ``d`` for all; each row
            a unit vector. Updated in place.
        grads: their Euclidean gradients, same shapes (never modified).
        exp_avgs: first moments, shapes of ``params``, dtype float32 for float16/bfloat16
            parameters, else the parameters' dtype; contiguous.
        exp_avg_sqs: second moments ``(..., 1)``, one per row, dtype of ``exp_avgs``.
        max_exp_avg_sqs: running maxima of ``exp_avg_sqs`` (AMSGrad) or ``None``.
        h: the step's scalars.
        block_elements: numbers per block; default `BLOCK_ELEMENTS` times
            ``torch.get_num_threads()`` on CPU, the whole parameter elsewhere.

    Arithmetic runs in the dtype of ``exp_avgs`` (float32 for half-precision parameters).
    """
    if not params:
        return
    d = params[0].shape[-1]
    dtype = exp_avgs[0].dtype
    device = params[0].device
    if block_elements is None:
        block_elements = (
            BLOCK_ELEMENTS * torch.get_num_threads()
            if device.type == "cpu"
            else max(p.numel() for p in params)
        )
    rows_per_block = max(1, block_elements // d)
    maxes: list[torch.Tensor | None] = (
        list(max_exp_avg_sqs) if max_exp_avg_sqs is not None else [None] * len(params)
    )
    scratch: torch.Tensor | None = None

    packed: list[int] = []
    packed_rows = 0
    for i, p in enumerate(params):
        n = p.numel() // d
        if p.is_contiguous() and 2 * n >= rows_per_block:
            if scratch is None or scratch.shape[0] < min(n, rows_per_block):
                scratch = torch.empty(min(n, rows_per_block), d, dtype=dtype, device=device)
            _in_place(p, grads[i], exp_avgs[i], exp_avg_sqs[i], maxes[i], scratch, h, d)
            continue
        packed.append(i)
        packed_rows += n
        if packed_rows >= rows_per_block:
            _packed(packed, params, grads, exp_avgs, exp_avg_sqs, maxes, h, d)
            packed, packed_rows = [], 0
    if packed:
        _packed(packed, params, grads, exp_avgs, exp_avg_sqs, maxes, h, d)


def _in_place(
    p: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    vmax: torch.Tensor | None,
    scratch: torch.Tensor,
    h: RowAdamHyper,
    d: int,
) -> None:
    """A large contiguous parameter: walk its rows block by block on views (no copies)."""
    x2 = p.view(-1, d)
    g2 = g.reshape(-1, d)
    m2, v2 = m.view(-1, d), v.view(-1, 1)
    vm2 = vmax.view(-1, 1) if vmax is not None else None
    step = min(scratch.shape[0], x2.shape[0])
    for lo in range(0, x2.shape[0], step):
        hi = min(lo + step, x2.shape[0])
        xb = x2[lo:hi]
        xw = _work(xb, m2.dtype)
        _update_block(
            xw,
            _work(g2[lo:hi], m2.dtype),
            m2[lo:hi],
            v2[lo:hi],
            vm2[lo:hi] if vm2 is not None else None,
            scratch[: hi - lo],
            h,
        )
        if xw is not xb:
            xb.copy_(xw)


def _packed(
    idx: list[int],
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    maxes: list[torch.Tensor | None],
    h: RowAdamHyper,
    d: int,
) -> None:
    """Small (or non-contiguous) parameters: concatenate, update once, copy back."""
    dtype = exp_avgs[idx[0]].dtype

    def cat(ts: list[torch.Tensor], width: int) -> torch.Tensor:
        return _work(torch.cat([t.reshape(-1, width) for t in ts]), dtype)

    xs = [params[i] for i in idx]
    ms = [exp_avgs[i] for i in idx]
    vs = [exp_avg_sqs[i] for i in idx]
    x, m, v = cat(xs, d), cat(ms, d), cat(vs, 1)
    g = cat([grads[i] for i in idx], d)
    vms = [t for t in (maxes[i] for i in idx) if t is not None]
    vmax = cat(vms, 1) if vms else None
    _update_block(x, g, m, v, vmax, torch.empty_like(x), h)
    sizes = [t.numel() // d for t in xs]
    targets, sources = [*xs, *ms, *vs], [
        *(c.view(t.shape) for c, t in zip(x.split(sizes), xs)),
        *(c.view(t.shape) for c, t in zip(m.split(sizes), ms)),
        *(c.view(t.shape) for c, t in zip(v.split(sizes), vs)),
    ]
    if vmax is not None:
        targets += vms
        sources += [c.view(t.shape) for c, t in zip(vmax.split(sizes), vms)]
    torch._foreach_copy_(targets, sources)
