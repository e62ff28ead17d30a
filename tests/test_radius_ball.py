"""Ball-mode certified radius of maps R^2 -> R^2: the Jacobian-hull proof, the fold witness and
the MIP fallback, checked against brute force and the reference protocol (issue 17).

Brute force: an injective continuous map of a disc keeps its orientation, so two points of a
ball whose Jacobian determinants have opposite signs (on a fine grid, in extended precision)
put a fold in the ball: no certified radius may reach beyond the nearer of such pairs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynid.certify import certified_radius
from dynid.certify.folds import fold_witness
from dynid.certify.hull import hull_injective, interval_jacobians, leaf_bounds, point_jacobians
from dynid.relunet import ReLUNet
from tests.conftest import random_relunet
from tests.test_soundness import forward_ld, preacts_ld

TOL = 1e-4


def jacobians_ld(net: ReLUNet, X) -> np.ndarray:
    """Jacobians in extended precision (relu'(0) = 0), shape (K, 2, 2)."""
    zs = preacts_ld(net, X)
    g = np.broadcast_to(np.eye(net.n_in, dtype=np.longdouble), (len(X), net.n_in, net.n_in))
    for w, z, relu in zip(net.weights, zs, net.relu):
        g = np.einsum("mj,kjn->kmn", np.asarray(w, np.longdouble), g)
        g = g * np.where(relu, z > 0, True)[:, :, None]
    return g


def det_ld(net, X):
    j = jacobians_ld(net, X)
    return j[:, 0, 0] * j[:, 1, 1] - j[:, 0, 1] * j[:, 1, 0]


def brute_fold_radius(net, c, r, p=math.inf, k=401):
    """The smallest max(||a - c||, ||b - c||) over neighbouring grid points a, b of c +- r
    with det J of opposite signs (inf when none): a fold lies between them, inside that ball."""
    g = np.linspace(-r, r, k)
    X = c + np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    s = np.sign(det_ld(net, X)).reshape(k, k)
    d = np.linalg.norm(X - c, ord=p, axis=1).reshape(k, k)
    best = math.inf
    for flip, da, db in ((s[:-1] * s[1:] < 0, d[:-1], d[1:]),
                         (s[:, :-1] * s[:, 1:] < 0, d[:, :-1], d[:, 1:])):
        if flip.any():
            best = min(best, float(np.maximum(da, db)[flip].min()))
    return best


def random_map(seed: int, max_width: int = 8) -> ReLUNet:
    rng = np.random.default_rng(seed)
    hidden = [int(rng.integers(2, max_width + 1)) for _ in range(int(rng.integers(1, 3)))]
    net = random_relunet(rng, [2, *hidden, 2])
    # a residual map x + N(x) (as the surrogates are) half of the time
    if rng.random() < 0.5:
        from dynid.relunet import residual

        net = residual(net, float(rng.uniform(0.2, 1.0)))
    return net


def check_witness(net, c, cert, p=math.inf):
    w = cert.witness
    if w is None:
        return
    x, y = np.asarray(w["x"]), np.asarray(w["y"])
    assert np.max(np.abs(x - y)) >= TOL * 0.999
    gap = np.max(np.abs(forward_ld(net, x[None]) - forward_ld(net, y[None])))
    assert float(gap) <= 1e-6 * max(1.0, float(np.max(np.abs(net.forward(x)))))
    radius = max(np.linalg.norm(x - c, ord=p), np.linalg.norm(y - c, ord=p))
    assert radius <= cert.bound + 1e-12


# ---------------------------------------------------------------------- building blocks
def test_leaf_bounds_and_jacobians_contain_samples():
    rng = np.random.default_rng(3)
    net = random_relunet(rng, [2, 12, 12, 2])
    LO = rng.uniform(-1, 1, (40, 2))
    HI = LO + rng.uniform(0.0, 0.5, (40, 2)) * (rng.random((40, 1)) < 0.9)   # some points
    lw, up = leaf_bounds(net, LO, HI)
    mid, rad = interval_jacobians(net, lw, up)
    for k in range(LO.shape[0]):
        X = LO[k] + (HI[k] - LO[k]) * rng.random((300, 2))
        for z, lo, hi in zip(preacts_ld(net, X), lw, up):
            assert np.all(z >= lo[k]) and np.all(z <= hi[k]), k
        J = jacobians_ld(net, X)
        assert np.all(np.abs(J - mid[k]) <= rad[k]), k
    X = rng.uniform(-1, 1, (20, 2))
    assert np.allclose(point_jacobians(net, X), [net.jacobian(x) for x in X], atol=1e-13)


def piecewise_fold():
    """F(x) = (x0 - 1.5 relu(x0), x1): det J = 1 for x0 < 0, -0.5 for x0 > 0 (a fold at 0)."""
    return ReLUNet([np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]),
                    np.array([[1.0, 0.0, -1.5], [0.0, 1.0, 0.0]])],
                   [np.zeros(3), np.zeros(2)],
                   [np.array([False, False, True]), np.zeros(2, bool)])


