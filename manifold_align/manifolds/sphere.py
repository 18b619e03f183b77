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
    returns the input dtype. The row-wise operations are `UnitRows`'s with one row; with
    $P_x u = u - \langle x, u\rangle x$:

    | operation | formula |
    |---|---|
    | `projx(x)` | $x / \|x\|$; $0 \mapsto e_1$ |
    | `proju(x, u)`, `egrad2rgrad(x, g)` | $P_x u$, $P_x \nabla f$ |
    | `inner(x, u, v)` | $\langle u, v\rangle$ |
    | `retr(x, u)` | $(x + u) / \|x + u\|$ |
    | `expmap(x, u)` | $\cos\|u\|\, x + \frac{\sin\|u\|}{\|u\|}\, u$ |
    | `logmap(x, y)` | $\theta\, P_x(y - x) / \|P_x(y - x)\|$, $\theta = d(x, y)$ |
    | `dist(x, y)` | $\theta = 2\,\mathrm{atan2}(\|x - y\|, \|x + y\|)$ |
    | `transp(x, y, v)` | $P_y v$ |
    | `transp_parallel(x, y, v)` | $v - \frac{\langle y, v\rangle}{1 + \langle x, y\rangle}(x + y)$ |
    | `similarity(x, y)` | $\langle x, y\rangle \in [-1, 1]$ |

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

    # --- the metric (the row-wise operations are UnitRows') -------------------------------

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
        out = self.component_inner(x, u, v)
        return out if keepdim else out.squeeze(-1)

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
