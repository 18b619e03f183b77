"""Image transforms with Pillow and torch only (no torchvision).

Evaluation (CLIP's preprocessing): convert to RGB, resize so the *shorter* side is ``s``
(bicubic), crop the centre ``s x s``, scale to ``[0, 1]`` and normalise per channel:

$$x_c = (p_c / 255 - \\mu_c) / \\sigma_c, \\qquad x \\in \\mathbb{R}^{3 \\times s \\times s}.$$

Training adds a random resized crop: an area fraction ``a ~ U(scale)`` of the image and a
log-uniform aspect ratio ``r ~ exp U(log ratio)`` give a ``w x h`` box with
``w = sqrt(a A r)``, ``h = sqrt(a A / r)`` at a uniform position, resized to ``s x s``.
There is deliberately **no horizontal flip**: captions say "left of" and "on the right".
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from manifold_align.data.skipped import CORRUPT_IMAGE, TOO_MANY_PIXELS, SampleError

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "MAX_IMAGE_PIXELS",
    "ImageTransform",
    "center_crop",
    "decode_image",
    "normalize",
    "random_resized_crop",
    "resize_shorter",
    "to_rgb",
    "to_tensor",
]

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
"""Per-channel mean of OpenAI CLIP's preprocessing."""
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
"""Per-channel standard deviation of OpenAI CLIP's preprocessing."""

MAX_IMAGE_PIXELS = 64_000_000
"""Default pixel limit of a decoded image (``data.max_image_pixels``).

Decoded RGB costs 3 bytes a pixel, so 64 megapixels is at most 192 MB per image in each
``DataLoader`` worker. It admits every common camera (a 50 MP phone sensor, 8160 x 6144;
a 61 MP full-frame body, 9504 x 6336) and stays under Pillow's own warning threshold
(``PIL.Image.MAX_IMAGE_PIXELS``, 89.5 MP; Pillow refuses only above twice that), so a
144 MP image of a few kilobytes (a decompression bomb, 430 MB or more decoded) is skipped
rather than decoded. Training resizes every image to a few hundred pixels a side anyway.
"""

_DIRECT_MODES = {"1", "L", "RGB", "CMYK", "YCbCr", "LAB", "HSV"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any common Pillow mode to ``RGB``.

    Transparent modes (``RGBA``, ``LA``, ``PA``, ``P`` with a transparency entry) are
    composited over ``background``: ``p = alpha p_fg + (1 - alpha) p_bg``, so transparent
    pixels do not turn into whatever colour happened to be stored under them. 16-bit
    grey (``I;16*``) is scaled by ``1/257``; ``I`` and ``F`` are clipped to ``[0, 255]``.

    Raises:
        TypeError: if ``image`` is not a ``PIL.Image.Image``.
        ValueError: for a mode Pillow cannot convert to RGB.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"image: got {type(image).__name__}, expected a PIL.Image.Image")
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
        if mode == "RGB":
            return image
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if mode in _DIRECT_MODES:
        return image.convert("RGB")
    if mode.startswith("I;16"):
        grey = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8)).convert("RGB")
    if mode in ("I", "F"):
        grey = np.clip(np.asarray(image, dtype=np.float64), 0, 255)
        return Image.fromarray(np.rint(grey).astype(np.uint8)).convert("RGB")
    raise ValueError(f"image.mode: got {mode!r}, expected a mode convertible to RGB")


