"""Certified model error: the interval evaluator, the validated step maps, the net's interval
Jacobian and the branch-and-bound bound, each against an independent reference (exact
rational arithmetic, hand-derived Jacobians, scipy/CVODES integration, matrix exponentials,
sampling)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynid.errors import ConfigError, DynidError, ShapeError

ca = pytest.importorskip("casadi")


def feature_net(step, lo, hi, hidden=40, seed=0, n_fit=3000, meta=None):
    """A fixed least-squares surrogate: random ReLU features plus a linear skip (a ReLUNet
    [n, hidden + n, n_out]); ``step(X)`` is the map it fits (n = the box's dimension)."""
    from dynid.relunet import ReLUNet

    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    n = lo.size
    X = rng.uniform(lo, hi, size=(n_fit, n))
    Y = step(X)
    w1 = rng.normal(size=(hidden, n))
    w1 /= np.linalg.norm(w1, axis=1, keepdims=True)
    b1 = -np.sum(w1 * rng.uniform(lo, hi, size=(hidden, n)), axis=1)
    phi = np.hstack([np.maximum(X @ w1.T + b1, 0), X, np.ones((n_fit, 1))])
    coef = np.linalg.lstsq(phi, Y, rcond=None)[0]
    return ReLUNet([np.vstack([w1, np.eye(n)]), coef[:-1].T], [np.r_[b1, np.zeros(n)], coef[-1]],
                   [np.r_[np.ones(hidden, bool), np.zeros(n, bool)], np.zeros(Y.shape[1], bool)],
                   meta=meta)


def sampled_max(net, step, lo, hi, n, seed=1):
    X = np.random.default_rng(seed).uniform(lo, hi, (n, len(lo)))
    return np.abs(step(X) - net.forward(X)).max(axis=0)


# ---------------------------------------------------------------------- interval evaluator
UNARY = {
    "sin": (ca.sin, np.sin, None), "cos": (ca.cos, np.cos, None),
    "exp": (ca.exp, np.exp, (-5, 5)), "tanh": (ca.tanh, np.tanh, None),
    "sq": (lambda v: v ** 2, np.square, None), "neg": (lambda v: -v, np.negative, None),
    "sqrt": (ca.sqrt, np.sqrt, (0, 10)), "log": (ca.log, np.log, (1e-3, 10)),
    "atan": (ca.atan, np.arctan, None), "cube": (lambda v: v ** 3, lambda v: v ** 3, None),
    "pow2.5": (lambda v: v ** 2.5, lambda v: v ** 2.5, (0.1, 5)),
    "inv": (lambda v: 1 / v, np.reciprocal, (0.5, 4)), "fabs": (ca.fabs, np.abs, None),
    "cosh": (ca.cosh, np.cosh, (-3, 3)), "twice": (lambda v: 2 * v, lambda v: 2 * v, None),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(a=st.floats(-6, 6), w=st.sampled_from([0.0, 1e-8, 1e-6, 1e-2, 1.0, 5.0]))
@settings(max_examples=20)
def test_unary_enclosure_contains_samples(name, a, w):
    from dynid.intervals import IntervalFunction

    sym, num, dom = UNARY[name]
    if dom is not None:
        w = min(w, dom[1] - dom[0])
        a = float(np.clip(a, dom[0], dom[1] - w))
    x = ca.SX.sym("x")
    f = IntervalFunction(ca.Function("f", [x], [sym(x)]))
    (lo,), (hi,) = f([np.array([[a]])], [np.array([[a + w]])])
    pts = np.r_[a, a + w, np.linspace(a, a + w, 101)]
    vals = num(pts)
    assert lo[0, 0, 0] <= hi[0, 0, 0]
    tol = 1e-15 * (1 + np.abs(vals))      # the sampled values carry their own rounding
    assert np.all(vals >= lo[0, 0, 0] - tol) and np.all(vals <= hi[0, 0, 0] + tol)


@given(x=st.floats(-3, 3), y=st.floats(-3, 3), scale=st.sampled_from([1.0, 1e-6, 1e-8]))
def test_point_enclosure_contains_the_exact_rational_value(x, y, scale):
    """The enclosure at a float point contains the exact value (rational arithmetic)."""
    from dynid.intervals import IntervalFunction

    x, y = x * scale, y * scale
    z = ca.SX.sym("z", 2)
    expr = z[0] ** 2 * z[1] - 3.1 * z[0] + z[1] / 7.0 - (z[0] - z[1]) * (z[0] + 0.3)
    f = IntervalFunction(ca.Function("f", [z], [expr]))
    (lo,), (hi,) = f([np.array([[x, y]])], [np.array([[x, y]])])
    X, Y = Fraction(x), Fraction(y)
    exact = X * X * Y - Fraction(3.1) * X + Y / Fraction(7.0) - (X - Y) * (X + Fraction(0.3))
    assert Fraction(lo[0, 0, 0]) <= exact <= Fraction(hi[0, 0, 0])
    assert hi[0, 0, 0] - lo[0, 0, 0] <= 1e-13 * (1 + abs(float(exact)))


def test_binary_ops_and_jacobian_outputs_over_boxes():
    from dynid.intervals import IntervalFunction

    rng = np.random.default_rng(0)
    z = ca.SX.sym("z", 2)
    expr = ca.vertcat(z[0] * z[1], z[0] / (z[1] + 5), z[0] - z[1], z[0] ** z[1],
                      ca.fmin(z[0], z[1]), ca.fmax(z[0], z[1]) + ca.tan(0.3 * z[1]))
    fn = ca.Function("f", [z], [expr, ca.jacobian(expr, z)])
    f = IntervalFunction(fn)
    lo = np.array([[0.5, -1.0], [1.0, 0.2]])
    hi = np.array([[2.0, 1.5], [1.0 + 1e-7, 0.2 + 1e-7]])
    (v_lo, j_lo), (v_hi, j_hi) = f([lo], [hi])
    for b in range(2):
        pts = rng.uniform(lo[b], hi[b], (2000, 2))
        for p in pts:
            v, jac = (np.asarray(o) for o in fn(p))
            assert np.all(v.ravel() >= v_lo[b, :, 0] - 1e-12)
            assert np.all(v.ravel() <= v_hi[b, :, 0] + 1e-12)
            assert np.all(jac >= j_lo[b] - 1e-12) and np.all(jac <= j_hi[b] + 1e-12)


def test_domain_violation_is_unbounded_and_unknown_ops_are_refused():
    from dynid.intervals import IntervalFunction

    x = ca.SX.sym("x")
    f = IntervalFunction(ca.Function("f", [x], [1 / x + ca.sqrt(x)]))
    (lo,), (hi,) = f([np.array([[-1.0]])], [np.array([[1.0]])])
    assert lo[0, 0, 0] == -np.inf and hi[0, 0, 0] == np.inf
    with pytest.raises(ConfigError, match="floor"):
        IntervalFunction(ca.Function("g", [x], [ca.floor(x)]))
    with pytest.raises(ConfigError, match="SX"):
        m = ca.MX.sym("m")
        IntervalFunction(ca.Function("h", [m], [m * 2]))


def test_taylor_coefficients_of_known_solutions():
    from dynid.intervals import taylor_coefficients

    x = ca.SX.sym("x", 2)
    u = ca.SX.sym("u", 1)
    # harmonic oscillator with a constant force: x'' = -x + u
    f = ca.Function("f", [x, u], [ca.vertcat(x[1], -x[0] + u)])
    cs, xs, us = taylor_coefficients(f, 6)
    x0, v0, u0 = 0.7, -0.2, 0.3
    ev = ca.Function("cs", [xs, us], cs)
    vals = [np.asarray(v).ravel() for v in ev([x0, v0], [u0])]
    # exact: x(t) = u + (x0 - u) cos t + v0 sin t
    for k, v in enumerate(vals):
        d = [(x0 - u0) * math.cos(math.pi * k / 2) + v0 * math.sin(math.pi * k / 2),
             (x0 - u0) * math.cos(math.pi * (k + 1) / 2) + v0 * math.sin(math.pi * (k + 1) / 2)]
        ref = np.array(d) / math.factorial(k)
        if k == 0:
            ref = np.array([x0, v0])
        assert np.allclose(v, ref, atol=1e-14)


# ---------------------------------------------------------------------- validated step maps
@pytest.mark.parametrize("name,lo,hi,dt", [("brusselator", [1.8, 2.3], [2.2, 2.7], 0.05),
                                           ("pendulum", [-2.0, -3.0], [2.0, 3.0], 0.05)])
def test_flow_remainder_bounds_the_distance_to_the_exact_flow(name, lo, hi, dt):
    from dynid.bounds import grid_cells
    from dynid.systems import get_system
    from dynid.validated import TrueStepMap

    sys_ = get_system(name)
    F = TrueStepMap(sys_, dt, "flow")
    cells = grid_cells(lo, hi, 2)
    LO = np.array([c[0] for c in cells])
    HI = np.array([c[1] for c in cells])
    F.choose_substeps(LO, HI, 1e-9)
    (c_lo, c_hi), (j_lo, j_hi), rho = F.enclose(LO, HI)
    assert np.all(np.isfinite(rho)) and rho.max() <= 1e-9
    C = 0.5 * (LO + HI)
    ref = sys_.step_map(C, dt, integrator="scipy")          # DOP853 at rtol 1e-11
    assert np.all(ref >= c_lo - rho - 1e-8) and np.all(ref <= c_hi + rho + 1e-8)
    # the Jacobian enclosure contains central differences of the exact flow (to their error)
    rng = np.random.default_rng(0)
    for b in range(len(LO)):
        p = rng.uniform(LO[b], HI[b])
        jac = np.empty((2, 2))
        for j in range(2):
            e = np.zeros(2)
            e[j] = 1e-5
            jac[:, j] = (sys_.step_map(p + e, dt) - sys_.step_map(p - e, dt)) / 2e-5
        assert np.all(jac >= j_lo[b] - 1e-5) and np.all(jac <= j_hi[b] + 1e-5)


def test_euler_brusselator_jacobian_matches_the_hand_derived_range():
    """F(x, y) = (x + tau (a - (b + 1) x + x^2 y), y + tau (b x - x^2 y)) has
    dF/d(x, y) = [[1 - tau (b + 1) + 2 tau x y, tau x^2], [tau (b - 2 x y), 1 - tau x^2]];
    on a box in the positive quadrant every entry is monotone in x and y, so its range is
    attained at the corners, and the row sums of the entries' largest absolute values bound
    each output's inf-norm Lipschitz constant."""
    from dynid.systems import get_system
    from dynid.validated import TrueStepMap

    tau, a, b = 0.15, 1.0, 2.0
    lo, hi = np.array([2.0, 0.0]), np.array([4.0, 2.0])
    F = TrueStepMap(get_system("brusselator", a=a, b=b), tau, "euler")
    _, (j_lo, j_hi), rho = F.enclose(lo[None], hi[None])
    assert np.all(rho == 0)
    xy = [(lo[0] * lo[1]), (hi[0] * hi[1])]
    xx = [lo[0] ** 2, hi[0] ** 2]
    exact_lo = np.array([[1 - tau * (b + 1) + 2 * tau * xy[0], tau * xx[0]],
                         [tau * (b - 2 * xy[1]), 1 - tau * xx[1]]])
    exact_hi = np.array([[1 - tau * (b + 1) + 2 * tau * xy[1], tau * xx[1]],
                         [tau * (b - 2 * xy[0]), 1 - tau * xx[0]]])
    assert np.all(j_lo[0] <= exact_lo) and np.all(j_hi[0] >= exact_hi)
    assert np.allclose(j_lo[0], exact_lo, atol=1e-12) and np.allclose(j_hi[0], exact_hi,
                                                                      atol=1e-12)
    # L by hand: row 1 max |1 - .45 + .3 x y| + .15 x^2 = 1.75 + 2.4; row 2 max .15|2 - 2xy|
    # + |1 - .15 x^2| = .15 * 14 + 1.4
    L_hand = np.array([0.55 + 0.3 * 8 + 0.15 * 16, 0.15 * 14 + (0.15 * 16 - 1)])
    L = np.maximum(np.abs(j_lo[0]), np.abs(j_hi[0])).sum(axis=1)
    assert np.allclose(L, L_hand, atol=1e-9)


# ---------------------------------------------------------------------- net Jacobians
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1.0, 1e-6, 1e-8]),
       corner=st.booleans())
