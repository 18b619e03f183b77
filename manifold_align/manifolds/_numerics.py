"""Numerically safe row-wise math for unit vectors (each row on the last axis lies on a sphere).

``Sphere`` and ``Oblique`` are built from these functions; they differ only in how many
trailing axes they sum over. Every function takes float32 or float64 tensors (callers upcast
half precision first) and stays finite where the math is defined:

* square roots and norms use a "double where" (a safe value replaces the argument before the
  risky operation), so their gradient at zero is zero, never NaN;
* angles use the stable form $\\theta = 2\\,\\mathrm{atan2}(\\|x-y\\|, \\|x+y\\|)$,
  exact at identical (0) and antipodal ($\\pi$) points, unlike ``acos``;
* $\\cos t$ and $\\sin t / t$ are evaluated from $t^2$ with a Taylor series
  near 0, so the exponential map and its gradient are finite at $u = 0$;
* ``projx`` normalization rescales by the largest entry first (no under/overflow of the
  squares) and sends the zero vector to $e_1$; ``retr``/``expmap``, whose rows are near unit
  norm, skip the rescaling.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "HALF_DTYPES",
    "angle",
    "basis_e1",
    "broadcast_shape",
    "cos_sinc",
    "exp",
    "expand_to",
    "log",
    "normalize",
    "parallel_transport",
    "proju",
    "row_inner",
    "row_norm",
    "safe_sqrt",
    "working_dtype",
]

HALF_DTYPES = (torch.float16, torch.bfloat16)

# Below this |u| the Taylor series of cos and sinc (to t^4) is exact to float64 rounding.
_SERIES_BELOW = 1e-2


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype arithmetic runs in: float32 for float16/bfloat16, otherwise ``dtype`` itself."""
    return torch.float32 if dtype in HALF_DTYPES else dtype


def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...] | None:
    """The broadcast of ``shapes`` (NumPy rules), or ``None`` if they do not broadcast.

    Pure Python: ``torch.broadcast_shapes`` costs tens of microseconds per call, which adds
    up on the small tensors of an optimizer step.
    """
    n = max(len(s) for s in shapes)
    out = []
    for i in range(-n, 0):
        size = 1
        for s in shapes:
            if len(s) >= -i and s[i] != 1:
                if size not in (1, s[i]):
                    return None
                size = s[i]
        out.append(size)
    return tuple(out)


def expand_to(t: torch.Tensor, *shapes: tuple[int, ...]) -> torch.Tensor:
    """``t`` expanded (a view) to the broadcast of its shape and ``shapes``; ``t`` itself if equal."""
    shape = broadcast_shape(tuple(t.shape), *shapes)
    return t if shape == tuple(t.shape) else t.expand(shape)


def safe_sqrt(s: torch.Tensor) -> torch.Tensor:
    """$\\sqrt{s}$ for $s \\ge 0$, with gradient 0 (not NaN/Inf) at $s = 0$."""
    positive = s > 0
    root = torch.sqrt(torch.where(positive, s, 1.0))
    return torch.where(positive, root, 0.0)


def row_inner(u: torch.Tensor, v: torch.Tensor, keepdim: bool = True) -> torch.Tensor:
    """$\\langle u, v\\rangle$ over the last axis: ``(..., d), (..., d) -> (..., 1)``."""
    return (u * v).sum(-1, keepdim=keepdim)


def row_norm(v: torch.Tensor, keepdim: bool = True) -> torch.Tensor:
    """$\\|v\\|$ over the last axis, with gradient 0 at $v = 0$."""
    return safe_sqrt(row_inner(v, v, keepdim=keepdim))


def basis_e1(like: torch.Tensor) -> torch.Tensor:
    """The first basis vector $e_1$, broadcast to the shape, dtype and device of ``like``."""
    e1 = (torch.arange(like.shape[-1], device=like.device) == 0).to(like.dtype)
    return e1.expand_as(like)


def normalize(x: torch.Tensor, *, rescale: bool = True) -> torch.Tensor:
    """$x / \\|x\\|$ per row; a zero row becomes $e_1$; a row with a NaN stays NaN.

    With ``rescale`` (for arbitrary input, as in ``projx``) each row is first divided by its
    largest absolute entry, so rows from the smallest subnormal to the largest finite value
    normalize without under/overflow of the squares. Without it (three passes instead of
    five, for rows whose norm is known to be near 1, as in ``retr`` and ``expmap``) rows
    must stay within about $10^{\\pm 19}$ (float32) of unit norm.
    """
    if rescale:
        scale = x.abs().amax(-1, keepdim=True)
        nonzero = scale != 0  # a NaN row stays NaN (``> 0`` would hide it behind e_1)
        x = torch.where(nonzero, x / torch.where(nonzero, scale, 1.0), basis_e1(x))
        return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    n = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    nonzero = n != 0
    return torch.where(nonzero, x / torch.where(nonzero, n, 1.0), basis_e1(x))


