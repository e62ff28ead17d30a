"""Closed-loop composition and the published benchmarks.

Every composed network is compared with a numpy simulation of the loop written here (np.clip
for saturation, plain matrix products for the plant, a hand-written forward pass of the
controller from its raw weights).
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynid.errors import DynidError, ShapeError
from dynid.relunet import ReLUNet
from reach.benchmarks import GRAVITY, double_integrator, get_benchmark, quadrotor6d
from reach.closed_loop import (autonomous, linear_plant_loop, rollout, saturation,
                               surrogate_loop)
from tests.conftest import random_relunet


def _mlp(net: ReLUNet, x):
    """Forward pass from the raw arrays, independent of ReLUNet.forward."""
    h = np.asarray(x, dtype=np.float64)
    for w, b, m in zip(net.weights, net.biases, net.relu):
        z = np.einsum("ij,nj->ni", np.asarray(w), h) + np.asarray(b)
        h = np.where(np.asarray(m), np.maximum(z, 0), z)
    return h


# ---------------------------------------------------------------------- saturation


@settings(max_examples=30)
@given(m=st.integers(1, 4), seed=st.integers(0, 10**6))
def test_saturation_equals_clip(m, seed):
    rng = np.random.default_rng(seed)
    lo = rng.normal(size=m) - 0.5
    hi = lo + rng.uniform(0, 2, size=m)
    lo[rng.random(m) < 0.3] = -np.inf      # some one-sided or open limits
    hi[rng.random(m) < 0.3] = np.inf
    u = rng.normal(size=(200, m)) * 3
    net = saturation(lo, hi)
    np.testing.assert_allclose(net.forward(u), np.clip(u, lo, hi), rtol=0, atol=1e-12)
    assert net.n_relu == int(np.isfinite(lo).sum() + np.isfinite(hi).sum())


def test_saturation_rejects_bad_limits():
    with pytest.raises(ShapeError, match="empty"):
        saturation([1.0], [0.0])
    with pytest.raises(ShapeError, match="entries"):
        saturation([0.0, 0.0], [1.0, 1.0, 1.0])


# ---------------------------------------------------------------------- compositions


def _simulate_linear(A, B, c, ctrl, lo, hi, x):
    return x @ A.T + np.clip(_mlp(ctrl, x), lo, hi) @ B.T + c


@settings(max_examples=25)
@given(n=st.integers(1, 4), m=st.integers(1, 3), seed=st.integers(0, 10**6),
       frac=st.sampled_from([0.0, 0.3]))
def test_linear_plant_loop_matches_simulation(n, m, seed, frac):
    rng = np.random.default_rng(seed)
    A, B, c = rng.normal(size=(n, n)), rng.normal(size=(n, m)), rng.normal(size=n)
    ctrl = random_relunet(rng, [n, 6, 5, m], identity_frac=frac)
    x = rng.normal(size=(400, n)) * 2
    u = _mlp(ctrl, x)
    # limits at quantiles of u, so that both saturated and unsaturated samples occur
    lo, hi = np.quantile(u, 0.2, axis=0), np.quantile(u, 0.8, axis=0)
    step = linear_plant_loop(A, B, ctrl, c=c, u_lo=lo, u_hi=hi)
    assert ((u < lo) | (u > hi)).any() and ((u > lo) & (u < hi)).any()
    np.testing.assert_allclose(step.forward(x), _simulate_linear(A, B, c, ctrl, lo, hi, x),
                               rtol=1e-12, atol=1e-12)
    # without limits the loop is the plain sum; with 3 steps the unrolled net is the iterate
    free = linear_plant_loop(A, B, ctrl, c=c)
    np.testing.assert_allclose(free.forward(x), x @ A.T + u @ B.T + c, rtol=1e-12, atol=1e-12)
    x3 = x
    for _ in range(3):
        x3 = _simulate_linear(A, B, c, ctrl, lo, hi, x3)
    np.testing.assert_allclose(step.unroll(3).forward(x), x3, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(rollout(step, x, 3)[:, -1], x3, rtol=1e-10, atol=1e-10)


def test_surrogate_loop_matches_simulation():
    rng = np.random.default_rng(0)
    n, m = 3, 2
    plant = random_relunet(rng, [n + m, 8, n])
    ctrl = random_relunet(rng, [n, 5, m], identity_frac=0.2)
    x = rng.normal(size=(300, n))
    u = _mlp(ctrl, x)
    lo, hi = np.quantile(u, 0.25, axis=0), np.quantile(u, 0.75, axis=0)
    step = surrogate_loop(plant, ctrl, u_lo=lo, u_hi=hi)
    expected = _mlp(plant, np.hstack([x, np.clip(u, lo, hi)]))
    np.testing.assert_allclose(step.forward(x), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(surrogate_loop(plant, ctrl).forward(x),
                               _mlp(plant, np.hstack([x, u])), rtol=1e-12, atol=1e-12)
    with pytest.raises(ShapeError, match="plant"):
        surrogate_loop(random_relunet(rng, [n, 4, n]), ctrl)


def test_autonomous_and_shape_errors():
    rng = np.random.default_rng(1)
    f = random_relunet(rng, [2, 4, 2])
    x = rng.normal(size=(10, 2))
    np.testing.assert_allclose(autonomous(f).forward(x), _mlp(f, x), rtol=1e-13, atol=1e-13)
    with pytest.raises(ShapeError):
        autonomous(random_relunet(rng, [2, 4, 3]))
    ctrl = random_relunet(rng, [2, 4, 1])
    with pytest.raises(ShapeError, match="B must"):
        linear_plant_loop(np.eye(2), np.ones((2, 2)), ctrl)
    with pytest.raises(ShapeError, match="square"):
        linear_plant_loop(np.ones((2, 3)), np.ones((2, 1)), ctrl)
    with pytest.raises(ShapeError, match="controller"):
        linear_plant_loop(np.eye(3), np.ones((3, 1)), ctrl)
    with pytest.raises(ShapeError, match="ReLUNet"):
        linear_plant_loop(np.eye(2), np.ones((2, 1)), "not a net")


# ---------------------------------------------------------------------- benchmarks


def _keras_forward(h5_path, x):
    with h5py.File(h5_path, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        h = x
        for i, name in enumerate(names):
            grp = f[name][list(f[name].keys())[0]]
            z = h @ grp["kernel:0"][...].astype(np.float64) + grp["bias:0"][...]
            h = np.maximum(z, 0) if i < len(names) - 1 else z
    return h


def test_double_integrator_benchmark(shared_benchmarks):
    bench = double_integrator(shared_benchmarks)
    h5 = shared_benchmarks / "double_integrator" / "controller.h5"
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 2)) * 3
    np.testing.assert_allclose(bench.controller.forward(x), _keras_forward(h5, x), atol=1e-12)
    # the hand-written loop of the README: A = [[1, 1], [0, 1]], B = [0.5, 1], |u| <= 1
    x0 = np.column_stack([rng.uniform(2.5, 3.0, 10_000), rng.uniform(-0.25, 0.25, 10_000)])
    xs, sat_hit = x0, False
    for _ in range(5):
        u = _keras_forward(h5, xs)
        sat_hit |= bool((np.abs(u) > 1).any())
        xs_next = np.column_stack([xs[:, 0] + xs[:, 1] + 0.5 * np.clip(u[:, 0], -1, 1),
                                   xs[:, 1] + np.clip(u[:, 0], -1, 1)])
        np.testing.assert_allclose(bench.step_net.forward(xs), xs_next, atol=1e-12)
        xs = xs_next
    assert sat_hit, "the benchmark's saturation should be active on part of X0"
    np.testing.assert_allclose(bench.step_net.unroll(5).forward(x0), xs, atol=1e-10)
    # README: step-5 sampled box about x in [0.011, 0.081], v in [-0.136, -0.049]
    np.testing.assert_allclose(xs.min(axis=0), [0.011, -0.136], atol=3e-3)
    np.testing.assert_allclose(xs.max(axis=0), [0.081, -0.049], atol=3e-3)
    assert bench.steps == 5 and bench.state_names == ["x", "v"]
    np.testing.assert_array_equal(bench.x0_lo, [2.5, -0.25])
    np.testing.assert_array_equal(bench.x0_hi, [3.0, 0.25])
    np.testing.assert_allclose(bench.simulate(x0)[:, -1], xs, atol=1e-12)


def test_quadrotor_benchmark(shared_benchmarks):
    bench = get_benchmark("quadrotor6d", shared_benchmarks)
    h5 = shared_benchmarks / "quadrotor6d" / "controller.h5"
    rng = np.random.default_rng(3)
    x = bench.sample_initial(2000, seed=4)
    assert np.all(x >= bench.x0_lo) and np.all(x <= bench.x0_hi)
    g, dt = 9.8, 0.1
    for _ in range(bench.steps):
        u = np.clip(_keras_forward(h5, x), [-np.pi / 3, -np.pi / 3, 0], [np.pi / 3, np.pi / 3,
                                                                         2 * g])
        xdot = np.column_stack([x[:, 3], x[:, 4], x[:, 5], g * u[:, 0], -g * u[:, 1],
                                u[:, 2] - g])
        x_next = x + dt * xdot
        np.testing.assert_allclose(bench.step_net.forward(x), x_next, atol=1e-11)
        x = x_next
    assert bench.steps == 12 and GRAVITY == g
    wide = rng.normal(size=(500, 6)) * 5    # far from X0, where the limits are active
    u = _keras_forward(h5, wide)
    assert ((u[:, 2] < 0) | (u[:, 2] > 2 * g) | (np.abs(u[:, :2]) > np.pi / 3).any(axis=1)).any()
    np.testing.assert_allclose(bench.step_net.forward(wide), bench.simulate(wide, 1)[:, 1],
                               atol=1e-10)
    assert quadrotor6d(shared_benchmarks).step_net.n_in == 6


def test_benchmark_missing_folder(tmp_path):
    with pytest.raises(DynidError, match="shared_dir"):
        double_integrator(tmp_path)
    with pytest.raises(DynidError, match="unknown"):
        get_benchmark("pendulum", tmp_path)


def test_mip_range_of_the_unrolled_double_integrator_is_tight(shared_benchmarks):
    """The MIP bounds of the 5-step closed loop hold for every sampled state and lie within
    1e-8 of the sampled extremes: the tolerance pad (a worst case over every row, ~2e-3 on this
    16-layer net) is replaced by the tolerance-free LP branch-and-bound (issue 17)."""
    from dynid.certify.optimize import output_range
    from reach.falsify import sampled_boxes

    bench = double_integrator(shared_benchmarks)
    f = sampled_boxes(bench.step_net, bench.x0_lo, bench.x0_hi, 5, n=20_000, seed=0)
    lo, up = output_range(bench.step_net.unroll(5), bench.x0_lo, bench.x0_hi)
    assert np.all(lo <= f.inner_lo[5]) and np.all(up >= f.inner_hi[5])
    assert np.all(f.inner_lo[5] - lo < 1e-8) and np.all(up - f.inner_hi[5] < 1e-8)
