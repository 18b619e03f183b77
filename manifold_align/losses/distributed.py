"""Exact distributed forms of the contrastive losses: each rank computes its rows of the global loss.

Setting: ``W`` ranks (a ``torch.distributed`` process group), each holding ``b`` local pairs
(the same ``b`` on every rank), global batch ``B = W b``; rank ``r`` owns global rows
``r b .. r b + b - 1``. Each rank returns its *share* ``L_r`` of the global loss ``L``, scaled so
that

    mean_r L_r = L,

which is what DistributedDataParallel needs: it averages gradients over ranks, so the averaged
gradient of every parameter (tower weights, ``logit_scale``, ``logit_bias``) is ``dL/dtheta`` of
one process on the full batch. Features are gathered *with gradients*: the backward of the gather
sums (reduce-scatters) every rank's gradient for a block back onto the rank that owns it. The
gradient a rank sees for its own local features is therefore ``W * dL/dx_local``; DDP's ``1/W``
turns it into the single-process gradient of the tower parameters.

* InfoNCE (dense and tiled): gather images ``X`` and texts ``Y``; rank ``r`` computes its image
  rows against all texts and its text rows against all images,

      L_r = 1/(2b) sum_{i in r} (lse_j S_ij - S_ii) + 1/(2b) sum_{j in r} (lse_i S_ij - S_jj),

  ``S = scale * sim(X, Y)``. A text row ``j`` of ``scale * sim(Y, X)`` is column ``j`` of
  ``S``, so no column statistics cross ranks. Per rank: two ``b x B`` logits blocks (dense) or a
  few ``tile x B`` strips (tiled).
* Sigmoid (SigLIP): rank ``r`` computes its image rows against all texts,
  ``L_r = 1/b (sum_{i in r} sum_j softplus(t_ij) - sum_{i in r} t_ii)``, getting the texts
  either around a ring of neighbour exchanges (``exchange="ring"``, SigLIP's scheme: one
  ``b x b`` block a step while the next ``b x D`` block is in flight; the backward sends the
  blocks round again with their gradients; ``O(b^2 + b D)`` memory per rank) or with one gather
  (``exchange="gather"``, ``b x B`` logits per rank).

Communication per call, in features of ``D`` numbers: InfoNCE gathers ``2 B`` and
reduce-scatters ``2 B`` in the backward; the sigmoid ring sends ``(W - 1) b`` forward and
``(2W - 1) b`` backward per rank; the sigmoid gather ``B`` each way.

Without an initialised process group, or with a group of one rank, every loss here is exactly
the local loss of :mod:`manifold_align.losses`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from manifold_align.losses.infonce import InfoNCE
from manifold_align.losses.output import LossOutput, pair_diagnostics, pair_logits
from manifold_align.losses.sigmoid import SigmoidLoss, pair_softplus, softplus
from manifold_align.losses.temperature import Temperature
from manifold_align.losses.validation import check_finite_scalar, first_order_only, flat_pair
from manifold_align.manifolds.base import ContrastiveManifold

__all__ = [
    "DistributedInfoNCE",
    "DistributedSigmoidLoss",
    "distributed_info_nce",
    "distributed_sigmoid",
    "gather_with_grad",
    "rank_and_world",
    "to_distributed",
]

_EXCHANGES = ("ring", "gather")

# torch >= 2.13 names these ``*_single``; older releases only have ``*_tensor``.
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def rank_and_world(group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` in ``group`` (default: the world), ``(0, 1)`` without a process group.

    Raises:
        ValueError: the calling process is not a member of ``group``.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError("group: this process is not a member of the given process group")
    return rank, dist.get_world_size(group)


class _GatherWithGrad(torch.autograd.Function):
    """Concatenate every rank's ``(b, ...)`` block in rank order; backward reduce-scatters (sum)."""

    @staticmethod
    def forward(ctx, x, group):  # type: ignore[override]
        ctx.group = group
        world = dist.get_world_size(group)
        out = x.new_empty((world * x.shape[0], *x.shape[1:]))
        _all_gather(out, x.contiguous(), group=group)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        world = dist.get_world_size(ctx.group)
        out = grad.new_empty((grad.shape[0] // world, *grad.shape[1:]))
        _reduce_scatter(out, grad.contiguous(), group=ctx.group)
        return out, None


def gather_with_grad(x: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """All ranks' blocks ``(W b, ...)`` in rank order, differentiable.

    Math: forward ``X = [x_0; ...; x_{W-1}]``; backward ``grad x_r = sum_s (dL_s/dX)[block r]``,
    one reduce-scatter (the same volume as the gather, half an all-reduce's). Summing, not
    averaging, is what makes DDP's gradient average exact (see the module docs). First-order
    gradients only. Every rank must pass the same shape; without a process group (or with one
    rank) ``x`` is returned unchanged.

    Args:
        x: ``(b, ...)`` this rank's block.
        group: the process group; ``None`` for the world.

    Returns:
        ``(W b, ...)``.
    """
    _, world = rank_and_world(group)
    if world == 1:
        return x
    return _GatherWithGrad.apply(x, group)


def _global_rank(group: dist.ProcessGroup | None, rank: int) -> int:
    return rank if group is None else dist.get_global_rank(group, rank)


def _start_shift(
    t: torch.Tensor, group: dist.ProcessGroup | None, rank: int, world: int
) -> tuple[torch.Tensor, list]:
    """Start sending ``t`` to rank ``r + 1`` and receiving rank ``r - 1``'s block of its shape.

    Returns the receive buffer and the requests to ``wait()`` on before reading it (or
    overwriting ``t``).
    """
    received = torch.empty_like(t)
    ops = [
        dist.P2POp(dist.isend, t, _global_rank(group, (rank + 1) % world), group),
        dist.P2POp(dist.irecv, received, _global_rank(group, (rank - 1) % world), group),
    ]
    return received, dist.batch_isend_irecv(ops)


def _finish(requests: list) -> None:
    for request in requests:
        request.wait()


class _RingSigmoid(torch.autograd.Function):
    """SigLIP's ring: this rank's image rows against every rank's texts, one ``b x b`` block a step.

    ``apply(x, y, scale, bias, group)``: ``x, y (b, D)``, ``scale``, ``bias`` 0-dim, one dtype.
    Returns ``(sum_k sum_ij softplus(-z^k_ij t^k_ij), total)`` (``z^0`` is +1 on the diagonal,
    every other label -1; :func:`pair_softplus`) with ``t^k = scale x Y_{r-k}^T +
    bias`` the block of rank ``r - k``'s texts and ``total = sum_k <sum_i x_i, sum_j (Y_{r-k})_j>``
    (not differentiable). The next block is in flight while the current one is computed.

    Backward: the blocks go round again, each with the gradient accumulated for it so far,
    ``G^k = grad * (sigmoid(t^k) - [k = 0] I)`` (its diagonal computed as ``-sigmoid(-t)``, exact): ``grad x += scale G^k Y_{r-k}``, the travelling
    gradient ``+= scale G^k^T x``, ``grad scale += sum_i <x_i, (G^k Y_{r-k})_i>``, ``grad bias +=
    sum G^k``; after ``W`` shifts each block's gradient is back on its owner. Saves only ``x``,
    ``y``: memory ``O(b D + b^2)`` per rank, not ``O(b B)``.
    """

    @staticmethod
    def forward(ctx, x, y, scale, bias, group):  # type: ignore[override]
        rank, world = rank_and_world(group)
        with torch.autocast(device_type=x.device.type, enabled=False):
            xs = x * scale
            x_sum = x.sum(0)
            block, loss, total = y.contiguous(), x.new_zeros(()), x.new_zeros(())
            for k in range(world):
                if k + 1 < world:
                    received, requests = _start_shift(block, group, rank, world)
                t = torch.mm(xs, block.T).add_(bias)
                loss += pair_softplus(t) if k == 0 else softplus(t).sum()
                total += torch.dot(x_sum, block.sum(0))
                if k + 1 < world:
                    _finish(requests)
                    block = received
        ctx.save_for_backward(x, y, scale, bias)
        ctx.group, ctx.rank, ctx.world = group, rank, world
        ctx.mark_non_differentiable(total)
        return loss, total

    @staticmethod
    def backward(ctx, grad_loss, _grad_total):  # type: ignore[override]
        first_order_only("ring SigLIP")
        x, y, scale, bias = ctx.saved_tensors
        group, rank, world = ctx.group, ctx.rank, ctx.world
        with torch.autocast(device_type=x.device.type, enabled=False):
            grad_loss = grad_loss.to(x.dtype)
            xs = x * scale
            grad_x = torch.zeros_like(x)
            grad_scale, grad_bias = x.new_zeros(()), x.new_zeros(())
            block, travelling = y.contiguous(), torch.zeros_like(y)
            for k in range(world):
                if k + 1 < world:  # the next block's features, while this one is computed
                    received, requests = _start_shift(block, group, rank, world)
                g = torch.mm(xs, block.T).add_(bias)
                if k == 0:  # d/dt softplus(-t) = -sigmoid(-t): exact where sigmoid(t) - 1 is 0
                    positives = g.diagonal().neg().sigmoid_().neg_()
                    g.sigmoid_().diagonal().copy_(positives)
                else:
                    g.sigmoid_()
                g.mul_(grad_loss)
                gb = torch.mm(g, block)
                grad_scale += torch.linalg.vecdot(x, gb).sum()
                grad_bias += g.sum()
                grad_x.add_(gb)
                travelling.addmm_(g.T, x)
                travelling, grad_requests = _start_shift(travelling, group, rank, world)
                _finish(grad_requests)
                if k + 1 < world:
                    _finish(requests)
                    block = received
            grad_x.mul_(scale)
            grad_y = travelling.mul_(scale)
        needs = ctx.needs_input_grad
        return (
            grad_x,
            grad_y,
            grad_scale if needs[2] else None,
            grad_bias if needs[3] else None,
            None,
        )


def _check_ranks(
    values: dict[str, torch.Tensor],
    group: dist.ProcessGroup | None,
    *,
    check_sizes: bool,
    check_finite: bool,
) -> None:
    """Collective input checks: every rank raises the same ``ValueError``, none is left waiting.

    ``values`` maps names to this rank's tensors, the first being the ``(b, D)`` image features.
    One gather of ``1 + len(values)`` numbers per rank compares the local batch sizes (with
    ``check_sizes``) and flags NaN/Inf anywhere (with ``check_finite``); the ranks that hold the
    bad values name the first offending row or value in their own message.

    Raises:
        ValueError: uneven local batches, or non-finite values on any rank.
    """
    if not (check_sizes or check_finite):
        return
    first = next(iter(values.values()))
    _, world = rank_and_world(group)
    local = [float(first.shape[0])]
    if check_finite:
        local += [float(not bool(torch.isfinite(v.detach()).all())) for v in values.values()]
    local_t = torch.tensor(local, dtype=torch.float64, device=first.device)
    table = torch.empty(world * len(local), dtype=torch.float64, device=first.device)
    _all_gather(table, local_t, group=group)
    rows = table.view(world, len(local)).tolist()
    sizes = [int(r[0]) for r in rows]
    if check_sizes and len(set(sizes)) != 1:
        raise ValueError(
            f"image, text: expected the same local batch size on every rank, got {sizes} "
            f"(rank order); drop or pad the last uneven batch"
        )
    for column, (name, value) in enumerate(values.items(), start=1):
        if not check_finite:
            break
        ranks = [r for r, row in enumerate(rows) if row[column]]
        if not ranks:
            continue
        if local[column]:
            if value.dim() == 0:
                check_finite_scalar(value, name)
            bad = (~torch.isfinite(value.detach())).reshape(value.shape[0], -1).any(dim=1)
            row = int(bad.nonzero()[0])
            raise ValueError(
                f"{name}: features contain NaN or Inf in {int(bad.sum())} of {value.shape[0]} "
                f"rows on this rank (first: row {row}); ranks with non-finite {name}: {ranks}"
            )
        raise ValueError(f"{name}: non-finite values on rank(s) {ranks} of {world}")


class _RowsCrossEntropy(torch.autograd.Function):
    """``sum_i (lse_j S_ij - S_{i, offset + i})`` of ``S = scale * a @ b.T``, strip by strip.

    ``apply(a, b, scale, offset, tile)``: ``a (n, D)`` rows, ``b (N, D)`` all columns, ``scale``
    0-dim, all one floating dtype; positives at columns ``offset .. offset + n - 1``. Saves only
    the features and ``n`` logsumexps; the backward recomputes each ``tile x N`` strip and forms
    ``G = grad * (softmax_row(S) - E)``, then ``grad a = scale G b``, ``grad b = scale G^T a``,
    ``grad scale = sum_i <a_i, (G b)_i>``.
    """

    @staticmethod
    def forward(ctx, a, b, scale, offset, tile):  # type: ignore[override]
        with torch.autocast(device_type=a.device.type, enabled=False):
            n = a.shape[0]
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
        with torch.autocast(device_type=a.device.type, enabled=False):
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


def _check_flat(
    manifold: ContrastiveManifold, x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor
) -> None:
    d = manifold.flat_dim
    if x.dim() != 2 or x.shape != y.shape or x.shape[0] == 0 or x.shape[1] != d:
        raise ValueError(
            f"x, y: expected two (b, {d}) tensors of equal shape with b >= 1 for {manifold!r}, "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.dtype != y.dtype or x.dtype != scale.dtype or not x.is_floating_point():
        raise TypeError(
            f"x, y, scale: expected one floating dtype, got {x.dtype}, {y.dtype}, {scale.dtype}"
        )
    if scale.dim() != 0:
        raise ValueError(f"scale: expected a 0-dim tensor, got shape {tuple(scale.shape)}")


def distributed_info_nce(
    manifold: ContrastiveManifold,
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    *,
    tile_size: int | None = None,
    group: dist.ProcessGroup | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This rank's share of the global symmetric InfoNCE, and the gathered features.

    Math: with ``X``, ``Y`` all ranks' features (``B x D``), ``S = scale * X Y^T``, ``o = r b``,
    ``L_r = 1/(2b) sum_{i<b} (lse_j S_{o+i,j} - S_{o+i,o+i}) + 1/(2b) sum_{j<b} (lse_i S_{i,o+j}
    - S_{o+j,o+j})``, so ``mean_r L_r`` is the single-process loss on the full batch. Computed
    with autocast off in the features' dtype (float32 or float64).

    Memory per rank: dense, two ``b x B`` logits blocks (image rows against all texts, text rows
    against all images) and their softmax; tiled, a few ``tile_size x B`` strips and ``O(b)``
    saved statistics. Plus ``2 B D`` for the gathered features.

    Args:
        manifold: the manifold whose ``similarity`` (dense) / flattening (both) defines ``S``.
        x: ``(b, D)`` this rank's flat image features, ``D = manifold.flat_dim``.
        y: ``(b, D)`` this rank's flat text features, row ``i`` paired with ``x[i]``.
        scale: 0-dim scale tensor of the features' dtype (gradients flow to it).
        tile_size: ``None`` for the dense blocks, else rows per strip.
        group: the process group; ``None`` for the world.

    Returns:
        ``(loss_r, X, Y)``: the 0-dim share and the gathered ``(B, D)`` features (differentiable).

    Raises:
        ValueError: ``x``/``y`` not ``(b, D)`` of equal shape, ``scale`` not 0-dim, ``tile_size``
            not a positive int.
        TypeError: ``x``, ``y``, ``scale`` of different or non-floating dtypes.
    """
    _check_flat(manifold, x, y, scale)
    if tile_size is not None and (
        isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1
    ):
        raise ValueError(f"tile_size: expected None or a positive int, got {tile_size!r}")
    rank, _ = rank_and_world(group)
    b = x.shape[0]
    offset = rank * b
    with torch.autocast(device_type=x.device.type, enabled=False):
        xs, ys = gather_with_grad(x, group), gather_with_grad(y, group)
        if tile_size is None:
            labels = torch.arange(offset, offset + b, device=x.device)
            image_rows = pair_logits(manifold, x, ys, scale)
            text_rows = pair_logits(manifold, y, xs, scale)
            loss = 0.5 * (F.cross_entropy(image_rows, labels) + F.cross_entropy(text_rows, labels))
        else:
            image_side = _RowsCrossEntropy.apply(x, ys, scale, offset, tile_size)
            text_side = _RowsCrossEntropy.apply(y, xs, scale, offset, tile_size)
            loss = (image_side + text_side) / (2 * b)
    return loss, xs, ys


def distributed_sigmoid(
    manifold: ContrastiveManifold,
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    *,
    exchange: str = "ring",
    group: dist.ProcessGroup | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's share of the global SigLIP loss, and the sum of its rows' similarities.

    Math: with ``t = scale * sim(x, Y) + bias`` (``b x B``, ``Y`` all ranks' texts) and positives
    at columns ``r b + i``, ``L_r = 1/b (sum_ij softplus(t_ij) - sum_i t_{i, rb+i})``, so
    ``mean_r L_r = 1/B (sum_ij softplus(t_ij) - sum_i t_ii)``, the single-process loss. Computed
    with autocast off in the features' dtype.

    ``exchange="ring"`` (SigLIP's scheme): ``W`` steps; at step ``k`` this rank holds the texts
    of rank ``r - k`` (``b x b`` logits) while the next block is already on its way from
    ``r - 1`` (``W - 1`` point-to-point shifts of ``b x D``). The backward recomputes the blocks
    and sends them round again with the gradient accumulated for each (``2W - 1`` shifts), so a
    rank never holds more than one ``b x b`` block: memory ``O(b^2 + b D)``. It relies on
    ``similarity(x, y) == flatten(x) @ flatten(y).T``, which every manifold here guarantees.
    ``exchange="gather"``: one gather of all texts (``B x D``), ``b x B`` logits kept for the
    backward, one reduce-scatter of their gradient.

    Args:
        manifold: the manifold whose ``similarity`` defines the logits.
        x: ``(b, D)`` this rank's flat image features.
        y: ``(b, D)`` this rank's flat text features, row ``i`` paired with ``x[i]``.
        scale: 0-dim scale of the features' dtype.
        bias: 0-dim logit bias.
        exchange: ``"ring"`` or ``"gather"``.
        group: the process group; ``None`` for the world.

    Returns:
        ``(loss_r, total)``: the 0-dim share and the detached ``sum_{i in r, j} <x_i, y_j>``
        (for the global diagnostics).

    Raises:
        ValueError: bad shapes or an unknown ``exchange``.
        TypeError: ``x``, ``y``, ``scale`` of different or non-floating dtypes.
    """
    _check_flat(manifold, x, y, scale)
    if not manifold.bilinear:
        raise ValueError(
            f"manifold: the distributed sigmoid loss (ring blocks and its diagnostics) needs a "
            f"bilinear similarity, {manifold!r} has none; use the InfoNCE"
        )
    if exchange not in _EXCHANGES:
        raise ValueError(f"exchange: expected one of {_EXCHANGES}, got {exchange!r}")
    rank, world = rank_and_world(group)
    b = x.shape[0]
    m = manifold
    with torch.autocast(device_type=x.device.type, enabled=False):
        bias = bias.to(x.dtype)
        if exchange == "ring" and world > 1:
            loss, total = _RingSigmoid.apply(x, y, scale, bias, group)
            return loss / b, total
        ys = gather_with_grad(y, group)
        t = m.similarity(m.unflatten(x * scale), m.unflatten(ys)) + bias
        loss = pair_softplus(t, offset=rank * b) / b
        return loss, torch.dot(x.detach().sum(0), ys.detach().sum(0))


@torch.no_grad()
def _global_pair_diagnostics(
    trace: torch.Tensor,
    total: torch.Tensor,
    b: int,
    scale: torch.Tensor,
    group: dist.ProcessGroup | None,
) -> dict[str, torch.Tensor]:
    """``pair_diagnostics`` of the global batch from per-rank sums (one all-reduce of 2 numbers)."""
    _, world = rank_and_world(group)
    sums = torch.stack([trace, total])
    dist.all_reduce(sums, group=group)
    trace, total = sums.unbind()
    n = world * b
    pos = trace / n
    neg = (total - trace) / (n * n - n)
    scale = scale.detach().to(pos.dtype)
    out = {"scale": scale, "pos_sim": pos, "neg_sim": neg, "gap_logits": scale * (pos - neg)}
    return {k: v.float() for k, v in out.items()}


class DistributedInfoNCE(InfoNCE):
    """:class:`InfoNCE` over the global batch of a process group, each rank computing its rows.

    A drop-in replacement (a subclass with the same parameters and ``state_dict`` keys): put it
    where the local loss was, inside the module DistributedDataParallel wraps or next to it.
    ``forward(image, text)`` takes this rank's ``(b, *point_shape)`` features and returns
    ``LossOutput(loss_r, diagnostics)`` with ``loss_r`` this rank's share (see
    :func:`distributed_info_nce`; ``mean_r loss_r`` is the full-batch loss, so average it over
    ranks to log it) and diagnostics of the **global** batch (from the gathered features, no
    extra communication). Without a process group, or in a group of one rank, it is exactly
    :class:`InfoNCE`.

    Gradients: the temperature's gradient on each rank is that rank's share; the local
    features' gradient is ``W`` times the full-batch one. DDP's average over ranks (or an
    all-reduce mean of ``logit_scale.grad`` if the loss lives outside the DDP module) gives the
    single-process gradients. First-order only.

    Args:
        manifold: as for :class:`InfoNCE`.
        temperature_obj, temperature, scale: as for :class:`InfoNCE`.
        tile_size: as for :class:`InfoNCE`.
        check_finite: as for :class:`InfoNCE`, checked on every rank at once (see below).
        group: the process group; ``None`` for the world. Stored on the module (a module holding
            a non-default group cannot be deep-copied).
        check_sizes: verify that every rank holds the same number of pairs (one small gather and
            a host synchronisation per call); turn off when the data pipeline guarantees it.

    Both checks are collective (one gather for the two): when any rank holds uneven or
    non-finite input, every rank raises, so no rank is left waiting in the next collective.

    Raises:
        As :class:`InfoNCE`.
    """

    def __init__(
        self,
        manifold: ContrastiveManifold,
        temperature_obj: Temperature | None = None,
        /,
        tile_size: int | None = None,
        check_finite: bool = False,
        *,
        temperature: Temperature | float | None = None,
        scale: float | None = None,
        group: dist.ProcessGroup | None = None,
        check_sizes: bool = True,
    ) -> None:
        super().__init__(manifold, temperature_obj, tile_size, check_finite,
                         temperature=temperature, scale=scale)
        self.group = group
        self.check_sizes = bool(check_sizes)

    @classmethod
    def from_loss(
        cls,
        loss: InfoNCE,
        *,
        group: dist.ProcessGroup | None = None,
        check_sizes: bool = True,
    ) -> DistributedInfoNCE:
        """The distributed form of ``loss``, sharing its :class:`Temperature` (same parameter).

        Raises:
            TypeError: ``loss`` is not an :class:`InfoNCE`.
        """
        if not isinstance(loss, InfoNCE):
            raise TypeError(f"loss: expected an InfoNCE, got {type(loss).__name__}")
        return cls(
            loss.manifold,
            loss.temperature,
            loss.tile_size,
            loss.check_finite,
            group=group,
            check_sizes=check_sizes,
        )

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> LossOutput:
        """This rank's share of the global loss, and the global diagnostics.

        Args:
            image: ``(b, *manifold.point_shape)``, this rank's image points.
            text: ``(b, *manifold.point_shape)``, this rank's text points, paired row by row.

        Returns:
            :class:`LossOutput`: ``loss_r`` and ``scale``, ``pos_sim``, ``neg_sim``,
            ``gap_logits`` over all ``W b`` pairs.

        Raises:
            ValueError: as :meth:`InfoNCE.forward`, or on every rank when any rank holds a
                different batch size (``check_sizes``) or non-finite features or scale
                (``check_finite``).
            TypeError: as :meth:`InfoNCE.forward`.
        """
        _, world = rank_and_world(self.group)
        if world == 1:
            return super().forward(image, text)
        x, y = flat_pair(self.manifold, image, text)
        scale = self.temperature.scale_as(x.dtype, x.device)
        _check_ranks(
            {"image": x, "text": y, "temperature": scale},
            self.group,
            check_sizes=self.check_sizes,
            check_finite=self.check_finite,
        )
        loss, xs, ys = distributed_info_nce(
            self.manifold, x, y, scale, tile_size=self.tile_size, group=self.group
        )
        with torch.autocast(device_type=x.device.type, enabled=False):
            diagnostics = pair_diagnostics(xs, ys, scale, self.manifold)
        return LossOutput(loss, diagnostics)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, distributed, check_sizes={self.check_sizes}"


class DistributedSigmoidLoss(SigmoidLoss):
    """:class:`SigmoidLoss` over the global batch of a process group, each rank its image rows.

    A drop-in replacement (same parameters and ``state_dict`` keys). ``forward(image, text)``
    returns ``LossOutput(loss_r, diagnostics)``: ``loss_r`` this rank's share (see
    :func:`distributed_sigmoid`; ``mean_r loss_r`` is the full-batch loss) and diagnostics of the
    **global** batch (one all-reduce of two numbers). Without a process group, or in a group of
    one rank, it is exactly :class:`SigmoidLoss`. Gradients as for :class:`DistributedInfoNCE`
    (``logit_bias`` like ``logit_scale``).

    Args:
        manifold: as for :class:`SigmoidLoss`.
        temperature_obj, temperature, scale: as for :class:`SigmoidLoss`.
        bias_init: as for :class:`SigmoidLoss`.
        check_finite: as for :class:`SigmoidLoss`, checked on every rank at once.
        exchange: ``"ring"`` (neighbour shifts, SigLIP's scheme) or ``"gather"``.
        group: the process group; ``None`` for the world.
        check_sizes: verify equal local batch sizes on every rank (one small gather per call).
            Both checks are collective, as for :class:`DistributedInfoNCE`.

    Raises:
        As :class:`SigmoidLoss`; ``ValueError`` for an unknown ``exchange``.
    """

    def __init__(
        self,
        manifold: ContrastiveManifold,
        temperature_obj: Temperature | None = None,
        /,
        bias_init: float = -10.0,
        check_finite: bool = False,
        *,
        temperature: Temperature | float | None = None,
        scale: float | None = None,
        exchange: str = "ring",
        group: dist.ProcessGroup | None = None,
        check_sizes: bool = True,
    ) -> None:
        super().__init__(manifold, temperature_obj, bias_init, check_finite,
                         temperature=temperature, scale=scale)
        if exchange not in _EXCHANGES:
            raise ValueError(f"exchange: expected one of {_EXCHANGES}, got {exchange!r}")
        self.exchange = exchange
        self.group = group
        self.check_sizes = bool(check_sizes)

    @classmethod
    def from_loss(
        cls,
        loss: SigmoidLoss,
        *,
        exchange: str = "ring",
        group: dist.ProcessGroup | None = None,
        check_sizes: bool = True,
    ) -> DistributedSigmoidLoss:
        """The distributed form of ``loss``, sharing its temperature and ``logit_bias``.

        Raises:
            TypeError: ``loss`` is not a :class:`SigmoidLoss`.
        """
        if not isinstance(loss, SigmoidLoss):
            raise TypeError(f"loss: expected a SigmoidLoss, got {type(loss).__name__}")
        new = cls(
            loss.manifold,
            loss.temperature,
            float(loss.logit_bias.detach()),
            loss.check_finite,
            exchange=exchange,
            group=group,
            check_sizes=check_sizes,
        )
        new.logit_bias = loss.logit_bias
        return new

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> LossOutput:
        """This rank's share of the global loss, and the global diagnostics.

        Args:
            image: ``(b, *manifold.point_shape)``, this rank's image points.
            text: ``(b, *manifold.point_shape)``, this rank's text points, paired row by row.

        Returns:
            :class:`LossOutput`: ``loss_r`` and ``scale``, ``pos_sim``, ``neg_sim``,
            ``gap_logits`` over all ``W b`` pairs, and ``bias``.

        Raises:
            ValueError: as :meth:`SigmoidLoss.forward`, or on every rank when any rank holds a
                different batch size (``check_sizes``) or non-finite features, scale or bias
                (``check_finite``).
            TypeError: as :meth:`SigmoidLoss.forward`.
        """
        _, world = rank_and_world(self.group)
        if world == 1:
            return super().forward(image, text)
        x, y = flat_pair(self.manifold, image, text)
        scale = self.temperature.scale_as(x.dtype, x.device)
        _check_ranks(
            {"image": x, "text": y, "temperature": scale, "logit_bias": self.logit_bias},
            self.group,
            check_sizes=self.check_sizes,
            check_finite=self.check_finite,
        )
        loss, total = distributed_sigmoid(
            self.manifold, x, y, scale, self.logit_bias, exchange=self.exchange, group=self.group
        )
        with torch.autocast(device_type=x.device.type, enabled=False):
            trace = torch.linalg.vecdot(x.detach(), y.detach()).sum()
            diagnostics = _global_pair_diagnostics(trace, total, x.shape[0], scale, self.group)
        diagnostics["bias"] = self.logit_bias.detach().float()
        return LossOutput(loss, diagnostics)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, distributed exchange={self.exchange}, "
            f"check_sizes={self.check_sizes}"
        )


def to_distributed(
    loss: nn.Module,
    *,
    group: dist.ProcessGroup | None = None,
    check_sizes: bool = True,
    exchange: str = "ring",
) -> DistributedInfoNCE | DistributedSigmoidLoss:
    """The distributed form of a library loss, sharing its parameters (``state_dict`` unchanged).

    ``model.loss = to_distributed(model.loss)`` makes a :class:`~manifold_align.models.TwoTower`
    compute the global loss; the optimizer's references to ``logit_scale``/``logit_bias`` stay
    valid. A loss that is already distributed is rebuilt with the new settings.

    Args:
        loss: an :class:`InfoNCE` or :class:`SigmoidLoss`.
        group: see :class:`DistributedInfoNCE`.
        check_sizes: see :class:`DistributedInfoNCE`.
        exchange: the sigmoid loss's text exchange (ignored for InfoNCE).

    Raises:
        TypeError: ``loss`` is neither.
    """
    if isinstance(loss, InfoNCE):
        return DistributedInfoNCE.from_loss(loss, group=group, check_sizes=check_sizes)
    if isinstance(loss, SigmoidLoss):
        return DistributedSigmoidLoss.from_loss(
            loss, exchange=exchange, group=group, check_sizes=check_sizes
        )
    raise TypeError(f"loss: expected InfoNCE or SigmoidLoss, got {type(loss).__name__}")
