"""Procedurally generated captioned images: coloured shapes on a textured background.

Nothing is downloaded and nothing is stored: item ``i`` of a split is drawn from its own
random stream ``numpy.random.default_rng([seed, split, i])`` and rendered with Pillow when it
is asked for, so a dataset of any size costs no memory and every item is the same on every
machine.

A scene holds one object (with a position: left, right, top, bottom, center) or two objects
(with a relation: left of, right of, above, below). Each object has a shape, a colour and a
size; positions, sizes, colours and rotations are jittered and the background has a
random tint, low-frequency blotches and pixel noise.

Captions are compositional: ``"a small red triangle left of a large blue circle"``,
``"a photo of a green star on the left"``. Training captions mention each attribute with a
probability ([SyntheticConfig][manifold_align.data.synthetic.SyntheticConfig]); an unnamed shape is called ``"shape"``
(``"a red shape"``). Clean captions (retrieval, zero-shot) name everything.

Caption noise ``p``: each caption is independently, with probability ``p``, replaced by the
caption of another item ``j != i`` of the same split (drawn uniformly), decided by a
separate stream seeded with ``(seed, split, i)``, so the expected noisy fraction is ``p``.

Splits (independent random streams, so no item is shared):

* ``train``, ``val``, ``test``: one- and two-object scenes with partial captions.
* ``retrieval``: one- and two-object scenes with clean captions.
* ``zeroshot``: one-object scenes with clean captions; [SyntheticZeroShot][manifold_align.data.synthetic.SyntheticZeroShot] pairs
  them with one label per attribute and [ZERO_SHOT_TASKS][manifold_align.data.synthetic.ZERO_SHOT_TASKS] gives class names and
  prompt templates.
* ``compositional``: like ``zeroshot`` but only the colour-shape pairs of
  ``SyntheticConfig.holdout``, which every other split leaves out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from PIL import Image, ImageDraw

from manifold_align.data.tokenizer import Tokenizer

__all__ = [
    "ATTRIBUTES",
    "COLOURS",
    "POSITIONS",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "ZERO_SHOT_TASKS",
    "Scene",
    "SceneObject",
    "SyntheticCaptions",
    "SyntheticConfig",
    "SyntheticZeroShot",
    "ZeroShotTask",
    "synthetic_corpus",
    "train_synthetic_tokenizer",
]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "orange": (250, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 185, 60),
    "blue": (45, 90, 240),
    "purple": (155, 60, 210),
    "white": (245, 245, 245),
}
SIZES: dict[str, float] = {"small": 0.10, "medium": 0.155, "large": 0.21}
"""Object radius as a fraction of the image side."""
POSITIONS: dict[str, tuple[str, tuple[float, float]]] = {
    "left": ("on the left", (0.27, 0.5)),
    "right": ("on the right", (0.73, 0.5)),
    "top": ("at the top", (0.5, 0.27)),
    "bottom": ("at the bottom", (0.5, 0.73)),
    "center": ("in the center", (0.5, 0.5)),
}
"""Label -> (caption phrase, centre as a fraction of the image ``(x, y)``)."""
RELATIONS: dict[str, tuple[str, str]] = {
    "left of": ("left", "right"),
    "right of": ("right", "left"),
    "above": ("top", "bottom"),
    "below": ("bottom", "top"),
}
"""Relation phrase -> positions of the first and second object."""
ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "size", "position")
SPLITS: dict[str, int] = {
    "train": 0,
    "val": 1,
    "test": 2,
    "zeroshot": 3,
    "retrieval": 4,
    "compositional": 5,
}
"""Split name -> the stream id mixed into every item's seed."""
_CLEAN_SPLITS = ("retrieval", "zeroshot", "compositional")
_PREFIXES = ("a photo of ", "a drawing of ", "an image of ")
_ARTICLE = re.compile(r"\ba (?=[aeiou])")


def _articles(text: str) -> str:
    """``a`` -> ``an`` before a vowel: ``"a orange circle"`` -> ``"an orange circle"``."""
    return _ARTICLE.sub("an ", text)


