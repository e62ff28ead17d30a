"""Reach with a bounded disturbance per step (the plant's sets): every engine and method
contains simulated disturbed trajectories; the plant's sets contain runs of the true ODE."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynid.errors import ConfigError, ShapeError
from tests.conftest import random_relunet

ENGINES = ["ibp", "crown", "lp-highs", "lp-splitting", "mip"]
METHODS = [("one-shot", None), ("recursive", None), ("hybrid", 2)]


def disturbed_runs(net, lo, hi, e, steps, n, rng):
    """Trajectories of x+ = F(x) + w with w uniform in [-e, e] or at its corners."""
    X = np.vstack([rng.uniform(lo, hi, (n, lo.size)),
                   np.where(rng.random((n, lo.size)) < 0.5, lo, hi)])
    out = [X]
    for _ in range(steps):
        W = np.where(rng.random(X.shape) < 0.5, rng.uniform(-1, 1, X.shape),
                     np.sign(rng.uniform(-1, 1, X.shape))) * e
        X = net.forward(X) + W
        out.append(X)
    return np.stack(out, axis=1)


def outside(ds, traj, tol=1e-9):
    from reach.falsify import count_outside

    return count_outside(ds, traj, tol)


CASES = [pytest.param(eng, m, w, marks=[pytest.mark.slow] if (eng, m) in {
    ("lp-splitting", "recursive"), ("lp-splitting", "hybrid"), ("ibp", "recursive"),
    ("mip", "recursive")} else []) for eng in ENGINES for m, w in METHODS]


@pytest.mark.parametrize("engine,method,window", CASES)
def test_every_engine_contains_disturbed_trajectories(engine, method, window):
    from reach.reachability import reach

    rng = np.random.default_rng(1)
    net = random_relunet(rng, [2, 6, 6, 2], scale=0.8)
    e = np.array([0.05, 0.02])
    lo, hi = np.array([-0.4, -0.4]), np.array([0.4, 0.4])
    opts = {"max_iter": 100} if engine == "lp-splitting" else None
    K = 3 if method == "hybrid" else 2
    ds = reach(net, lo, hi, K, method=method, window=window, engine=engine, model_error=e,
               engine_opts=opts)
    assert ds.attrs["about"] == "plant" and ds.attrs["model_error_label"] == "given"
    assert outside(ds, disturbed_runs(net, lo, hi, e, K, 2000, rng)) == 0
    # wider than the undisturbed sets, which hold the surrogate's runs only
    ds0 = reach(net, lo, hi, K, method=method, window=window, engine=engine, engine_opts=opts)
    assert ds0.attrs["about"] == "surrogate"
    w_plant = (ds.box_hi - ds.box_lo).values[1:]
    w_sur = (ds0.box_hi - ds0.box_lo).values[1:]
    if engine != "lp-splitting":       # (an unconverged dual bound may be looser either way)
        assert np.all(w_plant >= w_sur + 2 * e - 1e-6)  # the last step adds [-e, e] exactly


@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1.0, 1e-6, 1e-8]),
       method=st.sampled_from(["one-shot", "recursive", "hybrid"]),
       engine=st.sampled_from(["ibp", "crown"]))
@settings(max_examples=30)
def test_disturbed_sets_are_sound_at_every_scale(seed, scale, method, engine):
    from reach.reachability import reach

    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [2, 5, 4, 2], identity_frac=0.2)
    c = rng.normal(size=2)
    r = scale * rng.uniform(0.2, 1.0, 2)
    e = scale * rng.uniform(0.0, 0.5, 2)
    ds = reach(net, c - r, c + r, 3, method=method, engine=engine, model_error=e)
    assert outside(ds, disturbed_runs(net, c - r, c + r, e, 3, 300, rng)) == 0


def test_disturbed_unrolling_is_the_composition():
    from reach.disturbance import DisturbedUnrolled

    rng = np.random.default_rng(0)
    net = random_relunet(rng, [3, 5, 3])
    D = DisturbedUnrolled(net, 3)
    x = rng.normal(size=(50, 3))
    w = rng.normal(size=(50, 9))
    ref = x
    for j in range(1, 4):
        ref = net.forward(ref) + w[:, 3 * (j - 1):3 * j]
        assert np.allclose(D(j).forward(np.hstack([x, w])), ref, atol=1e-12)
    # the nets of a window share their hidden layers (intermediate bounds are reused)
    for j in (1, 2):
        L = D(j).n_layers
        for a, b in zip(D(j).weights[:L - 1], D(3).weights[:L - 1]):
            assert np.array_equal(a, b)


def test_zero_error_matches_the_surrogate_and_leaving_the_box_is_unknown(tmp_path):
    from reach.reachability import load_reach, reach, save_reach

    rng = np.random.default_rng(2)
    net = random_relunet(rng, [2, 6, 2], scale=0.9)
    lo, hi = np.array([-0.3, -0.3]), np.array([0.3, 0.3])
    ds0 = reach(net, lo, hi, 3, engine="crown")
    ds = reach(net, lo, hi, 3, engine="crown", model_error=[0.0, 0.0])
    assert np.allclose(ds.box_lo.values, ds0.box_lo.values, atol=1e-8)
    assert np.allclose(ds.box_hi.values, ds0.box_hi.values, atol=1e-8)
    # a validity box that the step-1 set leaves: unknown for the plant from step 2
    b1lo, b1hi = ds.box_lo.sel(step=1).values, ds.box_hi.sel(step=1).values
    assert np.any(b1lo < lo) or np.any(b1hi > hi)         # the step-1 set leaves X0
    box = (lo - 1e-6, hi + 1e-6)
    dsb = reach(net, lo, hi, 3, engine="crown", model_error=[0.01, 0.01], error_box=box)
    assert dsb.attrs["plant_unknown_from"] == 2
    assert np.all(np.isnan(dsb.box_lo.sel(step=2).values))
    assert np.all(np.isfinite(dsb.box_lo.sel(step=1).values))
    save_reach(dsb, tmp_path / "p.nc")
    back = load_reach(tmp_path / "p.nc")
    assert back.attrs["about"] == "plant" and int(back.attrs["plant_unknown_from"]) == 2
    from reach.disturbance import describe

    assert "unknown for the plant from step 2" in describe(back)
    with pytest.raises(ConfigError, match=">= 0"):
        reach(net, lo, hi, 2, model_error=[-1.0, 0.0])
    with pytest.raises(ShapeError, match="2 values"):
        reach(net, lo, hi, 2, model_error=[0.1, 0.1, 0.1])


def _flow_plant(n_fit=2000):
    """A fixed least-squares surrogate of the Brusselator flow (dt 0.1) and its system."""
    from tests.test_model_error import feature_net

    from dynid.systems import get_system

    sys_ = get_system("brusselator")
    lo, hi = np.array([1.0, 1.0]), np.array([3.5, 3.5])
    meta = {"system": "brusselator", "params": {"a": 1.0, "b": 3.0}, "dt": 0.1, "map": "flow",
            "domain": {"lo": lo.tolist(), "hi": hi.tolist()}}
    net = feature_net(lambda X: sys_.step_map(X, 0.1), lo, hi, hidden=40, seed=2, n_fit=n_fit,
                      meta=meta)
    return sys_, net


def _check_plant_run(samples):
    from reach.plant import plant_reach, true_runs

    sys_, net = _flow_plant()
    x0_lo, x0_hi = np.array([1.9, 2.4]), np.array([2.1, 2.6])
    run = plant_reach(net, x0_lo, x0_hi, 3, engine="crown", partitions=2, samples=100,
                      model_error_opts={"rtol": 1.0})
    ds = run.dataset
    assert run.model_error.certified and ds.attrs["about"] == "plant"
    assert int(ds.attrs["plant_unknown_from"]) == -1
    x0 = np.random.default_rng(7).uniform(x0_lo, x0_hi, (samples, 2))
    f = true_runs(sys_, 0.1, "flow", x0, 3, check=ds)
    assert f.outside == 0
    return run, f


def test_plant_sets_contain_true_ode_runs():
    run, f = _check_plant_run(5000)
    s = run.summary()
    assert s["true_runs_outside"] == 0 and s["sound"] is True


@pytest.mark.slow
def test_plant_sets_contain_1e5_true_ode_runs():
    _check_plant_run(100_000)


def test_cli_reach_for_plant(tmp_path, capsys):
    import json

    from tests.test_model_error import _euler_brusselator

    from dynid.cli import main
    from dynid.modelfile import save_model

    _, net, lo, hi = _euler_brusselator()
    path = tmp_path / "m.h5"
    save_model(path, net.with_meta(system="brusselator", params={"a": 1.0, "b": 2.0},
                                   dt=0.15, map="euler",
                                   domain={"lo": lo.tolist(), "hi": hi.tolist()}))
    rc = main(["reach", str(path), "--lo", "2.8", "0.8", "--hi", "3.0", "1.0", "--steps", "2",
               "--for", "plant", "--json", str(tmp_path / "r.json"), "--out",
               str(tmp_path / "p.nc"), "--report", str(tmp_path / "r.html")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "about: the plant (true system)" in out and "(certified)" in out
    assert "outside the plant's sets: 0" in out
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["about"] == "plant" and d["model_error"]["label"] == "certified"
    html = (tmp_path / "r.html").read_text()
    assert "Reachable sets of the plant" in html and "Reachable sets of the surrogate" in html
    assert main(["reach", str(path), "--lo", "2.8", "0.8", "--hi", "3.0", "1.0", "--steps",
                 "2"]) == 0
    assert "about: the surrogate" in capsys.readouterr().out
    assert main(["reach", str(path), "--lo", "2.8", "0.8", "--hi", "3.0", "1.0", "--steps",
                 "2", "--for", "plant", "--error-lo", "0", "0"]) == 2


def _euler_brusselator_run(tmp_path):
    """A run context whose model artifact is the Euler Brusselator surrogate of
    tests/test_model_error.py, saved with its system, dt, map and training domain."""
    from tests.test_model_error import _euler_brusselator

    from dynid.modelfile import save_model
    from dynid.pipeline import RunContext

    _, net, lo, hi = _euler_brusselator()
    save_model(tmp_path / "m.h5", net.with_meta(
        system="brusselator", params={"a": 1.0, "b": 2.0}, dt=0.15, map="euler",
        domain={"lo": lo.tolist(), "hi": hi.tolist()}))
    return RunContext(tmp_path, {}, artifacts={"model": tmp_path / "m.h5"}, base_dir=tmp_path,
                      logger=lambda m: None)


def test_reach_stage_shows_both_sets(tmp_path):
    """The pipeline's reach stage certifies e for a model of a system with equations and
    reports the plant's sets beside the surrogate's (the full pipeline runs in the slow demo
    test)."""
    import json

    from dynid.pipeline import RunContext
    from reach.stage import run

    ctx = _euler_brusselator_run(tmp_path)
    run({"lo": [2.8, 0.8], "hi": [3.0, 1.0], "steps": 2, "samples": 300, "partitions": 2,
         "model_error": {"samples": 300}}, ctx)
    plant = ctx.summary["reach"]["plant"]
    assert plant["about"] == "plant" and plant["true_runs_outside"] == 0
    assert json.loads((tmp_path / "model_error.json").read_text())["label"] == "certified"
    assert (tmp_path / "plant_reach.nc").exists()
    html = ctx.report.save(tmp_path / "r.html").read_text()
    assert "Reachable sets of the plant" in html and "Reachable sets of the surrogate" in html
    ctx2 = RunContext(tmp_path / "b", {}, artifacts={"model": tmp_path / "m.h5"},
                      base_dir=tmp_path, logger=lambda m: None)
    (tmp_path / "b").mkdir()
    run({"lo": [2.8, 0.8], "hi": [3.0, 1.0], "steps": 2, "samples": 100, "for": "surrogate"},
        ctx2)
    assert "plant" not in ctx2.summary["reach"]
    with pytest.raises(ConfigError, match="for"):
        run({"lo": [2.8, 0.8], "hi": [3.0, 1.0], "steps": 2, "for": "truth"}, ctx2)
    # bad [reach.model_error] options: one clear error before any work or file
    ctx3 = RunContext(tmp_path / "c", {}, artifacts={"model": tmp_path / "m.h5"},
                      base_dir=tmp_path, logger=lambda m: None)
    (tmp_path / "c").mkdir()
    for bad, match in (({"samples": -1}, "samples"), ({"rtol": float("nan")}, "rtol"),
                       ({"margin": "0.1"}, "margin"), ({"lo": [2.0, 0.0]}, "lo and hi"),
                       ({"tol": 1}, "tol")):
        with pytest.raises(ConfigError, match=match):
            run({"lo": [2.8, 0.8], "hi": [3.0, 1.0], "steps": 2, "model_error": bad}, ctx3)
    assert list((tmp_path / "c").iterdir()) == []


# ---------------------------------------------------------------------- closed loops
PEND_META = {"system": "pendulum_torque", "params": {"g": 9.81, "l": 1.0, "m": 1.0, "c": 0.5},
             "dt": 0.05, "map": "flow", "domain": {"lo": [-0.8, -2.0], "hi": [0.8, 2.0]},
             "input_names": ["tau"], "input_box": {"lo": [-1.0], "hi": [1.0]},
             "state_names": ["theta", "omega"]}


def _pendulum_plant():
    """A fixed least-squares surrogate of the torque pendulum's flow (dt 0.05) on [x; u]."""
    from tests.test_model_error import feature_net

    from dynid.systems import get_system

    pend = get_system("pendulum_torque")
    lo, hi = np.array([-0.8, -2.0, -1.0]), np.array([0.8, 2.0, 1.0])
    net = feature_net(lambda Z: pend.step_map(Z[:, :2], 0.05, "flow", u=Z[:, 2:]), lo, hi,
                      hidden=40, seed=5, n_fit=2000, meta=PEND_META)
    return pend, net


