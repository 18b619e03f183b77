"""Image-to-text and text-to-image retrieval recall@k, computed in bounded memory.

For a query $q$ and candidates $c_1, \\dots, c_M$ on a manifold with similarity $s$, the
candidates are ranked by decreasing $s(q, c_j)$; **ties go to the lower candidate index**
(the order of a stable sort). With $P(q)$ the set of candidates that match $q$,

$$\\mathrm{R@}k = \\frac{1}{|Q|} \\sum_{q \\in Q} \\mathbb{1}\\big[\\exists\\, j \\in P(q):
\\operatorname{rank}_q(j) < k\\big].$$

Several captions may describe one image: ``caption_to_image[c] = i`` says caption ``c``
belongs to image ``i``. Image-to-text counts a hit when *any* of the image's captions is in
the top ``k``; text-to-image when the caption's one image is.

Memory: the similarity matrix is never formed whole. Queries are taken ``chunk_size`` at a
time and candidates ``candidate_chunk_size`` at a time; each query keeps a running top
``K = min(max(ks), M)`` (values and indices). A block's own best ``K`` are found in linear
time (``torch.topk`` for the ``K``-th value, then the lowest-indexed ties), and merged with
the running ones by a stable descending sort of ``2K`` entries. Both directions come from the
same blocks: each block updates its rows' image-to-text and its columns' text-to-image top
``K``, so the similarities are computed once. Peak extra memory is about
``chunk_size x candidate_chunk_size`` similarities (plus masks of that size) and the ``M x K``
running column tops, whatever ``N`` and ``M`` are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from manifold_align.manifolds import ContrastiveManifold

__all__ = ["caption_owner", "check_ks", "retrieval_recall", "topk_indices"]


def check_ks(ks: Sequence[int], name: str = "ks") -> tuple[int, ...]:
    """Validate a sequence of cut-offs: non-empty, positive integers; returned sorted, unique.

    Raises:
        ValueError: if ``ks`` is empty or holds a value that is not a positive integer.
    """
    values = tuple(ks)
    if not values:
        raise ValueError(f"{name}: expected at least one cut-off k, got an empty sequence")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"{name}: expected positive integers, got {k!r} in {values}")
    return tuple(sorted(set(values)))


def _check_chunk(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return value


def _check_points(x: torch.Tensor, manifold: ContrastiveManifold, name: str) -> torch.Tensor:
    """``(N, *point_shape) -> (N, flat_dim)``; raises ``ValueError`` naming ``name``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    ps = tuple(manifold.point_shape)
    if x.dim() != 1 + len(ps) or tuple(x.shape[1:]) != ps:
        raise ValueError(
            f"{name}: expected shape (N, {', '.join(map(str, ps))}) for {manifold!r}, "
            f"got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one point, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: holds NaN or infinite values")
    return manifold.flatten(x)


def topk_indices(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    manifold: ContrastiveManifold,
    k: int,
    *,
    chunk_size: int = 1024,
    candidate_chunk_size: int = 8192,
) -> torch.Tensor:
    """Indices of each query's ``k`` most similar candidates, best first, ties to lower index.

    $\\operatorname{top}_k(q) = $ the first ``k`` of ``argsort_stable(-s(q, c))``, with
    ``s = manifold.similarity``.

    Args:
        queries: ``(N, *point_shape)``.
        candidates: ``(M, *point_shape)``.
        manifold: supplies ``flatten`` and ``similarity``.
        k: how many to keep, ``1 <= k <= M``.
        chunk_size: queries per block.
        candidate_chunk_size: candidates per block.

    Returns:
        ``(N, k)`` int64 on ``queries.device``.

    Raises:
        ValueError: for wrong shapes, non-finite points, ``k`` outside ``[1, M]`` or a
            non-positive chunk size.
    """
    _check_chunk(chunk_size, "chunk_size")
    _check_chunk(candidate_chunk_size, "candidate_chunk_size")
    q = _check_points(queries, manifold, "queries")
    c = _check_points(candidates, manifold, "candidates")
    return _topk_flat(q, c, manifold, k, chunk_size, candidate_chunk_size)


