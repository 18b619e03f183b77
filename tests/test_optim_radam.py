"""manifold_align.optim.RiemannianAdam: geoopt's rule (checked step by step), speed layout, flags."""

from __future__ import annotations

import importlib.util
import io
import json
import math
from pathlib import Path

import geoopt
import pytest
import torch

import manifold_align.optim.fused_cpu as fused_cpu
import manifold_align.optim.radam as radam
import manifold_align.optim.rowwise as rowwise
from manifold_align import Euclidean, Oblique, Product, Sphere
from manifold_align.optim import RiemannianAdam

F64 = torch.float64


def _point(manifold, shape, dtype=F64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if manifold is None or isinstance(manifold, geoopt.Euclidean | Euclidean):
        return x.to(dtype)
    return manifold.projx(x).to(dtype)


def _loss(ps, targets):
    """A smooth loss with gradients that are not tangent (so projection matters)."""
    return sum(((p - t) ** 2).sum() + (p**3).sum() for p, t in zip(ps, targets))


def _trajectory(opt_cls, specs, steps, groups=None, **kw):
    """Run ``steps`` of ``opt_cls`` on parameters built from ``specs`` (manifold, shape).

    Returns the final parameters. ``groups``: a function turning the parameter list into
    param groups (default: one group, tags on the tensors).
    """
    ps, targets = [], []
    for i, (manifold, shape) in enumerate(specs):
        x = _point(manifold, shape, seed=i)
        p = (
            geoopt.ManifoldParameter(x, manifold=manifold)
            if manifold is not None
            else torch.nn.Parameter(x)
        )
        ps.append(p)
        targets.append(torch.randn(shape, generator=torch.Generator().manual_seed(100 + i), dtype=F64))
    opt = opt_cls(groups(ps) if groups else ps, **kw)
    for _ in range(steps):
        opt.zero_grad()
        _loss(ps, targets).backward()
        opt.step()
    return [p.detach().clone() for p in ps]


def _assert_close(a_list, b_list, tol=1e-10):
    for a, b in zip(a_list, b_list):
        assert (a - b).abs().max().item() < tol


# --- the update rule is geoopt's -----------------------------------------------------------


def _use_torch_kernel(monkeypatch):
    """Run the row parameters through the cache-blocked torch kernel (numba's absence)."""
    monkeypatch.setattr(fused_cpu, "available", lambda: False)
    monkeypatch.setattr(radam, "_NOTICED", {"cpu"})  # its one-time notice counts as given


@pytest.mark.parametrize("kernel", ["one-pass", "torch"])
@pytest.mark.parametrize(
    "block,weight_decay,amsgrad",
    [(None, 0.0, False), (64, 0.1, False), (64, 0.0, True), (None, 0.05, True)],
    ids=["packed", "in-place-blocks-wd", "in-place-blocks-amsgrad", "packed-wd-amsgrad"],
)
def test_matches_geoopt_on_sphere_and_oblique(monkeypatch, block, weight_decay, amsgrad, kernel):
    # torch kernel, block=64 numbers per thread: the (40, 6) parameter is walked in place,
    # several blocks each; the default packs these small parameters into one block.
    if kernel == "torch":
        _use_torch_kernel(monkeypatch)
    if block is not None:
        monkeypatch.setattr(rowwise, "BLOCK_ELEMENTS", block)
    specs = [
        (geoopt.Sphere(), (40, 6)),
        (Sphere(6), (3, 6)),
        (Sphere(5), (7, 5)),
        (Oblique(4, 6), (9, 4, 6)),
        (Oblique(3, 5), (2, 2, 3, 5)),
    ]
    kw = {"lr": 3e-2, "weight_decay": weight_decay, "amsgrad": amsgrad}
    ours = _trajectory(RiemannianAdam, specs, 60, **kw)
    ref = _trajectory(geoopt.optim.RiemannianAdam, specs, 60, **kw)
    _assert_close(ours, ref)
    # the trajectory went somewhere (the comparison is not between two resting points)
    assert min((o - _point(m, s, seed=i)).abs().max() for i, (o, (m, s)) in enumerate(zip(ours, specs))) > 0.1


@pytest.mark.parametrize("flags", [{}, {"foreach": True}, {"foreach": False}, {"fused": True}])
def test_plain_parameters_are_torch_adam(flags):
    specs = [(None, (5, 3)), (None, (4,)), (geoopt.Euclidean(), (2, 3)), (Euclidean(3), (6, 3))]
    kw = {"lr": 1e-2, "weight_decay": 0.01, "amsgrad": True}
    ours = _trajectory(RiemannianAdam, specs, 60, **kw, **flags)
    torch_adam = _trajectory(torch.optim.Adam, specs, 60, **kw)
    geo = _trajectory(geoopt.optim.RiemannianAdam, specs, 60, **kw)
    _assert_close(ours, torch_adam, tol=1e-12)
    _assert_close(ours, geo, tol=1e-10)


def test_other_manifolds_use_their_own_operations():
    # Stiefel and Product take the generic path: egrad2rgrad / component_inner / retr_transp.
    specs = [(geoopt.Stiefel(), (6, 3)), (Product(Sphere(3), Oblique(2, 4)), (4, 11))]
    for kw in ({"lr": 2e-2}, {"lr": 2e-2, "weight_decay": 0.1, "amsgrad": True}):
        _assert_close(
            _trajectory(RiemannianAdam, specs, 100, **kw),
            _trajectory(geoopt.optim.RiemannianAdam, specs, 100, **kw),
        )


def test_mixed_groups_match_geoopt_with_per_group_hyperparameters():
    specs = [(Sphere(4), (10, 4)), (None, (3, 2)), (Oblique(2, 3), (5, 2, 3))]

    def groups(ps):
        return [{"params": [ps[0], ps[1]], "lr": 1e-2}, {"params": [ps[2]], "betas": (0.8, 0.99)}]

    _assert_close(
        _trajectory(RiemannianAdam, specs, 80, groups=groups, lr=5e-2),
        _trajectory(geoopt.optim.RiemannianAdam, specs, 80, groups=groups, lr=5e-2),
    )


def test_stabilize_matches_geoopt():
    specs = [(Sphere(4), (10, 4)), (geoopt.Stiefel(), (5, 2))]
    _assert_close(
        _trajectory(RiemannianAdam, specs, 60, lr=5e-2, stabilize=7),
        _trajectory(geoopt.optim.RiemannianAdam, specs, 60, lr=5e-2, stabilize=7),
    )


def test_non_contiguous_parameter_matches_geoopt():
    def build(opt_cls):
        x = _point(None, (6, 30), seed=3)
        p = geoopt.ManifoldParameter(torch.nn.functional.normalize(x.t(), dim=-1), manifold=Sphere(6))
        p.data = p.data.t().contiguous().t()  # same values, column-major storage
        assert not p.is_contiguous()
        opt = opt_cls([p], lr=5e-2)
        for i in range(50):
            opt.zero_grad()
            (p * torch.linspace(-1, 1, 6, dtype=F64) * (i + 1)).sum().backward()
            opt.step()
        return p.detach()

    _assert_close([build(RiemannianAdam)], [build(geoopt.optim.RiemannianAdam)])


# --- stays on the manifold ------------------------------------------------------------------


def test_float32_iterates_stay_on_the_manifold_for_thousands_of_steps():
    gen = torch.Generator().manual_seed(0)
    ob, sp = Oblique(4, 8), Sphere(8)
    x = geoopt.ManifoldParameter(ob.projx(torch.randn(16, 4, 8, generator=gen)), manifold=ob)
    y = geoopt.ManifoldParameter(sp.projx(torch.randn(16, 8, generator=gen)), manifold=sp)
    opt = RiemannianAdam([x, y], lr=5e-2, weight_decay=1e-3)
    for _ in range(3000):
        x.grad = torch.randn(x.shape, generator=gen) * 10
        y.grad = torch.randn(y.shape, generator=gen) * 1e-3
        opt.step()
    assert (x.detach().norm(dim=-1) - 1).abs().max() < 1e-5
    assert (y.detach().norm(dim=-1) - 1).abs().max() < 1e-5
    m = opt.state[x]["exp_avg"]
    assert (m * x.detach()).sum(-1).abs().max() < 1e-5  # first moment stays tangent


def test_autocast_and_bfloat16_parameters_stay_on_the_manifold():
    gen = torch.Generator().manual_seed(1)
    ob = Oblique(4, 16)
    w = torch.randn(32, 64, generator=gen)
    x = geoopt.ManifoldParameter(ob.projx(torch.randn(8, 4, 16, generator=gen)), manifold=ob)
    h = geoopt.ManifoldParameter(
        ob.projx(torch.randn(8, 4, 16, generator=gen)).bfloat16(), manifold=ob
    )
    opt = RiemannianAdam([x, h], lr=5e-2)
    for _ in range(20):  # bf16 matmuls under CPU autocast cost ~20 ms each here
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = (w @ x.reshape(8, 64).t()).square().mean() + (w @ h.reshape(8, 64).t()).square().mean()
        loss.backward()
        assert h.grad.dtype == torch.bfloat16
        opt.step()
    assert x.dtype == torch.float32 and h.dtype == torch.bfloat16
    assert (x.detach().norm(dim=-1) - 1).abs().max() < 1e-5
    assert (h.detach().float().norm(dim=-1) - 1).abs().max() < 1e-2  # bf16 rounding of the entries
    assert opt.state[h]["exp_avg"].dtype == torch.float32
    assert opt.state[h]["exp_avg_sq"].dtype == torch.float32
    assert torch.isfinite(x).all() and torch.isfinite(h).all()
    assert (opt.state[x]["exp_avg"] != 0).any()  # it did move


# --- the manifold travels with the group -----------------------------------------------------


def _module_with_sphere_rows():
    mod = torch.nn.Module()
    mod.emb = geoopt.ManifoldParameter(Sphere(8).projx(torch.randn(32, 8)), manifold=Sphere(8))
    return mod


def _drive(opt, p, steps=30):
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    return (p.detach().norm(dim=-1) - 1).abs().max().item()


def test_group_manifold_survives_load_state_dict_assign():
    mod = _module_with_sphere_rows()
    mod.load_state_dict({"emb": Sphere(8).projx(torch.randn(32, 8))}, assign=True)
    assert not isinstance(mod.emb, geoopt.ManifoldParameter)  # the tag fell off
    opt = RiemannianAdam([{"params": mod.parameters(), "manifold": Sphere(8)}], lr=0.1)
    assert _drive(opt, mod.emb) < 1e-6
    # control: without the group's manifold the tensor is just a plain parameter
    control = RiemannianAdam(mod.parameters(), lr=0.1)
    assert _drive(control, mod.emb) > 1e-2


def test_tag_seen_at_construction_survives_a_tensor_swap():
    mod = _module_with_sphere_rows()
    opt = RiemannianAdam(mod.parameters(), lr=0.1)
    torch.utils.swap_tensors(mod.emb, torch.nn.Parameter(mod.emb.detach().clone()))
    assert not isinstance(mod.emb, geoopt.ManifoldParameter)
    assert _drive(opt, mod.emb) < 1e-6


def test_group_manifold_checks():
    p = geoopt.ManifoldParameter(Sphere(4).projx(torch.randn(3, 4)), manifold=Sphere(4))
    with pytest.raises(ValueError, match="tagged with"):
        RiemannianAdam([{"params": [p], "manifold": Oblique(1, 4)}])
    RiemannianAdam([{"params": [p], "manifold": Sphere(4)}])  # an equal manifold is fine
    with pytest.raises(TypeError, match=r"geoopt\.Manifold"):
        RiemannianAdam([{"params": [p], "manifold": "sphere"}])
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 4\)"):
        RiemannianAdam([{"params": [torch.nn.Parameter(torch.randn(5, 4))], "manifold": Oblique(3, 4)}])
    with pytest.raises(TypeError, match="floating point"):
        RiemannianAdam([{"params": [torch.zeros(3, 4, dtype=torch.int64)], "manifold": Sphere(4)}])


