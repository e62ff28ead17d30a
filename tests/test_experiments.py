"""Experiments of plants with inputs and the datasets they make: layout, attributes, pairs that
never cross experiment boundaries (each pair re-simulated from its own x and u), uneven
lengths, measurement noise, file round trips, splits and validation errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from dynid.datasets import (load_dataset, normalisation_stats, pair_experiments, pairs_from,
                            save_dataset, split, trajectory_arrays, validate)
from dynid.errors import ConfigError, DataValidationError
from dynid.simulate import experiments, trajectories
from dynid.systems import get_system


def test_experiments_layout_and_provenance():
    ds = experiments("pendulum_torque", 5, 40, 0.05, signal="random_steps",
                     signal_options={"hold": (3, 6)}, lo=[-1, -1], hi=[1, 1], u_lo=[-1.5],
                     u_hi=[1.5], seed=4)
    assert ds["x"].dims == ("trajectory", "time", "state")
    assert ds["u"].dims == ("trajectory", "time", "input")
    assert ds["input"].values.tolist() == ["tau"]
    assert ds["experiment"].values.tolist() == ["0", "1", "2", "3", "4"]
    x0 = ds["x"].values[:, 0]
    assert np.all(np.abs(x0) <= 1)
    assert np.all(np.abs(ds["u"].values) <= 1.5)
    at = ds.attrs
    assert json.loads(at["excitation"]) == {"signal": "random_steps", "options": {"hold": [3, 6]},
                                            "u_lo": [-1.5], "u_hi": [1.5]}
    assert at["input_lo"].tolist() == [-1.5] and json.loads(at["state_units"]) == ["rad", "rad/s"]
    # each experiment has its own excitation
    assert not np.array_equal(ds["u"].values[0], ds["u"].values[1])
    again = experiments("pendulum_torque", 5, 40, 0.05, signal_options={"hold": (3, 6)},
                        lo=[-1, -1], hi=[1, 1], u_lo=[-1.5], u_hi=[1.5], seed=4)
    np.testing.assert_array_equal(again["x"].values, ds["x"].values)
    with pytest.raises(ConfigError, match="no inputs"):
        experiments("duffing", 2, 10, 0.1)


def test_pairs_follow_the_dynamics_and_stay_inside_experiments():
    sys = get_system("mass_spring_damper")
    ds = experiments(sys, 4, 25, 0.1, seed=1)
    X, Y = pairs_from(ds)
    labels = pair_experiments(ds)
    assert X.shape == (100, 3) and Y.shape == (100, 2) and len(labels) == 100
    # every pair is one ZOH step of the plant from its own state and input; a pair spanning
    # two experiments would fail this (the next experiment restarts elsewhere)
    np.testing.assert_allclose(sys.step_map(X[:, :2], 0.1, u=X[:, 2:]), Y, atol=1e-9)
    assert [labels[25 * i] for i in range(4)] == ["0", "1", "2", "3"]
    stats = normalisation_stats(ds)
    assert stats["input_names"] == ["F"] and stats["u_std"].shape == (1,)


def _uneven():
    ds = experiments("mass_spring_damper", 3, 20, 0.1, seed=2)
    x, u = ds["x"].values.copy(), ds["u"].values.copy()
    x[1, 12:] = np.nan          # experiment 1 ends after 12 samples, 2 after 7
    u[1, 12:] = np.nan
    x[2, 7:] = np.nan
    u[2, 7:] = np.nan
    return ds.assign(x=(ds["x"].dims, x), u=(ds["u"].dims, u)).assign_coords(
        length=("trajectory", np.array([21, 12, 7])))


def test_uneven_lengths_pairs_and_roundtrip(tmp_path):
    ds = _uneven()
    validate(ds)
    X, Y = pairs_from(ds)
    assert X.shape[0] == 20 + 11 + 6 and np.isfinite(X).all() and np.isfinite(Y).all()
    sys = get_system("mass_spring_damper")
    np.testing.assert_allclose(sys.step_map(X[:, :2], 0.1, u=X[:, 2:]), Y, atol=1e-9)
    path = save_dataset(ds, tmp_path / "uneven.nc")
    back = load_dataset(path)
    t = trajectory_arrays(back)
    assert t["length"].tolist() == [21, 12, 7] and t["experiment"] == ["0", "1", "2"]
    np.testing.assert_array_equal(pairs_from(back)[0], X)
    # NaN inside an experiment is an error that names the experiment
    x = ds["x"].values.copy()
    x[2, 3, 0] = np.nan
    with pytest.raises(DataValidationError, match="experiment '2'"):
        validate(ds.assign(x=(ds["x"].dims, x)))
    with pytest.raises(DataValidationError, match="length"):
        validate(ds.assign_coords(length=("trajectory", np.array([21, 12, 30]))))


def test_split_is_by_experiment():
    ds = experiments("mass_spring_damper", 10, 5, 0.1, seed=0)
    a, b = split(ds, (0.7, 0.3), seed=1)
    ea, eb = set(a["experiment"].values.tolist()), set(b["experiment"].values.tolist())
    assert not ea & eb and len(ea | eb) == 10


def test_measurement_noise():
    clean = experiments("pendulum_torque", 20, 50, 0.05, seed=3)
    noisy = experiments("pendulum_torque", 20, 50, 0.05, seed=3, noise_std=[0.01, 0.05])
    np.testing.assert_array_equal(noisy["x_true"].values, clean["x"].values)
    e = (noisy["x"].values - noisy["x_true"].values).reshape(-1, 2)
    assert e.std(axis=0) == pytest.approx([0.01, 0.05], rel=0.05)
    assert np.abs(e.mean(axis=0)).max() < 0.003
    np.testing.assert_array_equal(noisy["u"].values, clean["u"].values)


def test_validation_of_inputs():
    ds = experiments("mass_spring_damper", 2, 5, 0.1)
    with pytest.raises(DataValidationError, match="dims"):
        validate(ds.assign(u=(("trajectory", "input", "time"),
                              ds["u"].values.transpose(0, 2, 1))))
    with pytest.raises(DataValidationError, match="both as state and as input"):
        validate(ds.assign_coords(input=["x"]))
    with pytest.raises(DataValidationError, match="more than one trajectory"):
        validate(ds.assign_coords(experiment=("trajectory", ["a", "a"])))
    pairs = xr.Dataset({"x": (("sample", "state"), np.zeros((2, 1))),
                        "x_next": (("sample", "state"), np.zeros((2, 1))),
                        "w": (("sample", "input"), np.zeros((2, 1)))},
                       coords={"state": ["a"]})
    with pytest.raises(DataValidationError, match="no variable 'u'"):
        validate(pairs)
    # an autonomous dataset is as before: no input, X = x
    X, _ = pairs_from(trajectories("linear", [[1.0, 0.0]], 3, 0.1, method="euler"))
    assert X.shape == (3, 2)
