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

Threads: every thread of a step runs the same kernel, which claims blocks of
[BLOCK_ELEMENTS][manifold_align.optim.fused_cpu.BLOCK_ELEMENTS] numbers of rows through
an atomic counter until none are left, so a thread that starts late or shares its core
takes fewer blocks. The threads are torch's own OpenMP threads where its runtime can be
entered ([manifold_align.optim.openmp][]: they are awake and spinning right after the
backward pass, and a pool of other threads would share their cores), else a pool owned by
this module. Which rows a thread takes does not change any row's arithmetic: results are
bit for bit the same for any thread count and either route. Nothing process-wide is read
or changed: not torch's intra-op setting, not numba's, not OpenMP's.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from manifold_align.optim import openmp
from manifold_align.optim.rowwise import RowAdamHyper

__all__ = ["available", "row_adam_fused_"]

#: Rows handed to one thread are at least this many numbers; smaller steps run in the
#: calling thread (starting threads costs tens of microseconds).
MIN_ELEMENTS_PER_THREAD = 1 << 16

#: Numbers per block of rows that a thread claims at a time (64 KiB of float32 per
#: tensor: long enough runs for the hardware prefetcher, small enough to even out threads).
BLOCK_ELEMENTS = 1 << 14

#: Row widths compiled as constants; any other width runs the kernel that reads it.
UNROLLED_WIDTHS = (16, 32, 64, 128, 256, 512)

#: The int64 words an OpenMP entry point reads from its ``void *data``, in this order.
ENTRY_WORDS = ("x", "g", "m", "v", "vmax", "claimed", "scalars", "rows", "width", "block", "amsgrad")

_IMPORT_ERROR: str | None = None
_ENTRIES: dict[tuple[int, str], object] = {}
_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_LOCK = threading.Lock()

try:  # numba is optional: its absence selects the torch kernel
    import numba
    import numpy as np

    from manifold_align.optim.numba_intrinsics import claim, pointer, words
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


def _make_entry(width: int, dtype):
    """The kernel for rows of ``width`` numbers of numba type ``dtype``, as the C function
    ``void entry(void *data)`` that every thread of a step runs: one step in place on every
    row of ``x, g, m (n, d)``, ``v, vmax (n,)`` that no other thread has claimed. ``data``
    holds the int64 words [ENTRY_WORDS][manifold_align.optim.fused_cpu.ENTRY_WORDS]: the
    arrays' addresses, the address of the float64
    [kernel_scalars][manifold_align.optim.rowwise.RowAdamHyper.kernel_scalars], the counts.

    Rows are taken ``block`` at a time by an atomic add to ``claimed[0]`` (the first row
    nobody has taken), so threads that run this together share the rows. ``width`` is a
    compile-time constant: it lets the compiler unroll each sweep over a row into straight
    vector code (about 10% of the step at 262144 x 64 in float32); ``0`` reads the width
    from ``data``. Only ``width`` and ``dtype`` are captured, so numba's cache key is the
    same in every process.

    The scalars are rounded to the arrays' dtype, so the arithmetic stays in it (float32
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

    def entry(data):
        w = numba.carray(words(data), 11)
        n, d, block, amsgrad = w[7], (width if width else w[8]), w[9], w[10] != 0
        x = numba.carray(pointer(w[0], dtype), (n, d))
        g = numba.carray(pointer(w[1], dtype), (n, d))
        m = numba.carray(pointer(w[2], dtype), (n, d))
        v = numba.carray(pointer(w[3], dtype), n)
        vmax = numba.carray(pointer(w[4], dtype), n)
        claimed = numba.carray(pointer(w[5], numba.int64), 1)
        c = numba.carray(pointer(w[6], numba.float64), 8)
        sign, wd, w1, beta2 = dtype(c[0]), dtype(c[1]), dtype(c[2]), dtype(c[3])
        w2, bc2, eps, step_scale = dtype(c[4]), dtype(c[5]), dtype(c[6]), dtype(c[7])
        zero = sign - sign  # 0, 1 and 2 in the arrays' dtype
        one = sign * sign
        two = one + one
        while True:
            lo = claim(claimed, block)
            if lo >= n:
                break
            for i in range(lo, min(lo + block, n)):
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

    return entry


def _compiled_width(width: int) -> int:
    """The width the kernel is compiled for: ``width`` itself, or ``0`` (read at run time)."""
    return width if width in UNROLLED_WIDTHS else 0


def _entry(width: int, dtype: np.dtype):
    """The compiled entry point for rows of ``width`` numbers of ``dtype`` (a
    ``numba.cfunc``: ``.address`` for OpenMP, ``.ctypes`` to call it from Python, which
    releases the GIL)."""
    key = (_compiled_width(width), np.dtype(dtype).name)
    entry = _ENTRIES.get(key)
    if entry is None:
        with _LOCK:
            entry = _ENTRIES.get(key)
            if entry is None:
                # reassoc: row sums in vector lanes; contract: fused multiply-adds
                entry = numba.cfunc(
                    numba.types.void(numba.types.voidptr), nogil=True, cache=True,
                    error_model="numpy", fastmath={"reassoc", "contract"},
                )(_make_entry(key[0], numba.from_dtype(np.dtype(dtype))))
                _ENTRIES[key] = entry
    return entry


def _pool(threads: int) -> ThreadPoolExecutor:
    """This module's worker threads (at least ``threads``), created at first need."""
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
    constants: np.ndarray, amsgrad: bool, threads: int,
) -> None:
    """The kernel over all rows on at most ``threads`` threads: torch's OpenMP threads
    where [openmp.runtime][manifold_align.optim.openmp.runtime] offers them, else the
    calling thread and this module's pool."""
    n, d = x.shape
    vm = v if vmax is None else vmax
    claimed = np.zeros(1, dtype=np.int64)
    threads = max(1, min(threads, (n * d) // MIN_ELEMENTS_PER_THREAD))
    block = max(1, BLOCK_ELEMENTS // d) if threads > 1 else n
    data = np.array(
        [a.ctypes.data for a in (x, g, m, v, vm, claimed, constants)] + [n, d, block, int(amsgrad)],
        dtype=np.int64,
    )
    entry = _entry(d, x.dtype)
    if threads > 1 and openmp.runtime() is not None:
        openmp.parallel(entry.address, data.ctypes.data, threads)
        return
    pool = _pool(threads - 1) if threads > 1 else None
    futures = [pool.submit(entry.ctypes, data.ctypes.data) for _ in range(threads - 1)]
    entry.ctypes(data.ctypes.data)
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
    maxes = list(max_exp_avg_sqs) if max_exp_avg_sqs is not None else [None] * len(params)
    constants = np.asarray(h.kernel_scalars(), dtype=np.float64)  # the entry rounds them to dtype
    for p, g, m, v, vmax in zip(params, grads, exp_avgs, exp_avg_sqs, maxes):
        n = p.numel() // d
        works = [_work(t, (n, d), dtype) for t in (p, g, m)]
        works += [_work(t, (n,), dtype) for t in (v, vmax) if t is not None]
        arrays = [w.numpy() for w in works]
        _rows_threaded(
            *arrays[:4], arrays[4] if vmax is not None else None,
            constants, bool(h.amsgrad), threads,
        )
        for t, w in zip((p, None, m, v, vmax), works):
            if t is not None and w.data_ptr() != t.data_ptr():
                t.copy_(w.view(t.shape))
