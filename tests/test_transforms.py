"""Pillow + torch image transforms: mode conversion, resize/crop, normalisation, seeded crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from manifold_align.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    ImageTransform,
    center_crop,
    normalize,
    random_resized_crop,
    resize_shorter,
    to_rgb,
    to_tensor,
)


def _coordinates(side: int = 256) -> Image.Image:
    """R = column, G = row, B = 0: every pixel says where it came from."""
    ys, xs = np.mgrid[0:side, 0:side]
    array = np.stack([xs, ys, np.zeros_like(xs)], axis=-1).astype(np.uint8)
    return Image.fromarray(array, "RGB")


def test_rgba_and_la_are_composited_over_the_background():
    rgba = Image.new("RGBA", (2, 1), (10, 20, 30, 255))
    rgba.putpixel((1, 0), (10, 20, 30, 0))  # fully transparent, colour underneath is dark
    out = np.asarray(to_rgb(rgba))
    assert out.shape == (1, 2, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == (10, 20, 30)
    assert tuple(out[0, 1]) == (255, 255, 255)
    assert tuple(np.asarray(to_rgb(rgba, background=(0, 128, 0)))[0, 1]) == (0, 128, 0)
    half = Image.new("LA", (1, 1), (100, 128))
    value = np.asarray(to_rgb(half))[0, 0]
    assert all(abs(int(v) - (100 * 128 + 255 * 127) / 255) <= 1 for v in value)


def test_palette_grey_16bit_and_cmyk_become_rgb():
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    assert np.asarray(to_rgb(pal)).tolist() == [[[255, 0, 0], [0, 0, 255]]]
    pal.info["transparency"] = 1
    assert np.asarray(to_rgb(pal)).tolist() == [[[255, 0, 0], [255, 255, 255]]]
    grey = Image.new("L", (1, 1), 77)
    assert np.asarray(to_rgb(grey)).tolist() == [[[77, 77, 77]]]
    deep = Image.fromarray(np.array([[0, 257 * 200, 65535]], dtype=np.uint16))
    assert deep.mode.startswith("I;16")
    assert np.asarray(to_rgb(deep))[0, :, 0].tolist() == [0, 200, 255]
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))
    assert np.asarray(to_rgb(cmyk)).tolist() == [[[255, 0, 0]]]
    rgb = Image.new("RGB", (1, 1))
    assert to_rgb(rgb) is rgb
    with pytest.raises(TypeError, match="image"):
        to_rgb(np.zeros((2, 2, 3)))


def test_resize_shorter_and_center_crop():
    wide = Image.new("RGB", (100, 50))
    assert resize_shorter(wide, 32).size == (64, 32)
    assert resize_shorter(Image.new("RGB", (50, 100)), 32).size == (32, 64)
    image = Image.new("RGB", (5, 7), (0, 0, 0))
    image.putpixel((2, 3), (255, 255, 255))  # the centre pixel
    crop = center_crop(image, 3)
    assert crop.size == (3, 3)
    assert np.asarray(crop)[1, 1].tolist() == [255, 255, 255]
    assert np.asarray(crop).sum() == 3 * 255
    with pytest.raises(ValueError, match="size"):
        resize_shorter(wide, 0)
    with pytest.raises(ValueError, match="size"):
        center_crop(wide, 0)


def test_resize_and_crop_round_like_torchvision():
    # torchvision (OpenCLIP's preprocessing): long side floor(224 * 300 / 225) = 298, and a
    # centre offset round((7 - 4) / 2) = 2 (half to even), not floor = 1.
    assert resize_shorter(Image.new("RGB", (300, 225)), 224).size == (298, 224)
    assert resize_shorter(Image.new("RGB", (225, 300)), 224).size == (224, 298)
    row = Image.fromarray(np.arange(7, dtype=np.uint8)[None].repeat(7, 0))
    assert np.asarray(center_crop(row, 4))[0].tolist() == [2, 3, 4, 5]
    assert np.asarray(center_crop(row, 2))[0].tolist() == [2, 3]  # round(2.5) = 2
    padded = np.asarray(center_crop(row, 10))  # 3 columns of padding: 1 before, 2 after
    assert padded[1].tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 0, 0]
    assert padded[:1].sum() == 0 and padded[-2:].sum() == 0


def test_eval_transform_is_clip_preprocessing():
    colour = (200, 100, 50)
    out = ImageTransform(24)(Image.new("RGB", (40, 30), colour))
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    for c in range(3):
        expected = (colour[c] / 255 - CLIP_MEAN[c]) / CLIP_STD[c]
        assert torch.allclose(out[c], torch.full((24, 24), expected), atol=1e-6)
    # the crop is the centre of the resized image: a left/right split stays centred
    half = Image.new("RGB", (64, 32), (0, 0, 0))
    half.paste((255, 255, 255), (32, 0, 64, 32))
    raw = to_tensor(center_crop(resize_shorter(half, 16), 16))
    assert raw[0, :, :7].max() < 0.05 and raw[0, :, 9:].min() > 0.95


def test_to_tensor_and_normalize():
    image = Image.fromarray(np.array([[[0, 128, 255]]], dtype=np.uint8))
    t = to_tensor(image)
    assert t.shape == (3, 1, 1) and torch.allclose(t.flatten(), torch.tensor([0, 128 / 255, 1.0]))
    assert torch.allclose(
        normalize(t, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)).flatten(), t.flatten() * 2 - 1
    )
    with pytest.raises(ValueError, match="mean/std"):
        normalize(t, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="std"):
        normalize(t, (0, 0, 0), (1, 0, 1))
    with pytest.raises(ValueError, match="image_size"):
        ImageTransform(0)
    with pytest.raises(ValueError, match="mean/std"):
        ImageTransform(8, std=(1, 1, -1))


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), a=st.floats(0.05, 1.0), b=st.floats(0.05, 1.0))
def test_random_resized_crop_box_has_area_and_ratio_in_range(seed, a, b):
    """The output's coordinate colours reveal the source box (to a pixel or two of
    bicubic blur at its edges)."""
    source = _coordinates(256)
    scale, ratio = (min(a, b), max(a, b)), (3 / 4, 4 / 3)
    gen = torch.Generator().manual_seed(seed)
    out = np.asarray(random_resized_crop(source, 64, scale, ratio, gen)).astype(int)
    assert out.shape == (64, 64, 3)
    width = out[..., 0].max() - out[..., 0].min() + 1
    height = out[..., 1].max() - out[..., 1].min() + 1
    # output pixel centres sit half an output pixel (box / 128) inside each edge of the box
    tw, th = 3 + width / 32, 3 + height / 32
    assert (width - tw) * (height - th) <= scale[1] * 256**2
    assert (width + tw) * (height + th) >= scale[0] * 256**2
    assert ratio[0] * (height - th) <= width + tw and width - tw <= ratio[1] * (height + th)


def test_full_crop_is_a_plain_resize_and_seeds_reproduce():
    source = _coordinates(64)
    full = random_resized_crop(source, 32, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert np.array_equal(
        np.asarray(full), np.asarray(source.resize((32, 32), Image.Resampling.BICUBIC))
    )
    a = ImageTransform(32, train=True, scale=(0.2, 1.0), seed=7)
    b = ImageTransform(32, train=True, scale=(0.2, 1.0), seed=7)
    c = ImageTransform(32, train=True, scale=(0.2, 1.0), seed=8)
    first = [a(source) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(first, [b(source) for _ in range(3)]))
    assert not torch.equal(first[0], c(source))
    assert not torch.equal(first[0], first[1])  # the generator advances
    with pytest.raises(ValueError, match="scale"):
        random_resized_crop(source, 8, scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="ratio"):
        random_resized_crop(source, 8, ratio=(2.0, 1.0))


def test_impossible_ratio_falls_back_to_a_centre_box():
    tall = _coordinates(256).crop((0, 0, 40, 256))  # aspect 40/256, far below 3/4
    out = np.asarray(random_resized_crop(tall, 16, scale=(0.99, 1.0), ratio=(3 / 4, 4 / 3))).astype(
        int
    )
    width = out[..., 0].max() - out[..., 0].min() + 1
    height = out[..., 1].max() - out[..., 1].min() + 1
    assert width >= 38 and abs(height - 40 / 0.75) < 4
    assert abs((out[..., 1].min() + out[..., 1].max()) / 2 - 128) < 3