def test_interval_jacobian_contains_the_jacobian_at_sampled_points(seed, scale, corner):
    from tests.conftest import random_relunet

    from dynid.lipschitz import interval_jacobian, lipschitz_bound, norm_product_bound

    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [3, 8, 6, 2], identity_frac=0.2)
    c = rng.normal(size=3)
    r = scale * rng.uniform(0.1, 1.0, 3)
    lo, hi = c - r, c + r
    j_lo, j_hi = interval_jacobian(net, lo[None], hi[None])
    pts = rng.uniform(lo, hi, (300, 3))
    if corner:
        pts = np.where(rng.random((300, 3)) < 0.5, lo, hi)
    for p in pts:
        jac = net.jacobian(p)
        assert np.all(jac >= j_lo[0] - 1e-9) and np.all(jac <= j_hi[0] + 1e-9)
    L = lipschitz_bound(net, lo, hi)
    P, Q = rng.uniform(lo, hi, (500, 3)), rng.uniform(lo, hi, (500, 3))
    ratio = np.abs(net.forward(P) - net.forward(Q)) / np.abs(P - Q).max(axis=1)[:, None]
    assert np.all(ratio <= L * (1 + 1e-9) + 1e-9)
    assert L.max() <= norm_product_bound(net) * (1 + 1e-9) + 1e-9


