"""What each topology can reach (sphere, oblique, Lorentz, products), against constructions,
numerical optimization and the toy simulation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from manifold_align.config import load_config
from manifold_align.manifolds import Euclidean, Lorentz, Oblique, Product, Sphere
from manifold_align.simulate import theory, topology
from manifold_align.simulate.config import SweepConfig, parse_manifold
from manifold_align.simulate.sweep import run_sweep
from manifold_align.simulate.toy import ToyModel


def _mean_gap(sim: torch.Tensor) -> torch.Tensor:
    c = sim.shape[-1]
    diag = sim.diagonal(dim1=-2, dim2=-1).sum(-1)
    return diag / c - (sim.sum((-2, -1)) - diag) / (c * (c - 1))


def _simplex(concepts: int, dim: int) -> torch.Tensor:
    """``(C, dim)`` unit vectors at the vertices of a regular simplex (``dim >= C``)."""
    v = torch.eye(concepts, dim, dtype=torch.float64) - torch.eye(concepts, dim, dtype=torch.float64).mean(0)
    return v / v.norm(dim=-1, keepdim=True)


def _ball_points(m: Lorentz, directions: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Points at geodesic distance ``radii`` from the origin in unit ``directions`` (space part)."""
    zero = torch.zeros_like(directions[..., :1])
    return m.expmap0(torch.cat([zero, radii[..., None] * directions], dim=-1))


# --- the hyperbolic ceiling -------------------------------------------------------------------


