"""Surrogates: export to ReLUNet against the torch module and a hand-written forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dynid import load_model, save_model
from dynid.errors import ConfigError, ShapeError
from dynid.models import MLPSurrogate, ResidualSurrogate, make_surrogate


def _randomise(model, rng):
    """Random weights and non-trivial normalisation, so folding errors cannot hide."""
    n = model.n_state
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.as_tensor(rng.normal(size=tuple(p.shape)), dtype=p.dtype))
        model.x_mean.copy_(torch.as_tensor(rng.normal(size=n) * 3))
        model.x_std.copy_(torch.as_tensor(rng.uniform(0.1, 5, size=n)))
        model.out_mean.copy_(torch.as_tensor(rng.normal(size=n)))
        model.out_std.copy_(torch.as_tensor(rng.uniform(0.1, 5, size=n)))
    return model


def _hand_forward(model, x):
    """Independent numpy forward pass from the module's raw parameters and buffers."""
    lins = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    g = lambda t: t.detach().double().numpy()  # noqa: E731
    h = (x - g(model.x_mean)) / g(model.x_std)
    for i, lin in enumerate(lins):
        h = h @ g(lin.weight).T + g(lin.bias)
        if i < len(lins) - 1:
            h = np.maximum(h, 0.0)
    d = h * g(model.out_std) + g(model.out_mean)
    return x + model.h * d if isinstance(model, ResidualSurrogate) else d


@given(n=st.integers(1, 4), hidden=st.lists(st.integers(1, 12), min_size=1, max_size=3),
       seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(["mlp", "residual"]),
       h=st.floats(0.01, 2.0))
def test_relunet_export_matches_module(n, hidden, seed, kind, h):
    rng = np.random.default_rng(seed)
    model = (MLPSurrogate(n, hidden) if kind == "mlp" else ResidualSurrogate(n, hidden, h=h))
    _randomise(model, rng)
    x = rng.normal(size=(64, n)) * 4
    net = model.to_relunet()
    with torch.no_grad():
        ref = model(torch.as_tensor(x)).numpy()
    scale = 1.0 + np.abs(ref).max()
    assert np.abs(net.forward(x) - ref).max() < 1e-10 * scale
    assert np.abs(_hand_forward(model, x) - ref).max() < 1e-10 * scale
    assert net.n_in == n and net.n_out == n
    # residual export keeps the skip connection as identity units, not extra ReLUs
    assert net.n_relu == sum(hidden)


def test_model_file_round_trip_bit_exact(tmp_path):
    rng = np.random.default_rng(1)
    model = _randomise(ResidualSurrogate(2, (8, 8), h=0.1), rng)
    net = model.to_relunet({"system": "brusselator", "dt": 0.1})
    path = save_model(tmp_path / "m.h5", net)
    back = load_model(path)
    for a, b in zip(net.weights + net.biases, back.weights + back.biases):
        assert np.array_equal(a, b)
    assert all(np.array_equal(a, b) for a, b in zip(net.relu, back.relu))
    x = rng.normal(size=(100, 2))
    assert np.array_equal(net.forward(x), back.forward(x))
    assert back.meta["architecture"] == {"kind": "residual", "n_state": 2, "hidden": [8, 8],
                                         "h": 0.1}
    assert back.meta["normalisation"]["x_std"] == pytest.approx(
        model.x_std.numpy().tolist(), rel=0, abs=0)


def test_from_data_normalises_targets():
    rng = np.random.default_rng(2)
    X = rng.uniform([0, 0], [4, 5], size=(500, 2))
    Y = X + 0.1 * np.stack([1 - X[:, 0], X[:, 0] * X[:, 1]], axis=1)
    m = ResidualSurrogate.from_data(X, Y, (4,), h=0.1)
    t = m.target(torch.as_tensor(X), torch.as_tensor(Y)).numpy()
    assert np.allclose(t.mean(0), 0, atol=1e-10) and np.allclose(t.std(0), 1, atol=1e-10)
    m2 = MLPSurrogate.from_data(X, Y, (4,))
    t2 = m2.target(torch.as_tensor(X), torch.as_tensor(Y)).numpy()
    assert np.allclose(t2.std(0), 1, atol=1e-10)
    # a constant state must not produce a division by zero
    Xc = X.copy()
    Xc[:, 1] = 3.0
    assert np.isfinite(MLPSurrogate.from_data(Xc, Y, (4,)).x_std.numpy()).all()


def test_bad_arguments():
    with pytest.raises(ConfigError, match="hidden"):
        MLPSurrogate(2, (0,))
    with pytest.raises(ConfigError, match="architecture"):
        make_surrogate("no_such_arch", np.zeros((4, 2)), np.zeros((4, 2)))
    with pytest.raises(ShapeError):
        make_surrogate("mlp", np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ConfigError, match="positive"):
        ResidualSurrogate(2, (4,), h=0.0)
