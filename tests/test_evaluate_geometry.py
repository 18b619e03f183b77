"""Geometry diagnostics against dense references and closed forms."""

import math

import pytest
import torch

from manifold_align.evaluate.geometry import (
    alignment,
    geometry_diagnostics,
    similarity_gap,
    token_similarity_stats,
    uniformity,
)
from manifold_align.manifolds import Oblique, Sphere


def pairs(manifold, n, per_image, seed):
    gen = torch.Generator().manual_seed(seed)
    x = manifold.random(n, *manifold.point_shape, generator=gen, dtype=torch.float64)
    owner = torch.arange(n).repeat_interleave(per_image)
    owner = owner[torch.randperm(owner.numel(), generator=gen)]
    eps = torch.randn(owner.numel(), *manifold.point_shape, generator=gen, dtype=torch.float64)
    return x, manifold.projx(x[owner] + 0.8 * eps), owner


def dense_stats(sim, owner):
    """Mean and population std over positive and negative entries of a dense (N, M) matrix."""
    pos_mask = torch.zeros_like(sim, dtype=torch.bool)
    pos_mask[owner, torch.arange(sim.shape[1])] = True
    pos, neg = sim[pos_mask], sim[~pos_mask]
    return pos.mean(), pos.std(unbiased=False), neg.mean(), neg.std(unbiased=False)


@pytest.mark.parametrize("manifold", [Sphere(5), Oblique(3, 4)], ids=repr)
@pytest.mark.parametrize("per_image", [1, 3])
def test_similarity_gap_equals_the_dense_computation(manifold, per_image):
    x, y, owner = pairs(manifold, 23, per_image, seed=per_image)
    got = similarity_gap(x, y, manifold, scale=torch.tensor(7.5), caption_to_image=owner)
    pm, ps, nm, ns = dense_stats(manifold.similarity(x, y), owner)
    assert got["pos_mean"] == pytest.approx(pm.item(), abs=1e-12)
    assert got["pos_std"] == pytest.approx(ps.item(), abs=1e-10)
    assert got["neg_mean"] == pytest.approx(nm.item(), abs=1e-12)
    assert got["neg_std"] == pytest.approx(ns.item(), abs=1e-10)
    assert got["gap"] == pytest.approx((pm - nm).item(), abs=1e-12)
    assert got["gap_logits"] == pytest.approx(7.5 * (pm - nm).item(), abs=1e-10)
    assert got["num_positive"] == 23 * per_image
    assert got["num_negative"] == 23 * 23 * per_image - 23 * per_image
    assert got["similarity_range"] == list(manifold.similarity_range)
    assert got["gap"] > 0.1  # positives are noisy copies: a real gap


def test_gap_without_scale_has_no_logits():
    sphere = Sphere(4)
    x, y, _ = pairs(sphere, 6, 1, seed=0)
    got = similarity_gap(x, y, sphere)
    assert "gap_logits" not in got and "scale" not in got


def test_per_token_statistics_equal_the_dense_per_token_cosines():
    ob = Oblique(3, 4)
    x, y, owner = pairs(ob, 17, 2, seed=4)
    got = token_similarity_stats(x, y, ob, caption_to_image=owner)
    for t in range(3):
        cos = x[:, t] @ y[:, t].T  # token t's cosine for every pair
        pm, ps, nm, ns = dense_stats(cos, owner)
        assert got["pos_mean"][t] == pytest.approx(pm.item(), abs=1e-12)
        assert got["pos_std"][t] == pytest.approx(ps.item(), abs=1e-10)
        assert got["neg_mean"][t] == pytest.approx(nm.item(), abs=1e-12)
        assert got["neg_std"][t] == pytest.approx(ns.item(), abs=1e-10)
        assert got["gap"][t] == pytest.approx((pm - nm).item(), abs=1e-12)
    # the token means add up to the similarity's mean (the similarity is their sum)
    total = similarity_gap(x, y, ob, caption_to_image=owner)
    assert sum(got["pos_mean"]) == pytest.approx(total["pos_mean"], abs=1e-12)
    assert sum(got["neg_mean"]) == pytest.approx(total["neg_mean"], abs=1e-12)


def test_sphere_points_are_one_token():
    sphere = Sphere(5)
    x, y, _ = pairs(sphere, 9, 1, seed=2)
    got = token_similarity_stats(x, y, sphere)
    total = similarity_gap(x, y, sphere)
    assert len(got["pos_mean"]) == 1
    assert got["pos_mean"][0] == pytest.approx(total["pos_mean"], abs=1e-12)
    assert got["neg_std"][0] == pytest.approx(total["neg_std"], abs=1e-10)


def test_alignment_closed_forms():
    sphere = Sphere(4)
    x, _, _ = pairs(sphere, 10, 1, seed=1)
    assert alignment(x, x, sphere) == pytest.approx(0.0, abs=1e-12)
    assert alignment(x, -x, sphere) == pytest.approx(4.0)  # |2x|^2
    assert alignment(x, -x, sphere, alpha=1.0) == pytest.approx(2.0)
    ob = Oblique(5, 3)
    z, _, _ = pairs(ob, 10, 1, seed=1)
    assert alignment(z, -z, ob) == pytest.approx(4.0 * 5)  # flattened: 4 per token
    # every pair at angle theta per token: |x - y|^2 = k (2 - 2 cos theta)
    theta = 0.7
    e1, e2 = torch.eye(3, dtype=torch.float64)[:2]
    a = e1.expand(6, 5, 3)
    b = (math.cos(theta) * e1 + math.sin(theta) * e2).expand(6, 5, 3)
    assert alignment(a, b, ob) == pytest.approx(5 * (2 - 2 * math.cos(theta)))


