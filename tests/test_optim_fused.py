"""The one-pass CPU kernel (numba) against the cache-blocked torch kernel, and its fallback."""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings

import geoopt
import pytest
import torch

import manifold_align.optim.fused_cpu as fused_cpu
import manifold_align.optim.openmp as openmp
import manifold_align.optim.radam as radam
from manifold_align import Oblique, Sphere
from manifold_align.optim import RiemannianAdam

pytestmark = pytest.mark.skipif(
    not fused_cpu.available(), reason=f"numba missing: {fused_cpu.unavailable_reason()}"
)

# Every row-normalized manifold, with a shape that fills several rows of each; one
# optimizer steps all four (one kernel call each). Rows of 16 run the kernel compiled for
# that width (fused_cpu.UNROLLED_WIDTHS), the others the one that reads the width.
MANIFOLDS = [
    (Sphere(8), (6, 8)),
    (Sphere(16), (5, 16)),
    (Oblique(3, 5), (4, 3, 5)),
    (geoopt.Sphere(), (5, 7)),
]
FLAGS = [
    {},
    {"amsgrad": True, "weight_decay": 0.05},
    {"maximize": True, "weight_decay": 0.1},
]


def _run(manifolds, dtype, steps, flags, *, kernel, monkeypatch):
    """``steps`` of RiemannianAdam on a smooth loss; the final points and first moments."""
    with monkeypatch.context() as mp:
        if kernel == "torch":
            mp.setattr(fused_cpu, "available", lambda: False)
            mp.setattr(radam, "_NOTICED", {"cpu"})
        gen = torch.Generator().manual_seed(1)
        ps, targets = [], []
        for manifold, shape in manifolds:
            x = manifold.projx(torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)
            ps.append(geoopt.ManifoldParameter(x, manifold=manifold))
            targets.append(torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype))
        opt = RiemannianAdam(ps, lr=0.02, **flags)
        sign = -1.0 if flags.get("maximize") else 1.0
        noise = torch.Generator().manual_seed(2)
        for _ in range(steps):
            with torch.no_grad():
                for p, target in zip(ps, targets):
                    # gradient of sum((p - target)^2) + sum(p^3), plus the same noise in
                    # both runs (the iterates keep moving), negated under maximize
                    kick = torch.randn(p.shape, generator=noise, dtype=torch.float64).to(dtype)
                    p.grad = sign * (2 * (p - target) + 3 * p**2 + kick)
            opt.step()
        return [p.detach().clone() for p in ps], [opt.state[p]["exp_avg"].clone() for p in ps]


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f) or "plain")
def test_one_pass_kernel_equals_the_torch_kernel_over_1000_steps_in_float64(monkeypatch, flags):
    xs_new, ms_new = _run(MANIFOLDS, torch.float64, 1000, flags, kernel="one-pass", monkeypatch=monkeypatch)
    xs_old, ms_old = _run(MANIFOLDS, torch.float64, 1000, flags, kernel="torch", monkeypatch=monkeypatch)
    for (manifold, _), x_new, x_old, m_new, m_old in zip(MANIFOLDS, xs_new, xs_old, ms_new, ms_old):
        assert (x_new - x_old).abs().max().item() < 1e-12, manifold
        assert (m_new - m_old).abs().max().item() < 1e-12, manifold
        # the iterates stayed on the manifold and the moments are not resting at zero
        assert (x_new.norm(dim=-1) - 1).abs().max().item() < 1e-11, manifold
        assert m_new.abs().max().item() > 1e-3, manifold


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f) or "plain")
def test_one_pass_kernel_in_float32_is_as_accurate_as_the_torch_kernel_over_1000_steps(monkeypatch, flags):
    """float32: the two kernels add a row's numbers in different orders, and over 1000 steps
    each float32 trajectory drifts 6-8e-6 from the float64 one (moments of size 0.5-0.7).
    The points stay within 1e-6 of the torch kernel's (measured 2.4e-7); the first moments
    differ by up to 1.4e-6, which is rounding noise of the kind the torch kernel shows against
    itself: perturbing its gradients by one ulp moves its moments by 5-7.5e-7 and its points
    by 1.2-1.8e-7 over the same 1000 steps. What is asserted: points within 1e-6, moments
    within 2.5e-6, and the one-pass kernel no further from the float64 trajectory than the
    torch kernel (within 25%)."""
    xs_ref, ms_ref = _run(MANIFOLDS, torch.float64, 1000, flags, kernel="torch", monkeypatch=monkeypatch)
    xs_new, ms_new = _run(MANIFOLDS, torch.float32, 1000, flags, kernel="one-pass", monkeypatch=monkeypatch)
    xs_old, ms_old = _run(MANIFOLDS, torch.float32, 1000, flags, kernel="torch", monkeypatch=monkeypatch)

    def err(ts, refs):
        return max((t.double() - r).abs().max().item() for t, r in zip(ts, refs))

    assert err(xs_new, xs_old) < 1e-6 and err(ms_new, ms_old) < 2.5e-6
    assert err(xs_new, xs_ref) <= 1.25 * err(xs_old, xs_ref)
    assert err(ms_new, ms_ref) <= 1.25 * err(ms_old, ms_ref)
    for (manifold, _), x_new, m_new in zip(MANIFOLDS, xs_new, ms_new):
        assert (x_new.norm(dim=-1) - 1).abs().max().item() < 1e-5, manifold
        assert m_new.abs().max().item() > 1e-3, manifold


