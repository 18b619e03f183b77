"""What each topology can reach (sphere, oblique, Lorentz, products), against constructions,
numerical optimization and the toy simulation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifold_align.simulate import theory

# --- the hyperbolic ceiling ---------------------------------------------------------------------


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
