"""``dynid data import``: round trips of simulated experiments through CSV, Parquet and netCDF
logs (written here with pandas / xarray, rows shuffled between experiments, uneven lengths),
and every bad-input case: exit code 2, one line on stderr naming the row / column, no file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from dynid.cli import main as _main
from dynid.dataimport import import_table
from dynid.datasets import load_dataset, pairs_from, trajectory_arrays
from dynid.simulate import experiments


def main(argv):
    """The CLI's exit code (argparse usage errors exit through SystemExit)."""
    try:
        return _main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.fixture(scope="module")
def runs():
    ds = experiments("pendulum_torque", 3, 30, 0.05, seed=7)
    lengths = [31, 18, 25]           # uneven: cut experiments 1 and 2 short
    return ds, lengths


def _table(ds, lengths, *, t0=(0.0, 10.0, 3.5)):
    rows = []
    for i, L in enumerate(lengths):
        for k in range(L):
            x, u = ds["x"].values[i, k], ds["u"].values[i, k]
            rows.append({"run": f"r{i}", "t": t0[i] + 0.05 * k, "th": x[0], "om": x[1],
                         "tau": u[0]})
    return pd.DataFrame(rows)


def _check(imported, ds, lengths):
    t = trajectory_arrays(imported)
    assert t["experiment"] == ["r0", "r1", "r2"] and t["length"].tolist() == lengths
    for i, L in enumerate(lengths):
        np.testing.assert_allclose(t["x"][i, :L], ds["x"].values[i, :L], rtol=0, atol=1e-12)
        np.testing.assert_allclose(t["u"][i, :L], ds["u"].values[i, :L], rtol=0, atol=1e-12)
    assert float(imported.attrs["dt"]) == pytest.approx(0.05, rel=1e-9)
    # pairs stop at each experiment's end: L - 1 per experiment
    X, Y = pairs_from(imported)
    assert X.shape == (sum(lengths) - 3, 3)
    from dynid.systems import get_system

    sys = get_system("pendulum_torque")
    np.testing.assert_allclose(sys.step_map(X[:, :2], 0.05, u=X[:, 2:]), Y, atol=1e-8)


def test_csv_roundtrip_through_the_cli(runs, tmp_path, capsys):
    ds, lengths = runs
    df = _table(ds, lengths)
    df = df.iloc[np.random.default_rng(0).permutation(len(df))].sort_values("t", kind="stable")
    df.to_csv(tmp_path / "log.csv", index=False)   # experiments interleaved, each in time order
    out = tmp_path / "data.nc"
    rc = main(["data", "import", str(tmp_path / "log.csv"), "--states", "th,om", "--inputs",
               "tau", "--time", "t", "--experiment", "run", "--out", str(out), "--units",
               "th=rad,om=rad/s,tau=N m"])
    assert rc == 0 and "3 experiment(s)" in capsys.readouterr().out
    back = load_dataset(out)
    # experiments in order of first appearance (r0 at t = 0, r2 at 3.5, r1 at 10)
    assert back["experiment"].values.tolist() == ["r0", "r2", "r1"]
    back = back.isel(trajectory=[back["experiment"].values.tolist().index(f"r{i}")
                                 for i in range(3)])
    _check(back, ds, lengths)
    assert back.attrs["state_units"] == '["rad", "rad/s"]'
    assert back["t0"].values.tolist() == pytest.approx([0.0, 10.0, 3.5])


def test_parquet_and_netcdf_with_other_names(runs, tmp_path):
    ds, lengths = runs
    df = _table(ds, lengths)
    df.to_parquet(tmp_path / "log.parquet")
    _check(import_table(tmp_path / "log.parquet", "th,om", "tau", "t", "run"), ds, lengths)
    # netCDF: 1-D variables of other names along an 'obs' dimension, time in ms
    nc = xr.Dataset({"theta_meas": ("obs", df["th"].values, {"units": "rad"}),
                     "omega_meas": ("obs", df["om"].values),
                     "torque": ("obs", df["tau"].values, {"units": "N m"}),
                     "time_ms": ("obs", 1000 * df["t"].values, {"units": "ms"}),
                     "run_id": ("obs", np.asarray(df["run"], dtype=str))})
    nc.to_netcdf(tmp_path / "log.nc", engine="h5netcdf")
    got = import_table(tmp_path / "log.nc", ["theta_meas", "omega_meas"], ["torque"],
                       "time_ms", "run_id")
    assert got["state"].values.tolist() == ["theta_meas", "omega_meas"]
    assert got.attrs["state_units"] == '["rad", ""]' and got.attrs["source_time_units"] == "ms"
    _check(got.assign_coords(state=["th", "om"], input=["tau"]), ds, lengths)
    # 2-D (run, time) arrays, NaN-padded after each run's end
    T = max(lengths)
    th = np.full((3, T), np.nan)
    for i, L in enumerate(lengths):
        th[i, :L] = ds["x"].values[i, :L, 0]
    om, tau = th.copy(), th.copy()
    for i, L in enumerate(lengths):
        om[i, :L] = ds["x"].values[i, :L, 1]
        tau[i, :L] = ds["u"].values[i, :L, 0]
    grid = xr.Dataset({"th": (("run", "t"), th), "om": (("run", "t"), om),
                       "tau": (("run", "t"), tau)},
                      coords={"run": ["r0", "r1", "r2"], "t": 0.05 * np.arange(T)})
    grid.to_netcdf(tmp_path / "grid.nc", engine="h5netcdf")
    _check(import_table(tmp_path / "grid.nc", "th,om", "tau", "t", "run"), ds, lengths)


