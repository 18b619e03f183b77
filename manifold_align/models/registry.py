"""Named model configurations and the factory that builds a [TwoTower][manifold_align.models.two_tower.TwoTower] from one.

Each name is a [ModelConfig][manifold_align.models.registry.ModelConfig]. The CLIP sizes come in two forms: the plain name is
CLIP's sphere model (``k = 1``, ``d`` = CLIP's embedding width) and ``-oblique`` is the
multi-token model on ``Oblique(16, embed / 16)``, the same total size (``ViT-B-16-oblique``
is ``16 x 32 = 512``, the paper's geometry with a CLIP text tower). The ``-release`` pair is
the architecture of the paper's public inference release exactly: the same ViT-B/16, and a
BERT-style text tower (bidirectional, post-norm, ``ln_embedding``, WordPiece's 30,522 ids);
see docs/models.md.

>>> model = build_model("tiny-oblique", vocab_size=512, eot_id=2)
>>> model.manifold
Oblique(tokens=8, dim=16)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from manifold_align.losses import InfoNCE, SigmoidLoss, Temperature
from manifold_align.manifolds import ContrastiveManifold, Lorentz, Oblique, Product, Sphere
from manifold_align.models.text import MASKS, POOLS, TextTransformer
from manifold_align.models.transformer import ACTIVATIONS, NORMS
from manifold_align.models.two_tower import TwoTower
from manifold_align.models.vision import VisionTransformer

__all__ = ["ModelConfig", "build_model", "list_models", "model_config"]


_MANIFOLDS = ("sphere", "oblique", "lorentz", "sphere-lorentz")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes a [TwoTower][manifold_align.models.two_tower.TwoTower]'s architecture, manifold and loss.

    Attributes:
        vision_width, vision_layers, vision_heads: the ViT's width, depth and heads.
        patch_size, image_size: square patches of an ``image_size``-square input.
        text_width, text_layers, text_heads: the text transformer's width, depth and heads.
        vocab_size, context_length: the tokenizer's vocabulary size and the longest sequence.
        eot_id: the end-of-text id (``None``: the largest id in each row is EOT, CLIP's
            convention); pass the tokenizer's.
        manifold: ``"sphere"`` (``Sphere(token_dim)``, needs ``tokens = 1``), ``"oblique"``
            (``Oblique(tokens, token_dim)``), ``"lorentz"`` (``Lorentz(token_dim)``, MERU's
            hyperbolic space, ``tokens = 1``) or ``"sphere-lorentz"``
            (``Product(Sphere(token_dim), Lorentz(token_dim))``, ``tokens = 1``).
        curvature, learn_curvature, radius: the `Lorentz` factor's initial curvature $c$,
            whether $\\log c$ is learned (clamped to $[0.1, 10]$), and its radius.
        entailment_weight: weight of MERU's entailment-cone term added to the contrastive
            loss (``0``: none; needs ``manifold="lorentz"``; MERU uses 0.2).
        tokens: ``k``, class tokens of the ViT and output tokens of the text tower.
        token_dim: ``d``, the size of each token on the manifold.
        loss: ``"infonce"`` (CLIP) or ``"sigmoid"`` (SigLIP).
        temperature: ``"learnable"`` (init ``temperature_init``, cap ``temperature_max``),
            ``"fixed"`` (``temperature_init``) or ``"none"`` (scale 1).
        temperature_init, temperature_max: the inverse temperature (scale) and its cap.
        sigmoid_bias_init: initial logit bias of the sigmoid loss.
        loss_tile_size: ``None`` for the dense InfoNCE (the sigmoid loss: strips of 512 rows),
            else rows per tile (strip).
        grad_checkpointing: per-block activation checkpointing in both towers.
        activation: the MLP activation of both towers, ``"gelu"`` (OpenCLIP's default) or
            ``"quick_gelu"`` (OpenAI's released CLIP weights, OpenCLIP's ``-quickgelu`` names).
        text_mask: ``"causal"`` (CLIP's, with the summary rows for ``k > 1``) or
            ``"padding"`` (key-padding only, bidirectional: the paper's release).
        text_norm: the text blocks' norm placement, ``"pre"`` (CLIP) or ``"post"`` (BERT,
            the release).
        text_embed_norm: a layer norm after the text's token plus positional embedding (the
            release).
        text_pool: for ``k = 1``, the text output at EOT (``"eot"``, CLIP) or at position 0
            (``"first"``, the release's sphere baseline); ``k > 1`` reads the first ``k``.

    The four ``text_*`` defaults are CLIP's text tower, so every config without them builds
    what it built before (same parameter names, shapes and outputs).

    Raises:
        ValueError: naming the field, for a non-positive size, a head count that does not
            divide its width, a patch size that does not divide the image size, a sphere with
            ``tokens != 1``, a temperature outside ``0 < init <= max``, or an unknown
            activation, mask, norm placement or pooling.
    """

    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    patch_size: int = 16
    image_size: int = 224
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    vocab_size: int = 49408
    context_length: int = 77
    eot_id: int | None = None
    manifold: Literal["sphere", "oblique", "lorentz", "sphere-lorentz"] = "sphere"
    tokens: int = 1
    token_dim: int = 512
    loss: Literal["infonce", "sigmoid"] = "infonce"
    temperature: Literal["learnable", "fixed", "none"] = "learnable"
    temperature_init: float = 1 / 0.07
    temperature_max: float = 100.0
    sigmoid_bias_init: float = -10.0
    loss_tile_size: int | None = None
    grad_checkpointing: bool = False
    activation: Literal["gelu", "quick_gelu"] = "gelu"
    curvature: float = 1.0
    learn_curvature: bool = True
    radius: float = 5.0
    entailment_weight: float = 0.0
    text_mask: Literal["causal", "padding"] = "causal"
    text_norm: Literal["pre", "post"] = "pre"
    text_embed_norm: bool = False
    text_pool: Literal["eot", "first"] = "eot"

    def __post_init__(self) -> None:
        for name in (
            "vision_width",
            "vision_layers",
            "vision_heads",
            "patch_size",
            "image_size",
            "text_width",
            "text_layers",
            "text_heads",
            "vocab_size",
            "context_length",
            "tokens",
            "token_dim",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        for width, heads in (("vision_width", "vision_heads"), ("text_width", "text_heads")):
            if getattr(self, width) % getattr(self, heads):
                raise ValueError(
                    f"{heads}: {getattr(self, heads)} does not divide "
                    f"{width} {getattr(self, width)}"
                )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size: {self.image_size} is not divisible by patch_size {self.patch_size}"
            )
        if self.eot_id is not None and not 0 <= self.eot_id < self.vocab_size:
            raise ValueError(f"eot_id: expected an id in [0, {self.vocab_size}), got {self.eot_id}")
        if self.manifold not in _MANIFOLDS:
            raise ValueError(f"manifold: expected one of {_MANIFOLDS}, got {self.manifold!r}")
        if self.manifold != "oblique" and self.tokens != 1:
            raise ValueError(
                f"tokens: the {self.manifold} takes one token (a pooled embedding), got "
                f"tokens={self.tokens}; use manifold='oblique' for k > 1"
            )
        if not (math.isfinite(self.curvature) and 0.1 <= self.curvature <= 10.0):
            raise ValueError(f"curvature: expected a number in [0.1, 10], got {self.curvature}")
        if not self.radius > 0:
            raise ValueError(f"radius: expected a positive number, got {self.radius}")
        if not (math.isfinite(self.entailment_weight) and self.entailment_weight >= 0):
            raise ValueError(
                f"entailment_weight: expected a number >= 0, got {self.entailment_weight}"
            )
        if self.entailment_weight > 0 and self.manifold != "lorentz":
            raise ValueError(
                f"entailment_weight: the entailment-cone term needs manifold 'lorentz', "
                f"got {self.manifold!r}"
            )
        if self.loss not in ("infonce", "sigmoid"):
            raise ValueError(f"loss: expected 'infonce' or 'sigmoid', got {self.loss!r}")
        if self.temperature not in ("learnable", "fixed", "none"):
            raise ValueError(
                f"temperature: expected 'learnable', 'fixed' or 'none', got {self.temperature!r}"
            )
        if not (math.isfinite(self.temperature_init) and self.temperature_init > 0):
            raise ValueError(f"temperature_init: expected > 0, got {self.temperature_init}")
        if not self.temperature_max >= self.temperature_init:
            raise ValueError(
                f"temperature_max: expected >= temperature_init {self.temperature_init}, "
                f"got {self.temperature_max}"
            )
        if not math.isfinite(self.sigmoid_bias_init):
            raise ValueError(f"sigmoid_bias_init: expected a finite number, got {self.sigmoid_bias_init}")
        if self.loss_tile_size is not None and self.loss_tile_size <= 0:
            raise ValueError(f"loss_tile_size: expected None or > 0, got {self.loss_tile_size}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {self.activation!r}")
        for name, valid in (("text_mask", MASKS), ("text_norm", NORMS), ("text_pool", POOLS)):
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}: expected one of {valid}, got {getattr(self, name)!r}")
        if not isinstance(self.text_embed_norm, bool):
            raise ValueError(f"text_embed_norm: expected true or false, got {self.text_embed_norm!r}")

    @property
    def embed_dim(self) -> int:
        """Total size of one embedding, ``tokens * token_dim``."""
        return self.tokens * self.token_dim

    def build_manifold(self) -> ContrastiveManifold:
        """``Sphere(token_dim)``, ``Oblique(tokens, token_dim)``, ``Lorentz(token_dim)`` or
        ``Product(Sphere(token_dim), Lorentz(token_dim))``."""
        if self.manifold == "sphere":
            return Sphere(self.token_dim)
        if self.manifold == "oblique":
            return Oblique(self.tokens, self.token_dim)
        hyperbolic = Lorentz(
            self.token_dim, self.curvature, radius=self.radius, learnable=self.learn_curvature
        )
        if self.manifold == "lorentz":
            return hyperbolic
        return Product(Sphere(self.token_dim), hyperbolic)

    def build_temperature(self) -> Temperature:
        """The [Temperature][manifold_align.losses.temperature.Temperature] this config asks for."""
        if self.temperature == "learnable":
            return Temperature.learnable(self.temperature_init, self.temperature_max)
        if self.temperature == "fixed":
            return Temperature.fixed(self.temperature_init)
        return Temperature.none()


