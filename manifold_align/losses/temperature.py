"""The temperature of a contrastive loss as an object of its own: learnable, fixed or none.

A contrastive loss compares ``scale * similarity``; ``scale`` is the inverse temperature.
CLIP learns it through its logarithm and projects it back under a maximum after every
optimizer step. Here that choice is explicit and one of three modes:

* ``Temperature.learnable(init, max)``: ``scale = exp(logit_scale)`` with a trainable
  0-dim parameter ``logit_scale`` (initialised to ``log(init)``); call :meth:`Temperature.clamp_`
  after ``optimizer.step()`` to project ``logit_scale <= log(max)``.
* ``Temperature.fixed(value)``: ``scale = value``, nothing to train.
* ``Temperature.none()``: ``scale = 1``, the raw similarity is the logit.

The trainable parameter is named ``logit_scale``, as in CLIP/OpenCLIP, and is a 0-dim tensor,
so the usual weight-decay exclusion rules (``p.ndim < 2`` or ``"logit_scale" in name``) skip it.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

__all__ = ["Temperature", "as_temperature"]

_MODES = ("learnable", "fixed", "none")


def _positive_finite(name: str, value: float) -> float:
    """Return ``float(value)`` or raise ``ValueError`` naming ``name`` unless it is finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a positive number, got {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name}: expected a finite number > 0, got {value}")
    return value


class Temperature(nn.Module):
    """Inverse temperature ``scale`` of a contrastive loss.

    Build it with :meth:`learnable`, :meth:`fixed` or :meth:`none`, not with the constructor.

    Math: ``logits = scale * similarity``; learnable mode stores ``logit_scale = log(scale)``
    and its projection is ``logit_scale <- min(logit_scale, log(max))``.

    Attributes:
        mode: ``"learnable"``, ``"fixed"`` or ``"none"``.
        max: the largest scale the projection allows (``math.inf`` when uncapped); for fixed
            and none modes, the scale itself.
    """

    def __init__(self, mode: str, value: float, max: float) -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"mode: expected one of {_MODES}, got {mode!r}")
        self.mode = mode
        self.max = max
        log_value = torch.tensor(math.log(value), dtype=torch.float32)
        if mode == "learnable":
            self.logit_scale = nn.Parameter(log_value)
        else:
            # Not persistent: a fixed scale is configuration, and a learnable checkpoint loaded
            # into a fixed temperature must fail on the unexpected ``logit_scale`` key.
            self.register_buffer("fixed_log_scale", log_value, persistent=False)

    @classmethod
    def learnable(cls, init: float = 1 / 0.07, max: float = 100.0) -> Temperature:
        """Trainable scale, log-parameterised, initial value ``init``, projected to ``<= max``.

        Args:
            init: initial scale (CLIP: ``1 / 0.07``).
            max: the cap enforced by :meth:`clamp_` (CLIP: 100); ``math.inf`` for none.

        Raises:
            ValueError: ``init`` not finite and positive, ``max`` not positive, or ``init > max``.
        """
        init = _positive_finite("init", init)
        if isinstance(max, bool) or not isinstance(max, (int, float)) or not float(max) > 0.0:
            raise ValueError(f"max: expected a number > 0 (math.inf for no cap), got {max!r}")
        if init > max:
            raise ValueError(f"init: expected init <= max = {max}, got {init}")
        return cls("learnable", init, float(max))

    @classmethod
    def fixed(cls, value: float) -> Temperature:
        """Constant scale ``value`` (finite, > 0); no trainable parameters."""
        value = _positive_finite("value", value)
        return cls("fixed", value, value)

    @classmethod
    def none(cls) -> Temperature:
        """Scale 1: the similarity itself is the logit; no trainable parameters."""
        return cls("none", 1.0, 1.0)

    @property
    def log_scale(self) -> torch.Tensor:
        """``log(scale)`` as stored (the parameter in learnable mode, a buffer otherwise)."""
        return self.logit_scale if self.mode == "learnable" else self.fixed_log_scale

    @property
    def scale(self) -> torch.Tensor:
        """The scale ``exp(log_scale)``: a float32 0-dim tensor, differentiable when learnable."""
        return self.log_scale.float().exp()

    def forward(self) -> torch.Tensor:
        """Return :attr:`scale`."""
        return self.scale

    @torch.no_grad()
    def clamp_(self) -> Temperature:
        """Project ``logit_scale <= log(max)`` in place (CLIP's step after ``optimizer.step()``).

        A no-op for fixed and none modes. Returns ``self``.
        """
        if self.mode == "learnable" and math.isfinite(self.max):
            self.logit_scale.clamp_(max=math.log(self.max))
        return self

    def extra_repr(self) -> str:
        scale = float(self.log_scale.detach().float().exp())
        if self.mode == "learnable":
            return f"mode=learnable, scale={scale:.4g}, max={self.max:.4g}"
        return f"mode={self.mode}, scale={scale:.4g}"


def as_temperature(temperature: Temperature | float | None) -> Temperature:
    """``None`` -> :meth:`Temperature.none`, a number -> :meth:`Temperature.fixed`, else itself.

    Raises:
        TypeError: anything else.
    """
    if temperature is None:
        return Temperature.none()
    if isinstance(temperature, Temperature):
        return temperature
    if isinstance(temperature, numbers.Real) and not isinstance(temperature, bool):
        return Temperature.fixed(float(temperature))
    raise TypeError(
        f"temperature: expected a Temperature, a positive number or None, "
        f"got {type(temperature).__name__}"
    )