@dataclass(frozen=True)
class ZeroShotTask:
    """One zero-shot classification problem over an attribute of one-object scenes.

    Attributes:
        attribute: ``"shape"``, ``"colour"``, ``"size"`` or ``"position"``.
        classnames: label names, in label-index order.
        phrases: the words put into a template for each label (e.g. ``"on the left"``).
        templates: prompt templates with one ``{}``.
    """

    attribute: str
    classnames: tuple[str, ...]
    phrases: tuple[str, ...]
    templates: tuple[str, ...]

    def prompts(self) -> list[list[str]]:
        """``prompts()[c][t]`` = template ``t`` filled with class ``c``'s phrase (a/an fixed)."""
        return [[_articles(t.format(p)) for t in self.templates] for p in self.phrases]

    @property
    def chance(self) -> float:
        """Top-1 accuracy of a uniform guess, ``1 / len(classnames)``."""
        return 1.0 / len(self.classnames)


_NOUN_TEMPLATES = ("a {}", "a photo of a {}", "a drawing of a {}", "an image of a {}")
_ADJ_TEMPLATES = (
    "a {} shape",
    "a photo of a {} shape",
    "a drawing of a {} shape",
    "an image of a {} shape",
)
_POS_TEMPLATES = (
    "a shape {}",
    "a photo of a shape {}",
    "a drawing of a shape {}",
    "an image of a shape {}",
)

ZERO_SHOT_TASKS: dict[str, ZeroShotTask] = {
    "shape": ZeroShotTask("shape", SHAPES, SHAPES, _NOUN_TEMPLATES),
    "colour": ZeroShotTask("colour", tuple(COLOURS), tuple(COLOURS), _ADJ_TEMPLATES),
    "size": ZeroShotTask("size", tuple(SIZES), tuple(SIZES), _ADJ_TEMPLATES),
    "position": ZeroShotTask(
        "position", tuple(POSITIONS), tuple(p for p, _ in POSITIONS.values()), _POS_TEMPLATES
    ),
}
"""Attribute -> its zero-shot task. Shapes are nouns (``"a photo of a star"``), colours and
sizes adjectives of the word ``shape`` (``"a photo of a red shape"``), positions phrases after
it (``"a photo of a shape on the left"``)."""


@dataclass(frozen=True)
class SyntheticConfig:
    """Appearance and caption statistics of the synthetic data.

    Attributes:
        two_object_fraction: share of two-object scenes in ``train``/``val``/``test``/
            ``retrieval`` (``zeroshot`` is always one object).
        p_shape, p_colour, p_size, p_position: probability that a training caption names
            the attribute (clean captions name all).
        p_prefix: probability that a training caption starts with "a photo of" / "a drawing
            of" / "an image of".
        texture: strength of background blotches and pixel noise (0 = flat background).
        jitter: scale of the random jitter of position, size, colour and rotation (0 = none).
        holdout: ``"colour shape"`` pairs (e.g. ``"red circle"``) that never occur in
            ``train``/``val``/``test``/``retrieval``/``zeroshot``; the ``compositional``
            split shows only them (compositional generalisation). Empty by default, which
            leaves every split exactly as without the option.
    """

    two_object_fraction: float = 0.3
    p_shape: float = 0.9
    p_colour: float = 0.85
    p_size: float = 0.7
    p_position: float = 0.7
    p_prefix: float = 0.5
    texture: float = 1.0
    jitter: float = 1.0
    holdout: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.holdout, str):
            raise ValueError(
                f"holdout: got {self.holdout!r}, expected a list of 'colour shape' pairs"
            )
        pairs = tuple(dict.fromkeys(" ".join(str(p).split()) for p in self.holdout))
        for pair in pairs:
            words = pair.split(" ")
            if len(words) != 2 or words[0] not in COLOURS or words[1] not in SHAPES:
                raise ValueError(
                    f"holdout: got {pair!r}, expected 'colour shape' with a colour of "
                    f"{list(COLOURS)} and a shape of {list(SHAPES)}"
                )
        if len(pairs) >= len(COLOURS) * len(SHAPES):
            raise ValueError(f"holdout: got all {len(pairs)} colour-shape pairs, expected fewer")
        object.__setattr__(self, "holdout", pairs)
        for f in fields(self):
            if f.name == "holdout":
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{f.name}: got {value!r}, expected a number")
            high = 2.0 if f.name in ("texture", "jitter") else 1.0
            if not 0.0 <= value <= high:
                kind = "a probability" if high == 1.0 else "a value"
                raise ValueError(f"{f.name}: got {value}, expected {kind} in [0, {high:g}]")