@pytest.mark.parametrize("concepts", [2, 3, 8])
@pytest.mark.parametrize("curvature", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("radius", [0.3, 1.0, 2.5])
def test_hyperbolic_ceiling_is_the_simplex_on_the_boundary_sphere(concepts, curvature, radius):
    m = Lorentz(concepts, curvature, radius=radius)
    pts = _ball_points(m, _simplex(concepts, concepts), torch.full((concepts,), radius, dtype=torch.float64))
    assert m.dist0(pts).allclose(torch.tensor(radius, dtype=torch.float64))
    gap = float(_mean_gap(m.similarity(pts, pts)))
    # rel 1e-6: the similarity's chordal form leaves sqrt(eps) ~ 1e-8 on identical float64 points
    assert gap == pytest.approx(theory.hyperbolic_max_gap(concepts, radius, curvature), rel=1e-6)


@pytest.mark.parametrize(("concepts", "radius"), [(3, 1.0), (5, 2.0)])
def test_no_configuration_in_the_ball_beats_the_hyperbolic_ceiling(concepts, radius):
    # Gradient ascent on the mean gap over free image and text points inside the ball, from
    # random starts: it climbs to the ceiling and never above it.
    m = Lorentz(concepts, radius=radius)
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(8, 2, concepts, concepts, generator=gen, dtype=torch.float64).requires_grad_()
    opt = torch.optim.Adam([w], lr=0.05)

    def gaps() -> torch.Tensor:
        norm = w.norm(dim=-1, keepdim=True)
        pts = _ball_points(m, w / norm, radius * torch.tanh(norm[..., 0]))
        return _mean_gap(m.similarity(pts[:, 0], pts[:, 1]))

    for _ in range(200):
        opt.zero_grad()
        (-gaps().sum()).backward()
        opt.step()
    best = gaps().detach()
    ceiling = theory.hyperbolic_max_gap(concepts, radius)
    assert float(best.max()) <= ceiling + 1e-9
    assert float(best.max()) >= 0.99 * ceiling


@given(
    concepts=st.integers(2, 10_000),
    radius=st.floats(0.0, 300.0),
    curvature=st.floats(0.01, 100.0),
)
def test_radius_for_gap_inverts_the_ceiling(concepts, radius, curvature):
    gap = theory.hyperbolic_max_gap(concepts, radius, curvature)
    assert math.isfinite(gap) and gap >= 0
    back = theory.hyperbolic_radius_for_gap(gap, concepts, curvature)
    assert back == pytest.approx(radius, rel=1e-7, abs=1e-6 / math.sqrt(curvature))


def test_hyperbolic_ceiling_grows_like_twice_the_radius_and_tends_to_the_euclidean_ball():
    for c in (0.5, 1.0, 4.0):
        r = 30.0
        expected = 2 * r + math.log(8 / (2 * 7)) / math.sqrt(c)
        assert theory.hyperbolic_max_gap(8, r, c) == pytest.approx(expected, rel=1e-9)
    # curvature -> 0: the regular simplex inscribed in a Euclidean ball, side R sqrt(2C/(C-1))
    assert theory.hyperbolic_max_gap(8, 1.5, 1e-10) == pytest.approx(1.5 * math.sqrt(16 / 7), rel=1e-6)
    assert theory.hyperbolic_max_gap(8, math.inf) == math.inf
    assert theory.hyperbolic_max_gap(8, 0.0) == 0.0


def test_min_hyperbolic_radius_reaches_the_equilibrium_gap_exactly():
    for noise in (0.05, 0.2, 0.5, 0.8):
        r = theory.min_hyperbolic_radius(noise, 32, 8)
        assert theory.hyperbolic_max_gap(8, r) == pytest.approx(theory.equilibrium_gap(noise, 32, 8))
    assert theory.min_hyperbolic_radius(0.0, 32, 8) == math.inf
    assert theory.min_hyperbolic_radius(1.0, 32, 8) == 0.0


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: theory.hyperbolic_max_gap(8, -1.0), "radius"),
        (lambda: theory.hyperbolic_max_gap(8, float("nan")), "radius"),
        (lambda: theory.hyperbolic_max_gap(8, 1.0, 0.0), "curvature"),
        (lambda: theory.hyperbolic_max_gap(1, 1.0), "concepts"),
        (lambda: theory.hyperbolic_radius_for_gap(float("nan"), 8), "gap"),
        (lambda: theory.needs_temperature(0.2, 32, 8, -1.0), "ceiling"),
        (lambda: theory.equilibrium_within(0.2, 32, 8, 1.0, max_scale=0.0), "max_scale"),
    ],
)
def test_bad_topology_arguments_are_named(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()


# --- each topology's ceiling and whether it needs a temperature -------------------------------


def test_topology_ceilings_and_the_temperature_they_need():
    c = 8
    unit = c / (c - 1)
    lorentz = theory.hyperbolic_max_gap(c, 2.5)
    cases = {
        "sphere:64": (unit, "sphere"),
        "oblique:8x8": (8 * unit, "oblique"),
        "lorentz:63:r=2.5": (lorentz, "lorentz"),
        "lorentz:63:r=inf": (math.inf, "lorentz"),
        "product:sphere:32+lorentz:31:r=1": (unit + theory.hyperbolic_max_gap(c, 1.0), "product"),
        "product:oblique:2x8+sphere:8": (3 * unit, "product"),
    }
    for spec, (ceiling, kind) in cases.items():
        m = parse_manifold(spec)
        assert topology.topology_max_gap(m, c) == pytest.approx(ceiling), spec
        assert topology.topology_kind(m) == kind
    assert topology.topology_max_gap(Euclidean(4), c) == math.inf
    # g* = 3.50 at p = 0.2, 5.03 at p = 0.05 (C = 8)
    need = {spec: theory.needs_temperature(0.2, 32, c, v[0]) for spec, v in cases.items()}
    assert need == {
        "sphere:64": True,
        "oblique:8x8": False,
        "lorentz:63:r=2.5": False,
        "lorentz:63:r=inf": False,
        "product:sphere:32+lorentz:31:r=1": True,
        "product:oblique:2x8+sphere:8": True,  # 3 x 8/7 = 3.43 < 3.50
    }
    assert theory.needs_temperature(0.05, 32, c, lorentz)  # 4.45 < 5.03
    eq = theory.equilibrium_within(0.05, 32, c, lorentz, max_scale=1.0)
    assert eq.reachable_gap == pytest.approx(lorentz) and eq.reachable_loss > eq.loss


def test_min_lorentz_radius_counts_the_other_factors():
    g = theory.equilibrium_gap(0.2, 32, 8)
    alone = topology.min_lorentz_radius(parse_manifold("lorentz:16"), g, 8)
    assert alone == pytest.approx(theory.min_hyperbolic_radius(0.2, 32, 8))
    with_sphere = topology.min_lorentz_radius(parse_manifold("product:sphere:8+lorentz:16"), g, 8)
    assert theory.hyperbolic_max_gap(8, with_sphere) == pytest.approx(g - 8 / 7)
    assert topology.min_lorentz_radius(parse_manifold("product:oblique:8x8+lorentz:4"), g, 8) == 0.0
    assert topology.min_lorentz_radius(Sphere(8), g, 8) is None
    assert topology.min_lorentz_radius(Product(Lorentz(4), Lorentz(4)), g, 8) is None


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("lorentz:16", Lorentz(16)),
        ("lorentz:16:c=0.5", Lorentz(16, 0.5)),
        ("lorentz:16:r=2.5:c=2", Lorentz(16, 2.0, radius=2.5)),
        ("lorentz:16:r=inf", Lorentz(16, radius=math.inf)),
        ("product:sphere:8+lorentz:4:r=1", Product(Sphere(8), Lorentz(4, radius=1.0))),
    ],
)
def test_parse_lorentz_specs(spec, expected):
    assert repr(parse_manifold(spec)) == repr(expected)


