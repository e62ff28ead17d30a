"""ReLUNet core: forward pass vs torch, composition identities, model-file round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynid import DynidError, ReLUNet, load_model, save_model
from dynid.errors import ModelFileError, ShapeError
from dynid.relunet import compose, difference, identity, linear, parallel, residual, stack
from tests.conftest import random_relunet


def test_abs_toy_by_hand():
    net = ReLUNet([[[1.0], [-1.0]], [[-1.0, -1.0]]], [[0, 0], [0]],
                  [[True, True], [False]])
    xs = np.linspace(-1, 1, 11)[:, None]
    assert np.allclose(net.forward(xs)[:, 0], -np.abs(xs[:, 0]))


def test_forward_matches_torch_module():
    rng = np.random.default_rng(0)
    net = random_relunet(rng, [3, 8, 7, 2], identity_frac=0.3)
    x = rng.normal(size=(50, 3))
    mod = net.to_torch()
    with torch.no_grad():
        ref = mod(torch.as_tensor(x)).numpy()
    assert np.abs(net.forward(x) - ref).max() < 1e-12
    back = ReLUNet.from_torch(mod)
    assert np.array_equal(back.forward(x), net.forward(x))


def test_from_torch_sequential():
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(2, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    net = ReLUNet.from_torch(seq)
    x = torch.randn(20, 2, dtype=torch.float64)
    with torch.no_grad():
        ref = seq.double()(x).numpy()
    assert np.abs(net.forward(x.numpy()) - ref).max() < 1e-12
    with pytest.raises(DynidError, match="Tanh"):
        ReLUNet.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh()))


def test_compose_stack_difference_residual_unroll():
    rng = np.random.default_rng(1)
    f = random_relunet(rng, [2, 6, 2], identity_frac=0.2)
    g = random_relunet(rng, [2, 4, 5, 2])
    x = rng.normal(size=(40, 2))
    assert np.allclose(compose(g, f).forward(x), g.forward(f.forward(x)))
    assert np.allclose(stack(f, g).forward(x), np.hstack([f.forward(x), g.forward(x)]))
    assert np.allclose(difference(f, g).forward(x), f.forward(x) - g.forward(x))
    assert np.allclose(residual(g, 0.1).forward(x), x + 0.1 * g.forward(x))
    y = x
    for _ in range(4):
        y = f.forward(y)
    assert np.allclose(f.unroll(4).forward(x), y)
    xy = rng.normal(size=(40, 4))
    assert np.allclose(parallel(f, g).forward(xy),
                       np.hstack([f.forward(xy[:, :2]), g.forward(xy[:, 2:])]))
    assert np.allclose(identity(2, 3).forward(x), x)
    assert np.allclose(linear([[1, 2], [3, 4]], [1, 1]).forward(x), x @ [[1, 3], [2, 4]] + 1)


def test_simplify_keeps_the_map_and_drops_dead_units():
    rng = np.random.default_rng(2)
    net = random_relunet(rng, [3, 10, 10, 2])
    ws = [w.copy() for w in net.weights]
    bs = [b.copy() for b in net.biases]
    ws[0][:3] = 0.0
    bs[0][:3] = [-1.0, 0.5, 2.0]      # one dead, two constant units
    ws[1][:, 5] = 0.0                 # no outgoing weight
    pruned = ReLUNet(ws, bs, net.relu)
    small = pruned.simplify()
    x = rng.normal(size=(100, 3))
    assert np.abs(small.forward(x) - pruned.forward(x)).max() < 1e-12
    assert small.widths[1] == 6


def test_bad_shapes_raise():
    with pytest.raises(ShapeError):
        ReLUNet([np.ones((2, 3)), np.ones((1, 3))], [np.zeros(2), np.zeros(1)])
    net = ReLUNet([np.ones((2, 3))], [np.zeros(2)])
    with pytest.raises(ShapeError, match="3 inputs"):
        net.forward(np.ones(2))
    with pytest.raises(ShapeError, match="NaN"):
        ReLUNet([np.array([[np.nan]])], [np.zeros(1)])


def test_model_file_round_trip_bit_exact(tmp_path):
    rng = np.random.default_rng(3)
    net = random_relunet(rng, [2, 16, 16, 2], identity_frac=0.25).with_meta(
        system="brusselator", dt=0.1, state_names=["x", "y"])
    path = save_model(tmp_path / "m.h5", net, training={"epochs": 3})
    back = load_model(path)
    for a, b in zip(net.weights + net.biases + net.relu, back.weights + back.biases + back.relu):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert back.meta["system"] == "brusselator" and back.meta["training"] == {"epochs": 3}
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind


def test_model_file_errors(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "missing.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(junk)
    rng = np.random.default_rng(4)
    good = save_model(tmp_path / "good.h5", random_relunet(rng, [2, 8, 2]))
    data = good.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        load_model(cut)
