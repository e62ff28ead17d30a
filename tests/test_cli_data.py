"""CLI simulate / train / evaluate / info / run, in-process via dynid.cli.main."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dynid.cli import main

import dynid.datasets  # noqa: E402,F401  (the package's own modules: never skipped)
import dynid.simulate  # noqa: E402,F401


def _run(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def data_and_model(workdir):
    """A small Euler-map Brusselator dataset and a quickly trained model (shared)."""
    data, model = workdir / "d.nc", workdir / "m.h5"
    assert main(["simulate", "brusselator", "--out", str(data), "--samples", "400",
                 "--map", "euler", "--dt", "0.05", "--param", "b=2.5", "--seed", "3",
                 "--quiet"]) == 0
    assert main(["train", str(data), "--out", str(model), "--epochs", "3", "--hidden", "8,8",
                 "--quiet"]) == 0
    return data, model


def test_simulate_train_evaluate_info(capsys, data_and_model, workdir):
    from dynid.datasets import load_dataset
    from dynid.modelfile import load_model
    from dynid.systems import get_system

    data, model = data_and_model
    ds = load_dataset(data)
    assert ds.sizes["sample"] == 400 and ds.attrs["map"] == "euler"
    # the data are the hand-written Euler map of the Brusselator with b = 2.5
    x, y = ds["x"].values[:, 0], ds["x"].values[:, 1]
    a, b, dt = 1.0, 2.5, 0.05
    ref = np.stack([x + dt * (a - (b + 1) * x + x * x * y), y + dt * (b * x - x * x * y)], 1)
    assert np.abs(ds["x_next"].values - ref).max() < 1e-12
    assert get_system("brusselator", b=2.5).params["b"] == 2.5
    net = load_model(model)
    assert net.widths == [2, 10, 10, 2]
    assert net.meta["system"] == "brusselator" and net.meta["params"]["b"] == 2.5
    assert net.meta["dt"] == 0.05 and net.meta["training"]["epochs"] == 3

    js = workdir / "metrics.json"
    code, out, err = _run(capsys, ["evaluate", model, data, "--json", js, "--steps", "10",
                                   "--initial-states", "4"])
    assert code == 0, err
    res = json.loads(js.read_text())
    X, Y = ds["x"].values, ds["x_next"].values
    assert res["one_step_rmse_data"] == pytest.approx(np.sqrt(np.mean((net.forward(X) - Y) ** 2)))
    assert res["rollout"]["steps"] == 10 and res["rollout"]["n_trajectories"] == 4
    assert "one_step_rmse_data" in out

    code, out, _ = _run(capsys, ["info", model])
    assert code == 0 and "widths" in out and "brusselator" in out
    code, out, _ = _run(capsys, ["info", data, "--json", "-"])
    info = json.loads(out)
    assert info["type"] == "dataset" and info["sizes"]["sample"] == 400


def test_trajectories_dataset(capsys, workdir):
    from dynid.datasets import load_dataset

    path = workdir / "t.nc"
    code, _, err = _run(capsys, ["simulate", "van_der_pol", "--out", path, "--trajectories",
                                 "--samples", "3", "--steps", "7", "--map", "rk4", "--quiet"])
    assert code == 0, err
    ds = load_dataset(path)
    assert ds["x"].shape == (3, 8, 2)


def test_unknown_system(capsys, workdir):
    out = workdir / "none.nc"
    code, _, err = _run(capsys, ["simulate", "lorenz63", "--out", out, "--quiet"])
    assert code == 2
    assert "lorenz63" in _one_error_line(err)
    assert not out.exists()


def test_bad_param(capsys, workdir):
    code, _, err = _run(capsys, ["simulate", "brusselator", "--out", workdir / "p.nc",
                                 "--param", "b3", "--quiet"])
    assert code == 2 and "NAME=VALUE" in _one_error_line(err)
    code, _, err = _run(capsys, ["simulate", "brusselator", "--out", workdir / "p.nc",
                                 "--param", "zeta=3", "--quiet"])
    assert code == 2 and "zeta" in _one_error_line(err)
    assert not (workdir / "p.nc").exists()


def test_nan_data_gives_exit_2_and_no_model(capsys, workdir):
    import xarray as xr

    x = np.random.default_rng(0).normal(size=(20, 2))
    y = x.copy()
    y[3, 1] = np.nan
    ds = xr.Dataset({"x": (("sample", "state"), x), "x_next": (("sample", "state"), y)},
                    coords={"state": ["u", "v"]})
    path = workdir / "nan.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    out = workdir / "nan_model.h5"
    code, _, err = _run(capsys, ["train", path, "--out", out, "--quiet"])
    assert code == 2
    assert "nan" in _one_error_line(err).lower()
    assert not out.exists()
    assert not list(workdir.glob(".nan_model*"))   # no temp file left either


def test_wrong_shapes(capsys, data_and_model, workdir):
    import xarray as xr

    _, model = data_and_model
    x = np.random.default_rng(0).normal(size=(20, 3))
    ds = xr.Dataset({"x": (("sample", "state"), x), "x_next": (("sample", "state"), x)},
                    coords={"state": ["a", "b", "c"]})
    path = workdir / "three.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    code, _, err = _run(capsys, ["evaluate", model, path])
    assert code == 2 and "3 states" in _one_error_line(err)


def test_truncated_model(capsys, data_and_model, workdir):
    data, model = data_and_model
    bad = workdir / "trunc.h5"
    raw = model.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    code, _, err = _run(capsys, ["evaluate", bad, data])
    assert code == 2 and "trunc.h5" in _one_error_line(err)
    code, _, err = _run(capsys, ["info", bad])
    assert code == 2


def test_help_texts(capsys):
    for cmd in ("simulate", "train", "evaluate", "info", "run"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "example" in out


def test_run_bad_config_exit_2(capsys, workdir):
    cfg = workdir / "bad.toml"
    cfg.write_text('[run]\nname = "x"\nstages = ["simulate"]\n[simulate]\nsystem = "brusselator"'
                   '\nsamplez = 3\n')
    code, _, err = _run(capsys, ["run", cfg, "--out-dir", workdir / "badrun"])
    assert code == 2 and "samplez" in _one_error_line(err)
    assert not (workdir / "badrun" / "data.nc").exists()