def _clip(vision_width: int, vision_layers: int, vision_heads: int, patch: int,
          text_width: int, text_heads: int, embed: int, oblique: bool) -> ModelConfig:
    """A CLIP-sized config; the oblique form splits ``embed`` into 16 tokens."""
    tokens = 16 if oblique else 1
    return ModelConfig(
        vision_width=vision_width,
        vision_layers=vision_layers,
        vision_heads=vision_heads,
        patch_size=patch,
        image_size=224,
        text_width=text_width,
        text_layers=12,
        text_heads=text_heads,
        vocab_size=49408,
        context_length=77,
        manifold="oblique" if oblique else "sphere",
        tokens=tokens,
        token_dim=embed // tokens,
        **_OBLIQUE_TEMPERATURE if oblique else {},
    )


# The oblique similarity spans [-16, 16] rather than [-1, 1]; its scale starts at 1 and is
# capped at 100 / 16, so the largest logit equals the sphere model's (100 x 1): this project's
# comparison at equal logit range, not the paper's value (the -release config below has that).
_OBLIQUE_TEMPERATURE: dict[str, Any] = {"temperature_init": 1.0, "temperature_max": 100.0 / 16}

# The paper's public inference release (github.com/minogame/clip-mtob,
# modeling_clip_helper_mtob.py / _ref.py, run_example.py): the ViT-B/16 image tower as above;
# the text tower a BERT-style encoder (torch.nn.TransformerEncoder: post-norm, GELU,
# key-padding mask only) of width 512, 8 heads, 12 layers, after a LayerNorm on token +
# positional embedding, over the 30,522 WordPiece ids of its ERNIE/BERT vocabulary, context
# 77 ([CLS] text [SEP] [PAD]...), its first token repeated to k; ln_final; one bias-free
# projection. The sphere baseline reads position 0 ([CLS]). Both start the log-scale at
# log(1/0.07) (the release's constructor). The cap: the public review record gives 3.95 for
# the oblique model and 100 for the sphere; the release's parameter is the logarithm of the
# scale (CLIP's convention, whose cap "100" is log(100) = 4.605 on that parameter), and
# 3.95 > log(1/0.07) = 2.66 while 3.95 < 1/0.07 = 14.3, so 3.95 caps the logarithm:
# scale <= exp(3.95) = 51.9 (a cap on the scale itself would sit below the initial value).
_RELEASE_TEXT: dict[str, Any] = {
    "vocab_size": 30522, "text_mask": "padding", "text_norm": "post",
    "text_embed_norm": True, "text_pool": "first",
}
_RELEASE_OBLIQUE_CAP = math.exp(3.95)

