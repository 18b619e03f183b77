"""CLIP_benchmark as a client: ``clip_benchmark`` evaluates a manifold-align checkpoint.

``clip_benchmark`` (PyPI ``clip-benchmark``, 1.6.x) loads a model through
``clip_benchmark.models.load_clip(model_type, model_name, pretrained, cache_dir, device)``,
which looks the loader up in the table ``TYPE2FUNC[model_type]``; its command line accepts
``--model_type`` from the list ``MODEL_TYPES``. That table is its route for third-party
models: `register` adds `MODEL_TYPE` (``"manifold_align"``) to both, in this
process, and ``python -m manifold_align.cli.clip_benchmark eval ARGS...`` then runs
``clip_benchmark``'s own command line (``ARGS`` are its ``eval`` arguments) with
``--model_type manifold_align``. The installed package is never changed.

What ``clip_benchmark`` gets (`load_for_clip_benchmark`): a model whose
``encode_image`` / ``encode_text`` return the **flattened** manifold points ``(B, k d)``
(``Sphere(d)``: ``k = 1``), the evaluation image transform (resize, centre crop, CLIP
normalisation) and the checkpoint's tokenizer (strings -> ``(B, L)`` ids).

``clip_benchmark`` L2-normalises the flat vector. On ``Oblique(k, d)`` every point has
$\\lVert x \\rVert_F = \\sqrt k$, so

$$\\cos(\\operatorname{vec} X, \\operatorname{vec} Y) = \\tfrac1k \\sum_{i=1}^k
\\langle x_i, y_i \\rangle = s(X, Y) / k,$$

the same ranking as the oblique similarity: retrieval, and zero-shot with one template,
agree exactly. A class embedding from several prompts differs: ``clip_benchmark`` takes
$\\bar m / \\lVert \\bar m \\rVert_F$ ($\\bar m$ the mean of the prompt points), ours the
manifold mean $(\\bar m_i / \\lVert \\bar m_i \\rVert)_{i=1}^k$ (each token normalised);
the two give the same ranking only when all $\\lVert \\bar m_i \\rVert$ are equal. For the
exact oblique classifier, ``eval --manifold-mean`` (or `manifold_classifier` and
``clip_benchmark eval --load_clfs FILE``) hands ``clip_benchmark`` our class points as its
classifier: logits $\\propto s(X, W_c) / \\sqrt k$, our ranking.

This module imports ``clip_benchmark``; nothing in the core imports this module (install
the ``peers`` extra: ``pip install 'manifold-align[peers]'``).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

try:
    import clip_benchmark.cli as cb_cli
    import clip_benchmark.models as cb_models
    from clip_benchmark.datasets.builder import build_dataset
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "manifold_align.cli.clip_benchmark needs the clip_benchmark package: "
        "pip install 'manifold-align[peers]'"
    ) from exc

from manifold_align.data.transforms import ImageTransform
from manifold_align.evaluate.encode import evaluating
from manifold_align.evaluate.zeroshot import build_classifier_from_prompts

__all__ = [
    "MODEL_TYPE",
    "FlatPoints",
    "class_prompts",
    "load_for_clip_benchmark",
    "main",
    "manifold_classifier",
    "register",
]

MODEL_TYPE = "manifold_align"
"""The ``--model_type`` under which `register` puts `load_for_clip_benchmark`."""

AUTO = "auto"
"""``--model auto``: take the model the checkpoint was trained as."""


class FlatPoints(nn.Module):
    """A two-tower model seen as a CLIP: ``encode_image`` / ``encode_text`` give flat points.

    ``encode_image: (B, 3, s, s) -> (B, D)`` and ``encode_text: (B, L) -> (B, D)`` with
    ``D = prod(point_shape)`` (``k d`` on ``Oblique(k, d)``), float32; row ``b`` is
    ``manifold.flatten`` of the point, so ``|row|_2 = sqrt(k)`` on ``Oblique(k, d)`` and 1 on
    ``Sphere(d)``.

    Args:
        model: a model with ``encode_image``, ``encode_text`` and ``manifold``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def manifold(self):
        """The wrapped model's embedding manifold."""
        return self.model.manifold

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, s, s) -> (B, D)`` flattened image points (float32)."""
        return self.manifold.flatten(self.model.encode_image(images).float())

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, L) -> (B, D)`` flattened text points (float32)."""
        return self.manifold.flatten(self.model.encode_text(tokens).float())


