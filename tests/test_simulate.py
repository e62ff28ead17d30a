"""dynid.simulate: sampling properties, datasets' layout and provenance, trajectories vs
solve_ivp over the whole horizon and vs hand-iterated maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy.integrate import solve_ivp

from dynid.errors import ConfigError, ShapeError
from dynid.simulate import (grid_points, latin_hypercube, one_step_pairs, sample_box,
                            throughput, trajectories)
from dynid.systems import System, get_system


@given(st.integers(1, 60), st.integers(1, 4), st.integers(0, 2 ** 31 - 1))
def test_lhs_one_sample_per_stratum(n, d, seed):
    rng = np.random.default_rng(seed)
    lo = rng.normal(size=d)
    hi = lo + rng.uniform(0.1, 3.0, size=d)
    X = latin_hypercube(lo, hi, n, np.random.default_rng(seed))
    assert X.shape == (n, d)
    assert np.all(X >= lo) and np.all(X <= hi)
    for j in range(d):
        strata = np.floor((X[:, j] - lo[j]) / (hi[j] - lo[j]) * n).astype(int)
        strata = np.clip(strata, 0, n - 1)  # a sample exactly on hi belongs to the last one
        assert sorted(strata.tolist()) == list(range(n))


@given(st.integers(1, 3), st.integers(2, 9))
def test_grid_is_a_full_tensor_grid(d, m):
    lo = -np.arange(1, d + 1, dtype=float)
    hi = np.arange(1, d + 1, dtype=float) * 2
    G = grid_points(lo, hi, m ** d)
    assert G.shape == (m ** d, d)
    assert len({tuple(r) for r in G.round(12)}) == m ** d
    for j in range(d):
        np.testing.assert_allclose(np.unique(G[:, j]), np.linspace(lo[j], hi[j], m))
    # corners are included
    assert np.any(np.all(np.isclose(G, lo), axis=1)) and np.any(np.all(np.isclose(G, hi), axis=1))


def test_uniform_sampling_seeded_and_in_box():
    a = sample_box([0, -1], [4, 1], 500, "uniform", seed=3)
    b = sample_box([0, -1], [4, 1], 500, "uniform", seed=3)
    c = sample_box([0, -1], [4, 1], 500, "uniform", seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.min(axis=0)[0] >= 0 and a.max(axis=0)[0] <= 4
    assert abs(a[:, 1].mean()) < 0.15  # the mean of U[-1, 1] is 0 (std of the mean ~0.026)


def test_one_step_pairs_layout_and_provenance():
    sys = get_system("brusselator", b=2.5)
    ds = one_step_pairs(sys, 64, 0.1, method="flow", sampling="lhs", seed=11,
                        lo=[0.5, 0.5], hi=[3, 4])
    assert ds["x"].dims == ("sample", "state") and ds["x_next"].dims == ("sample", "state")
    assert ds["state"].values.tolist() == ["x", "y"]
    X = ds["x"].values
    assert X.shape == (64, 2) and X.dtype == np.float64
    assert np.all(X >= [0.5, 0.5]) and np.all(X <= [3, 4])
    np.testing.assert_array_equal(ds["x_next"].values, sys.step_map(X, 0.1, "flow"))
    at = ds.attrs
    assert at["kind"] == "pairs" and at["system"] == "brusselator" and at["map"] == "flow"
    assert json.loads(at["params"]) == {"a": 1.0, "b": 2.5}
    assert at["dt"] == 0.1 and at["seed"] == 11 and at["sampling"] == "lhs"
    assert at["integrator"] == "casadi-cvodes" and 0 < at["rtol"] <= 1e-10 and at["atol"] > 0
    np.testing.assert_array_equal(at["domain_lo"], [0.5, 0.5])
    np.testing.assert_array_equal(at["domain_hi"], [3, 4])
    assert isinstance(at["dynid_version"], str)
    for v in at.values():  # netCDF-safe attribute types only
        assert isinstance(v, (str, int, float, np.ndarray)), v


def test_pairs_euler_match_hand_formula_and_name_resolution():
    ds = one_step_pairs("fitzhugh_nagumo", 2500, 0.2, method="euler", sampling="grid")
    x1, x2 = ds["x"].values.T
    expected = np.stack([x1 + 0.2 * (x1 - x1 ** 3 / 3 - x2 + 0.875),
                         x2 + 0.2 * 0.08 * (x1 + 0.7 - 0.8 * x2)], axis=1)
    np.testing.assert_allclose(ds["x_next"].values, expected, rtol=1e-14, atol=1e-14)
    assert ds.sizes["sample"] == 2500 and ds.attrs["integrator"] == "explicit"
    assert ds.attrs["rtol"] == 0.0
    assert np.isclose(ds["x"].values.min(), -5) and np.isclose(ds["x"].values.max(), 5)


def test_pairs_scipy_and_casadi_agree():
    a = one_step_pairs("pendulum", 8, 0.1, seed=2)
    b = one_step_pairs("pendulum", 8, 0.1, seed=2, integrator="scipy")
    np.testing.assert_array_equal(a["x"].values, b["x"].values)
    assert np.abs(a["x_next"].values - b["x_next"].values).max() < 1e-8
    assert b.attrs["integrator"].startswith("scipy")


def test_progress_callback_reports_all_samples():
    seen = []
    one_step_pairs("duffing", 700, 0.05, progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (700, 700)
    assert all(t == 700 for _, t in seen) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_trajectories_flow_vs_whole_horizon_solve_ivp():
    """The CasADi path composes the one-step flow; the reference integrates the whole horizon
    with a hand-written RHS."""
    mu = 1.3
    x0 = np.array([[2.0, 0.0], [-1.0, 1.5]])
    ds = trajectories(get_system("van_der_pol", mu=mu), x0, 30, 0.1)
    assert ds["x"].dims == ("trajectory", "time", "state")
    np.testing.assert_allclose(ds["time"].values, 0.1 * np.arange(31))
    for i, z0 in enumerate(x0):
        sol = solve_ivp(lambda t, z: [z[1], mu * (1 - z[0] ** 2) * z[1] - z[0]], (0, 3.0), z0,
                        method="DOP853", rtol=1e-12, atol=1e-13, t_eval=ds["time"].values)
        assert np.abs(ds["x"].values[i] - sol.y.T).max() < 1e-8
    assert ds.attrs["kind"] == "trajectories"
    ref = trajectories(get_system("van_der_pol", mu=mu), x0, 30, 0.1, integrator="scipy")
    assert np.abs(ref["x"].values - ds["x"].values).max() < 1e-8


def test_trajectories_euler_iterate_hand_map():
    tau, a, b = 0.15, 1.0, 2.0
    ds = trajectories(get_system("brusselator", a=a, b=b), [1.2, 0.7], 25, tau, method="euler")
    z = np.array([1.2, 0.7])
    for k in range(26):
        np.testing.assert_allclose(ds["x"].values[0, k], z, rtol=1e-12)
        x, y = z
        z = np.array([x + tau * (a - (b + 1) * x + x * x * y), y + tau * (b * x - x * x * y)])


def test_trajectories_of_python_system():
    decay = System.from_python("decay", lambda X, p: -p["k"] * X, ["x", "y"], {"k": 0.5})
    ds = trajectories(decay, [[1.0, -2.0]], 10, 0.2)
    expected = np.exp(-0.5 * ds["time"].values)[:, None] * np.array([1.0, -2.0])
    np.testing.assert_allclose(ds["x"].values[0], expected, atol=1e-9)
    assert ds.attrs["integrator"].startswith("scipy")


def test_bad_simulation_inputs():
    with pytest.raises(ConfigError, match="sampling"):
        one_step_pairs("brusselator", 10, 0.1, sampling="sobol")
    with pytest.raises(ConfigError, match="positive integer"):
        one_step_pairs("brusselator", 0, 0.1)
    with pytest.raises(ConfigError, match="map"):
        one_step_pairs("brusselator", 10, 0.1, method="leapfrog")
    with pytest.raises(ShapeError, match="2 entries"):
        one_step_pairs("brusselator", 10, 0.1, lo=[0, 0, 0], hi=[1, 1, 1])
    with pytest.raises(ConfigError, match="exceed"):
        one_step_pairs("brusselator", 10, 0.1, lo=[1, 1], hi=[0, 2])
    with pytest.raises(ShapeError, match="same number"):
        sample_box([0, 0], [1], 5)
    with pytest.raises(ConfigError, match="lo <= hi"):
        sample_box([0, np.inf], [1, 1], 5)
    with pytest.raises(ShapeError, match="initial states"):
        trajectories("brusselator", np.ones((2, 3)), 5, 0.1)
    with pytest.raises(ConfigError, match="NaN"):
        trajectories("brusselator", [[np.nan, 1.0]], 5, 0.1)
    with pytest.raises(ConfigError, match="positive integer"):
        trajectories("brusselator", [[1.0, 1.0]], 0, 0.1)


def test_blow_up_gives_a_dynid_error():
    blow = System.from_python("blowup", lambda X, p: X ** 2, ["x"])
    with pytest.raises(ConfigError, match="blow up"):
        blow.step_map(np.array([[2.0]]), 1.0)  # x(t) = 2 / (1 - 2t) explodes at t = 0.5


def test_casadi_blow_up_gives_a_dynid_error():
    import casadi as ca

    x = ca.SX.sym("x", 1)
    blow = System.from_casadi("blowup_casadi", x, x ** 2)
    with pytest.raises(ConfigError, match="blow up"):
        blow.step_map(np.array([[0.1], [2.0]]), 1.0)


def test_throughput_reports_both_integrators():
    r = throughput("duffing", n=40, n_scipy=4)
    assert r["pairs_per_s_casadi"] > 0 and r["pairs_per_s_scipy"] > 0
    assert r["max_abs_diff"] < 1e-8