# ---------------------------------------------------------------------- the bound
def _euler_brusselator():
    from dynid.systems import get_system

    sys_ = get_system("brusselator", a=1.0, b=2.0)
    lo, hi = np.array([2.0, 0.0]), np.array([4.0, 2.0])
    net = feature_net(lambda X: sys_.step_map(X, 0.15, "euler"), lo, hi, hidden=24)
    return sys_, net, lo, hi


def test_euler_brusselator_bound_holds_and_is_tight():
    from dynid.certify.model_error import model_error

    sys_, net, lo, hi = _euler_brusselator()
    res = model_error(net, sys_, lo, hi, dt=0.15, map="euler")
    seen = sampled_max(net, lambda X: sys_.step_map(X, 0.15, "euler"), lo, hi, 100_000)
    assert res.certified and res.label == "certified"
    assert np.all(res.e >= seen) and np.all(res.e <= 10 * seen)
    assert np.all(res.sampled <= res.e)
    d = res.to_dict()
    assert d["label"] == "certified" and d["valid_on"]["lo"] == lo.tolist()
    # the grid bound with per-cell (L_true + L_net) is sound too, and looser
    lip = model_error(net, sys_, lo, hi, dt=0.15, map="euler", slopes="lipschitz",
                      max_cells=20_000)
    assert np.all(lip.e >= seen)
    assert lip.info["cells"] >= res.info["cells"]


