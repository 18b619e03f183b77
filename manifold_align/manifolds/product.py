r"""Cartesian product $M_1 \times \dots \times M_n$ of manifolds, points stored flat and concatenated."""

from __future__ import annotations

from collections.abc import Callable

import torch

from manifold_align.manifolds import _numerics as nx
from manifold_align.manifolds.base import ContrastiveManifold

__all__ = ["Product"]


class Product(ContrastiveManifold):
    r"""Product of manifolds with the product metric; a point is ``(..., sum of flat_dim)``.

    A point is the concatenation of its factors' *flattened* points: for
    ``Product(Sphere(3), Oblique(2, 4))`` it is ``(..., 3 + 8)``. Every operation splits
    the last axis into the factors' slices, unflattens each, applies the factor's operation
    and concatenates the flattened results. Hence
    $\langle u, v\rangle = \sum_j \langle u^{(j)}, v^{(j)}\rangle_j$,
    $d(x, y) = \sqrt{\sum_j d_j(x^{(j)}, y^{(j)})^2}$ and the similarity is the sum of the
    factors' similarities (``flatten(x) @ flatten(y).mT`` when every factor is bilinear;
    with a `Lorentz` factor, its negative distance plus the other factors' matmul), with
    range the sum of their ranges: ``Product(Sphere(64), Lorentz(64))`` spans
    $[-1 - 2r, 1]$ for Lorentz radius $r$ (unbounded below for $r = \infty$), so the
    sphere's cosine is a bounded bonus on top of a hyperbolic distance. A learnable
    curvature of a factor is the product's parameter too (`clamp_` projects every factor's).
    Half-precision inputs are computed in float32 and returned in their dtype.

    Args:
        *manifolds: the factors, each a `ContrastiveManifold` (a ``Product`` too).

    Raises:
        ValueError: no factor given.
        TypeError: a factor is not a ``ContrastiveManifold``.
    """

    ndim = 1
    name = "Product"

    def __init__(self, *manifolds: ContrastiveManifold) -> None:
        super().__init__()
        if not manifolds:
            raise ValueError("manifolds: expected at least one factor, got none")
        for i, m in enumerate(manifolds):
            if not isinstance(m, ContrastiveManifold):
                raise TypeError(
                    f"manifolds[{i}]: expected a ContrastiveManifold (Sphere, Oblique, Lorentz, "
                    f"Product, Euclidean), got {type(m).__name__}"
                )
        self.factors = torch.nn.ModuleList(manifolds)
        self._sizes = [m.flat_dim for m in manifolds]
        self.reversible = all(m.reversible for m in manifolds)
        self.bilinear = all(m.bilinear for m in manifolds)

    def __repr__(self) -> str:
        return f"Product({', '.join(repr(m) for m in self.factors)})"

    @property
    def point_shape(self) -> tuple[int, ...]:
        """``(sum of the factors' flat_dim,)``."""
        return (sum(self._sizes),)

    @property
    def similarity_range(self) -> tuple[float, float]:
        """Sum of the factors' ranges, e.g. ``(-2, 2)`` for two spheres."""
        ranges = [m.similarity_range for m in self.factors]
        return (sum(lo for lo, _ in ranges), sum(hi for _, hi in ranges))

    def _pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Flat matmul when every factor is bilinear, else the sum of the factors' own."""
        if self.bilinear:
            return x @ y.mT
        xs, ys = torch.split(x, self._sizes, dim=-1), torch.split(y, self._sizes, dim=-1)
        return sum(m._pairwise(a, b) for m, a, b in zip(self.factors, xs, ys, strict=True))

    def _centroid(self, s: torch.Tensor) -> torch.Tensor:
        """Each factor's own centroid map on its part of the weighted sum."""
        return self.join([m._centroid(p) for m, p in zip(self.factors, self.split(s), strict=True)])

    def clamp_(self) -> None:
        """Every factor's `clamp_` (learnable curvatures into their bounds)."""
        for m in self.factors:
            m.clamp_()

    # --- splitting ------------------------------------------------------------------------------

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(..., flat_dim) -> [(..., *factor.point_shape), ...]``: the factors' parts of ``x``."""
        self._check_trailing(x, "x")
        parts = torch.split(x, self._sizes, dim=-1)
        return [m.unflatten(p) for m, p in zip(self.factors, parts, strict=True)]

    def join(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Inverse of `split`: flatten each factor's part and concatenate on the last axis."""
        flat = [m.flatten(p) for m, p in zip(self.factors, parts, strict=True)]
        batch = nx.broadcast_shape(*(tuple(f.shape[:-1]) for f in flat))
        return torch.cat([nx.expand_to(f, (*batch, 1)) for f in flat], dim=-1)

    def _map(self, op: Callable[..., torch.Tensor], **named: torch.Tensor) -> torch.Tensor:
        """Apply ``op(factor, *parts)`` per factor to the named tensors and join the results."""
        tensors, dtype = self._operands(**named)
        split = [self.split(t) for t in tensors]
        out = [op(m, *parts) for m, *parts in zip(self.factors, *split, strict=True)]
        return self.join(out).to(dtype)

    def _reduce(
        self, op: Callable[..., torch.Tensor], keepdim: bool, **named: torch.Tensor
    ) -> torch.Tensor:
        """Sum ``op(factor, *parts)`` (each of shape ``(...)``) over the factors; ``keepdim`` -> ``(..., 1)``."""
        tensors, dtype = self._operands(**named)
        split = [self.split(t) for t in tensors]
        out = sum(op(m, *parts) for m, *parts in zip(self.factors, *split, strict=True))
        return (out.unsqueeze(-1) if keepdim else out).to(dtype)

    # --- points and tangent vectors -------------------------------------------------------

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        r"""Per factor: $\pi(x) = (\pi_1(x^{(1)}), \dots, \pi_n(x^{(n)}))$."""
        return self._map(lambda m, x: m.projx(x), x=x)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Per factor: $P_x u = (P_{x^{(j)}} u^{(j)})_j$."""
        return self._map(lambda m, x, u: m.proju(x, u), x=x, u=u)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Per factor: $\operatorname{grad} f = (\operatorname{grad}_j f)_j$."""
        return self._map(lambda m, x, u: m.egrad2rgrad(x, u), x=x, u=u)

    def inner(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        v: torch.Tensor | None = None,
        *,
        keepdim: bool = False,
    ) -> torch.Tensor:
        r"""$\langle u, v\rangle_x = \sum_j \langle u^{(j)}, v^{(j)}\rangle_{x^{(j)}}$; ``(...)`` or ``(..., 1)``."""
        v = u if v is None else v
        return self._reduce(lambda m, x, u, v: m.inner(x, u, v), keepdim, x=x, u=u, v=v)

    def component_inner(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Each factor's ``component_inner``, expanded over its slice: shape ``(..., flat_dim)``.

        A ``Product`` of ``k`` ``Sphere(d)`` thus gives Riemannian Adam the same per-component
        second moments as ``Oblique(k, d)``.
        """
        v = u if v is None else v

        def per_factor(
            m: ContrastiveManifold, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor
        ) -> torch.Tensor:
            c = m.component_inner(x, u, v)
            return nx.expand_to(c, x.shape)

        return self._map(per_factor, x=x, u=u, v=v)

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Per factor: $R_x(u) = (R_{x^{(j)}}(u^{(j)}))_j$."""
        return self._map(lambda m, x, u: m.retr(x, u), x=x, u=u)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Per factor: $\exp_x u = (\exp_{x^{(j)}} u^{(j)})_j$."""
        return self._map(lambda m, x, u: m.expmap(x, u), x=x, u=u)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""Per factor: $\log_x y = (\log_{x^{(j)}} y^{(j)})_j$ (see each factor for antipodal parts)."""
        return self._map(lambda m, x, y: m.logmap(x, y), x=x, y=y)

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        r"""$d(x, y) = \sqrt{\sum_j d_j(x^{(j)}, y^{(j)})^2}$, gradient 0 at $x = y$."""
        return nx.safe_sqrt(self.dist2(x, y, keepdim=keepdim))

    def dist2(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        r"""$d(x, y)^2 = \sum_j d_j(x^{(j)}, y^{(j)})^2$."""
        return self._reduce(lambda m, x, y: m.dist2(x, y), keepdim, x=x, y=y)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Per factor: $\mathcal{T}_{x\to y} v = (\mathcal{T}_j v^{(j)})_j$ (projection on spheres)."""
        return self._map(lambda m, x, y, v: m.transp(x, y, v), x=x, y=y, v=v)

    def transp_parallel(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Per factor exact parallel transport $(\Gamma_j v^{(j)})_j$ (an isometry)."""
        return self._map(lambda m, x, y, v: m.transp_parallel(x, y, v), x=x, y=y, v=v)

    # --- sampling ---------------------------------------------------------------------------

    def random(
        self,
        *size: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Each factor's ``random`` (uniform on compact factors), flattened and concatenated.

        ``size`` must end in ``flat_dim``; raises ``ValueError`` otherwise.
        """
        batch = self._full_shape(size)[:-1]
        return self.join(
            [
                m.random(*batch, *m.point_shape, dtype=dtype, device=device, generator=generator)
                for m in self.factors
            ]
        )

    def origin(
        self, *size: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Each factor's ``origin``, flattened and concatenated; ``size`` ends in ``flat_dim``."""
        batch = self._full_shape(size)[:-1]
        return self.join(
            [m.origin(*batch, *m.point_shape, dtype=dtype, device=device) for m in self.factors]
        )

    @property
    def deviation_formula(self) -> str:  # type: ignore[override]
        """The factors' formulas: ``max of (Sphere(dim=3): max |norm(x_i) - 1|, ...)``."""
        return "max of (" + ", ".join(f"{m!r}: {m.deviation_formula}" for m in self.factors) + ")"

    def deviation(self, x: torch.Tensor) -> torch.Tensor:
        r"""The largest of the factors' deviations, $\max_j \operatorname{dev}_j(x^{(j)})$ (NaN wins).

        Raises:
            ValueError: ``x`` does not end in ``point_shape``.
        """
        devs = [m.deviation(p) for m, p in zip(self.factors, self.split(x), strict=True)]
        return torch.stack(devs).amax()

    # --- geoopt's checks ----------------------------------------------------------------------

    def _check_point_on_manifold(
        self, x: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5
    ) -> tuple[bool, str | None]:
        for i, (m, p) in enumerate(zip(self.factors, self.split(x), strict=True)):
            ok, reason = m._check_point_on_manifold(p, atol=atol, rtol=rtol)
            if not ok:
                return False, f"factor {i} ({m!r}): {reason}"
        return True, None

    def _check_vector_on_tangent(
        self, x: torch.Tensor, u: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5
    ) -> tuple[bool, str | None]:
        parts = zip(self.factors, self.split(x), self.split(u), strict=True)
        for i, (m, p, v) in enumerate(parts):
            ok, reason = m._check_vector_on_tangent(p, v, atol=atol, rtol=rtol)
            if not ok:
                return False, f"factor {i} ({m!r}): {reason}"
        return True, None
