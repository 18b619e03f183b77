r"""The unit sphere $S^{d-1} = \{x \in \mathbb{R}^d : \|x\| = 1\}$, the geometry of CLIP's cosine."""

from __future__ import annotations

import torch

from manifold_align.manifolds import _numerics as nx
from manifold_align.manifolds.base import positive_int
from manifold_align.manifolds.unit_rows import UnitRows

__all__ = ["Sphere"]


class Sphere(UnitRows):
    r"""Unit sphere in $\mathbb{R}^d$; a point is a tensor ``(..., dim)`` of unit norm.

    The metric is the one induced by $\mathbb{R}^d$; the similarity is the cosine
    $s(x, y) = \langle x, y\rangle \in [-1, 1]$. Every operation accepts any leading batch
    shape (broadcast between arguments), runs in float32 for float16/bfloat16 inputs and
    returns the input dtype.

    Args:
        dim: ambient dimension $d \ge 2$.

    Raises:
        TypeError: ``dim`` is not an integer.
        ValueError: ``dim < 2`` (the sphere in $\mathbb{R}^1$ is two isolated points).
    """

    ndim = 1
    name = "Sphere"
    _row_names = ("x", "u")
    reversible = False

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = positive_int(dim, "dim", minimum=2)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def __repr__(self) -> str:
        return f"Sphere(dim={self.dim})"

    @property
    def point_shape(self) -> tuple[int, ...]:
        """``(dim,)``."""
        return (self.dim,)

    @property
    def similarity_range(self) -> tuple[float, float]:
        r"""``(-1.0, 1.0)``: $\langle x, -x\rangle = -1$, $\langle x, x\rangle = 1$."""
        return (-1.0, 1.0)

    # --- points and tangent vectors -------------------------------------------------------

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        r"""Closest point: $\pi(x) = x / \|x\|$; $\pi(0) = e_1$. ``(..., d) -> (..., d)``."""
        (x,), dtype = self._operands(x=x)
        return nx.normalize(x).to(dtype)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Tangent projection: $P_x u = u - \langle x, u\rangle x$. ``(..., d)`` each."""
        (x, u), dtype = self._operands(x=x, u=u)
        return nx.proju(x, u).to(dtype)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Riemannian gradient from the Euclidean one: $\operatorname{grad} f = P_x \nabla f$."""
        return self.proju(x, u)

    def inner(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        v: torch.Tensor | None = None,
        *,
        keepdim: bool = False,
    ) -> torch.Tensor:
        r"""Metric: $\langle u, v\rangle_x = \sum_j u_j v_j$ (``v`` defaults to ``u``).

        Shape ``(...)``, or ``(..., 1)`` with ``keepdim``, broadcast to ``x``'s batch shape.
        """
        v = u if v is None else v
        (x, u, v), dtype = self._operands(x=x, u=u, v=v)
        out = nx.row_inner(u, v, keepdim=True)
        out = nx.expand_to(out, (*x.shape[:-1], 1))
        return (out if keepdim else out.squeeze(-1)).to(dtype)

    def component_inner(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""Inner product per component (the whole row): $\langle u, v\rangle_x$, shape ``(..., 1)``.

        Riemannian Adam keeps one second-moment scalar per component.
        """
        return self.inner(x, u, v, keepdim=True)

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Retraction by normalization: $R_x(u) = (x + u) / \|x + u\|$ (zero sum -> $e_1$)."""
        (x, u), dtype = self._operands(x=x, u=u)
        return nx.normalize(x + u, rescale=False).to(dtype)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Exponential map: $\exp_x u = \cos\|u\|\, x + \frac{\sin\|u\|}{\|u\|}\, u$.

        Finite value and gradient at $u = 0$ (series for $\cos$ and $\sin t/t$); the result
        is renormalized so it stays on the sphere for $\|u\|$ up to $10^3$ and beyond.
        """
        (x, u), dtype = self._operands(x=x, u=u)
        return nx.exp(x, u).to(dtype)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""Logarithmic map: $\log_x y = \theta\, \frac{P_x(y - x)}{\|P_x(y - x)\|}$, $\theta = d(x, y)$.

        $\log_x x = 0$ with a finite gradient. For antipodal points ($y = -x$, where the log
        is not unique) it returns a tangent vector of norm $\pi$, along the rounding-level
        part of $y$ orthogonal to $x$ if any, else along $P_x e_j$, $j = \arg\min_i |x_i|$.
        """
        (x, y), dtype = self._operands(x=x, y=y)
        return nx.log(x, y).to(dtype)

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        r"""Geodesic distance (angle): $d(x, y) = 2\,\mathrm{atan2}(\|x - y\|, \|x + y\|) \in [0, \pi]$.

        Exactly 0 for $x = y$ (``acos`` gives ~0.014 in float32) with gradient 0 there.
        Shape ``(...)``, or ``(..., 1)`` with ``keepdim``.
        """
        (x, y), dtype = self._operands(x=x, y=y)
        theta = nx.angle(x, y)
        return (theta if keepdim else theta.squeeze(-1)).to(dtype)

    def dist2(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        r"""Squared geodesic distance $d(x, y)^2$ (smooth, gradient 0 at $x = y$)."""
        return self.dist(x, y, keepdim=keepdim) ** 2

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Vector transport by projection (as pymanopt): $\mathcal{T}_{x\to y} v = P_y v$.

        Cheap and what the optimizers use; not an isometry. See `transp_parallel`.
        """
        (x, y, v), dtype = self._operands(x=x, y=y, v=v)
        return nx.proju(y, v).to(dtype)

    def transp_parallel(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Exact parallel transport along the geodesic from $x$ to $y$ (an isometry).

        $\Gamma_{x\to y} v = v - \frac{\langle y, v\rangle}{1 + \langle x, y\rangle}(x + y)$;
        at antipodal points (geodesic not unique) it falls back to $P_y v$.
        """
        (x, y, v), dtype = self._operands(x=x, y=y, v=v)
        return nx.parallel_transport(x, y, v).to(dtype)