@pytest.mark.slow
def test_euler_brusselator_and_linear_on_a_million_points():
    from scipy.linalg import expm

    from dynid.certify.model_error import model_error
    from dynid.systems import linear_system

    sys_, net, lo, hi = _euler_brusselator()
    res = model_error(net, sys_, lo, hi, dt=0.15, map="euler", rtol=0.05)
    seen = sampled_max(net, lambda X: sys_.step_map(X, 0.15, "euler"), lo, hi, 1_000_000)
    assert np.all(res.e >= seen) and np.all(res.e <= 10 * seen)
    A, B, u = np.array([[0.0, 1.0], [-2.0, -0.5]]), np.array([[0.0], [1.0]]), np.array([0.7])
    lin = linear_system(A, B, u=u)
    Ad = expm(A * 0.2)
    bd = np.linalg.solve(A, (Ad - np.eye(2)) @ B @ u)
    exact = lambda X: X @ Ad.T + bd          # noqa: E731
    lo2, hi2 = np.array([-2.0, -2.0]), np.array([2.0, 2.0])
    net2 = feature_net(lambda X: exact(X) + 0.01 * np.sin(3 * X), lo2, hi2, hidden=30, seed=3)
    res2 = model_error(net2, lin, lo2, hi2, dt=0.2, map="flow", rtol=0.05)
    seen2 = sampled_max(net2, exact, lo2, hi2, 1_000_000)
    assert np.all(res2.e >= seen2) and np.all(res2.e <= 10 * seen2)