# --- flags -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,err,match",
    [
        ({"capturable": True}, ValueError, "capturable"),
        ({"differentiable": True}, ValueError, "differentiable"),
        ({"foreach": True, "fused": True}, ValueError, "foreach and fused"),
        ({"lr": -1.0}, ValueError, "lr"),
        ({"eps": float("nan")}, ValueError, "eps"),
        ({"betas": (0.9, 1.0)}, ValueError, r"betas\[1\]"),
        ({"betas": (0.9,)}, ValueError, "betas"),
        ({"weight_decay": -0.1}, ValueError, "weight_decay"),
        ({"stabilize": 0}, ValueError, "stabilize"),
        ({"decoupled_weight_decay": True}, TypeError, "decoupled_weight_decay"),
    ],
)
def test_rejected_arguments(kw, err, match):
    with pytest.raises(err, match=match):
        RiemannianAdam([torch.nn.Parameter(torch.zeros(2))], **kw)


def test_sparse_gradients_are_rejected():
    p = torch.nn.Parameter(torch.zeros(4, 3))
    p.grad = torch.zeros(4, 3).to_sparse()
    with pytest.raises(TypeError, match="sparse"):
        RiemannianAdam([p]).step()


@pytest.mark.parametrize("manifold", [Sphere(4), None, geoopt.Stiefel()], ids=["rows", "euclidean", "generic"])
def test_weight_decay_and_maximize_leave_the_gradient_alone(manifold):
    x = _point(manifold, (6, 4), dtype=torch.float32)
    p = geoopt.ManifoldParameter(x, manifold=manifold) if manifold else torch.nn.Parameter(x)
    g = torch.randn(6, 4)
    p.grad = g.clone()
    opt = RiemannianAdam([p], lr=0.1, weight_decay=0.5, maximize=True)
    opt.step()
    opt.step()
    assert torch.equal(p.grad, g)


