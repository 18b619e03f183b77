"""Parameter groups: AdamW for Euclidean weights, Riemannian Adam for manifold parameters.

Every parameter lands in exactly one group:

* ``decay``: Euclidean matrices (linear and convolution weights, projections), AdamW with
  decoupled weight decay $\\theta \\leftarrow \\theta - \\eta \\lambda \\theta$;
* ``no_decay``: norms' gains and biases, embeddings (token, positional, class tokens) and
  the temperature, AdamW without weight decay (decaying them only shrinks what the model
  must learn back);
* ``manifold``: every ``geoopt.ManifoldParameter``, updated by
  [manifold_align.optim.RiemannianAdam][manifold_align.optim.radam.RiemannianAdam] with its manifold carried by the parameter
  group (so it survives a reload that drops the tensor's tag).

``lr_scale`` (``{glob: factor}``, ``fnmatch`` over parameter names) splits each group further
by rate: a parameter's base rate is ``factor x lr`` for the first glob that matches its name
(fine-tuning: e.g. ``{"vision.transformer.*": 0.1, "text.transformer.*": 0.1}`` lets new
tokens and heads move faster than pretrained blocks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

import geoopt
import torch
from torch import nn

__all__ = ["ParamSplit", "build_optimizers", "split_parameters"]

_NORMS = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._BatchNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


@dataclass
class ParamSplit:
    """Names and tensors of each group (names are ``model.named_parameters()`` names)."""

    decay: list[tuple[str, nn.Parameter]]
    no_decay: list[tuple[str, nn.Parameter]]
    manifold: list[tuple[str, geoopt.ManifoldParameter]]


def _exempt(qualified: str, module: nn.Module, p: nn.Parameter) -> bool:
    lowered = qualified.lower()
    return (
        p.ndim < 2
        or isinstance(module, (nn.Embedding, *_NORMS))
        or "embedding" in lowered
        or "temperature" in lowered
        or "logit_scale" in lowered
    )


def split_parameters(model: nn.Module) -> ParamSplit:
    """Assign each trainable parameter of ``model`` to ``decay``, ``no_decay`` or ``manifold``.

    A parameter shared by several modules is assigned once, at its first name.
    """
    split = ParamSplit([], [], [])
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            name = f"{mod_name}.{p_name}" if mod_name else p_name
            if isinstance(p, geoopt.ManifoldParameter) and not isinstance(
                p.manifold, geoopt.Euclidean
            ):
                split.manifold.append((name, p))
            elif _exempt(name, module, p):
                split.no_decay.append((name, p))
            else:
                split.decay.append((name, p))
    return split


def build_optimizers(
    model: nn.Module,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.98),
    eps: float = 1e-6,
    weight_decay: float = 0.2,
    riemannian_lr: float | None = None,
    riemannian_betas: tuple[float, float] | None = None,
    lr_scale: Mapping[str, float] | None = None,
) -> dict[str, torch.optim.Optimizer]:
    """The run's optimizers, by name: ``"adamw"`` and, if the model has any, ``"riemannian"``.

    Each group's ``initial_lr`` records its base rate; the trainer multiplies it by the
    schedule's factor at every step.

    Args:
        model: the model whose trainable parameters are optimized.
        lr: AdamW's base learning rate.
        betas: AdamW's moment decay rates.
        eps: the denominator's epsilon (both optimizers).
        weight_decay: decoupled weight decay of the ``decay`` group (the others get none).
        riemannian_lr: Riemannian Adam's base rate; ``None`` takes ``lr``.
        riemannian_betas: Riemannian Adam's moment decay rates; ``None`` takes ``betas``.
        lr_scale: ``{glob: factor}``; a parameter whose name the first matching glob names
            gets ``factor x`` its optimizer's base rate (``0``: no update); others ``1 x``.

    Raises:
        ValueError: for a negative rate, factor or weight decay, betas outside ``[0, 1)``, a
            model without trainable parameters, or an ``lr_scale`` glob that matches no
            trainable parameter (named).
    """
    if lr < 0:
        raise ValueError(f"lr: expected >= 0, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay: expected >= 0, got {weight_decay}")
    for name, b in (("betas", betas), ("riemannian_betas", riemannian_betas)):
        if b is not None and not all(0.0 <= x < 1.0 for x in b):
            raise ValueError(f"{name}: expected two numbers in [0, 1), got {tuple(b)}")
    split = split_parameters(model)
    if not (split.decay or split.no_decay or split.manifold):
        raise ValueError("model: has no trainable parameters")
    factor = _lr_factors(split, lr_scale or {})
    optimizers: dict[str, torch.optim.Optimizer] = {}
    groups = []
    for members, decay in ((split.decay, weight_decay), (split.no_decay, 0.0)):
        by_factor: dict[float, list[nn.Parameter]] = {}
        for name, p in members:
            by_factor.setdefault(factor[name], []).append(p)
        groups += [{"params": ps, "weight_decay": decay, "initial_lr": lr * f}
                   for f, ps in by_factor.items()]
    if groups:
        optimizers["adamw"] = torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps)
    if split.manifold:
        from manifold_align.optim import RiemannianAdam

        r_lr = lr if riemannian_lr is None else riemannian_lr
        if r_lr < 0:
            raise ValueError(f"riemannian_lr: expected >= 0, got {r_lr}")
        r_betas = tuple(betas if riemannian_betas is None else riemannian_betas)
        by_manifold: dict[tuple[int, float], dict] = {}
        for name, p in split.manifold:
            group = by_manifold.setdefault(
                (id(p.manifold), factor[name]),
                {"params": [], "manifold": p.manifold, "initial_lr": r_lr * factor[name]},
            )
            group["params"].append(p)
        optimizers["riemannian"] = RiemannianAdam(
            list(by_manifold.values()), lr=r_lr, betas=r_betas, eps=eps, weight_decay=0.0
        )
    return optimizers


def _lr_factors(split: ParamSplit, lr_scale: Mapping[str, float]) -> dict[str, float]:
    """``{parameter name: factor}``: the first glob of ``lr_scale`` matching it, else ``1``."""
    for pattern, f in lr_scale.items():
        if not (math.isfinite(f) and f >= 0):
            raise ValueError(f"lr_scale[{pattern!r}]: expected a factor >= 0, got {f}")
    names = [n for n, _ in split.decay + split.no_decay + split.manifold]
    used: set[str] = set()
    factors = {}
    for name in names:
        pattern = next((g for g in lr_scale if fnmatchcase(name, g)), None)
        factors[name] = 1.0 if pattern is None else float(lr_scale[pattern])
        if pattern is not None:
            used.add(pattern)
    unused = [g for g in lr_scale if g not in used]
    if unused:
        raise ValueError(
            f"lr_scale: {unused[0]!r} matches no trainable parameter (names look like "
            f"{names[0]!r}; a glob that an earlier one covers also counts as unused)"
        )
    return factors
