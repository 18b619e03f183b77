"""Pre-norm residual transformer blocks on ``torch.nn.functional.scaled_dot_product_attention``.

One block computes

$$x \\leftarrow x + \\mathrm{Attn}(\\mathrm{LN}_1(x)), \\qquad
x \\leftarrow x + \\mathrm{MLP}(\\mathrm{LN}_2(x)),$$

with multi-head self-attention ``softmax(q k^T / sqrt(width / heads) + mask) v`` and a
``width -> 4 width -> width`` MLP whose activation is GELU (``"gelu"``, exact erf form) or
OpenAI CLIP's QuickGELU (``"quick_gelu"``, $x \\sigma(1.702 x)$), which OpenAI's released
weights were trained with (OpenCLIP's ``-quickgelu`` names, Hugging Face's ``hidden_act``). Both the vision and the text tower use the same
[Transformer][manifold_align.models.transformer.Transformer]; only their masks differ (none for images, causal or a per-row mask
for text).

``norm="post"`` gives the post-norm block of BERT and of ``torch.nn.TransformerEncoderLayer``
(``norm_first=False``), which the paper's released text tower uses, with the same modules
(and so the same parameter names and count) in another order:

$$x \\leftarrow \\mathrm{LN}_1(x + \\mathrm{Attn}(x)), \\qquad
x \\leftarrow \\mathrm{LN}_2(x + \\mathrm{MLP}(x)).$$

Weights are initialised like CLIP's: ``in_proj ~ N(0, width^-1/2)``, ``out_proj`` and the
MLP's output ``~ N(0, width^-1/2 (2 layers)^-1/2)``, the MLP's input ``~ N(0, (2 width)^-1/2)``,
biases zero, layer norms ``(1, 0)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["ACTIVATIONS", "MLP", "NORMS", "QuickGELU", "ResidualBlock", "SelfAttention", "Transformer"]

ACTIVATIONS = ("gelu", "quick_gelu")
"""The MLP activations a [Transformer][manifold_align.models.transformer.Transformer] accepts."""

NORMS = ("pre", "post")
"""Where a [ResidualBlock][manifold_align.models.transformer.ResidualBlock] puts its layer norms: before each branch (CLIP) or after
each residual sum (BERT, the paper's released text tower)."""


class QuickGELU(nn.Module):
    """OpenAI CLIP's sigmoid approximation of GELU: ``x * sigmoid(1.702 x)``, any shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise ``x sigma(1.702 x)``."""
        return x * torch.sigmoid(1.702 * x)


def _activation(name: str) -> nn.Module:
    """The module for an activation name in [ACTIVATIONS][manifold_align.models.transformer.ACTIVATIONS].

    Raises:
        ValueError: for another name, listing the valid ones.
    """
    if name == "gelu":
        return nn.GELU()
    if name == "quick_gelu":
        return QuickGELU()
    raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {name!r}")


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused ``(width -> 3 width)`` input projection.

    Args:
        width: model width ``W``.
        heads: number of heads; must divide ``width``.

    Raises:
        ValueError: if ``heads`` does not divide ``width`` or either is not positive.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width <= 0 or heads <= 0:
            raise ValueError(f"width, heads: expected positive integers, got {width}, {heads}")
        if width % heads != 0:
            raise ValueError(f"heads: {heads} does not divide width {width}")
        self.heads = heads
        self.in_proj = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """``(B, L, W) -> (B, L, W)``.

        Args:
            x: token features ``(B, L, W)``.
            attn_mask: optional boolean mask broadcastable to ``(B, heads, L, L)``; ``True``
                means *may attend* (``scaled_dot_product_attention``'s convention).
            is_causal: use the causal mask ``j <= i``; exclusive with ``attn_mask``.
        """
        b, n, w = x.shape
        qkv = self.in_proj(x).view(b, n, 3, self.heads, w // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, L, W / heads)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, w))


class MLP(nn.Module):
    """``x -> c_proj(act(c_fc(x)))`` with hidden width ``4 width``; ``act`` from [ACTIVATIONS][manifold_align.models.transformer.ACTIVATIONS].

    Raises:
        ValueError: for an unknown ``activation``.
    """

    def __init__(self, width: int, activation: str = "gelu") -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.act = _activation(activation)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., W) -> (..., W)``."""
        return self.c_proj(self.act(self.c_fc(x)))


class ResidualBlock(nn.Module):
    """Pre-norm block ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``; with ``norm="post"``
    ``ln_1(x + attn(x))`` then ``ln_2(x + mlp(x))``.

    Parameters per block: ``12 W^2 + 13 W`` (attention ``4 W^2 + 4 W``, MLP ``8 W^2 + 5 W``,
    two layer norms ``4 W``), whichever the norm placement.

    Raises:
        ValueError: for a ``norm`` outside [NORMS][manifold_align.models.transformer.NORMS] or an unknown ``activation``.
    """

    def __init__(self, width: int, heads: int, activation: str = "gelu", norm: str = "pre") -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")
        self.norm = norm
        self.ln_1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = MLP(width, activation)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """``(B, L, W) -> (B, L, W)``; see
        [SelfAttention.forward][manifold_align.models.transformer.SelfAttention.forward] for the
        mask."""
        if self.norm == "post":
            x = self.ln_1(x + self.attn(x, attn_mask=attn_mask, is_causal=is_causal))
            return self.ln_2(x + self.mlp(x))
        x = x + self.attn(self.ln_1(x), attn_mask=attn_mask, is_causal=is_causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of ``layers`` [ResidualBlock][manifold_align.models.transformer.ResidualBlock] s of width ``width``.

    Args:
        width: model width ``W``.
        layers: number of blocks.
        heads: attention heads per block; must divide ``width``.
        grad_checkpointing: recompute each block's activations in the backward pass
            (``torch.utils.checkpoint``, ``use_reentrant=False``) instead of storing them.
            The gradients are the same; memory drops to one block's activations, at the cost
            of a second forward per block. Toggle later with `grad_checkpointing`.
        activation: the MLP activation, ``"gelu"`` or ``"quick_gelu"``.
        norm: ``"pre"`` (CLIP's blocks) or ``"post"`` (BERT's; see the module docstring).

    Raises:
        ValueError: if a size is not positive, ``heads`` does not divide ``width``, or the
            activation or norm placement is unknown.
    """

    def __init__(
        self,
        width: int,
        layers: int,
        heads: int,
        grad_checkpointing: bool = False,
        activation: str = "gelu",
        norm: str = "pre",
    ) -> None:
        super().__init__()
        if layers <= 0:
            raise ValueError(f"layers: expected a positive integer, got {layers}")
        self.width = width
        self.layers = layers
        self.grad_checkpointing = grad_checkpointing
        self.activation = activation
        self.norm = norm
        self.blocks = nn.ModuleList(
            ResidualBlock(width, heads, activation, norm) for _ in range(layers)
        )
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """CLIP's initialisation (see the module docstring); biases zero, norms ``(1, 0)``."""
        attn_std = self.width**-0.5
        proj_std = self.width**-0.5 * (2 * self.layers) ** -0.5
        fc_std = (2 * self.width) ** -0.5
        for block in self.blocks:
            nn.init.normal_(block.attn.in_proj.weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
            for lin in (block.attn.in_proj, block.attn.out_proj, block.mlp.c_fc, block.mlp.c_proj):
                nn.init.zeros_(lin.bias)
            for ln in (block.ln_1, block.ln_2):
                nn.init.ones_(ln.weight)
                nn.init.zeros_(ln.bias)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """``(B, L, W) -> (B, L, W)``.

        Args:
            x: token features ``(B, L, W)``.
            attn_mask: optional boolean mask broadcastable to ``(B, heads, L, L)``,
                ``True`` = may attend.
            is_causal: apply the causal mask (position ``i`` sees ``j <= i``).

        Raises:
            ValueError: if ``x`` is not ``(B, L, width)`` or both masks are given.
        """
        if x.dim() != 3 or x.shape[-1] != self.width:
            raise ValueError(f"x: expected shape (B, L, {self.width}), got {tuple(x.shape)}")
        if is_causal and attn_mask is not None:
            raise ValueError("attn_mask: give either attn_mask or is_causal=True, not both")
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, attn_mask, is_causal, use_reentrant=False)
            else:
                x = block(x, attn_mask, is_causal)
        return x
