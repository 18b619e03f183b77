"""The synthetic captioned shapes: determinism, splits, noise, captions vs. pixels, zero-shot sets."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from manifold_align.data.synthetic import (
    ATTRIBUTES,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    SPLITS,
    ZERO_SHOT_TASKS,
    SyntheticCaptions,
    SyntheticConfig,
    SyntheticZeroShot,
)


def _digest(image: Image.Image) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


def test_items_are_deterministic_per_seed_and_index():
    a = SyntheticCaptions("train", 50, seed=3, image_size=32, noise=0.3)
    b = SyntheticCaptions("train", 50, seed=3, image_size=32, noise=0.3)
    for i in (0, 7, 49):
        (ia, ca), (ib, cb) = a[i], b[i]
        assert _digest(ia) == _digest(ib) and ca == cb
    # reading out of order gives the same item (nothing depends on call history)
    first = _digest(a[7][0])
    a[3], a[40]
    assert _digest(a[7][0]) == first
    c = SyntheticCaptions("train", 50, seed=4, image_size=32, noise=0.3)
    assert sum(_digest(a[i][0]) == _digest(c[i][0]) for i in range(20)) == 0


def test_images_have_the_requested_size_and_mode_and_cost_no_memory():
    for size in (32, 64):
        ds = SyntheticCaptions("train", 10**12, seed=0, image_size=size)
        image, caption = ds[10**12 - 1]
        assert image.size == (size, size) and image.mode == "RGB"
        assert isinstance(caption, str) and caption
        assert len(ds) == 10**12


def test_splits_share_no_image():
    digests = {}
    config = SyntheticConfig(holdout=("red circle", "blue star"))
    for split in SPLITS:
        ds = SyntheticCaptions(split, 150, seed=0, image_size=16, config=config)
        digests[split] = {_digest(ds.render(ds.scene(i))) for i in range(len(ds))}
        assert len(digests[split]) == 150  # all distinct within a split too
    names = list(SPLITS)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not digests[a] & digests[b], (a, b)


def test_caption_noise_replaces_the_expected_fraction_with_other_items_captions():
    n, p = 4000, 0.3
    ds = SyntheticCaptions("train", n, seed=1, noise=p)
    sources = [ds.noise_source(i) for i in range(n)]
    noisy = [i for i, j in enumerate(sources) if j is not None]
    # Binomial(4000, 0.3): standard deviation 0.0072; 4 sigma
    assert abs(len(noisy) / n - p) < 0.03
    assert all(sources[i] != i and 0 <= sources[i] < n for i in noisy)
    # the replacement sources are spread over the split, not a fixed neighbour
    assert len({sources[i] for i in noisy}) > 0.8 * len(noisy)
    for i in noisy[:5]:
        assert ds[i][1] == ds.caption(sources[i])
        assert ds.is_noisy(i)
    clean = next(i for i, j in enumerate(sources) if j is None)
    assert ds[clean][1] == ds.caption(clean)
    # noise never touches labels or images; the same seed gives the same noisy set
    quiet = SyntheticCaptions("train", n, seed=1, noise=0.0)
    assert ds.labels(noisy[0]) == quiet.labels(noisy[0])
    assert _digest(ds[noisy[0]][0]) == _digest(quiet[noisy[0]][0])
    assert not any(quiet.is_noisy(i) for i in range(200))
    assert all(SyntheticCaptions("train", 100, seed=1, noise=1.0).is_noisy(i) for i in range(100))
    again = SyntheticCaptions("train", n, seed=1, noise=p)
    assert [again.noise_source(i) for i in range(n)] == sources


def test_clean_captions_name_every_label_and_training_captions_a_subset():
    ds = SyntheticCaptions("train", 400, seed=0)
    saw_two = saw_partial = False
    for i in range(len(ds)):
        scene = ds.scene(i)
        clean = ds.clean_caption(i)
        for obj in scene.objects:
            for word in (obj.shape, obj.colour, obj.size):
                assert word in clean.split(), (word, clean)
        if scene.relation is None:
            assert clean.endswith(POSITIONS[scene.objects[0].position][0])
        else:
            saw_two = True
            assert f" {scene.relation} " in clean
        caption = ds.caption(i)
        words = set(caption.split())
        assert words <= set(clean.split()) | {"shape", "photo", "drawing", "image", "of", "an", "a"}
        saw_partial |= caption != clean
    assert saw_two and saw_partial
    labels = ds.labels(0)
    obj = ds.scene(0).objects[0]
    assert SHAPES[labels["shape"]] == obj.shape
    assert list(COLOURS)[labels["colour"]] == obj.colour
    assert list(SIZES)[labels["size"]] == obj.size
    assert list(POSITIONS)[labels["position"]] == obj.position


def test_articles_follow_the_next_word():
    captions = list(SyntheticCaptions("train", 600, seed=0).captions())
    assert not any(" a orange" in c or c.startswith("a orange") for c in captions)
    assert any(" an orange" in c or c.startswith("an orange") for c in captions)
    assert any(" a small" in c or c.startswith("a small") for c in captions)


def test_pixels_agree_with_the_labels():
    """Flat background: the object's centre pixel has its colour and lies in its region;
    larger size labels cover more pixels."""
    cfg = SyntheticConfig(texture=0.0, two_object_fraction=0.5)
    ds = SyntheticCaptions("train", 300, seed=2, image_size=64, config=cfg)
    areas: dict[str, list[int]] = {s: [] for s in SIZES}
    for i in range(len(ds)):
        scene = ds.scene(i)
        pixels = np.asarray(ds.render(scene), dtype=np.int16)
        for obj in scene.objects:
            x, y = (int(c * 64) for c in obj.center)
            assert tuple(pixels[y, x]) == obj.rgb
            nearest = min(
                COLOURS, key=lambda c: sum((a - b) ** 2 for a, b in zip(COLOURS[c], obj.rgb))
            )
            assert nearest == obj.colour
            if obj.position == "left":
                assert x < 32
            elif obj.position == "right":
                assert x >= 32
            elif obj.position == "top":
                assert y < 32
            elif obj.position == "bottom":
                assert y >= 32
        assert tuple(pixels[0, 0]) == scene.background_rgb or len(scene.objects) == 2
        if len(scene.objects) == 1:
            covered = int((np.abs(pixels - np.array(scene.background_rgb)).sum(-1) > 30).sum())
            areas[scene.objects[0].size].append(covered)
    means = [np.mean(areas[s]) for s in SIZES]
    assert means[0] < means[1] < means[2]


def test_texture_and_jitter_make_images_vary():
    flat = SyntheticCaptions(
        "zeroshot", 1, image_size=32, config=SyntheticConfig(texture=0.0, jitter=0.0)
    )
    rough = SyntheticCaptions("zeroshot", 1, image_size=32)
    corner_flat = np.asarray(flat[0][0])[:8, :8].reshape(-1, 3)
    corner_rough = np.asarray(rough[0][0])[:8, :8].reshape(-1, 3)
    assert len({tuple(p) for p in corner_flat}) == 1
    assert len({tuple(p) for p in corner_rough}) > 10
    still = SyntheticCaptions("zeroshot", 200, config=SyntheticConfig(jitter=0.0))
    centers = {still.scene(i).objects[0].center for i in range(200)}
    assert centers == {pos for _, pos in POSITIONS.values()}


def test_zeroshot_tasks_prompts_and_labels():
    assert set(ZERO_SHOT_TASKS) == set(ATTRIBUTES)
    for attribute, task in ZERO_SHOT_TASKS.items():
        prompts = task.prompts()
        assert len(prompts) == len(task.classnames) and all(
            len(r) == len(task.templates) for r in prompts
        )
        for phrase, row in zip(task.phrases, prompts):
            assert all(phrase in p for p in row)
        assert task.chance == pytest.approx(1 / len(task.classnames))
        ds = SyntheticZeroShot(attribute, 60, seed=5, image_size=32)
        assert ds.classnames == task.classnames
        targets = ds.targets()
        assert targets.dtype == torch.long and targets.shape == (60,)
        for i in (0, 11, 59):
            image, label = ds[i]
            assert label == targets[i] == ds.images.labels(i)[attribute]
            assert image.size == (32, 32)
        # every class occurs in a modest sample
        assert set(targets.tolist()) == set(range(len(task.classnames)))
    assert "an orange shape" in ZERO_SHOT_TASKS["colour"].prompts()[list(COLOURS).index("orange")]
    assert all(len(SyntheticCaptions("zeroshot", 50).scene(i).objects) == 1 for i in range(50))


def test_held_out_pairs_appear_only_in_the_compositional_split():
    held = ("red circle", "blue star")
    config = SyntheticConfig(holdout=["red  circle", "blue star", "red circle"])
    assert config.holdout == held  # normalised, deduplicated, a tuple
    for split in ("train", "retrieval", "zeroshot"):
        ds = SyntheticCaptions(split, 600, seed=0, config=config)
        pairs = {f"{o.colour} {o.shape}" for i in range(len(ds)) for o in ds.scene(i).objects}
        assert not pairs & set(held) and len(pairs) > 30
    comp = SyntheticCaptions("compositional", 100, seed=0, config=config)
    assert {f"{o.colour} {o.shape}" for i in range(100) for o in comp.scene(i).objects} == set(held)
    assert all(len(comp.scene(i).objects) == 1 for i in range(100))
    assert comp[0][1] == comp.clean_caption(0)
    zs = SyntheticZeroShot("colour", 40, config=config, split="compositional")
    assert {zs.classnames[t] for t in zs.targets().tolist()} == {"red", "blue"}
    # without a holdout every split is exactly as before (items without held-out pairs too)
    plain = SyntheticCaptions("train", 600, seed=0)
    held_out = SyntheticCaptions("train", 600, seed=0, config=config)
    same = [
        i
        for i in range(600)
        if not {f"{o.colour} {o.shape}" for o in plain.scene(i).objects} & set(held)
    ]
    assert all(plain.scene(i) == held_out.scene(i) for i in same[:50])
    with pytest.raises(ValueError, match="holdout"):
        SyntheticConfig(holdout=("red hexagon",))
    with pytest.raises(ValueError, match="holdout"):
        SyntheticConfig(holdout="red circle")
    with pytest.raises(ValueError, match="holdout"):
        SyntheticConfig(holdout=tuple(f"{c} {s}" for c in COLOURS for s in SHAPES))
    with pytest.raises(ValueError, match="compositional"):
        SyntheticCaptions("compositional", 10)
    with pytest.raises(ValueError, match="split"):
        SyntheticZeroShot("shape", split="train")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"split": "training"}, ValueError, "split"),
        ({"size": 0}, ValueError, "size"),
        ({"image_size": 4}, ValueError, "image_size"),
        ({"noise": 1.5}, ValueError, "noise"),
        ({"noise": 0.5, "size": 1}, ValueError, "size"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        SyntheticCaptions(**kwargs)


def test_bad_config_and_index():
    with pytest.raises(ValueError, match="p_colour"):
        SyntheticConfig(p_colour=1.2)
    with pytest.raises(ValueError, match="texture"):
        SyntheticConfig(texture=-1)
    with pytest.raises(ValueError, match="jitter: got 'lots', expected a number"):
        SyntheticConfig(jitter="lots")
    assert SyntheticConfig(jitter=2, texture=0).jitter == 2
    with pytest.raises(ValueError, match="attribute"):
        SyntheticZeroShot("texture")
    ds = SyntheticCaptions("train", 5)
    with pytest.raises(IndexError, match="index"):
        ds[5]
    with pytest.raises(TypeError, match="index"):
        ds["0"]
    assert ds.clean_caption(-1) == ds.clean_caption(4)


def test_one_zero_shot_split_labels_every_attribute_and_the_suite_reads_it():
    from manifold_align.data.synthetic import ATTRIBUTES, SyntheticZeroShot
    from manifold_align.evaluate.suite import synthetic_heldout

    split = SyntheticZeroShot("shape", 12, seed=4, image_size=16)
    labels = split.labels()
    assert list(labels) == list(ATTRIBUTES)
    for a in ATTRIBUTES:
        assert torch.equal(labels[a], SyntheticZeroShot(a, 12, seed=4, image_size=16).targets())
    with pytest.raises(ValueError, match=r"attributes: unknown \['hue'\]"):
        split.labels(["hue"])
    held = synthetic_heldout(zeroshot_samples=12, retrieval_samples=0, seed=4, image_size=16)
    for a in ATTRIBUTES:
        assert torch.equal(held.zeroshot_labels[a], labels[a])