@dataclass(frozen=True)
class SceneObject:
    """One drawn object: its labels and its geometry (fractions of the image side)."""

    shape: str
    colour: str
    size: str
    position: str
    center: tuple[float, float]
    radius: float
    rotation: float
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class Scene:
    """A drawn scene: one or two objects, the relation of two, and the caption choices.

    Attributes:
        objects: one or two [SceneObject][manifold_align.data.synthetic.SceneObject].
        relation: a key of [RELATIONS][manifold_align.data.synthetic.RELATIONS] for two objects, else ``None``.
        mention: per object, whether a training caption names (shape, colour, size,
            position).
        prefix: the training caption's opening ("a photo of ", ... or "").
        background_seed: seed of the background texture.
        background_rgb: the background's base colour.
    """

    objects: tuple[SceneObject, ...]
    relation: str | None
    mention: tuple[tuple[bool, bool, bool, bool], ...]
    prefix: str
    background_seed: int
    background_rgb: tuple[int, int, int]

    def describe(self, clean: bool = True) -> str:
        """The caption: every attribute named if ``clean``, else the sampled subset."""
        words = []
        for obj, (m_shape, m_colour, m_size, _) in zip(self.objects, self.mention):
            parts = ["a"]
            if clean or m_size:
                parts.append(obj.size)
            if clean or m_colour:
                parts.append(obj.colour)
            parts.append(obj.shape if clean or m_shape else "shape")
            words.append(" ".join(parts))
        if self.relation is None:
            text = words[0]
            if clean or self.mention[0][3]:
                text += " " + POSITIONS[self.objects[0].position][0]
        else:
            text = f"{words[0]} {self.relation} {words[1]}"
        if not clean:
            text = self.prefix + text
        return _articles(text)

    def labels(self) -> dict[str, int]:
        """Label indices of the first object: ``{"shape", "colour", "size", "position"}``."""
        obj = self.objects[0]
        return {
            "shape": SHAPES.index(obj.shape),
            "colour": list(COLOURS).index(obj.colour),
            "size": list(SIZES).index(obj.size),
            "position": list(POSITIONS).index(obj.position),
        }


