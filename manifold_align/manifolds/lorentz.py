r"""Hyperbolic space $\mathbb{H}^d_c$ in the Lorentz (hyperboloid) model, curvature $-c$.

A point is stored with its time coordinate first, ``(..., dim + 1)`` = $(x_0, x_s)$ with
$\langle x, x\rangle_L = -1/c$ and $x_0 > 0$, where
$\langle u, v\rangle_L = -u_0 v_0 + \langle u_s, v_s\rangle$ is the Minkowski inner product.

**Storage: full points, not MERU's space-only part.** MERU keeps only $x_s$ and recomputes
$x_0 = \sqrt{1/c + \|x_s\|^2}$ whenever it needs it. Here the time coordinate is stored, as
geoopt does, because (1) the manifold is then an embedded submanifold of
$\mathbb{R}^{d+1}$ and every geoopt operation (tangent projection, Riemannian gradient from
the Euclidean one through the Minkowski metric, retraction, transport) has its textbook
form, so `geoopt.ManifoldParameter` and Riemannian Adam work unchanged and the manifold can
be cross-checked against `geoopt.manifolds.Lorentz` coordinate for coordinate; (2)
`similarity` is one matrix multiply of Lorentzian inner products over the stored coordinates
(the time column's sign flipped on one side). MERU's one advantage, that a changed curvature
leaves stored points valid, is kept where it matters: `projx` (which ends `expmap` and
`retr`) recomputes $x_0$ from $x_s$ with the *current* curvature, and model heads build their
points afresh every step with `expmap0`.

**Numerics.** Distances use the chordal form
$d(x, y) = \frac{2}{\sqrt c}\,\operatorname{asinh}\!\big(\tfrac{\sqrt c}{2}\,\|x - y\|_L\big)$
with $\|x - y\|_L^2 = \langle x - y, x - y\rangle_L \ge 0$, which is exact where
$\operatorname{arccosh}(-c\langle x, y\rangle_L)$ loses half its digits (near $z = 1$,
identical or nearby points) and has gradient 0 (not NaN) at $x = y$ ("double where" around
the square root). $\sinh t / t$ and $\operatorname{asinh} t / t$ use a Taylor series near 0, so
`expmap`, `expmap0`, `logmap0` and their gradients are finite at $u = 0$ and at the origin.
Half-precision inputs are computed in float32 and returned in their dtype.

**Radius.** Coordinates grow like $e^{\sqrt c\, r}$ with the distance $r$ from the origin,
so the similarity is unbounded below: `similarity_range` is stated for points within
geodesic distance ``radius`` of the origin, $[-2\,\mathrm{radius}, 0]$ (the heads of
`manifold_align.models` keep their points inside it). Default ``radius = 5``: in float32 the
pairwise similarity (one matmul, whose rounding is $\approx \varepsilon\, x_0 y_0$) is then
accurate to about $10^{-2}$ for the nearest pairs and exact for far pairs, and nothing
overflows for $\sqrt c\, r$ up to about 40 (the Lorentz products reach $e^{2\sqrt c r}/4$).

**Learnable curvature.** ``learnable=True`` stores $\log c$ as a 0-dim parameter
``log_curvature`` (so it is positive by construction, and a 0-dim tensor that the usual
weight-decay rules skip); `clamp_` projects it into
$[\log c_{\min}, \log c_{\max}]$ after each optimizer step, as `Temperature.clamp_` does for
the scale (MERU's bounds $[0.1, 10]$ are the defaults). Every operation reads the current
value, so gradients reach it through the points (`expmap0`) and the distances.
"""

from __future__ import annotations

import math

import torch

from manifold_align.manifolds import _numerics as nx
from manifold_align.manifolds.base import ContrastiveManifold, positive_int

__all__ = ["Lorentz"]

# Below this |t| the Taylor series of sinh(t)/t and asinh(t)/t (to t^4) are exact to rounding.
_SERIES_BELOW = 1e-2