def true_closed_loop(pend, ctrl, x0, steps, u_lo, u_hi):
    """Runs of the true pendulum under u = clip(ctrl(x)), held over each step (CVODES)."""
    out = [x0]
    for _ in range(steps):
        u = np.clip(ctrl.forward(out[-1]), u_lo, u_hi)
        out.append(pend.step_map(out[-1], 0.05, "flow", u=u))
    return np.stack(out, axis=1)


def _check_closed_loop(samples):
    from dynid.relunet import linear
    from reach.plant import plant_reach

    pend, plant = _pendulum_plant()
    ctrl = linear([[-1.0, -0.8]])                       # tau = -theta - 0.8 omega, |tau| <= .5
    x0_lo, x0_hi = np.array([0.2, -0.3]), np.array([0.4, 0.0])
    run = plant_reach(plant, x0_lo, x0_hi, 4, controller=ctrl, u_lo=[-0.5], u_hi=[0.5],
                      partitions=2, samples=100, model_error_opts={"rtol": 1.0})
    ds, me = run.dataset, run.model_error
    assert ds.attrs["about"] == "plant" and int(ds.attrs["plant_unknown_from"]) == -1
    assert me.certified and me.u_lo.size == 1
    # U holds every saturated input over the box of e, and lies in the saturation box
    X = np.random.default_rng(3).uniform(me.lo, me.hi, (20_000, 2))
    u = np.clip(ctrl.forward(X), -0.5, 0.5)
    assert np.all(u >= me.u_lo) and np.all(u <= me.u_hi)
    assert me.u_lo[0] >= -0.5 and me.u_hi[0] <= 0.5
    x0 = np.vstack([np.random.default_rng(8).uniform(x0_lo, x0_hi, (samples, 2)),
                    np.array([[0.2, -0.3], [0.2, 0.0], [0.4, -0.3], [0.4, 0.0]])])
    traj = true_closed_loop(pend, ctrl, x0, 4, -0.5, 0.5)
    assert outside(ds, traj) == 0
    return run, traj