def decode_image(data: bytes, key: str = "", max_pixels: int | None = MAX_IMAGE_PIXELS) -> Image.Image:
    """Fully decode image bytes to an RGB PIL image, refusing huge ones before decoding.

    The size comes from the header (``Image.open`` is lazy), so an image with
    ``width x height > max_pixels`` is refused without allocating its pixels. Pillow's own
    decompression-bomb warning is silenced here (this limit replaces it); its error, for
    images over twice ``PIL.Image.MAX_IMAGE_PIXELS``, counts as too many pixels too.
    Otherwise ``load()`` is forced: truncated bytes fail now, inside the reader, and not
    later in a transform.

    Args:
        data: the encoded image.
        key: the sample's name for the error.
        max_pixels: the largest ``width x height`` decoded; ``None``: no limit of ours.

    Raises:
        SampleError: with reason ``too_many_pixels`` for an image over ``max_pixels``, or
            ``corrupt_image`` if Pillow cannot decode ``data``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exn:
        raise SampleError(TOO_MANY_PIXELS, key, str(exn)[:200]) from exn
    except UnidentifiedImageError as exn:  # its message names a BytesIO object's address
        raise SampleError(CORRUPT_IMAGE, key, "not an image format Pillow knows") from exn
    except Exception as exn:  # Pillow raises OSError, SyntaxError, ValueError, ... on bad bytes
        raise SampleError(CORRUPT_IMAGE, key, f"{type(exn).__name__}: {exn}"[:200]) from exn
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise SampleError(
            TOO_MANY_PIXELS,
            key,
            f"{width} x {height} = {width * height:,} pixels > max_image_pixels {max_pixels:,}",
        )
    try:
        image.load()  # no context manager: closing may drop the pixels we return
        return to_rgb(image)
    except Exception as exn:  # Pillow raises OSError, SyntaxError, ValueError, ... on bad bytes
        raise SampleError(CORRUPT_IMAGE, key, f"{type(exn).__name__}: {exn}"[:200]) from exn


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
    """Resize (bicubic) so the shorter side is ``size``, keeping the aspect ratio.

    The longer side becomes ``floor(size * long / short)``, as in torchvision's ``Resize``
    (so OpenCLIP's preprocessing gives the same pixels).

    Raises:
        ValueError: if ``size < 1``.
    """
    if size < 1:
        raise ValueError(f"size: got {size}, expected >= 1")
    w, h = image.size
    if min(w, h) == size:
        return image
    long = int(size * max(w, h) / min(w, h))
    new = (size, long) if w <= h else (long, size)
    return image.resize(new, Image.Resampling.BICUBIC)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """Crop the centre ``size x size`` (padding with black if the image is smaller).

    The offset is ``round((w - size) / 2)`` (Python's round-half-to-even) on a larger side and
    a padding of ``floor((size - w) / 2)`` before a smaller one, as torchvision's
    ``CenterCrop`` (so OpenCLIP's preprocessing gives the same pixels).

    Raises:
        ValueError: if ``size < 1``.
    """
    if size < 1:
        raise ValueError(f"size: got {size}, expected >= 1")
    w, h = image.size
    left = round((w - size) / 2.0) if w >= size else -((size - w) // 2)
    top = round((h - size) / 2.0) if h >= size else -((size - h) // 2)
    return image.crop((left, top, left + size, top + size))


def random_resized_crop(
    image: Image.Image,
    size: int,
    scale: tuple[float, float] = (0.8, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> Image.Image:
    """Crop a random box of area fraction in ``scale`` and aspect ratio in ``ratio``; resize.

    Ten draws are tried; if none fits, the centre crop of the largest box with the ratio
    clamped to ``ratio`` is used (the same fallback as the usual implementations).

    Args:
        image: the input image.
        size: output side ``s``.
        scale: ``(low, high)`` area fraction, ``0 < low <= high <= 1``.
        ratio: ``(low, high)`` aspect ratio ``w / h``, ``0 < low <= high``.
        generator: source of randomness; ``None`` uses torch's global generator (which a
            ``DataLoader`` seeds differently in each worker).

    Raises:
        ValueError: if ``size``, ``scale`` or ``ratio`` is out of range.
    """
    if size < 1:
        raise ValueError(f"size: got {size}, expected >= 1")
    if not (0 < scale[0] <= scale[1] <= 1):
        raise ValueError(f"scale: got {tuple(scale)}, expected 0 < low <= high <= 1")
    if not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"ratio: got {tuple(ratio)}, expected 0 < low <= high")
    w, h = image.size
    area = w * h
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            left = min(int(u[2] * (w - cw + 1)), w - cw)
            top = min(int(u[3] * (h - ch + 1)), h - ch)
            box = (left, top, left + cw, top + ch)
            break
    else:
        aspect = w / h
        if aspect < ratio[0]:
            cw, ch = w, round(w / ratio[0])
        elif aspect > ratio[1]:
            cw, ch = round(h * ratio[1]), h
        else:
            cw, ch = w, h
        left, top = (w - cw) // 2, (h - ch) // 2
        box = (left, top, left + cw, top + ch)
    return image.resize((size, size), Image.Resampling.BICUBIC, box=box)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB image -> float32 tensor ``(3, H, W)`` in ``[0, 1]`` (``p / 255``)."""
    array = np.asarray(to_rgb(image), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel ``(x - mean) / std`` for ``x`` of shape ``(..., C, H, W)``.

    Raises:
        ValueError: if ``mean``/``std`` do not have ``C`` entries or a std is not positive.
    """
    channels = x.shape[-3]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"mean/std: got {len(mean)} and {len(std)} entries, expected {channels} (channels)"
        )
    if any(s <= 0 for s in std):
        raise ValueError(f"std: got {tuple(std)}, expected every entry > 0")
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s


class ImageTransform:
    """Image -> normalised float tensor ``(3, s, s)``; CLIP's evaluation path or a train crop.

    Args:
        image_size: output side ``s``.
        mean: per-channel mean (CLIP's by default).
        std: per-channel standard deviation (CLIP's by default).
        train: use [random_resized_crop][manifold_align.data.transforms.random_resized_crop] instead of resize + centre crop.
        scale: area range of the train crop.
        ratio: aspect-ratio range of the train crop.
        seed: with ``train=True``, seed of a private generator so crops are reproducible.
            Inside a ``DataLoader`` worker the generator is re-seeded once with
            ``(seed, worker id)`` so workers do not repeat each other's crops. ``None`` draws
            from torch's global generator.

    Raises:
        ValueError: if ``image_size < 1`` or mean/std are not 3 numbers with std > 0.
    """

    def __init__(
        self,
        image_size: int,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        *,
        train: bool = False,
        scale: tuple[float, float] = (0.8, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        seed: int | None = None,
    ) -> None:
        if image_size < 1:
            raise ValueError(f"image_size: got {image_size}, expected >= 1")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError(
                f"mean/std: got {tuple(mean)}, {tuple(std)}; expected 3 numbers each, std > 0"
            )
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.train = bool(train)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._worker: int | None = None

    def _rng(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        info = torch.utils.data.get_worker_info()
        worker = -1 if info is None else info.id
        if self._generator is None or self._worker != worker:
            self._generator = torch.Generator().manual_seed(
                self.seed if worker < 0 else hash((self.seed, worker)) & 0x7FFF_FFFF_FFFF_FFFF
            )
            self._worker = worker
        return self._generator

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Transform one image to ``(3, image_size, image_size)`` float32.

        Raises:
            TypeError: if ``image`` is not a PIL image.
        """
        image = to_rgb(image)
        if self.train:
            image = random_resized_crop(image, self.image_size, self.scale, self.ratio, self._rng())
        else:
            image = center_crop(resize_shorter(image, self.image_size), self.image_size)
        return normalize(to_tensor(image), self.mean, self.std)

    def __repr__(self) -> str:
        kind = (
            f"train, scale={self.scale}, ratio={self.ratio}, seed={self.seed}"
            if self.train
            else "eval"
        )
        return f"ImageTransform({self.image_size}, {kind})"
