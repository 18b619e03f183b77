"""Exact distributed forms of the contrastive losses: each rank computes its rows of the global loss.

Setting: $W$ ranks (a ``torch.distributed`` process group), each holding $b$ local pairs
(the same $b$ on every rank), global batch $B = W b$; rank $r$ owns global rows
$o_r = r b, \\dots, r b + b - 1$. Each rank returns its *share* $L_r$ of the global loss $L$,
scaled so that $\\frac1W \\sum_r L_r = L$, which is what DistributedDataParallel needs: it
averages gradients over ranks, so the averaged gradient of every parameter (tower weights,
``logit_scale``, ``logit_bias``) is $\\partial L / \\partial\\theta$ of one process on the full
batch. Features are gathered *with gradients*
([gather_with_grad][manifold_align.losses.collectives.gather_with_grad]): the backward of the
gather sums (reduce-scatters) every rank's gradient for a block back onto the rank that owns
it. The gradient a rank sees for its own local features is therefore $W\\,\\partial L /
\\partial x_{\\text{local}}$; DDP's $1/W$ turns it into the single-process gradient of the
tower parameters.

* InfoNCE (dense and tiled): gather images $X$ and texts $Y$; rank $r$ computes its image
  rows against all texts and its text rows against all images,
  $L_r = \\frac{1}{2b} \\sum_{i \\in r} (\\operatorname{lse}_j S_{ij} - S_{ii}) +
  \\frac{1}{2b} \\sum_{j \\in r} (\\operatorname{lse}_i S_{ij} - S_{jj})$, $S = s\\,XY^\\top$.
  A text row $j$ of $s\\,Y X^\\top$ is column $j$ of $S$, so no column statistics cross
  ranks. Per rank: two $b \\times B$ logits blocks (dense) or a few ``tile x B`` strips
  (tiled, [RowsCrossEntropy][manifold_align.losses.tiled.RowsCrossEntropy]).
* Sigmoid (SigLIP): rank $r$ computes its image rows against all texts,
  $L_r = \\frac1b \\sum_{i \\in r} \\sum_j \\operatorname{softplus}(-z_{ij} t_{ij})$, with the
  strip kernel [sigmoid_sweep][manifold_align.losses.tiled.sigmoid_sweep], getting the texts
  either around a ring of neighbour exchanges (``exchange="ring"``, SigLIP's scheme: one
  $b \\times b$ block a step while the next $b \\times D$ block is in flight, each block's
  text gradient travelling with it back to its owner) or with one gather
  (``exchange="gather"``).

Communication per call, in features of $D$ numbers: InfoNCE gathers $2B$ and
reduce-scatters $2B$ in the backward; the sigmoid ring sends $(W - 1) b$ texts and $W b$ text
gradients per rank, all in the forward; the sigmoid gather $B$ each way.

Without an initialised process group, or with a group of one rank, every loss here is exactly
the local loss of `manifold_align.losses`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from manifold_align.losses.collectives import (
    all_gather,
    finish,
    gather_with_grad,
    rank_and_world,
    start_shift,
)
from manifold_align.losses.infonce import InfoNCE
from manifold_align.losses.output import (
    LossOutput,
    pair_diagnostics,
    pair_logits,
    pair_logits_and_similarity,
)
from manifold_align.losses.sigmoid import SigmoidLoss
from manifold_align.losses.temperature import Temperature
from manifold_align.losses.tiled import (
    SIGMOID_TILE,
    RowsCrossEntropy,
    TiledSigmoid,
    sigmoid_sweep,
)
from manifold_align.losses.validation import (
    check_finite_scalar,
    check_tile_size,
    first_order_only,
    flat_pair,
)
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


class _RingSigmoid(torch.autograd.Function):
    """SigLIP's ring: this rank's image rows against every rank's texts, one block a step.

    ``apply(x, y, scale, bias, group, tile)``: ``x, y (b, D)``, ``scale``, ``bias`` 0-dim, one
    dtype. Returns ``(loss_sum, total)``: $\\sum_k \\sum_{ij} \\operatorname{softplus}(-z^k_{ij}
    t^k_{ij})$ with $t^k = s\\,x Y_{r-k}^\\top + b$ the block of rank $r - k$'s texts ($z^0 = +1$
    on the diagonal, every other label $-1$), and the non-differentiable
    $\\mathrm{total} = \\sum_k \\langle \\sum_i x_i, \\sum_j (Y_{r-k})_j\\rangle$. Each block goes
    through [sigmoid_sweep][manifold_align.losses.tiled.sigmoid_sweep] while the next is in
    flight.

    Gradients are formed in the same sweep (when any input requires grad, which must then be
    so on every rank): $G^k$ gives $G^k Y_{r-k}$ (this rank's image gradient and scale
    gradient) and $G^{k\\top} (s x)$, added to the gradient travelling with block $r - k$,
    which is sent on to rank $r + 1$ after each step; after $W$ shifts every block's text
    gradient is back on its owner. Saves ``O(b D)``; the backward only multiplies by the
    incoming gradient. Memory per rank: two ``tile x b`` strips and a few ``b x D`` buffers.
    """

    @staticmethod
    def forward(ctx, x, y, scale, bias, group, tile):  # type: ignore[override]
        rank, world = rank_and_world(group)
        needs = ctx.needs_input_grad
        rows, cols, bias_grad = needs[0] or needs[2], needs[1], needs[3]
        with torch.autocast(device_type=x.device.type, enabled=False):
            x_sum = x.sum(0)
            block, loss, total = y.contiguous(), x.new_zeros(()), x.new_zeros(())
            gy_all = torch.zeros_like(x) if rows else None
            gsum_all = x.new_zeros(()) if bias_grad else None
            travelling = torch.zeros_like(y) if cols else None
            for k in range(world):
                if k + 1 < world:  # the next block's features, while this one is computed
                    received, requests = start_shift(block, group, rank, world)
                part, gy, gtx, gsum = sigmoid_sweep(
                    x, block, scale, bias, tile, 0 if k == 0 else None,
                    grad_rows=rows, grad_cols=cols, grad_sum=bias_grad,
                )
                loss += part
                total += torch.dot(x_sum, block.sum(0))
                if rows:
                    gy_all += gy
                if bias_grad:
                    gsum_all += gsum
                if cols:  # this block's text gradient goes on with it, back to its owner
                    travelling.add_(gtx)
                    travelling, grad_requests = start_shift(travelling, group, rank, world)
                    finish(grad_requests)
                if k + 1 < world:
                    finish(requests)
                    block = received
            dscale = torch.linalg.vecdot(x, gy_all).sum() if rows else None
        ctx.save_for_backward(gy_all, travelling, scale, dscale, gsum_all)
        ctx.mark_non_differentiable(total)
        return loss, total

    @staticmethod
    def backward(ctx, grad_loss, _grad_total):  # type: ignore[override]
        first_order_only("ring SigLIP")
        gy, gty, scale, dscale, gsum = ctx.saved_tensors
        needs = ctx.needs_input_grad
        with torch.autocast(device_type=scale.device.type, enabled=False):
            g = grad_loss.to(scale.dtype)
            return (
                gy * (g * scale) if needs[0] else None,
                gty * g if needs[1] else None,
                dscale * g if needs[2] else None,
                gsum * g if needs[3] else None,
                None,
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
    all_gather(table, local_t, group=group)
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

    Math: with $X$, $Y$ all ranks' features ($B \\times D$), $S = s\\,X Y^\\top$, $o = r b$,
    $L_r = \\frac{1}{2b} \\sum_{i<b} (\\operatorname{lse}_j S_{o+i,j} - S_{o+i,o+i}) +
    \\frac{1}{2b} \\sum_{j<b} (\\operatorname{lse}_i S_{i,o+j} - S_{o+j,o+j})$, so
    $\\frac1W \\sum_r L_r$ is the single-process loss on the full batch. Computed with autocast
    off in the features' dtype (float32 or float64).

    Memory per rank: dense, two $b \\times B$ logits blocks (image rows against all texts, text
    rows against all images) and their softmax; tiled, a few ``tile_size x B`` strips and
    ``O(b)`` saved statistics. Plus $2 B D$ for the gathered features.

    Args:
        manifold: the manifold whose ``similarity`` (dense) / flattening (both) defines $S$.
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
    loss, xs, ys, _ = _distributed_info_nce(manifold, x, y, scale, tile_size, group)
    return loss, xs, ys


def _distributed_info_nce(
    manifold: ContrastiveManifold,
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    tile_size: int | None,
    group: dist.ProcessGroup | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """[distributed_info_nce][manifold_align.losses.distributed.distributed_info_nce], plus, on
    a manifold that is not bilinear, the ``(b, B)`` similarity of this rank's images to all
    texts that the loss formed (else ``None``), for the diagnostics."""
    _check_flat(manifold, x, y, scale)
    check_tile_size(tile_size)
    rank, _ = rank_and_world(group)
    b = x.shape[0]
    offset = rank * b
    image_sim = None
    with torch.autocast(device_type=x.device.type, enabled=False):
        xs, ys = gather_with_grad(x, group), gather_with_grad(y, group)
        if tile_size is None:
            labels = torch.arange(offset, offset + b, device=x.device)
            image_rows, image_sim = pair_logits_and_similarity(manifold, x, ys, scale)
            text_rows = pair_logits(manifold, y, xs, scale)
            loss = 0.5 * (F.cross_entropy(image_rows, labels) + F.cross_entropy(text_rows, labels))
        else:
            image_side = RowsCrossEntropy.apply(x, ys, scale, offset, tile_size)
            text_side = RowsCrossEntropy.apply(y, xs, scale, offset, tile_size)
            loss = (image_side + text_side) / (2 * b)
    return loss, xs, ys, image_sim


def distributed_sigmoid(
    manifold: ContrastiveManifold,
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    *,
    exchange: str = "ring",
    group: dist.ProcessGroup | None = None,
    tile_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's share of the global SigLIP loss, and the sum of its rows' similarities.

    Math: with $t = s\\,x Y^\\top + b$ ($b \\times B$, $Y$ all ranks' texts) and positives at
    columns $o_r + i$, $L_r = \\frac1b \\sum_{ij} \\operatorname{softplus}(-z_{ij} t_{ij})$, so
    $\\frac1W \\sum_r L_r$ is the single-process loss. Computed with autocast off in the
    features' dtype, by the strip kernel
    [sigmoid_sweep][manifold_align.losses.tiled.sigmoid_sweep] (gradients formed in the
    forward sweep; first-order only). It relies on ``similarity(x, y) == flatten(x) @
    flatten(y).T``, which every manifold here guarantees.

    ``exchange="ring"`` (SigLIP's scheme): $W$ steps; at step $k$ this rank holds the texts of
    rank $r - k$ ($b \\times b$ logits, in strips) while the next block is already on its way
    from $r - 1$ ($W - 1$ point-to-point shifts of $b \\times D$); the text gradient of each
    block travels with it and is back on its owner after $W$ more shifts, so a rank never
    holds more than two ``tile x b`` strips and a few $b \\times D$ buffers. If any input
    requires grad on one rank, it must on every rank (the gradients' shifts are collective).
    ``exchange="gather"``: one gather of all texts ($B \\times D$), strips of
    ``tile x B``, one reduce-scatter of the text gradient in the backward.

    Args:
        manifold: the manifold the flat features belong to.
        x: ``(b, D)`` this rank's flat image features.
        y: ``(b, D)`` this rank's flat text features, row ``i`` paired with ``x[i]``.
        scale: 0-dim scale of the features' dtype.
        bias: 0-dim logit bias.
        exchange: ``"ring"`` or ``"gather"``.
        group: the process group; ``None`` for the world.
        tile_size: rows per strip, ``None`` for ``SIGMOID_TILE`` (512).

    Returns:
        ``(loss_r, total)``: the 0-dim share and the detached
        $\\sum_{i \\in r, j} \\langle x_i, y_j\\rangle$ (for the global diagnostics).

    Raises:
        ValueError: bad shapes, an unknown ``exchange`` or a bad ``tile_size``.
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
    check_tile_size(tile_size)
    tile = SIGMOID_TILE if tile_size is None else tile_size
    rank, world = rank_and_world(group)
    b = x.shape[0]
    with torch.autocast(device_type=x.device.type, enabled=False):
        bias = bias.to(x.dtype)
        if exchange == "ring" and world > 1:
            loss, total = _RingSigmoid.apply(x, y, scale, bias, group, tile)
            return loss / b, total
        ys = gather_with_grad(y, group)
        loss = TiledSigmoid.apply(x, ys, scale, bias, tile, rank * b) / b
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
    """[InfoNCE][manifold_align.losses.infonce.InfoNCE] over the global batch of a process group,
    each rank computing its rows.

    A drop-in replacement (a subclass with the same parameters and ``state_dict`` keys): put it
    where the local loss was, inside the module DistributedDataParallel wraps or next to it.
    ``forward(image, text)`` takes this rank's ``(b, *point_shape)`` features and returns
    ``LossOutput(loss_r, diagnostics)`` with ``loss_r`` this rank's share (see
    [distributed_info_nce][manifold_align.losses.distributed.distributed_info_nce]; ``mean_r
    loss_r`` is the full-batch loss, so average it over ranks to log it) and diagnostics of the
    **global** batch (from the gathered features, no extra communication). Without a process group,
    or in a group of one rank, it is exactly [InfoNCE][manifold_align.losses.infonce.InfoNCE].

    Gradients: the temperature's gradient on each rank is that rank's share; the local
    features' gradient is ``W`` times the full-batch one. DDP's average over ranks (or an
    all-reduce mean of ``logit_scale.grad`` if the loss lives outside the DDP module) gives the
    single-process gradients. First-order only.

    Args:
        manifold: as for [InfoNCE][manifold_align.losses.infonce.InfoNCE].
        temperature_obj: as for [InfoNCE][manifold_align.losses.infonce.InfoNCE].
        temperature: as for [InfoNCE][manifold_align.losses.infonce.InfoNCE].
        scale: as for [InfoNCE][manifold_align.losses.infonce.InfoNCE].
        tile_size: as for [InfoNCE][manifold_align.losses.infonce.InfoNCE].
        check_finite: as for [InfoNCE][manifold_align.losses.infonce.InfoNCE], checked on every rank
            at once (see below).
        group: the process group; ``None`` for the world. Stored on the module (a module holding
            a non-default group cannot be deep-copied).
        check_sizes: verify that every rank holds the same number of pairs (one small gather and
            a host synchronisation per call); turn off when the data pipeline guarantees it.

    Both checks are collective (one gather for the two): when any rank holds uneven or
    non-finite input, every rank raises, so no rank is left waiting in the next collective.

    Raises:
        TypeError, ValueError: as [InfoNCE][manifold_align.losses.infonce.InfoNCE] raises them.
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
        """The distributed form of ``loss``, sharing its
        [Temperature][manifold_align.losses.temperature.Temperature] (same parameter).

        Raises:
            TypeError: ``loss`` is not an [InfoNCE][manifold_align.losses.infonce.InfoNCE].
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
            [LossOutput][manifold_align.losses.output.LossOutput]: ``loss_r`` and ``scale``,
            ``pos_sim``, ``neg_sim``, ``gap_logits`` over all ``W b`` pairs.

        Raises:
            ValueError: as [InfoNCE.forward][manifold_align.losses.infonce.InfoNCE.forward], or on
                every rank when any rank holds a different batch size (``check_sizes``) or
                non-finite features or scale (``check_finite``).
            TypeError: as [InfoNCE.forward][manifold_align.losses.infonce.InfoNCE.forward].
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
        loss, xs, ys, image_sim = _distributed_info_nce(
            self.manifold, x, y, scale, self.tile_size, self.group
        )
        with torch.autocast(device_type=x.device.type, enabled=False):
            if image_sim is None:  # bilinear: O(B D) from the gathered features
                diagnostics = pair_diagnostics(xs, ys, scale, self.manifold)
            else:  # this rank's rows of S, as the loss formed them; two numbers all-reduced
                rank, _ = rank_and_world(self.group)
                sim = image_sim.detach().to(torch.promote_types(x.dtype, torch.float32))
                b = x.shape[0]
                trace = sim.diagonal(offset=rank * b).sum()
                diagnostics = _global_pair_diagnostics(trace, sim.sum(), b, scale, self.group)
        return LossOutput(loss, diagnostics)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, distributed, check_sizes={self.check_sizes}"


class DistributedSigmoidLoss(SigmoidLoss):
    """[SigmoidLoss][manifold_align.losses.sigmoid.SigmoidLoss] over the global batch of a process
    group, each rank its image rows.

    A drop-in replacement (same parameters and ``state_dict`` keys). ``forward(image, text)``
    returns ``LossOutput(loss_r, diagnostics)``: ``loss_r`` this rank's share (see
    [distributed_sigmoid][manifold_align.losses.distributed.distributed_sigmoid]; ``mean_r loss_r``
    is the full-batch loss) and diagnostics of the **global** batch (one all-reduce of two numbers).
    Without a process group, or in a group of one rank, it is exactly
    [SigmoidLoss][manifold_align.losses.sigmoid.SigmoidLoss]. Gradients as for
    [DistributedInfoNCE][manifold_align.losses.distributed.DistributedInfoNCE] (``logit_bias`` like
    ``logit_scale``).

    Args:
        manifold: as for [SigmoidLoss][manifold_align.losses.sigmoid.SigmoidLoss].
        temperature_obj: as for [SigmoidLoss][manifold_align.losses.sigmoid.SigmoidLoss].
        temperature: as for [SigmoidLoss][manifold_align.losses.sigmoid.SigmoidLoss].
        scale: as for [SigmoidLoss][manifold_align.losses.sigmoid.SigmoidLoss].
        bias_init: as for `SigmoidLoss`.
        check_finite: as for `SigmoidLoss`, checked on every rank at once.
        tile_size: as for `SigmoidLoss`: rows per strip of each block.
        exchange: ``"ring"`` (neighbour shifts, SigLIP's scheme) or ``"gather"``.
        group: the process group; ``None`` for the world.
        check_sizes: verify equal local batch sizes on every rank (one small gather per call).
            Both checks are collective, as for
            [DistributedInfoNCE][manifold_align.losses.distributed.DistributedInfoNCE].

    Raises:
        TypeError, ValueError: as [SigmoidLoss][manifold_align.losses.sigmoid.SigmoidLoss] raises
            them; ``ValueError`` also for an unknown ``exchange``.
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
        tile_size: int | None = None,
        exchange: str = "ring",
        group: dist.ProcessGroup | None = None,
        check_sizes: bool = True,
    ) -> None:
        super().__init__(manifold, temperature_obj, bias_init, check_finite,
                         temperature=temperature, scale=scale, tile_size=tile_size)
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
            TypeError: ``loss`` is not a [SigmoidLoss][manifold_align.losses.sigmoid.SigmoidLoss].
        """
        if not isinstance(loss, SigmoidLoss):
            raise TypeError(f"loss: expected a SigmoidLoss, got {type(loss).__name__}")
        new = cls(
            loss.manifold,
            loss.temperature,
            float(loss.logit_bias.detach()),
            loss.check_finite,
            tile_size=loss.tile_size,
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
            [LossOutput][manifold_align.losses.output.LossOutput]: ``loss_r`` and ``scale``,
            ``pos_sim``, ``neg_sim``, ``gap_logits`` over all ``W b`` pairs, and ``bias``.

        Raises:
            ValueError: as [SigmoidLoss.forward][manifold_align.losses.sigmoid.SigmoidLoss.forward],
                or on every rank when any rank holds a different batch size (``check_sizes``) or
                non-finite features, scale or bias (``check_finite``).
            TypeError: as [SigmoidLoss.forward][manifold_align.losses.sigmoid.SigmoidLoss.forward].
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
            self.manifold, x, y, scale, self.logit_bias,
            exchange=self.exchange, group=self.group, tile_size=self.tile_size,
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

    ``model.loss = to_distributed(model.loss)`` makes a
    [TwoTower][manifold_align.models.two_tower.TwoTower] compute the global loss; the optimizer's
    references to ``logit_scale``/``logit_bias`` stay valid. A loss that is already distributed is
    rebuilt with the new settings.

    Args:
        loss: an [InfoNCE][manifold_align.losses.infonce.InfoNCE] or
            [SigmoidLoss][manifold_align.losses.sigmoid.SigmoidLoss].
        group: see [DistributedInfoNCE][manifold_align.losses.distributed.DistributedInfoNCE].
        check_sizes: see [DistributedInfoNCE][manifold_align.losses.distributed.DistributedInfoNCE].
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

