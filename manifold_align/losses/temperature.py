"""The temperature of a contrastive loss as an object of its own: learnable, fixed or none.

A contrastive loss compares ``scale * similarity``; ``scale`` is the inverse temperature.
CLIP learns it through its logarithm and projects it back under a maximum after every
optimizer step. Here that choice is explicit and one of three modes:

* ``Temperature.learnable(init, max)``: ``scale = exp(logit_scale)`` with a trainable
  0-dim parameter ``logit_scale`` (initialised to ``log(init)``); call
  [Temperature.clamp_][manifold_align.losses.temperature.Temperature.clamp_] after ``optimizer.step()`` to
  project ``logit_scale <= log(max)``.
  ``Temperature.learnable(manifold=m)`` takes its defaults from ``m``'s similarity range.
* ``Temperature.fixed(value)``: ``scale = value`` exactly, in the loss's dtype; nothing to train.
* ``Temperature.none()``: ``scale = 1``, the raw similarity is the logit.

The losses take a [Temperature][manifold_align.losses.temperature.Temperature], or the keywords ``scale=`` (a fixed scale) or
``temperature=`` (a fixed temperature ``tau``, scale ``1 / tau``): a bare number is refused,
because CLIP users mean a temperature (0.07) where the scale is its inverse (14.3).

The trainable parameter is named ``logit_scale``, as in CLIP/OpenCLIP, and is a 0-dim tensor,
so the usual weight-decay exclusion rules (``p.ndim < 2`` or ``"logit_scale" in name``) skip it.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

__all__ = ["Temperature", "resolve_temperature"]

_MODES = ("learnable", "fixed", "none")

# CLIP's initial temperature and cap, for similarities in [-1, 1] (the sphere).
_CLIP_INIT = 1 / 0.07
_CLIP_MAX = 100.0


def similarity_half_width(manifold) -> float:
    """``w = max(|low|, |high|)`` of ``manifold.similarity_range`` (1 for the sphere, k for OB(k, d))."""
    low, high = manifold.similarity_range
    return float(max(abs(low), abs(high)))


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

    Build it with [learnable][manifold_align.losses.temperature.Temperature.learnable],
    [fixed][manifold_align.losses.temperature.Temperature.fixed] or [none][manifold_align.losses.temperature.Temperature.none],
    not with the constructor.

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
        # the exact number of a fixed/none scale (a Python float: module casts cannot round it)
        self.value = float(value)
        # True when built by learnable() with CLIP's sphere defaults and no manifold to adapt to
        self.sphere_defaults = False
        log_value = torch.tensor(math.log(value), dtype=torch.float32)
        if mode == "learnable":
            self.logit_scale = nn.Parameter(log_value)
        else:
            # Not persistent: a fixed scale is configuration, and a learnable checkpoint loaded
            # into a fixed temperature must fail on the unexpected ``logit_scale`` key. It also
            # tells scale_as which device the module lives on.
            self.register_buffer("fixed_log_scale", log_value, persistent=False)

    @classmethod
    def learnable(
        cls, init: float | None = None, max: float | None = None, *, manifold=None
    ) -> Temperature:
        """Trainable scale, log-parameterised, initial value ``init``, projected to ``<= max``.

        Defaults keep CLIP's logits whatever the similarity's range ``[-w, w]``
        (``w = 1`` on ``Sphere``, ``k`` on ``Oblique(k, d)``):
        ``init = 1 / (0.07 w)`` and ``max = 100 / w``, so the initial logits span
        ``+-1/0.07`` and the cap ``+-100`` as CLIP's do on the sphere. Without ``manifold`` the
        defaults are the sphere's (``1 / 0.07``, ``100``), and a loss on a manifold with
        ``w != 1`` refuses them (pass ``manifold=`` or explicit numbers).

        Args:
            init: initial scale; default ``1 / (0.07 w)``.
            max: the cap enforced by `clamp_`; default ``100 / w``; ``math.inf`` for none.
            manifold (ContrastiveManifold | None): the manifold whose ``similarity_range`` sets
                ``w`` for the defaults.

        Raises:
            ValueError: ``init`` not finite and positive, ``max`` not positive, ``init > max``,
                or defaults asked of a manifold with an unbounded similarity range.
        """
        w = 1.0
        if manifold is not None and (init is None or max is None):
            w = similarity_half_width(manifold)
            if not math.isfinite(w) or w <= 0:
                raise ValueError(
                    f"manifold: {manifold!r} has similarity range {manifold.similarity_range}; "
                    f"pass init= and max= explicitly"
                )
        defaults = manifold is None and init is None and max is None
        init = _CLIP_INIT / w if init is None else init
        max = _CLIP_MAX / w if max is None else max
        init = _positive_finite("init", init)
        if isinstance(max, bool) or not isinstance(max, (int, float)) or not float(max) > 0.0:
            raise ValueError(f"max: expected a number > 0 (math.inf for no cap), got {max!r}")
        if init > max:
            raise ValueError(f"init: expected init <= max = {max}, got {init}")
        temperature = cls("learnable", init, float(max))
        temperature.sphere_defaults = defaults
        return temperature

    @classmethod
    def fixed(cls, value: float) -> Temperature:
        """Constant scale ``value`` (finite, > 0), exactly (see `scale_as`); nothing to train."""
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
        """The scale as a float32 0-dim tensor, differentiable when learnable.

        Learnable: ``exp(logit_scale)``; fixed and none: the number given, rounded once to
        float32 (see `scale_as` for other dtypes).
        """
        return self.scale_as(torch.float32)

    def scale_as(self, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
        """The scale as a 0-dim tensor of ``dtype`` (on ``device``, default the module's).

        Fixed and none modes give exactly the number given, rounded once to ``dtype``
        (``Temperature.fixed(100.0).scale_as(torch.float64) == 100``); learnable mode gives
        ``exp(logit_scale)`` computed in ``dtype``, differentiable.
        """
        if self.mode == "learnable":
            return self.logit_scale.to(device=device, dtype=dtype).exp()
        device = self.fixed_log_scale.device if device is None else device
        return torch.tensor(self.value, dtype=dtype, device=device)

    def forward(self) -> torch.Tensor:
        """Return `scale`."""
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
        scale = float(self.scale.detach())
        if self.mode == "learnable":
            return f"mode=learnable, scale={scale:.4g}, max={self.max:.4g}"
        return f"mode={self.mode}, scale={scale:.4g}"


def resolve_temperature(
    manifold,
    temperature_obj: Temperature | None,
    temperature: Temperature | float | None,
    scale: float | None,
) -> Temperature:
    """The `Temperature` a loss on ``manifold`` uses, from its three ways of saying it.

    At most one of: ``temperature_obj`` (the positional argument) a `Temperature`;
    the keyword ``temperature=`` a `Temperature` or a number ``tau``
    (``Temperature.fixed(1 / tau)``); the keyword ``scale=s`` (``Temperature.fixed(s)``).
    None of them: ``Temperature.none()`` (scale 1).

    Raises:
        TypeError: a bare number as the positional temperature (ambiguous: CLIP's temperature
            0.07 is a scale of 14.3), or more than one of the three given.
        ValueError: a non-positive number; CLIP's sphere defaults
            (``Temperature.learnable()`` without ``manifold=``) on a manifold whose similarity
            range is not ``[-1, 1]``.
    """
    given = [name for name, v in (("a positional Temperature", temperature_obj),
                                  ("temperature=", temperature), ("scale=", scale))
             if v is not None]
    if len(given) > 1:
        raise TypeError(f"temperature: give only one of a positional Temperature, temperature= "
                        f"or scale=, got {' and '.join(given)}")
    if scale is not None:
        return Temperature.fixed(scale)
    if isinstance(temperature, numbers.Real) and not isinstance(temperature, bool):
        return Temperature.fixed(1.0 / _positive_finite("temperature", temperature))
    temperature = temperature_obj if temperature is None else temperature
    if temperature is None:
        return Temperature.none()
    if not isinstance(temperature, Temperature):
        hint = ""
        if isinstance(temperature, numbers.Real) and not isinstance(temperature, bool):
            hint = (f" A bare number is ambiguous: CLIP's temperature 0.07 is a scale of 14.3. "
                    f"Say which: temperature={temperature!r} (scale {1 / temperature:.4g}) or "
                    f"scale={temperature!r}, or pass a Temperature object.")
        raise TypeError(f"temperature: expected a Temperature or None, got "
                        f"{type(temperature).__name__}.{hint}")
    w = similarity_half_width(manifold)
    if temperature.sphere_defaults and math.isfinite(w) and w != 1.0:
        raise ValueError(
            f"temperature: Temperature.learnable() has CLIP's sphere defaults (init 1/0.07, max "
            f"100) for similarities in [-1, 1], but {manifold!r} has similarity range "
            f"{manifold.similarity_range}: use Temperature.learnable(manifold=...) "
            f"(init {_CLIP_INIT / w:.4g}, max {_CLIP_MAX / w:.4g}) or give init= and max="
        )
    return temperature
