"""Invertibility certificates against independent references: analytic toys, the Euler
Brusselator's exact fold, spectral-norm (i-ResNet) invertibility, brute-force sampling, and
agreement between solvers and between the two radius methods."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dynid.certify import certified_radius, invertible_on, noninvertibility, output_range
from dynid.errors import ConfigError, NormError, ShapeError
from dynid.milp import available_solvers
from dynid.relunet import ReLUNet, linear
from tests.conftest import random_relunet

NORMS = ["inf", "1", "2"]


def neg_abs() -> ReLUNet:
    """x -> -|x| (the convex-potential layer with W = [[1]], b = 0, h = 2)."""
    return ReLUNet([np.array([[1.0], [-1.0]]), np.array([[-1.0, -1.0]])],
                   [np.zeros(2), np.zeros(1)])


def iresnet(d: int, h: int, seed: int) -> ReLUNet:
    """x + W2 relu(W1 x + b1) + b2 with ||W1||_2 ||W2||_2 < 1 (exact SVD norms): invertible."""
    rng = np.random.default_rng(seed)
    s = 1.0 / (1.0 + rng.uniform(0.2, 1.0))
    w1 = rng.uniform(-1, 1, (h, d))
    w2 = rng.uniform(-1, 1, (d, h))
    w1 *= math.sqrt(s) / np.linalg.norm(w1, 2)
    w2 *= math.sqrt(s) / np.linalg.norm(w2, 2)
    b1, b2 = rng.uniform(-1, 1, h), rng.uniform(-1, 1, d)
    relu0 = np.r_[np.zeros(d, bool), np.ones(h, bool)]
    return ReLUNet([np.vstack([np.eye(d), w1]), np.hstack([np.eye(d), w2])],
                   [np.r_[np.zeros(d), b1], b2], [relu0, np.zeros(d, bool)])


# ---------------------------------------------------------------------- analytic references
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("method", ["ours", "naive"])
def test_neg_abs_witness_distance_two(norm, method):
    c = noninvertibility(neg_abs(), [-1.0], [1.0], norm, method=method)
    assert c.status.value == "counterexample"
    assert abs(c.value - 2.0) < 1e-6 and c.bound >= 2.0 - 1e-9
    assert sorted([c.witness["x"][0], c.witness["y"][0]]) == pytest.approx([-1.0, 1.0], abs=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_iresnet_certified_zero(norm):
    net = iresnet(2, 6, seed=1)
    c = noninvertibility(net, -2 * np.ones(2), 2 * np.ones(2), norm, time_limit=60)
    assert c.status.value == "certified" and c.bound <= 1e-4
    assert c.witness is None


def test_iresnet_naive_agrees():
    net = iresnet(2, 6, seed=2)
    a = noninvertibility(net, -3 * np.ones(2), 3 * np.ones(2), "inf", method="naive")
    b = noninvertibility(net, -3 * np.ones(2), 3 * np.ones(2), "inf", method="ours")
    assert a.status.value == b.status.value == "certified"


def test_linear_invertible_and_singular():
    assert invertible_on(linear(np.array([[2.0, 1.0], [0.0, 1.0]])), [0, 0], [1, 1]).certified
    sing = invertible_on(linear(np.array([[1.0, 1.0], [1.0, 1.0]])), [0, 0], [1, 1])
    assert sing.status.value == "counterexample"
    w = sing.witness   # the exact answer: x - y along (1, -1), largest in the box: distance 1
    assert abs(sing.value - 1.0) < 1e-6
    np.testing.assert_allclose(w["x"].sum(), w["y"].sum(), atol=1e-6)


# ---------------------------------------------------------------------- Euler Brusselator
TAU, A, B = 0.15, 1.0, 2.0


def euler(X):
    x, y = X[..., 0], X[..., 1]
    return np.stack([x + TAU * (A - (B + 1) * x + x * x * y), y + TAU * (B * x - x * x * y)], -1)


def det_jacobian(X):
    x, y = X[..., 0], X[..., 1]
    j11, j12 = 1 + TAU * (-(B + 1) + 2 * x * y), TAU * x * x
    j21, j22 = TAU * (B - 2 * x * y), 1 - TAU * x * x
    return j11 * j22 - j12 * j21


def fit_surrogate(lo, hi, hidden=16, seed=0):
    """A ReLU surrogate of the Euler map: random ReLU features with kinks spread over the box
    plus a linear skip, output layer by least squares (seconds, no training loop)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(lo, hi, size=(3000, 2))
    w1 = rng.normal(size=(hidden, 2))
    w1 /= np.linalg.norm(w1, axis=1, keepdims=True)
    b1 = -np.sum(w1 * rng.uniform(lo, hi, size=(hidden, 2)), axis=1)
    phi = np.hstack([np.maximum(X @ w1.T + b1, 0), X, np.ones((len(X), 1))])
    coef = np.linalg.lstsq(phi, euler(X), rcond=None)[0]
    return ReLUNet([np.vstack([w1, np.eye(2)]), coef[:-1].T], [np.r_[b1, 0, 0], coef[-1]],
                   [np.r_[np.ones(hidden, bool), False, False], np.zeros(2, bool)])


