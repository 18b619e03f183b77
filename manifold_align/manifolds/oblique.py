r"""The oblique manifold $\mathrm{OB}(k, d) = (S^{d-1})^k$: $k$ unit vectors ("tokens") in $\mathbb{R}^d$."""

from __future__ import annotations

import torch

from manifold_align.manifolds import _numerics as nx
from manifold_align.manifolds.base import positive_int
from manifold_align.manifolds.unit_rows import UnitRows

__all__ = ["Oblique"]


class Oblique(UnitRows):
    r"""Product of ``tokens`` unit spheres in $\mathbb{R}^{dim}$; a point is ``(..., tokens, dim)``.

    Each token $x_i$ (a row) has unit norm. The metric is the product metric
    $\langle U, V\rangle_X = \sum_i \langle u_i, v_i\rangle$, so every operation acts on each
    token as `Sphere` does, and the similarity is the sum of the
    per-token cosines, $s(X, Y) = \sum_i \langle x_i, y_i\rangle \in [-k, k]$ (the negative
    inner-product distance). Every operation accepts any leading batch shape, runs in float32
    for float16/bfloat16 inputs and returns the input dtype. The per-token operations are
    `UnitRows`'s; with $P_{x_i} u_i = u_i - \langle x_i, u_i\rangle x_i$:

    | operation | formula |
    |---|---|
    | `projx(X)` | $x_i / \|x_i\|$ per token; $0 \mapsto e_1$ |
    | `proju(X, U)`, `egrad2rgrad(X, G)` | $P_{x_i} u_i$, $P_{x_i} \nabla_i f$ per token |
    | `inner(X, U, V)` | $\sum_i \langle u_i, v_i\rangle$ |
    | `retr(X, U)` | $(x_i + u_i) / \|x_i + u_i\|$ per token |
    | `expmap(X, U)` | $\cos\|u_i\|\, x_i + \frac{\sin\|u_i\|}{\|u_i\|}\, u_i$ per token |
    | `logmap(X, Y)` | $\theta_i\, P_{x_i}(y_i - x_i) / \|P_{x_i}(y_i - x_i)\|$ per token |
    | `dist(X, Y)` | $\sqrt{\sum_i \theta_i^2}$, $\theta_i = 2\,\mathrm{atan2}(\|x_i - y_i\|, \|x_i + y_i\|)$ |
    | `transp(X, Y, V)` | $P_{y_i} v_i$ per token |
    | `transp_parallel(X, Y, V)` | $v_i - \frac{\langle y_i, v_i\rangle}{1 + \langle x_i, y_i\rangle}(x_i + y_i)$ per token |
    | `similarity(X, Y)` | $\sum_i \langle x_i, y_i\rangle \in [-k, k]$ |

    Args:
        tokens: number of tokens $k \ge 1$.
        dim: dimension of each token $d \ge 2$.

    Raises:
        TypeError: an argument is not an integer.
        ValueError: ``tokens < 1`` or ``dim < 2``.
    """

    ndim = 2
    name = "Oblique"
    reversible = False

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.tokens = positive_int(tokens, "tokens", minimum=1)
        self.dim = positive_int(dim, "dim", minimum=2)

    def extra_repr(self) -> str:
        return f"tokens={self.tokens}, dim={self.dim}"

    def __repr__(self) -> str:
        return f"Oblique(tokens={self.tokens}, dim={self.dim})"

    @property
    def point_shape(self) -> tuple[int, ...]:
        """``(tokens, dim)``."""
        return (self.tokens, self.dim)

    @property
    def similarity_range(self) -> tuple[float, float]:
        r"""``(-tokens, tokens)``: $s(X, -X) = -k$, $s(X, X) = k$."""
        return (-float(self.tokens), float(self.tokens))

    def unflatten(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., tokens * dim) -> (..., tokens, dim)``.

        Raises:
            ValueError: the last size is not divisible by ``tokens``, or is, but differs from
                ``tokens * dim``; the message names ``x``, its shape and the expected size.
        """
        n = x.shape[-1] if x.dim() >= 1 else None
        if n is not None and n % self.tokens != 0:
            raise ValueError(
                f"x: flat length {n} (shape {tuple(x.shape)}) is not divisible by tokens={self.tokens}; "
                f"expected {self.flat_dim} = {self.tokens} x {self.dim} for {self!r}"
            )
        if n != self.flat_dim:
            raise ValueError(
                f"x: expected trailing size {self.flat_dim} = {self.tokens} x {self.dim} for {self!r}, "
                f"got shape {tuple(x.shape)}"
            )
        return x.reshape(*x.shape[:-1], self.tokens, self.dim)

    # --- the metric: the tokens combine (the per-token operations are UnitRows') ----------

    def inner(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        v: torch.Tensor | None = None,
        *,
        keepdim: bool = False,
    ) -> torch.Tensor:
        r"""Metric: $\langle U, V\rangle_X = \sum_i \langle u_i, v_i\rangle$ (``v`` defaults to ``u``).

        Shape ``(...)``, or ``(..., 1, 1)`` with ``keepdim``, broadcast to ``x``'s batch shape.
        """
        out = self.component_inner(x, u, v).sum(-2, keepdim=True)
        return out if keepdim else out.squeeze(-1).squeeze(-1)

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        r"""Geodesic distance of the product metric: $d(X, Y) = \sqrt{\sum_i \theta_i^2}$.

        $\theta_i = 2\,\mathrm{atan2}(\|x_i - y_i\|, \|x_i + y_i\|)$; exactly 0 at $X = Y$
        with gradient 0. Shape ``(...)``, or ``(..., 1, 1)`` with ``keepdim``.
        """
        return nx.safe_sqrt(self.dist2(x, y, keepdim=keepdim))

    def dist2(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        r"""Squared geodesic distance $\sum_i \theta_i^2$ (smooth)."""
        (x, y), dtype = self._operands(x=x, y=y)
        out = (nx.angle(x, y) ** 2).sum(-2, keepdim=True)
        return (out if keepdim else out.squeeze(-1).squeeze(-1)).to(dtype)