def _polygon(shape: str) -> np.ndarray:
    """Unit outline ``(n, 2)`` of a shape with circumradius about 1, centred at 0."""
    if shape == "square":
        return np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]])
    if shape == "diamond":
        return np.array([[0.0, -1.0], [0.65, 0.0], [0.0, 1.0], [-0.65, 0.0]])
    if shape == "triangle":
        angles = np.deg2rad(-90 + 120 * np.arange(3))
        return np.stack([np.cos(angles), np.sin(angles) + 0.15], axis=1)
    if shape == "star":
        angles = np.deg2rad(-90 + 36 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    if shape == "cross":
        a, b = 0.3, 0.9
        return np.array(
            [
                [-a, -b],
                [a, -b],
                [a, -a],
                [b, -a],
                [b, a],
                [a, a],
                [a, b],
                [-a, b],
                [-a, a],
                [-b, a],
                [-b, -a],
                [-a, -a],
            ]
        )
    raise ValueError(f"shape: got {shape!r}, expected one of {SHAPES}")


class SyntheticCaptions(torch.utils.data.Dataset):
    """Map-style dataset of ``(PIL RGB image, caption)`` pairs, generated per index.

    Args:
        split: one of [SPLITS][manifold_align.data.synthetic.SPLITS].
        size: number of items ``N``.
        seed: base seed; item ``i`` depends only on ``(seed, split, i)`` and the settings.
        image_size: side of the square images in pixels (``>= 8``).
        noise: caption-noise probability ``p`` in ``[0, 1]``.
        config: appearance and caption statistics ([SyntheticConfig][manifold_align.data.synthetic.SyntheticConfig]).

    Raises:
        ValueError: for an unknown split, ``size < 1``, ``image_size < 8``, ``noise`` outside
            ``[0, 1]``, ``noise > 0`` with ``size < 2``, or the ``compositional`` split
            without ``config.holdout``.
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 10_000,
        seed: int = 0,
        image_size: int = 64,
        noise: float = 0.0,
        config: SyntheticConfig | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split: got {split!r}, expected one of {list(SPLITS)}")
        if size < 1:
            raise ValueError(f"size: got {size}, expected >= 1")
        if image_size < 8:
            raise ValueError(f"image_size: got {image_size}, expected >= 8")
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise: got {noise}, expected a probability in [0, 1]")
        if noise > 0 and size < 2:
            raise ValueError(f"size: got {size}; caption noise needs at least 2 items")
        if split == "compositional" and not (config and config.holdout):
            raise ValueError("split: 'compositional' shows held-out pairs; set config.holdout")
        self.split = split
        self.size = int(size)
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.noise = float(noise)
        self.config = config if config is not None else SyntheticConfig()

    def __len__(self) -> int:
        return self.size

    def _check(self, index: int) -> int:
        if not isinstance(index, int | np.integer):
            raise TypeError(f"index: got {type(index).__name__}, expected int")
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index: got {index}, expected 0 <= index < {self.size}")
        return int(index)

    # -- scenes ----------------------------------------------------------------------------
    def scene(self, index: int) -> Scene:
        """The scene of item ``index`` (labels, geometry and caption choices)."""
        index = self._check(index)
        cfg = self.config
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
        single = self.split in ("zeroshot", "compositional")
        two = not single and rng.random() < cfg.two_object_fraction
        j = cfg.jitter
        if two:
            relation = list(RELATIONS)[rng.integers(len(RELATIONS))]
            positions = RELATIONS[relation]
        else:
            relation = None
            positions = (list(POSITIONS)[rng.integers(len(POSITIONS))],)
        objects = []
        for pos in positions:
            if self.split == "compositional":
                colour, shape = cfg.holdout[rng.integers(len(cfg.holdout))].split(" ")
            else:
                shape = SHAPES[rng.integers(len(SHAPES))]
                colour = list(COLOURS)[rng.integers(len(COLOURS))]
                while f"{colour} {shape}" in cfg.holdout:  # draws again only for held-out pairs
                    shape = SHAPES[rng.integers(len(SHAPES))]
                    colour = list(COLOURS)[rng.integers(len(COLOURS))]
            size = list(SIZES)[rng.integers(len(SIZES))]
            radius = SIZES[size] * (1.0 + 0.1 * j * rng.uniform(-1, 1))
            cx, cy = POSITIONS[pos][1]
            spread = 0.12 if two else 0.05
            if two and pos in ("left", "right"):
                cy += spread * j * rng.uniform(-1, 1)
                cx += 0.02 * j * rng.uniform(-1, 1)
            elif two:
                cx += spread * j * rng.uniform(-1, 1)
                cy += 0.02 * j * rng.uniform(-1, 1)
            else:
                cx += spread * j * rng.uniform(-1, 1)
                cy += spread * j * rng.uniform(-1, 1)
            cx = float(np.clip(cx, radius, 1 - radius))
            cy = float(np.clip(cy, radius, 1 - radius))
            base = np.array(COLOURS[colour], dtype=np.float64)
            rgb = np.clip(base + 18.0 * j * rng.uniform(-1, 1, 3), 0, 255).round().astype(int)
            rotation = float(20.0 * j * rng.uniform(-1, 1))
            objects.append(
                SceneObject(
                    shape,
                    colour,
                    size,
                    pos,
                    (cx, cy),
                    float(radius),
                    rotation,
                    tuple(int(c) for c in rgb),
                )
            )
        mention = tuple(
            (
                bool(rng.random() < cfg.p_shape),
                bool(rng.random() < cfg.p_colour),
                bool(rng.random() < cfg.p_size),
                bool(rng.random() < cfg.p_position),
            )
            for _ in objects
        )
        prefix = _PREFIXES[rng.integers(len(_PREFIXES))] if rng.random() < cfg.p_prefix else ""
        grey = rng.uniform(25, 95)
        tint = rng.uniform(-12, 12, 3)
        background = tuple(int(v) for v in np.clip(grey + tint, 0, 255).round())
        return Scene(
            tuple(objects), relation, mention, prefix, int(rng.integers(2**31)), background
        )

    def render(self, scene: Scene) -> Image.Image:
        """Draw ``scene`` as an ``image_size x image_size`` RGB image (4x supersampled shapes)."""
        s = self.image_size
        rng = np.random.default_rng(scene.background_seed)
        texture = self.config.texture
        canvas = np.empty((s, s, 3), dtype=np.float32)
        canvas[:] = np.asarray(scene.background_rgb, dtype=np.float32)
        if texture > 0:
            blotch = Image.fromarray(rng.uniform(-1, 1, (4, 4)).astype(np.float32))
            blotch = np.asarray(blotch.resize((s, s), Image.Resampling.BICUBIC), dtype=np.float32)
            canvas += 20.0 * texture * blotch[..., None]
            canvas += rng.normal(0.0, 8.0 * texture, (s, s, 3)).astype(np.float32)
        image = Image.fromarray(np.clip(canvas, 0, 255).round().astype(np.uint8))
        ss = 4
        for obj in scene.objects:
            # coverage mask at 4x resolution, averaged down: anti-aliased edges
            mask = Image.new("L", (s * ss, s * ss), 0)
            draw = ImageDraw.Draw(mask)
            cx, cy = obj.center[0] * s * ss, obj.center[1] * s * ss
            r = obj.radius * s * ss
            if obj.shape == "circle":
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
            else:
                theta = math.radians(obj.rotation)
                rot = np.array(
                    [[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]
                )
                points = _polygon(obj.shape) @ rot.T * r + np.array([cx, cy])
                draw.polygon([tuple(p) for p in points.tolist()], fill=255)
            image.paste(obj.rgb, (0, 0, s, s), mask.reduce(ss))
        return image

    # -- items -----------------------------------------------------------------------------
    def clean_caption(self, index: int) -> str:
        """Caption naming every attribute, without noise."""
        return self.scene(index).describe(clean=True)

    def caption(self, index: int) -> str:
        """The caption before noise: clean for ``retrieval``/``zeroshot``, partial otherwise."""
        return self.scene(index).describe(clean=self.split in _CLEAN_SPLITS)

    def noise_source(self, index: int) -> int | None:
        """Index ``j`` whose caption replaces item ``index``'s, or ``None`` if it is kept."""
        index = self._check(index)
        if self.noise <= 0:
            return None
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index, 1])
        if rng.random() >= self.noise:
            return None
        j = int(rng.integers(self.size - 1))
        return j + 1 if j >= index else j

    def is_noisy(self, index: int) -> bool:
        """Whether item ``index``'s caption was replaced by another item's."""
        return self.noise_source(index) is not None

    def labels(self, index: int) -> dict[str, int]:
        """Clean label indices of the (first) object: ``attribute -> index`` into the task's
        ``classnames`` ([ZERO_SHOT_TASKS][manifold_align.data.synthetic.ZERO_SHOT_TASKS])."""
        return self.scene(index).labels()

    def __getitem__(self, index: int) -> tuple[Image.Image, str]:
        """``(image, caption)``: PIL RGB ``image_size x image_size`` and the (noisy) caption."""
        index = self._check(index)
        scene = self.scene(index)
        source = self.noise_source(index)
        text = (
            scene.describe(clean=self.split in _CLEAN_SPLITS)
            if source is None
            else self.caption(source)
        )
        return self.render(scene), text

    def captions(self) -> Iterator[str]:
        """Every item's caption (with noise) in index order, without rendering images."""
        for i in range(self.size):
            source = self.noise_source(i)
            yield self.caption(i if source is None else source)

    def __repr__(self) -> str:
        return (
            f"SyntheticCaptions(split={self.split!r}, size={self.size}, seed={self.seed}, "
            f"image_size={self.image_size}, noise={self.noise})"
        )


