"""Closing the loop around a plant surrogate with inputs: the trained surrogate's loop against
the exact (A, B, K) loop (matrix-exponential ZOH discretisation), reach sets that contain the
loop's simulated runs (composed by hand here, not by surrogate_loop), controllers from ONNX,
Keras, .nnet, dynid files and linear gains, the CLI's errors, falsifying runs, and the LQR /
ReLU-controller design."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.linalg import expm

from dynid.cli import main
from dynid.formats import save_network
from dynid.modelfile import save_model
from dynid.relunet import linear
from dynid.simulate import one_step_pairs
from dynid.systems import get_system
from dynid.train import train
from reach.config import analyse, build_step_net
from reach.control import closed_loop_check, dlqr, fit_relu_controller, linearise, saturated_law
from tests.conftest import random_relunet
from tests.test_closed_loop import _keras_forward

DT = 0.1
GAIN = np.array([[-2.0, -1.5]])          # u = K x, saturated at |u| <= 1


@pytest.fixture(scope="module")
def linear_plant(tmp_path_factory):
    """The linear_input plant, its exact ZOH discretisation and a trained surrogate file."""
    sys = get_system("linear_input")
    A, B = np.array(sys.params["A"]), np.array(sys.params["B"])
    M = expm(np.block([[A, B], [np.zeros((1, 3))]]) * DT)
    ds = one_step_pairs(sys, 3000, DT, sampling="lhs", seed=0)
    net, _ = train(ds, arch="residual", hidden=(32,), epochs=200, batch_size=128, lr=5e-3,
                   dtype="float64", progress=False, seed=0)
    path = tmp_path_factory.mktemp("plant") / "plant.h5"
    save_model(path, net)
    return {"Ad": M[:2, :2], "Bd": M[:2, 2:], "net": net, "path": path}


def _exact_loop(p, x):
    return x @ p["Ad"].T + np.clip(x @ GAIN.T, -1, 1) @ p["Bd"].T


def _hand_loop(plant, ctrl, lo, hi, x):
    return plant.forward(np.hstack([x, np.clip(ctrl.forward(x), lo, hi)]))


def test_learned_loop_matches_the_exact_loop_on_a_grid(linear_plant):
    step, _ = build_step_net(model=linear_plant["path"],
                             controller={"gain": GAIN.tolist(), "u_lo": [-1], "u_hi": [1]})
    assert step.n_in == step.n_out == 2 and step.meta["closed_loop"] == "surrogate"
    g = np.stack(np.meshgrid(np.linspace(-2, 2, 15), np.linspace(-2, 2, 15)), -1).reshape(-1, 2)
    assert np.abs(step.forward(g) - _exact_loop(linear_plant, g)).max() < 0.01
    # free runs from the inner grid stay in the training box [-2, 2]^2
    g = np.stack(np.meshgrid(np.linspace(-1.5, 1.5, 13), np.linspace(-1.5, 1.5, 13)),
                 -1).reshape(-1, 2)
    x, y = g.copy(), g.copy()
    for _ in range(20):                       # saturation is active on most of the grid
        x, y = step.forward(x), _exact_loop(linear_plant, y)
        assert np.abs(x - y).max() < 0.03
    assert np.abs(y).max() < 0.5 * np.abs(g).max()    # the exact loop contracts


def _containment(step_net, plant, ctrl, lo, hi, n, steps, partitions):
    run = analyse(step_net, lo, hi, steps, engine="crown", partitions=partitions, samples=0)
    ds = run.dataset
    rng = np.random.default_rng(1)
    x = lo + rng.random((n, 2)) * (hi - lo)
    for k in range(1, steps + 1):
        x = _hand_loop(plant, ctrl, -1.0, 1.0, x)
        blo, bhi = ds.box_lo.sel(step=k).values, ds.box_hi.sel(step=k).values
        assert np.all(x >= blo) and np.all(x <= bhi), k
    return ds


def test_reach_set_contains_simulated_closed_loop_runs(linear_plant):
    from reach.closed_loop import surrogate_loop

    ctrl = random_relunet(np.random.default_rng(4), [2, 8, 1], scale=0.7)
    step = surrogate_loop(linear_plant["net"], ctrl, -1.0, 1.0)
    lo, hi = np.array([0.5, -0.5]), np.array([1.0, 0.0])
    ds = _containment(step, linear_plant["net"], ctrl, lo, hi, 10_000, 8, 2)
    assert ds.sizes["cell"] == 4


@pytest.mark.slow
def test_reach_set_contains_1e5_closed_loop_runs(linear_plant):
    ctrl = random_relunet(np.random.default_rng(5), [2, 16, 16, 1], scale=0.7)
    from reach.closed_loop import surrogate_loop

    step = surrogate_loop(linear_plant["net"], ctrl, -1.0, 1.0)
    _containment(step, linear_plant["net"], ctrl, np.array([-1.0, -1.0]),
                 np.array([1.0, 1.0]), 100_000, 15, 4)


def test_controller_files_of_every_format(linear_plant, tmp_path, shared_benchmarks):
    plant = linear_plant["net"]
    ctrl = random_relunet(np.random.default_rng(6), [2, 6, 1])
    x = np.random.default_rng(7).uniform(-2, 2, size=(50, 2))
    ref = _hand_loop(plant, ctrl, -0.5, 0.5, x)
    for ext in (".onnx", ".nnet", ".h5"):
        path = save_network(ctrl, tmp_path / f"ctrl{ext}")
        step, _ = build_step_net(model=linear_plant["path"],
                                 controller={"file": str(path), "u_lo": -0.5, "u_hi": 0.5})
        np.testing.assert_allclose(step.forward(x), ref, atol=1e-6 if ext == ".nnet" else 1e-12)
    # the published Keras controller of the double integrator (2 states -> 1 input)
    h5 = shared_benchmarks / "double_integrator" / "controller.h5"
    step, _ = build_step_net(model=linear_plant["path"], controller={"file": str(h5)})
    u = np.clip(_keras_forward(h5, x), -1.0, 1.0)      # default: the plant's input box
    np.testing.assert_allclose(step.forward(x), plant.forward(np.hstack([x, u])), atol=1e-9)


@pytest.mark.parametrize("args, words", [
    ([], ["plant surrogate with inputs", "--controller"]),
    (["--gain", "1", "2", "3"], ["1 x 2"]),
    (["--gain", "1", "2", "--controller", "c.onnx"], ["not both"]),
    (["--u-lo", "-1"], ["need a controller"]),
    (["--gain", "1", "2", "--u-lo", "1", "--u-hi", "0"], ["lo <= hi"]),
])
def test_cli_errors(linear_plant, capsys, args, words):
    rc = main(["reach", str(linear_plant["path"]), "--lo", "0", "0", "--hi", "0.1", "0.1",
               "--steps", "2", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)


def test_cli_gain_and_a_falsified_spec(linear_plant, tmp_path, capsys):
    rc = main(["reach", str(linear_plant["path"]), "--gain", "-2", "-1.5", "--u-lo", "-1",
               "--u-hi", "1", "--lo", "1.5", "-0.2", "--hi", "1.8", "0.2", "--steps", "5",
               "--samples", "2000", "--partitions", "2", "--json", "-"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["sound"] and out["steps"] == 5
    # a config whose spec the loop violates: the verdict is unsafe with a re-checked run
    cfg = tmp_path / "reach.toml"
    cfg.write_text(f'model = "{linear_plant["path"]}"\nlo = [1.5, -0.2]\nhi = [1.8, 0.2]\n'
                   'steps = 5\nsamples = 2000\n[controller]\ngain = [[-2.0, -1.5]]\n'
                   'u_lo = [-1.0]\nu_hi = [1.0]\n[[spec]]\ntype = "box"\nlo = [1.0, -5.0]\n'
                   'hi = [5.0, 5.0]\nname = "stay right of 1"\n')
    rc = main(["reach", str(cfg), "--json", str(tmp_path / "r.json")])
    verdict = json.loads((tmp_path / "r.json").read_text())["verdicts"][0]
    assert rc == 0 and verdict["status"] == "unsafe"
    w = np.array(verdict["witness"])
    plant, ctrl = linear_plant["net"], linear(GAIN)
    x = w[0]
    assert np.all(x >= [1.5, -0.2]) and np.all(x <= [1.8, 0.2])
    for k in range(1, w.shape[0]):           # a genuine run of the learned loop ...
        x = _hand_loop(plant, ctrl, -1.0, 1.0, x[None])[0]
        np.testing.assert_allclose(w[k], x, atol=1e-10)
    assert np.any(w[:, 0] < 1.0)             # ... that leaves the box


def test_lqr_and_relu_controller_design():
    rng = np.random.default_rng(8)
    A = np.array([[1.0, 0.1], [0.0, 1.0]])
    B = np.array([[0.005], [0.1]])
    Q, R = np.diag([10.0, 1.0]), np.eye(1)
    K = dlqr(A, B, Q, R)
    # K solves the Riccati equation: P = Q + A'P(A - BK), K = (R + B'PB)^-1 B'PA (by iteration)
    P = Q.copy()
    for _ in range(5000):
        P = Q + A.T @ P @ A - A.T @ P @ B @ np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
    np.testing.assert_allclose(K, np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A), rtol=1e-6)
    # linearise: the Jacobian of a random plant net against central differences
    plant = random_relunet(rng, [3, 12, 2], scale=0.5)
    x0, u0 = np.array([0.3, -0.2]), np.array([0.1])
    Al, Bl = linearise(plant, x0, u0)
    eps = 1e-7
    for j in range(3):
        e = np.zeros(3)
        e[j] = eps
        z = np.concatenate([x0, u0])
        col = (plant.forward(z + e) - plant.forward(z - e)) / (2 * eps)
        np.testing.assert_allclose(np.hstack([Al, Bl])[:, j], col, atol=1e-6)
    law = saturated_law(K, np.zeros(2), np.zeros(1), -1.0, 1.0)
    ctrl = fit_relu_controller(law, [-1, -1], [1, 1], 1, (16, 16), samples=1500,
                               iterations=800, seed=0)
    xt = rng.uniform(-1, 1, size=(500, 2))
    assert np.abs(ctrl.forward(xt) - law(xt)).max() < 0.1 and ctrl.meta["fit_rmse"] < 0.03
    step = linear(np.hstack([A, B]))
    from reach.closed_loop import surrogate_loop

    check = closed_loop_check(surrogate_loop(step, ctrl, -1.0, 1.0), [-0.5, -0.5], [0.5, 0.5],
                              200, [0.0, 0.0], n=50)
    assert check["surrogate_final_distance_max"] < 0.05