def test_linear_system_flow_bound_against_the_matrix_exponential():
    from scipy.linalg import expm

    from dynid.certify.model_error import model_error
    from dynid.systems import linear_system

    A, B, u = np.array([[0.0, 1.0], [-2.0, -0.5]]), np.array([[0.0], [1.0]]), np.array([0.7])
    lin = linear_system(A, B, u=u)
    Ad = expm(A * 0.2)
    bd = np.linalg.solve(A, (Ad - np.eye(2)) @ B @ u)          # integral of e^{As} B u
    exact = lambda X: X @ Ad.T + bd          # noqa: E731
    lo, hi = np.array([-2.0, -2.0]), np.array([2.0, 2.0])
    # fitted to a perturbed map, so that it is not exact (its linear skip would be)
    net = feature_net(lambda X: exact(X) + 0.01 * np.sin(3 * X), lo, hi, hidden=30, seed=3)
    res = model_error(net, lin, lo, hi, dt=0.2, map="flow")
    seen = sampled_max(net, exact, lo, hi, 100_000)
    assert res.certified
    assert np.all(res.e >= seen) and np.all(res.e <= 10 * seen)


@pytest.mark.parametrize("name,lo,hi,dt", [("brusselator", [1.8, 2.3], [2.2, 2.7], 0.1),
                                           ("pendulum", [-1.0, -1.5], [1.0, 1.5], 0.1)])
def test_flow_bound_holds_against_sampled_flow(name, lo, hi, dt):
    from dynid.certify.model_error import model_error
    from dynid.systems import get_system

    sys_ = get_system(name)
    lo, hi = np.array(lo), np.array(hi)
    net = feature_net(lambda X: sys_.step_map(X, dt), lo, hi, hidden=30, seed=1, n_fit=1500)
    res = model_error(net, sys_, lo, hi, dt=dt, map="flow", rtol=0.5)
    seen = sampled_max(net, lambda X: sys_.step_map(X, dt), lo, hi, 20_000)
    assert res.certified and np.all(res.e >= seen)
    assert res.info["flow_substeps"] >= 1


def test_budget_stop_keeps_a_valid_bound():
    from dynid.certify.model_error import model_error

    sys_, net, lo, hi = _euler_brusselator()
    res = model_error(net, sys_, lo, hi, dt=0.15, map="euler", rtol=1e-7, atol=1e-12,
                      max_cells=80, initial=8)
    seen = sampled_max(net, lambda X: sys_.step_map(X, 0.15, "euler"), lo, hi, 50_000)
    assert res.info["stop"] == "cell budget spent" and res.certified
    assert np.all(res.e >= seen)