class SyntheticZeroShot(torch.utils.data.Dataset):
    """One-object images labelled by one attribute: ``(PIL image, label index)``.

    Uses the ``zeroshot`` split, which shares no item with ``train`` (or the
    ``compositional`` split: only the held-out colour-shape pairs of ``config.holdout``). The task
    (`task`) gives class names, phrases and prompt templates; chance top-1 accuracy is
    ``1 / len(classnames)``.

    Args:
        attribute: one of `ATTRIBUTES`.
        size: number of images.
        seed: base seed (use the training seed; the split keeps the streams apart).
        image_size: image side in pixels.
        config: appearance settings; use the training ones.
        split: ``"zeroshot"`` or ``"compositional"``.

    Raises:
        ValueError: for an unknown attribute or split, or a bad size (see
            [SyntheticCaptions][manifold_align.data.synthetic.SyntheticCaptions]).
    """

    def __init__(
        self,
        attribute: str,
        size: int = 1000,
        seed: int = 0,
        image_size: int = 64,
        config: SyntheticConfig | None = None,
        split: str = "zeroshot",
    ) -> None:
        if split not in ("zeroshot", "compositional"):
            raise ValueError(f"split: got {split!r}, expected 'zeroshot' or 'compositional'")
        if attribute not in ZERO_SHOT_TASKS:
            raise ValueError(
                f"attribute: got {attribute!r}, expected one of {list(ZERO_SHOT_TASKS)}"
            )
        self.attribute = attribute
        self.task = ZERO_SHOT_TASKS[attribute]
        self.images = SyntheticCaptions(split, size, seed, image_size, 0.0, config)

    @property
    def classnames(self) -> tuple[str, ...]:
        """Label names in label-index order."""
        return self.task.classnames

    @property
    def templates(self) -> tuple[str, ...]:
        """The default prompt templates for this attribute."""
        return self.task.templates

    def prompts(self) -> list[list[str]]:
        """``prompts()[c][t]``: class ``c`` in template ``t``."""
        return self.task.prompts()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        scene = self.images.scene(index)
        return self.images.render(scene), scene.labels()[self.attribute]

    def targets(self) -> torch.Tensor:
        """All labels as a LongTensor ``(N,)`` (no rendering)."""
        return self.labels((self.attribute,))[self.attribute]

    def labels(self, attributes: Sequence[str] = ATTRIBUTES) -> dict[str, torch.Tensor]:
        """Every image's label under each of ``attributes``: ``{attribute: (N,) int64}``.

        The scenes are generated once (no rendering); every image is labelled by every
        attribute, so one split serves all the zero-shot tasks.

        Raises:
            ValueError: an unknown attribute.
        """
        unknown = [a for a in attributes if a not in ZERO_SHOT_TASKS]
        if unknown:
            raise ValueError(f"attributes: unknown {unknown}, expected some of {list(ZERO_SHOT_TASKS)}")
        rows = [self.images.scene(i).labels() for i in range(len(self))]
        return {a: torch.tensor([r[a] for r in rows], dtype=torch.long) for a in attributes}


def synthetic_corpus(
    size: int = 4000, seed: int = 0, config: SyntheticConfig | None = None
) -> Iterator[str]:
    """Captions of ``size`` training items, clean captions of ``size // 4`` retrieval items,
    and every zero-shot prompt: the text the bundled tokenizer is trained on."""
    yield from SyntheticCaptions("train", size, seed, 8, 0.0, config).captions()
    yield from SyntheticCaptions("retrieval", max(1, size // 4), seed, 8, 0.0, config).captions()
    for task in ZERO_SHOT_TASKS.values():
        for row in task.prompts():
            yield from row


def train_synthetic_tokenizer(
    vocab_size: int = 512, context_length: int = 32, size: int = 4000
) -> Tokenizer:
    """Train the byte-level BPE vocabulary bundled as ``assets/synthetic_tokenizer.json``.

    Returns:
        The trained tokenizer; ``default_tokenizer()`` loads the same vocabulary.
    """
    return Tokenizer.train(synthetic_corpus(size), vocab_size, context_length=context_length)