def proju(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Tangent projection at a unit row: $u - \\langle x, u\\rangle x$."""
    return u - row_inner(x, u) * x


def angle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Angle between unit rows: $\\theta = 2\\,\\mathrm{atan2}(\\|x-y\\|, \\|x+y\\|)$, ``(..., 1)``.

    Exactly 0 for ``x == y`` and $\\pi$ for ``x == -y``, accurate to rounding in between
    (``acos`` loses half the digits near 0 and $\\pi$); gradient 0 at ``x == y``.
    """
    return 2 * torch.atan2(row_norm(x - y), row_norm(x + y))


def cos_sinc(t2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """$(\\cos t, \\sin t / t)$ from $t^2 \\ge 0$, smooth (finite gradient) at 0.

    Near 0 ($t < 10^{-2}$): $\\cos t \\approx 1 - t^2/2 + t^4/24$,
    $\\sin t/t \\approx 1 - t^2/6 + t^4/120$; elsewhere the closed forms, evaluated at a
    safe substitute so that neither branch produces NaN (double where).
    """
    small = t2 < _SERIES_BELOW**2
    t = torch.sqrt(torch.where(small, 1.0, t2))
    cos = torch.where(small, 1 - t2 / 2 + t2 * t2 / 24, torch.cos(t))
    sinc = torch.where(small, 1 - t2 / 6 + t2 * t2 / 120, torch.sin(t) / t)
    return cos, sinc


def exp(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Exponential map per row: $\\cos(\\|u\\|)\\,x + \\frac{\\sin\\|u\\|}{\\|u\\|}\\,u$.

    The result is renormalized (a no-op in exact arithmetic) so it stays on the sphere to
    rounding for any $\\|u\\|$; finite value and gradient at $u = 0$.
    """
    cos, sinc = cos_sinc(row_inner(u, u))
    return normalize(cos * x + sinc * u, rescale=False)


def log(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logarithmic map per row: $\\theta\\, v / \\|v\\|$ with $v = P_x(y - x)$.

    $\\theta$ is `angle`, so $\\|\\log_x y\\| = \\theta$ exactly. ``x == y``
    gives 0 (finite gradient). ``x`` and ``y`` are normalized first: points rounded to
    bfloat16 are off the sphere by up to 4e-3, enough to tilt the direction. ``v`` is projected twice: for (nearly) antipodal rows
    $y - x \\approx -2x$ and one projection leaves a rounding-level remainder along
    ``x``, which the second removes, so the result is tangent to rounding. Antipodal rows
    (``y == -x``) have no unique log (every direction is a minimizing geodesic); the result
    is a tangent vector of norm $\\pi$: along the part of ``y`` orthogonal to ``x``
    when it exceeds rounding (16 machine epsilons), else along $P_x e_j$ with
    $j = \\arg\\min_i |x_i|$ (deterministic; $\\|P_x e_j\\|^2 \\ge 1 - 1/d$).
    """
    # Half-precision points are off the sphere by up to 4e-3: back onto it in float32.
    x, y = normalize(x, rescale=False), normalize(y, rescale=False)
    theta = angle(x, y)
    antipodal = theta > math.pi / 2
    v = proju(x, proju(x, y - x))
    vn = row_norm(v)
    # Beyond pi/2, |y - x| > 1 and a remainder below 16 eps is rounding, not a direction.
    has_dir = vn > antipodal.to(vn.dtype) * (16 * torch.finfo(vn.dtype).eps)
    along_v = v * (theta / torch.where(has_dir, vn, 1.0))
    # Fallback direction for exactly antipodal rows: the basis vector least aligned with x.
    j = x.abs().argmin(-1, keepdim=True)
    w = proju(x, torch.zeros_like(x).scatter_(-1, j, 1.0))
    fallback = w * (math.pi / torch.linalg.vector_norm(w, dim=-1, keepdim=True))
    return torch.where(has_dir, along_v, torch.where(antipodal, fallback, 0.0))


def parallel_transport(x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Parallel transport of tangent ``v`` from ``x`` to ``y`` along the minimizing geodesic.

    $\\Gamma_{x\\to y} v = v - \\frac{\\langle y, v\\rangle}{1 + \\langle x, y\\rangle}(x + y)$,
    an isometry $T_x \\to T_y$. $1 + \\langle x, y\\rangle$ is evaluated as
    $\\|x+y\\|^2 / 2$ (no cancellation). At antipodal rows, where the geodesic is not
    unique, it falls back to the projection $P_y v$ (finite, not an isometry).
    """
    half_sq = row_inner(x + y, x + y) / 2
    defined = half_sq > torch.finfo(x.dtype).eps
    coef = row_inner(y, v) / torch.where(defined, half_sq, 1.0)
    return torch.where(defined, v - coef * (x + y), proju(y, v))