def test_empirical_bound_is_labelled_everywhere():
    from dynid.certify.model_error import EMPIRICAL_LABEL, model_error, scenario_epsilon

    sys_, net, lo, hi = _euler_brusselator()
    res = model_error(net, sys_, lo, hi, dt=0.15, map="euler", method="empirical",
                      samples=5000, beta=1e-3)
    assert res.label == EMPIRICAL_LABEL and not res.certified
    assert res.status.value == "unknown"
    assert EMPIRICAL_LABEL in res.summary() and res.to_dict()["label"] == EMPIRICAL_LABEL
    eps = res.info["violation_probability"]
    # d = 2 decision variables: sum_{i<2} C(N,i) eps^i (1-eps)^(N-i) = beta
    N = 5000
    assert math.isclose((1 - eps) ** N + N * eps * (1 - eps) ** (N - 1), 1e-3, rel_tol=1e-6)
    assert math.isclose(scenario_epsilon(N, 1, 1e-3), 1 - 1e-3 ** (1 / N), rel_tol=1e-9)
    X = np.random.default_rng(5).uniform(lo, hi, (300, 2))
    res2 = model_error(net, None, lo, hi, method="empirical",
                       data=(X, sys_.step_map(X, 0.15, "euler")))
    assert res2.label == EMPIRICAL_LABEL and res2.info["samples"] == 300


def test_bad_inputs_are_one_clear_error():
    from dynid.certify.model_error import model_error
    from dynid.systems import System, linear_system

    sys_, net, lo, hi = _euler_brusselator()
    with pytest.raises(ConfigError, match="dt"):
        model_error(net, sys_, lo, hi, dt=-0.1, map="euler")
    with pytest.raises(ShapeError):
        model_error(net, sys_, [0.0], [1.0], dt=0.1, map="euler")
    with pytest.raises(ShapeError, match="no inputs"):
        model_error(net, sys_, lo, hi, [0.0], [1.0], dt=0.1, map="euler")
    with pytest.raises(ConfigError, match="rtol"):
        model_error(net, sys_, lo, hi, dt=0.1, map="euler", rtol=float("nan"))
    with pytest.raises(ShapeError, match="states"):
        model_error(net, linear_system(np.eye(3)), np.zeros(3), np.ones(3), dt=0.1)
    py = System.from_python("py", lambda x, p: -x, ["a", "b"])
    with pytest.raises(ConfigError, match="empirical"):
        model_error(net, py, lo, hi, dt=0.1, map="euler")
    with pytest.raises(DynidError, match="method"):
        model_error(net, sys_, lo, hi, dt=0.1, method="guess")
    for kw, match in (({"max_cells": 2.5}, "max_cells"), ({"time_limit": "60"}, "time_limit"),
                      ({"atol": 0.0}, "atol")):
        with pytest.raises(ConfigError, match=match):
            model_error(net, sys_, lo, hi, dt=0.1, map="euler", **kw)
    with pytest.raises(ConfigError, match="beta"):
        model_error(net, sys_, lo, hi, dt=0.1, map="euler", method="empirical", beta=1.5)


