"""Optimizers: :class:`RiemannianAdam`, geoopt's update rule, vectorized over parameters and tokens."""

from manifold_align.optim.radam import RiemannianAdam

__all__ = ["RiemannianAdam"]