def load_for_clip_benchmark(
    model_name: str,
    pretrained: str,
    cache_dir: str | None = None,
    device: str | torch.device = "cpu",
    **_: Any,
) -> tuple[FlatPoints, Callable, Callable[[list[str]], torch.Tensor]]:
    """``clip_benchmark``'s loader contract: ``(model, transform, tokenizer)``.

    Args:
        model_name: the registry name the checkpoint was trained as (e.g. ``"tiny"``), or
            ``"auto"`` to take it from the checkpoint.
        pretrained: a run folder, its ``checkpoints/`` folder, or one ``step_*`` checkpoint.
        cache_dir: unused (nothing is downloaded).
        device: where the model runs.

    Returns:
        `FlatPoints` in eval mode on ``device``, the evaluation transform
        (PIL image -> ``(3, s, s)``) and the checkpoint's tokenizer (strings -> ``(B, L)``).

    Raises:
        CheckpointError: nothing complete at ``pretrained`` or weights that do not fit.
        ValueError: ``model_name`` is neither ``"auto"`` nor the checkpoint's model.
    """
    from manifold_align.train.run import load_trained  # the trainer only when a run is loaded

    model, tokenizer, config = load_trained(pretrained, device=device)
    if model_name not in (AUTO, config.model.name):
        raise ValueError(
            f"model_name: the checkpoint {pretrained} is a {config.model.name!r} model, got "
            f"{model_name!r} (pass --model {config.model.name} or --model {AUTO})"
        )
    wrapped = FlatPoints(model).eval()
    return wrapped, ImageTransform(model.vision.image_size), tokenizer


def register() -> None:
    """Add `MODEL_TYPE` to ``clip_benchmark.models.TYPE2FUNC`` and ``MODEL_TYPES``.

    Idempotent; afterwards ``clip_benchmark.models.load_clip(model_type="manifold_align",
    ...)`` and the command line's ``--model_type manifold_align`` load our checkpoints.
    """
    cb_models.TYPE2FUNC[MODEL_TYPE] = load_for_clip_benchmark
    if MODEL_TYPE not in cb_models.MODEL_TYPES:
        # the same list object the command line's ``choices`` holds
        cb_models.MODEL_TYPES.append(MODEL_TYPE)


def class_prompts(
    classnames: Sequence[str], templates: Sequence[str] | Mapping[str, Sequence[str]]
) -> list[list[str]]:
    """The prompts ``clip_benchmark`` makes: ``[[t.format(c=name) for t in templates] ...]``.

    ``templates`` is a list of strings with a ``{c}`` placeholder, or (class-specific
    prompts, e.g. CuPL) a mapping from class name to its prompts.

    Raises:
        ValueError: no class names, no templates, a class missing from a mapping, or a
            template that is not a string.
    """
    names = list(classnames)
    if not names:
        raise ValueError("classnames: expected at least one class name, got none")
    if isinstance(templates, Mapping):
        missing = [n for n in names if n not in templates]
        if missing:
            raise ValueError(f"templates: no prompts for the classes {missing[:5]}")
        return [list(templates[n]) for n in names]
    temps = list(templates)
    if not temps or not all(isinstance(t, str) for t in temps):
        raise ValueError(f"templates: expected a non-empty list of strings, got {temps[:3]!r}")
    return [[t.format(c=n) for t in temps] for n in names]


def manifold_classifier(
    model: nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    classnames: Sequence[str],
    templates: Sequence[str] | Mapping[str, Sequence[str]],
    *,
    karcher: bool = False,
    batch_size: int = 256,
) -> torch.Tensor:
    """Our class points as ``clip_benchmark``'s classifier matrix ``(D, C)`` (for ``--load_clfs``).

    Column ``c`` is ``flatten(mean_M {f(p) : p in prompts[c]})``, the manifold mean of the
    class's prompt points ([build_classifier_from_prompts][manifold_align.evaluate.zeroshot.build_classifier_from_prompts]),
    prompts as `class_prompts`. ``clip_benchmark`` scores
    ``100 * normalize(vec x) @ W``, which is ``100 s(x, w_c) / sqrt(k)`` on ``Oblique(k, d)``:
    the ranking of our zero-shot classification.

    Args:
        model: a two-tower model or a `FlatPoints` around one.
        tokenizer: strings -> ``(B, L)`` ids.
        classnames: ``C`` names.
        templates: as `class_prompts`.
        karcher: Karcher mean instead of the projected mean.
        batch_size: prompts per forward pass.

    Returns:
        ``(D, C)`` float32 on the model's device.

    Raises:
        ValueError: as `class_prompts` and
            [build_classifier_from_prompts][manifold_align.evaluate.zeroshot.build_classifier_from_prompts].
    """
    inner = model.model if isinstance(model, FlatPoints) else model
    device = next((p.device for p in inner.parameters()), torch.device("cpu"))
    with evaluating(inner):
        points = build_classifier_from_prompts(
            inner.encode_text,
            lambda texts: tokenizer(texts).to(device),
            class_prompts(classnames, templates),
            inner.manifold,
            karcher=karcher,
            batch_size=batch_size,
        )
    return inner.manifold.flatten(points).T.contiguous()


# --- the command ------------------------------------------------------------------------


