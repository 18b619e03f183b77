"""Text transformer with ``k`` output tokens: CLIP's causal form or the release's bidirectional one.

Input: token ids ``(B, L)``, ``L <= context_length``, from a byte-pair tokenizer whose
first token is the start-of-text (SOT) token and whose caption ends with an end-of-text
(EOT) token, padded after it.

``k = 1`` (CLIP's pooling). Token embedding plus positional embedding, the transformer
with the causal mask (position ``i`` sees ``j <= i``), ``ln_final``, and the output *at the
EOT position* ``e``:

$$z = \\mathrm{LN_{final}}(\\mathrm{T_{causal}}(E_{tok}[t] + E_{pos}))_{e} \\in \\mathbb{R}^{B \\times 1 \\times W_t}.$$

``e`` is the first position holding ``eot_id`` when ``eot_id`` is given (the last position
``L - 1`` if a row has none, i.e. a caption truncated without EOT); with ``eot_id=None`` it is
``argmax`` of the ids, CLIP's convention, right only when EOT has the largest id of the
vocabulary (OpenAI's tokenizer: 49407). A tokenizer trained by `manifold_align.data`
gives its special tokens small ids, so pass its ``eot_id``.

``k > 1`` (the multi-token form of CLIP's causal tower; the paper's release differs, below).
The first token (SOT) is repeated to ``k`` copies that differ only by their positional
embedding, so the sequence is ``[sot_1, ..., sot_k, t_2, ..., t_L]`` of length
``S = L + k - 1`` and the positional embedding has ``context_length + k - 1`` rows. The
outputs are the first ``k`` positions after ``ln_final``: ``(B, k, W_t)``. The mask keeps the
caption causal but lets the ``k`` leading summary rows read the whole caption up to and
including its EOT:

$$\\mathrm{may\\_attend}(i, j) = (j \\le i) \\lor (i < k \\land j \\le e + k - 1).$$

Under a purely causal mask the first ``k`` outputs would see nothing but SOT copies and
would not depend on the caption at all. The caption rows keep CLIP's causal mask; from the
second layer on they can read the summary rows, which by then carry the whole caption, but
only the first ``k`` outputs are ever read, so this changes no output's meaning. Positions
after EOT (padding) reach no output, so no ``pad_id`` is needed.

**The paper's released text tower** (``mask="padding"``, ``norm="post"``,
``embed_norm=True``; the ``-release`` configs of [manifold_align.models.registry][manifold_align.models.registry]) is a
BERT-style encoder instead: the same ``k`` copies of the first token (``[CLS]``), a layer
norm ``ln_embedding`` after token plus positional embedding, post-norm blocks (see
[manifold_align.models.transformer][manifold_align.models.transformer]), and a key-padding mask only, so every position
reads every real token (up to and including EOT, ``[SEP]``) in both directions:

$$\\mathrm{may\\_attend}(i, j) = j \\le e + k - 1,$$

then ``ln_final`` and the first ``k`` outputs. With ``k = 1`` the release's sphere baseline
reads position 0 (``pool="first"``, the ``[CLS]`` output) rather than the EOT output.
"""

from __future__ import annotations

import torch
from torch import nn

from manifold_align.models.transformer import Transformer

__all__ = ["MASKS", "POOLS", "TextTransformer"]

MASKS = ("causal", "padding")
"""Text attention masks: CLIP's causal one (with the summary rows for ``k > 1``) or the
release's key-padding mask alone (bidirectional)."""
POOLS = ("eot", "first")
"""Which output a ``k = 1`` text tower returns: at EOT (CLIP) or at position 0 (``[CLS]``)."""