@pytest.mark.parametrize("manifold", [Oblique(2, 3), None, geoopt.Stiefel()], ids=["rows", "euclidean", "generic"])
def test_maximize_is_descent_on_the_negated_gradient(manifold):
    shape = (5, 2, 3) if manifold is not None and not isinstance(manifold, geoopt.Stiefel) else (6, 3)
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(shape, generator=gen, dtype=F64) for _ in range(20)]

    def run(maximize):
        x = _point(manifold, shape)
        p = geoopt.ManifoldParameter(x, manifold=manifold) if manifold else torch.nn.Parameter(x)
        opt = RiemannianAdam([p], lr=0.05, weight_decay=0.1, maximize=maximize)
        for g in grads:
            p.grad = g if maximize else -g
            opt.step()
        return p.detach()

    up = run(True)
    _assert_close([up], [run(False)], tol=1e-12)
    assert (up - _point(manifold, shape)).abs().max() > 0.1


# --- state -----------------------------------------------------------------------------------


def test_second_moment_is_one_scalar_per_component():
    ps = [
        geoopt.ManifoldParameter(Sphere(8).projx(torch.randn(10, 8)), manifold=Sphere(8)),
        geoopt.ManifoldParameter(Oblique(3, 8).projx(torch.randn(10, 3, 8)), manifold=Oblique(3, 8)),
        torch.nn.Parameter(torch.randn(10, 8)),
    ]
    opt = RiemannianAdam(ps, amsgrad=True)
    for p in ps:
        p.grad = torch.randn(p.shape)
    opt.step()
    expected = [(10, 1), (10, 3, 1), (10, 8)]
    for p, shape in zip(ps, expected):
        assert tuple(opt.state[p]["exp_avg_sq"].shape) == shape
        assert tuple(opt.state[p]["max_exp_avg_sq"].shape) == shape
        assert opt.state[p]["exp_avg"].shape == p.shape