@pytest.mark.parametrize("norm", ["inf", "1", "2"])
def test_ball_radius_at_a_straight_fold(norm):
    """The fold is the line x0 = 0: from (-0.3, 0.2) it is 0.3 away in every norm."""
    c = certified_radius(piecewise_fold(), [-0.3, 0.2], mode="ball", norm=norm, r_max=2.0)
    assert c.status.value == "certified", c.info
    assert c.value <= 0.3 <= c.bound and c.bound - c.value <= 1e-3
    assert c.solver == "jacobian-hull"
    p = math.inf if norm == "inf" else float(norm)
    check_witness(piecewise_fold(), np.array([-0.3, 0.2]), c, p)


def test_ball_radius_without_a_fold_falls_back_to_the_mip():
    """F(x) = (relu(x0), x1) is not injective where x0 < 0 (det J = 0 there: no fold, no sign
    change): the hull proof stops at the kink and the MIP finds the pair; radius 0.5 + tol."""
    net = ReLUNet([np.array([[1.0, 0.0], [0.0, 1.0]]), np.eye(2)], [np.zeros(2), np.zeros(2)],
                  [np.array([True, False]), np.zeros(2, bool)])
    c = certified_radius(net, [0.5, 0.0], mode="ball", r_max=2.0, time_limit=60)
    assert c.status.value == "certified", c.info
    assert c.value <= 0.5 + TOL + 1e-9 and c.bound >= 0.5 + TOL * 0.99
    assert c.info["boxes"], "the MIP ran"
    check_witness(net, np.array([0.5, 0.0]), c)


def test_hull_proof_stops_at_the_fold():
    net = piecewise_fold()
    assert hull_injective(net, np.array([-0.3, 0.0]), 0.299)[0]
    ok, info = hull_injective(net, np.array([-0.3, 0.0]), 0.31)
    assert not ok and info["reason"] == "fold"


def test_fast_ball_agrees_with_the_reference_protocol():
    """A random 2-6-2 map: the fast (hull / witness) bracket and the reference protocol's
    bisection bracket overlap."""
    rng = np.random.default_rng(11)
    net = random_relunet(rng, [2, 6, 2])
    x0 = np.array([0.1, -0.2])
    f = certified_radius(net, x0, mode="ball", method="fast", r_max=1.0)
    r = certified_radius(net, x0, mode="ball", method="reference", r_max=1.0)
    assert f.status.value == "certified" and r.status.value == "certified"
    assert f.bound >= r.value - 1e-9 and r.bound >= f.value - 1e-9
    assert abs(f.value - r.value) <= 2e-3


# ---------------------------------------------------------------------- properties
def check_ball_radius(seed: int, norm: str) -> None:
    """The certified ball radius of a random small map never reaches past a fold found by
    brute force, and its witness is a real pair."""
    net = random_map(seed)
    rng = np.random.default_rng(seed + 1)
    c = rng.uniform(-1, 1, 2)
    p = math.inf if norm == "inf" else float(norm)
    cert = certified_radius(net, c, mode="ball", norm=norm, r_max=1.0, time_limit=20)
    fold = brute_fold_radius(net, c, 1.0, p)
    assert cert.value <= fold, (seed, norm, cert.value, fold, cert.info.get("proof"))
    check_witness(net, c, cert, p)


def check_hull(seed: int, scale: float) -> None:
    """A ball the hull test calls injective has no orientation change on a fine grid."""
    net = random_map(seed, max_width=10)
    rng = np.random.default_rng(seed + 7)
    c = rng.uniform(-1, 1, 2)
    r = float(rng.uniform(0.05, 1.0)) * scale
    ok, _ = hull_injective(net, c, r, time_limit=10)
    if ok:
        assert brute_fold_radius(net, c, r, k=201) > r, (seed, scale, r)


_seeds = st.integers(0, 2 ** 32 - 1)


def _prop(check, n, **strategies):
    @settings(max_examples=n, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(seed=_seeds, **strategies)
    def run(seed, **kw):
        check(seed, **kw)

    run()


def test_ball_radius_never_beyond_a_brute_force_fold():
    _prop(check_ball_radius, 12, norm=st.sampled_from(["inf", "inf", "1", "2"]))


def test_hull_proof_never_contradicted():
    _prop(check_hull, 40, scale=st.sampled_from([1.0, 1e-6]))


@pytest.mark.slow
def test_ball_radius_never_beyond_a_brute_force_fold_slow():
    _prop(check_ball_radius, 500, norm=st.sampled_from(["inf", "1", "2"]))


@pytest.mark.slow
def test_hull_proof_never_contradicted_slow():
    _prop(check_hull, 2000, scale=st.sampled_from([1.0, 1e-6, 1e-8]))


def test_fold_witness_is_a_real_pair_near_the_brute_force_fold():
    net = random_map(0)
    c = np.array([0.2, 0.1])
    w = fold_witness(net, c, 1.0)
    assert np.max(np.abs(w["x"] - w["y"])) >= TOL * 0.999
    assert np.max(np.abs(net.forward(w["x"]) - net.forward(w["y"]))) <= 1e-9
    # as near as the brute-force grid's fold (step 0.005), up to the pair's own size
    assert w["radius"] <= brute_fold_radius(net, c, 1.0) + 1e-3
