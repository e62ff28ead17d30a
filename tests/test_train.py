"""Training and metrics, against analytic maps and hand-computed error formulas."""

from __future__ import annotations

import numpy as np
import pytest

from dynid import load_model
from dynid.errors import ConfigError, ShapeError
from dynid.metrics import one_step_rmse, rollout, rollout_metrics, trajectory_errors
from dynid.relunet import linear
from dynid.train import train

A = np.array([[0.0, 1.0], [-1.0, -0.2]])   # a damped oscillator
DT = 0.1
M = np.eye(2) + DT * A                      # its forward-Euler map, exactly linear


def _linear_pairs(n=800, seed=0):
    X = np.random.default_rng(seed).uniform(-1, 1, size=(n, 2))
    return X, X @ M.T


def test_fits_a_linear_map():
    X, Y = _linear_pairs()
    net, s = train((X, Y), hidden=(16,), epochs=60, lr=1e-2, progress=False, h=DT, seed=0)
    Xt, Yt = _linear_pairs(400, seed=9)
    # reference: the analytic map on fresh points
    assert one_step_rmse(net, Xt, Yt) < 5e-3   # the identity map is off by ~6e-2
    assert s["epochs"] == 60 and s["stopped"] == "epochs"
    assert s["one_step_rmse"] == pytest.approx(s["best_val_rmse"])
    assert set(s) >= {"epochs", "best_val_loss", "seconds", "one_step_rmse", "history"}
    assert net.meta["training"]["arch"] == "residual"
    assert net.meta["domain"]["lo"] == pytest.approx(X.min(0).tolist())


def test_mlp_and_target_stop():
    X, Y = _linear_pairs()
    net, s = train((X, Y), arch="mlp", hidden=(16,), epochs=500, lr=1e-2, progress=False,
                   target_rmse=0.02, seed=1)
    assert s["stopped"] == "target_rmse"
    assert s["best_val_rmse"] <= 0.02 and s["seconds_to_target"] is not None
    assert s["epochs"] < 500
    assert net.meta["architecture"]["kind"] == "mlp"


def test_seed_reproducible():
    X, Y = _linear_pairs(200)
    a, _ = train((X, Y), hidden=(8,), epochs=3, progress=False, seed=3)
    b, _ = train((X, Y), hidden=(8,), epochs=3, progress=False, seed=3)
    c, _ = train((X, Y), hidden=(8,), epochs=3, progress=False, seed=4)
    assert all(np.array_equal(u, v) for u, v in zip(a.weights, b.weights))
    assert not all(np.array_equal(u, v) for u, v in zip(a.weights, c.weights))


def test_early_stopping():
    X, Y = _linear_pairs(200)
    # lr so small that nothing improves after the first epochs at float32 resolution
    _, s = train((X, Y), hidden=(4,), epochs=400, lr=1e-9, schedule="none", patience=3,
                 progress=False)
    assert s["stopped"] == "early_stopping" and s["epochs"] < 400


def test_interrupt_returns_and_saves_best(tmp_path):
    X, Y = _linear_pairs(300)
    calls = []

    def log(msg):
        calls.append(msg)
        if len(calls) == 3:      # third progress line: press Ctrl-C
            raise KeyboardInterrupt

    ck = tmp_path / "ck.h5"
    net, s = train((X, Y), hidden=(8,), epochs=50, progress=False, log=log, checkpoint=ck)
    assert s["interrupted"] and s["stopped"] == "interrupted"
    assert s["epochs"] < 50
    saved = load_model(ck)
    x = np.random.default_rng(0).normal(size=(20, 2))
    assert np.array_equal(saved.forward(x), net.forward(x))
    # the returned model is the best one seen, whose validation RMSE the summary reports
    assert s["best_val_rmse"] == min(s["history"]["val_rmse"])


def test_rollout_loss_needs_trajectories():
    X, Y = _linear_pairs(100)
    with pytest.raises(ConfigError, match="trajector"):
        train((X, Y), rollout_steps=3, progress=False)
    with pytest.raises(ConfigError):
        train((X, Y), arch="no_such_arch", progress=False)
    with pytest.raises(ShapeError):      # fewer columns in X than states in Y
        train((X[:, :1], Y), progress=False)
    with pytest.raises(ShapeError):      # rows do not pair up
        train((X, Y[:-1]), progress=False)