def _csv(tmp_path, text, name="bad.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = "t,th,om,tau\n0,0.1,0,1\n0.1,0.2,0.1,1\n0.2,0.3,0.2,0\n0.3,0.3,0.2,0\n"

BAD_CASES = [
    # (file text, extra args, words the one line must contain)
    ("t,th,om,tau\n0,0.1,0,1\n0.1,0.2,,1\n0.2,0.3,0.2,0\n", [], ["row 2", "line 3", "'om'",
                                                              "empty"]),
    ("t,th,om,tau\n0,0.1,0,1\n0.1,0.2,nan,1\n0.2,0.3,0.2,0\n", [], ["row 2", "'om'", "NaN"]),
    ("t,th,om,tau\n0,0.1,0,1\n0.1,0.2,0.1,abc\n0.2,0.3,0.2,0\n", [], ["row 2", "'tau'",
                                                                    "not a number"]),
    ("t,th,om,tau\n0,0.1,0,1\n0.2,0.2,0.1,1\n0.1,0.3,0.2,0\n", [], ["row 3", "'t'",
                                                                  "does not increase"]),
    ("t,th,om,tau\n0,0.1,0,1\n0.1,0.2,0.1,1\n0.2,0.3,0.2,0\n0.35,0.3,0.2,0\n", [],
     ["row 4", "irregular", "0.15"]),
    ("t,th,omega,tau\n0,0.1,0,1\n0.1,0.2,0.1,1\n", [], ["'om'", "not found", "omega"]),
    ("t,th,om,tau\n0,0.1,0,inf\n0.1,0.2,0.1,1\n", [], ["row 1", "'tau'", "infinite"]),
    ("t,th,om,tau\n0,0.1,0,1\n", [], ["1 sample row"]),
    (GOOD, ["--dt", "0.2"], ["row 2", "irregular", "0.2"]),
]


@pytest.mark.parametrize("text, extra, words", BAD_CASES)
def test_bad_logs_exit_2_with_one_line(tmp_path, capsys, text, extra, words):
    path = _csv(tmp_path, text)
    out = tmp_path / "data.nc"
    rc = main(["data", "import", str(path), "--states", "th,om", "--inputs", "tau", "--time",
               "t", "--out", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (["--states", "th,om,th"], ["'th'", "twice"]),
    (["--states", "th,om", "--inputs", "om"], ["'om'", "state and as input"]),
    (["--states", "th,,om"], ["empty name"]),
    (["--states", "th,om", "--units", "zz=m"], ["'zz'"]),
    (["--states", "th,om", "--units", "th"], ["NAME=UNIT"]),
    (["--states", "th,om", "--format", "xlsx"], ["invalid choice"]),
])
def test_bad_names_and_units(tmp_path, capsys, args, words):
    path = _csv(tmp_path, GOOD, "good.csv")
    rc = main(["data", "import", str(path), "--time", "t", "--out", str(tmp_path / "d.nc"),
               *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "d.nc").exists()


def test_experiment_checks_and_units_from_the_file(tmp_path, capsys):
    text = ("run,t,th,om,tau\na,0,0.1,0,1\na,0.1,0.2,0.1,1\nb,0,0.3,0.2,0\nb,0.2,0.3,0.2,0\n"
            "b,0.4,0.3,0.2,0\n")
    rc = main(["data", "import", str(_csv(tmp_path, text)), "--states", "th,om", "--inputs",
               "tau", "--time", "t", "--experiment", "run", "--out", str(tmp_path / "d.nc")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "experiment 'b'" in err and "0.2" in err and "0.1" in err
    text = "run,t,th,om,tau\na,0,0.1,0,1\na,0.1,0.2,0.1,1\nb,0,0.3,0.2,0\n"
    rc = main(["data", "import", str(_csv(tmp_path, text)), "--states", "th,om", "--inputs",
               "tau", "--time", "t", "--experiment", "run", "--out", str(tmp_path / "d.nc")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "experiment 'b' has only 1 sample" in err and "row 3" in err
    nc = xr.Dataset({"th": ("obs", [0.0, 0.1, 0.2], {"units": "deg"}),
                     "t": ("obs", [0.0, 1.0, 2.0], {"units": "fortnights"})})
    nc.to_netcdf(tmp_path / "u.nc", engine="h5netcdf")
    rc = main(["data", "import", str(tmp_path / "u.nc"), "--states", "th", "--time", "t",
               "--units", "th=rad", "--out", str(tmp_path / "d.nc")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "'th'" in err and "'deg'" in err and "'rad'" in err
    rc = main(["data", "import", str(tmp_path / "u.nc"), "--states", "th", "--time", "t",
               "--out", str(tmp_path / "d.nc")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "fortnights" in err
    assert not (tmp_path / "d.nc").exists()
    # no time column: equally spaced rows with --dt, autonomous log (no inputs)
    path = _csv(tmp_path, "a,b\n1,2\n2,3\n3,5\n", "auto.csv")
    ds = import_table(path, "a,b", dt=0.5)
    assert "u" not in ds and float(ds.attrs["dt"]) == 0.5 and ds["x"].shape == (1, 3, 2)
