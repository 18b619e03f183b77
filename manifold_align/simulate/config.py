"""The settings of a simulation sweep: a dataclass tree that ``load_config`` fills from YAML.

A sweep is the Cartesian product ``noise x manifolds x temperatures x batch_sizes x concepts x
replicates``. Manifolds are written as short specs:

* ``sphere:D`` -> ``Sphere(D)``
* ``oblique:KxD`` -> ``Oblique(K, D)`` (K tokens of dimension D)
* ``lorentz:D`` -> ``Lorentz(D)``: hyperbolic space of dimension D (points of D + 1
  coordinates), curvature $-1$, radius 5; options ``:c=VALUE`` (curvature $-c$) and
  ``:r=VALUE`` (the radius the toy keeps its points within, ``inf`` for none), e.g.
  ``lorentz:16:c=0.5:r=2.5``
* ``product:A+B+...`` -> ``Product(A, B, ...)`` with each factor a sphere, oblique or
  Lorentz spec, e.g. ``product:sphere:32+oblique:4x8`` or ``product:sphere:32+lorentz:31:r=1``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from manifold_align.config import check_seed
from manifold_align.manifolds import ContrastiveManifold, Lorentz, Oblique, Product, Sphere

__all__ = [
    "BiasSpec",
    "OptimConfig",
    "SettleConfig",
    "SweepConfig",
    "TemperatureSpec",
    "parse_manifold",
]


def _parse_factor(spec: str, key: str) -> ContrastiveManifold:
    kind, sep, arg = spec.partition(":")
    try:
        if kind == "sphere" and sep:
            (dim,) = (int(arg),)
            if dim >= 2:
                return Sphere(dim)
        elif kind == "oblique" and sep:
            k, d = (int(v) for v in arg.split("x"))
            if k >= 1 and d >= 2:
                return Oblique(k, d)
        elif kind == "lorentz" and sep:
            lorentz = _parse_lorentz(arg)
            if lorentz is not None:
                return lorentz
    except ValueError:
        pass
    raise ValueError(
        f"{key}: cannot parse manifold {spec!r}; expected 'sphere:D' (D >= 2), "
        f"'oblique:KxD' (K >= 1, D >= 2), 'lorentz:D[:c=C][:r=R]' (D >= 1, C > 0, R > 0 or inf) "
        f"or 'product:A+B' of those"
    )


def _parse_lorentz(arg: str) -> Lorentz | None:
    """``D[:c=C][:r=R]`` -> ``Lorentz(D, C, radius=R)``; ``None`` (or ``ValueError``) if malformed."""
    dim, *options = arg.split(":")
    kwargs: dict[str, float] = {}
    for opt in options:
        name, eq, value = opt.partition("=")
        field = {"c": "curvature", "r": "radius"}.get(name)
        if not eq or field is None or field in kwargs:
            return None
        kwargs[field] = float(value)
    if int(dim) < 1 or not all(v > 0 for v in kwargs.values()) or not math.isfinite(kwargs.get("curvature", 1.0)):
        return None
    return Lorentz(int(dim), **kwargs)


def parse_manifold(spec: str, key: str = "manifold") -> ContrastiveManifold:
    """Build the manifold a spec string names (see the module docstring).

    Raises:
        ValueError: naming ``key`` when the spec does not parse.
    """
    if not isinstance(spec, str):
        raise ValueError(f"{key}: expected a manifold spec string, got {spec!r}")
    if spec.startswith("product:"):
        parts = spec[len("product:") :].split("+")
        if len(parts) < 2:
            raise ValueError(f"{key}: a product needs at least two factors, got {spec!r}")
        return Product(*(_parse_factor(p, key) for p in parts))
    return _parse_factor(spec, key)


@dataclasses.dataclass
class TemperatureSpec:
    """How the logit scale $t$ (logits $= t \\cdot s$) behaves in a run.

    Attributes:
        mode: ``learnable`` ($t = e^{\\theta}$, $\\theta$ trained, then clamped so $t \\le$
            ``max`` after each step, as CLIP does), ``fixed`` ($t =$ ``value``) or ``none``
            ($t = 1$).
        init: initial scale of a learnable temperature.
        max: largest scale of a learnable temperature.
        value: the scale of a fixed temperature.
    """

    mode: Literal["learnable", "fixed", "none"] = "learnable"
    init: float = 1.0
    max: float = 100.0
    value: float = 1.0

    def __post_init__(self) -> None:
        for name in ("init", "max", "value"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name}: expected a positive finite scale, got {v!r}")
        if self.mode == "learnable" and self.init > self.max:
            raise ValueError(f"init: {self.init} exceeds max {self.max}")

    @property
    def label(self) -> str:
        """Short name used in results and plots, e.g. ``learnable<=100``, ``fixed=14.3``."""
        if self.mode == "learnable":
            return f"learnable<={self.max:g}"
        if self.mode == "fixed":
            return f"fixed={self.value:g}"
        return "none"

    @property
    def initial_scale(self) -> float:
        return {"learnable": self.init, "fixed": self.value, "none": 1.0}[self.mode]

    @property
    def max_scale(self) -> float:
        """The largest scale this temperature can take."""
        return {"learnable": self.max, "fixed": self.value, "none": 1.0}[self.mode]


@dataclasses.dataclass
class OptimConfig:
    """Riemannian Adam on the embeddings, Adam on the log-scale (same hyper-parameters).

    Attributes:
        lr: peak learning rate.
        betas: Adam's moment decay rates.
        schedule: ``constant`` or ``cosine`` (decay to 0 over the run's steps).
    """

    lr: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "cosine"] = "cosine"

    def __post_init__(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr: expected a positive number, got {self.lr!r}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas: expected values in [0, 1), got {list(self.betas)}")


@dataclasses.dataclass
class SettleConfig:
    """When a trajectory counts as settled: the first logged step after which it stays within
    ``rel_tol * |final| + abs_tol`` of its final value.
    """

    rel_tol: float = 0.05
    abs_tol: float = 0.01

    def __post_init__(self) -> None:
        if self.rel_tol < 0 or self.abs_tol < 0:
            raise ValueError(
                f"rel_tol, abs_tol: expected >= 0, got rel_tol={self.rel_tol}, abs_tol={self.abs_tol}"
            )


@dataclasses.dataclass
class BiasSpec:
    """The sigmoid loss's logit bias $b$ (logits $= t \\cdot s + b$), one per run, trained by
    Adam with the scale's settings. InfoNCE ignores it.

    Attributes:
        init: initial bias of every run, a number or ``prior``: $-\\log(B - 1)$, the bias that
            minimizes the loss of a model that knows nothing (every logit equal; the
            equilibrium at $p = 1$). SigLIP itself starts at -10 with scale 10.
        learnable: train the bias (``false`` keeps it at ``init``).
    """

    init: float | Literal["prior"] = "prior"
    learnable: bool = True

    def __post_init__(self) -> None:
        if self.init != "prior" and not math.isfinite(self.init):
            raise ValueError(f"init: expected a finite number or 'prior', got {self.init!r}")

    def initial_bias(self, batch_size: int) -> float:
        """The initial bias for a batch of ``batch_size`` pairs."""
        return -math.log(batch_size - 1) if self.init == "prior" else float(self.init)


def _default_temperatures() -> list[TemperatureSpec]:
    return [
        TemperatureSpec("learnable", init=1.0, max=100.0),
        TemperatureSpec("fixed", value=10.0),
        TemperatureSpec("none"),
    ]


@dataclasses.dataclass
class SweepConfig:
    """A simulation sweep (every field can be set from YAML or ``--set key=value``).

    Attributes:
        name: a label for the report.
        noise: caption-noise probabilities $p$.
        manifolds: manifold specs (see the module docstring).
        temperatures: temperature behaviours.
        batch_sizes: pairs per step $B$.
        concepts: numbers of concepts $C$.
        replicates: independent runs per setting (different random streams).
        seed: seeds every random stream of the sweep.
        steps: optimizer steps per run.
        log_every: trajectory sampling interval, in steps.
        final_window: the final loss is the mean batch loss over this many last steps.
        threads: torch CPU threads (0 leaves torch's default). The default 1 is deliberate: the
            kernels are tiny, and intra-op threading costs more than it gains (10x slower
            on a busy 2-core machine).
        optim: optimizer settings.
        settle: settling tolerances.
        loss: ``infonce`` (CLIP's symmetric softmax cross-entropy) or ``sigmoid`` (SigLIP's
            pairwise logistic loss, positives on the diagonal, with a per-run bias).
        bias: the sigmoid loss's bias.
    """

    name: str = "equilibrium"
    noise: list[float] = dataclasses.field(default_factory=lambda: [0.2, 0.5, 0.8])
    manifolds: list[str] = dataclasses.field(default_factory=lambda: ["sphere:16", "oblique:4x16"])
    temperatures: list[TemperatureSpec] = dataclasses.field(default_factory=_default_temperatures)
    batch_sizes: list[int] = dataclasses.field(default_factory=lambda: [32])
    concepts: list[int] = dataclasses.field(default_factory=lambda: [8])
    replicates: int = 1
    seed: int = 0
    steps: int = 1500
    log_every: int = 10
    final_window: int = 100
    threads: int = 1
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    settle: SettleConfig = dataclasses.field(default_factory=SettleConfig)
    loss: Literal["infonce", "sigmoid"] = "infonce"
    bias: BiasSpec = dataclasses.field(default_factory=BiasSpec)

    def __post_init__(self) -> None:
        for name in ("noise", "manifolds", "temperatures", "batch_sizes", "concepts"):
            if len(getattr(self, name)) == 0:
                raise ValueError(f"{name}: expected at least one value, got []")
        for i, p in enumerate(self.noise):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"noise[{i}]: expected a probability in [0, 1], got {p!r}")
        for i, spec in enumerate(self.manifolds):
            parse_manifold(spec, f"manifolds[{i}]")
        for i, b in enumerate(self.batch_sizes):
            if b < 2:
                raise ValueError(f"batch_sizes[{i}]: expected an integer >= 2, got {b}")
        for i, c in enumerate(self.concepts):
            if c < 2:
                raise ValueError(f"concepts[{i}]: expected an integer >= 2, got {c}")
        for name in ("replicates", "steps", "log_every", "final_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")
        check_seed("seed", self.seed)
        if self.threads < 0:
            raise ValueError(f"threads: expected an integer >= 0, got {self.threads}")
