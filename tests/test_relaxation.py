"""The triangle LP (HiGHS) and the intermediate-bound pipelines, against independent references:
a dense LP written here from scratch and solved by scipy's linprog, sampled network values,
and interval bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.optimize import linprog

from dynid.bounds import crown_bounds, interval_bounds
from dynid.errors import ShapeError
from reach.intermediate import intermediate_bounds
from reach.relaxation import highs_intermediate_bounds, prefix_net, triangle_lp_highs

from .conftest import random_relunet


def dense_triangle_lp(net, lo, hi, bounds, c):
    """max c @ h_L over the triangle relaxation with variables (x, z_i, h_i) for every unit
    (no elimination), as an independent reference for the sparse HiGHS model."""
    sizes = [net.n_in] + [2 * w.shape[0] for w in net.weights]
    offs = np.cumsum([0] + sizes)
    n = int(offs[-1])
    a_eq, b_eq, a_ub, b_ub = [], [], [], []
    var_lo, var_hi = list(lo), list(hi)
    prev = np.arange(net.n_in)
    for i, (w, b, m) in enumerate(zip(net.weights, net.biases, net.relu)):
        k = w.shape[0]
        z = offs[i + 1] + np.arange(k)
        h = z + k
        l, u = bounds.lower[i], bounds.upper[i]
        for j in range(k):
            row = np.zeros(n)
            row[z[j]] = 1.0
            row[prev] -= w[j]
            a_eq.append(row)
            b_eq.append(b[j])
        var_lo += list(l)
        var_hi += list(u)
        for j in range(k):
            if not m[j] or l[j] >= 0:            # h = z
                row = np.zeros(n); row[h[j]] = 1; row[z[j]] = -1
                a_eq.append(row); b_eq.append(0.0)
                var_lo.append(-np.inf); var_hi.append(np.inf)
            elif u[j] <= 0:                      # h = 0
                var_lo.append(0.0); var_hi.append(0.0)
            else:                                # triangle
                var_lo.append(0.0); var_hi.append(np.inf)
                row = np.zeros(n); row[z[j]] = 1; row[h[j]] = -1       # z - h <= 0
                a_ub.append(row); b_ub.append(0.0)
                s = u[j] / (u[j] - l[j])
                row = np.zeros(n); row[h[j]] = 1; row[z[j]] = -s        # h - s z <= -s l
                a_ub.append(row); b_ub.append(-s * l[j])
        prev = h
    cost = np.zeros(n)
    cost[prev] = -np.asarray(c)
    res = linprog(cost, A_ub=np.array(a_ub) if a_ub else None, b_ub=b_ub or None,
                  A_eq=np.array(a_eq), b_eq=b_eq, bounds=list(zip(var_lo, var_hi)),
                  method="highs-ipm")
    assert res.status == 0, res.message
    return -res.fun


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), depth=st.integers(1, 3), width=st.integers(2, 8))
def test_highs_lp_matches_dense_reference_and_contains_samples(seed, depth, width):
    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [2] + [width] * depth + [2], identity_frac=0.2)
    lo, hi = -np.ones(2), np.ones(2)
    b = crown_bounds(net, lo, hi)
    C = rng.normal(size=(3, 2))
    vals = triangle_lp_highs(net, lo, hi, b, C)
    ref = np.array([dense_triangle_lp(net, lo, hi, b, c) for c in C])
    assert np.allclose(vals, ref, atol=1e-6 * (1 + np.abs(ref)))
    x = rng.uniform(lo, hi, size=(2000, 2))
    assert np.all(vals >= (net(x) @ C.T).max(axis=0) - 1e-7)
    # min sense is the negated max of -C
    assert np.allclose(triangle_lp_highs(net, lo, hi, b, C, sense="min"),
                       -triangle_lp_highs(net, lo, hi, b, -C), atol=1e-6)


def test_lp_of_exactly_linear_network_is_exact():
    # all units stable: the relaxation is exact, the optimum is an analytic corner value
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(3, 2)), rng.normal(size=(1, 3))
    from dynid.relunet import ReLUNet

    net = ReLUNet([w1, w2], [np.full(3, 100.0), np.zeros(1)])   # every ReLU active on the box
    lo, hi = -np.ones(2), np.ones(2)
    b = interval_bounds(net, lo, hi)
    assert b.n_unstable == 0
    g = (w2 @ w1).ravel()
    exact = np.abs(g).sum() + float((w2 @ np.full(3, 100.0))[0])
    assert abs(triangle_lp_highs(net, lo, hi, b, np.eye(1))[0] - exact) < 1e-6


def test_bad_inputs_raise_dynid_errors():
    net = random_relunet(np.random.default_rng(1), [2, 4, 1])
    b = interval_bounds(net, [-1, -1], [1, 1])
    with pytest.raises(ShapeError):
        triangle_lp_highs(net, [-1, -1], [1, 1], b, np.ones((1, 3)))
    with pytest.raises(ShapeError):
        triangle_lp_highs(net, [-1, -1, 0], [1, 1, 1], b, np.ones((1, 1)))
    other = interval_bounds(random_relunet(np.random.default_rng(1), [2, 5, 1]), [-1, -1], [1, 1])
    with pytest.raises(ShapeError):
        triangle_lp_highs(net, [-1, -1], [1, 1], other, np.ones((1, 1)))


def _contains_samples(net, b, lo, hi, rng, n=4000):
    x = rng.uniform(lo, hi, size=(n, net.n_in))
    for z, l, u in zip(net.preactivations(x), b.lower, b.upper):
        assert np.all(z >= l - 1e-9) and np.all(z <= u + 1e-9)


@pytest.mark.parametrize("method", ["ibp", "crown", "lp", "splitting"])
def test_intermediate_bounds_are_sound(method):
    rng = np.random.default_rng(3)
    net = random_relunet(rng, [2, 12, 12, 12, 2])
    lo, hi = -np.ones(2), np.ones(2)
    kw = {"max_iter": 300} if method == "splitting" else {}
    b = intermediate_bounds(net, lo, hi, method=method, **kw)
    _contains_samples(net, b, lo, hi, rng)
    if method in ("lp", "splitting"):
        c = crown_bounds(net, lo, hi)
        for i in range(net.n_layers):
            assert np.all(b.lower[i] >= c.lower[i]) and np.all(b.upper[i] <= c.upper[i])


def test_layerwise_bounds_never_beat_the_exact_layer_lp():
    """Each tightened bound is no better than the exact LP over the same earlier bounds."""
    rng = np.random.default_rng(7)
    net = random_relunet(rng, [2, 10, 10, 10, 2])
    lo, hi = -np.ones(2), np.ones(2)
    init = crown_bounds(net, lo, hi)
    for method in ("lp", "splitting"):
        b = intermediate_bounds(net, lo, hi, method=method, init=init, max_iter=400) \
            if method == "splitting" else intermediate_bounds(net, lo, hi, method="lp", init=init)
        for i in (1, 2):
            sub = prefix_net(net, i)
            pb = init.copy()
            pb.lower[:i], pb.upper[:i] = b.lower[:i], b.upper[:i]
            pb.lower, pb.upper, pb.relu = pb.lower[:i + 1], pb.upper[:i + 1], list(sub.relu)
            # the box of layer i itself: the pipeline's own refreshed start (valid, looser)
            k = net.weights[i].shape[0]
            E = np.eye(k)
            up = triangle_lp_highs(sub, lo, hi, pb, E)
            low = triangle_lp_highs(sub, lo, hi, pb, E, sense="min")
            assert np.all(b.upper[i] >= np.minimum(up, init.upper[i]) - 1e-6)
            assert np.all(b.lower[i] <= np.maximum(low, init.lower[i]) + 1e-6)


def test_highs_pipeline_time_cap_keeps_valid_bounds():
    rng = np.random.default_rng(2)
    net = random_relunet(rng, [2, 16, 16, 16, 2])
    lo, hi = -np.ones(2), np.ones(2)
    b = highs_intermediate_bounds(net, lo, hi, crown_bounds(net, lo, hi), time_limit=0.0)
    assert b.info["complete"] is False
    _contains_samples(net, b, lo, hi, rng)