def test_closed_loop_plant_sets_contain_true_closed_loop_runs():
    run, traj = _check_closed_loop(3000)
    assert run.falsification.outside == 0
    # the surrogate loop's own sets are narrower than the plant's (the disturbance adds up)
    w_p = (run.dataset.box_hi - run.dataset.box_lo).values[-1]
    w_s = (run.surrogate.box_hi - run.surrogate.box_lo).values[-1]
    assert np.all(w_p >= w_s - 1e-9)


@pytest.mark.slow
def test_closed_loop_plant_sets_contain_1e5_true_runs():
    _check_closed_loop(100_000)


def test_batched_cells_match_single_cells_with_disturbance(monkeypatch):
    import reach.reachability as R

    rng = np.random.default_rng(4)
    net = random_relunet(rng, [2, 8, 8, 2], scale=0.8)
    lo, hi = np.array([-0.4, -0.4]), np.array([0.4, 0.4])
    a = R.reach(net, lo, hi, 3, partitions=3, model_error=[0.02, 0.01])
    monkeypatch.setattr(R, "CELL_BATCH", 1)
    b = R.reach(net, lo, hi, 3, partitions=3, model_error=[0.02, 0.01])
    assert np.allclose(a.lower.values, b.lower.values, atol=1e-9, rtol=1e-9)
    assert np.allclose(a.upper.values, b.upper.values, atol=1e-9, rtol=1e-9)


