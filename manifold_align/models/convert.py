"""Turn a pretrained sphere [TwoTower][manifold_align.models.two_tower.TwoTower] (CLIP) into a ``k``-token oblique one.

The source embeds an image as ``u = P z / |P z|`` on ``Sphere(D)`` (``z``: the ViT's one class
token output, ``P``: ``D x W_v``) and a caption as ``v = Q z' / |Q z'|`` (``z'``: the text
tower's output at EOT) and scores a pair by ``s_sph <u, v>``. The target emits ``k`` tokens per
tower, projects each with one shared ``A: d x W`` and scores ``s_obl sum_i <x_i, y_i>`` on
``Oblique(k, d)``. Every transformer block, norm, patch and token embedding is copied; the
new parameters start as follows (see docs/tutorials/pretrained.md for the measurements):

* **Class tokens** (ViT): the ``k`` class embeddings are copies of the pretrained one, and
  their ``k`` positional rows copies of its positional row plus a small seeded perturbation
  ``jitter * rms(E_pos) * N(0, I)``. Identical tokens would stay identical for ever (the
  loss is symmetric in them, so are their gradients); the perturbation breaks that symmetry
  while each token's output stays close to the pretrained class output ``z``. Patch rows are
  copied.
* **Summary tokens** (text): the ``k`` leading copies of the first token (SOT) get positional
  rows that turn them into the pretrained model's pooling token at layer input:
  ``E'_pos[i] = E_tok[eot] - E_tok[sot] + E_pos[p] (+ jitter)``, so each summary row enters
  the transformer as an EOT token at position ``p`` (``eot_position``, a typical caption's
  EOT index) and, like it, reads the whole caption. The caption rows keep their pretrained
  positional rows, shifted by ``k - 1``.
* **Head**: with every token close to the pretrained output, each image token projects to
  ``A z`` with ``A = U^T P`` (text: ``B = U^T Q``), where ``U`` (``D x d``, orthonormal
  columns) spans the top-``d`` eigenvectors of the embeddings' second moment
  ``M = E[u u^T] + E[v v^T]`` (from a calibration batch when given, else from the weights:
  ``M = P diag(g_v^2) P^T / tr + Q diag(g_t^2) Q^T / tr``, ``g``: the final norms' gains). Then
  ``sum_i <x_i, y_i> = k cos(U^T u, U^T v)``, the pretrained cosine restricted to its ``d``
  most used directions.
* **Temperature**: the similarity is ``k`` times a cosine, so ``s_obl = s_sph / k`` keeps
  every logit, capped at the target's ``temperature_max``.

>>> from manifold_align.models import build_model
>>> sphere = build_model("tiny", vocab_size=300, eot_id=1)
>>> oblique = sphere_to_oblique(sphere, "tiny-oblique", sot_id=0)
>>> oblique.manifold
Oblique(tokens=8, dim=16)
"""

from __future__ import annotations

import dataclasses
import math

import torch

from manifold_align.manifolds import Sphere
from manifold_align.models.registry import ModelConfig, build_model, model_config
from manifold_align.models.two_tower import TwoTower

__all__ = ["ARCHITECTURE_FIELDS", "embedding_basis", "sphere_to_oblique"]

#: ModelConfig fields that source and target must share (the towers' shapes, vocabulary and
#: text architecture).
ARCHITECTURE_FIELDS = (
    "vision_width", "vision_layers", "vision_heads", "patch_size", "image_size",
    "text_width", "text_layers", "text_heads", "vocab_size", "context_length", "eot_id",
    "text_mask", "text_norm", "text_embed_norm",
)


def _target_config(source: TwoTower, target: ModelConfig | str) -> ModelConfig:
    """The target config with the source's architecture fields, checked."""
    if not isinstance(source, TwoTower) or source.config is None:
        raise TypeError("source: expected a TwoTower built by build_model (with .config)")
    if not isinstance(source.manifold, Sphere):
        raise ValueError(f"source: expected a sphere model, got manifold {source.manifold!r}")
    cfg = model_config(target) if isinstance(target, str) else target
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"target: expected a model name or ModelConfig, got {type(target).__name__}")
    if cfg.manifold != "oblique":
        raise ValueError(f"target: expected an oblique model config, got manifold {cfg.manifold!r}")
    src = source.config
    # vocabulary and end token follow the source (a registry name carries defaults for them)
    cfg = dataclasses.replace(cfg, vocab_size=src.vocab_size, eot_id=src.eot_id)
    for name in ARCHITECTURE_FIELDS:
        if getattr(cfg, name) != getattr(src, name):
            raise ValueError(
                f"target.{name}: {getattr(cfg, name)!r} differs from the source's "
                f"{getattr(src, name)!r}; only the manifold, tokens and head may change"
            )
    if cfg.token_dim > src.token_dim:
        raise ValueError(
            f"target.token_dim: {cfg.token_dim} exceeds the source's embedding size "
            f"{src.token_dim}; the head keeps d of its D directions"
        )
    return cfg


