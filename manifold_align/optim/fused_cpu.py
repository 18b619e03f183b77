r"""The one-pass CPU kernel of the row-normalized Riemannian Adam step, compiled by numba.

Each row is read once (its $x$, $g$, $m$ and second moment $v$) and written once (its $x$,
$m$, $v$): every intermediate of the update (module docstring of
[manifold_align.optim.rowwise][]) lives in registers or the first-level cache while the row
is worked on. Main memory sees about five passes over a parameter per step (read $x, g, m$,
write $x, m$; $v$ is $1/d$ of a pass), against seven for torch's fused Adam.

The kernel is compiled by [numba](https://numba.pydata.org) from the Python below the first
time a row width and dtype are used (about a second each, then loaded from numba's on-disk
cache). numba installs from PyPI as prebuilt wheels: no compiler is needed on the user's
machine. Without numba, [available][manifold_align.optim.fused_cpu.available] is `False`
and the optimizer falls back to the cache-blocked torch kernel with one warning.

Threads: the rows are cut into `threads` contiguous ranges, each run by one thread of a
pool owned by this module (the compiled function releases the GIL). Nothing process-wide
is read or changed: not torch's intra-op setting, not numba's.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from manifold_align.optim.rowwise import RowAdamHyper

__all__ = ["available", "row_adam_fused_"]

#: Rows handed to one thread are at least this many numbers; smaller steps run in the
#: calling thread (a pool hand-off costs tens of microseconds).
MIN_ELEMENTS_PER_THREAD = 1 << 16

_KERNELS: dict[int, object] = {}
_IMPORT_ERROR: str | None = None
_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_LOCK = threading.Lock()

try:  # numba is optional: its absence selects the torch kernel
    import numba
    import numpy as np
except Exception as exc:  # ImportError, or numba refusing this numpy
    numba = None
    np = None
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"


def available() -> bool:
    """Whether numba imported, so that [row_adam_fused_][manifold_align.optim.fused_cpu.row_adam_fused_] can run."""
    return numba is not None


def unavailable_reason() -> str | None:
    """Why numba could not be imported (``None`` when it could)."""
    return _IMPORT_ERROR


def _make_rows(width: int):
    """The row kernel for rows of ``width`` numbers (``0``: any width, read from the array).

    A width fixed at compile time lets the compiler unroll each sweep over a row into
    straight vector code; at 262144 x 64 in float32 that is about 10% of the step.
    """

    def rows(x, g, m, v, vmax, lo, hi, sign, wd, w1, beta2, w2, bc2, eps, step_scale, amsgrad):
        """Rows ``lo:hi`` of ``x, g, m (n, d)``, ``v, vmax (n,)``: one step in place.

        The scalars arrive in the arrays' dtype, so the arithmetic stays in it (float32
        stays float32). Three sweeps over a row, all in the first-level cache:

        1. $a = \\langle x, g\\rangle$ and $\\lVert x\\rVert^2$, hence the projected
           gradient's coefficient $c = \\lambda(1 - \\lVert x\\rVert^2) - \\sigma a$;
        2. $r = \\sigma g + c x$, $m' = m + w_1 (r - m)$ (stored), and the sums
           $\\lVert r\\rVert^2$, $p = \\langle x, m'\\rangle$, $q = \\lVert m'\\rVert^2$;
           then $v \\leftarrow \\beta_2 v + w_2 \\lVert r\\rVert^2$ and the step size $s$;
        3. with $y = x - s m'$, whose norm and product with $m'$ follow from the sums,
           $\\lVert y\\rVert^2 = \\lVert x\\rVert^2 - 2 s p + s^2 q$ and
           $\\langle y, m'\\rangle = p - s q$ (no cancellation: $\\lVert x\\rVert^2 \\approx 1$
           dominates, and $p$ is a rounding-level residue because $m'$ is tangent at $x$):
           $x \\leftarrow y / \\lVert y\\rVert$ and the transport
           $m \\leftarrow m' - (\\langle y, m'\\rangle / \\lVert y\\rVert)\\, x$.

        ``amsgrad``: use and keep the running maximum ``vmax``.
        """
        zero = sign - sign  # 0, 1 and 2 in the arrays' dtype
        one = sign * sign
        two = one + one
        d = width if width else x.shape[1]
        for i in range(lo, hi):
            a, xx = zero, zero
            for j in range(d):
                a += x[i, j] * g[i, j]
                xx += x[i, j] * x[i, j]
            coef = (xx * -wd + wd) - sign * a
            rr, xm, mm = zero, zero, zero
            for j in range(d):
                xj = x[i, j]
                r = sign * g[i, j] + coef * xj
                mj = m[i, j] + w1 * (r - m[i, j])
                m[i, j] = mj
                rr += r * r
                xm += xj * mj
                mm += mj * mj
            vi = v[i] * beta2 + w2 * rr
            v[i] = vi
            if amsgrad:
                if vmax[i] > vi:
                    vi = vmax[i]
                vmax[i] = vi
            s = (one / (math.sqrt(vi / bc2) + eps)) * step_scale
            inv = one / math.sqrt(xx - two * s * xm + s * s * mm)
            ym = (xm - s * mm) * inv
            sinv = s * inv
            for j in range(d):
                mj = m[i, j]
                xj = x[i, j] * inv - sinv * mj
                x[i, j] = xj
                m[i, j] = mj - ym * xj

    return rows


#: Row widths compiled as constants; any other width runs the kernel that reads it.
UNROLLED_WIDTHS = (16, 32, 64, 128, 256, 512)


def _kernel(width: int):
    """The compiled kernel for rows of ``width`` numbers; numba compiles (or loads from its
    on-disk cache) each width and dtype at first use."""
    key = width if width in UNROLLED_WIDTHS else 0
    k = _KERNELS.get(key)
    if k is None:
        with _LOCK:
            k = _KERNELS.get(key)
            if k is None:
                # reassoc: row sums in vector lanes; contract: fused multiply-adds
                k = numba.njit(
                    nogil=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract"}
                )(_make_rows(key))
                _KERNELS[key] = k
    return k


def _pool(threads: int) -> ThreadPoolExecutor:
    """The kernel's own worker threads (at least ``threads``), created at first need."""
    global _POOL, _POOL_SIZE
    with _LOCK:
        if _POOL is None or _POOL_SIZE < threads:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="manifold-align-radam")
            _POOL_SIZE = threads
        return _POOL