class TextTransformer(nn.Module):
    """Text tower emitting ``k`` token outputs ``(B, k, W_t)``.

    Args:
        vocab_size: number of token ids ``V``.
        context_length: the longest token sequence ``L`` accepted.
        width: token width ``W_t``.
        layers: number of transformer blocks.
        heads: attention heads; must divide ``width``.
        tokens: number of output tokens ``k``.
        eot_id: id of the end-of-text token; ``None`` takes the argmax of the ids (CLIP).
        activation: the MLP activation, ``"gelu"`` or ``"quick_gelu"`` (OpenAI's weights).
        grad_checkpointing: per-block activation checkpointing.
        mask: ``"causal"`` (CLIP) or ``"padding"`` (key-padding only, bidirectional).
        norm: block norm placement, ``"pre"`` (CLIP) or ``"post"`` (BERT, the release).
        embed_norm: a layer norm ``ln_embedding`` after token plus positional embedding.
        pool: for ``k = 1``, the output at EOT (``"eot"``) or at position 0 (``"first"``);
            ``k > 1`` always returns the first ``k``.

    Parameters: ``V W_t + (L + k - 1) W_t + L_layers (12 W_t^2 + 13 W_t) + 2 W_t``, plus
    ``2 W_t`` with ``embed_norm``.

    Raises:
        ValueError: if a size is not positive, ``heads`` does not divide ``width``,
            ``eot_id`` is outside ``[0, vocab_size)``, or ``mask``, ``norm`` or ``pool`` is
            not one of its names.
    """

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        width: int,
        layers: int,
        heads: int,
        tokens: int = 1,
        eot_id: int | None = None,
        grad_checkpointing: bool = False,
        activation: str = "gelu",
        mask: str = "causal",
        norm: str = "pre",
        embed_norm: bool = False,
        pool: str = "eot",
    ) -> None:
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"mask: expected one of {MASKS}, got {mask!r}")
        if pool not in POOLS:
            raise ValueError(f"pool: expected one of {POOLS}, got {pool!r}")
        for name, value in (
            ("vocab_size", vocab_size),
            ("context_length", context_length),
            ("width", width),
            ("tokens", tokens),
        ):
            if value <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {value}")
        if eot_id is not None and not 0 <= eot_id < vocab_size:
            raise ValueError(f"eot_id: expected an id in [0, {vocab_size}), got {eot_id}")
        self.vocab_size = vocab_size
        self.context_length = context_length
        self.width = width
        self.tokens = tokens
        self.eot_id = eot_id
        self.mask = mask
        self.pool = pool

        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length + tokens - 1, width))
        # created only when asked for, so CLIP-style towers keep their parameter names
        self.ln_embedding = nn.LayerNorm(width) if embed_norm else None
        self.transformer = Transformer(width, layers, heads, grad_checkpointing, activation, norm)
        self.ln_final = nn.LayerNorm(width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.dim() != 2:
            raise ValueError(
                f"tokens: expected shape (B, L) with L <= {self.context_length}, "
                f"got {tuple(tokens.shape)}"
            )
        if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise TypeError(f"tokens: expected an integer tensor of ids, got {tokens.dtype}")
        n = tokens.shape[1]
        if not 1 <= n <= self.context_length:
            raise ValueError(
                f"tokens: length {n} is outside [1, context_length={self.context_length}] "
                f"(shape {tuple(tokens.shape)})"
            )
        if tokens.numel():
            low, high = torch.aminmax(tokens)
            if low < 0 or high >= self.vocab_size:
                raise ValueError(
                    f"tokens: ids must lie in [0, vocab_size={self.vocab_size}), "
                    f"got min {int(low)} and max {int(high)}"
                )

    def eot_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """Index ``e`` of the EOT token in each row of ``tokens (B, L)``, shape ``(B,)``.

        First occurrence of ``eot_id``, or ``L - 1`` when a row has none; with
        ``eot_id=None``, ``argmax`` of the ids.
        """
        if self.eot_id is None:
            return tokens.argmax(dim=-1)
        is_eot = tokens == self.eot_id
        first = is_eot.to(torch.int32).argmax(dim=-1)
        return torch.where(is_eot.any(dim=-1), first, torch.full_like(first, tokens.shape[1] - 1))

    def _summary_mask(self, eot: torch.Tensor, length: int) -> torch.Tensor:
        """Boolean ``(B, 1, S, S)`` mask for ``k > 1``: causal, plus summary rows see to EOT."""
        pos = torch.arange(length, device=eot.device)
        causal = pos[None, :] <= pos[:, None]  # (S, S): j <= i
        summary_row = (pos < self.tokens)[None, :, None]  # (1, S, 1)
        within = pos[None, None, :] <= (eot + self.tokens - 1)[:, None, None]  # (B, 1, S)
        return (causal[None] | (summary_row & within))[:, None]

    def _padding_mask(self, eot: torch.Tensor, length: int) -> torch.Tensor:
        """Boolean key-padding mask ``(B, 1, 1, S)``: every row sees keys ``j <= e + k - 1``."""
        pos = torch.arange(length, device=eot.device)
        return (pos[None, :] <= (eot + self.tokens - 1)[:, None])[:, None, None]

    def forward_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """All transformer outputs before ``ln_final``.

        Args:
            tokens: ids ``(B, L)``, integer, ``1 <= L <= context_length``.

        Returns:
            ``(B, L + k - 1, W_t)``; for ``k > 1`` the first ``k`` rows are the summary
            tokens (SOT copies), the rest the caption tokens ``t_2 .. t_L``.

        Raises:
            ValueError: on a wrong rank, a length beyond ``context_length`` or ids outside
                ``[0, vocab_size)``. TypeError: for a non-integer tensor.
        """
        self._check_tokens(tokens)
        x = self.token_embedding(tokens)  # (B, L, W)
        if self.tokens > 1:
            x = torch.cat([x[:, :1].expand(-1, self.tokens, -1), x[:, 1:]], dim=1)
        x = x + self.positional_embedding[: x.shape[1]]
        if self.ln_embedding is not None:
            x = self.ln_embedding(x)
        if self.mask == "padding":
            padding = self._padding_mask(self.eot_positions(tokens), x.shape[1])
            return self.transformer(x, attn_mask=padding)
        if self.tokens == 1:
            return self.transformer(x, is_causal=True)
        mask = self._summary_mask(self.eot_positions(tokens), x.shape[1])
        return self.transformer(x, attn_mask=mask)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, L) -> (B, k, W_t)``: the EOT (or, ``pool="first"``, position-0) output for
        ``k = 1``, the first ``k`` outputs for ``k > 1``."""
        x = self.forward_features(tokens)
        if self.tokens == 1 and self.pool == "eot":
            eot = self.eot_positions(tokens)
            x = x[torch.arange(x.shape[0], device=x.device), eot][:, None]
        else:
            x = x[:, : self.tokens]
        return self.ln_final(x)
