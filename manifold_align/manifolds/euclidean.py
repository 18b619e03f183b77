r"""Flat space $\mathbb{R}^d$: the unconstrained baseline (and a factor for `Product`)."""

from __future__ import annotations

import torch

from manifold_align.manifolds import _numerics as nx
from manifold_align.manifolds.base import ContrastiveManifold, positive_int

__all__ = ["Euclidean"]


class Euclidean(ContrastiveManifold):
    r"""$\mathbb{R}^{dim}$ with the standard metric; a point is any tensor ``(..., dim)``.

    Every operation is the flat one (projections are the identity, $\exp_x u = x + u$).
    The similarity is the plain inner product $s(x, y) = \langle x, y\rangle$, unbounded.
    Half-precision inputs are computed in float32 and returned in their dtype.

    Args:
        dim: dimension $d \ge 1$.

    Raises:
        TypeError: ``dim`` is not an integer.
        ValueError: ``dim < 1``.
    """

    ndim = 1
    name = "Euclidean"
    reversible = True

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = positive_int(dim, "dim", minimum=1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def __repr__(self) -> str:
        return f"Euclidean(dim={self.dim})"

    @property
    def point_shape(self) -> tuple[int, ...]:
        """``(dim,)``."""
        return (self.dim,)

    @property
    def similarity_range(self) -> tuple[float, float]:
        """``(-inf, inf)``: the inner product is unbounded."""
        return (-float("inf"), float("inf"))

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        r"""$\pi(x) = x$ (checked, returned as given)."""
        self._operands(x=x)
        return x

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""$P_x u = u$ (broadcast to ``x``'s batch shape)."""
        self._operands(x=x, u=u)
        return nx.expand_to(u, x.shape)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""$\operatorname{grad} f = \nabla f$."""
        return self.proju(x, u)

    def inner(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        v: torch.Tensor | None = None,
        *,
        keepdim: bool = False,
    ) -> torch.Tensor:
        r"""$\langle u, v\rangle = \sum_j u_j v_j$; shape ``(...)`` or ``(..., 1)`` with ``keepdim``."""
        v = u if v is None else v
        (x, u, v), dtype = self._operands(x=x, u=u, v=v)
        out = nx.row_inner(u, v, keepdim=True)
        out = nx.expand_to(out, (*x.shape[:-1], 1))
        return (out if keepdim else out.squeeze(-1)).to(dtype)

    def component_inner(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""Per-coordinate products $u_j v_j$, shape ``(..., dim)``: Riemannian Adam on
        ``Euclidean`` is then exactly Euclidean Adam (one second moment per coordinate)."""
        v = u if v is None else v
        (x, u, v), dtype = self._operands(x=x, u=u, v=v)
        out = u * v
        return nx.expand_to(out, x.shape).to(dtype)

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""$R_x(u) = x + u$."""
        (x, u), dtype = self._operands(x=x, u=u)
        return (x + u).to(dtype)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""$\exp_x u = x + u$."""
        return self.retr(x, u)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""$\log_x y = y - x$."""
        (x, y), dtype = self._operands(x=x, y=y)
        return (y - x).to(dtype)

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        r"""$d(x, y) = \|x - y\|$ (gradient 0 at $x = y$); ``(...)`` or ``(..., 1)``."""
        (x, y), dtype = self._operands(x=x, y=y)
        out = nx.row_norm(x - y, keepdim=keepdim)
        return out.to(dtype)

    def dist2(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        r"""$d(x, y)^2 = \|x - y\|^2$."""
        (x, y), dtype = self._operands(x=x, y=y)
        return nx.row_inner(x - y, x - y, keepdim=keepdim).to(dtype)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""$\mathcal{T}_{x\to y} v = v$ (broadcast to the batch shape of ``x`` and ``y``)."""
        self._operands(x=x, y=y, v=v)
        return nx.expand_to(v, x.shape, y.shape)

    def transp_parallel(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Parallel transport in flat space is the identity: $\Gamma_{x\to y} v = v$."""
        return self.transp(x, y, v)

    def random(
        self,
        *size: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r"""Standard normal points $x \sim \mathcal{N}(0, I_d)$ (there is no uniform law on
        $\mathbb{R}^d$); ``size`` must end in ``dim``."""
        shape = self._full_shape(size)
        dtype = dtype or torch.get_default_dtype()
        return torch.randn(
            shape, dtype=nx.working_dtype(dtype), device=device, generator=generator
        ).to(dtype)

    random_normal = random

    def origin(
        self, *size: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """The zero vector; ``size`` must end in ``dim``."""
        return torch.zeros(self._full_shape(size), dtype=dtype, device=device)

    def _check_point_on_manifold(
        self, x: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5
    ) -> tuple[bool, str | None]:
        return True, None

    def _check_vector_on_tangent(
        self, x: torch.Tensor, u: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5
    ) -> tuple[bool, str | None]:
        return True, None
