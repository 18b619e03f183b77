r"""What the sphere and the oblique manifold share: points whose last axis holds unit vectors.

``Sphere(d)`` has one unit row per point, ``Oblique(k, d)`` has ``k``. Every operation that
acts on each row alike lives here once: projection, tangent projection, retraction,
exponential and logarithmic maps, both transports, the per-row inner product, sampling, the
origin and the membership checks. What differs is how rows combine into one point: the
metric ``inner``, ``dist`` and ``dist2`` (one row: the angle; ``k`` rows: the product metric),
which each class defines with its formula table.
"""

from __future__ import annotations

import torch

from manifold_align.manifolds import _numerics as nx
from manifold_align.manifolds.base import ContrastiveManifold

__all__ = ["UnitRows"]


class UnitRows(ContrastiveManifold):
    """Base of manifolds whose point is a stack of unit vectors along the last axis."""

    #: How the check messages name one row of a point and of a tangent vector.
    _row_names: tuple[str, str] = ("x_i", "u_i")

    # --- row-wise operations (row $x_i$ of a point, tangent row $u_i$) ----------------------

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        r"""Closest point, per row: $\pi(x)_i = x_i / \|x_i\|$; a zero row becomes $e_1$."""
        (x,), dtype = self._operands(x=x)
        return nx.normalize(x).to(dtype)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Tangent projection, per row: $(P_x u)_i = u_i - \langle x_i, u_i\rangle x_i$."""
        (x, u), dtype = self._operands(x=x, u=u)
        return nx.proju(x, u).to(dtype)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Riemannian gradient from the Euclidean one: $\operatorname{grad} f = P_x \nabla f$."""
        return self.proju(x, u)

    def component_inner(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""Inner product per row: $\langle u_i, v_i\rangle$, shape ``(..., 1)`` per row
        (``(..., 1)`` for a sphere point, ``(..., tokens, 1)`` for an oblique one).

        Riemannian Adam keeps one second-moment scalar per row, so ``Oblique(k, d)``
        optimizes exactly like ``k`` independent ``Sphere(d)``.
        """
        v = u if v is None else v
        (x, u, v), dtype = self._operands(x=x, u=u, v=v)
        out = nx.row_inner(u, v, keepdim=True)
        return nx.expand_to(out, (*x.shape[:-1], 1)).to(dtype)

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Retraction by normalization, per row: $R_x(u)_i = (x_i + u_i) / \|x_i + u_i\|$
        (a zero sum becomes $e_1$)."""
        (x, u), dtype = self._operands(x=x, u=u)
        return nx.normalize(x + u, rescale=False).to(dtype)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Exponential map per row: $(\exp_x u)_i = \cos\|u_i\|\, x_i + \frac{\sin\|u_i\|}{\|u_i\|} u_i$.

        Finite value and gradient at $u_i = 0$ (series for $\cos$ and $\sin t/t$); the result
        is renormalized so it stays on the manifold for $\|u_i\|$ up to $10^3$ and beyond.
        """
        (x, u), dtype = self._operands(x=x, u=u)
        return nx.exp(x, u).to(dtype)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""Logarithmic map per row: $(\log_x y)_i = \theta_i \frac{P_{x_i}(y_i - x_i)}{\|P_{x_i}(y_i - x_i)\|}$.

        $\theta_i$ is the row angle; $\log_x x = 0$ with a finite gradient. An antipodal row
        ($y_i = -x_i$, log not unique) gets a tangent vector of norm $\pi$ (along the
        rounding-level part of $y_i$ orthogonal to $x_i$, else along $P_{x_i} e_j$ with
        $j = \arg\min |x_{ij}|$): finite, and $\exp$ of it is $y_i$.
        """
        (x, y), dtype = self._operands(x=x, y=y)
        return nx.log(x, y).to(dtype)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Vector transport by projection (as pymanopt), per row: $\mathcal{T}_{x\to y} v = P_y v$.

        Cheap and what the optimizers use; not an isometry. See `transp_parallel`.
        """
        (x, y, v), dtype = self._operands(x=x, y=y, v=v)
        return nx.proju(y, v).to(dtype)

    def transp_parallel(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Exact parallel transport per row along the geodesic (an isometry).

        $(\Gamma_{x\to y} v)_i = v_i - \frac{\langle y_i, v_i\rangle}{1 + \langle x_i, y_i\rangle}(x_i + y_i)$;
        an antipodal row falls back to $P_{y_i} v_i$.
        """
        (x, y, v), dtype = self._operands(x=x, y=y, v=v)
        return nx.parallel_transport(x, y, v).to(dtype)

    # --- sampling ---------------------------------------------------------------------------

    def random(
        self,
        *size: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r"""Uniform random points: each row $x_i = g_i / \|g_i\|$, $g_i \sim \mathcal{N}(0, I_d)$.

        ``size`` is the full shape and must end in ``point_shape`` (geoopt's convention), e.g.
        ``Sphere(d).random(batch, d)`` or ``Oblique(k, d).random(batch, k, d)``.

        Raises:
            ValueError: ``size`` does not end in ``point_shape``.
        """
        shape = self._full_shape(size)
        dtype = dtype or torch.get_default_dtype()
        g = torch.randn(shape, dtype=nx.working_dtype(dtype), device=device, generator=generator)
        return nx.normalize(g).to(dtype)

    random_uniform = random

    def origin(
        self, *size: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        r"""Every row $e_1 = (1, 0, \dots, 0)$, broadcast to ``size`` (which ends in ``point_shape``)."""
        shape = self._full_shape(size)
        return nx.basis_e1(torch.empty(shape, dtype=dtype, device=device)).clone()

    deviation_formula = "max |norm(x_i) - 1|"

    def deviation(self, x: torch.Tensor) -> torch.Tensor:
        r"""$\max_i |\|x_i\| - 1|$ over every row of ``x``, a 0-dim float32 (float64) tensor.

        Raises:
            ValueError: ``x`` does not end in ``point_shape``.
        """
        self._check_trailing(x, "x")
        w = x.detach().to(nx.working_dtype(x.dtype))
        if w.numel() == 0:
            return w.new_zeros(())
        return (torch.linalg.vector_norm(w, dim=-1) - 1).abs().amax()

    # --- geoopt's checks ----------------------------------------------------------------------

    def _check_point_on_manifold(
        self, x: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5
    ) -> tuple[bool, str | None]:
        norms = torch.linalg.vector_norm(x.to(nx.working_dtype(x.dtype)), dim=-1)
        if not torch.allclose(norms, torch.ones_like(norms), atol=atol, rtol=rtol):
            worst = float((norms - 1).abs().amax())
            return (
                False,
                f"`norm({self._row_names[0]}) != 1` with atol={atol}, rtol={rtol} "
                f"(max |norm - 1| = {worst:.3g})",
            )
        return True, None

    def _check_vector_on_tangent(
        self, x: torch.Tensor, u: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5
    ) -> tuple[bool, str | None]:
        dots = nx.row_inner(x.to(nx.working_dtype(x.dtype)), u.to(nx.working_dtype(u.dtype)))
        if not torch.allclose(dots, torch.zeros_like(dots), atol=atol, rtol=rtol):
            worst = float(dots.abs().amax())
            x, u = self._row_names
            return (
                False,
                f"`<{x}, {u}> != 0` with atol={atol}, rtol={rtol} (max |<{x}, {u}>| = {worst:.3g})",
            )
        return True, None