def test_euler_brusselator_fold_found():
    lo, hi = np.array([2.0, 0.0]), np.array([4.0, 2.0])
    # the exact map folds in this box: det J changes sign (the fold curve crosses it)
    g = np.stack(np.meshgrid(np.linspace(2, 4, 41), np.linspace(0, 2, 41)), -1).reshape(-1, 2)
    assert det_jacobian(g).min() < 0 < det_jacobian(g).max()
    net = fit_surrogate(lo, hi)
    err = np.abs(net.forward(g) - euler(g)).max()
    c = noninvertibility(net, lo, hi, "inf", time_limit=60)
    assert c.status.value == "counterexample"
    x, y = c.witness["x"], c.witness["y"]
    assert np.abs(x - y).max() > 0.2
    # the true map sends the pair to nearly the same point (within twice the fit error) ...
    assert np.abs(euler(x) - euler(y)).max() <= 2 * err + 1e-6
    # ... and the pair lies on both sides of the true fold
    assert det_jacobian(x) * det_jacobian(y) < 0


# ---------------------------------------------------------------------- property tests
def _sampled_pairs(net, lo, hi, rng, n_points=150):
    X = rng.uniform(lo, hi, size=(n_points, net.n_in))
    F = net.forward(X)
    i, j = np.triu_indices(n_points, 1)          # ~11000 pairs
    return X[i], X[j], F[i], F[j]


@settings(max_examples=6)
@given(seed=st.integers(0, 10_000), norm=st.sampled_from(["inf", "1"]))
def test_certificates_not_contradicted_by_sampling(seed, norm):
    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [2, 6, 2], identity_frac=0.2)
    lo, hi, delta = -np.ones(2), np.ones(2), 0.1
    c = noninvertibility(net, lo, hi, norm, delta, time_limit=30)
    p = math.inf if norm == "inf" else 1.0
    xa, xb, fa, fb = _sampled_pairs(net, lo, hi, rng)
    close = np.abs(fa - fb).max(1) <= delta
    dist = np.linalg.norm(xa - xb, ord=p, axis=1)
    if close.any():
        assert dist[close].max() <= c.bound + 1e-6
    if c.witness is not None:
        w = c.witness
        assert np.abs(net.forward(w["x"]) - net.forward(w["y"])).max() <= delta + 1e-5
        assert abs(np.linalg.norm(w["x"] - w["y"], ord=p) - c.value) < 1e-9
    if c.status.value != "unknown":
        assert c.value <= c.bound + 1e-9


def _exact_1d(net, a=-1.0, b=1.0):
    """Exact max |x - y| with F(x) = F(y) on [a, b] for a one-hidden-layer 1-D net: F is
    linear between the kinks -b_j / w_j, so check every pair of linear pieces."""
    w, c = net.weights[0][:, 0], net.biases[0]
    kinks = [-cj / wj for wj, cj in zip(w, c) if wj != 0 and a < -cj / wj < b]
    pts = np.unique(np.r_[a, kinks, b])
    f = net.forward(pts[:, None])[:, 0]
    best = 0.0
    for i in range(len(pts) - 1):
        for j in range(i, len(pts) - 1):
            (x0, x1), (f0, f1) = pts[i:i + 2], f[i:i + 2]
            (y0, y1), (g0, g1) = pts[j:j + 2], f[j:j + 2]
            lo_v, hi_v = max(min(f0, f1), min(g0, g1)), min(max(f0, f1), max(g0, g1))
            if lo_v > hi_v + 1e-12:
                continue
            def inv(v, p0, p1, v0, v1):   # all points of the piece with value v
                if abs(v1 - v0) < 1e-15:
                    return [p0, p1]
                return [p0 + (v - v0) * (p1 - p0) / (v1 - v0)]
            for v in (lo_v, hi_v):
                xs, ys = inv(v, x0, x1, f0, f1), inv(v, y0, y1, g0, g1)
                best = max(best, max(abs(x - y) for x in xs for y in ys))
    return best