def _check_k(k: int, m: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= m:
        raise ValueError(
            f"k: expected an integer in [1, {m}] (the number of candidates), got {k!r}"
        )


def _topk_flat(
    q: torch.Tensor,
    c: torch.Tensor,
    manifold: ContrastiveManifold,
    k: int,
    chunk_size: int,
    candidate_chunk_size: int,
) -> torch.Tensor:
    """[topk_indices][manifold_align.evaluate.retrieval.topk_indices] on flattened points (already checked)."""
    _check_k(k, c.shape[0])
    rows, _ = _topk_both(q, c, manifold, k, None, chunk_size, candidate_chunk_size)
    return rows


def _merge(
    best: tuple[torch.Tensor, torch.Tensor] | None, val: torch.Tensor, idx: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Running top ``k`` per row: ``best`` (lower indices) then the new ``(val, idx)``.

    A stable descending sort of ``[best, new]`` keeps the rule "ties go to the lower index"
    because every index in ``best`` is lower than every new one, and the new entries arrive
    in index order.
    """
    if best is not None:
        val = torch.cat([best[0], val], dim=1)
        idx = torch.cat([best[1], idx], dim=1)
    order = torch.sort(val, dim=1, descending=True, stable=True).indices[:, :k]
    return torch.gather(val, 1, order), torch.gather(idx, 1, order)


def _topk_both(
    q: torch.Tensor,
    c: torch.Tensor,
    manifold: ContrastiveManifold,
    k_rows: int,
    k_cols: int | None,
    chunk_size: int,
    candidate_chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Top ``k_rows`` candidates of every query and (if ``k_cols``) top ``k_cols`` queries of
    every candidate, from **one** pass over the blocks of the similarity matrix.

    Blocks are visited query chunk by query chunk, candidate chunk by candidate chunk, so each
    row's and each column's blocks arrive in increasing index order (see `_merge`).
    """
    dtype = torch.promote_types(q.dtype, c.dtype)
    q, c = q.to(dtype), c.to(device=q.device, dtype=dtype)
    m = c.shape[0]
    col_best: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * (
        -(-m // candidate_chunk_size)
    )
    rows_out = []
    with torch.no_grad():
        for start in range(0, q.shape[0], chunk_size):
            qb = manifold.unflatten(q[start : start + chunk_size])
            row_best = None
            for j, cstart in enumerate(range(0, m, candidate_chunk_size)):
                cb = manifold.unflatten(c[cstart : cstart + candidate_chunk_size])
                sim = manifold.similarity(qb, cb)  # (n, mb), float32 or float64
                val, idx = _block_topk(sim, k_rows)
                row_best = _merge(row_best, val, idx + cstart, k_rows)
                if k_cols is not None:
                    val, idx = _block_topk(sim.T.contiguous(), k_cols)
                    col_best[j] = _merge(col_best[j], val, idx + start, k_cols)
            rows_out.append(row_best[1])
    cols = torch.cat([b[1] for b in col_best]) if k_cols is not None else None
    return torch.cat(rows_out), cols


def _block_topk(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``k`` best entries under "ties to the lower index", **in index order**.

    ``torch.topk`` finds the ``k``-th largest value $v$ of each row exactly but may pick any
    of the entries equal to $v$. Rows whose ``(k+1)``-th largest value is $v$ as well (a tie
    across the cut) are redone: every entry $> v$ is kept and the lowest-indexed entries
    $= v$ fill the rest. Linear in the block, unlike a full sort.

    Returns:
        ``(values, column indices)``, each ``(n, min(k, mb))``.
    """
    n, mb = sim.shape
    if k >= mb:
        return sim, torch.arange(mb, device=sim.device).expand(n, mb)
    val, idx = torch.topk(sim, k + 1, dim=1)  # sorted: val[:, k - 1] is the k-th value v
    kth, idx = val[:, k - 1 : k], idx[:, :k]
    crowded = (val[:, k] == kth[:, 0]).nonzero().flatten()  # the (k+1)-th value is v too
    if crowded.numel():
        rows, v = sim[crowded], kth[crowded]
        tied = rows == v
        room = k - (rows > v).sum(dim=1, keepdim=True)
        keep = (rows > v) | (tied & (torch.cumsum(tied, dim=1) <= room))
        idx[crowded] = keep.nonzero()[:, 1].reshape(-1, k)  # row-major: ascending columns
    idx = idx.sort(dim=1).values
    return torch.gather(sim, 1, idx), idx


def retrieval_recall(
    image_points: torch.Tensor,
    text_points: torch.Tensor,
    manifold: ContrastiveManifold,
    ks: Sequence[int] = (1, 5, 10),
    *,
    caption_to_image: torch.Tensor | None = None,
    chunk_size: int = 1024,
    candidate_chunk_size: int = 8192,
) -> dict[str, float | int]:
    """Recall@k for image-to-text and text-to-image retrieval.

    Image-to-text: $\\frac{1}{N}\\sum_i \\mathbb{1}[\\exists c: g(c) = i,\\ \\operatorname{rank}_i(c) < k]$
    over captions ranked by $s(x_i, y_c)$; text-to-image:
    $\\frac{1}{M}\\sum_c \\mathbb{1}[\\operatorname{rank}_c(g(c)) < k]$ over images ranked by
    $s(x_i, y_c)$, with $g$ = ``caption_to_image``. Ties go to the lower index. A cut-off
    ``k`` at least the number of candidates gives recall 1.

    Args:
        image_points: ``(N, *point_shape)``.
        text_points: ``(M, *point_shape)``.
        manifold: the embedding manifold (``similarity``, ``flatten``).
        ks: cut-offs, positive integers.
        caption_to_image: ``(M,)`` integer tensor, the image each caption describes; ``None``
            means one caption per image, caption ``i`` for image ``i`` (then ``M == N``).
        chunk_size: queries per block.
        candidate_chunk_size: candidates per block.

    Returns:
        ``{"image_to_text@k": float, "text_to_image@k": float, ...}`` for each ``k`` in
        ``ks``, plus ``"num_images"`` and ``"num_captions"``.

    Raises:
        ValueError: wrong shapes or non-finite points; ``caption_to_image`` of the wrong length,
            not integer, out of ``[0, N)``, or leaving an image with no caption; ``M != N``
            without ``caption_to_image``; bad ``ks`` or chunk sizes.
    """
    ks = check_ks(ks)
    _check_chunk(chunk_size, "chunk_size")
    _check_chunk(candidate_chunk_size, "candidate_chunk_size")
    x = _check_points(image_points, manifold, "image_points")
    y = _check_points(text_points, manifold, "text_points").to(x.device)
    n, m = x.shape[0], y.shape[0]
    owner = caption_owner(caption_to_image, n, m).to(x.device)

    top_i2t, top_t2i = _topk_both(
        x, y, manifold, min(ks[-1], m), min(ks[-1], n), chunk_size, candidate_chunk_size
    )
    hit_i2t = owner[top_i2t] == torch.arange(n, device=x.device)[:, None]  # (N, K)
    hit_t2i = top_t2i == owner[:, None]  # (M, K)

    out: dict[str, float | int] = {}
    for k in ks:
        out[f"image_to_text@{k}"] = hit_i2t[:, :k].any(dim=1).double().mean().item()
    for k in ks:
        out[f"text_to_image@{k}"] = hit_t2i[:, :k].any(dim=1).double().mean().item()
    out["num_images"] = n
    out["num_captions"] = m
    return out


def caption_owner(caption_to_image: torch.Tensor | None, n: int, m: int) -> torch.Tensor:
    """Validate ``caption_to_image`` for ``n`` images and ``m`` captions; ``(m,)`` int64.

    ``None`` means caption ``i`` belongs to image ``i`` and needs ``m == n``.

    Raises:
        ValueError: if the mapping is not a 1-D integer tensor of length ``m`` with values in
            ``[0, n)`` covering every image, or (for ``None``) if ``m != n``.
    """
    if caption_to_image is None:
        if m != n:
            raise ValueError(
                f"caption_to_image: required when the numbers of images ({n}) and "
                f"captions ({m}) differ"
            )
        return torch.arange(n)
    g = torch.as_tensor(caption_to_image)
    if g.dim() != 1 or g.shape[0] != m:
        raise ValueError(
            f"caption_to_image: expected shape ({m},) (one image index per caption), "
            f"got {tuple(g.shape)}"
        )
    if g.dtype.is_floating_point or g.dtype.is_complex or g.dtype == torch.bool:
        raise ValueError(f"caption_to_image: expected an integer tensor, got {g.dtype}")
    g = g.long()
    if m and (g.min() < 0 or g.max() >= n):
        raise ValueError(
            f"caption_to_image: expected image indices in [0, {n}), "
            f"got values in [{g.min().item()}, {g.max().item()}]"
        )
    counts = torch.bincount(g.cpu(), minlength=n)
    orphans = (counts == 0).nonzero().flatten()
    if orphans.numel():
        raise ValueError(
            f"caption_to_image: {orphans.numel()} image(s) have no caption "
            f"(first: {orphans[:5].tolist()}); every image needs at least one"
        )
    return g
