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
``K = min(max(ks), M)`` (values and indices), merged with each new block of similarities by a
stable descending sort. Peak extra memory is ``chunk_size x (candidate_chunk_size + K)``
similarities, whatever ``N`` and ``M`` are.
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


def _topk_flat(
    q: torch.Tensor,
    c: torch.Tensor,
    manifold: ContrastiveManifold,
    k: int,
    chunk_size: int,
    candidate_chunk_size: int,
) -> torch.Tensor:
    """:func:`topk_indices` on flattened points (already checked)."""
    m = c.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= m:
        raise ValueError(
            f"k: expected an integer in [1, {m}] (the number of candidates), got {k!r}"
        )
    dtype = torch.promote_types(q.dtype, c.dtype)
    q, c = q.to(dtype), c.to(device=q.device, dtype=dtype)
    out = []
    with torch.no_grad():
        for start in range(0, q.shape[0], chunk_size):
            qb = manifold.unflatten(q[start : start + chunk_size])
            best_val = best_idx = None
            for cstart in range(0, m, candidate_chunk_size):
                cb = manifold.unflatten(c[cstart : cstart + candidate_chunk_size])
                sim = manifold.similarity(qb, cb)  # (n, mb), float32 or float64
                idx = torch.arange(cstart, cstart + cb.shape[0], device=sim.device)
                idx = idx.expand_as(sim)
                if best_val is not None:
                    # Earlier candidates (lower indices) first, so a stable sort keeps the rule
                    # "ties go to the lower index" across blocks.
                    sim = torch.cat([best_val, sim], dim=1)
                    idx = torch.cat([best_idx, idx], dim=1)
                order = torch.sort(sim, dim=1, descending=True, stable=True).indices[:, :k]
                best_val = torch.gather(sim, 1, order)
                best_idx = torch.gather(idx, 1, order)
            out.append(best_idx)
    return torch.cat(out, dim=0)


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

    top_i2t = _topk_flat(x, y, manifold, min(ks[-1], m), chunk_size, candidate_chunk_size)
    hit_i2t = owner[top_i2t] == torch.arange(n, device=x.device)[:, None]  # (N, K)
    top_t2i = _topk_flat(y, x, manifold, min(ks[-1], n), chunk_size, candidate_chunk_size)
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
