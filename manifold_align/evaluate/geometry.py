"""Geometry diagnostics of paired embeddings: similarity gap, per-token statistics, alignment
and uniformity.

Pairs: image points $x_1, \\dots, x_N$ and caption points $y_1, \\dots, y_M$ with
$g(c)$ the image of caption $c$ (``caption_to_image``; identity when ``None``). The
*positive* pairs are $P = \\{(g(c), c)\\}$ ($M$ of them), the *negative* pairs all other
$(i, c)$ ($NM - M$ of them).

* Similarity gap: $\\bar s_+ - \\bar s_-$ with $\\bar s_\\pm$ the mean of $s(x_i, y_c)$ over
  positive / negative pairs, also in logit units $\\tau(\\bar s_+ - \\bar s_-)$ for a scale
  $\\tau$ (the temperature's ``scale``), which is what the softmax sees.
* Per-token statistics: for a point of shape $(k, d)$, token $t$'s similarity is
  $\\langle x_i^{(t)}, y_c^{(t)} \\rangle$ (a cosine on ``Oblique`` and ``Sphere``, whose
  tokens are unit vectors); its mean and standard deviation over positive and negative pairs.
* Alignment (Wang & Isola, 2020): $\\mathbb E_{(i,c) \\in P} \\lVert x_i - y_c \\rVert^\\alpha$.
* Uniformity: $\\log \\frac{2}{n(n-1)} \\sum_{i<j} e^{-t \\lVert x_i - x_j \\rVert^2}$.

Alignment and uniformity use the *flattened* points, where
$\\lVert x - y \\rVert^2 = 2k - 2 s(x, y)$ on ``Oblique(k, d)``.

On a manifold whose similarity is not bilinear (``Lorentz``, and products with it) the
ambient coordinates mean nothing of the kind: the similarity moments are read from
``manifold.similarity`` in row blocks (``O(N M)`` time, one block of memory), the whole
point counts as one "token", and alignment and uniformity use the geodesic distance
``manifold.dist`` in place of $\\lVert x - y \\rVert$.

Memory stays bounded without any $N \\times M$ matrix: over all pairs,
$\\sum_{i,c} \\langle x_i, y_c \\rangle = \\langle \\sum_i x_i, \\sum_c y_c \\rangle$ and
$\\sum_{i,c} \\langle x_i, y_c \\rangle^2 = \\langle X^\\top X, Y^\\top Y \\rangle_F$ (Gram
matrices of size $d \\times d$ per token, $D \\times D$ for the flattened points); the
negatives are all pairs minus the positives. Uniformity is accumulated block by block with a
running log-sum-exp. Statistics are accumulated in float64, because
$\\operatorname{Var} = \\mathbb E s^2 - (\\mathbb E s)^2$ cancels badly in float32.
"""

from __future__ import annotations

import math

import torch

from manifold_align.evaluate.retrieval import caption_owner
from manifold_align.manifolds import ContrastiveManifold

__all__ = [
    "alignment",
    "geometry_diagnostics",
    "similarity_gap",
    "token_similarity_stats",
    "uniformity",
]


