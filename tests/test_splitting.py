"""The splitting solver: closed-form projections against scipy, dual bounds against the exact
HiGHS LP optimum (valid at EVERY iteration count) and sampled network values, convergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.optimize import minimize

from dynid.bounds import crown_bounds, interval_bounds
from dynid.errors import ConfigError, DynidError, ShapeError
from dynid.relunet import ReLUNet
from reach.relaxation import triangle_lp_highs
from reach.splitting import SplittingSolver, _Affine, project_elementwise

from .conftest import random_relunet


def _scipy_projection(p, cons):
    res = minimize(lambda v: np.sum((v - p) ** 2), p, jac=lambda v: 2 * (v - p),
                   constraints=cons, method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
    return res.x


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_triangle_projection_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    lo, up = -rng.uniform(0.1, 3), rng.uniform(0.1, 3)
    p = rng.normal(size=2) * 3
    s = up / (up - lo)
    cons = [{"type": "ineq", "fun": lambda v: v[1]},                      # h >= 0
            {"type": "ineq", "fun": lambda v: v[1] - v[0]},               # h >= z
            {"type": "ineq", "fun": lambda v: s * (v[0] - lo) - v[1]}]    # h <= chord
    ref = _scipy_projection(p, cons)
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    a, h = project_elementwise(t([p[0]]), t([p[1]]), torch.tensor([lo]), torch.tensor([up]),
                               torch.tensor([False]), torch.tensor([False]), torch.tensor([True]))
    assert np.allclose([float(a), float(h)], ref, atol=1e-6)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 100_000), kind=st.sampled_from(["diag", "inactive"]))
def test_segment_projection_matches_scipy(seed, kind):
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-3, 1)
    up = lo + rng.uniform(0.1, 3)
    p = rng.normal(size=2) * 3
    eq = (lambda v: v[1] - v[0]) if kind == "diag" else (lambda v: v[1])
    cons = [{"type": "eq", "fun": eq}, {"type": "ineq", "fun": lambda v: v[0] - lo},
            {"type": "ineq", "fun": lambda v: up - v[0]}]
    ref = _scipy_projection(p, cons)
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    a, h = project_elementwise(t([p[0]]), t([p[1]]), torch.tensor([lo]), torch.tensor([up]),
                               torch.tensor([kind == "diag"]), torch.tensor([kind != "diag"]),
                               torch.tensor([False]))
    assert np.allclose([float(a), float(h)], ref, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4)])
def test_affine_projection_matches_scipy(shape):
    rng = np.random.default_rng(sum(shape))
    w, b = rng.normal(size=shape), rng.normal(size=shape[0])
    proj = _Affine(w, b, "cpu", torch.float64)
    for _ in range(3):
        y_hat, z_hat = rng.normal(size=shape[1]), rng.normal(size=shape[0])
        p = np.concatenate([y_hat, z_hat])
        cons = [{"type": "eq", "fun": lambda v: v[shape[1]:] - w @ v[:shape[1]] - b,
                 "jac": lambda v: np.hstack([-w, np.eye(shape[0])])}]
        ref = _scipy_projection(p, cons)
        y, z = proj.project(torch.tensor(y_hat)[None], torch.tensor(z_hat)[None])
        assert np.allclose(np.concatenate([y[0].numpy(), z[0].numpy()]), ref, atol=1e-6)


def _problem(seed, widths, bounds="crown", m=3):
    rng = np.random.default_rng(seed)
    net = random_relunet(rng, widths, identity_frac=0.15)
    lo = -rng.uniform(0.5, 1.5, size=widths[0])
    hi = rng.uniform(0.5, 1.5, size=widths[0])
    b = crown_bounds(net, lo, hi) if bounds == "crown" else interval_bounds(net, lo, hi)
    C = rng.normal(size=(m, widths[-1]))
    return rng, net, lo, hi, b, C


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 100_000), depth=st.integers(1, 3), width=st.integers(3, 10),
       bounds=st.sampled_from(["crown", "ibp"]), dtype=st.sampled_from(["float32", "float64"]))
def test_dual_bound_is_valid_at_every_iteration_count(seed, depth, width, bounds, dtype):
    rng, net, lo, hi, b, C = _problem(seed, [2] + [width] * depth + [2], bounds)
    ref_max = triangle_lp_highs(net, lo, hi, b, C, "max")
    ref_min = triangle_lp_highs(net, lo, hi, b, C, "min")
    x = rng.uniform(lo, hi, size=(3000, 2))
    vals = net(x) @ C.T
    solver = SplittingSolver(net, lo, hi, b, dtype=dtype)
    # ADMM alone, the polished layer dual alone (max_iter=0), and both
    for iters, steps in ((1, 0), (10, 0), (100, 0), (0, 1), (0, 10), (0, 100), (20, 30)):
        kw = dict(max_iter=iters, check_every=max(iters, 1), polish_steps=steps, polish_lr=0.05)
        up = solver.solve(C, "max", **kw)
        assert np.all(up.bound >= ref_max - 1e-9), (iters, steps, up.bound - ref_max)
        assert np.all(up.bound >= vals.max(axis=0))
        assert np.all(up.primal <= ref_max + 1e-6)          # primal is a feasible point
        low = solver.solve(C, "min", **kw)
        assert np.all(low.bound <= ref_min + 1e-9), (iters, steps, low.bound - ref_min)
        assert np.all(low.bound <= vals.min(axis=0))


@pytest.mark.parametrize("seed", [1, 3, 7])
def test_polished_dual_approaches_the_lp_optimum(seed):
    # the slope-parametrised layer dual is the LP dual: its optimum is the LP optimum
    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [2, 8, 8, 2], identity_frac=0.15)
    lo, hi = -rng.uniform(0.5, 1.5, size=2), rng.uniform(0.5, 1.5, size=2)
    b = crown_bounds(net, lo, hi)
    C = rng.normal(size=(3, 2))
    ref = triangle_lp_highs(net, lo, hi, b, C)
    unpolished = SplittingSolver(net, lo, hi, b, dtype="float64").solve(
        C, max_iter=0, polish_steps=0)
    res = SplittingSolver(net, lo, hi, b, dtype="float64").solve(C, max_iter=0,
                                                                 polish_steps=2000)
    assert np.all(res.bound >= ref - 1e-9)
    assert np.all(res.bound - ref <= 1e-3 * np.maximum(1.0, np.abs(ref)))
    assert np.all(res.bound <= unpolished.bound + 1e-12)


@pytest.mark.parametrize("seed", [1, pytest.param(0, marks=pytest.mark.slow),
                                  pytest.param(2, marks=pytest.mark.slow)])
def test_converges_to_the_lp_optimum(seed):
    _, net, lo, hi, b, C = _problem(seed, [2, 6, 6, 2])
    ref = triangle_lp_highs(net, lo, hi, b, C)
    res = SplittingSolver(net, lo, hi, b, dtype="float64").solve(C, tol=2e-5, max_iter=20000)
    assert np.all(res.bound >= ref - 1e-9)
    assert np.all(np.abs(res.bound - ref) <= 1e-4 * np.maximum(1.0, np.abs(ref)))
    # the certified gap (dual bound - feasible primal) closes to the same accuracy; the primal
    # recovery is the slower side (seed 2 ends at 1.5e-5 absolute after 20000 iterations)
    assert np.all(res.gap <= 1e-4 * np.maximum(1.0, np.abs(res.bound)))
    assert np.all(res.converged | (res.iterations == 20000))


def test_abs_value_network_analytic():
    # x -> |x| on [-1, 2]: the triangle relaxation with exact bounds gives max exactly 2
    net = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[1.0, 1.0]])], [np.zeros(2), np.zeros(1)])
    b = interval_bounds(net, [-1.0], [2.0])
    res = SplittingSolver(net, [-1.0], [2.0], b, dtype="float64").solve(
        np.array([[1.0], [-1.0]]), tol=1e-7, max_iter=20000)
    assert res.bound[0] >= 2.0 and res.bound[0] <= 2.0 + 1e-5
    # min |x| over the relaxation: the triangle lets h_1 + h_2 reach 0 only at x = 0 -> 0
    assert res.bound[1] >= -1e-5 and res.bound[1] >= 0.0 - 1e-5


def test_warm_start_resumes():
    _, net, lo, hi, b, C = _problem(3, [2, 8, 8, 2])
    solver = SplittingSolver(net, lo, hi, b, dtype="float64")
    first = solver.solve(C, max_iter=200, tol=1e-9)
    second = solver.solve(C, max_iter=200, tol=1e-9, warm_start=first.state)
    cold = solver.solve(C, max_iter=400, tol=1e-9)
    ref = triangle_lp_highs(net, lo, hi, b, C)
    assert np.all(second.bound >= ref - 1e-9)
    # resuming from 200 iterations for 200 more is about as good as 400 from scratch
    assert np.all(second.bound - ref <= 2 * (cold.bound - ref) + 1e-6)
    assert np.all(second.bound - ref <= first.bound - ref + 1e-12)


def test_bad_input_raises():
    _, net, lo, hi, b, C = _problem(4, [2, 4, 2])
    with pytest.raises(ConfigError):
        SplittingSolver(net, lo, hi, b, dtype="int32")
    with pytest.raises(ConfigError):
        SplittingSolver(net, lo, hi, b, alpha=2.5)
    solver = SplittingSolver(net, lo, hi, b)
    with pytest.raises(ShapeError):
        solver.solve(np.ones((2, 3)))
    with pytest.raises(DynidError):
        solver.solve(C, sense="up")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    _, net, lo, hi, b, C = _problem(5, [2, 8, 8, 2])
    cpu = SplittingSolver(net, lo, hi, b, dtype="float64").solve(C, max_iter=300, tol=0)
    gpu = SplittingSolver(net, lo, hi, b, dtype="float64", device="cuda").solve(
        C, max_iter=300, tol=0)
    assert np.allclose(cpu.bound, gpu.bound, rtol=1e-6, atol=1e-8)