def _minkowski(u: torch.Tensor, v: torch.Tensor, keepdim: bool = True) -> torch.Tensor:
    r"""$\langle u, v\rangle_L = -u_0 v_0 + \sum_{j \ge 1} u_j v_j$ over the last axis."""
    out = (u[..., 1:] * v[..., 1:]).sum(-1, keepdim=True) - u[..., :1] * v[..., :1]
    return out if keepdim else out.squeeze(-1)


def _time_flipped(x: torch.Tensor) -> torch.Tensor:
    r"""$Jx = (-x_0, x_s)$: $\langle u, v\rangle_L = u^\top J v$."""
    return torch.cat([-x[..., :1], x[..., 1:]], dim=-1)


def _sinhc(t: torch.Tensor) -> torch.Tensor:
    r"""$\sinh t / t$ for $t \ge 0$, series $1 + t^2/6 + t^4/120$ below $10^{-2}$ (finite gradient)."""
    small = t < _SERIES_BELOW
    safe = torch.where(small, 1.0, t)
    t2 = t * t
    return torch.where(small, 1 + t2 / 6 + t2 * t2 / 120, torch.sinh(safe) / safe)


def _asinhc(t: torch.Tensor) -> torch.Tensor:
    r"""$\operatorname{asinh} t / t$ for $t \ge 0$, series $1 - t^2/6 + 3t^4/40$ below $10^{-2}$."""
    small = t < _SERIES_BELOW
    safe = torch.where(small, 1.0, t)
    t2 = t * t
    return torch.where(small, 1 - t2 / 6 + 3 * t2 * t2 / 40, torch.asinh(safe) / safe)


def _t_max(dtype: torch.dtype) -> float:
    """Largest $\\sqrt c\\|u\\|$ `expmap` uses: half of $\\log(\\mathrm{finfo.max})$ (44 in
    float32, 354 in float64), so $\\cosh(t)\\,x$ stays finite for any point with coordinates
    below $e^{t}$; beyond it the step is clamped (finite, no longer exact)."""
    return math.log(torch.finfo(dtype).max) / 2


def _space_norm(x: torch.Tensor) -> torch.Tensor:
    r"""$\|x_s\|$ ``(..., 1)``, rescaled by the largest entry (no overflow), gradient 0 at 0."""
    s = x[..., 1:]
    scale = s.abs().amax(-1, keepdim=True)
    nonzero = scale > 0
    safe = torch.where(nonzero, scale, 1.0)
    return torch.where(nonzero, safe * nx.row_norm(s / safe), 0.0)


