"""Zero-shot classification: prompt ensembles averaged on the manifold, top-k accuracy.

A class $c$ with name $n_c$ and prompt templates $t_1, \\dots, t_T$ ("a photo of a {}.")
becomes one point on the embedding manifold,

$$w_c = \\operatorname{mean}_{\\mathcal M}\\big(f_{\\text{text}}(t_1(n_c)), \\dots,
f_{\\text{text}}(t_T(n_c))\\big),$$

where $\\operatorname{mean}_{\\mathcal M}$ is ``manifold.mean``: the Euclidean mean projected
back onto the manifold (for ``Oblique`` each token is normalised on its own), or with
``karcher=True`` the Riemannian (Karcher) mean. An image $x$ is then assigned the classes in
decreasing order of $s(x, w_c)$ = ``manifold.similarity``; **ties go to the lower class
index**. Top-$k$ accuracy is

$$\\mathrm{acc@}k = \\frac{1}{N}\\sum_i \\mathbb{1}\\big[\\operatorname{rank}_i(y_i) < k\\big],
\\qquad \\operatorname{rank}_i(y) = \\#\\{c : s_{ic} > s_{iy}\\} + \\#\\{c < y : s_{ic} = s_{iy}\\},$$

with $k$ capped at the number of classes $C$; chance level is $k / C$.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from manifold_align.evaluate.retrieval import check_ks
from manifold_align.manifolds import ContrastiveManifold

__all__ = ["build_classifier", "build_classifier_from_prompts", "classify", "fill_templates"]


def fill_templates(class_names: Sequence[str], templates: Sequence[str]) -> list[str]:
    """All prompts, class-major: ``[t.format(name) for name in class_names for t in templates]``.

    A template holds exactly one ``{}`` placeholder for the class name.

    Raises:
        ValueError: if ``class_names`` or ``templates`` is empty, a class name repeats or is not
            a non-empty string, or a template lacks a single ``{}`` placeholder.
    """
    names = list(class_names)
    temps = list(templates)
    if not names:
        raise ValueError("class_names: expected at least one class name, got none")
    if not temps:
        raise ValueError("templates: expected at least one prompt template, got none")
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"class_names: expected non-empty strings, got {name!r}")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"class_names: {name!r} appears more than once")
        seen.add(name)
    for t in temps:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(
                f"templates: each template needs exactly one '{{}}' placeholder for the class "
                f"name, got {t!r}"
            )
    return [t.replace("{}", name) for name in names for t in temps]


def build_classifier(
    encode_text: Callable[[torch.Tensor], torch.Tensor],
    tokenize: Callable[[list[str]], torch.Tensor],
    class_names: Sequence[str],
    templates: Sequence[str],
    manifold: ContrastiveManifold,
    *,
    karcher: bool = False,
    batch_size: int = 256,
) -> torch.Tensor:
    """One manifold point per class: the manifold mean of its prompts' text embeddings.

    $w_c = \\operatorname{mean}_{\\mathcal M}\\{f(t(n_c)) : t \\in \\text{templates}\\}$, the
    prompts made by :func:`fill_templates`. See :func:`build_classifier_from_prompts`.

    Args:
        encode_text: token ids ``(B, L)`` -> points ``(B, *point_shape)``, e.g.
            ``model.encode_text``.
        tokenize: a list of ``B`` strings -> token ids ``(B, L)`` (a LongTensor).
        class_names: ``C`` distinct names.
        templates: ``T`` templates, each with one ``{}`` for the name.
        manifold: the embedding manifold; its ``mean`` averages the ``T`` prompt points.
        karcher: use the Riemannian (Karcher) mean instead of the projected Euclidean one.
        batch_size: prompts per forward pass.

    Returns:
        ``(C, *point_shape)`` (see :func:`build_classifier_from_prompts`).

    Raises:
        ValueError: bad names/templates (see :func:`fill_templates`) or as
            :func:`build_classifier_from_prompts`.
    """
    prompts = fill_templates(class_names, templates)
    t = len(templates)
    grouped = [prompts[c * t : (c + 1) * t] for c in range(len(class_names))]
    return build_classifier_from_prompts(
        encode_text, tokenize, grouped, manifold, karcher=karcher, batch_size=batch_size
    )


def build_classifier_from_prompts(
    encode_text: Callable[[torch.Tensor], torch.Tensor],
    tokenize: Callable[[list[str]], torch.Tensor],
    prompts: Sequence[Sequence[str]],
    manifold: ContrastiveManifold,
    *,
    karcher: bool = False,
    batch_size: int = 256,
) -> torch.Tensor:
    """Class points from ready-made prompts: ``prompts[c]`` are class ``c``'s ``T_c`` prompts.

    $w_c = \\operatorname{mean}_{\\mathcal M}\\{f(p) : p \\in \\text{prompts}[c]\\}$. All
    prompts are tokenized and encoded ``batch_size`` at a time under ``torch.no_grad``; put
    the model in eval mode first (:func:`manifold_align.evaluate.encode.evaluating`). Classes
    may have different numbers of prompts.

    Args:
        encode_text: token ids ``(B, L)`` -> points ``(B, *point_shape)``.
        tokenize: a list of ``B`` strings -> token ids ``(B, L)``.
        prompts: ``C`` non-empty lists of strings.
        manifold: the embedding manifold (its ``mean``).
        karcher: use the Riemannian (Karcher) mean instead of the projected Euclidean one.
        batch_size: prompts per forward pass.

    Returns:
        ``(C, *point_shape)``, float32 (float64 if the encoder gives float64), on the
        encoder's output device.

    Raises:
        ValueError: no classes, a class without prompts or a prompt that is not a string, a
            non-positive ``batch_size``, or an encoder output that is not
            ``(B, *point_shape)`` or holds NaN/Inf.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    groups = [list(g) for g in prompts]
    if not groups:
        raise ValueError("prompts: expected at least one class, got none")
    for c, group in enumerate(groups):
        if not group or not all(isinstance(p, str) for p in group):
            raise ValueError(f"prompts[{c}]: expected a non-empty list of strings, got {group!r}")
    flat = [p for group in groups for p in group]
    ps = tuple(manifold.point_shape)
    points = []
    with torch.no_grad():
        for start in range(0, len(flat), batch_size):
            batch = flat[start : start + batch_size]
            out = encode_text(tokenize(batch))
            if tuple(out.shape) != (len(batch), *ps):
                raise ValueError(
                    f"encode_text: expected points of shape ({len(batch)}, "
                    f"{', '.join(map(str, ps))}) for {manifold!r}, got {tuple(out.shape)}"
                )
            if not torch.isfinite(out).all():
                raise ValueError(f"encode_text: NaN or Inf in the embeddings of {batch[:3]}...")
            points.append(out.to(torch.promote_types(out.dtype, torch.float32)))
        stacked = torch.cat(points)
        sizes = {len(g) for g in groups}
        if len(sizes) == 1:
            per_class = stacked.reshape(len(groups), sizes.pop(), *ps)
            return manifold.mean(per_class, dim=1, karcher=karcher)
        parts = stacked.split([len(g) for g in groups])
        return torch.stack([manifold.mean(part, dim=0, karcher=karcher) for part in parts])


