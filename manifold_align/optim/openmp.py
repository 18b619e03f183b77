r"""Run a compiled function on the OpenMP threads that torch's CPU operators use.

torch's CPU operators share work over an OpenMP thread pool (GNU libgomp in the Linux
wheels). After each parallel region libgomp's worker threads spin for a while (a few
milliseconds by default) before they sleep, on the very cores that any other thread would
need. A kernel run on threads of its own right after a torch operator (the backward pass,
the Euclidean Adam step of the same optimizer) therefore shares a core with a spinning
thread: measured on two cores, the row kernel of `manifold_align.optim.fused_cpu` took
13.5-16 ms per step on a pool of its own where it takes 8.4-10.6 ms on torch's OpenMP
threads (`benchmarks/bench_radam.py`, 262144 x 64).

[parallel][manifold_align.optim.openmp.parallel] enters a parallel region of torch's own
OpenMP runtime through `GOMP_parallel(fn, data, num_threads, flags)`, the entry point a
compiler emits for `#pragma omp parallel num_threads(n)`, which GNU libgomp, LLVM libomp and
Intel's libiomp5 all export: `fn(data)` runs on `num_threads` threads of the caller's team,
the caller included. The thread count holds for that region only: torch's setting
(`torch.get_num_threads()`) and the runtime's defaults are not changed.

Where no such runtime is loaded (a torch built without OpenMP, a platform without
`/proc/self/maps`) or in a process forked after the runtime started threads (libgomp's pool
does not survive a fork: the child's first parallel region would wait forever),
[runtime][manifold_align.optim.openmp.runtime] is `None` and callers use threads of their own.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

__all__ = ["parallel", "runtime"]

#: Shared-object names of OpenMP runtimes that export the GNU entry points.
RUNTIME_PREFIXES = ("libgomp", "libomp", "libiomp5")

_LOCK = threading.Lock()
_LOOKED = False
_GOMP_PARALLEL: ctypes._CFuncPtr | None = None  # type: ignore[name-defined]
_FORKED = False


def _loaded_runtimes() -> list[str]:
    """Paths of the OpenMP runtimes mapped into this process, those inside torch's own
    package first."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split(maxsplit=5)[-1].strip() for line in maps if "/" in line}
    except OSError:
        return []
    found = sorted(p for p in paths if Path(p).name.startswith(RUNTIME_PREFIXES) and ".so" in Path(p).name)
    try:
        import torch

        torch_dir = str(Path(torch.__file__).parent)
    except Exception:  # torch is a dependency; this only orders the list
        torch_dir = "\0"
    return sorted(found, key=lambda p: not p.startswith(torch_dir))


def _look_up() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    for path in _loaded_runtimes():
        try:
            fn = ctypes.CDLL(path).GOMP_parallel
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        fn.restype = None
        return fn
    return None


def runtime() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """torch's `GOMP_parallel`, or `None` where there is none to use (module docstring).

    Looked up once per process, after torch is imported (its runtime is then loaded).
    """
    global _LOOKED, _GOMP_PARALLEL
    if _FORKED:
        return None
    if not _LOOKED:
        with _LOCK:
            if not _LOOKED:
                _GOMP_PARALLEL = _look_up()
                _LOOKED = True
    return _GOMP_PARALLEL


def parallel(function_address: int, data_address: int, threads: int) -> None:
    """Run the C function `void f(void *data)` at ``function_address`` with ``data_address``
    on ``threads`` OpenMP threads (the calling thread among them) and return when all are
    done. The GIL is released meanwhile, so ``f`` must not touch Python objects.

    Raises:
        RuntimeError: [runtime][manifold_align.optim.openmp.runtime] is `None`.
    """
    fn = runtime()
    if fn is None:
        raise RuntimeError("no OpenMP runtime with GOMP_parallel is usable in this process")
    fn(function_address, data_address, threads, 0)


def _after_fork_in_child() -> None:
    global _FORKED, _LOCK
    _FORKED, _LOCK = True, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