def test_cli_certify_model_error(tmp_path, capsys):
    import json

    from dynid.cli import main
    from dynid.modelfile import save_model

    sys_, net, lo, hi = _euler_brusselator()
    path = tmp_path / "m.h5"
    save_model(path, net.with_meta(system="brusselator", params={"a": 1.0, "b": 2.0},
                                   dt=0.15, map="euler", domain={"lo": lo.tolist(),
                                                                 "hi": hi.tolist()}))
    assert main(["certify", "model-error", str(path), "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "[certified]" in out and "valid on states lo = [2, 0], hi = [4, 2]" in out
    d = json.loads((tmp_path / "e.json").read_text())
    assert d["status"] == "certified" and d["label"] == "certified" and len(d["e"]) == 2
    assert main(["certify", "model-error", str(path), "--empirical", "--samples", "500",
                 "--json", "-"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["label"] == "empirical, not certified"
    assert "empirical, not certified" in cap.err and "NOT a bound" in cap.err
    from tests.test_cli_errors import run_cli

    for bad in (["--rtol", "-1"], ["--max-cells", "0"], ["--dt", "nan"], ["--beta", "2"],
                ["--samples", "1.5"], ["--time-limit", "inf"], ["--u-lo", "x"]):
        rc, err = run_cli(["certify", "model-error", path, *bad], capsys)
        assert rc == 2 and len(err.splitlines()) == 1 and bad[0] in err, (bad, err)
    # the JSON output follows the central output rule: not the model itself, no silent replace
    assert run_cli(["certify", "model-error", path, "--json", path], capsys)[0] == 2
    rc, err = run_cli(["certify", "model-error", path, "--json", tmp_path / "e.json"], capsys)
    assert rc == 2 and "--overwrite" in err
    assert run_cli(["certify", "model-error", path, "--data", "x.nc"], capsys)[0] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json", "m.h5"]


# ---------------------------------------------------------------------- plants with inputs
def _linear_plant_with_inputs():
    """x' = A x + B u (two states, one input held over dt = 0.2), its exact ZOH map from the
    matrix exponential of [[A, B], [0, 0]], and a fixed surrogate on [x; u]."""
    from scipy.linalg import expm

    from dynid.systems import linear_system

    A, B = np.array([[0.0, 1.0], [-2.0, -0.5]]), np.array([[0.0], [1.0]])
    plant = linear_system(A, B, inputs=True, input_box=([-1.0], [1.0]))
    M = expm(np.block([[A, B], [np.zeros((1, 3))]]) * 0.2)
    Ad, Bd = M[:2, :2], M[:2, 2:]
    exact = lambda Z: Z[:, :2] @ Ad.T + Z[:, 2:] @ Bd.T          # noqa: E731
    lo, hi = np.array([-2.0, -2.0, -1.0]), np.array([2.0, 2.0, 1.0])
    net = feature_net(lambda Z: exact(Z) + 0.01 * np.sin(3 * Z[:, :2] + Z[:, 2:]), lo, hi,
                      hidden=30, seed=3)
    return plant, net, exact, lo, hi


def test_linear_plant_with_inputs_against_the_exact_zoh_map():
    from dynid.certify.model_error import model_error

    plant, net, exact, lo, hi = _linear_plant_with_inputs()
    res = model_error(net, plant, lo[:2], hi[:2], lo[2:], hi[2:], dt=0.2, map="flow")
    seen = sampled_max(net, exact, lo, hi, 100_000)
    assert res.certified and np.all(res.e >= seen) and np.all(res.e <= 10 * seen)
    assert res.u_lo.tolist() == [-1.0] and res.to_dict()["valid_on"]["u_hi"] == [1.0]
    # the default input box is the system's declared one
    assert np.allclose(model_error(net, plant, lo[:2], hi[:2], dt=0.2, rtol=1.0).u_hi, [1.0])
    with pytest.raises(ShapeError, match="input box"):
        model_error(net, plant, lo[:2], hi[:2], [-1.0, 0.0], [1.0, 1.0], dt=0.2)


@pytest.mark.slow
def test_linear_plant_with_inputs_on_a_million_points():
    from dynid.certify.model_error import model_error

    plant, net, exact, lo, hi = _linear_plant_with_inputs()
    res = model_error(net, plant, lo[:2], hi[:2], lo[2:], hi[2:], dt=0.2, rtol=0.05)
    seen = sampled_max(net, exact, lo, hi, 1_000_000)
    assert np.all(res.e >= seen) and np.all(res.e <= 10 * seen)


def test_pendulum_torque_flow_bound_holds_against_sampled_flow():
    from dynid.certify.model_error import model_error
    from dynid.systems import get_system

    pend = get_system("pendulum_torque")
    step = lambda Z: pend.step_map(Z[:, :2], 0.05, "flow", u=Z[:, 2:])    # noqa: E731
    lo, hi = np.array([2.8, -1.0, -2.0]), np.array([3.5, 1.0, 2.0])
    net = feature_net(step, lo, hi, hidden=30, seed=4, n_fit=1500)
    res = model_error(net, pend, lo[:2], hi[:2], lo[2:], hi[2:], dt=0.05, map="flow", rtol=0.5)
    seen = sampled_max(net, step, lo, hi, 20_000)
    assert res.certified and np.all(res.e >= seen)


# ---------------------------------------------------------------------- tolerance scales
def _brusselator_euler_exact(X, dt, a=1.0, b=2.0):
    """The forward-Euler Brusselator map in exact rational arithmetic (rounded at the end)."""
    out = []
    for x, y in X:
        x, y, h = Fraction(x), Fraction(y), Fraction(dt)
        out.append([float(x + h * (a - (b + 1) * x + x * x * y)),
                    float(y + h * (b * x - x * x * y))])
    return np.array(out)


def _small_box_case(seed, scale, mapname, n_random=40):
    """A random net on a box of width ~ scale around a random point, its bound e and the
    error at the box's corners, face centres, centre and random points against an independent
    reference (Euler: exact rationals; flow: DOP853 at 1e-13)."""
    from scipy.integrate import solve_ivp

    from dynid.certify.model_error import model_error
    from dynid.systems import get_system
    from tests.conftest import random_relunet

    rng = np.random.default_rng(seed)
    sys_ = get_system("brusselator", a=1.0, b=2.0)
    net = random_relunet(rng, [2, 8, 8, 2], scale=0.8)
    c = rng.uniform([1.0, 1.0], [2.5, 2.5])
    r = scale * rng.uniform(0.2, 1.0, 2)
    lo, hi = c - r, c + r
    dt = 0.1
    res = model_error(net, sys_, lo, hi, dt=dt, map=mapname, rtol=0.5, time_limit=20.0,
                      initial=2)
    corners = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]])
    faces = np.array([[lo[0], c[1]], [hi[0], c[1]], [c[0], lo[1]], [c[0], hi[1]]])
    X = np.vstack([corners, faces, c[None], rng.uniform(lo, hi, (n_random, 2))])
    if mapname == "euler":
        truth = _brusselator_euler_exact(X, dt)
    else:
        def f(t, z):
            return [1.0 - 3.0 * z[0] + z[0] ** 2 * z[1], 2.0 * z[0] - z[0] ** 2 * z[1]]

        truth = np.array([solve_ivp(f, (0, dt), x, method="DOP853", rtol=1e-13,
                                    atol=1e-13).y[:, -1] for x in X])
    return res, np.abs(truth - net.forward(X)).max(axis=0)


@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1.0, 1e-6, 1e-8]))
@settings(max_examples=15, deadline=None)
def test_euler_bound_holds_on_small_boxes_at_corners_and_faces(seed, scale):
    """e >= the exact error at corners, faces and inside boxes of width 1, 1e-6 and 1e-8; on
    the tiny boxes e is the point error up to (L_true + L_net) * width."""
    res, seen = _small_box_case(seed, scale, "euler")
    assert res.certified and np.all(res.e >= seen)
    if scale < 1:
        assert np.all(res.e <= seen + 1e3 * scale + 1e-12)


@pytest.mark.parametrize("scale", [1e-6, 1e-8])
def test_flow_bound_holds_on_small_boxes_at_corners_and_faces(scale):
    res, seen = _small_box_case(7, scale, "flow", n_random=8)
    assert res.certified and np.all(res.e + 1e-11 >= seen)      # 1e-11: DOP853's own error
    assert np.all(res.e <= seen + 1e3 * scale + 1e-9)