def classify(
    image_points: torch.Tensor,
    class_points: torch.Tensor,
    manifold: ContrastiveManifold,
    labels: torch.Tensor,
    ks: Sequence[int] = (1, 5),
    *,
    chunk_size: int = 4096,
) -> dict[str, float | int | list]:
    """Top-k zero-shot accuracy of images against class points.

    $\\mathrm{acc@}k = \\frac1N \\sum_i \\mathbb 1[\\operatorname{rank}_i(y_i) < k]$ with
    $s_{ic} = s(x_i, w_c)$ and ties to the lower class index (see the module docstring).

    Args:
        image_points: ``(N, *point_shape)``.
        class_points: ``(C, *point_shape)``, e.g. from :func:`build_classifier`.
        manifold: the embedding manifold.
        labels: ``(N,)`` integer class indices in ``[0, C)``.
        ks: cut-offs; each is capped at ``C`` and named by its capped value.
        chunk_size: images per block (memory ``chunk_size x C``).

    Returns:
        ``{"top{k}": float, "chance_top{k}": k / C, ...}`` for each capped ``k``, plus
        ``"num_classes"``, ``"num_images"`` and ``"per_class_top1"`` (a list of ``C``
        accuracies, ``None`` for a class without images).

    Raises:
        ValueError: wrong shapes, non-finite points, labels not integer or out of range, bad
            ``ks`` or ``chunk_size``.
    """
    ks = check_ks(ks)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    ps = tuple(manifold.point_shape)
    for name, t in (("image_points", image_points), ("class_points", class_points)):
        if t.dim() != 1 + len(ps) or tuple(t.shape[1:]) != ps or t.shape[0] == 0:
            raise ValueError(
                f"{name}: expected shape (N >= 1, {', '.join(map(str, ps))}) for {manifold!r}, "
                f"got {tuple(t.shape)}"
            )
        if not torch.isfinite(t).all():
            raise ValueError(f"{name}: holds NaN or infinite values")
    n, c = image_points.shape[0], class_points.shape[0]
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"labels: expected shape ({n},), got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels: expected an integer tensor, got {labels.dtype}")
    labels = labels.long().to(image_points.device)
    if labels.min() < 0 or labels.max() >= c:
        raise ValueError(
            f"labels: expected class indices in [0, {c}), "
            f"got values in [{labels.min().item()}, {labels.max().item()}]"
        )
    dtype = torch.promote_types(image_points.dtype, class_points.dtype)
    image_points = image_points.to(dtype)
    class_points = class_points.to(device=image_points.device, dtype=dtype)

    ranks = []
    class_idx = torch.arange(c, device=image_points.device)
    with torch.no_grad():
        for start in range(0, n, chunk_size):
            sim = manifold.similarity(image_points[start : start + chunk_size], class_points)
            y = labels[start : start + chunk_size, None]
            true = sim.gather(1, y)
            before = (sim > true) | ((sim == true) & (class_idx[None, :] < y))
            ranks.append(before.sum(dim=1))
    rank = torch.cat(ranks)

    out: dict[str, float | int | list] = {}
    for k in sorted({min(k, c) for k in ks}):
        out[f"top{k}"] = (rank < k).double().mean().item()
        out[f"chance_top{k}"] = k / c
    counts = torch.bincount(labels, minlength=c)
    correct = torch.bincount(labels, weights=(rank == 0).double(), minlength=c)
    out["per_class_top1"] = [
        None if counts[j] == 0 else correct[j].item() / counts[j].item() for j in range(c)
    ]
    out["num_classes"] = c
    out["num_images"] = n
    return out
