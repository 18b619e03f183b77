"""Vision transformer with ``k`` class tokens prepended to the patch tokens.

An image ``(B, C, H, W)`` is cut into ``N = (H / p) (W / p)`` patches by a strided
convolution (``p x p`` kernel, stride ``p``, no bias), each patch becoming a token of width
``W_v``. The ``k`` learned class tokens go in front, a learned positional embedding is added
to all ``k + N`` tokens, then ``ln_pre``, the [Transformer][manifold_align.models.transformer.Transformer]
(no mask) and ``ln_post`` on the first ``k`` outputs:

$$z = \\mathrm{LN_{post}}\\big(\\mathrm{T}(\\mathrm{LN_{pre}}([c_1, \\dots, c_k, P x] + E_{pos}))_{1..k}\\big)
\\in \\mathbb{R}^{B \\times k \\times W_v}.$$

With ``k = 1`` this is CLIP's ViT exactly (same parameter shapes and count). The projection
onto the manifold lives in [manifold_align.models.head][manifold_align.models.head], not here.
"""

from __future__ import annotations

import torch
from torch import nn

from manifold_align.models.transformer import Transformer

__all__ = ["VisionTransformer"]


class VisionTransformer(nn.Module):
    """ViT image tower emitting ``k`` token outputs.

    Args:
        image_size: side of the square input image, divisible by ``patch_size``.
        patch_size: side of a square patch.
        width: token width ``W_v``.
        layers: number of transformer blocks.
        heads: attention heads; must divide ``width``.
        tokens: number of class tokens ``k`` (CLIP: 1; the paper's oblique model: 16).
        in_channels: image channels ``C``.
        activation: the MLP activation, ``"gelu"`` or ``"quick_gelu"`` (OpenAI's weights).
        grad_checkpointing: per-block activation checkpointing (see
            [Transformer][manifold_align.models.transformer.Transformer]).

    Parameters: ``C p^2 W_v + k W_v + (k + N) W_v + 2 W_v + L (12 W_v^2 + 13 W_v) + 2 W_v``.

    Raises:
        ValueError: if a size is not positive, ``patch_size`` does not divide ``image_size``
            or ``heads`` does not divide ``width``.
    """

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        width: int,
        layers: int,
        heads: int,
        tokens: int = 1,
        in_channels: int = 3,
        grad_checkpointing: bool = False,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        for name, value in (
            ("image_size", image_size),
            ("patch_size", patch_size),
            ("width", width),
            ("tokens", tokens),
            ("in_channels", in_channels),
        ):
            if value <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {value}")
        if image_size % patch_size != 0:
            raise ValueError(
                f"image_size: {image_size} is not divisible by patch_size {patch_size}"
            )
        self.image_size = image_size
        self.patch_size = patch_size
        self.width = width
        self.tokens = tokens
        self.in_channels = in_channels
        self.grid = image_size // patch_size
        self.num_patches = self.grid**2

        scale = width**-0.5
        self.conv1 = nn.Conv2d(in_channels, width, patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(tokens, width))
        self.positional_embedding = nn.Parameter(
            scale * torch.randn(tokens + self.num_patches, width)
        )
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, grad_checkpointing, activation)
        self.ln_post = nn.LayerNorm(width)

    def _check_images(self, images: torch.Tensor) -> None:
        if images.dim() != 4:
            raise ValueError(
                f"images: expected shape (B, {self.in_channels}, {self.image_size}, "
                f"{self.image_size}), got {tuple(images.shape)}"
            )
        if not images.is_floating_point():
            raise TypeError(f"images: expected a floating-point tensor, got {images.dtype}")
        _, c, h, w = images.shape
        if c != self.in_channels:
            raise ValueError(
                f"images: expected {self.in_channels} channels (B, C, H, W), got {c} "
                f"in shape {tuple(images.shape)}"
            )
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"images: height and width must be divisible by patch_size {self.patch_size}, "
                f"got {h} x {w}"
            )
        if h != self.image_size or w != self.image_size:
            raise ValueError(
                f"images: expected {self.image_size} x {self.image_size} pixels (the size the "
                f"positional embedding was built for), got {h} x {w}"
            )

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """All token outputs of the transformer, before ``ln_post``.

        Args:
            images: ``(B, C, image_size, image_size)`` floating point, cast to the weights'
                dtype (autocast then picks the compute dtype).

        Returns:
            ``(B, k + N, W_v)``: the ``k`` class tokens first, then the ``N`` patches in
            row-major order.

        Raises:
            ValueError: on a wrong rank, channel count or image size (including a size that
                ``patch_size`` does not divide). TypeError: for an integer tensor.
        """
        self._check_images(images)
        x = self.conv1(images.to(self.conv1.weight.dtype))  # (B, W, grid, grid)
        x = x.flatten(2).transpose(1, 2)  # (B, N, W)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        return self.transformer(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, k, W_v)``: ``ln_post`` of the ``k`` class-token outputs."""
        return self.ln_post(self.forward_features(images)[:, : self.tokens])