class Lorentz(ContrastiveManifold):
    r"""The hyperboloid $\{x \in \mathbb{R}^{d+1} : \langle x, x\rangle_L = -1/c,\ x_0 > 0\}$.

    A point is ``(..., dim + 1)``, time coordinate first (see the module docstring for why,
    and for the numerics). Sectional curvature $-c$; geodesic distance
    $d(x, y) = \operatorname{arccosh}(-c\langle x, y\rangle_L)/\sqrt c$; the similarity is
    the negative distance, $s(x, y) = -d(x, y) \le 0$ (MERU's). geoopt's
    ``Lorentz(k)`` is this manifold with $k = 1/c$.

    Args:
        dim: dimension $d \ge 1$ of the hyperbolic space (points have ``dim + 1`` coordinates).
        curvature: $c > 0$ (the curvature is $-c$), the initial value when ``learnable``.
        radius: geodesic radius about the origin for which `similarity_range` is stated
            (``math.inf`` for the unbounded range); see the module docstring.
        learnable: store $\log c$ as the parameter ``log_curvature`` (see `clamp_`).
        curvature_bounds: ``(c_min, c_max)`` for `clamp_` (learnable only).

    Raises:
        TypeError: ``dim`` is not an integer.
        ValueError: ``dim < 1``, ``curvature`` or ``radius`` not a positive number, or
            ``curvature_bounds`` not ``0 < c_min <= curvature <= c_max``.
    """

    ndim = 1
    name = "Lorentz"
    reversible = False
    bilinear = False

    def __init__(
        self,
        dim: int,
        curvature: float = 1.0,
        *,
        radius: float = 5.0,
        learnable: bool = False,
        curvature_bounds: tuple[float, float] = (0.1, 10.0),
    ) -> None:
        super().__init__()
        self.dim = positive_int(dim, "dim", minimum=1)
        for name, value in (("curvature", curvature), ("radius", radius)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name}: expected a positive number, got {value!r}")
            if name == "curvature" and not math.isfinite(value):
                raise ValueError(f"curvature: expected a finite number > 0, got {value!r}")
        lo, hi = (float(b) for b in curvature_bounds)
        if learnable and not 0 < lo <= curvature <= hi < math.inf:
            raise ValueError(
                f"curvature_bounds: expected 0 < c_min <= curvature ({curvature}) <= c_max < inf, "
                f"got {curvature_bounds!r}"
            )
        self.radius = float(radius)
        self.learnable = bool(learnable)
        self.curvature_bounds = (lo, hi)
        self._fixed_c = float(curvature)
        if self.learnable:
            self.log_curvature = torch.nn.Parameter(
                torch.tensor(math.log(curvature), dtype=torch.float32)
            )
        else:
            self.log_curvature = None

    def extra_repr(self) -> str:
        return f"dim={self.dim}, curvature={self.c:g}, radius={self.radius:g}"

    def __repr__(self) -> str:
        learn = ", learnable=True" if self.learnable else ""
        return f"Lorentz(dim={self.dim}, curvature={self._fixed_c:g}, radius={self.radius:g}{learn})"

    # --- curvature -------------------------------------------------------------------------

    @property
    def c(self) -> float:
        """The current curvature magnitude $c$ as a Python float (detached)."""
        if self.log_curvature is None:
            return self._fixed_c
        return float(self.log_curvature.detach().exp())

    @property
    def curvature(self) -> torch.Tensor:
        r"""$c = e^{\log c}$, a 0-dim float32 tensor (differentiable when learnable)."""
        if self.log_curvature is None:
            return torch.tensor(self._fixed_c)
        return self.log_curvature.exp()

    def _c(self, like: torch.Tensor) -> torch.Tensor | float:
        """$c$ in ``like``'s dtype/device: a float when fixed, a differentiable tensor when learnable."""
        if self.log_curvature is None:
            return self._fixed_c
        return self.log_curvature.to(like.dtype).exp().to(like.device)

    @torch.no_grad()
    def clamp_(self) -> None:
        r"""Project $\log c$ into $[\log c_{\min}, \log c_{\max}]$ (learnable only; else a no-op).

        Call it after each optimizer step, like `Temperature.clamp_`.
        """
        if self.log_curvature is not None:
            lo, hi = self.curvature_bounds
            self.log_curvature.clamp_(math.log(lo), math.log(hi))

    # --- contrastive side ----------------------------------------------------------------

    @property
    def point_shape(self) -> tuple[int, ...]:
        """``(dim + 1,)``: time coordinate first."""
        return (self.dim + 1,)

    @property
    def similarity_range(self) -> tuple[float, float]:
        r"""``(-2 radius, 0)``: two points within ``radius`` of the origin are at most
        $2\,\mathrm{radius}$ apart; $s(x, x) = 0$. ``(-inf, 0)`` for ``radius = inf``."""
        return (-2.0 * self.radius, 0.0)

    def _pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""$S_{ij} = -d(x_i, y_j)$ from one matmul $G = x\,(Jy)^\top$ of Lorentzian products.

        $q_{ij} = \langle x_i, x_i\rangle_L + \langle y_j, y_j\rangle_L - 2 G_{ij}
        = \|x_i - y_j\|_L^2$ (the rows' own squared norms, so points rounded off the
        hyperboloid still give $q_{ii} = 0$ for identical rows), then
        $S = -\frac{2}{\sqrt c}\operatorname{asinh}(\frac{\sqrt c}{2}\sqrt{\max(q, 0)})$:
        stable near $q = 0$, gradient 0 there. ``(*b, N, D), (*b, M, D) -> (*b, N, M)``.
        """
        c = self._c(x)
        gram = x @ _time_flipped(y).mT
        qx = _minkowski(x, x)  # (*b, N, 1)
        qy = _minkowski(y, y).mT  # (*b, 1, M)
        q = (qx + qy - 2 * gram).clamp_min(0)
        root_c = c**0.5
        return -(2 / root_c) * torch.asinh(root_c * nx.safe_sqrt(q) / 2)

    # --- points and tangent vectors -------------------------------------------------------

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        r"""Closest point along the time axis: $\pi(x) = (\sqrt{1/c + \|x_s\|^2},\ x_s)$.

        Computed as $\mathrm{hypot}(\|x_s\|, 1/\sqrt c)$ with $\|x_s\|$ rescaled (no overflow).
        """
        (x,), dtype = self._operands(x=x)
        return self._project(x, self._c(x)).to(dtype)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Tangent projection: $P_x u = u + c\,\langle x, u\rangle_L\, x$ (so $\langle x, P_x u\rangle_L = 0$)."""
        (x, u), dtype = self._operands(x=x, u=u)
        return (u + self._c(x) * _minkowski(x, u) * x).to(dtype)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Riemannian gradient: $\operatorname{grad} f = P_x(J \nabla f)$, $J = \mathrm{diag}(-1, 1, \dots, 1)$.

        $J$ turns the Euclidean gradient into the Minkowski one ($\langle J g, v\rangle_L = g^\top v$).
        """
        (x, u), dtype = self._operands(x=x, u=u)
        g = _time_flipped(u)
        return (g + self._c(x) * _minkowski(x, g) * x).to(dtype)

    def inner(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        v: torch.Tensor | None = None,
        *,
        keepdim: bool = False,
    ) -> torch.Tensor:
        r"""Metric: $\langle u, v\rangle_x = -u_0 v_0 + \langle u_s, v_s\rangle$ (``v`` defaults to ``u``).

        Positive definite on the tangent space. Shape ``(...)``, or ``(..., 1)`` with ``keepdim``.
        """
        v = u if v is None else v
        (x, u, v), dtype = self._operands(x=x, u=u, v=v)
        out = nx.expand_to(_minkowski(u, v), (*x.shape[:-1], 1))
        return (out if keepdim else out.squeeze(-1)).to(dtype)

    def norm(self, x: torch.Tensor, u: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        r"""$\|u\|_x = \sqrt{\max(\langle u, u\rangle_L, 0)}$, gradient 0 at $u = 0$."""
        return nx.safe_sqrt(self.inner(x, u, keepdim=keepdim).clamp_min(0))

    def component_inner(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""One component per point: $\langle u, v\rangle_x$, shape ``(..., 1)``."""
        return self.inner(x, u, v, keepdim=True)

    def _exp(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``expmap`` in the working dtype (no checks)."""
        c = self._c(x)
        root_c = c**0.5
        n = nx.safe_sqrt(_minkowski(u, u).clamp_min(0))
        t = (root_c * n).clamp_max(_t_max(x.dtype))
        small = t < _SERIES_BELOW
        coef = torch.where(small, _sinhc(t), torch.sinh(t) / torch.where(small, 1.0, root_c * n))
        return self._project(torch.cosh(t) * x + coef * u, c)

    def _project(self, x: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
        """`projx` in the working dtype with a given $c$ (no checks)."""
        t = torch.hypot(_space_norm(x), torch.as_tensor(c, dtype=x.dtype, device=x.device).rsqrt())
        return torch.cat([t, x[..., 1:]], dim=-1)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Exponential map: $\exp_x u = \cosh(\sqrt c\|u\|)\,x + \frac{\sinh(\sqrt c\|u\|)}{\sqrt c\|u\|}\,u$, then `projx`.

        Finite value and gradient at $u = 0$ (series for $\sinh t/t$); $\sqrt c\|u\|$ is
        clamped at $\log(\mathrm{finfo.max})/2$ (44 in float32), so it never overflows.
        """
        (x, u), dtype = self._operands(x=x, u=u)
        return self._exp(x, u).to(dtype)

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Retraction: the exponential map $R_x(u) = \exp_x u$ (as geoopt's ``Lorentz``)."""
        return self.expmap(x, u)

    def _log(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        v = y - x
        v = v + self._c(x) * _minkowski(x, v) * x  # P_x(y - x): no cancellation for y near x
        vn = nx.safe_sqrt(_minkowski(v, v).clamp_min(0))
        d = self._dist(x, y)
        nonzero = vn > 0
        return torch.where(nonzero, v * (d / torch.where(nonzero, vn, 1.0)), 0.0)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""Logarithmic map: $\log_x y = d(x, y)\, \frac{v}{\|v\|_L}$, $v = P_x(y - x) = P_x y$.

        $P_x(y - x)$ is used for accuracy near $x$; $\log_x x = 0$ with a finite gradient.
        Unique everywhere (no cut locus).
        """
        (x, y), dtype = self._operands(x=x, y=y)
        return self._log(x, y).to(dtype)

    def _dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = self._c(x)
        root_c = c**0.5
        diff = x - y
        q = nx.safe_sqrt(_minkowski(diff, diff).clamp_min(0))
        return (2 / root_c) * torch.asinh(root_c * q / 2)

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        r"""Geodesic distance $d(x, y) = \frac{2}{\sqrt c}\operatorname{asinh}\big(\frac{\sqrt c}{2}\|x - y\|_L\big)$.

        Equal to $\operatorname{arccosh}(-c\langle x, y\rangle_L)/\sqrt c$, but exact near
        $x = y$ (0 exactly at $x = y$, gradient 0 there). Shape ``(...)`` or ``(..., 1)``.
        """
        (x, y), dtype = self._operands(x=x, y=y)
        d = self._dist(x, y)
        return (d if keepdim else d.squeeze(-1)).to(dtype)

    def transp_parallel(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Parallel transport along the geodesic: $\Gamma_{x\to y} v = v + \frac{c\langle y, v\rangle_L}{1 - c\langle x, y\rangle_L}(x + y)$.

        The denominator $1 + \cosh(\sqrt c\, d) \ge 2$ is evaluated as
        $2 + \frac{c}{2}\|x - y\|_L^2$ (no cancellation). An isometry $T_x \to T_y$.
        """
        (x, y, v), dtype = self._operands(x=x, y=y, v=v)
        c = self._c(x)
        diff = x - y
        denom = 2 + c * _minkowski(diff, diff).clamp_min(0) / 2
        return (v + (c * _minkowski(y, v) / denom) * (x + y)).to(dtype)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Vector transport: the exact parallel transport `transp_parallel` (as geoopt's ``Lorentz``)."""
        return self.transp_parallel(x, y, v)

    # --- at the origin ----------------------------------------------------------------------

    def expmap0(self, u: torch.Tensor) -> torch.Tensor:
        r"""$\exp_o u = \big(\cosh(\sqrt c\|u_s\|)/\sqrt c,\ \frac{\sinh(\sqrt c\|u_s\|)}{\sqrt c\|u_s\|}\,u_s\big)$.

        ``u`` ``(..., dim + 1)`` is a tangent vector at the origin $o = (1/\sqrt c, 0, \dots, 0)$:
        its time coordinate is ignored (taken as 0). The time coordinate of the result is
        recomputed from its space part (`projx`). Finite value and gradient at $u = 0$.
        """
        (u,), dtype = self._operands(u=u)
        c = self._c(u)
        root_c = c**0.5
        n = _space_norm(u)
        t = (root_c * n).clamp_max(_t_max(u.dtype))
        small = t < _SERIES_BELOW
        coef = torch.where(small, _sinhc(t), torch.sinh(t) / torch.where(small, 1.0, root_c * n))
        space = coef * u[..., 1:]
        return self._project(torch.cat([torch.zeros_like(u[..., :1]), space], dim=-1), c).to(dtype)

    def logmap0(self, y: torch.Tensor) -> torch.Tensor:
        r"""$\log_o y = \big(0,\ \frac{\operatorname{asinh}(\sqrt c\|y_s\|)}{\sqrt c\|y_s\|}\,y_s\big)$; $\|\log_o y\| = d(o, y)$.

        Reads only the space part (exact far from the origin, series near it).
        """
        (y,), dtype = self._operands(y=y)
        root_c = self._c(y) ** 0.5
        coef = _asinhc(root_c * _space_norm(y))
        return torch.cat([torch.zeros_like(y[..., :1]), coef * y[..., 1:]], dim=-1).to(dtype)

    def dist0(self, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        r"""Distance to the origin: $d(o, y) = \operatorname{asinh}(\sqrt c\|y_s\|)/\sqrt c$."""
        (y,), dtype = self._operands(y=y)
        root_c = self._c(y) ** 0.5
        d = torch.asinh(root_c * _space_norm(y)) / root_c
        return (d if keepdim else d.squeeze(-1)).to(dtype)

    # --- mean and sampling ------------------------------------------------------------------

    def _centroid(self, s: torch.Tensor) -> torch.Tensor:
        r"""Lorentzian centroid of a weighted sum: $s / (\sqrt c \sqrt{-\langle s, s\rangle_L})$.

        A positive combination of points is future time-like, so this lies on the
        hyperboloid (Law et al., 2019); it minimizes $\sum_i w_i \|x_i - m\|_L^2$.
        """
        c = self._c(s)
        norm = nx.safe_sqrt((-_minkowski(s, s)).clamp_min(0))
        return self._project(s / ((c**0.5) * norm), c)

    def random(
        self,
        *size: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r"""Wrapped normal points: $\exp_o(0, g)$, $g \sim \mathcal{N}(0, I_d / d)$ (distance ~1 from $o$).

        ``size`` must end in ``dim + 1``; raises ``ValueError`` otherwise.
        """
        shape = self._full_shape(size)
        dtype = dtype or torch.get_default_dtype()
        g = torch.randn(shape, dtype=nx.working_dtype(dtype), device=device, generator=generator)
        with torch.no_grad():  # a sample, not a function of a learnable curvature
            return self.expmap0(g / math.sqrt(self.dim)).to(dtype)

    random_normal = random

    def origin(
        self, *size: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        r"""The origin $o = (1/\sqrt c, 0, \dots, 0)$, broadcast to ``size`` (ends in ``dim + 1``)."""
        shape = self._full_shape(size)
        o = torch.zeros(shape, dtype=dtype, device=device)
        o[..., 0] = 1 / math.sqrt(self.c)
        return o

    # --- geoopt's checks ----------------------------------------------------------------------

    def _check_point_on_manifold(
        self, x: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5
    ) -> tuple[bool, str | None]:
        """$x_0$ against $\\sqrt{1/c + \\|x_s\\|^2}$, relative to it (coordinates grow like $e^r$)."""
        x = x.to(nx.working_dtype(x.dtype))
        t = self._project(x, self.c)[..., :1]
        err = (x[..., :1] - t).abs() / t
        if not bool((err <= atol + rtol).all()):
            return False, (
                f"`x_0 != sqrt(1/c + |x_s|^2)` with atol={atol}, rtol={rtol} "
                f"(max relative error {float(err.amax()):.3g})"
            )
        return True, None

    def _check_vector_on_tangent(
        self, x: torch.Tensor, u: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5
    ) -> tuple[bool, str | None]:
        """$\\langle x, u\\rangle_L = 0$ relative to $\\|x\\|\\,\\|u\\|$ (Euclidean), the size of the cancelling terms."""
        work = nx.working_dtype(x.dtype)
        x, u = x.to(work), u.to(work)
        dot = _minkowski(x, u).abs()
        size = nx.row_norm(x) * nx.row_norm(u)
        if not bool((dot <= atol * (1 + size) + rtol * size).all()):
            return False, (
                f"`<x, u>_L != 0` with atol={atol}, rtol={rtol} (max |<x, u>_L| = {float(dot.amax()):.3g})"
            )
        return True, None
