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

__all__ = [
    "ZeroShotCounts",
    "build_classifier",
    "build_classifier_from_prompts",
    "classify",
    "fill_templates",
]


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
    prompts made by [fill_templates][manifold_align.evaluate.zeroshot.fill_templates]. See [build_classifier_from_prompts][manifold_align.evaluate.zeroshot.build_classifier_from_prompts].

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
        ``(C, *point_shape)`` (see [build_classifier_from_prompts][manifold_align.evaluate.zeroshot.build_classifier_from_prompts]).

    Raises:
        ValueError: bad names/templates (see [fill_templates][manifold_align.evaluate.zeroshot.fill_templates]) or as
            [build_classifier_from_prompts][manifold_align.evaluate.zeroshot.build_classifier_from_prompts].
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
    the model in eval mode first ([manifold_align.evaluate.encode.evaluating][manifold_align.evaluate.encode.evaluating]). Classes
    may have different numbers of prompts. A class is averaged as soon as its last prompt is
    encoded, so at most ``batch_size + max_c T_c`` prompt points are held besides the
    ``(C, *point_shape)`` result.

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
    owner = [c for c, group in enumerate(groups) for _ in group]
    ps = tuple(manifold.point_shape)
    classes: list[torch.Tensor] = []
    pending: list[torch.Tensor] = []  # points of the classes not yet complete, in order
    done = 0  # classes reduced so far
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
            pending.append(out.to(torch.promote_types(out.dtype, torch.float32)))
            end = start + len(batch)
            # classes whose last prompt is in this batch are complete: reduce them now, so only
            # (batch + one class's prompts) points are ever held
            last = owner[end - 1] + (1 if end == len(flat) or owner[end] != owner[end - 1] else 0)
            if last > done:
                points = torch.cat(pending)
                used = sum(len(groups[c]) for c in range(done, last))
                classes.append(_class_means(points[:used], groups[done:last], manifold, karcher))
                pending = [points[used:]] if used < points.shape[0] else []
                done = last
    return torch.cat(classes)


def _class_means(
    points: torch.Tensor, groups: list[list[str]], manifold: ContrastiveManifold, karcher: bool
) -> torch.Tensor:
    """``manifold.mean`` of each consecutive group's points: ``(len(groups), *point_shape)``."""
    sizes = {len(g) for g in groups}
    if len(sizes) == 1:
        per_class = points.reshape(len(groups), sizes.pop(), *points.shape[1:])
        return manifold.mean(per_class, dim=1, karcher=karcher)
    parts = points.split([len(g) for g in groups])
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
        class_points: ``(C, *point_shape)``, e.g. from [build_classifier][manifold_align.evaluate.zeroshot.build_classifier].
        manifold: the embedding manifold.
        labels: ``(N,)`` integer class indices in ``[0, C)``.
        ks: cut-offs; each is capped at ``C`` and named by its capped value.
        chunk_size: images per block (memory ``chunk_size x C``).

    Returns:
        ``{"top{k}": float, "chance_top{k}": k / C, ...}`` for each capped ``k``, plus
        ``"num_classes"``, ``"num_images"``, ``"per_class_top1"`` (a list of ``C``
        accuracies, ``None`` for a class without images) and ``"mean_per_class_recall"``
        (their mean over classes with images; see [ZeroShotCounts][manifold_align.evaluate.zeroshot.ZeroShotCounts]).

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

    counts = ZeroShotCounts(c, ks, device=image_points.device)
    with torch.no_grad():
        for start in range(0, n, chunk_size):
            sim = manifold.similarity(image_points[start : start + chunk_size], class_points)
            counts.add(sim, labels[start : start + chunk_size])
    return counts.result()