@settings(max_examples=5)
@given(seed=st.integers(0, 10_000))
def test_one_dimensional_against_exact(seed):
    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [1, 5, 1])
    exact = _exact_1d(net)
    c = noninvertibility(net, [-1.0], [1.0], "inf")
    if exact <= 1e-4:
        assert c.status.value == "certified"
    else:
        assert c.status.value == "counterexample"
        assert abs(c.value - exact) < 1e-5 and c.bound >= exact - 1e-9


# ---------------------------------------------------------------------- cell-pair verdicts
def test_cells_neg_abs_cross_pair_witness():
    """-|x| on [-1, 1] in two cells: each cell alone is injective, the cross pair holds the
    witness (-1, 1) at distance 2."""
    c = invertible_on(neg_abs(), [-1.0], [1.0], cells=2)
    assert c.status.value == "counterexample" and abs(c.value - 2.0) < 1e-6
    x, y = c.witness["x"], c.witness["y"]
    assert abs(neg_abs().forward(x)[0] - neg_abs().forward(y)[0]) < 1e-9
    assert c.info["pairs_solved"] == 3 and c.bound >= 2.0 - 1e-9


def test_cells_certify_iresnet_and_screen_by_bounds():
    net = iresnet(2, 6, seed=3)
    c = invertible_on(net, -np.ones(2), np.ones(2), cells=3)
    assert c.certified and c.bound <= 1e-4
    # 45 pairs; the outputs of far-apart cells cannot meet, so their pairs need no solver
    assert c.info["pairs_total"] == 45 and c.info["pairs_screened_by_bounds"] > 0
    assert c.info["pairs_screened_by_bounds"] + c.info["pairs_solved"] == 45


def test_y_box_separated_outputs_need_no_solver():
    c = noninvertibility(linear(np.array([[2.0]])), [0.0], [1.0], y_box=([2.0], [3.0]))
    assert c.certified and c.solver == "bounds" and c.bound == 0.0


def test_y_box_finds_cross_witness_only_between_the_boxes():
    """x -> -|x| with x in [-1, -0.5] and y in [0.25, 1]: pairs (-t, t) for t in [0.5, 1],
    the largest distance 2 at t = 1."""
    c = noninvertibility(neg_abs(), [-1.0], [-0.5], y_box=([0.25], [1.0]))
    assert c.status.value == "counterexample" and abs(c.value - 2.0) < 1e-6
    assert -1.0 <= c.witness["x"][0] <= -0.5 and 0.25 <= c.witness["y"][0] <= 1.0


@settings(max_examples=5)
@given(seed=st.integers(0, 10_000))
def test_cells_one_dimensional_against_exact(seed):
    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [1, 5, 1])
    exact = _exact_1d(net)
    c = invertible_on(net, [-1.0], [1.0], cells=3)
    if exact <= 1e-4:
        assert c.status.value == "certified"
    else:   # stops at the first confirmed pair: a real witness, never more than the optimum
        assert c.status.value == "counterexample" and c.bound >= exact - 1e-9
        x, y = c.witness["x"], c.witness["y"]
        assert 1e-4 < abs(x[0] - y[0]) <= exact + 1e-6
        assert abs(net.forward(x)[0] - net.forward(y)[0]) <= 1e-6 * max(1.0, abs(net.forward(x)[0]))


# ---------------------------------------------------------------------- solvers agree
@pytest.mark.parametrize("norm", ["inf", "1"])
def test_solvers_agree(norm):
    rng = np.random.default_rng(7)
    net = random_relunet(rng, [2, 5, 2])
    res = {}
    for s in [s for s in ("gurobi", "highs", "scip") if s in available_solvers()]:
        res[s] = noninvertibility(net, -np.ones(2), np.ones(2), norm, solver=s)
    vals = [c.value for c in res.values()]
    assert len({c.status.value for c in res.values()}) == 1
    assert max(vals) - min(vals) < 1e-4


