"""Reachable sets: soundness against simulation, exactness on linear maps, engine nestings.

References are independent of the code under test: closed loops are simulated with the plant
equations and np.clip written here (not through the composed step network), linear maps have
analytic reachable boxes, and every engine is checked against sampled states.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynid.relunet import linear
from reach.engines import bound, list_engines
from reach.reachability import load_reach, reach, save_reach
from tests.conftest import random_relunet

HAVE_MIP = importlib.util.find_spec("dynid.certify.optimize") is not None
HAVE_SPLIT = importlib.util.find_spec("reach.splitting") is not None


def hand_simulate(A, B, ctrl_ws, ctrl_bs, u_lo, u_hi, x0, steps):
    """x+ = A x + B clip(pi(x)) with pi a plain ReLU MLP written out here."""
    xs = [x0]
    x = x0
    for _ in range(steps):
        h = x
        for i, (w, b) in enumerate(zip(ctrl_ws, ctrl_bs)):
            h = h @ w.T + b
            if i < len(ctrl_ws) - 1:
                h = np.maximum(h, 0.0)
        u = np.clip(h, u_lo, u_hi)
        x = x @ A.T + u @ B.T
        xs.append(x)
    return np.stack(xs, axis=1)


def random_loop(seed):
    from reach.closed_loop import linear_plant_loop

    rng = np.random.default_rng(seed)
    ctrl = random_relunet(rng, [2, 6, 1])
    A = np.eye(2) + 0.3 * rng.normal(size=(2, 2))
    B = rng.normal(size=(2, 1))
    step = linear_plant_loop(A, B, ctrl, u_lo=-0.5, u_hi=0.5)
    return step, A, B, ctrl


def assert_contains(ds, traj, tol=1e-9):
    """Every state of every trajectory lies in the template hull of its step."""
    D = ds.directions.values
    proj = traj @ D.T  # (N, K+1, m)
    lo = ds.hull_lower.values[None]
    hi = ds.hull_upper.values[None]
    assert np.all(proj >= lo - tol * (1 + np.abs(lo))), "a simulated state is below a bound"
    assert np.all(proj <= hi + tol * (1 + np.abs(hi))), "a simulated state is above a bound"


@settings(max_examples=10)
@given(seed=st.integers(0, 10_000), method=st.sampled_from(["one-shot", "recursive", "hybrid"]),
       engine=st.sampled_from(["ibp", "crown", "lp-highs"]),
       template=st.sampled_from(["box", "octagon"]), parts=st.sampled_from([None, 2]))
def test_random_closed_loops_sound(seed, method, engine, template, parts):
    step, A, B, ctrl = random_loop(seed)
    rng = np.random.default_rng(seed + 1)
    lo = rng.normal(size=2)
    hi = lo + rng.uniform(0.05, 0.5, size=2)
    K = 3
    ds = reach(step, lo, hi, K, method=method, engine=engine, template=template,
               partitions=parts, window=2)
    x0 = np.vstack([lo + (hi - lo) * rng.random((2000, 2)),
                    [[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]]])
    traj = hand_simulate(A, B, ctrl.weights, ctrl.biases, -0.5, 0.5, x0, K)
    assert_contains(ds, traj)
    # the step network agrees with the hand-written simulation (the composition is right)
    from reach.falsify import simulate

    assert np.allclose(simulate(step, x0[:50], K), traj[:50], atol=1e-10)


@settings(max_examples=6)
@given(seed=st.integers(0, 10_000))
def test_engine_nesting(seed):
    """mip within lp-highs within crown within ibp, all containing the sampled outputs.

    lp-highs and crown use the same intermediate bounds (the nesting holds for equal bounds);
    crown is within ibp by construction (crown_output intersects with the IBP box)."""
    from dynid.bounds import crown_bounds

    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [2, 8, 8, 2]).unroll(2)
    lo = rng.normal(size=2) * 0.5
    hi = lo + rng.uniform(0.1, 1.0, size=2)
    C = np.vstack([np.eye(2), [[1.0, 1.0], [1.0, -1.0]]])
    B = crown_bounds(net, lo, hi)
    res = {"ibp": bound(net, lo, hi, C, engine="ibp"),
           "crown": bound(net, lo, hi, C, engine="crown", bounds=B),
           "lp-highs": bound(net, lo, hi, C, engine="lp-highs", bounds=B)}
    if HAVE_MIP:
        res["mip"] = bound(net, lo, hi, C, engine="mip")
    if HAVE_SPLIT:
        res["lp-splitting"] = bound(net, lo, hi, C, engine="lp-splitting", bounds=B,
                                    max_iter=200, polish_steps=0)
    x = lo + (hi - lo) * rng.random((20000, 2))
    y = net.forward(x) @ C.T
    s_lo, s_hi = y.min(axis=0), y.max(axis=0)
    for name, (l, u) in res.items():
        assert np.all(l <= s_lo + 1e-12) and np.all(u >= s_hi - 1e-12), name
    order = ["mip", "lp-highs", "crown", "ibp"]
    present = [o for o in order if o in res]
    for inner, outer in zip(present[:-1], present[1:]):
        # the MIP stops at a relative gap of 1e-6 and pads its best bound for the solver's
        # tolerances (dynid.milp.tolerances), so it may be looser than the LP's optimum by a few
        # 1e-6 relative; that is sound (containment of the samples is checked above at 1e-12)
        rel = 4e-6 if inner == "mip" else 1e-6
        tol = rel * (1 + np.abs(res[outer][1]))
        assert np.all(res[inner][1] <= res[outer][1] + tol), (inner, outer)
        assert np.all(res[inner][0] >= res[outer][0] - tol), (inner, outer)
    if HAVE_SPLIT:  # a dual bound of the same LP is never better than its optimum
        assert np.all(res["lp-splitting"][1] >= res["lp-highs"][1] - 1e-6)


@pytest.mark.parametrize("engine", ["crown", "lp-highs"])
def test_linear_map_one_shot_exact(engine):
    """For x+ = A x the exact box of step k is A^k mid +- |A^k| rad; octagon rows likewise."""
    A = np.array([[0.9, 0.4], [-0.3, 0.8]])
    lo, hi = np.array([1.0, -1.0]), np.array([2.0, 0.5])
    ds = reach(linear(A), lo, hi, 4, method="one-shot", engine=engine, template="octagon")
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    D = ds.directions.values
    for k in range(1, 5):
        Ak = np.linalg.matrix_power(A, k)
        exact_hi = D @ Ak @ mid + np.abs(D @ Ak) @ rad
        exact_lo = D @ Ak @ mid - np.abs(D @ Ak) @ rad
        assert np.allclose(ds.hull_upper.sel(step=k).values, exact_hi, atol=1e-6)
        assert np.allclose(ds.hull_lower.sel(step=k).values, exact_lo, atol=1e-6)


def test_linear_map_recursive_wrapping():
    """Recursive box propagation of a linear map gives radius |A|^k rad (the wrapping effect),
    hybrid with window 2 gives |A^2| applied twice."""
    A = np.array([[0.9, 0.4], [-0.3, 0.8]])
    lo, hi = np.array([1.0, -1.0]), np.array([2.0, 0.5])
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    rec = reach(linear(A), lo, hi, 4, method="recursive", engine="crown")
    hyb = reach(linear(A), lo, hi, 4, method="hybrid", window=2, engine="crown")
    r = rad.copy()
    for k in range(1, 5):
        r = np.abs(A) @ r
        w = rec.box_hi.sel(step=k).values - rec.box_lo.sel(step=k).values
        assert np.allclose(w, 2 * r, atol=1e-6)
    A2 = A @ A
    r4 = np.abs(A2) @ (np.abs(A2) @ rad)
    w4 = hyb.box_hi.sel(step=4).values - hyb.box_lo.sel(step=4).values
    assert np.allclose(w4, 2 * r4, atol=1e-6)
    assert np.allclose((hyb.box_hi.sel(step=4) + hyb.box_lo.sel(step=4)).values / 2,
                       np.linalg.matrix_power(A, 4) @ mid, atol=1e-6)


def test_partition_tighter_and_cells_cover():
    step, A, B, ctrl = random_loop(7)
    lo, hi = np.array([0.0, 0.0]), np.array([1.0, 1.0])
    one = reach(step, lo, hi, 3, engine="crown")
    many = reach(step, lo, hi, 3, engine="crown", partitions=3)
    assert many.sizes["cell"] == 9
    # cells tile X0: their volumes add up and they lie inside it
    vol = np.prod(many.cell_hi.values - many.cell_lo.values, axis=1).sum()
    assert np.isclose(vol, 1.0)
    assert np.all(many.cell_lo.values >= lo) and np.all(many.cell_hi.values <= hi)
    w1 = (one.box_hi - one.box_lo).sel(step=3).values
    w9 = (many.box_hi - many.box_lo).sel(step=3).values
    assert np.all(w9 <= w1 + 1e-9)


def test_netcdf_roundtrip(tmp_path):
    ds = reach(linear(0.5 * np.eye(2)), [0, 0], [1, 1], 2, engine="ibp", partitions=2)
    path = save_reach(ds, tmp_path / "r.nc")
    back = load_reach(path)
    assert np.array_equal(back.upper.values, ds.upper.values)
    assert back.attrs["engine"] == "ibp" and back.attrs["method"] == "one-shot"
    assert list(back.state.values) == ["x1", "x2"]


def test_bad_input_errors():
    from dynid.errors import DynidError

    net = linear(np.eye(2))
    with pytest.raises(DynidError, match="engine"):
        reach(net, [0, 0], [1, 1], 2, engine="nope")
    with pytest.raises(DynidError, match="method"):
        reach(net, [0, 0], [1, 1], 2, method="sideways")
    with pytest.raises(DynidError, match="empty"):
        reach(net, [1, 0], [0, 1], 2)
    with pytest.raises(DynidError, match="R\\^n"):
        reach(linear(np.ones((1, 2))), [0, 0], [1, 1], 2)
    with pytest.raises(DynidError, match="template"):
        reach(net, [0, 0], [1, 1], 2, template="star")
    with pytest.raises(DynidError):
        reach(net, [0, 0], [1, 1], 0)


def test_engines_registered():
    assert {"ibp", "crown", "lp-highs", "lp-splitting", "mip"} <= set(list_engines())


def test_double_integrator_sound_every_step(shared_benchmarks):
    """The published double integrator (Keras controller, saturation), X0 = [2.5, 3] x
    [-0.25, 0.25], 5 steps: every method's boxes contain every simulated state, and the
    sampled step-5 box matches the one stated in the benchmark README."""
    from reach.benchmarks import double_integrator

    b = double_integrator(shared_benchmarks)
    rng = np.random.default_rng(0)
    x0 = np.vstack([b.x0_lo + (b.x0_hi - b.x0_lo) * rng.random((20000, 2)),
                    [[2.5, -0.25], [2.5, 0.25], [3.0, -0.25], [3.0, 0.25]]])
    traj = hand_simulate(b.A, b.B, b.controller.weights, b.controller.biases, -1.0, 1.0,
                         x0, 5)
    s_lo, s_hi = traj[:, 5].min(axis=0), traj[:, 5].max(axis=0)
    assert np.allclose(s_lo, [0.011, -0.136], atol=2e-3)
    assert np.allclose(s_hi, [0.081, -0.049], atol=2e-3)
    runs = [dict(method="one-shot", engine="lp-highs"), dict(method="recursive", engine="crown"),
            dict(method="hybrid", engine="crown", window=2),
            dict(method="one-shot", engine="crown", partitions=2),
            dict(method="one-shot", engine="ibp")]
    if HAVE_MIP:
        runs.append(dict(method="one-shot", engine="mip"))
    for kw in runs:
        ds = reach(b.step_net, b.x0_lo, b.x0_hi, 5, **kw)
        assert_contains(ds, traj)


@settings(max_examples=6)
@given(seed=st.integers(0, 10_000), method=st.sampled_from(["one-shot", "recursive", "hybrid"]),
       template=st.sampled_from(["box", "octagon"]))
def test_batched_crown_cells_match_one_by_one(seed, method, template):
    """reach_cells (one batched CROWN pass for all cells) gives the bounds of reach_cell run
    cell by cell, and with partitions the sets still hold every simulated state."""
    from reach.reachability import _window, reach_cell, reach_cells
    from reach.templates import template_matrix

    step, A, B, ctrl = random_loop(seed)
    rng = np.random.default_rng(seed)
    LO = rng.uniform(-1, 0.5, (5, 2))
    HI = LO + rng.uniform(0.05, 0.5, (5, 2))
    D = template_matrix(template, 2)
    w = _window(method, 4, None)
    many = reach_cells(step, LO, HI, 4, D=D, window=w, engine="crown")
    for i in range(5):
        lo1, up1, _ = reach_cell(step, LO[i], HI[i], 4, D=D, window=w, engine="crown")
        assert np.allclose(many[i][0], lo1, rtol=1e-10, atol=1e-10)
        assert np.allclose(many[i][1], up1, rtol=1e-10, atol=1e-10)
    ds = reach(step, [-1, -1], [1, 1], 4, method=method, engine="crown", template=template,
               partitions=3)
    x0 = rng.uniform(-1, 1, (500, 2))
    traj = hand_simulate(A, B, ctrl.weights, ctrl.biases, -0.5, 0.5, x0, 4)
    assert_contains(ds, traj)
