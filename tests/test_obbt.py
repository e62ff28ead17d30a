"""Optimisation-based bound tightening: valid against sampling, never looser than its start."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from dynid.bounds import crown_bounds, interval_bounds
from dynid.certify.obbt import obbt_bounds
from dynid.certify.lp import RowLP
from tests.conftest import random_relunet


def _check_valid(net, b, lo, hi, rng, n=20000):
    x = rng.uniform(lo, hi, size=(n, net.n_in))
    # corners too: extreme points often attain the bounds
    corners = np.array(np.meshgrid(*[[a, c] for a, c in zip(lo, hi)])).reshape(net.n_in, -1).T
    zs = net.preactivations(np.vstack([x, corners]))
    for i, z in enumerate(zs):
        assert np.all(z >= b.lower[i]) and np.all(z <= b.upper[i]), f"layer {i} violated"


@settings(max_examples=5)
@given(seed=st.integers(0, 10_000))
def test_lp_obbt_valid_and_not_looser(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 4))
    net = random_relunet(rng, [n, 12, 12, 10, 2], identity_frac=0.2)
    lo, hi = -np.ones(n), np.ones(n)
    init = crown_bounds(net, lo, hi).intersect(interval_bounds(net, lo, hi))
    b = obbt_bounds(net, lo, hi, init=init)
    _check_valid(net, b, lo, hi, rng)
    for i in range(net.n_layers):
        assert np.all(b.lower[i] >= init.lower[i]) and np.all(b.upper[i] <= init.upper[i])


def test_lp_obbt_tighter_than_interval_on_deep_net():
    rng = np.random.default_rng(5)
    net = random_relunet(rng, [2, 20, 20, 20, 2])
    lo, hi = -np.ones(2), np.ones(2)
    ibp = interval_bounds(net, lo, hi)
    b = obbt_bounds(net, lo, hi, init=ibp)
    widths = [np.sum(u - l) for l, u in zip(b.lower, b.upper)]
    widths0 = [np.sum(u - l) for l, u in zip(ibp.lower, ibp.upper)]
    assert widths[-1] < 0.8 * widths0[-1]


def test_milp_obbt_exact_on_one_dim_net():
    """1-D input: a dense grid gives the exact range of each unit up to grid resolution;
    MILP bounds must contain it and be no looser than LP bounds."""
    rng = np.random.default_rng(11)
    net = random_relunet(rng, [1, 8, 8, 1])
    lo, hi = np.array([-2.0]), np.array([2.0])
    lp = obbt_bounds(net, lo, hi)
    mi = obbt_bounds(net, lo, hi, init=lp, mode="milp", solver="highs")
    grid = np.linspace(-2, 2, 200001)[:, None]
    zs = net.preactivations(grid)
    lip = 10.0 * 4 / 200000  # generous: grid spacing times a slope bound
    for i, z in enumerate(zs):
        assert np.all(z.min(0) >= mi.lower[i]) and np.all(z.max(0) <= mi.upper[i])
        assert np.all(mi.upper[i] <= lp.upper[i]) and np.all(mi.lower[i] >= lp.lower[i])
    # the exact encoding of all layers: the output bounds are the true range (plus padding)
    z = zs[-1]
    assert np.all(mi.upper[-1] - z.max(0) < 1e-5 + lip)
    assert np.all(z.min(0) - mi.lower[-1] < 1e-5 + lip)


def test_time_budget_keeps_valid_bounds():
    rng = np.random.default_rng(2)
    net = random_relunet(rng, [2, 15, 15, 2])
    lo, hi = -np.ones(2), np.ones(2)
    b = obbt_bounds(net, lo, hi, mode="milp", solver="highs", time_limit=0.05)
    _check_valid(net, b, lo, hi, rng)


def test_rowlp_dual_bound_is_safe_and_tight():
    # max x0 + 2 x1 s.t. x0 + x1 <= 1, 0 <= x <= 1: optimum 2 at (0, 1)
    lp = RowLP()
    v = lp.add_vars(2, [0, 0], [1, 1])
    lp.add_rows(v, np.array([[1.0, 1.0]]), [-np.inf], [1.0])
    ub = lp.maximize(np.array([[1.0, 2.0], [-1.0, -1.0]]))
    assert 2.0 <= ub[0] < 2.0 + 1e-7
    assert 0.0 <= ub[1] < 1e-7
