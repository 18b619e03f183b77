"""NaN/Inf guard: stop training at the first non-finite number, naming the step and the culprit.

The cheap checks (the loss and the total gradient norm, one scalar each) run at every step.
Only when one fails, or in debug mode, are the parameters and gradients scanned one by one to
name the first offending tensor.
"""

from __future__ import annotations

import math

import torch

__all__ = ["NonFiniteError", "check_scalar", "check_tensors"]


class NonFiniteError(FloatingPointError):
    """Training produced NaN or Inf.

    Attributes:
        step: the optimizer step (0-based) being computed when it happened.
        quantity: what was not finite, e.g. ``"loss"`` or ``"gradient of text.proj.weight"``.
    """

    def __init__(self, step: int, quantity: str, value: str) -> None:
        self.step = step
        self.quantity = quantity
        super().__init__(f"non-finite {quantity} at step {step}: {value}")


def _describe(t: torch.Tensor) -> str:
    t = t.detach()
    if t.numel() == 1:
        return str(t.item())
    nan = int(torch.isnan(t).sum())
    inf = int(torch.isinf(t).sum())
    return f"{nan} NaN and {inf} Inf among {t.numel()} entries"


def check_scalar(step: int, name: str, value: float | torch.Tensor) -> None:
    """Raise `NonFiniteError` if the scalar ``value`` is NaN or Inf."""
    v = float(value)
    if not math.isfinite(v):
        raise NonFiniteError(step, name, str(v))


def check_tensors(step: int, model: torch.nn.Module, what: str = "gradient") -> None:
    """Raise `NonFiniteError` naming the first parameter whose ``what`` is not finite.

    Args:
        step: the current optimizer step.
        model: whose named parameters are scanned in registration order.
        what: ``"gradient"`` (``p.grad``, absent gradients skipped) or ``"parameter"`` (``p``).

    Raises:
        ValueError: for another ``what``.
        NonFiniteError: ``quantity`` is e.g. ``"gradient of image.proj.weight"``.
    """
    if what not in ("gradient", "parameter"):
        raise ValueError(f"what: expected 'gradient' or 'parameter', got {what!r}")
    for name, p in model.named_parameters():
        t = p.grad if what == "gradient" else p
        if t is not None and not bool(torch.isfinite(t).all()):
            raise NonFiniteError(step, f"{what} of {name}", _describe(t))