def test_l2_gurobi_and_scip_agree():
    if not {"gurobi", "scip"} <= set(available_solvers()):
        pytest.skip("needs gurobi and scip")
    net = neg_abs()
    a = noninvertibility(net, [-0.5], [1.0], "2", solver="gurobi")
    b = noninvertibility(net, [-0.5], [1.0], "2", solver="scip")
    assert abs(a.value - 1.0) < 1e-6 and abs(b.value - 1.0) < 1e-6


# ---------------------------------------------------------------------- radii
@pytest.mark.parametrize("mode,expected", [("preimage", 1.0), ("ball", 0.5)])
def test_radius_neg_abs(mode, expected):
    """-|x| at 0.5: the other preimage is -0.5 (distance 1); the largest injective ball
    reaches 0 (radius 0.5, up to the tolerance 1e-4 that separates two points)."""
    for method in ("fast", "reference"):
        c = certified_radius(neg_abs(), [0.5], mode=mode, method=method, r_max=4.0)
        assert c.status.value == "certified"
        assert c.value <= expected + 1e-3 and c.bound >= expected - 1e-9
        assert abs(c.value - expected) <= 1.1e-3


def _radius_agreement(mode):
    rng = np.random.default_rng(4)
    net = random_relunet(rng, [2, 8, 2])
    x0 = np.array([0.2, -0.1])
    f = certified_radius(net, x0, mode=mode, method="fast", r_max=1.0)
    r = certified_radius(net, x0, mode=mode, method="reference", r_max=1.0)
    assert f.status.value == r.status.value == "certified"
    assert abs(f.value - r.value) <= 1.5e-3, (mode, f.value, r.value)
    return f, r


def test_radius_methods_agree_preimage():
    f, r = _radius_agreement("preimage")
    # each method's upper bound (witness) is not below the other's certified radius
    assert f.bound >= r.value - 1e-9 and r.bound >= f.value - 1e-9


@pytest.mark.slow
def test_radius_methods_agree_ball():
    f, r = _radius_agreement("ball")
    # both bracket the same number: the fast witness radius is not below the reference's
    # certified radius, and vice versa
    assert f.bound >= r.value - 1e-9 and r.bound >= f.value - 1e-9


# ---------------------------------------------------------------------- output range
def test_output_range_against_grid():
    rng = np.random.default_rng(9)
    net = random_relunet(rng, [1, 8, 8, 2])
    lo, up = output_range(net, [-1.0], [1.0], np.array([[1.0, 0.0], [1.0, -1.0]]))
    g = net.forward(np.linspace(-1, 1, 100001)[:, None])
    vals = np.stack([g[:, 0], g[:, 0] - g[:, 1]], 1)
    assert np.all(lo <= vals.min(0)) and np.all(up >= vals.max(0))
    assert np.all(vals.min(0) - lo < 1e-4) and np.all(up - vals.max(0) < 1e-4)


# ---------------------------------------------------------------------- bad input
def test_bad_input():
    net = neg_abs()
    with pytest.raises(NormError):
        noninvertibility(net, [-1.0], [1.0], "3")
    with pytest.raises(ShapeError):
        noninvertibility(net, [-1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ConfigError):
        noninvertibility(net, [-1.0], [1.0], method="magic")
    with pytest.raises(ConfigError):
        noninvertibility(net, [-1.0], [1.0], delta=-1)
    with pytest.raises(ConfigError):
        certified_radius(net, [0.0], mode="disc")
    with pytest.raises(ShapeError):
        certified_radius(net, [0.0, 1.0])


def test_licence_fallback_on_large_model():
    """A model over the size-limited Gurobi licence (~2000 variables) is answered by HiGHS
    under solver='auto', and the result says so."""
    if "gurobi" not in available_solvers():
        pytest.skip("gurobi not installed")
    rng = np.random.default_rng(0)
    net = random_relunet(rng, [2, 2500, 2])
    x = np.array([0.3, -0.2])
    lo, up, res = output_range(net, x - 1e-3, x + 1e-3, np.eye(2), return_results=True)
    assert res[0].solver in ("highs", "scip") and "10010" in res[0].message
    f = net.forward(x)
    assert np.all(lo <= f + 1e-9) and np.all(up >= f - 1e-9)
