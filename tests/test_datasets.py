"""dynid.datasets: netCDF round trips, every bad-input path, splits, statistics, recipes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dynid.datasets import (check_recipe, dataset_from_recipe, dataset_summary, load_dataset,
                            load_recipe,
                            normalisation_stats, pairs_from, save_dataset, split, validate)
from dynid.errors import ConfigError, DataValidationError, UnknownSystemError
from dynid.simulate import one_step_pairs, trajectories
from dynid.systems import get_system

RECIPES = sorted((Path(__file__).resolve().parents[1] / "datasets").glob("*.toml"))


@pytest.fixture(scope="module")
def pairs():
    return one_step_pairs("brusselator", 200, 0.1, method="flow", sampling="lhs", seed=1)


@pytest.fixture(scope="module")
def trajs():
    x0 = np.random.default_rng(0).uniform(-2, 2, size=(7, 2))
    return trajectories("van_der_pol", x0, 12, 0.1, method="rk4")


def raw_pairs(x, x_next=None, states=("x", "y"), **attrs):
    x = np.asarray(x, float)
    x_next = x + 1 if x_next is None else np.asarray(x_next, float)
    return xr.Dataset({"x": (("sample", "state"), x), "x_next": (("sample", "state"), x_next)},
                      coords={"state": list(states)}, attrs=attrs)


def no_leftovers(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_round_trip_pairs_bit_exact(tmp_path, pairs):
    path = save_dataset(pairs, tmp_path / "d.nc")
    back = load_dataset(path)
    np.testing.assert_array_equal(back["x"].values, pairs["x"].values)
    np.testing.assert_array_equal(back["x_next"].values, pairs["x_next"].values)
    assert back["state"].values.tolist() == ["x", "y"]
    for key in ("kind", "system", "params", "dt", "map", "integrator", "rtol", "atol", "seed",
                "sampling", "dynid_version"):
        assert back.attrs[key] == pairs.attrs[key], key
    np.testing.assert_array_equal(back.attrs["domain_hi"], [4.0, 5.0])
    assert json.loads(back.attrs["params"]) == {"a": 1.0, "b": 3.0}
    assert no_leftovers(tmp_path)
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # the usual mode, not mkstemp's 0600


def test_round_trip_trajectories(tmp_path, trajs):
    back = load_dataset(save_dataset(trajs, tmp_path / "t.nc"))
    np.testing.assert_array_equal(back["x"].values, trajs["x"].values)
    np.testing.assert_array_equal(back["time"].values, trajs["time"].values)
    assert back.attrs["kind"] == "trajectories"


def test_dict_and_bool_attributes_are_stored_as_netcdf_types(tmp_path):
    ds = raw_pairs(np.zeros((3, 2)), info={"a": [1, 2]}, flag=True, names=["u", "v"])
    back = load_dataset(save_dataset(ds, tmp_path / "a.nc"))
    assert json.loads(back.attrs["info"]) == {"a": [1, 2]}
    assert back.attrs["flag"] == 1
    assert json.loads(back.attrs["names"]) == ["u", "v"]


def test_missing_file(tmp_path):
    with pytest.raises(DataValidationError, match="does not exist"):
        load_dataset(tmp_path / "nope.nc")
    with pytest.raises(DataValidationError, match="folder"):
        load_dataset(tmp_path)


def test_not_netcdf(tmp_path):
    p = tmp_path / "notes.nc"
    p.write_text("hello, I am text\n" * 50)
    with pytest.raises(DataValidationError, match="not a readable netCDF4"):
        load_dataset(p)


def test_truncated_file(tmp_path, pairs):
    p = save_dataset(pairs, tmp_path / "full.nc")
    data = p.read_bytes()
    cut = tmp_path / "cut.nc"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataValidationError, match="truncated"):
        load_dataset(cut)


def test_hdf5_without_dataset_variables(tmp_path):
    import h5py

    p = tmp_path / "model.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("weights", data=np.ones((2, 2)))
    with pytest.raises(DataValidationError, match="no variable 'x'.*model file"):
        load_dataset(p)


def write_unchecked(ds, path):
    ds.to_netcdf(path, engine="h5netcdf")
    return path


@pytest.mark.parametrize("where", ["x", "x_next"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_rejected_on_load(tmp_path, where, bad):
    x = np.zeros((5, 2))
    x_next = np.ones((5, 2))
    (x if where == "x" else x_next)[3, 1] = bad
    p = write_unchecked(raw_pairs(x, x_next), tmp_path / "bad.nc")
    with pytest.raises(DataValidationError, match=rf"'{where}'.*NaN/inf.*sample 3, state 1"):
        load_dataset(p)


def test_save_refuses_bad_data_and_leaves_nothing(tmp_path):
    x = np.zeros((4, 2))
    x[0, 0] = np.nan
    with pytest.raises(DataValidationError):
        save_dataset(raw_pairs(x), tmp_path / "out.nc")
    assert list(tmp_path.iterdir()) == []


def test_wrong_dims(tmp_path):
    ds = xr.Dataset({"x": (("state", "sample"), np.zeros((2, 5))),
                     "x_next": (("state", "sample"), np.zeros((2, 5)))},
                    coords={"state": ["a", "b"]})
    with pytest.raises(DataValidationError, match="dims"):
        load_dataset(write_unchecked(ds, tmp_path / "t.nc"))


def test_mismatched_shapes():
    ds = xr.Dataset({"x": (("sample", "state"), np.zeros((5, 2))),
                     "x_next": (("n", "state"), np.zeros((4, 2)))}, coords={"state": ["a", "b"]})
    with pytest.raises(DataValidationError, match="x_next"):
        validate(ds)
    with pytest.raises(DataValidationError, match="no variable 'x'"):
        validate(xr.Dataset({"y": (("sample",), np.zeros(3))}))
    with pytest.raises(DataValidationError, match="no 'x_next'"):
        validate(xr.Dataset({"x": (("sample", "state"), np.zeros((3, 2)))},
                            coords={"state": ["a", "b"]}))
    with pytest.raises(DataValidationError, match="no samples"):
        validate(raw_pairs(np.zeros((0, 2))))
    with pytest.raises(DataValidationError, match="xarray.Dataset"):
        validate(np.zeros((3, 2)))
    with pytest.raises(DataValidationError, match="real numbers"):
        validate(raw_pairs(np.zeros((2, 2))).assign(x=(("sample", "state"),
                                                        np.array([["a", "b"], ["c", "d"]]))))


def test_non_monotone_time(tmp_path, trajs):
    t = trajs["time"].values.copy()
    t[5], t[6] = t[6], t[5]
    bad = trajs.assign_coords(time=t)
    with pytest.raises(DataValidationError, match="strictly increasing"):
        load_dataset(write_unchecked(bad, tmp_path / "t.nc"))
    repeated = trajs.assign_coords(time=np.r_[t[:1], t[:-1]])
    with pytest.raises(DataValidationError, match="strictly increasing"):
        validate(repeated)
    with pytest.raises(DataValidationError, match="at least 2 time points"):
        validate(trajs.isel(time=[0]))
    with pytest.raises(DataValidationError, match="'time' coordinate"):
        validate(trajs.drop_vars("time"))


def test_state_names_mismatch(tmp_path):
    ds = raw_pairs(np.zeros((3, 2)))
    ds["x_next"].attrs["state_names"] = json.dumps(["y", "x"])
    with pytest.raises(DataValidationError, match="do not match"):
        load_dataset(write_unchecked(ds, tmp_path / "s.nc"))
    ds2 = raw_pairs(np.zeros((3, 2)), state_names="u,v")
    with pytest.raises(DataValidationError, match="do not match"):
        validate(ds2)
    validate(raw_pairs(np.zeros((3, 2)), state_names="x,y"))  # agreeing names are fine
    with pytest.raises(DataValidationError, match="not distinct"):
        validate(raw_pairs(np.zeros((3, 2)), states=("x", "x")))
    with pytest.raises(DataValidationError, match="'state' coordinate"):
        validate(raw_pairs(np.zeros((3, 2))).drop_vars("state"))


def test_kind_attribute_must_match(trajs):
    with pytest.raises(DataValidationError, match="kind"):
        validate(raw_pairs(np.zeros((3, 2)), kind="trajectories"))
    t = trajs.copy()
    t.attrs = {**trajs.attrs, "kind": "pairs"}
    with pytest.raises(DataValidationError, match="kind"):
        validate(t)


def test_split_pairs(pairs):
    a, b, c = split(pairs, (0.5, 0.3, 0.2), seed=4)
    assert (a.sizes["sample"], b.sizes["sample"], c.sizes["sample"]) == (100, 60, 40)
    rows = [tuple(r) for part in (a, b, c) for r in part["x"].values]
    assert sorted(rows) == sorted(tuple(r) for r in pairs["x"].values)  # a partition
    # pairs stay together: each x_next is the flow of its x
    sys = get_system("brusselator")
    np.testing.assert_allclose(b["x_next"].values, sys.step_map(b["x"].values, 0.1), atol=1e-12)
    again = split(pairs, (0.5, 0.3, 0.2), seed=4)
    np.testing.assert_array_equal(again[1]["x"].values, b["x"].values)
    other = split(pairs, (0.5, 0.3, 0.2), seed=5)
    assert not np.array_equal(other[1]["x"].values, b["x"].values)
    assert a.attrs["split"] == 0 and c.attrs["split"] == 2


def test_split_trajectories_keeps_them_whole(trajs):
    tr, va = split(trajs, (0.8, 0.2), seed=0)
    assert tr.sizes["trajectory"] + va.sizes["trajectory"] == 7
    assert va.sizes["trajectory"] >= 1 and tr.sizes["time"] == 13
    starts = {tuple(r) for r in trajs["x"].values[:, 0]}
    got = [tuple(r) for part in (tr, va) for r in part["x"].values[:, 0]]
    assert sorted(got) == sorted(starts)


def test_split_bad_inputs(pairs):
    for fr in [(0.5, 0.4), (1.2, -0.2), (0.0, 1.0), ("a", "b")]:
        with pytest.raises(ConfigError, match="fractions"):
            split(pairs, fr)
    with pytest.raises(DataValidationError, match="non-empty"):
        split(raw_pairs(np.zeros((2, 2))), (0.4, 0.3, 0.3))
    tiny = split(raw_pairs(np.arange(6.0).reshape(3, 2)), (0.98, 0.01, 0.01))
    assert [p.sizes["sample"] for p in tiny] == [1, 1, 1]


def test_pairs_from_trajectories_are_consecutive(trajs):
    X, Y = pairs_from(trajs)
    x = trajs["x"].values
    expected_X = [x[i, k] for i in range(x.shape[0]) for k in range(x.shape[1] - 1)]
    expected_Y = [x[i, k + 1] for i in range(x.shape[0]) for k in range(x.shape[1] - 1)]
    np.testing.assert_array_equal(X, expected_X)
    np.testing.assert_array_equal(Y, expected_Y)
    assert X.dtype == np.float64 and X.flags.writeable
    # and they are RK4 steps of the system
    sys = get_system("van_der_pol")
    np.testing.assert_allclose(Y, sys.step_map(X, 0.1, "rk4"), rtol=1e-12, atol=1e-12)


def test_normalisation_stats(pairs):
    s = normalisation_stats(pairs)
    X, Y = pairs["x"].values, pairs["x_next"].values
    np.testing.assert_allclose(s["x_mean"], [np.mean(X[:, i]) for i in range(2)])
    np.testing.assert_allclose(s["x_std"], [np.std(X[:, i]) for i in range(2)])
    np.testing.assert_allclose(s["dx_mean"], [np.mean(Y[:, i] - X[:, i]) for i in range(2)])
    np.testing.assert_allclose(s["dx_std"], [np.std(Y[:, i] - X[:, i]) for i in range(2)])
    assert s["state_names"] == ["x", "y"]
    const = raw_pairs(np.c_[np.ones(4), np.arange(4.0)], np.c_[np.ones(4), np.arange(4.0) + 2])
    c = normalisation_stats(const)
    assert c["x_std"][0] == 1.0 and c["dx_std"][1] == 1.0  # constant -> 1, safe to divide
    assert c["dx_mean"][1] == 2.0


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipes_load_and_simulate(path):
    recipe = load_recipe(path)
    sys = get_system(recipe["system"], **recipe["params"])
    small = {k: v for k, v in recipe.items()}
    if small["sampling"] != "grid":
        small["n"] = 20
    ds = dataset_from_recipe(small)
    validate(ds)
    assert ds.attrs["system"] == recipe["system"] and ds.attrs["dt"] == recipe["dt"]
    X, Y = pairs_from(ds)
    assert np.all(X >= recipe["domain"]["lo"]) and np.all(X <= recipe["domain"]["hi"])
    np.testing.assert_allclose(Y, sys.step_map(X, recipe["dt"], recipe["map"]), atol=1e-12)
    assert json.loads(ds.attrs["recipe"])["system"] == recipe["system"]


def test_every_catalogue_system_has_a_recipe():
    systems = {load_recipe(p)["system"] for p in RECIPES}
    assert {"brusselator", "van_der_pol", "fitzhugh_nagumo", "lotka_volterra", "duffing",
            "pendulum", "linear"} <= systems


def test_trajectory_recipe():
    r = {"system": "duffing", "dt": 0.1, "n": 3, "kind": "trajectories", "steps": 4,
         "map": "euler", "seed": 2}
    ds = dataset_from_recipe(r)
    assert ds["x"].shape == (3, 5, 2) and ds.attrs["seed"] == 2


def write_recipe(tmp_path, text):
    p = tmp_path / "r.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, error, match", [
    ('system = "brusselator"\ndt = 0.1\nn = 10\nsamples = 3\n', ConfigError, "samples"),
    ('system = "brusselator"\nn = 10\n', ConfigError, "'dt'"),
    ('system = "brusselator"\ndt = "fast"\nn = 10\n', ConfigError, "dt"),
    ('system = "brusselator"\ndt = 0.1\nn = 10.5\n', ConfigError, "'n'"),
    ('system = "brusselator"\ndt = -1\nn = 10\n', ConfigError, "positive"),
    ('system = "lorenz"\ndt = 0.1\nn = 10\n', UnknownSystemError, "brusselator"),
    ('system = "brusselator"\ndt = 0.1\nn = 10\nparams = { c = 1 }\n', ConfigError, "a, b"),
    ('system = "brusselator"\ndt = 0.1\nn = 10\nmap = "midpoint"\n', ConfigError, "map"),
    ('system = "brusselator"\ndt = 0.1\nn = 10\ndomain = { lo = [0], hi = [1] }\n',
     ConfigError, "2 numbers"),
    ('system = "brusselator"\ndt = 0.1\nn = 10\ndomain = { lo = [1, 1], hi = [0, 2] }\n',
     ConfigError, "below"),
    ('system = "brusselator"\ndt = 0.1\nn = 10\nkind = "trajectories"\n', ConfigError, "steps"),
    ('system = "brusselator"\ndt = 0.1\nn = [10\n', ConfigError, "not valid TOML"),
])
def test_bad_recipes(tmp_path, text, error, match):
    with pytest.raises(error, match=match):
        load_recipe(write_recipe(tmp_path, text))


def test_recipe_missing_and_defaults(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "none.toml")
    r = load_recipe(write_recipe(tmp_path, 'system = "duffing"\ndt = 0.1\nn = 5\n'))
    assert (r["map"], r["sampling"], r["seed"], r["kind"], r["name"]) == \
        ("flow", "lhs", 0, "pairs", "r")
    with pytest.raises(ConfigError, match="table"):
        check_recipe(["system"])


def test_dataset_summary(tmp_path, pairs, trajs):
    s = dataset_summary(load_dataset(save_dataset(pairs, tmp_path / "p.nc")))
    assert s["kind"] == "pairs" and s["sizes"] == {"sample": 200, "state": 2}
    np.testing.assert_allclose(s["x_min"], pairs["x"].values.min(axis=0))
    np.testing.assert_allclose(s["x_max"], pairs["x"].values.max(axis=0))
    assert s["attrs"]["params"] == {"a": 1.0, "b": 3.0}
    json.dumps(s)  # JSON-able
    t = dataset_summary(trajs)
    assert t["kind"] == "trajectories" and t["time"]["n"] == 13
    assert t["time"]["start"] == 0.0 and abs(t["time"]["stop"] - 1.2) < 1e-12
