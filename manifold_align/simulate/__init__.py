"""The toy equilibrium simulation: free embeddings per concept under caption noise.

* [theory][manifold_align.simulate.theory]: the exact loss-minimizing gap $g^\\star$ and what a
  sphere or an oblique manifold needs to reach it.
* [topology][manifold_align.simulate.topology]: each manifold's largest gap at scale 1
  (sphere, oblique, Lorentz within its radius, products), and the toy's Lorentz points.
* `sampling`: batches of concept pairs with caption noise.
* `toy`: `ToyModel`, many runs batched on one manifold.
* `config`: `SweepConfig`, the sweep's settings.
* `sweep`: expand a sweep into batched groups and run it.
* `report`: ``results.json``, plots and ``summary.md``.
* `simulate`: ``manifold-align simulate``.

Only the theory is imported eagerly; it needs neither torch nor the manifolds.
"""

from manifold_align.simulate.theory import Equilibrium, equilibrium, equilibrium_gap, expected_loss

__all__ = ["Equilibrium", "equilibrium", "equilibrium_gap", "expected_loss"]
