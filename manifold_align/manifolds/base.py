"""The contract every manifold of this library fulfils, on top of geoopt's ``Manifold``.

geoopt supplies the Riemannian side (``projx``, ``proju``, ``egrad2rgrad``, ``inner``,
``retr``, ``expmap``, ``logmap``, ``dist``, ``transp``, ``random``, point/tangent checks), so
``geoopt.ManifoldParameter`` and ``geoopt.optim.RiemannianAdam`` work unchanged. This class
adds the *contrastive* side that geoopt lacks:

* ``point_shape``: the trailing shape of one point, e.g. ``(d,)`` or ``(k, d)``.
* ``similarity(x, y)``: the matrix of similarities ``s(x_i, y_j)`` under the manifold's
  endowed distance, one matrix multiply on flattened points.
* ``similarity_range``: ``(low, high)``, the bounds ``s`` can reach.
* ``mean(x, dim, weights)``: a weighted mean that lands on the manifold.

It also holds what every manifold shares: input checking (`_operands`: trailing shape,
dtype and device agreement, float32 arithmetic for half-precision inputs), the similarity as
one matrix multiply, the extrinsic and Karcher means built from the manifold's own
``projx``/``expmap``/``logmap``, and a norm with a finite gradient at zero.
"""

from __future__ import annotations

import abc
import math
import operator
import warnings

import torch

# geoopt 0.5.1 decorates helpers with torch.jit.script, which torch 2.13 (DeprecationWarning)
# and 2.14 (FutureWarning) warn about at import: silence exactly that message, for this import.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated")
    import geoopt

from manifold_align.manifolds._numerics import broadcast_shape, safe_sqrt, working_dtype

__all__ = ["MEMBERSHIP_ATOL", "ContrastiveManifold", "positive_int"]

# Karcher mean: at most this many Riemannian gradient steps (step size 1) from the extrinsic mean.
_KARCHER_MAX_STEPS = 100


#: Default ``atol`` of `ContrastiveManifold.check_membership`, for every dtype. It tolerates
#: the rounding of any float format: a unit vector normalised in bfloat16 arithmetic is off
#: by up to about ``5e-3``, and features are often rounded to 16 bits and cast back to
#: float32. It catches features that were never put on the manifold (norms of 0.3 or 20),
#: which move similarities out of their range; rounding moves them by a relative ``1e-2``.
MEMBERSHIP_ATOL = 1e-2