@pytest.mark.parametrize(
    "spec",
    ["lorentz", "lorentz:0", "lorentz:4:c=0", "lorentz:4:c=inf", "lorentz:4:r=-1", "lorentz:4:k=1",
     "lorentz:4:r=1:r=2", "lorentz:4:r", "product:lorentz:4"],
)
def test_parse_lorentz_rejects_bad_specs(spec):
    with pytest.raises(ValueError, match="where"):
        parse_manifold(spec, key="where")


# --- keeping the toy's hyperbolic points inside the radius ------------------------------------


def test_confine_moves_only_outlying_lorentz_points_onto_the_radius():
    m = Product(Sphere(3), Lorentz(4, 0.5, radius=1.5))
    lorentz = m.factors[1]
    gen = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(6, 4, generator=gen, dtype=torch.float64), dim=-1)
    radii = torch.tensor([0.2, 1.0, 1.49, 1.6, 3.0, 8.0], dtype=torch.float64)
    sph = Sphere(3).random(6, 3, generator=gen, dtype=torch.float64)
    x = m.join([sph, _ball_points(lorentz, dirs, radii)])
    before = x.clone()
    topology.confine_(m, x)
    s_part, l_part = m.split(x)
    assert torch.equal(s_part, sph)
    d0 = lorentz.dist0(l_part)
    assert torch.allclose(d0, radii.clamp_max(1.5), atol=1e-9)
    assert torch.equal(x[:3], before[:3])  # inside: untouched
    # still on the hyperboloid and in the same direction
    assert torch.allclose(lorentz.projx(l_part), l_part, atol=1e-9)
    assert torch.allclose(torch.nn.functional.normalize(l_part[:, 1:], dim=-1), dirs, atol=1e-12)


def test_initial_points_start_lorentz_near_the_origin_and_leave_unit_rows_as_they_were():
    m = Product(Oblique(2, 8), Lorentz(63))
    x = topology.initial_points(m, (5, 7, m.flat_dim), torch.Generator().manual_seed(0))
    z = torch.randn(5, 7, m.flat_dim, generator=torch.Generator().manual_seed(0))
    ob, lo = m.split(x)
    assert torch.equal(ob, Oblique(2, 8).projx(z[..., :16].reshape(5, 7, 2, 8)))
    assert torch.allclose(lo, m.factors[1].projx(lo))
    radius = m.factors[1].dist0(lo)
    assert 0.5 < float(radius.mean()) < 1.5  # asinh(sqrt(63)) = 2.8 for projx(z)
    sphere = Sphere(4)
    assert torch.equal(
        topology.initial_points(sphere, (3, 4), torch.Generator().manual_seed(1)),
        sphere.projx(torch.randn(3, 4, generator=torch.Generator().manual_seed(1))),
    )


