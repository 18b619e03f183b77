"""Cross-check against pymanopt's Sphere and Oblique (an independent implementation), float64.

pymanopt stores an oblique point as a ``d x k`` matrix with unit *columns*; ours is
``(k, d)`` with unit rows, so every array crosses over transposed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from strategies import point_pairs, tangents

pymanopt_manifolds = pytest.importorskip("pymanopt.manifolds")

from manifold_align import Oblique, Sphere  # noqa: E402

K, D = 3, 5
OURS_OBLIQUE, THEIRS_OBLIQUE = Oblique(K, D), pymanopt_manifolds.Oblique(D, K)
OURS_SPHERE, THEIRS_SPHERE = Sphere(D), pymanopt_manifolds.Sphere(D)


def to_pymanopt(t: torch.Tensor, oblique: bool) -> np.ndarray:
    """One of our points/tangents ``(k, d)`` or ``(d,)`` as pymanopt's ``(d, k)`` or ``(d,)``."""
    a = t.numpy()
    return a.T if oblique else a


def from_pymanopt(a: np.ndarray, oblique: bool) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.T if oblique else a))


CASES = [
    pytest.param(OURS_SPHERE, THEIRS_SPHERE, False, id="sphere"),
    pytest.param(OURS_OBLIQUE, THEIRS_OBLIQUE, True, id="oblique"),
]


@pytest.mark.parametrize(("ours", "theirs", "oblique"), CASES)
@given(data=st.data())
def test_operations_match_pymanopt(ours, theirs, oblique, data):
    # Pairs at distinct, non-antipodal positions: pymanopt's acos-based dist/log are only
    # accurate there (its Oblique gives NaN for dist(X, -X) and log(X, X)).
    x, y = data.draw(point_pairs(ours, batch=1, kinds=("random",)))
    x, y = x[0], y[0]
    u = data.draw(tangents(ours, x.unsqueeze(0), max_norm=2.5))[0]
    v = data.draw(tangents(ours, x.unsqueeze(0)))[0]
    ambient = u + 3 * x  # not tangent
    angles = (
        ours.dist(x, y)
        if not oblique
        else torch.stack([Sphere(D).dist(a, b) for a, b in zip(x, y, strict=True)])
    )
    if bool((angles < 1e-3).any() or (angles > torch.pi - 1e-3).any()):
        return
    X, Y, U, V, A = (to_pymanopt(t, oblique) for t in (x, y, u, v, ambient))

    def same(ours_out: torch.Tensor, theirs_out, atol: float = 1e-10) -> None:
        if np.ndim(theirs_out) == 0:
            torch.testing.assert_close(
                ours_out, torch.tensor(float(theirs_out), dtype=torch.float64), atol=atol, rtol=0
            )
        else:
            torch.testing.assert_close(
                ours_out, from_pymanopt(theirs_out, oblique), atol=atol, rtol=0
            )

    same(ours.proju(x, ambient), theirs.projection(X, A))
    same(ours.egrad2rgrad(x, ambient), theirs.euclidean_to_riemannian_gradient(X, A))
    same(ours.retr(x, u), theirs.retraction(X, U))
    same(ours.expmap(x, u), theirs.exp(X, U))
    same(ours.logmap(x, y), theirs.log(X, Y), atol=1e-7)  # pymanopt: arccos, eps-shifted ratio
    same(ours.dist(x, y), theirs.dist(X, Y), atol=1e-7)
    same(ours.transp(x, y, v), theirs.transport(X, Y, V))
    same(ours.inner(x, u, v), theirs.inner_product(X, U, V))
    same(ours.norm(x, u), theirs.norm(X, U))
    same(ours.projx(ambient), theirs.retraction(X, U + 2 * X))  # both normalize (per column)


@pytest.mark.parametrize(("ours", "theirs", "oblique"), CASES)
def test_random_points_follow_pymanopt_law(ours, theirs, oblique):
    """Uniform on each sphere, like pymanopt's: same distribution of every coordinate (KS test)."""
    np.random.seed(0)  # noqa: NPY002 (pymanopt samples from the global NumPy state)
    theirs_points = np.stack([theirs.random_point() for _ in range(2000)])
    ours_points = ours.random(
        2000, *ours.point_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    ours_points = np.stack([to_pymanopt(p, oblique) for p in ours_points])
    for i in np.ndindex(*theirs_points.shape[1:]):
        index = (slice(None), *i)
        assert stats.ks_2samp(ours_points[index], theirs_points[index]).pvalue > 1e-4, i
    # pymanopt accepts our points as its own: unit columns.
    np.testing.assert_allclose(np.linalg.norm(ours_points, axis=1), 1.0, atol=1e-12)


def test_we_are_exact_where_pymanopt_is_not():
    """pymanopt's Oblique: NaN for dist(X, -X) and log(X, X); ours: pi per column and 0."""
    x = OURS_OBLIQUE.random(K, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    X = to_pymanopt(x, True)
    with np.errstate(invalid="ignore"):
        theirs_antipodal = THEIRS_OBLIQUE.dist(X, -X)
    assert not np.isfinite(theirs_antipodal) or abs(theirs_antipodal - np.pi * np.sqrt(K)) > 1e-12
    torch.testing.assert_close(
        OURS_OBLIQUE.dist(x, -x), torch.tensor(np.pi * np.sqrt(K), dtype=torch.float64)
    )
    assert torch.equal(OURS_OBLIQUE.logmap(x, x), torch.zeros_like(x))
    assert OURS_OBLIQUE.dist(x, x) == 0
