"""The figure of the data page: the first items of the bundled synthetic data with their captions.

Draws items ``0 .. n-1`` of ``SyntheticCaptions(split, seed=seed, noise=noise)`` (each a
Pillow image rendered on demand, nothing stored) in a grid, each under its training caption,
with [manifold_align.plot_style][]. The data page shows the default run:

    python examples/synthetic_grid.py --out docs/img/synthetic_grid.png
"""

from __future__ import annotations

import argparse
import math
import textwrap
from pathlib import Path

from manifold_align import plot_style
from manifold_align.data import SyntheticCaptions

#: Characters per caption line under an image of the grid.
CAPTION_WIDTH = 26


def grid(out: Path, *, count: int = 12, columns: int = 4, split: str = "train", seed: int = 0,
         image_size: int = 64, noise: float = 0.0) -> Path:
    """Write the grid of items ``0 .. count-1`` to ``out`` (PNG); returns the path."""
    data = SyntheticCaptions(split, size=count, seed=seed, image_size=image_size, noise=noise)
    rows = math.ceil(count / columns)
    with plot_style.style():
        fig, axes = plot_style.panels(columns, rows, size=(2.4, 3.0))
        for i, ax in enumerate(ax for row in axes for ax in row):
            ax.axis("off")
            if i >= count:
                continue
            image, caption = data[i]
            ax.imshow(image, interpolation="nearest")
            ax.set_title("\n".join(textwrap.wrap(caption, CAPTION_WIDTH)), fontsize=plot_style.MIN_FONT)
    out.parent.mkdir(parents=True, exist_ok=True)
    return plot_style.save(fig, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img/synthetic_grid.png"))
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.0)
    args = parser.parse_args(argv)
    print(grid(args.out, count=args.count, seed=args.seed, noise=args.noise))


if __name__ == "__main__":
    main()
