"""Which of our registered architectures a checkpoint is: from a name, or from its tensors.

Names are our registry's sphere names (``tiny``, ``ViT-B-32``, ``ViT-B-16``, ``ViT-L-14``),
optionally with OpenCLIP's ``-quickgelu`` suffix for QuickGELU MLPs (OpenAI's weights).
Without a name, the architecture is the unique registered sphere config whose expected
tensors have exactly the checkpoint's keys and shapes (OpenCLIP files), or whose fields equal
the ``config.json``'s (Hugging Face folders). Shapes cannot tell the head count or the
activation: an OpenCLIP file is read as GELU unless the name ends in ``-quickgelu``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence

from manifold_align.models import ModelConfig, build_model, list_models, model_config
from manifold_align.pretrained.errors import CheckpointMismatchError, check_shapes, mismatches
from manifold_align.pretrained.layout import Rule, peer_shapes

__all__ = ["expected_shapes", "infer_name", "registered_name", "resolve_name", "sphere_names"]

QUICKGELU_SUFFIX = "-quickgelu"


def sphere_names() -> list[str]:
    """The registered sphere architectures with CLIP's text tower (the ones a CLIP checkpoint
    can be; the paper's ``-release`` text tower is BERT-style, not CLIP's)."""
    clip_text = ("causal", "pre", False, "eot")
    return [n for n in list_models()
            if model_config(n).manifold == "sphere" and clip_text == (
                model_config(n).text_mask, model_config(n).text_norm,
                model_config(n).text_embed_norm, model_config(n).text_pool)]


def registered_name(config: ModelConfig) -> str | None:
    """The registered name whose config equals ``config``, or ``None``.

    The activation and the end-of-text id are not part of the comparison (a loaded checkpoint
    carries its own); a QuickGELU config gets the ``-quickgelu`` suffix, so the name
    round-trips through `resolve_name`.
    """
    for name in list_models():
        known = model_config(name)
        if dataclasses.replace(config, activation=known.activation, eot_id=known.eot_id) == known:
            return name + (QUICKGELU_SUFFIX if config.activation == "quick_gelu" else "")
    return None


def resolve_name(name: str) -> tuple[str, ModelConfig]:
    """``(base name, config)`` of ``name``; ``-quickgelu`` sets ``activation="quick_gelu"``.

    Raises:
        ValueError: naming ``name``, if it is not a registered sphere architecture (an
            ``-oblique`` name is refused: pretrained CLIP checkpoints are sphere models).
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a model name, got {type(name).__name__}")
    base = name.removesuffix(QUICKGELU_SUFFIX)
    if base not in list_models():
        raise ValueError(
            f"name: unknown architecture {name!r}; known: {', '.join(sphere_names())} "
            f"(each also with {QUICKGELU_SUFFIX!r})"
        )
    config = model_config(base)
    if config.manifold != "sphere":
        raise ValueError(
            f"name: {name!r} is an oblique model; CLIP checkpoints are sphere models, load "
            f"one of {', '.join(sphere_names())}"
        )
    if name.endswith(QUICKGELU_SUFFIX):
        config = dataclasses.replace(config, activation="quick_gelu")
    return base, config


@functools.lru_cache(maxsize=32)
def _our_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Our key -> shape for ``config`` (the model built on the meta device, no memory)."""
    return {k: tuple(v.shape) for k, v in build_model(config, device="meta").state_dict().items()}


def expected_shapes(config: ModelConfig, rules: Sequence[Rule]) -> dict[str, tuple[int, ...]]:
    """The peer's key -> shape for ``config`` under ``rules``."""
    return peer_shapes(rules, _our_shapes(config))


def infer_name(
    found: Mapping[str, Sequence[int]],
    rules_of: Callable[[ModelConfig], Sequence[Rule]],
    source: str,
    layout: str,
) -> str:
    """The unique registered sphere name whose tensors match ``found`` (key -> shape).

    Args:
        found: the checkpoint's key -> shape.
        rules_of: the layout's rules for a config.
        source: the checkpoint's path, for messages.
        layout: the layout's name, for messages.

    Raises:
        CheckpointMismatchError: no registered architecture matches (the message gives the
            closest one's first offending keys) or several do (pass ``name``).
    """
    matches, scores = [], {}
    for name in sphere_names():
        config = model_config(name)
        expected = expected_shapes(config, rules_of(config))
        missing, unexpected, wrong = mismatches(found, expected)
        scores[name] = len(missing) + len(unexpected) + len(wrong)
        if not scores[name]:
            matches.append(name)
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise CheckpointMismatchError(
            f"{source}: the tensor shapes fit several architectures ({', '.join(matches)}); "
            f"pass name= to choose one"
        )
    closest = min(scores, key=scores.__getitem__)
    config = model_config(closest)
    check_shapes(
        found,
        expected_shapes(config, rules_of(config)),
        source,
        f"any registered architecture in {layout}'s layout (closest: {closest!r})",
    )
    raise AssertionError("unreachable: a zero score is a match")  # pragma: no cover
