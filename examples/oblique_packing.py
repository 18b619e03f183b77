"""Spread points apart on the sphere and on the oblique manifold with Riemannian Adam.

The uniformity objective of Wang & Isola, applied to N free points,

    L(X) = log( 1/(N(N-1)) * sum_{i != j} exp(t * s(x_i, x_j)) ),

with ``s`` the manifold's contrastive similarity, pushes points apart. On ``Sphere(D)`` the
similarity lives in [-1, 1]; on ``Oblique(k, D/k)`` (same number of coordinates) it lives in
[-k, k]. The script optimizes both with :class:`manifold_align.optim.RiemannianAdam` on
``geoopt.ManifoldParameter``s, checks that every iterate stays on its manifold, and plots the
largest off-diagonal similarity (as a fraction of the manifold's range) per step.

Run: ``python examples/oblique_packing.py --out runs/packing`` (``--fast`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import geoopt
import torch

from manifold_align import Oblique, Sphere, plot_style
from manifold_align.manifolds import ContrastiveManifold
from manifold_align.optim import RiemannianAdam


def uniformity(manifold: ContrastiveManifold, x: torch.Tensor, t: float) -> torch.Tensor:
    """``log mean_{i != j} exp(t * s(x_i, x_j))`` for points ``x`` of shape (N, *point_shape)."""
    sim = manifold.similarity(x, x)
    n = sim.shape[0]
    off = sim.masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    return torch.logsumexp(t * off.flatten(), 0) - math.log(n * (n - 1))


def pack(manifold: ContrastiveManifold, n: int, steps: int, lr: float, seed: int) -> dict:
    """Optimize ``n`` points on ``manifold``; return the per-step record."""
    torch.manual_seed(seed)
    start = manifold.random(n, *manifold.point_shape)
    x = geoopt.ManifoldParameter(start, manifold=manifold)
    opt = RiemannianAdam([x], lr=lr)
    low, high = manifold.similarity_range
    t = 2.0 / high  # the same temperature relative to each manifold's range
    record = {"loss": [], "max_sim_frac": [], "max_off_manifold": 0.0}
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = uniformity(manifold, x, t)
        loss.backward()
        opt.step()
        with torch.no_grad():
            sim = manifold.similarity(x, x).fill_diagonal_(low)
            record["loss"].append(float(loss))
            record["max_sim_frac"].append(float(sim.max() / high))
            drift = float((manifold.projx(x) - x).abs().max())
            record["max_off_manifold"] = max(record["max_off_manifold"], drift)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/packing"))
    parser.add_argument("--points", type=int, default=512)
    parser.add_argument("--dim", type=int, default=64, help="coordinates per point (k * d)")
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="a few seconds: 64 points, 40 steps")
    args = parser.parse_args(argv)
    if args.fast:
        args.points, args.steps = 64, 40
    if args.dim % args.tokens:
        parser.error(f"--dim {args.dim} must be divisible by --tokens {args.tokens}")

    manifolds = {
        f"Sphere({args.dim})": Sphere(args.dim),
        f"Oblique({args.tokens}, {args.dim // args.tokens})": Oblique(
            args.tokens, args.dim // args.tokens
        ),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, manifold in manifolds.items():
        t0 = time.perf_counter()
        results[name] = pack(manifold, args.points, args.steps, args.lr, args.seed)
        results[name]["seconds"] = time.perf_counter() - t0
        r = results[name]
        print(
            f"{name:>16}: final max similarity {r['max_sim_frac'][-1]:+.3f} of range, "
            f"largest drift off the manifold {r['max_off_manifold']:.1e}, {r['seconds']:.1f} s"
        )

    with plot_style.style():
        fig, axes = plot_style.panels(1, size=(6.4, 4.2))
        ax = axes[0][0]
        for name, r in results.items():
            ax.plot(r["max_sim_frac"], label=name)
        ax.set_xlabel("Riemannian Adam step")
        ax.set_ylabel("max off-diagonal similarity / range high")
        ax.set_title(f"{args.points} points pushed apart (uniformity loss)")
        ax.legend()
        plot_style.save(fig, args.out / "packing.png")
    (args.out / "packing.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out / 'packing.png'} and {args.out / 'packing.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