def test_one_pass_kernel_on_bfloat16_keeps_float32_state(monkeypatch):
    spec = [(Oblique(3, 8), (20, 3, 8))]
    (x_new,), (m_new,) = _run(spec, torch.bfloat16, 20, {"amsgrad": True}, kernel="one-pass",
                              monkeypatch=monkeypatch)
    (x_old,), _ = _run(spec, torch.bfloat16, 20, {"amsgrad": True}, kernel="torch",
                              monkeypatch=monkeypatch)
    assert x_new.dtype == torch.bfloat16 and m_new.dtype == torch.float32
    # both round the same float32 rows to bfloat16: at most one bfloat16 step apart
    assert (x_new.float() - x_old.float()).abs().max().item() <= 2**-7
    assert (x_new.float().norm(dim=-1) - 1).abs().max().item() < 1e-2


def test_without_numba_the_torch_kernel_runs_after_one_notice(monkeypatch):
    monkeypatch.setattr(fused_cpu, "available", lambda: False)
    monkeypatch.setattr(fused_cpu, "unavailable_reason", lambda: "ModuleNotFoundError: numba")
    monkeypatch.setattr(radam, "_NOTICED", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two optimizers, two steps each: one notice in all
            p = geoopt.ManifoldParameter(Sphere(4).projx(torch.randn(3, 4)), manifold=Sphere(4))
            opt = RiemannianAdam([p], lr=0.1)
            for _ in range(2):
                p.grad = torch.randn(3, 4)
                opt.step()
            assert (p.detach().norm(dim=-1) - 1).abs().max() < 1e-6
    notices = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(notices) == 1
    message = str(notices[0].message)
    assert "\n" not in message and "numba" in message and "torch kernel" in message


def test_one_pass_kernel_rejects_unsupported_state():
    x = torch.zeros(2, 3)
    h = radam.RowAdamHyper(0.1, 0.9, 0.999, 1e-8, 0.0, False, False, 0.1, 0.001)
    with pytest.raises(TypeError, match="exp_avgs"):
        fused_cpu.row_adam_fused_([x.half()], [x.half()], [x.half()], [x[:, :1].half()], None, h, threads=1)
    with pytest.raises(ValueError, match="threads"):
        fused_cpu.row_adam_fused_([x], [x], [x], [x[:, :1]], None, h, threads=0)


@pytest.fixture(params=["openmp", "pool"])
def route(request, monkeypatch):
    """Which threads run a multi-threaded step: torch's OpenMP threads, or the kernel's
    own pool (where no OpenMP runtime can be entered). Yields a list that records each
    parallel region entered through OpenMP."""
    entered = []
    if request.param == "pool":
        monkeypatch.setattr(openmp, "runtime", lambda: None)
    else:
        if openmp.runtime() is None:
            pytest.fail("torch's OpenMP runtime was not found (see test_torchs_openmp_runtime_is_found)")
        real = openmp.parallel
        monkeypatch.setattr(openmp, "parallel", lambda *a: (entered.append(a[2]), real(*a)))
    yield request.param, entered


def test_torchs_openmp_runtime_is_found():
    # torch's Linux and macOS CPU builds parallelize with OpenMP; the kernel must find that
    # runtime, or every multi-threaded step competes with torch's spinning threads.
    if "OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("this torch is not built with OpenMP")
    assert openmp.runtime() is not None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("d", [64, 100], ids=["compiled-width", "run-time-width"])
def test_threads_share_the_rows_bit_for_bit(route, dtype, d):
    # Rows are claimed in blocks by whichever thread is free: any thread count, on either
    # route, must give the one-thread result exactly (a row's arithmetic never depends on
    # who does it). 4099 rows: the last block is short; three threads on two cores.
    kind, entered = route
    gen = torch.Generator().manual_seed(5)
    n = 4099
    x0 = Sphere(d).projx(torch.randn(n, d, generator=gen, dtype=dtype))
    grads = [torch.randn(n, d, generator=gen, dtype=dtype) for _ in range(3)]
    h = [radam.RowAdamHyper(0.05, 0.9, 0.99, 1e-8, 0.01, True, False, 1 - 0.9**t, 1 - 0.99**t)
         for t in (1, 2, 3)]
    results = {}
    for threads in (1, 2, 3):
        x, m = x0.clone(), torch.zeros(n, d, dtype=dtype)
        v, vmax = torch.zeros(n, 1, dtype=dtype), torch.zeros(n, 1, dtype=dtype)
        for g, ht in zip(grads, h):
            fused_cpu.row_adam_fused_([x], [g], [m], [v], [vmax], ht, threads=threads)
        results[threads] = (x, m, v, vmax)
    for threads in (2, 3):
        assert all(torch.equal(a, b) for a, b in zip(results[1], results[threads])), threads
    assert entered == ([2, 2, 2, 3, 3, 3] if kind == "openmp" else [])
    assert (results[1][0].norm(dim=-1) - 1).abs().max().item() < 1e-5


def test_the_openmp_route_leaves_torchs_thread_count_alone(monkeypatch):
    # cpu_threads=2 while torch is set to one thread: the step enters torch's OpenMP runtime
    # with two threads for that region only; torch's own setting stays at one.
    entered = []
    real = openmp.parallel
    monkeypatch.setattr(openmp, "parallel", lambda *a: (entered.append(a[2]), real(*a)))
    outside = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        p = geoopt.ManifoldParameter(Sphere(64).projx(torch.randn(4096, 64)), manifold=Sphere(64))
        opt = RiemannianAdam([p], lr=0.01, cpu_threads=2)
        p.grad = torch.randn(4096, 64)
        opt.step()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(outside)
    assert entered == ([2] if openmp.runtime() is not None else [])


def test_concurrent_claims_hand_out_each_index_once():
    # numba has no CPU atomics; the intrinsic must be one: two threads claiming one index
    # at a time, a million times between them, never get the same index.
    import numba
    import numpy as np

    from manifold_align.optim.numba_intrinsics import claim

    @numba.njit(nogil=True)
    def take(counter, taken):
        while True:
            i = claim(counter, 1)
            if i >= taken.shape[0]:
                return
            taken[i] += 1

    n = 1_000_000
    counter = np.zeros(1, dtype=np.int64)
    take(counter, np.zeros(1, dtype=np.int64))  # compile before the race
    counter[0] = 0
    mine, theirs = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    other = threading.Thread(target=take, args=(counter, theirs))
    other.start()
    take(counter, mine)
    other.join()
    assert ((mine + theirs) == 1).all()


def test_a_forked_child_steps_with_threads_of_its_own(route):
    # A fork (DataLoader workers, forked ranks) inherits neither the kernel's pool threads
    # nor a usable OpenMP pool (libgomp's threads are gone too: a parallel region in the
    # child would wait for them forever); the child must step on threads of its own.
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")

    def step(p, opt):
        p.grad = torch.ones_like(p)
        opt.step()

    p = geoopt.ManifoldParameter(Sphere(64).projx(torch.randn(4096, 64)), manifold=Sphere(64))
    opt = RiemannianAdam([p], lr=0.01, cpu_threads=2)  # 256 Ki numbers: two threads
    step(p, opt)
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its step finishes
        try:
            # as a DataLoader worker does: torch's OpenMP pool does not survive a fork (the
            # child's first parallel torch op hangs where the parent ran it on two threads)
            torch.set_num_threads(1)
            step(p, opt)
            os._exit(0 if (p.detach().norm(dim=-1) - 1).abs().max() < 1e-5 else 1)
        finally:
            os._exit(2)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's step did not finish (its work went to the parent's threads)")