_TINY = ModelConfig(
    vision_width=128,
    vision_layers=3,
    vision_heads=4,
    patch_size=8,
    image_size=64,
    text_width=128,
    text_layers=3,
    text_heads=4,
    vocab_size=1024,
    context_length=32,
    manifold="sphere",
    tokens=1,
    token_dim=128,
)

_MODELS: dict[str, ModelConfig] = {
    "tiny": _TINY,
    "tiny-oblique": dataclasses.replace(
        _TINY,
        manifold="oblique",
        tokens=8,
        token_dim=16,
        temperature_init=1.0,
        temperature_max=100.0 / 8,
    ),
    # MERU's hyperbolic space: similarity -d in [-10, 0] (radius 5), learnable curvature;
    # scale from 1, capped at 100 / 10 so the largest logit is the sphere model's
    "tiny-lorentz": dataclasses.replace(
        _TINY, manifold="lorentz", temperature_init=1.0, temperature_max=10.0
    ),
    # mixed curvature S^63 x H^64: similarity in [-11, 1]
    "tiny-sphere-lorentz": dataclasses.replace(
        _TINY, manifold="sphere-lorentz", token_dim=64, temperature_init=1.0,
        temperature_max=100.0 / 11,
    ),
    "ViT-B-32": _clip(768, 12, 12, 32, 512, 8, 512, oblique=False),
    "ViT-B-32-oblique": _clip(768, 12, 12, 32, 512, 8, 512, oblique=True),
    "ViT-B-16": _clip(768, 12, 12, 16, 512, 8, 512, oblique=False),
    "ViT-B-16-oblique": _clip(768, 12, 12, 16, 512, 8, 512, oblique=True),
    "ViT-B-16-lorentz": dataclasses.replace(
        _clip(768, 12, 12, 16, 512, 8, 512, oblique=False),
        manifold="lorentz", temperature_init=1.0, temperature_max=10.0,
    ),
    "ViT-L-14": _clip(1024, 24, 16, 14, 768, 12, 768, oblique=False),
    "ViT-L-14-oblique": _clip(1024, 24, 16, 14, 768, 12, 768, oblique=True),
    "ViT-B-16-oblique-release": dataclasses.replace(
        _clip(768, 12, 12, 16, 512, 8, 512, oblique=True), **_RELEASE_TEXT,
        temperature_init=1 / 0.07, temperature_max=_RELEASE_OBLIQUE_CAP,
    ),
    "ViT-B-16-sphere-release": dataclasses.replace(
        _clip(768, 12, 12, 16, 512, 8, 512, oblique=False), **_RELEASE_TEXT,
    ),
}


