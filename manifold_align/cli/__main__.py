"""``python -m manifold_align.cli`` (and ``torchrun -m manifold_align.cli``): the command line."""

import sys

from manifold_align.cli import main

sys.exit(main())
