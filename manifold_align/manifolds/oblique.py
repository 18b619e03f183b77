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
    for float16/bfloat16 inputs and returns the input dtype.

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

    # --- points and tangent vectors -------------------------------------------------------

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        r"""Closest point, per token: $\pi(X)_i = x_i / \|x_i\|$; a zero token becomes $e_1$."""
        (x,), dtype = self._operands(x=x)
        return nx.normalize(x).to(dtype)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Tangent projection, per token: $(P_X U)_i = u_i - \langle x_i, u_i\rangle x_i$."""
        (x, u), dtype = self._operands(x=x, u=u)
        return nx.proju(x, u).to(dtype)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Riemannian gradient: $\operatorname{grad} f(X) = P_X \nabla f(X)$ (per token)."""
        return self.proju(x, u)

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

    def component_inner(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""Inner product per token: $\langle u_i, v_i\rangle$, shape ``(..., tokens, 1)``.

        Riemannian Adam keeps one second-moment scalar per token, so ``Oblique(k, d)``
        optimizes exactly like ``k`` independent ``Sphere(d)``.
        """
        v = u if v is None else v
        (x, u, v), dtype = self._operands(x=x, u=u, v=v)
        out = nx.row_inner(u, v, keepdim=True)
        return nx.expand_to(out, (*x.shape[:-1], 1)).to(dtype)

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Retraction by per-token normalization: $R_X(U)_i = (x_i + u_i) / \|x_i + u_i\|$."""
        (x, u), dtype = self._operands(x=x, u=u)
        return nx.normalize(x + u, rescale=False).to(dtype)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Exponential map per token: $(\exp_X U)_i = \cos\|u_i\|\, x_i + \frac{\sin\|u_i\|}{\|u_i\|} u_i$.

        Finite value and gradient at $u_i = 0$; renormalized so it stays on the manifold.
        """
        (x, u), dtype = self._operands(x=x, u=u)
        return nx.exp(x, u).to(dtype)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""Logarithmic map per token: $(\log_X Y)_i = \theta_i \frac{P_{x_i}(y_i - x_i)}{\|P_{x_i}(y_i - x_i)\|}$.

        $\theta_i$ is the token angle; $\log_X X = 0$ with a finite gradient. An antipodal
        token ($y_i = -x_i$, log not unique) gets a tangent vector of norm $\pi$ (along the
        rounding-level part of $y_i$ orthogonal to $x_i$, else along $P_{x_i} e_j$ with
        $j = \arg\min |x_{ij}|$): finite, and $\exp$ of it is $y_i$.
        """
        (x, y), dtype = self._operands(x=x, y=y)
        return nx.log(x, y).to(dtype)

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

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Vector transport by projection (as pymanopt), per token: $\mathcal{T}_{X\to Y} V = P_Y V$."""
        (x, y, v), dtype = self._operands(x=x, y=y, v=v)
        return nx.proju(y, v).to(dtype)

    def transp_parallel(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Exact parallel transport per token (an isometry).

        $(\Gamma_{X\to Y} V)_i = v_i - \frac{\langle y_i, v_i\rangle}{1 + \langle x_i, y_i\rangle}(x_i + y_i)$;
        an antipodal token falls back to $P_{y_i} v_i$.
        """
        (x, y, v), dtype = self._operands(x=x, y=y, v=v)
        return nx.parallel_transport(x, y, v).to(dtype)