def list_models() -> list[str]:
    """The registered names, in registration order."""
    return list(_MODELS)


def model_config(name: str) -> ModelConfig:
    """The [ModelConfig][manifold_align.models.registry.ModelConfig] registered as ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in _MODELS:
        raise ValueError(f"name: unknown model {name!r}; known: {', '.join(_MODELS)}")
    return _MODELS[name]


def build_model(
    config_or_name: ModelConfig | str,
    device: torch.device | str | None = None,
    **overrides: Any,
) -> TwoTower:
    """Build the [TwoTower][manifold_align.models.two_tower.TwoTower] of a named or given config, with field overrides.

    Args:
        config_or_name: a [ModelConfig][manifold_align.models.registry.ModelConfig] or a registered name ([list_models][manifold_align.models.registry.list_models]).
        device: where to create the parameters; ``"meta"`` builds a shape-only model
            (no memory, for counting parameters of the large configs).
        **overrides: [ModelConfig][manifold_align.models.registry.ModelConfig] fields to replace, e.g. ``vocab_size=...,
            eot_id=...`` from the tokenizer, or ``manifold="oblique", tokens=4, token_dim=32``.

    Raises:
        ValueError: an unknown name, an unknown override key (naming it and the valid
            ones), or an invalid resulting config (naming the field).
        TypeError: ``config_or_name`` is neither a name nor a ``ModelConfig``.
    """
    if isinstance(config_or_name, str):
        config = model_config(config_or_name)
    elif isinstance(config_or_name, ModelConfig):
        config = config_or_name
    else:
        raise TypeError(
            f"config_or_name: expected a model name or ModelConfig, "
            f"got {type(config_or_name).__name__}"
        )
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"unknown model override {unknown[0]!r}; valid keys: {', '.join(sorted(fields))}"
        )
    if overrides:
        config = dataclasses.replace(config, **overrides)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        vision = VisionTransformer(
            image_size=config.image_size,
            patch_size=config.patch_size,
            width=config.vision_width,
            layers=config.vision_layers,
            heads=config.vision_heads,
            tokens=config.tokens,
            grad_checkpointing=config.grad_checkpointing,
            activation=config.activation,
        )
        text = TextTransformer(
            vocab_size=config.vocab_size,
            context_length=config.context_length,
            width=config.text_width,
            layers=config.text_layers,
            heads=config.text_heads,
            tokens=config.tokens,
            eot_id=config.eot_id,
            grad_checkpointing=config.grad_checkpointing,
            activation=config.activation,
            mask=config.text_mask,
            norm=config.text_norm,
            embed_norm=config.text_embed_norm,
            pool=config.text_pool,
        )
        manifold = config.build_manifold()
        temperature = config.build_temperature()
        if config.loss == "infonce":
            loss: InfoNCE | SigmoidLoss = InfoNCE(manifold, temperature, config.loss_tile_size)
        else:
            loss = SigmoidLoss(
                manifold, temperature, config.sigmoid_bias_init, tile_size=config.loss_tile_size
            )
        model = TwoTower(vision, text, loss, entailment_weight=config.entailment_weight)
    model.config = config
    return model
