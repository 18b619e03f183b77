"""Zero-shot classification: prompt ensembles on the manifold and top-k accuracy."""

import pytest
import torch

from manifold_align.evaluate.zeroshot import (
    build_classifier,
    build_classifier_from_prompts,
    classify,
    fill_templates,
)
from manifold_align.manifolds import Oblique, Sphere

TEMPLATES = ["a photo of a {}.", "a drawing of a {}.", "{} again"]
CLASSES = ["circle", "square", "triangle"]


class FakeTextTower:
    """A lookup table from prompt to a fixed point; records batch sizes and grad mode."""

    def __init__(self, manifold, prompts, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.ids = {p: i for i, p in enumerate(prompts)}
        self.table = manifold.random(len(prompts), *manifold.point_shape, generator=gen)
        self.batches = []
        self.grad_enabled = []

    def tokenize(self, texts):
        return torch.tensor([[self.ids[t], 0] for t in texts], dtype=torch.long)

    def encode_text(self, tokens):
        self.batches.append(tokens.shape[0])
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.table[tokens[:, 0]]


def test_fill_templates_is_class_major():
    prompts = fill_templates(["a", "b"], ["x {}", "{} y"])
    assert prompts == ["x a", "a y", "x b", "b y"]


@pytest.mark.parametrize(
    ("names", "templates", "match"),
    [
        ([], TEMPLATES, "class_names: expected at least one"),
        (CLASSES, [], "templates: expected at least one"),
        (["a", "a"], TEMPLATES, "'a' appears more than once"),
        (["a", ""], TEMPLATES, "non-empty strings"),
        (CLASSES, ["no placeholder"], "exactly one '{}'"),
        (CLASSES, ["{} and {}"], "exactly one '{}'"),
    ],
)
def test_fill_templates_rejects_bad_input(names, templates, match):
    with pytest.raises(ValueError, match=match):
        fill_templates(names, templates)


@pytest.mark.parametrize("manifold", [Sphere(6), Oblique(4, 5)], ids=repr)
@pytest.mark.parametrize("karcher", [False, True])
def test_prompt_ensemble_mean_lands_on_the_manifold(manifold, karcher):
    tower = FakeTextTower(manifold, fill_templates(CLASSES, TEMPLATES))
    w = build_classifier(
        tower.encode_text,
        tower.tokenize,
        CLASSES,
        TEMPLATES,
        manifold,
        karcher=karcher,
        batch_size=4,
    )
    assert w.shape == (len(CLASSES), *manifold.point_shape)
    # each token of each class point is a unit vector
    norms = w.reshape(len(CLASSES), -1, manifold.point_shape[-1]).norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    # batched in at most batch_size prompts, without autograd
    assert sum(tower.batches) == len(CLASSES) * len(TEMPLATES)
    assert max(tower.batches) <= 4
    assert not any(tower.grad_enabled)


@pytest.mark.parametrize("manifold", [Sphere(6), Oblique(4, 5)], ids=repr)
def test_prompt_ensemble_is_the_per_token_normalised_mean(manifold):
    tower = FakeTextTower(manifold, fill_templates(CLASSES, TEMPLATES), seed=3)
    w = build_classifier(tower.encode_text, tower.tokenize, CLASSES, TEMPLATES, manifold)
    table = tower.table.reshape(len(CLASSES), len(TEMPLATES), *manifold.point_shape)
    summed = table.sum(1)
    want = summed / summed.norm(dim=-1, keepdim=True)  # normalise each token on its own
    assert torch.allclose(w, want, atol=1e-6)
    # the batch size does not change the result
    w1 = build_classifier(
        tower.encode_text, tower.tokenize, CLASSES, TEMPLATES, manifold, batch_size=1
    )
    assert torch.allclose(w, w1, atol=1e-6)


def test_ready_made_prompts_may_differ_in_number_per_class():
    ob = Oblique(3, 4)
    prompts = [["a circle", "an image of a circle"], ["a square"], ["x", "y", "z"]]
    tower = FakeTextTower(ob, [p for g in prompts for p in g], seed=2)
    w = build_classifier_from_prompts(tower.encode_text, tower.tokenize, prompts, ob, batch_size=2)
    table = tower.table
    for c, rows in enumerate([[0, 1], [2], [3, 4, 5]]):
        summed = table[rows].sum(0)
        assert torch.allclose(w[c], summed / summed.norm(dim=-1, keepdim=True), atol=1e-6)
    with pytest.raises(ValueError, match=r"prompts\[1\]: expected a non-empty list"):
        build_classifier_from_prompts(tower.encode_text, tower.tokenize, [["x"], []], ob)


def test_karcher_mean_is_a_riemannian_centre_of_mass():
    sphere = Sphere(3)
    tower = FakeTextTower(sphere, fill_templates(CLASSES, TEMPLATES), seed=1)
    # keep each class's prompts close together (a hemisphere) so the Karcher mean is unique
    anchors = torch.eye(3)
    tower.table = sphere.projx(anchors.repeat_interleave(len(TEMPLATES), 0) + 0.3 * tower.table)
    w = build_classifier(
        tower.encode_text, tower.tokenize, CLASSES, TEMPLATES, sphere, karcher=True
    )
    table = tower.table.reshape(len(CLASSES), len(TEMPLATES), 3)
    grad = sphere.logmap(w.unsqueeze(1), table).sum(1)  # the first-order condition
    assert grad.abs().max() < 1e-5


def test_encoder_output_of_the_wrong_shape_is_rejected():
    sphere = Sphere(6)
    tower = FakeTextTower(Sphere(5), fill_templates(CLASSES, TEMPLATES))
    with pytest.raises(ValueError, match=r"encode_text: expected points of shape \(3, 6\)"):
        build_classifier(
            tower.encode_text, tower.tokenize, CLASSES, TEMPLATES, sphere, batch_size=3
        )


def planted(manifold, num_classes, assigned, seed=0):
    """Class points and images that sit exactly on the class point ``assigned[i]``."""
    gen = torch.Generator().manual_seed(seed)
    w = manifold.random(num_classes, *manifold.point_shape, generator=gen)
    return manifold.projx(w[assigned] + 1e-3 * torch.randn(w[assigned].shape, generator=gen)), w


@pytest.mark.parametrize("manifold", [Sphere(32), Oblique(8, 8)], ids=repr)
def test_planted_classifier_has_the_planted_accuracy(manifold):
    c, n = 10, 200
    labels = torch.arange(n) % c
    assigned = labels.clone()
    wrong = (torch.arange(n) // c) % 10 < 3  # 30% of each class sit on the next class instead
    assigned[wrong] = (labels[wrong] + 1) % c
    x, w = planted(manifold, c, assigned)
    got = classify(x, w, manifold, labels, ks=(1, 5))
    assert got["top1"] == pytest.approx(0.7)
    assert got["chance_top1"] == pytest.approx(0.1)
    assert got["chance_top5"] == pytest.approx(0.5)
    assert got["num_classes"] == c and got["num_images"] == n
    assert got["per_class_top1"] == pytest.approx([0.7] * c)
    assert classify(x, w, manifold, labels, ks=(c,))[f"top{c}"] == 1.0


def test_topk_counts_the_rank_of_the_true_class():
    # class points e_0..e_4; an image with scores a_c ranks classes by a
    sphere = Sphere(5)
    w = torch.eye(5, dtype=torch.float64)
    scores = torch.tensor(
        [
            [5.0, 4, 3, 2, 1],
            [5.0, 4, 3, 2, 1],
            [5.0, 4, 3, 2, 1],
            [1.0, 2, 3, 4, 5],
        ],
        dtype=torch.float64,
    )
    x = scores / scores.norm(dim=1, keepdim=True)
    labels = torch.tensor([0, 2, 4, 0])  # ranks 0, 2, 4, 4
    got = classify(x, w, sphere, labels, ks=(1, 3, 5))
    assert got["top1"] == 0.25 and got["top3"] == 0.5 and got["top5"] == 1.0


def test_topk_is_capped_at_the_number_of_classes_and_named_by_it():
    sphere = Sphere(4)
    w = torch.eye(3, 4)
    got = classify(w.clone(), w, sphere, torch.arange(3), ks=(1, 5))
    assert "top5" not in got and got["top3"] == 1.0 and got["chance_top3"] == 1.0
    assert got["top1"] == 1.0 and got["chance_top1"] == pytest.approx(1 / 3)


def test_ties_go_to_the_lower_class_index():
    sphere = Sphere(2)
    w = torch.eye(2)
    x = torch.full((2, 2), 2**-0.5)  # equally similar to both classes
    got = classify(x, w, sphere, torch.tensor([0, 1]), ks=(1, 2))
    assert got["top1"] == 0.5 and got["top2"] == 1.0
    assert got["per_class_top1"] == [1.0, 0.0]


def test_chunking_does_not_change_the_result():
    sphere = Sphere(8)
    gen = torch.Generator().manual_seed(2)
    x = sphere.random(50, 8, generator=gen)
    w = sphere.random(7, 8, generator=gen)
    labels = torch.randint(0, 7, (50,), generator=gen)
    full = classify(x, w, sphere, labels)
    for chunk in (1, 3, 49):
        assert classify(x, w, sphere, labels, chunk_size=chunk) == full


def test_class_without_images_has_no_accuracy():
    sphere = Sphere(3)
    w = torch.eye(3)
    got = classify(w[:2].clone(), w, sphere, torch.tensor([0, 1]))
    assert got["per_class_top1"] == [1.0, 1.0, None]


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (torch.tensor([0, 3]), r"labels: expected class indices in \[0, 3\)"),
        (torch.tensor([0.0, 1.0]), "labels: expected an integer tensor"),
        (torch.tensor([0, 1, 2]), r"labels: expected shape \(2,\)"),
    ],
)
def test_bad_labels_are_rejected(labels, match):
    sphere = Sphere(3)
    with pytest.raises(ValueError, match=match):
        classify(torch.eye(3)[:2], torch.eye(3), sphere, labels)


def test_bad_points_are_rejected():
    sphere = Sphere(3)
    with pytest.raises(ValueError, match="class_points: expected shape"):
        classify(torch.eye(3), torch.eye(4), sphere, torch.tensor([0, 1, 2]))
    nan = torch.eye(3)
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="image_points: holds NaN"):
        classify(nan, torch.eye(3), sphere, torch.tensor([0, 1, 2]))