def test_alignment_uses_the_caption_map():
    sphere = Sphere(3)
    x = torch.eye(3, dtype=torch.float64)
    y = torch.stack([x[0], x[0], -x[1], x[2]])  # distances^2: 0, 0, 4, 0
    assert alignment(x, y, sphere, caption_to_image=torch.tensor([0, 0, 1, 2])) == 1.0


def simplex(n):
    """n unit vectors in R^n with pairwise cosine -1/(n-1)."""
    v = torch.eye(n, dtype=torch.float64) - 1.0 / n
    return v / v.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("t", [1.0, 2.0])
def test_uniformity_closed_forms(t):
    # orthonormal basis: all squared distances are 2
    assert uniformity(torch.eye(6, dtype=torch.float64), Sphere(6), t=t) == pytest.approx(-2 * t)
    # regular simplex: squared distance 2 + 2 / (n - 1)
    n = 7
    assert uniformity(simplex(n), Sphere(n), t=t) == pytest.approx(-t * (2 + 2 / (n - 1)))
    # antipodal pair
    e = torch.eye(3, dtype=torch.float64)[:1]
    assert uniformity(torch.cat([e, -e]), Sphere(3), t=t) == pytest.approx(-4 * t)
    # two tokens, each an orthonormal basis: squared distances 2 + 2 = 4
    ob = Oblique(2, 4)
    pts = torch.eye(4, dtype=torch.float64)[:, None, :].expand(4, 2, 4)
    assert uniformity(pts, ob, t=t) == pytest.approx(-4 * t)


@pytest.mark.parametrize("manifold", [Sphere(6), Oblique(4, 3)], ids=repr)
def test_chunked_uniformity_equals_the_dense_one(manifold):
    gen = torch.Generator().manual_seed(9)
    x = manifold.random(53, *manifold.point_shape, generator=gen, dtype=torch.float64)
    flat = manifold.flatten(x)
    dense = torch.pdist(flat).square().mul(-2.0).exp().mean().log().item()
    for chunk in (1, 5, 17, 53, 1000):
        assert uniformity(x, manifold, chunk_size=chunk) == pytest.approx(dense, abs=1e-12)


def test_uniformity_subsampling_is_repeatable_and_exact_when_not_needed():
    sphere = Sphere(5)
    x = sphere.random(40, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    full = uniformity(x, sphere)
    assert uniformity(x, sphere, max_points=40) == full
    sub = uniformity(x, sphere, max_points=10, seed=3)
    assert uniformity(x, sphere, max_points=10, seed=3) == sub
    assert sub != full
    # the subsample is a subset: some 10-point subset's dense value equals it
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(3))[:10]
    dense = torch.pdist(x[perm]).square().mul(-2.0).exp().mean().log().item()
    assert sub == pytest.approx(dense, abs=1e-12)


def test_geometry_diagnostics_collects_everything():
    ob = Oblique(2, 3)
    x, y, owner = pairs(ob, 12, 2, seed=5)
    got = geometry_diagnostics(x, y, ob, scale=10.0, caption_to_image=owner)
    assert got["similarity"]["gap_logits"] == pytest.approx(10 * got["similarity"]["gap"])
    assert len(got["tokens"]["pos_mean"]) == 2
    assert got["alignment"] == pytest.approx(alignment(x, y, ob, caption_to_image=owner))
    assert got["uniformity_image"] == pytest.approx(uniformity(x, ob))
    assert got["uniformity_text"] == pytest.approx(uniformity(y, ob))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s, x: similarity_gap(x[:1], x[:1], s), "at least 2 images"),
        (lambda s, x: similarity_gap(x, x, s, scale=float("inf")), "scale: expected a finite"),
        (lambda s, x: alignment(x, x, s, alpha=0.0), "alpha: expected a positive"),
        (lambda s, x: uniformity(x[:1], s), "at least 2 points"),
        (lambda s, x: uniformity(x, s, t=-1.0), "t: expected a positive"),
        (lambda s, x: uniformity(x, s, max_points=1), "max_points"),
        (lambda s, x: uniformity(x, s, chunk_size=0), "chunk_size"),
        (lambda s, x: alignment(x, x[:, :2], s), "text_points: expected shape"),
        (
            lambda s, x: similarity_gap(x, x, s, caption_to_image=torch.tensor([0, 1, 2, 5])),
            r"caption_to_image: expected image indices",
        ),
    ],
)
def test_bad_input_is_rejected(call, match):
    sphere = Sphere(3)
    x = sphere.random(4, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=match):
        call(sphere, x)


def test_diagnostics_ignore_bf16_autocast_and_accept_half_inputs():
    ob = Oblique(4, 8)
    x, y, _ = pairs(ob, 40, 1, seed=6)
    x, y = x.float(), y.float()
    want = geometry_diagnostics(x, y, ob, scale=3.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = geometry_diagnostics(x, y, ob, scale=3.0)
    assert got == want  # all arithmetic runs in float64, untouched by autocast
    half = geometry_diagnostics(x.bfloat16(), y.bfloat16(), ob, scale=3.0)
    assert half["similarity"]["gap"] == pytest.approx(want["similarity"]["gap"], abs=0.02)