class ZeroShotCounts:
    """Running counts of zero-shot hits, so images can be scored a chunk at a time.

    For each image ``i`` with label ``y_i`` and similarities ``s_i`` to the ``C`` classes,
    $\\operatorname{rank}_i = \\#\\{c : s_{ic} > s_{iy_i}\\} + \\#\\{c < y_i : s_{ic} = s_{iy_i}\\}$
    (ties to the lower class index). Kept: hits ``#{i : rank_i < k}`` per cut-off ``k``, and per
    class ``n_c`` (images) and ``h_c`` (top-1 hits). Then
    $\\mathrm{acc@}k = \\#\\{i: \\operatorname{rank}_i < k\\} / N$ and the mean per-class recall
    $\\frac{1}{|\\{c: n_c > 0\\}|}\\sum_{c: n_c > 0} h_c / n_c$ (classes without images left
    out, as scikit-learn's balanced accuracy). Memory: ``O(C)``; [add][manifold_align.evaluate.zeroshot.ZeroShotCounts.add] holds
    ``(n, C)`` similarities and masks of one chunk. Counts of several processes add up
    (`state`, [from_state][manifold_align.evaluate.zeroshot.ZeroShotCounts.from_state]).

    Args:
        num_classes: ``C``.
        ks: cut-offs, each capped at ``C``.
        device: where the counts live (the similarities' device).

    Raises:
        ValueError: bad ``ks`` or ``num_classes < 1``.
    """

    def __init__(self, num_classes: int, ks: Sequence[int] = (1, 5), device: torch.device | str = "cpu") -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ks = tuple(sorted({min(k, num_classes) for k in check_ks(ks)}))
        self.device = torch.device(device)
        #: one row: hits per k, then n_c, then h_c (int64, so ranks can all-reduce one tensor)
        self.state = torch.zeros(len(self.ks) + 2 * num_classes, dtype=torch.long, device=self.device)

    def add(self, sim: torch.Tensor, labels: torch.Tensor) -> None:
        """Count a chunk: ``sim (n, C)`` similarities, ``labels (n,)`` in ``[0, C)``."""
        labels = labels.to(device=sim.device, dtype=torch.long)
        y = labels[:, None]
        true = sim.gather(1, y)
        ahead = (sim > true).sum(dim=1)
        ahead += ((sim == true) & (torch.arange(sim.shape[1], device=sim.device) < y)).sum(dim=1)
        self.add_ranks(ahead, labels)

    def add_ranks(self, rank: torch.Tensor, labels: torch.Tensor) -> None:
        """Count images whose true class has rank ``rank (n,)`` (0 = top-1)."""
        rank, labels = rank.to(self.device), labels.to(self.device, torch.long)
        k = len(self.ks)
        c = self.num_classes
        self.state[:k] += torch.stack([(rank < kk).sum() for kk in self.ks])
        self.state[k : k + c] += torch.bincount(labels, minlength=c)
        self.state[k + c :] += torch.bincount(labels[rank == 0], minlength=c)

    @classmethod
    def from_state(cls, num_classes: int, ks: Sequence[int], state: torch.Tensor) -> ZeroShotCounts:
        """Counts with the given `state` (e.g. summed over ranks)."""
        out = cls(num_classes, ks, device=state.device)
        out.state = state.clone()
        return out

    def result(self) -> dict[str, float | int | list]:
        """``{"top{k}", "chance_top{k}", "mean_per_class_recall", "per_class_top1",
        "num_classes", "num_images"}``; accuracies are ``nan`` when no image was counted."""
        k = len(self.ks)
        c = self.num_classes
        state = self.state.cpu()
        n_c, h_c = state[k : k + c], state[k + c :]
        n = int(n_c.sum())
        out: dict[str, float | int | list] = {}
        for i, kk in enumerate(self.ks):
            out[f"top{kk}"] = int(state[i]) / n if n else float("nan")
            out[f"chance_top{kk}"] = kk / c
        seen = n_c > 0
        per_class = [int(h) / int(m) if m else None for h, m in zip(h_c.tolist(), n_c.tolist())]
        out["mean_per_class_recall"] = (
            (h_c[seen].double() / n_c[seen].double()).mean().item() if n else float("nan")
        )
        out["per_class_top1"] = per_class
        out["num_classes"] = c
        out["num_images"] = n
        return out