def _resume_run(dtype, split):
    """Run 40 steps; with ``split`` save after ``split`` and continue in a fresh optimizer."""
    gen = torch.Generator().manual_seed(7)
    grads = [
        [torch.randn(12, 2, 4, generator=gen), torch.randn(5, 3, generator=gen)] for _ in range(40)
    ]
    ob = Oblique(2, 4)
    x = geoopt.ManifoldParameter(ob.projx(torch.randn(12, 2, 4, generator=gen)).to(dtype), manifold=ob)
    e = torch.nn.Parameter(torch.randn(5, 3, generator=gen).to(dtype))

    def make():
        return RiemannianAdam(
            [{"params": [x], "manifold": ob}, {"params": [e], "lr": 3e-2}],
            lr=1e-1,
            amsgrad=True,
            weight_decay=0.01,
        )

    opt = make()
    for i, (gx, ge) in enumerate(grads):
        if i == split:
            buf = io.BytesIO()
            torch.save(opt.state_dict(), buf)
            buf.seek(0)
            opt = make()
            opt.load_state_dict(torch.load(buf, weights_only=True))
        x.grad, e.grad = gx.to(dtype), ge.to(dtype)
        opt.step()
    return x.detach().clone(), e.detach().clone(), opt


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_resume_from_state_dict_reproduces_the_trajectory(dtype):
    x1, e1, _ = _resume_run(dtype, split=None)
    x2, e2, opt = _resume_run(dtype, split=17)
    assert torch.equal(x1, x2) and torch.equal(e1, e2)
    assert isinstance(opt.param_groups[0]["manifold"], Oblique)  # the object, not its repr
    state = opt.state[opt.param_groups[0]["params"][0]]
    assert state["exp_avg"].dtype == torch.float32  # not cast down to the parameter's dtype


