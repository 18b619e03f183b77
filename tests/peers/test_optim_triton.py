"""The Triton kernel of RiemannianAdam against the torch kernel, run by Triton's interpreter.

Triton ships with torch's CUDA wheels, so it is in ``.venv-peers`` (torch 2.14.1+cu130) and
not in ``.venv`` (torch's CPU build): this file lives with the peer tests. The interpreter
must be chosen before anything imports Triton (``TRITON_INTERPRET=1``), and other peers
import it at collection, so the trajectories run in a child process: this file run as a
script, which prints the largest differences as JSON. ``benchmarks/gpu.sh`` runs the kernel
on a real GPU. The interpreter takes milliseconds per launch, so these trajectories are 200
steps, not the 1,000 of the CPU kernel's tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import triton  # noqa: F401  (a missing Triton fails this run, never skips it)

from manifold_align import Oblique, Sphere
from manifold_align.optim.rowwise import RowAdamHyper, row_adam_

CASES = {
    # 37 rows of 6: the tile pads both the rows and the row length (to 8)
    "sphere-f32-amsgrad-wd": (Sphere(6), (37, 6), torch.float32, 200,
                              {"amsgrad": True, "weight_decay": 0.05, "maximize": False}),
    "oblique-f32-amsgrad-wd": (Oblique(3, 5), (4, 3, 5), torch.float32, 200,
                               {"amsgrad": True, "weight_decay": 0.05, "maximize": False}),
    "sphere-f64-wd-maximize": (Sphere(6), (37, 6), torch.float64, 200,
                               {"amsgrad": False, "weight_decay": 0.1, "maximize": True}),
    "oblique-f64-wd-maximize": (Oblique(3, 5), (4, 3, 5), torch.float64, 200,
                                {"amsgrad": False, "weight_decay": 0.1, "maximize": True}),
    # one step: later bfloat16 steps diverge by design (a rounding flip changes the gradient)
    "sphere-bf16-strided-amsgrad": (Sphere(8), (9, 8), torch.bfloat16, 1,
                                    {"amsgrad": True, "weight_decay": 0.0, "maximize": False,
                                     "transpose": True}),
}


def _trajectories(manifold, shape, dtype, steps, triton_kernel, *, amsgrad, weight_decay, maximize,
                  transpose=False):
    """The same steps through the torch kernel and the Triton kernel; both final states."""
    gen = torch.Generator().manual_seed(0)
    x0 = manifold.projx(torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)
    state_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    runs = []
    for _ in range(2):
        x = x0.clone()
        if transpose:  # a non-contiguous parameter: rows are strided
            x = x.mT.contiguous().mT
        m = torch.zeros(shape, dtype=state_dtype)
        v = torch.zeros(*shape[:-1], 1, dtype=state_dtype)
        runs.append([x, m, v, v.clone() if amsgrad else None])
    target = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    noise = torch.Generator().manual_seed(1)
    for t in range(1, steps + 1):
        h = RowAdamHyper(0.02, 0.9, 0.999, 1e-8, weight_decay, amsgrad, maximize,
                         1 - 0.9**t, 1 - 0.999**t)
        kick = torch.randn(shape, generator=noise, dtype=torch.float64).to(dtype)
        for kernel, (x, m, v, vmax) in zip((row_adam_, triton_kernel), runs):
            g = (2 * (x - target) + 3 * x**2 + kick) * (-1 if maximize else 1)
            kernel([x], [g], [m], [v], None if vmax is None else [vmax], h)
    return runs


def _child() -> dict:
    """Run every case through both kernels (in the interpreter); the largest differences."""
    from manifold_align.optim.fused_triton import row_adam_triton_

    out = {}
    for name, (manifold, shape, dtype, steps, flags) in CASES.items():
        old, new = _trajectories(manifold, shape, dtype, steps, row_adam_triton_, **flags)
        out[name] = {
            "x": (new[0].double() - old[0].double()).abs().max().item(),
            "m": (new[1] - old[1]).abs().max().item(),
            "v_rel": ((new[2] - old[2]).abs().max() / old[2].abs().max().clamp_min(1.0)).item(),
            "m_max": new[1].abs().max().item(),
            "x_dtype": str(new[0].dtype),
            "m_dtype": str(new[1].dtype),
            "x_contiguous": new[0].is_contiguous(),
        }
    return out


@pytest.fixture(scope="module")
def diffs() -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", [n for n in CASES if "bf16" not in n])
def test_triton_kernel_equals_the_torch_kernel(diffs, name):
    tol = 1e-6 if CASES[name][2] == torch.float32 else 1e-12
    d = diffs[name]
    assert d["x"] < tol and d["m"] < tol and d["v_rel"] < tol
    assert d["m_max"] > 1e-3  # the moments were not resting at zero


def test_triton_kernel_half_precision_and_strided_parameters(diffs):
    d = diffs["sphere-bf16-strided-amsgrad"]
    assert (d["x_dtype"], d["m_dtype"]) == ("torch.bfloat16", "torch.float32")
    assert not d["x_contiguous"]  # updated in place through its contiguous copy
    assert d["x"] <= 2**-7 and d["m"] < 1e-6


if __name__ == "__main__":
    print(json.dumps(_child()))
