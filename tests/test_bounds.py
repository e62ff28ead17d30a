"""IBP and CROWN bounds: soundness against sampling, nesting, exactness on affine maps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynid.bounds import (crown_bounds, crown_bounds_many, crown_output, crown_output_many,
                          interval_bounds)
from dynid.errors import ShapeError
from dynid.relunet import ReLUNet, linear
from tests.conftest import random_relunet


def _sample_box(rng, lo, hi, n):
    pts = rng.uniform(lo, hi, size=(n, lo.size))
    corners = np.array(np.meshgrid(*zip(lo, hi))).reshape(lo.size, -1).T
    return np.vstack([pts, corners])


@given(seed=st.integers(0, 10_000), depth=st.integers(1, 4), n_in=st.integers(1, 3),
       width=st.integers(1, 8), id_frac=st.sampled_from([0.0, 0.3]),
       radius=st.floats(0.01, 3.0))
def test_bounds_contain_sampled_preactivations(seed, depth, n_in, width, id_frac, radius):
    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [n_in] + [width] * depth + [2], identity_frac=id_frac)
    c = rng.normal(size=n_in)
    lo, hi = c - radius, c + radius
    xs = _sample_box(rng, lo, hi, 2000)
    zs = net.preactivations(xs)
    ibp = interval_bounds(net, lo, hi)
    cr = crown_bounds(net, lo, hi)
    for k, z in enumerate(zs):
        for b in (ibp, cr):
            assert np.all(z >= b.lower[k]) and np.all(z <= b.upper[k]), (b.method, k)
        # CROWN is intersected with IBP, so it is never looser
        assert np.all(cr.lower[k] >= ibp.lower[k]) and np.all(cr.upper[k] <= ibp.upper[k])
    C = rng.normal(size=(5, 2))
    lo_c, hi_c = crown_output(net, lo, hi, C)
    vals = net.forward(xs) @ C.T
    assert np.all(vals >= lo_c) and np.all(vals <= hi_c)


@given(seed=st.integers(0, 10_000), n_boxes=st.integers(1, 5))
def test_batched_crown_equals_one_box_at_a_time_and_is_sound(seed, n_boxes):
    """The batched pass over B boxes gives, box by box, the bounds of separate calls (the
    reference), and each contains the sampled values of its own box."""
    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [2, 6, 5, 3], identity_frac=0.3)
    relu_out = ReLUNet(net.weights, net.biases, [*net.relu[:-1], np.array([True, False, True])])
    LO = rng.uniform(-2, 1, (n_boxes, 2))
    HI = LO + rng.uniform(0.01, 1.5, (n_boxes, 2))
    C = rng.normal(size=(4, 3))
    for f in (net, relu_out):
        many = crown_bounds_many(f, LO, HI)
        o_lo, o_hi = crown_output_many(f, LO, HI, C)
        for i in range(n_boxes):
            one = crown_bounds(f, LO[i], HI[i])
            for k in range(f.n_layers):
                assert np.allclose(many[i].lower[k], one.lower[k], rtol=1e-12, atol=1e-12)
                assert np.allclose(many[i].upper[k], one.upper[k], rtol=1e-12, atol=1e-12)
            l1, u1 = crown_output(f, LO[i], HI[i], C)
            assert np.allclose(o_lo[i], l1, rtol=1e-12, atol=1e-12)
            assert np.allclose(o_hi[i], u1, rtol=1e-12, atol=1e-12)
            xs = _sample_box(rng, LO[i], HI[i], 500)
            v = f.forward(xs) @ C.T
            assert np.all(v >= o_lo[i]) and np.all(v <= o_hi[i])
    with pytest.raises(ShapeError):
        crown_bounds_many(net, LO, HI[:, :1])


def test_affine_network_bounds_are_exact():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 2))
    net = linear(A, [1.0, -1.0, 0.5])
    lo, hi = np.array([-1.0, 0.0]), np.array([2.0, 1.0])
    b = interval_bounds(net, lo, hi)
    corners = np.array([[x, y] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])])
    vals = net.forward(corners)
    assert np.allclose(b.lower[0], vals.min(0), atol=1e-9)
    assert np.allclose(b.upper[0], vals.max(0), atol=1e-9)


def test_crown_tighter_than_ibp_on_cancelling_network():
    # f(x) = relu(x) - relu(x) = 0 written with two hidden units: IBP gives [-1, 1] on [-1, 1],
    # while CROWN keeps the correlation and gives a much tighter range.
    net = ReLUNet([[[1.0], [1.0]], [[1.0, -1.0]]], [[0.0, 0.0], [0.0]])
    ibp = interval_bounds(net, [0.5], [1.0])
    cr = crown_bounds(net, [0.5], [1.0])
    # both units stable-active on [0.5, 1]: CROWN is exact (0), IBP is not
    assert abs(cr.upper[-1][0]) < 1e-8 and abs(cr.lower[-1][0]) < 1e-8
    assert ibp.upper[-1][0] > 0.4


def test_stability_sets():
    net = ReLUNet([[[1.0], [-1.0], [1.0]], [[1.0, 1.0, 1.0]]], [[2.0, -2.0, 0.0], [0.0]])
    b = crown_bounds(net, [-1.0], [1.0])
    assert b.active(0).tolist() == [True, False, False]
    assert b.inactive(0).tolist() == [False, True, False]
    assert b.unstable(0).tolist() == [False, False, True]
    assert b.n_unstable == 1


def test_float32_crown_is_still_sound():
    import torch

    rng = np.random.default_rng(5)
    net = random_relunet(rng, [2, 30, 30, 2])
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    b32 = crown_bounds(net, lo, hi, dtype=torch.float32)
    xs = _sample_box(rng, lo, hi, 5000)
    for z, l, u in zip(net.preactivations(xs), b32.lower, b32.upper):
        assert np.all(z >= l) and np.all(z <= u)


def test_bad_box():
    net = linear(np.eye(2))
    with pytest.raises(ShapeError, match="empty"):
        interval_bounds(net, [1.0, 0.0], [0.0, 1.0])
    with pytest.raises(ShapeError, match="2 lower"):
        crown_bounds(net, [0.0], [1.0])
    with pytest.raises(ShapeError, match="columns"):
        crown_output(net, [0, 0], [1, 1], np.ones((1, 3)))