def test_state_dict_refuses_another_manifold():
    p = torch.nn.Parameter(Sphere(4).projx(torch.randn(3, 4)))
    opt = RiemannianAdam([{"params": [p], "manifold": Sphere(4)}])
    p.grad = torch.randn(3, 4)
    opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"][0]["manifold"] == repr(Sphere(4))
    other = RiemannianAdam([{"params": [p], "manifold": geoopt.Sphere()}])
    with pytest.raises(ValueError, match="manifold"):
        other.load_state_dict(sd)


def test_closure_is_evaluated_with_grad():
    p = torch.nn.Parameter(torch.ones(3))
    opt = RiemannianAdam([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(3.0)
    assert p.detach().lt(1).all()


# --- the benchmark runs ----------------------------------------------------------------------


def test_benchmark_quick_mode_reports_all_three(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_radam.py"
    spec = importlib.util.spec_from_file_location("bench_radam", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "radam.json"
    threads = torch.get_num_threads()
    bench.main(["--quick", "--rows", "256", "--threads", "1", "2", "--json", str(out)])
    assert torch.get_num_threads() == threads  # the benchmark gives the count back
    records = json.loads(out.read_text())["results"]
    seen = {(r["layout"], r["threads"], r["optimizer"]) for r in records}
    assert {o for *_, o in seen} == {"ours", "geoopt", "fused"} and len(seen) == 12
    assert all(r["ms_per_step"] > 0 and math.isfinite(r["ratio_to_fused"]) for r in records)
    # the bandwidth floor: ours moves 5 + 2/d tensor passes, fused Adam 7, geoopt is not bounded
    passes = {r["optimizer"]: r["passes"] for r in records}
    assert passes == {"ours": 5 + 2 / 64, "fused": 7.0, "geoopt": None}
    assert all(r["floor_ms"] > 0 for r in records if r["passes"])
    ours = [r for r in records if r["optimizer"] == "ours"]
    assert all(r["max_row_norm_error"] < 1e-5 for r in ours)


def test_deepcopy_keeps_the_manifold_of_tagged_parameters():
    import copy

    p = geoopt.ManifoldParameter(Sphere(8).projx(torch.randn(16, 8)), manifold=Sphere(8))
    opt = copy.deepcopy(RiemannianAdam([p], lr=0.1))
    q = opt.param_groups[0]["params"][0]
    assert q is not p
    assert _drive(opt, q) < 1e-6


def test_amsgrad_switched_on_later_sizes_its_state_by_component_inner():
    pr = Product(Sphere(3), Oblique(2, 4))
    p = geoopt.ManifoldParameter(pr.projx(torch.randn(5, 11, dtype=F64)), manifold=pr)
    opt = RiemannianAdam([p], lr=0.1)
    p.grad = torch.randn(5, 11, dtype=F64)
    opt.step()
    opt.param_groups[0]["amsgrad"] = True
    opt.step()
    assert opt.state[p]["max_exp_avg_sq"].shape == opt.state[p]["exp_avg_sq"].shape


def test_state_dict_of_geoopt_is_refused_by_shape():
    def make(cls):
        p = geoopt.ManifoldParameter(Sphere(4).projx(torch.randn(3, 4)), manifold=Sphere(4))
        opt = cls([p])
        p.grad = torch.randn(3, 4)
        opt.step()
        return opt

    geo_sd = make(geoopt.optim.RiemannianAdam).state_dict()
    geo_sd["param_groups"][0]["manifold"] = None  # geoopt has no group manifold
    ours = make(RiemannianAdam)
    before = ours.state_dict()
    with pytest.raises(ValueError, match=r"exp_avg_sq of shape \(3, 4\), expected \(3, 1\)"):
        ours.load_state_dict(geo_sd)
    assert torch.equal(ours.state_dict()["state"][0]["exp_avg"], before["state"][0]["exp_avg"])


def test_bfloat16_in_place_blocks_equal_the_packed_path(monkeypatch):
    # Half-precision rows are updated in a float32 copy of each block and written back; the
    # in-place walk (tiny blocks) and the packed path must give the same bits.
    _use_torch_kernel(monkeypatch)

    def run(block):
        if block is not None:
            monkeypatch.setattr(rowwise, "BLOCK_ELEMENTS", block)
        gen = torch.Generator().manual_seed(5)
        ob = Oblique(3, 8)
        p = geoopt.ManifoldParameter(ob.projx(torch.randn(20, 3, 8, generator=gen)).bfloat16(), manifold=ob)
        opt = RiemannianAdam([p], lr=0.05, amsgrad=True)
        for _ in range(10):
            p.grad = torch.randn(p.shape, generator=gen).bfloat16()
            opt.step()
        return p.detach().clone(), opt.state[p]["exp_avg"].clone()

    x_packed, m_packed = run(None)
    x_blocks, m_blocks = run(48)
    assert torch.equal(x_packed, x_blocks) and torch.equal(m_packed, m_blocks)
    assert m_packed.dtype == torch.float32
    assert (x_packed.float().norm(dim=-1) - 1).abs().max() < 1e-2


@pytest.mark.parametrize("kernel", ["one-pass", "torch"])
def test_cpu_threads_do_not_change_the_result(monkeypatch, kernel):
    # Large enough (256 Ki numbers) that every operation really is split over threads.
    if kernel == "torch":
        _use_torch_kernel(monkeypatch)

    def run(threads):
        gen = torch.Generator().manual_seed(9)
        p = geoopt.ManifoldParameter(Sphere(64).projx(torch.randn(4096, 64, generator=gen)), manifold=Sphere(64))
        opt = RiemannianAdam([p], lr=0.05, weight_decay=0.1, cpu_threads=threads)
        for _ in range(3):
            p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        return p.detach().clone()

    before = torch.get_num_threads()
    assert torch.equal(run(1), run(2))
    assert torch.get_num_threads() == before  # restored after each step
    with pytest.raises(ValueError, match="cpu_threads"):
        RiemannianAdam([torch.nn.Parameter(torch.zeros(2))], cpu_threads=0)


@pytest.mark.parametrize("cpu_threads", [None, 1, 2])
def test_step_leaves_the_process_thread_count_alone(monkeypatch, cpu_threads):
    # An optimizer must not change process-wide state: the step neither reads the machine's
    # load nor calls torch.set_num_threads, even mid-step, however busy the machine looks;
    # an explicit cpu_threads is handed to the one-pass kernel's own threads.
    monkeypatch.setattr("os.getloadavg", lambda: (1e3, 1e3, 1e3))
    real = torch.set_num_threads
    outside = torch.get_num_threads()
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n)))
    real(2)  # more than one thread, whatever OMP_NUM_THREADS the suite runs under
    try:
        gen = torch.Generator().manual_seed(3)
        p = geoopt.ManifoldParameter(Sphere(64).projx(torch.randn(4096, 64, generator=gen)), manifold=Sphere(64))
        opt = RiemannianAdam([p], lr=0.01, cpu_threads=cpu_threads)
        for _ in range(2):
            p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        after = torch.get_num_threads()
    finally:
        real(outside)
    assert calls == []
    assert after == 2