def embedding_basis(
    source: TwoTower,
    dim: int,
    calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``U (D, dim)``: orthonormal top-``dim`` eigenvectors of the embeddings' second moment.

    ``M = E[u u^T] + E[v v^T]`` over a calibration batch ``(images, tokens)`` of the sphere
    model, else the weights' estimate ``P G_v^2 P^T / tr + Q G_t^2 Q^T / tr`` (``G``: the
    diagonal of the final norm's gain, i.e. an isotropic normalised token output).

    Raises:
        ValueError: if ``dim`` is not in ``[1, D]``.
    """
    embed = source.image_head.dim
    if not 1 <= dim <= embed:
        raise ValueError(f"dim: expected an integer in [1, {embed}], got {dim}")
    if calibration is not None:
        images, tokens = calibration
        was_training = source.training
        source.eval()
        with torch.no_grad():
            u = source.encode_image(images).double()
            v = source.encode_text(tokens).double()
        source.train(was_training)
        moment = u.T @ u / len(u) + v.T @ v / len(v)
    else:
        moment = torch.zeros(embed, embed, dtype=torch.float64)
        for head, norm in ((source.image_head, source.vision.ln_post),
                           (source.text_head, source.text.ln_final)):
            p = head.proj.weight.detach().double().cpu() * norm.weight.detach().double().cpu()
            part = p @ p.T
            moment += part / part.trace()
    _, vectors = torch.linalg.eigh(moment)  # ascending eigenvalues
    return vectors[:, -dim:].flip(-1).float()


@torch.no_grad()
def sphere_to_oblique(
    source: TwoTower,
    target: ModelConfig | str,
    *,
    sot_id: int,
    eot_position: int | None = None,
    jitter: float = 0.1,
    seed: int = 0,
    calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> TwoTower:
    """Build the oblique model ``target`` from the sphere model ``source`` (module docstring).

    Args:
        source: a sphere [TwoTower][manifold_align.models.two_tower.TwoTower] from [build_model][manifold_align.models.registry.build_model] (CLIP layout, ``k = 1``).
        target: an oblique [ModelConfig][manifold_align.models.registry.ModelConfig] or registered name (e.g. ``"tiny-oblique"``);
            its tower fields must equal the source's (vocabulary and ``eot_id`` are taken
            from the source).
        sot_id: the tokenizer's start-of-text id (the text tower repeats it ``k`` times).
        eot_position: ``p``, the EOT index the summary tokens imitate; ``None``: a third of
            the context length (captions are short; the measured choice is in the tutorial).
        jitter: size of the symmetry-breaking perturbation of the new positional rows, as a
            fraction of the positional embeddings' RMS; ``0`` keeps the tokens identical
            (then training can never separate them).
        seed: seeds the perturbation.
        calibration: optional ``(images, tokens)`` of paired data for the head's basis.

    Returns:
        The oblique [TwoTower][manifold_align.models.two_tower.TwoTower] on the source's device and dtype (train mode as the
        source).

    Raises:
        TypeError: a source not built by [build_model][manifold_align.models.registry.build_model], or a bad ``target`` type.
        ValueError: a non-sphere source or non-oblique target, a tower field that differs
            (named), ``token_dim > D``, ``sot_id``/``eot_position`` out of range, or a negative
            ``jitter``.
    """
    cfg = _target_config(source, target)
    src = source.config
    if not 0 <= sot_id < src.vocab_size:
        raise ValueError(f"sot_id: expected an id in [0, {src.vocab_size}), got {sot_id}")
    if eot_position is None:
        eot_position = max(1, src.context_length // 3)
    if not 1 <= eot_position < src.context_length:
        raise ValueError(
            f"eot_position: expected an index in [1, {src.context_length}), got {eot_position}"
        )
    if not (math.isfinite(jitter) and jitter >= 0):
        raise ValueError(f"jitter: expected a finite number >= 0, got {jitter}")
    eot_id = src.vocab_size - 1 if src.eot_id is None else src.eot_id
    k = cfg.tokens
    param = next(source.parameters())
    model = build_model(cfg, device=param.device).to(param.dtype)
    model.train(source.training)
    gen = torch.Generator().manual_seed(seed)

    def noise(rows: int, ref: torch.Tensor) -> torch.Tensor:
        rms = ref.detach().float().pow(2).mean().sqrt()
        return (jitter * rms * torch.randn(rows, ref.shape[-1], generator=gen)).to(ref)

    # towers: everything but the per-token embeddings is shared one for one
    skip = {"vision.class_embedding", "vision.positional_embedding", "text.positional_embedding",
            "image_head.proj.weight", "text_head.proj.weight", "loss.temperature.logit_scale"}
    state = {n: t for n, t in source.state_dict().items() if n not in skip}
    missing, unexpected = model.load_state_dict(state, strict=False)
    left = sorted(set(missing) - skip)
    if left or unexpected:
        raise ValueError(f"source: state does not fit the target; missing {left[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]}")

    sv, tv = source.vision, model.vision
    tv.class_embedding.copy_(sv.class_embedding.expand(k, -1))
    tv.positional_embedding[:k] = sv.positional_embedding[:1] + noise(k, sv.positional_embedding)
    tv.positional_embedding[k:] = sv.positional_embedding[1:]

    st, tt = source.text, model.text
    emb = st.token_embedding.weight
    pooled = emb[eot_id] - emb[sot_id] + st.positional_embedding[eot_position]
    tt.positional_embedding[:k] = pooled + noise(k, st.positional_embedding)
    tt.positional_embedding[k:] = st.positional_embedding[1:]

    basis = embedding_basis(source, cfg.token_dim, calibration).to(param)  # (D, d)
    model.image_head.proj.weight.copy_(basis.T @ source.image_head.proj.weight)
    model.text_head.proj.weight.copy_(basis.T @ source.text_head.proj.weight)

    temperature = model.temperature
    if temperature.mode == "learnable":
        scale = float(source.temperature.scale.detach()) / k
        temperature.logit_scale.fill_(math.log(min(scale, temperature.max)))
    return model
