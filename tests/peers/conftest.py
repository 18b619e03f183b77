"""Tests against the real peers, run by scripts/test.sh in .venv-peers (MANIFOLD_ALIGN_PEERS=1).

The peers are imported here, at collection, on purpose: where one is missing the run fails
with an ImportError instead of skipping, so CI can never pass without having compared.
"""

import clip_benchmark  # noqa: F401
import open_clip  # noqa: F401
import torchvision  # noqa: F401
import transformers  # noqa: F401