def _option(argv: Sequence[str], name: str) -> list[str] | None:
    """The values after ``name`` in ``argv`` (up to the next ``--option``), or ``None``."""
    for i, arg in enumerate(argv):
        if arg == name:
            values = []
            for value in argv[i + 1 :]:
                if value.startswith("--"):
                    break
                values.append(value)
            return values
        if arg.startswith(name + "="):
            return [arg.split("=", 1)[1]]
    return None


def _manifold_mean_file(argv: Sequence[str], karcher: bool, folder: str) -> str:
    """Write our classifier for the one dataset and checkpoint named in ``argv``; its path."""
    pretrained = _option(argv, "--pretrained") or []
    datasets = _option(argv, "--dataset") or []
    languages = _option(argv, "--language") or ["en"]
    if len(pretrained) != 1 or len(datasets) != 1 or len(languages) != 1:
        raise ValueError(
            "--manifold-mean: needs exactly one --pretrained, one --dataset and at most one "
            f"--language (the classifier is for one of each), got {len(pretrained)}, "
            f"{len(datasets)} and {len(languages)}"
        )
    model_name = (_option(argv, "--model") or [AUTO])[0]
    root = (_option(argv, "--dataset_root") or ["root"])[0]
    split = (_option(argv, "--split") or _option(argv, "--test_split") or ["test"])[0]
    language = languages[0]
    name = datasets[0].replace("wds/", "", 1)
    dataset = build_dataset(
        dataset_name=datasets[0],
        root=root.format(dataset=name, dataset_cleaned=name.replace("/", "-")),
        transform=None,
        split=split,
        download=False,
        language=language,
        custom_template_file=(_option(argv, "--custom_template_file") or [None])[0],
        custom_classname_file=(_option(argv, "--custom_classname_file") or [None])[0],
    )
    classes, templates = getattr(dataset, "classes", None), getattr(dataset, "templates", None)
    if not classes or not templates:
        raise ValueError(f"--dataset {datasets[0]}: has no class names or templates")
    device = "cuda" if torch.cuda.is_available() else "cpu"  # as clip_benchmark chooses
    model, _, tokenizer = load_for_clip_benchmark(model_name, pretrained[0], device=device)
    weights = manifold_classifier(model, tokenizer, classes, templates, karcher=karcher)
    path = str(Path(folder) / "manifold_mean_classifier.pt")
    torch.save(weights.cpu(), path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m manifold_align.cli.clip_benchmark eval [--manifold-mean] ARGS...``.

    Registers our loader and runs ``clip_benchmark eval ARGS`` with ``--model_type
    manifold_align`` (and ``--model auto`` unless ``--model`` or ``--pretrained_model`` is
    given). ``--manifold-mean`` (one checkpoint, one dataset, one language) first writes our
    manifold-mean classifier and passes it as ``--load_clfs``; ``--karcher`` makes it the
    Karcher mean.

    Returns:
        0 on success; 2 (with a one-line message on stderr) for bad arguments or a checkpoint
        that does not load.
    """
    from manifold_align.train.checkpoint import CheckpointError

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "eval":
        print(
            "usage: python -m manifold_align.cli.clip_benchmark eval [--manifold-mean] "
            "[--karcher] CLIP_BENCHMARK_EVAL_ARGS...",
            file=sys.stderr,
        )
        return 2
    rest = args[1:]
    manifold_mean = "--manifold-mean" in rest
    karcher = "--karcher" in rest
    rest = [a for a in rest if a not in ("--manifold-mean", "--karcher")]
    if karcher and not manifold_mean:
        print("clip_benchmark adapter: error: --karcher needs --manifold-mean", file=sys.stderr)
        return 2
    if _option(rest, "--model_type") is None:
        rest += ["--model_type", MODEL_TYPE]
    if _option(rest, "--model") is None and _option(rest, "--pretrained_model") is None:
        rest += ["--model", AUTO]
    register()
    with tempfile.TemporaryDirectory(prefix="manifold-align-cb-") as folder:
        if manifold_mean:
            if _option(rest, "--load_clfs") is not None:
                print(
                    "clip_benchmark adapter: error: --manifold-mean and --load_clfs both give "
                    "the classifier; pass one",
                    file=sys.stderr,
                )
                return 2
            try:
                rest += ["--load_clfs", _manifold_mean_file(rest, karcher, folder)]
            except (ValueError, CheckpointError, OSError) as exc:
                print(f"clip_benchmark adapter: error: {exc}", file=sys.stderr)
                return 2
        old_argv = sys.argv
        sys.argv = ["clip_benchmark", "eval", *rest]
        try:
            cb_cli.main()
        except (ValueError, CheckpointError, OSError) as exc:
            print(f"clip_benchmark adapter: error: {exc}", file=sys.stderr)
            return 2
        finally:
            sys.argv = old_argv
    return 0


if __name__ == "__main__":
    sys.exit(main())