def _forget_pool_after_fork() -> None:
    """A forked child has none of the parent's threads: start its own pool when needed
    (else work handed to the inherited pool would wait forever)."""
    global _POOL, _POOL_SIZE, _LOCK
    _POOL, _POOL_SIZE, _LOCK = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _work(t: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """``t`` as a contiguous ``shape`` tensor of ``dtype``: a view where possible, else a copy."""
    if t.dtype == dtype and t.is_contiguous():
        return t.view(shape)
    return t.reshape(shape).to(dtype=dtype, memory_format=torch.contiguous_format, copy=True)


def _rows_threaded(
    x: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, vmax: np.ndarray | None,
    args: tuple, threads: int,
) -> None:
    """The kernel over all rows, cut into at most ``threads`` ranges run at once."""
    n, d = x.shape
    kernel = _kernel(d)
    vm = v if vmax is None else vmax
    chunks = max(1, min(threads, (n * d) // MIN_ELEMENTS_PER_THREAD))
    if chunks == 1:
        kernel(x, g, m, v, vm, 0, n, *args)
        return
    bounds = [n * c // chunks for c in range(chunks + 1)]
    pool = _pool(chunks - 1)
    futures = [
        pool.submit(kernel, x, g, m, v, vm, bounds[c], bounds[c + 1], *args)
        for c in range(1, chunks)
    ]
    kernel(x, g, m, v, vm, bounds[0], bounds[1], *args)
    for f in futures:
        f.result()


def row_adam_fused_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    max_exp_avg_sqs: list[torch.Tensor] | None,
    h: RowAdamHyper,
    *,
    threads: int,
) -> None:
    """Riemannian Adam step on row-normalized CPU parameters, in place, one pass per row.

    Same arguments and results as [row_adam_][manifold_align.optim.rowwise.row_adam_] (to
    rounding: the row sums are added in another order), plus ``threads``: the number of
    threads that share the rows (an explicit count; nothing process-wide is changed).
    Arithmetic runs in the dtype of ``exp_avgs`` (float32 for float16/bfloat16 parameters,
    whose rows are converted to a float32 copy and written back).

    Raises:
        RuntimeError: numba is not installed ([available][manifold_align.optim.fused_cpu.available]).
    """
    if numba is None:
        raise RuntimeError(f"the fused CPU kernel needs numba, which did not import ({_IMPORT_ERROR})")
    if threads < 1:
        raise ValueError(f"threads: expected an int >= 1, got {threads!r}")
    if not params:
        return
    d = params[0].shape[-1]
    dtype = exp_avgs[0].dtype
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"exp_avgs: expected float32 or float64 state, got {dtype}")
    dt = np.float32 if dtype == torch.float32 else np.float64
    args = (*(dt(c) for c in h.kernel_scalars()), bool(h.amsgrad))
    maxes = list(max_exp_avg_sqs) if max_exp_avg_sqs is not None else [None] * len(params)
    for p, g, m, v, vmax in zip(params, grads, exp_avgs, exp_avg_sqs, maxes):
        n = p.numel() // d
        works = [_work(t, (n, d), dtype) for t in (p, g, m)]
        works += [_work(t, (n,), dtype) for t in (v, vmax) if t is not None]
        arrays = [w.numpy() for w in works]
        _rows_threaded(*arrays[:4], arrays[4] if vmax is not None else None, args, threads)
        for t, w in zip((p, None, m, v, vmax), works):
            if t is not None and w.data_ptr() != t.data_ptr():
                t.copy_(w.view(t.shape))
