"""Shared pytest set-up: hypothesis profiles and deterministic torch."""

import os

import torch
from hypothesis import HealthCheck, settings

# tests/peers/ runs against the real OpenCLIP, transformers and CLIP_benchmark, which live in
# .venv-peers (torch 2.14.1 + torchvision), not in .venv: scripts/test.sh runs that folder in a
# second pytest process there with MANIFOLD_ALIGN_PEERS=1. Everywhere else it is not collected.
if os.environ.get("MANIFOLD_ALIGN_PEERS") != "1":
    collect_ignore = ["peers"]

# "ci" is the default: enough examples to matter, bounded so the suite stays fast on 2 cores.
settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# With pytest-xdist each worker is a process of its own: one torch thread per worker, or
# 2 workers x 2 threads oversubscribe the 2 cores and small ops slow down ~100x.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
else:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