def positive_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` >= ``minimum`` (constructor arguments).

    Raises:
        TypeError: ``value`` is not an integer (``bool`` is refused), naming ``name``.
        ValueError: ``value < minimum``, naming ``name``.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {value!r}") from None
    if n < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {n}")
    return n


class ContrastiveManifold(geoopt.Manifold, metaclass=abc.ABCMeta):
    """A geoopt manifold with a contrastive similarity.

    Subclasses set ``ndim = len(point_shape)`` and implement geoopt's abstract methods
    (``projx``, ``proju``, ``egrad2rgrad``, ``inner``, ``retr``, ``expmap``, point/tangent
    checks) plus ``logmap``, ``dist``, ``dist2``, ``transp``, `transp_parallel`,
    ``component_inner``, ``random``, ``origin``, `point_shape` and `similarity_range`.
    `similarity`, `mean`, `norm`, `flatten`/`unflatten` and the input checks are shared here.
    """

    @property
    @abc.abstractmethod
    def point_shape(self) -> tuple[int, ...]:
        """Trailing shape of one point, e.g. ``(dim,)`` for a sphere, ``(tokens, dim)`` oblique."""

    @property
    def flat_dim(self) -> int:
        """Number of coordinates of one point, ``prod(point_shape)``."""
        n = 1
        for s in self.point_shape:
            n *= s
        return n

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., *point_shape) -> (..., flat_dim)``; raises ``ValueError`` on a wrong trailing shape.

        For every manifold here ``similarity(x, y) == flatten(x) @ flatten(y).T``, which is what
        lets the losses (dense, tiled, distributed) work on flat features.
        """
        self._check_trailing(x, "x")
        return x.reshape(*x.shape[: x.dim() - len(self.point_shape)], self.flat_dim)

    def unflatten(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., flat_dim) -> (..., *point_shape)``; raises ``ValueError`` if the last size differs."""
        if x.dim() < 1 or x.shape[-1] != self.flat_dim:
            raise ValueError(
                f"x: expected trailing size {self.flat_dim} = prod{self.point_shape} for {self!r}, "
                f"got shape {tuple(x.shape)}"
            )
        return x.reshape(*x.shape[:-1], *self.point_shape)

    def _check_trailing(self, x: torch.Tensor, name: str) -> None:
        """Raise ``ValueError`` naming ``name`` unless ``x.shape`` ends with ``point_shape``."""
        ps = tuple(self.point_shape)
        if x.dim() < len(ps) or tuple(x.shape[x.dim() - len(ps) :]) != ps:
            raise ValueError(
                f"{name}: expected shape (..., {', '.join(map(str, ps))}) for {self!r}, "
                f"got {tuple(x.shape)}"
            )

    # --- membership -------------------------------------------------------------------------

    #: What `deviation` measures, as the membership error states it.
    deviation_formula: str = "max |projx(x) - x|"

    def deviation(self, x: torch.Tensor) -> torch.Tensor:
        r"""How far the points ``x`` are from the manifold: a 0-dim float32 (float64) tensor.

        Here the largest coordinate moved by the projection, $\max |\pi(x) - x|$; manifolds
        with a cheaper residual override it (a unit row: $\max_i |\|x_i\| - 1|$). It is 0 on
        the manifold, NaN when ``x`` holds NaN, and needs no device synchronisation (nothing
        is read back). ``x``: ``(..., *point_shape)``.

        Raises:
            ValueError: ``x`` does not end in ``point_shape``.
        """
        self._check_trailing(x, "x")
        if x.numel() == 0:
            return torch.zeros((), dtype=working_dtype(x.dtype), device=x.device)
        w = x.detach().to(working_dtype(x.dtype))
        return (self.projx(w) - w).abs().amax()

    def check_membership(self, x: torch.Tensor, name: str, atol: float | None = None) -> None:
        """Raise unless every point of ``x`` is on the manifold within ``atol``.

        ``atol`` defaults to `MEMBERSHIP_ATOL` (``1e-2``: any float format's rounding passes,
        unnormalised features fail). Reading the deviation back costs one device
        synchronisation.

        Non-finite points (a NaN or Inf deviation) pass: naming them is the job of the
        losses' ``check_finite`` and of the trainer's guard, which reports the step.

        Raises:
            ValueError: the `deviation` is finite and exceeds ``atol``, naming ``name``, the
                deviation and the tolerance.
        """
        tol = MEMBERSHIP_ATOL if atol is None else float(atol)
        with torch.no_grad():  # a check, not part of the graph (a learnable curvature needs grad)
            dev = float(self.deviation(x.detach()))
        if math.isfinite(dev) and dev > tol:  # NaN/Inf: check_finite's and the guard's to name
            raise ValueError(
                f"{name}: not on {self!r}: {self.deviation_formula} = {dev:.3g} exceeds the "
                f"tolerance {tol:g}; map features onto the manifold with "
                f"manifold.projx(...) first"
            )

    @abc.abstractmethod
    def transp_parallel(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Exact parallel transport of tangent ``v`` from ``x`` to ``y`` along the minimizing
        geodesic (an isometry $T_x \\to T_y$); ``transp`` may be a cheaper vector transport."""

    @property
    @abc.abstractmethod
    def similarity_range(self) -> tuple[float, float]:
        """``(low, high)``: the closed range of `similarity` on this manifold."""

    def similarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Pairwise similarity matrix $S = \\mathrm{flat}(x)\\,\\mathrm{flat}(y)^\\top$
        (for a manifold that is not `bilinear`, its own one-matmul form, e.g. `Lorentz`).

        Shapes: ``x`` is ``(*batch, N, *point_shape)``, ``y`` is ``(*batch, M, *point_shape)``
        (``batch`` broadcastable), result ``(*batch, N, M)``. Computed in float32 even under
        ``torch.autocast`` (float16/bfloat16 inputs are upcast and the result is float32;
        float64 stays float64) as one matrix multiply of the flattened points; never a
        ``(N, M, k)`` intermediate.

        Raises:
            ValueError: ``x`` or ``y`` lacks the ``N``/``M`` axis or ends in the wrong shape.
            TypeError: ``x`` and ``y`` differ in dtype or device, or are not floating point.
        """
        for name, t in (("x", x), ("y", y)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
            if t.dim() < len(self.point_shape) + 1:
                ps = ", ".join(map(str, self.point_shape))
                raise ValueError(
                    f"{name}: expected shape (..., n, {ps}) for {self!r} (a batch of points), "
                    f"got {tuple(t.shape)}"
                )
        self._check_alike(x=x, y=y)
        k = len(self.point_shape) + 1
        if broadcast_shape(tuple(x.shape[: x.dim() - k]), tuple(y.shape[: y.dim() - k])) is None:
            raise ValueError(
                f"x, y: leading batch shapes do not broadcast (got x {tuple(x.shape)}, "
                f"y {tuple(y.shape)}); expected (*batch, N, ...) and (*batch, M, ...)"
            )
        work = working_dtype(x.dtype)
        x, y = x.to(work), y.to(work)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._pairwise(self.flatten(x), self.flatten(y))

    #: ``True`` when ``similarity(x, y) == flatten(x) @ flatten(y).mT`` (so scaling a point
    #: scales its similarities, which the tiled losses rely on); ``Lorentz`` is not bilinear.
    bilinear: bool = True

    def _pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Similarity of checked flat points ``(*b, N, D), (*b, M, D) -> (*b, N, M)``; the flat
        matmul unless a non-`bilinear` manifold overrides it."""
        return x @ y.mT

    def _centroid(self, s: torch.Tensor) -> torch.Tensor:
        """The extrinsic mean's last step: a weighted average of points onto the manifold
        (`projx` unless a manifold has a better-suited map, as `Lorentz` does)."""
        return self.projx(s)

    def clamp_(self) -> None:
        """Project learnable geometry parameters into their bounds after an optimizer step
        (a no-op here; `Lorentz` with a learnable curvature, and `Product` of it, override)."""

    def mean(
        self,
        x: torch.Tensor,
        dim: int = 0,
        weights: torch.Tensor | None = None,
        *,
        karcher: bool = False,
    ) -> torch.Tensor:
        """Weighted mean of points along batch dimension ``dim``, returned on the manifold.

        Extrinsic (default): $\\bar x = \\pi\\big(\\sum_i w_i x_i / \\sum_i w_i\\big)$ with
        $\\pi$ = `projx` (per-token normalization on spheres; a token whose
        weighted sum is exactly zero becomes $e_1$, as ``projx(0)`` does).
        ``karcher=True``: the Riemannian (Karcher) mean
        $\\arg\\min_m \\sum_i w_i\\, d(m, x_i)^2$, by Riemannian gradient steps
        $m \\leftarrow \\exp_m\\big(\\sum_i w_i \\log_m x_i / \\sum_i w_i\\big)$ started at the
        extrinsic mean (at most 100, stopping once the step is below rounding level). It is
        unique when the points lie in an open hemisphere per token.

        Shapes: ``x`` ``(..., n, ..., *point_shape)`` with ``n`` at ``dim`` -> ``x`` without
        ``dim``; ``weights`` ``(n,)``, non-negative with a positive sum. Half-precision inputs
        are averaged in float32 and returned in their dtype.

        Raises:
            ValueError: ``dim`` is not a batch dimension of ``x``, ``x`` has no point along
                ``dim`` (the mean of an empty set), ``x`` has a wrong trailing
                shape, or ``weights`` has the wrong shape, a negative or non-finite entry or a
                zero sum.
            TypeError: ``weights`` is not a floating-point tensor on ``x``'s device.
        """
        (xw,), dtype = self._operands(x=x)
        batch_dims = xw.dim() - len(self.point_shape)
        if not -xw.dim() <= dim < xw.dim() or dim % xw.dim() >= batch_dims:
            raise ValueError(
                f"dim: expected a batch dimension of x (one of {list(range(batch_dims))}), "
                f"got {dim} for x of shape {tuple(xw.shape)} on {self!r}"
            )
        dim = dim % xw.dim()
        n = xw.shape[dim]
        if n == 0:
            raise ValueError(
                f"x: expected at least one point along dim {dim}, got 0 (shape "
                f"{tuple(xw.shape)}); the mean of an empty set is undefined"
            )
        if weights is None:
            w = torch.ones(n, dtype=xw.dtype, device=xw.device)
        else:
            if not isinstance(weights, torch.Tensor) or not weights.is_floating_point():
                raise TypeError(f"weights: expected a floating-point tensor, got {weights!r:.80}")
            if weights.device != xw.device:
                raise TypeError(
                    f"weights: on {weights.device}, x on {xw.device}; expected the same device"
                )
            if tuple(weights.shape) != (n,):
                raise ValueError(
                    f"weights: expected shape ({n},) (x.shape[{dim}]), got {tuple(weights.shape)}"
                )
            w = weights.to(xw.dtype)
            if not bool(torch.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
                raise ValueError(
                    f"weights: expected finite, non-negative entries with a positive sum, got {weights}"
                )
        w = (w / w.sum()).reshape(n, *([1] * (xw.dim() - dim - 1)))
        m = self._centroid((w * xw).sum(dim))
        if karcher:
            # Rounding level of a step: eps times the points' magnitude (1 on spheres).
            tol = 16 * torch.finfo(xw.dtype).eps * max(1.0, float(xw.abs().amax()))
            for _ in range(_KARCHER_MAX_STEPS):
                step = (w * self.logmap(m.unsqueeze(dim), xw)).sum(dim)
                m = self.expmap(m, step)
                if float(step.abs().amax()) <= tol:
                    break
        return m.to(dtype)

    def norm(self, x: torch.Tensor, u: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        """$\\|u\\|_x = \\sqrt{\\langle u, u\\rangle_x}$, with gradient 0 (not NaN) at $u = 0$."""
        return safe_sqrt(self.inner(x, u, keepdim=keepdim))

    def _check_shape(self, shape: tuple[int, ...], name: str) -> tuple[bool, str | None]:
        """geoopt's shape check (used by ``ManifoldParameter``): the shape must end in ``point_shape``."""
        ps = tuple(self.point_shape)
        if len(shape) < len(ps) or tuple(shape[len(shape) - len(ps) :]) != ps:
            return False, (
                f"{name}: expected shape (..., {', '.join(map(str, ps))}) for {self!r}, got {tuple(shape)}"
            )
        return True, None

    def _check_alike(self, **named: torch.Tensor) -> None:
        """Each named tensor: a floating-point ``torch.Tensor`` ending in ``point_shape``
        (``ValueError`` naming it otherwise) with the first one's dtype and device
        (``TypeError`` naming both otherwise)."""
        first_name, first = next(iter(named.items()))
        for name, t in named.items():
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
            if not t.is_floating_point():
                raise TypeError(f"{name}: expected a floating-point tensor, got dtype {t.dtype}")
            self._check_trailing(t, name)
            if t.dtype != first.dtype:
                raise TypeError(
                    f"{name} has dtype {t.dtype} but {first_name} has dtype {first.dtype}; "
                    "expected the same dtype"
                )
            if t.device != first.device:
                raise TypeError(
                    f"{name} is on {t.device} but {first_name} is on {first.device}; "
                    "expected the same device"
                )

    def _operands(self, **named: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.dtype]:
        """Check the named point/tangent tensors and return them in the working dtype.

        Every tensor must end in ``point_shape`` and the batch shapes must broadcast
        (``ValueError`` naming the argument, the shape it got and the one expected), and all
        must share the first one's dtype and device (``TypeError`` naming both).
        float16/bfloat16 are upcast to float32; the returned dtype is the inputs' own, for
        casting results back.
        """
        items = list(named.items())
        self._check_alike(**named)
        if len(items) > 1:
            k = len(self.point_shape)
            batches = [tuple(t.shape[: t.dim() - k]) for _, t in items]
            if broadcast_shape(*batches) is None:
                got = ", ".join(f"{n} {tuple(t.shape)}" for n, t in items)
                raise ValueError(
                    f"{', '.join(n for n, _ in items)}: batch shapes do not broadcast "
                    f"(got {got}); expected broadcastable (..., {', '.join(map(str, self.point_shape))})"
                )
        dtype = items[0][1].dtype
        work = working_dtype(dtype)
        return tuple(t.to(work) for t in named.values()), dtype

    def _full_shape(self, size: tuple) -> tuple[int, ...]:
        """``size`` (ints, or one tuple/``torch.Size``) as a shape; ``ValueError`` unless it ends in ``point_shape``."""
        if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
            size = tuple(size[0])
        shape = tuple(operator.index(s) for s in size)
        self._check_trailing(torch.empty(shape, device="meta"), "size")
        return shape