def _save_pendulum_plant(path):
    from dynid.modelfile import save_model

    pend, plant = _pendulum_plant()
    save_model(path, plant)
    return pend, plant


def test_cli_reach_for_plant_of_a_closed_loop(tmp_path, capsys):
    import json

    from dynid.cli import main

    _save_pendulum_plant(tmp_path / "p.h5")
    args = ["reach", str(tmp_path / "p.h5"), "--gain", "-1", "-0.8", "--u-lo", "-0.5",
            "--u-hi", "0.5", "--lo", "0.2", "-0.3", "--hi", "0.4", "0", "--steps", "3"]
    assert main(args + ["--for", "plant", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "about: the plant (true system)" in out and "outside the plant's sets: 0" in out
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["model_error"]["valid_on"]["u_hi"][0] <= 0.5
    # the same from a config file (the model and controller are read from it)
    (tmp_path / "r.toml").write_text(
        'model = "p.h5"\nlo = [0.2, -0.3]\nhi = [0.4, 0.0]\nsteps = 3\n'
        '[controller]\ngain = [[-1.0, -0.8]]\nu_lo = [-0.5]\nu_hi = [0.5]\n')
    assert main(["reach", str(tmp_path / "r.toml"), "--for", "plant"]) == 0
    assert "outside the plant's sets: 0" in capsys.readouterr().out
    # the model error of the plant alone, on a state x input box
    assert main(["certify", "model-error", str(tmp_path / "p.h5"), "--lo", "0", "-0.5", "--hi",
                 "0.5", "0.5", "--u-lo", "-0.5", "--u-hi", "0.5", "--rtol", "1"]) == 0
    out = capsys.readouterr().out
    assert "[certified]" in out and "inputs lo = [-0.5], hi = [0.5]" in out
    assert main(["certify", "model-error", str(tmp_path / "p.h5"), "--lo", "0", "-0.5", "--hi",
                 "0.5", "0.5", "--u-lo", "-0.5", "0", "--u-hi", "0.5", "1"]) == 2


def test_reach_stage_shows_both_sets_of_a_closed_loop(tmp_path):
    from dynid.pipeline import RunContext
    from reach.stage import run

    _save_pendulum_plant(tmp_path / "p.h5")
    ctx = RunContext(tmp_path, {}, artifacts={"model": tmp_path / "p.h5"}, base_dir=tmp_path,
                     logger=lambda m: None)
    run({"lo": [0.2, -0.3], "hi": [0.4, 0.0], "steps": 3, "samples": 300,
         "controller": {"gain": [[-1.0, -0.8]], "u_lo": [-0.5], "u_hi": [0.5]},
         "model_error": {"samples": 300, "rtol": 1.0}}, ctx)
    plant = ctx.summary["reach"]["plant"]
    assert plant["about"] == "plant" and plant["true_runs_outside"] == 0
    u_box = plant["model_error"]["valid_on"]
    assert u_box["u_lo"][0] >= -0.5 and u_box["u_hi"][0] <= 0.5
    html = ctx.report.save(tmp_path / "r.html").read_text()
    assert "Reachable sets of the plant" in html and "closed loop" in html


def test_reach_stage_without_plant_sets_keeps_the_surrogate_sets(tmp_path):
    """for = "both": an initial box outside the training domain gives no plant sets (said in
    the summary and the report) but the surrogate's sets stand; for = "plant" is an error."""
    from reach.stage import run

    ctx = _euler_brusselator_run(tmp_path)
    section = {"lo": [4.5, 0.5], "hi": [4.6, 0.6], "steps": 1, "samples": 100}
    run(section, ctx)
    assert "training domain" in ctx.summary["reach"]["plant"]["error"]
    assert ctx.summary["reach"]["sound"]
    with pytest.raises(ConfigError, match="training domain"):
        run({**section, "for": "plant"}, ctx)


def test_closed_loop_bad_inputs_are_one_clear_error():
    from dynid.relunet import linear
    from reach.plant import ClosedLoop, plant_reach

    _, plant = _pendulum_plant()
    ctrl = linear([[-1.0, -0.8]])
    with pytest.raises(ConfigError, match="saturation limits"):
        ClosedLoop(plant, ctrl, None, [0.5])
    with pytest.raises(ShapeError, match="saturation box is empty"):
        ClosedLoop(plant, ctrl, [0.5], [-0.5])
    with pytest.raises(ConfigError, match="R\\^3 -> R\\^2"):
        ClosedLoop(plant, linear([[1.0, 0.0], [0.0, 1.0]]), [0, 0], [1, 1])
    with pytest.raises(ConfigError, match="controller="):
        plant_reach(plant, [0.0, 0.0], [0.1, 0.1], 2)