def test_training_on_trajectories_with_rollout_loss():
    sim = pytest.importorskip("dynid.simulate")
    from dynid.systems import get_system

    x0 = np.random.default_rng(0).uniform(-1, 1, size=(30, 2))
    ds = sim.trajectories("linear", x0, 20, DT, method="euler")
    # the system's Euler map is linear: its matrix has the images of e1, e2 as columns
    A_sys = np.asarray(get_system("linear").step_map(np.eye(2), DT, "euler")).T
    net, s = train(ds, hidden=(16,), epochs=40, lr=1e-2, rollout_steps=4, progress=False)
    assert s["rollout_steps"] == 4 and s["n_val"] > 0
    assert net.meta["dt"] == pytest.approx(DT) and net.meta["system"] == "linear"
    # the learnt map is close to the exact linear Euler map of the system
    xt = np.random.default_rng(5).uniform(-1, 1, size=(200, 2))
    assert one_step_rmse(net, xt, xt @ A_sys.T) < 5e-3


# ---------------------------------------------------------------------- metrics

def test_one_step_rmse_by_hand():
    net = linear([[2.0, 0.0], [0.0, 1.0]])
    X = np.array([[1.0, 1.0], [2.0, 0.0]])
    Y = np.array([[2.0, 0.0], [4.0, 3.0]])   # errors (0, 1), (0, -3)
    assert one_step_rmse(net, X, Y) == pytest.approx(np.sqrt((1 + 9) / 4))
    with pytest.raises(ShapeError):
        one_step_rmse(net, X[:, :1], Y)


def test_rollout_is_matrix_power():
    net = linear(M)
    x0 = np.array([[1.0, 0.5], [-0.3, 0.2]])
    r = rollout(net, x0, 7)
    for k in range(8):
        assert np.allclose(r[:, k], x0 @ np.linalg.matrix_power(M, k).T, atol=1e-14)


def test_trajectory_errors_by_hand():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(3, 6, 2))
    pred = true + rng.normal(size=true.shape) * 0.1
    pred[:, 0] = true[:, 0]
    m = trajectory_errors(true, pred)
    nrmse, fit = [], []
    for s in range(2):
        t = true[:, 1:, s].ravel()
        p = pred[:, 1:, s].ravel()
        rmse = np.sqrt(sum((a - b) ** 2 for a, b in zip(t, p)) / len(t))
        nrmse.append(rmse / np.sqrt(sum((a - t.mean()) ** 2 for a in t) / len(t)))
        fit.append(100 * (1 - np.sqrt(((t - p) ** 2).sum()) / np.sqrt(((t - t.mean()) ** 2).sum())))
    assert m["nrmse"] == pytest.approx(np.mean(nrmse))
    assert m["fit_percent"] == pytest.approx(np.mean(fit))
    assert trajectory_errors(true, true)["fit_percent"] == pytest.approx(100.0)
    mean_pred = np.broadcast_to(true[:, 1:].reshape(-1, 2).mean(0), true.shape).copy()
    assert trajectory_errors(true, mean_pred)["fit_percent"] == pytest.approx(0.0, abs=1e-9)
    assert trajectory_errors(true, mean_pred)["nrmse"] == pytest.approx(1.0)


def test_rollout_metrics_exact_map_is_zero():
    pytest.importorskip("dynid.simulate")
    from dynid.systems import get_system

    sys_ = get_system("linear")
    M_sys = sys_.step_map(np.eye(2), DT, "euler").T
    x0 = np.random.default_rng(1).uniform(-1, 1, size=(5, 2))
    exact = rollout_metrics(linear(M_sys), sys_, x0, 30, DT, method="euler")
    assert exact["rmse"] < 1e-12 and exact["fit_percent"] == pytest.approx(100.0)
    off = rollout_metrics(linear(1.01 * M_sys), sys_, x0, 30, DT, method="euler")
    assert off["nrmse"] > 1e-3


def test_diverging_rollout_is_reported_not_raised():
    net = linear([[1e200, 0.0], [0.0, 1e200]])
    true = np.zeros((1, 5, 2)) + 1.0
    pred = rollout(net, true[:, 0], 4)
    m = trajectory_errors(true, pred)
    assert m["rmse"] == float("inf")
