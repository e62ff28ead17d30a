"""Encodings: fix the input and compare the MIP's output with the float64 forward pass."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dynid.bounds import crown_bounds, interval_bounds
from dynid.certify.encode import encode_relunet
from dynid.errors import ConfigError, ShapeError
from dynid.milp import SparseModel, solve
from dynid.relunet import ReLUNet, residual
from tests.conftest import random_relunet


def _solve_fixed(net, bounds, x, method, solver="highs"):
    """Encode over the box of ``bounds``, then pin the inputs to x and read the outputs."""
    m = SparseModel()
    enc = encode_relunet(m, net, bounds, method=method)
    m.set_bounds(enc.x, lb=x, ub=x)
    m.set_objective(enc.out, np.zeros(enc.out.size), sense="min")
    res = solve(m, solver=solver)
    assert res.status == "optimal"
    return res.x[enc.out], enc


@settings(max_examples=6)
@given(seed=st.integers(0, 10_000), method=st.sampled_from(["bigm", "naive"]),
       resid=st.booleans())
def test_fixed_input_matches_forward(seed, method, resid):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 4))
    inner = random_relunet(rng, [n, 6, 5, n], identity_frac=0.3)
    net = residual(inner, 0.5) if resid else inner
    lo, hi = -np.ones(n), np.ones(n)
    # CROWN on even seeds, interval arithmetic on odd ones: both must give a valid encoding
    b = interval_bounds(net, lo, hi)
    if seed % 2 == 0:
        b = crown_bounds(net, lo, hi).intersect(b)
    for x in rng.uniform(lo, hi, size=(3, n)):
        out, _ = _solve_fixed(net, b, x, method)
        np.testing.assert_allclose(out, net.forward(x), atol=1e-6)


def test_tiny_box_encoding_matches_forward_gurobi():
    rng = np.random.default_rng(3)
    net = residual(random_relunet(rng, [3, 8, 3], identity_frac=0.25), 0.3)
    x = rng.uniform(-1, 1, 3)
    b = interval_bounds(net, x - 1e-9, x + 1e-9)
    out, enc = _solve_fixed(net, b, x, "bigm", solver="auto")
    np.testing.assert_allclose(out, net.forward(x), atol=1e-6)
    # on a tiny box every unit is stable: no binaries at all
    assert enc.n_binaries == b.n_unstable == 0


def test_binary_counts():
    rng = np.random.default_rng(1)
    net = random_relunet(rng, [2, 10, 10, 2], identity_frac=0.2)
    b = interval_bounds(net, -np.ones(2), np.ones(2))
    m1, m2 = SparseModel(), SparseModel()
    assert encode_relunet(m1, net, b).n_binaries == b.n_unstable
    assert encode_relunet(m2, net, b, method="naive").n_binaries == net.n_relu


def test_two_copies_share_nothing():
    net = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[-1.0, -1.0]])],
                  [np.zeros(2), np.zeros(1)])
    b = interval_bounds(net, [-1.0], [1.0])
    m = SparseModel()
    e1 = encode_relunet(m, net, b)
    e2 = encode_relunet(m, net, b)
    assert not set(e1.x) & set(e2.x) and not set(e1.out) & set(e2.out)
    m.set_bounds(e1.x, lb=[0.3], ub=[0.3])
    m.set_bounds(e2.x, lb=[-0.8], ub=[-0.8])
    m.set_objective(np.concatenate([e1.out, e2.out]), [1.0, 1.0], sense="min")
    res = solve(m, solver="highs")
    assert abs(res.x[e1.out][0] + 0.3) < 1e-7 and abs(res.x[e2.out][0] + 0.8) < 1e-7


def test_bad_input_raises():
    net = ReLUNet([np.eye(2)], [np.zeros(2)])
    b = interval_bounds(net, -np.ones(2), np.ones(2))
    with pytest.raises(ConfigError):
        encode_relunet(SparseModel(), net, b, method="tight")
    with pytest.raises(ShapeError):
        encode_relunet(SparseModel(), net, b, x_idx=[0])