def test_toy_model_keeps_lorentz_points_inside_the_radius():
    m = Lorentz(8, radius=0.5)
    model = ToyModel(m, runs=2, concepts=4, generator=torch.Generator().manual_seed(0))
    assert float(m.dist0(model.image.detach()).max()) <= 0.5 + 1e-5
    with torch.no_grad():
        model.text.copy_(m.expmap0(3.0 * model.text))
    model.clamp_()
    assert float(m.dist0(model.text.detach()).max()) <= 0.5 + 1e-5


# --- the simulation reaches what the theory says ---------------------------------------------


@pytest.fixture(scope="module")
def topology_sweep():
    cfg = load_config(
        SweepConfig,
        None,
        [
            "noise=[0.2, 0.5]",
            "manifolds=[lorentz:8:r=1.5, lorentz:8:r=inf, product:sphere:8+lorentz:8:r=1]",
            "temperatures=[{mode: none}]",
            "steps=300",  # hyperbolic points must travel about R: a larger step than the sphere's
            "final_window=100",
            "optim.lr=0.05",
        ],
    )
    return run_sweep(cfg)


@pytest.mark.parametrize("noise", [0.2, 0.5])
@pytest.mark.parametrize("spec", ["lorentz:8:r=1.5", "lorentz:8:r=inf", "product:sphere:8+lorentz:8:r=1"])
def test_measured_gap_lands_within_ten_percent_of_the_topology_prediction(topology_sweep, noise, spec):
    (rec,) = [r for r in topology_sweep.records if r["noise"] == noise and r["manifold"] == spec]
    g = theory.equilibrium_gap(noise, 32, 8)
    ceiling = topology.topology_max_gap(parse_manifold(spec), 8)
    assert rec["ceiling"] == (None if math.isinf(ceiling) else pytest.approx(ceiling))
    assert rec["reachable_gap"] == pytest.approx(min(g, ceiling))
    assert rec["needs_temperature"] == (g > ceiling)
    assert abs(rec["measured_gap"] / rec["reachable_gap"] - 1) < 0.10
    assert rec["final_loss"] == pytest.approx(rec["predicted_loss"], rel=0.03)


def test_command_reports_every_topology_with_its_ceiling(tmp_path):
    from manifold_align.cli import main

    out = tmp_path / "topo"
    rc = main([
        "simulate", "--quiet", "--out", str(out),
        "--set", "noise=[0.3]",
        "--set", "manifolds=[sphere:8, lorentz:8:r=1, lorentz:8:r=inf, product:sphere:8+lorentz:8:r=1]",
        "--set", "temperatures=[{mode: learnable, init: 1.0, max: 10.0}, {mode: none}]",
        "--set", "steps=10", "--set", "log_every=5", "--set", "final_window=5",
    ])
    assert rc == 0
    for png in ("gap_by_topology.png", "scale_vs_noise.png", "gap_vs_noise.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG"), png
    summary = (out / "summary.md").read_text()
    table = summary[summary.index("## Topologies"):summary.index("## Runs")]
    d1 = theory.hyperbolic_max_gap(8, 1.0)
    assert f"| `lorentz:8:r=1` | {d1:.2f} | 0.3 |" in table
    assert f"| `product:sphere:8+lorentz:8:r=1` | {d1 + 8 / 7:.2f} | 0.3 |" in table
    assert "| `lorentz:8:r=inf` | inf | 0.3 |" in table
    assert table.count("| yes |") == 3 and table.count("| no |") == 1  # g*(0.3) = 3.0
