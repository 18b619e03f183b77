"""Chunked retrieval recall@k against a dense, stable-sort reference."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from manifold_align.evaluate.retrieval import retrieval_recall, topk_indices
from manifold_align.manifolds import Oblique, Sphere


def reference_recall(x, y, manifold, ks, owner):
    """Dense reference: full similarity matrix, stable descending order (ties to lower index)."""
    sim = manifold.flatten(x).double() @ manifold.flatten(y).double().T  # (N, M)
    n, m = sim.shape
    out = {}
    order_i2t = torch.argsort(-sim, dim=1, stable=True)  # captions per image
    order_t2i = torch.argsort(-sim.T, dim=1, stable=True)  # images per caption
    for k in ks:
        hits = [bool((owner[order_i2t[i, :k]] == i).any()) for i in range(n)]
        out[f"image_to_text@{k}"] = sum(hits) / n
    for k in ks:
        hits = [bool((order_t2i[c, :k] == owner[c]).any()) for c in range(m)]
        out[f"text_to_image@{k}"] = sum(hits) / m
    return out


def random_pairs(manifold, n, per_image, seed, noise=1.0):
    """Images, noisy captions (``per_image`` each, shuffled) and the caption->image map."""
    gen = torch.Generator().manual_seed(seed)
    x = manifold.random(n, *manifold.point_shape, generator=gen, dtype=torch.float64)
    owner = torch.arange(n).repeat_interleave(per_image)
    owner = owner[torch.randperm(owner.numel(), generator=gen)]
    eps = torch.randn(owner.numel(), *manifold.point_shape, generator=gen, dtype=torch.float64)
    y = manifold.projx(x[owner] + noise * eps)
    return x, y, owner


@pytest.mark.parametrize("manifold", [Sphere(8), Oblique(4, 3)], ids=repr)
@pytest.mark.parametrize(("chunk", "cand_chunk"), [(1, 1), (3, 7), (16, 5), (1000, 1000)])
def test_chunked_recall_equals_dense_reference(manifold, chunk, cand_chunk):
    x, y, owner = random_pairs(manifold, n=37, per_image=3, seed=1)
    ks = (1, 5, 10)
    got = retrieval_recall(
        x,
        y,
        manifold,
        ks,
        caption_to_image=owner,
        chunk_size=chunk,
        candidate_chunk_size=cand_chunk,
    )
    want = reference_recall(x, y, manifold, ks, owner)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert got["num_images"] == 37 and got["num_captions"] == 111
    # the noise level makes this a non-trivial check: recalls are neither 0 nor 1
    assert 0 < got["image_to_text@1"] < 1 and 0 < got["text_to_image@1"] < 1


def basis_points(draw_idx, dim):
    """Points drawn from the 2*dim signed basis vectors of R^dim: many exact ties."""
    idx = torch.tensor(draw_idx)
    pts = torch.zeros(len(draw_idx), dim, dtype=torch.float64)
    pts[torch.arange(len(draw_idx)), idx % dim] = torch.where(idx < dim, 1.0, -1.0).double()
    return pts


@given(
    data=st.data(),
    n=st.integers(2, 9),
    per_image=st.integers(1, 3),
    chunk=st.integers(1, 6),
    cand_chunk=st.integers(1, 6),
)
def test_ties_go_to_lower_index_like_a_stable_sort(data, n, per_image, chunk, cand_chunk):
    dim = 3
    sphere = Sphere(dim)
    x = basis_points(data.draw(st.lists(st.integers(0, 2 * dim - 1), min_size=n, max_size=n)), dim)
    m = n * per_image
    y = basis_points(data.draw(st.lists(st.integers(0, 2 * dim - 1), min_size=m, max_size=m)), dim)
    owner = torch.tensor(data.draw(st.permutations(list(range(n)) * per_image)))
    ks = (1, 2, 5)
    got = retrieval_recall(
        x, y, sphere, ks, caption_to_image=owner, chunk_size=chunk, candidate_chunk_size=cand_chunk
    )
    want = reference_recall(x, y, sphere, ks, owner)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("cand_chunk", [13, 64, 1000])
def test_ties_across_the_top_k_cut_in_large_blocks(cand_chunk):
    # few distinct points, so most rows tie across the k-th place; blocks larger than k make
    # torch.topk choose among the ties (it is not stable), which the tie repair must undo
    gen = torch.Generator().manual_seed(4)
    dim, n = 3, 60
    x = basis_points(torch.randint(0, 2 * dim, (n,), generator=gen).tolist(), dim)
    y = basis_points(torch.randint(0, 2 * dim, (2 * n,), generator=gen).tolist(), dim)
    owner = torch.arange(n).repeat(2)[torch.randperm(2 * n, generator=gen)]
    ks = (1, 5, 10)
    sphere = Sphere(dim)
    want = reference_recall(x, y, sphere, ks, owner)
    for chunk in (7, 1000):
        got = retrieval_recall(
            x,
            y,
            sphere,
            ks,
            caption_to_image=owner,
            chunk_size=chunk,
            candidate_chunk_size=cand_chunk,
        )
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-12), (key, chunk)


@pytest.mark.parametrize("width", [11, 50, 500])
def test_block_topk_is_the_stable_order_under_heavy_ties(width):
    from manifold_align.evaluate.retrieval import _block_topk

    sim = torch.randint(0, 3, (200, width), generator=torch.Generator().manual_seed(0)).float()
    val, idx = _block_topk(sim, 10)
    want = torch.argsort(-sim, dim=1, stable=True)[:, :10].sort(dim=1).values
    assert torch.equal(idx, want)
    assert torch.equal(val, sim.gather(1, want))


def test_documented_tie_rule_on_a_hand_example():
    sphere = Sphere(3)
    e1 = torch.tensor([1.0, 0.0, 0.0])
    x = torch.stack([e1, e1])  # two identical images
    y = torch.stack([e1, e1])  # caption i describes image i
    got = retrieval_recall(x, y, sphere, ks=(1, 2))
    # every score ties; the lower index wins, so image 0 / caption 0 are always ranked first
    assert got["image_to_text@1"] == 0.5 and got["text_to_image@1"] == 0.5
    assert got["image_to_text@2"] == 1.0 and got["text_to_image@2"] == 1.0


@pytest.mark.parametrize("manifold", [Sphere(16), Oblique(4, 8)], ids=repr)
def test_perfect_embeddings_have_recall_one(manifold):
    gen = torch.Generator().manual_seed(0)
    x = manifold.random(64, *manifold.point_shape, generator=gen)
    got = retrieval_recall(x, x.clone(), manifold, chunk_size=10, candidate_chunk_size=7)
    assert all(
        got[f"{d}@{k}"] == 1.0 for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)
    )
    owner = torch.arange(64).repeat(2)  # two identical captions per image
    got = retrieval_recall(x, x[owner], manifold, caption_to_image=owner, chunk_size=9)
    assert got["image_to_text@1"] == 1.0 and got["text_to_image@1"] == 1.0


def test_reversed_embeddings_have_recall_zero_until_k_covers_everything():
    sphere = Sphere(6)
    gen = torch.Generator().manual_seed(3)
    x = sphere.random(5, 6, generator=gen)
    y = x[[1, 2, 3, 4, 0]]  # caption i matches image i + 1: never its own image
    got = retrieval_recall(x, y, sphere, ks=(1, 5, 10))
    # image i's own caption y_i = x_{i+1} is never x_i; with 5 candidates k >= 5 covers all
    assert got["image_to_text@5"] == 1.0 and got["image_to_text@10"] == 1.0
    assert got["text_to_image@5"] == 1.0
    assert got["image_to_text@1"] == 0.0 and got["text_to_image@1"] == 0.0


def test_topk_indices_match_stable_argsort():
    sphere = Sphere(4)
    gen = torch.Generator().manual_seed(5)
    q = sphere.random(11, 4, generator=gen, dtype=torch.float64)
    c = torch.cat([q[:3], sphere.random(20, 4, generator=gen, dtype=torch.float64), q[:3]])
    want = torch.argsort(-(q @ c.T), dim=1, stable=True)[:, :6]
    for chunk, cand in [(1, 1), (4, 5), (100, 100)]:
        got = topk_indices(q, c, sphere, 6, chunk_size=chunk, candidate_chunk_size=cand)
        assert torch.equal(got, want)


def test_mixed_dtypes_are_promoted():
    sphere = Sphere(5)
    x = sphere.random(8, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = retrieval_recall(x, x.float(), sphere, ks=(1,))
    assert got["image_to_text@1"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"text_points": torch.zeros(4, 5)}, "text_points: expected shape"),
        ({"caption_to_image": torch.tensor([0, 1, 2])}, r"caption_to_image: expected shape \(4,\)"),
        ({"caption_to_image": torch.tensor([0, 1, 2, 4])}, r"indices in \[0, 3\)"),
        ({"caption_to_image": torch.tensor([0, 1, 1, 0])}, "have no caption"),
        ({"caption_to_image": torch.tensor([0.0, 1.0, 2.0, 0.0])}, "integer tensor"),
        ({"ks": ()}, "ks: expected at least one"),
        ({"ks": (0, 1)}, "ks: expected positive integers"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    sphere = Sphere(3)
    args = {
        "image_points": sphere.random(3, 3),
        "text_points": sphere.random(4, 3),
        "manifold": sphere,
        "caption_to_image": torch.tensor([0, 1, 2, 0]),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        retrieval_recall(**args)


def test_unequal_counts_need_a_mapping_and_nan_is_rejected():
    sphere = Sphere(3)
    with pytest.raises(ValueError, match="caption_to_image: required"):
        retrieval_recall(sphere.random(3, 3), sphere.random(4, 3), sphere)
    bad = sphere.random(3, 3)
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match="image_points: holds NaN"):
        retrieval_recall(bad, sphere.random(3, 3), sphere)


def test_recall_is_unchanged_under_bf16_autocast():
    ob = Oblique(4, 8)
    x, y, owner = random_pairs(ob, n=50, per_image=2, seed=8)
    x, y = x.float(), y.float()
    want = retrieval_recall(x, y, ob, caption_to_image=owner, chunk_size=7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = retrieval_recall(x, y, ob, caption_to_image=owner, chunk_size=7)
    assert got == want