def _points64(x: torch.Tensor, manifold: ContrastiveManifold, name: str) -> torch.Tensor:
    """Validated ``(N, *point_shape)`` -> float64 ``(N, *point_shape)``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    ps = tuple(manifold.point_shape)
    if x.dim() != 1 + len(ps) or tuple(x.shape[1:]) != ps or x.shape[0] == 0:
        raise ValueError(
            f"{name}: expected shape (N >= 1, {', '.join(map(str, ps))}) for {manifold!r}, "
            f"got {tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: holds NaN or infinite values")
    return x.detach().to(torch.float64)


def _tokens(x: torch.Tensor, manifold: ContrastiveManifold, name: str) -> torch.Tensor:
    """``(N, d) -> (N, 1, d)``, ``(N, k, d)`` unchanged; other point shapes raise ``ValueError``."""
    ps = tuple(manifold.point_shape)
    if len(ps) == 1:
        return x.unsqueeze(1)
    if len(ps) == 2:
        return x
    raise ValueError(
        f"{name}: per-token statistics need points of shape (d,) or (k, d), "
        f"{manifold!r} has point shape {ps}"
    )


def _pair_moments(
    x: torch.Tensor, y: torch.Tensor, owner: torch.Tensor
) -> dict[str, torch.Tensor | int]:
    """Per-token mean/std of $\\langle x_i^{(t)}, y_c^{(t)}\\rangle$ over positive and negative pairs.

    ``x (N, k, d)``, ``y (M, k, d)`` float64, ``owner (M,)``; returns ``(k,)`` tensors.
    """
    n, m = x.shape[0], y.shape[0]
    n_neg = n * m - m
    pos = (x[owner] * y).sum(-1)  # (M, k)
    pos_sum, pos_sq = pos.sum(0), pos.square().sum(0)
    all_sum = (x.sum(0) * y.sum(0)).sum(-1)  # (k,)
    gram_x = torch.einsum("nkd,nke->kde", x, x)
    gram_y = torch.einsum("nkd,nke->kde", y, y)
    all_sq = (gram_x * gram_y).sum((-2, -1))  # (k,)
    return _moments(pos_sum, pos_sq, all_sum, all_sq, m, n_neg)


def _moments(
    pos_sum: torch.Tensor,
    pos_sq: torch.Tensor,
    all_sum: torch.Tensor,
    all_sq: torch.Tensor,
    m: int,
    n_neg: int,
) -> dict[str, torch.Tensor | int]:
    """Means and standard deviations over ``m`` positive and ``n_neg`` negative pairs from the
    sums of $s$ and $s^2$ over the positives and over all pairs."""
    pos_mean = pos_sum / m
    neg_mean = (all_sum - pos_sum) / n_neg
    pos_var = (pos_sq / m - pos_mean.square()).clamp_min(0)
    neg_var = ((all_sq - pos_sq) / n_neg - neg_mean.square()).clamp_min(0)
    return {
        "pos_mean": pos_mean,
        "pos_std": pos_var.sqrt(),
        "neg_mean": neg_mean,
        "neg_std": neg_var.sqrt(),
        "num_positive": m,
        "num_negative": n_neg,
    }


def _similarity_moments(
    x: torch.Tensor,
    y: torch.Tensor,
    owner: torch.Tensor,
    manifold: ContrastiveManifold,
    rows: int = 256,
) -> dict[str, torch.Tensor | int]:
    """`_pair_moments` (one token) from ``manifold.similarity`` in blocks of ``rows`` images."""
    n, m = x.shape[0], y.shape[0]
    n_neg = n * m - m
    pos_sum = pos_sq = all_sum = all_sq = x.new_zeros(1)
    for a in range(0, n, rows):
        s = manifold.similarity(x[a : a + rows], y)  # (r, M)
        is_pos = owner[None, :] == torch.arange(a, a + s.shape[0], device=x.device)[:, None]
        pos = s[is_pos]
        pos_sum, pos_sq = pos_sum + pos.sum(), pos_sq + pos.square().sum()
        all_sum, all_sq = all_sum + s.sum(), all_sq + s.square().sum()
    return _moments(pos_sum, pos_sq, all_sum, all_sq, m, n_neg)


def _pairs(
    image_points: torch.Tensor,
    text_points: torch.Tensor,
    manifold: ContrastiveManifold,
    caption_to_image: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = _points64(image_points, manifold, "image_points")
    y = _points64(text_points, manifold, "text_points").to(x.device)
    owner = caption_owner(caption_to_image, x.shape[0], y.shape[0]).to(x.device)
    if x.shape[0] < 2:
        raise ValueError(f"image_points: negative pairs need at least 2 images, got {x.shape[0]}")
    return x, y, owner


def similarity_gap(
    image_points: torch.Tensor,
    text_points: torch.Tensor,
    manifold: ContrastiveManifold,
    *,
    scale: float | torch.Tensor | None = None,
    caption_to_image: torch.Tensor | None = None,
) -> dict[str, float | int | list[float]]:
    """Mean and spread of the similarity over positive and negative pairs, and their gap.

    $\\text{gap} = \\bar s_+ - \\bar s_-$ and $\\text{gap}_{\\text{logits}} = \\tau\\,\\text{gap}$
    with $s$ = ``manifold.similarity``; standard deviations are over pairs (divide by the
    count).

    Args:
        image_points: ``(N, *point_shape)``, ``N >= 2``.
        text_points: ``(M, *point_shape)``.
        manifold: the embedding manifold.
        scale: the logit scale $\\tau$ (a float or scalar tensor); ``None`` leaves out
            ``gap_logits``.
        caption_to_image: ``(M,)`` image index of each caption; ``None`` pairs ``i`` with ``i``.

    Returns:
        ``pos_mean, pos_std, neg_mean, neg_std, gap`` (similarity units), ``gap_logits`` and
        ``scale`` (when ``scale`` is given), ``similarity_range`` ``[low, high]``,
        ``num_positive``, ``num_negative``.

    Raises:
        ValueError: wrong shapes, non-finite points, fewer than 2 images, a bad
            ``caption_to_image``, or a non-finite ``scale``.
    """
    x, y, owner = _pairs(image_points, text_points, manifold, caption_to_image)
    if manifold.bilinear:
        stats = _pair_moments(
            manifold.flatten(x).unsqueeze(1), manifold.flatten(y).unsqueeze(1), owner
        )
    else:
        stats = _similarity_moments(x, y, owner, manifold)
    out: dict[str, float | int | list[float]] = {
        key: (value.item() if isinstance(value, torch.Tensor) else value)
        for key, value in stats.items()
    }
    out["gap"] = out["pos_mean"] - out["neg_mean"]
    if scale is not None:
        tau = float(scale)
        if not math.isfinite(tau):
            raise ValueError(f"scale: expected a finite number, got {tau}")
        out["scale"] = tau
        out["gap_logits"] = tau * out["gap"]
    out["similarity_range"] = [float(v) for v in manifold.similarity_range]
    return out


def token_similarity_stats(
    image_points: torch.Tensor,
    text_points: torch.Tensor,
    manifold: ContrastiveManifold,
    *,
    caption_to_image: torch.Tensor | None = None,
) -> dict[str, list[float] | int]:
    """Per-token similarity $\\langle x_i^{(t)}, y_c^{(t)}\\rangle$: mean and std, positives vs negatives.

    A point of shape ``(d,)`` counts as one token, ``(k, d)`` as ``k`` tokens. On
    ``Oblique`` these are the cosines whose sum is the similarity.

    Args:
        image_points: ``(N, *point_shape)``, ``N >= 2``.
        text_points: ``(M, *point_shape)``.
        manifold: a manifold with point shape ``(d,)`` or ``(k, d)``.
        caption_to_image: ``(M,)`` image index of each caption; ``None`` pairs ``i`` with ``i``.

    Returns:
        ``pos_mean, pos_std, neg_mean, neg_std, gap`` as lists of ``k`` floats, and
        ``num_positive``, ``num_negative``.

    Raises:
        ValueError: as [similarity_gap][manifold_align.evaluate.geometry.similarity_gap], or a point shape of more than two dimensions.
    """
    x, y, owner = _pairs(image_points, text_points, manifold, caption_to_image)
    if manifold.bilinear:
        stats = _pair_moments(
            _tokens(x, manifold, "image_points"), _tokens(y, manifold, "text_points"), owner
        )
    else:  # one "token": the whole point and its (non-bilinear) similarity
        stats = _similarity_moments(x, y, owner, manifold)
    stats["gap"] = stats["pos_mean"] - stats["neg_mean"]
    return {
        key: (value.tolist() if isinstance(value, torch.Tensor) else value)
        for key, value in stats.items()
    }


def alignment(
    image_points: torch.Tensor,
    text_points: torch.Tensor,
    manifold: ContrastiveManifold,
    *,
    caption_to_image: torch.Tensor | None = None,
    alpha: float = 2.0,
) -> float:
    """Wang & Isola's alignment, $\\mathbb E_{(i,c) \\in P} \\lVert x_i - y_c \\rVert_2^\\alpha$, on flattened points.

    Args:
        image_points: ``(N, *point_shape)``.
        text_points: ``(M, *point_shape)``.
        manifold: the embedding manifold (for ``flatten``).
        caption_to_image: ``(M,)`` image index of each caption; ``None`` pairs ``i`` with ``i``.
        alpha: the exponent, ``> 0``.

    Raises:
        ValueError: wrong shapes, non-finite points, a bad ``caption_to_image``, ``alpha <= 0``.
    """
    if not alpha > 0:
        raise ValueError(f"alpha: expected a positive exponent, got {alpha}")
    x = _points64(image_points, manifold, "image_points")
    y = _points64(text_points, manifold, "text_points").to(x.device)
    owner = caption_owner(caption_to_image, x.shape[0], y.shape[0]).to(x.device)
    if not manifold.bilinear:
        return manifold.dist(x[owner], y).pow(alpha).mean().item()
    diff = manifold.flatten(x)[owner] - manifold.flatten(y)
    return diff.norm(dim=-1).pow(alpha).mean().item()


def uniformity(
    points: torch.Tensor,
    manifold: ContrastiveManifold,
    *,
    t: float = 2.0,
    chunk_size: int = 2048,
    max_points: int | None = None,
    seed: int = 0,
) -> float:
    """Wang & Isola's uniformity, $\\log \\frac{2}{n(n-1)} \\sum_{i<j} e^{-t \\lVert x_i - x_j \\rVert^2}$.

    Computed on flattened points in blocks of ``chunk_size x chunk_size`` pairs with a running
    log-sum-exp (float64), so it is exact and memory stays bounded. With ``max_points`` and
    more points than that, a uniformly random subset of ``max_points`` points (drawn with a
    generator seeded by ``seed``, so repeatable) stands in for all of them.

    Args:
        points: ``(N, *point_shape)``, ``N >= 2``.
        manifold: the embedding manifold (for ``flatten``).
        t: the kernel's inverse width, ``> 0``.
        chunk_size: rows and columns per block.
        max_points: subsample above this many points; ``None`` uses all.
        seed: seed of the subsampling generator.

    Raises:
        ValueError: wrong shapes, non-finite points, fewer than 2 points, ``t <= 0``, a
            non-positive ``chunk_size`` or ``max_points < 2``.
    """
    if not t > 0:
        raise ValueError(f"t: expected a positive number, got {t}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    if max_points is not None and (not isinstance(max_points, int) or max_points < 2):
        raise ValueError(f"max_points: expected None or an integer >= 2, got {max_points!r}")
    x = manifold.flatten(_points64(points, manifold, "points"))
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"points: uniformity needs at least 2 points, got {n}")
    if max_points is not None and n > max_points:
        gen = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(n, generator=gen)[:max_points].to(x.device)]
        n = max_points
    sq = x.square().sum(-1)
    parts = []
    for a in range(0, n, chunk_size):
        xa, sa = x[a : a + chunk_size], sq[a : a + chunk_size]
        rows = torch.arange(a, a + xa.shape[0], device=x.device)
        for b in range(a, n, chunk_size):
            xb, sb = x[b : b + chunk_size], sq[b : b + chunk_size]
            if manifold.bilinear:
                d2 = (sa[:, None] + sb[None, :] - 2 * xa @ xb.T).clamp_min(0)
            else:  # geodesic, one row at a time (no (a, b, D) intermediate)
                d2 = torch.stack([manifold.dist2(xi, xb) for xi in xa])
            logits = -t * d2
            if b == a:  # keep only j > i inside the diagonal block
                cols = torch.arange(b, b + xb.shape[0], device=x.device)
                logits = logits.masked_fill(cols[None, :] <= rows[:, None], -math.inf)
            parts.append(torch.logsumexp(logits.flatten(), dim=0))
    total = torch.logsumexp(torch.stack(parts), dim=0)
    return (total - math.log(n * (n - 1) / 2)).item()


def geometry_diagnostics(
    image_points: torch.Tensor,
    text_points: torch.Tensor,
    manifold: ContrastiveManifold,
    *,
    scale: float | torch.Tensor | None = None,
    caption_to_image: torch.Tensor | None = None,
    uniformity_max_points: int | None = 4096,
    chunk_size: int = 2048,
) -> dict[str, object]:
    """All diagnostics at once: gap, per-token statistics, alignment, both uniformities.

    Returns:
        ``{"similarity": similarity_gap(...), "tokens": token_similarity_stats(...),
        "alignment": float, "uniformity_image": float, "uniformity_text": float}``.

    Raises:
        ValueError: as the individual functions.
    """
    return {
        "similarity": similarity_gap(
            image_points, text_points, manifold, scale=scale, caption_to_image=caption_to_image
        ),
        "tokens": token_similarity_stats(
            image_points, text_points, manifold, caption_to_image=caption_to_image
        ),
        "alignment": alignment(
            image_points, text_points, manifold, caption_to_image=caption_to_image
        ),
        "uniformity_image": uniformity(
            image_points, manifold, chunk_size=chunk_size, max_points=uniformity_max_points
        ),
        "uniformity_text": uniformity(
            text_points, manifold, chunk_size=chunk_size, max_points=uniformity_max_points
        ),
    }
