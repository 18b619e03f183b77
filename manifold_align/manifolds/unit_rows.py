r"""What the sphere and the oblique manifold share: points whose last axis holds unit vectors.

``Sphere(d)`` has one unit row per point, ``Oblique(k, d)`` has ``k``; sampling, the origin
and geoopt's membership checks act on each row alike, so they live here once.
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
