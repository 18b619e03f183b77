"""Optimizers: [RiemannianAdam][manifold_align.optim.radam.RiemannianAdam], geoopt's update rule, vectorized over parameters and tokens."""

from manifold_align.optim.radam import RiemannianAdam

__all__ = ["RiemannianAdam"]
