"""Plant surrogates on [x; u], training under recorded inputs and the identification metrics:
free runs against a hand loop, fit % / NRMSE by hand, the ARX baseline against the exact ZOH
discretisation, a trained surrogate on held-out experiments, rollout windows that respect
experiment ends."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import expm

from dynid.errors import ShapeError
from dynid.models import make_surrogate
from dynid.relunet import linear
from dynid.simulate import experiments
from dynid.sysid import (arx_fit, compare_figure, evaluate_experiments, evaluate_plant,
                         free_run)
from dynid.train import _windows, train
from tests.conftest import random_relunet


def test_free_run_is_the_hand_loop():
    rng = np.random.default_rng(0)
    net = random_relunet(rng, [3, 8, 2])
    x0 = rng.normal(size=(4, 2))
    u = rng.normal(size=(4, 6, 1))
    out = free_run(net, x0, u)
    for i in range(4):
        x = x0[i]
        for k in range(6):
            x = net.forward(np.concatenate([x, u[i, k]]))
            np.testing.assert_allclose(out[i, k + 1], x, atol=1e-14)
    with pytest.raises(ShapeError):
        free_run(net, x0, rng.normal(size=(4, 6, 2)))


def test_fit_percent_is_the_compare_convention():
    ds = experiments("mass_spring_damper", 3, 30, 0.1, seed=0)
    model = arx_fit(ds)
    r = evaluate_experiments(model, ds, steps=20, return_trajectories=True)
    y = r["measured"][:, 1:]
    yhat = r["simulated"][:, 1:]
    for s in range(2):
        a, b = y[..., s].ravel(), yhat[..., s].ravel()
        fit = 100 * (1 - np.linalg.norm(a - b) / np.linalg.norm(a - a.mean()))
        assert r["fit_percent_per_state"][s] == pytest.approx(fit, abs=1e-9)
        nrmse = np.sqrt(np.mean((a - b) ** 2)) / a.std()
        assert r["nrmse_per_state"][s] == pytest.approx(nrmse, rel=1e-9)
        a0, b0 = y[0, :, s], yhat[0, :, s]
        assert r["fit_percent_per_experiment"][0][s] == pytest.approx(
            100 * (1 - np.linalg.norm(a0 - b0) / np.linalg.norm(a0 - a0.mean())), abs=1e-9)
    assert r["steps"] == 20 and r["experiments"] == ["0", "1", "2"]
    assert len(compare_figure(r, max_experiments=2).axes) == 3 * 2


def test_arx_recovers_the_exact_discretisation():
    A = np.array([[0.0, 1.0], [-2.0, -0.5]])
    B = np.array([[0.0], [1.0]])
    ds = experiments("linear_input", 5, 40, 0.1, seed=1, signal="prbs",
                     signal_options={"hold": 3})
    net = arx_fit(ds)
    M = expm(np.block([[A, B], [np.zeros((1, 3))]]) * 0.1)
    np.testing.assert_allclose(net.weights[0], M[:2], atol=1e-7)
    np.testing.assert_allclose(net.biases[0], 0.0, atol=1e-7)
    r = evaluate_experiments(net, ds)
    assert min(r["fit_percent_per_state"]) > 99.999


def test_plant_surrogate_exports_x_plus_h_n_of_xu():
    rng = np.random.default_rng(2)
    X = rng.uniform(-1, 1, size=(200, 3))
    Y = X[:, :2] + 0.1 * np.stack([X[:, 1], -X[:, 0] + X[:, 2]], axis=1)
    for arch in ("mlp", "residual"):
        model = make_surrogate(arch, X, Y, hidden=(8,), h=0.1)
        net = model.to_relunet()
        assert net.n_in == 3 and net.n_out == 2
        with torch.no_grad():
            ref = model(torch.tensor(X)).numpy()
        np.testing.assert_allclose(net.forward(X), ref, atol=1e-12)
        if arch == "residual":   # the skip connection adds exactly x (inputs not carried)
            with torch.no_grad():
                inner = model.inner(torch.tensor(X)).numpy()
            np.testing.assert_allclose(net.forward(X), X[:, :2] + 0.1 * inner, atol=1e-12)
            assert net.widths == [3, 10, 2]


def test_trained_plant_on_heldout_experiments():
    data = experiments("mass_spring_damper", 24, 60, 0.1, seed=3, signal_options={"hold": (3, 10)})
    net, s = train(data, arch="residual", hidden=(32,), epochs=40, batch_size=64,
                   rollout_steps=3, val_fraction=0.25, progress=False, seed=0)
    meta = net.meta
    assert meta["input_names"] == ["F"] and meta["state_names"] == ["x", "v"]
    assert meta["input_box"] == {"lo": [-1.0], "hi": [1.0]}
    assert meta["domain"] == {"lo": [-2.0, -2.0], "hi": [2.0, 2.0]}     # the state box
    held = s["val_experiments"]
    assert len(held) == 6 and set(held) <= {str(i) for i in range(24)}
    r = evaluate_experiments(net, data, experiments=held)
    arx = evaluate_experiments(arx_fit(data), data, experiments=held)
    # a linear plant: the surrogate is good, the ARX model (exact here) is better still
    assert min(r["fit_percent_per_state"]) > 90 and min(arx["fit_percent_per_state"]) > 99.9
    res = evaluate_plant(net, data, steps=40, n_experiments=3, n_test=200)
    assert res["heldout"]["experiments"] == held and res["fresh"]["steps"] == 40
    assert res["one_step_rmse_test"] < 0.05 and res["heldout_arx"] is not None


def test_rollout_windows_stay_inside_experiments():
    x = np.arange(2 * 6 * 1, dtype=float).reshape(2, 6, 1)
    u = -x
    wx, wu = _windows(x, 2, np.array([6, 4]), u)
    assert wx.shape == (4 + 2, 3, 1) and wu.shape == (6, 2, 1)
    # second trajectory: only starts 0 and 1 fit inside its 4 samples
    np.testing.assert_array_equal(wx[4:, :, 0], [[6, 7, 8], [7, 8, 9]])
    np.testing.assert_array_equal(wu[:, :, 0], -wx[:, :2, 0])
    assert linear(np.eye(1)).n_in == 1
