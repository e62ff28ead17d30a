"""Solver-neutral model and backends, checked against independent references: hand-worked LPs,
brute-force enumeration of binaries (each LP solved by scipy.optimize.linprog), corners of a
box for the nonconvex max ||x - y||^2, closed forms for L2 balls and projections."""

from __future__ import annotations

import importlib
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from dynid.errors import DynidError, ShapeError, SolverError
from dynid.milp import SparseModel, available_solvers, solve

solve_module = importlib.import_module("dynid.milp.solve")

AVAILABLE = available_solvers()


def _solver_params(names):
    return [pytest.param(s, marks=pytest.mark.skipif(s not in AVAILABLE,
                                                     reason=f"{s} not installed"))
            for s in names]


ALL = _solver_params(["gurobi", "highs", "scip"])
QUAD = _solver_params(["gurobi", "scip"])
TOL = 1e-5


def _feasible(model, r, tol=1e-5):
    assert r.x is not None
    assert model.violation(r.x) <= tol
    assert abs(model.objective_value(r.x) - r.objective) <= tol * (1 + abs(r.objective))


# ------------------------------------------------------------------ hand-worked problems
@pytest.mark.parametrize("solver", ALL)
def test_lp_vertex_worked_by_hand(solver):
    # max x + y + 1  s.t. x + 2y <= 4, 3x + y <= 6, x, y >= 0: the two rows meet at (1.6, 1.2)
    m = SparseModel()
    x = m.add_vars(2, lb=0.0)
    m.add_rows(x, [[1.0, 2.0], [3.0, 1.0]], hi=[4.0, 6.0])
    m.set_objective(x, [1.0, 1.0], "max", constant=1.0)
    r = solve(m, solver)
    assert r.status == "optimal" and r.solver == solver
    assert r.objective == pytest.approx(3.8, abs=1e-7)
    assert np.allclose(r.x, [1.6, 1.2], atol=1e-6)
    assert 3.8 - 1e-7 <= r.bound <= 3.8 + 1e-6


@pytest.mark.parametrize("solver", ALL)
def test_min_with_equality_and_ranged_rows(solver):
    # min 2a + 3b  s.t. a + b = 4, 1 <= a - b <= 2 (ranged), free variables: a = 3, b = 1
    m = SparseModel()
    v = m.add_vars(2)
    m.add_row(v, [1.0, 1.0], lo=4.0, hi=4.0)
    m.add_row(v, [1.0, -1.0], lo=1.0, hi=2.0)
    m.set_objective(v, [2.0, 3.0], "min")
    r = solve(m, solver)
    assert r.status == "optimal"
    assert r.objective == pytest.approx(9.0, abs=1e-7)
    assert r.bound <= 9.0 + 1e-7  # min: the bound is a lower bound
    assert np.allclose(r.x, [3.0, 1.0], atol=1e-6)


def _knapsack():
    w = np.array([5.0, 4.0, 6.0, 3.0, 7.0])
    p = np.array([10.0, 40.0, 30.0, 50.0, 35.0])
    return w, p, 10.0


@pytest.mark.parametrize("solver", ALL)
def test_knapsack_against_enumeration(solver):
    w, p, cap = _knapsack()
    best = max(float(p @ np.array(z)) for z in itertools.product([0, 1], repeat=5)
               if w @ np.array(z) <= cap)
    m = SparseModel()
    x = m.add_vars(5, vtype="B")
    m.add_row(x, w, hi=cap)
    m.set_objective(x, p, "max")
    r = solve(m, solver)
    assert r.status == "optimal"
    assert r.objective == pytest.approx(best)
    assert best - 1e-7 <= r.bound <= best * (1 + 2e-4)
    _feasible(m, r)


@pytest.mark.parametrize("solver", ALL)
def test_general_integer_and_mip_start(solver):
    # max 5a + 4b, 6a + 4b <= 24, a + 2b <= 6, a, b integer >= 0: enumerate
    best = max(5 * a + 4 * b for a in range(10) for b in range(10)
               if 6 * a + 4 * b <= 24 and a + 2 * b <= 6)
    m = SparseModel()
    x = m.add_vars(2, lb=0.0, ub=100.0, vtype="I")
    m.add_rows(x, [[6.0, 4.0], [1.0, 2.0]], hi=[24.0, 6.0])
    m.set_objective(x, [5.0, 4.0], "max")
    m.set_start(x, [0.0, 0.0])  # a feasible but poor start must not change the answer
    r = solve(m, solver)
    assert r.status == "optimal" and r.objective == pytest.approx(best)
    assert np.allclose(r.x, np.round(r.x), atol=1e-6)


# ------------------------------------------------------------------ random MILPs vs brute force
def _brute_force(c, A, lo, hi, lb, ub, nb, sense):
    """Optimum over the binaries by enumeration; each continuous part solved by linprog.
    Returns None when infeasible."""
    n = c.size
    best = None
    for z in itertools.product([0.0, 1.0], repeat=nb):
        bounds = [(v, v) for v in z] + list(zip(lb[nb:], ub[nb:]))
        A_ub = np.vstack([A, -A])
        b_ub = np.concatenate([hi, -lo])
        keep = np.isfinite(b_ub)
        res = linprog(-c if sense == "max" else c, A_ub=A_ub[keep], b_ub=b_ub[keep],
                      bounds=bounds, method="highs")
        if res.status == 0:
            val = -res.fun if sense == "max" else res.fun
            if best is None or (val > best if sense == "max" else val < best):
                best = val
        else:
            assert res.status == 2, res.message  # infeasible only; boxes keep it bounded
    assert n == len(bounds)
    return best


@st.composite
def random_milp(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    nb = draw(st.integers(1, 4))
    nc = draw(st.integers(1, 3))
    m = draw(st.integers(1, 4))
    n = nb + nc
    A = np.round(rng.normal(size=(m, n)) * 3) / 2
    A[rng.random((m, n)) < 0.3] = 0.0
    lb = np.r_[np.zeros(nb), -rng.uniform(0, 3, nc)]
    ub = np.r_[np.ones(nb), rng.uniform(0, 3, nc)]
    mid = A @ rng.uniform(lb, ub)  # rows around a random point: usually feasible
    width = rng.uniform(0, 2, m)
    lo, hi = mid - width, mid + width * rng.uniform(0, 1, m)
    one_sided = rng.random(m)
    lo[one_sided < 0.3] = -np.inf
    hi[(one_sided >= 0.3) & (one_sided < 0.5)] = np.inf
    lo = np.minimum(lo, hi)
    eq = rng.random(m) < 0.15
    lo[eq & np.isfinite(hi)] = hi[eq & np.isfinite(hi)]
    c = np.round(rng.normal(size=n) * 4) / 2
    sense = "max" if rng.random() < 0.5 else "min"
    return c, A, lo, hi, lb, ub, nb, sense


@settings(max_examples=20, deadline=None)
@given(random_milp())
def test_random_milps_all_backends_agree_with_brute_force(case):
    c, A, lo, hi, lb, ub, nb, sense = case
    ref = _brute_force(c, A, lo, hi, lb, ub, nb, sense)
    m = SparseModel()
    b = m.add_vars(nb, vtype="B")
    y = m.add_vars(c.size - nb, lb=lb[nb:], ub=ub[nb:])
    x = np.r_[b, y]
    m.add_rows(x, A, lo, hi)
    m.set_objective(x, c, sense)
    for solver in AVAILABLE:
        r = solve(m, solver, mip_gap=1e-9, mip_gap_abs=1e-9)
        if ref is None:
            assert r.status == "infeasible", (solver, r)
            continue
        assert r.status == "optimal", (solver, r)
        assert r.objective == pytest.approx(ref, abs=1e-5), solver
        # the bound is valid: on the right side of the true optimum (up to tolerance)
        if sense == "max":
            assert r.bound >= ref - 1e-6, solver
        else:
            assert r.bound <= ref + 1e-6, solver
        _feasible(m, r)


@settings(max_examples=60, deadline=None)
@given(random_milp(), st.sampled_from([1.0, 2.0 ** -20, 2.0 ** -27]))
def test_lp_branch_and_bound_holds_against_brute_force(case, scale):
    """The tolerance-free bound (float64 dual bounds at every node) on the right side of the
    enumerated optimum, at O(1) and at the 1e-6 / 1e-8 objective scales (powers of two, so the
    scaled reference is exact), and tight; its target is the optimum itself (most pruning)."""
    from dynid.milp.lp import branch_and_bound

    c, A, lo, hi, lb, ub, nb, sense = case
    # the reference at O(1), scaled after (linprog, like any LP solver, has absolute dual
    # tolerances: at the 1e-8 scale it stops at a wrong vertex)
    ref = _brute_force(c, A, lo, hi, lb, ub, nb, sense)
    ref = None if ref is None else ref * scale
    c = c * scale
    m = SparseModel()
    x = np.r_[m.add_vars(nb, vtype="B"), m.add_vars(c.size - nb, lb=lb[nb:], ub=ub[nb:])]
    m.add_rows(x, A, lo, hi)
    m.set_objective(x, c, sense, constant=0.25 * scale)
    got = branch_and_bound(m, 0.0 if ref is None else ref + 0.25 * scale,
                           max_nodes=2 ** (nb + 1))
    if ref is None:
        return          # an empty model: any answer (or none) bounds it
    assert got is not None
    ref += 0.25 * scale
    slack = 1e-9 * scale * (1 + abs(ref) / scale)    # linprog's own feasibility tolerance
    if sense == "max":
        assert ref - slack <= got <= ref + 1e-6 * scale * (1 + abs(ref) / scale)
    else:
        assert ref - 1e-6 * scale * (1 + abs(ref) / scale) <= got <= ref + slack


def test_lp_branch_and_bound_refuses_what_it_cannot_bound():
    from dynid.milp.lp import branch_and_bound

    m = SparseModel()
    x = m.add_vars(3, 0.0, 1.0, vtype="B")
    m.add_row(x, [1.0, 1.0, 1.0], hi=1.5)
    m.set_objective(x, [1.0, 2.0, 3.0], sense="max")
    assert branch_and_bound(m, 3.0, max_nodes=1) is None        # the LP root gives 4.0
    b = branch_and_bound(m, 3.0, max_nodes=16)
    assert 3.0 <= b < 3.0 + 1e-9
    n = SparseModel()
    y = n.add_vars(2, 0.0, 4.0, vtype="I")                       # integers, not binaries
    n.set_objective(y, [1.0, 1.0], sense="max")
    assert branch_and_bound(n, 8.0) is None
    q = SparseModel()
    z = q.add_vars(1, 0.0, 1.0, vtype="B")
    q.set_objective(quad=(z, z, [1.0]), sense="max")
    assert branch_and_bound(q, 1.0) is None


def test_padded_bound_verified_is_tighter_and_still_valid():
    """On a MIP whose rows are large (the pad's worst case over all rows is big) the verified
    bound replaces the pad and still lies on the right side of the enumerated optimum."""
    from dynid.milp import padded_bound

    rng = np.random.default_rng(5)
    m = SparseModel()
    t = m.add_vars(6, vtype="B")
    w = rng.uniform(1e3, 1e4, 6)
    m.add_row(t, w, hi=float(w.sum() / 2))
    p = rng.uniform(0, 1, 6)
    m.set_objective(t, p, sense="max")
    r = solve(m, "highs", tolerances="tight")
    best = max(float(p @ np.array(z)) for z in itertools.product([0, 1], repeat=6)
               if float(w @ np.array(z)) <= w.sum() / 2)
    plain, checked = padded_bound(m, r, verify=0), padded_bound(m, r)
    assert best <= checked <= plain
    assert checked - best < 1e-9 < plain - best


# ------------------------------------------------------------------ quadratic
def _max_dist_model(lo_x, hi_x, lo_y, hi_y):
    m = SparseModel()
    x = m.add_vars(lo_x.size, lo_x, hi_x)
    y = m.add_vars(lo_y.size, lo_y, hi_y)
    # ||x - y||^2 = x.x + y.y - 2 x.y
    d = lo_x.size
    qi = np.r_[x, y, x]
    qj = np.r_[x, y, y]
    qv = np.r_[np.ones(d), np.ones(d), -2 * np.ones(d)]
    m.set_objective(quad=(qi, qj, qv), sense="max")
    return m


@pytest.mark.parametrize("solver", QUAD)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 3))
def test_nonconvex_max_distance_optimum_at_a_corner(solver, seed, d):
    rng = np.random.default_rng(seed)
    lo_x, lo_y = rng.uniform(-2, 0, d), rng.uniform(-2, 0, d)
    hi_x, hi_y = lo_x + rng.uniform(0.1, 3, d), lo_y + rng.uniform(0.1, 3, d)
    # a convex function's max over a box is at a vertex: enumerate all corners of (x, y)
    corners = itertools.product(*[(a, b) for a, b in zip(np.r_[lo_x, lo_y], np.r_[hi_x, hi_y])])
    ref = max(float(np.sum((np.array(v[:d]) - np.array(v[d:])) ** 2)) for v in corners)
    m = _max_dist_model(lo_x, hi_x, lo_y, hi_y)
    assert not m.objective_convex
    r = solve(m, solver, mip_gap=1e-8)
    assert r.status == "optimal"
    assert r.objective == pytest.approx(ref, rel=1e-6, abs=1e-6)
    assert r.bound >= ref - 1e-6
    _feasible(m, r)


@pytest.mark.parametrize("solver", QUAD)
def test_l2_ball_constraint_closed_form(solver):
    # max c.v  s.t. ||v - p||_2 <= r  has optimum c.p + r ||c||
    c, p, rad = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.1, -1.0]), 1.7
    m = SparseModel()
    v = m.add_vars(3)
    m.add_l2_ball(v, rad, center=p)
    m.set_objective(v, c, "max")
    assert m.is_convex
    r = solve(m, solver)
    ref = c @ p + rad * np.linalg.norm(c)
    assert r.status == "optimal"
    assert r.objective == pytest.approx(ref, abs=1e-5)
    assert r.bound >= ref - 1e-6
    assert np.allclose(r.x, p + rad * c / np.linalg.norm(c), atol=1e-3)


@pytest.mark.parametrize("solver", QUAD)
def test_convex_min_distance_is_projection(solver):
    # min ||x - p||^2 over a box: the projection (clipping), value = squared distance
    p = np.array([2.0, -0.3, -5.0])
    lo, hi = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])
    m = SparseModel()
    x = m.add_vars(3, lo, hi)
    m.set_objective(x, -2 * p, "min", quad=(x, x, np.ones(3)), constant=float(p @ p))
    assert m.objective_convex
    r = solve(m, solver)
    proj = np.clip(p, lo, hi)
    assert r.status == "optimal"
    assert r.objective == pytest.approx(float(np.sum((p - proj) ** 2)), abs=1e-5)
    assert r.bound <= float(np.sum((p - proj) ** 2)) + 1e-6
    assert np.allclose(r.x, proj, atol=1e-3)


@pytest.mark.parametrize("solver", QUAD)
def test_nonconvex_quadratic_constraint(solver):
    # max x + y  s.t. x y <= 1 (nonconvex), 0 <= x, y <= 4: optimum 4 + 1/4 at a corner of
    # the hyperbola: (4, 1/4) or (1/4, 4)
    m = SparseModel()
    v = m.add_vars(2, 0.0, 4.0)
    m.add_quadratic_constraint(([v[0]], [v[1]], [1.0]), rhs=1.0)
    m.set_objective(v, [1.0, 1.0], "max")
    assert not m.is_convex
    r = solve(m, solver, mip_gap=1e-8)
    assert r.status == "optimal"
    assert r.objective == pytest.approx(4.25, abs=1e-5)
    _feasible(m, r, tol=1e-5)


def test_highs_refuses_quadratic_with_a_fix():
    m = _max_dist_model(np.zeros(1), np.ones(1), np.zeros(1), np.ones(1))
    with pytest.raises(SolverError, match="gurobi.*scip"):
        solve(m, "highs")


# ------------------------------------------------------------------ infeasible / unbounded
@pytest.mark.parametrize("solver", ALL)
@pytest.mark.parametrize("integer", [False, True])
def test_infeasible_detected(solver, integer):
    m = SparseModel()
    x = m.add_vars(2, lb=0.0, vtype="I" if integer else "C")
    m.add_row(x, [1.0, 1.0], hi=1.0)
    m.add_row(x, [1.0, -1.0], lo=2.0)  # x0 >= 2 + x1 >= 2 contradicts x0 + x1 <= 1
    m.set_objective(x, [1.0, 1.0], "max")
    r = solve(m, solver)
    assert r.status == "infeasible"
    assert r.objective is None and r.bound == -math.inf  # max over the empty set


@pytest.mark.parametrize("solver", ALL)
def test_parity_infeasible_with_free_objective(solver):
    # 2a = 1 with a integer has no solution; the objective direction is unbounded, so presolve
    # may answer "infeasible or unbounded": the backend must settle it as infeasible
    m = SparseModel()
    a = m.add_var(vtype="I")
    f = m.add_var()
    m.add_row([a], [2.0], lo=1.0, hi=1.0)
    m.set_objective([f], [1.0], "min")
    r = solve(m, solver)
    assert r.status == "infeasible"
    assert r.bound == math.inf  # min over the empty set


@pytest.mark.parametrize("solver", ALL)
@pytest.mark.parametrize("integer", [False, True])
def test_unbounded_detected(solver, integer):
    m = SparseModel()
    x = m.add_vars(2, lb=0.0, vtype="I" if integer else "C")
    m.add_row(x, [1.0, -1.0], hi=1.0)
    m.set_objective(x, [1.0, 1.0], "max")
    r = solve(m, solver)
    assert r.status == "unbounded"
    assert r.bound == math.inf and r.objective is None


# ------------------------------------------------------------------ limits
def _market_split(m_rows=4, seed=0):
    """Cornuejols-Dawande market split: famously hard for branch and bound at 40 binaries."""
    rng = np.random.default_rng(seed)
    n = 10 * m_rows
    a = rng.integers(0, 100, size=(m_rows, n)).astype(float)
    d = np.floor(a.sum(1) / 2)
    M = SparseModel()
    x = M.add_vars(n, vtype="B")
    s_plus = M.add_vars(m_rows, lb=0.0)
    s_minus = M.add_vars(m_rows, lb=0.0)
    M.add_rows(np.r_[x, s_plus, s_minus], np.hstack([a, np.eye(m_rows), -np.eye(m_rows)]),
               lo=d, hi=d)
    M.set_objective(np.r_[s_plus, s_minus], np.ones(2 * m_rows), "min")
    return M


@pytest.mark.parametrize("solver", ALL)
def test_time_limit_reported_with_valid_bound(solver):
    m = _market_split()
    r = solve(m, solver, time_limit=0.5)
    assert r.status == "time_limit"  # never called optimal
    assert r.seconds < 5.0
    if r.objective is not None:
        assert r.bound <= r.objective  # min: lower bound below the incumbent
        _feasible(m, r)
    assert r.gap >= 0.0


# ------------------------------------------------------------------ auto and the licence
@pytest.mark.skipif("gurobi" not in AVAILABLE, reason="gurobi not installed")
def test_auto_uses_gurobi_when_it_fits():
    w, p, cap = _knapsack()
    m = SparseModel()
    x = m.add_vars(5, vtype="B")
    m.add_row(x, w, hi=cap)
    m.set_objective(x, p, "max")
    r = solve(m)
    assert r.solver == "gurobi" and r.message == ""


def _big_lp(n=2100):
    # max sum k_i x_i, sum x <= 10.5, 0 <= x <= 1: greedy (fractional knapsack) optimum
    k = (np.arange(n) % 7).astype(float)
    m = SparseModel()
    x = m.add_vars(n, 0.0, 1.0)
    m.add_row(x, np.ones(n), hi=10.5)
    m.set_objective(x, k, "max")
    ref = float(np.sort(k)[::-1][:10].sum() + 0.5 * np.sort(k)[::-1][10])
    return m, ref


@pytest.mark.skipif("gurobi" not in AVAILABLE, reason="gurobi not installed")
def test_licence_fallback_linear_goes_to_highs():
    m, ref = _big_lp()
    r = solve(m, "auto")
    if r.solver == "gurobi":
        pytest.skip("this Gurobi licence is not size-limited")
    assert r.solver == "highs"
    assert "10010" in r.message and "highs" in r.message
    assert r.status == "optimal" and r.objective == pytest.approx(ref)


@pytest.mark.skipif(not {"gurobi", "scip"} <= set(AVAILABLE), reason="needs gurobi and scip")
def test_licence_fallback_quadratic_goes_to_scip():
    m, _ = _big_lp()
    x = np.arange(2100)
    # a quadratic term on two of the variables: max ... + (x0 - x1)^2, enumerate 4 corners
    m.set_objective(x, (x % 7).astype(float), "max",
                    quad=([0, 1, 0], [0, 1, 1], [1.0, 1.0, -2.0]))
    r = solve(m, "auto")
    if r.solver == "gurobi":
        pytest.skip("this Gurobi licence is not size-limited")
    assert r.solver == "scip"
    assert "10010" in r.message and "scip" in r.message
    assert r.status == "optimal"
    # x0 and x1 have weight 0 and 1; the (x0 - x1)^2 term is worth at most 1: the LP optimum
    # with x1 = 1, x0 = 0 is the greedy value with one slot taken by weight 1 (not in top 10.5
    # greedily), so compare against an enumeration of (x0, x1) corners with linprog
    best = -np.inf
    k = (x % 7).astype(float)
    for a, b in itertools.product([0.0, 1.0], repeat=2):
        bounds = [(a, a), (b, b)] + [(0.0, 1.0)] * 2098
        res = linprog(-k, A_ub=np.ones((1, 2100)), b_ub=[10.5], bounds=bounds, method="highs")
        if res.status == 0:
            best = max(best, -res.fun + (a - b) ** 2)
    assert r.objective == pytest.approx(best, abs=1e-6)
    assert r.bound >= best - 1e-6


def test_named_solver_not_installed_names_the_pip_extra(monkeypatch):
    monkeypatch.setattr(solve_module, "_importable", lambda name: name != "scip")
    m = SparseModel()
    m.add_vars(1, 0.0, 1.0)
    with pytest.raises(SolverError, match=r"pip install dynid\[scip\]"):
        solve(m, "scip")


def test_unknown_solver_and_bad_options():
    m = SparseModel()
    m.add_vars(1, 0.0, 1.0)
    with pytest.raises(SolverError, match="unknown solver"):
        solve(m, "cplex")
    with pytest.raises(SolverError, match="time_limit"):
        solve(m, "highs", time_limit=0)
    with pytest.raises(SolverError, match="threads"):
        solve(m, "highs", threads=0)


# ------------------------------------------------------------------ model building
def test_model_size_and_matrix():
    m = SparseModel()
    x = m.add_vars(3, 0.0, 1.0)
    b = m.add_vars(2, vtype="B", lb=-5, ub=5)  # binaries are clipped to [0, 1]
    m.add_rows(np.r_[x[:2], b[0]], [[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]], hi=[1.0, 0.0])
    m.add_row([x[2], x[2]], [1.0, 2.0], lo=-1.0)  # repeated index: coefficients add up
    m.add_l2_ball(x, 1.0)
    assert m.size() == {"variables": 5, "binaries": 2, "constraints": 4, "quadratic": True}
    assert np.array_equal(m.lb[3:], [0, 0]) and np.array_equal(m.ub[3:], [1, 1])
    dense = m.matrix().toarray()
    expected = np.zeros((3, 5))
    expected[0, [0, 3]] = [1.0, 2.0]
    expected[2, 2] = 3.0
    assert np.array_equal(dense, expected)


def test_sparse_input_matches_dense():
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    A = rng.normal(size=(4, 6)) * (rng.random((4, 6)) < 0.5)
    m1, m2 = SparseModel(), SparseModel()
    for m, AA in ((m1, A), (m2, sp.csr_matrix(A))):
        x = m.add_vars(6)
        m.add_rows(x[::-1], AA, lo=-1.0, hi=1.0)
    assert np.allclose(m1.matrix().toarray(), m2.matrix().toarray())
    assert np.allclose(m1.matrix().toarray()[:, ::-1], A)


@pytest.mark.parametrize("call, err", [
    (lambda m, x: m.add_vars(2, lb=[0.0, np.nan]), DynidError),
    (lambda m, x: m.add_vars(2, lb=1.0, ub=0.0), DynidError),
    (lambda m, x: m.add_vars(1, vtype="S"), DynidError),
    (lambda m, x: m.add_row([7], [1.0]), DynidError),
    (lambda m, x: m.add_rows(x, np.ones((1, 3))), ShapeError),
    (lambda m, x: m.add_row(x, [1.0, np.inf]), DynidError),
    (lambda m, x: m.add_row(x, [1.0, 1.0], lo=2.0, hi=1.0), DynidError),
    (lambda m, x: m.set_objective(x, [1.0, 1.0], sense="maximise"), DynidError),
    (lambda m, x: m.add_quadratic_constraint((x, x, [1.0]), rhs=1.0), ShapeError),
    (lambda m, x: m.add_l2_ball(x, -1.0), DynidError),
])
def test_bad_input_raises_one_line_dynid_error(call, err):
    m = SparseModel()
    x = m.add_vars(2)
    with pytest.raises(err) as info:
        call(m, x)
    assert isinstance(info.value, DynidError)
    assert "\n" not in str(info.value) and len(str(info.value)) > 10


@pytest.mark.parametrize("solver", ALL)
def test_log_receives_progress_lines(solver):
    lines = []
    m = _market_split(3, seed=1)
    r = solve(m, solver, time_limit=0.3, log=lines.append)
    assert r.status in ("time_limit", "optimal")
    assert len(lines) >= 2 and all(isinstance(s, str) for s in lines)
    assert lines[0].startswith(solver) and solver in lines[-1]
    assert any("incumbent" in s for s in lines)


# ------------------------------------------------------------------ rigorous LP bounds
def _random_lp(rng, sense, n=8, m=6):
    mdl = SparseModel()
    lb = -rng.uniform(0, 2, n)
    ub = rng.uniform(0, 2, n)
    x = mdl.add_vars(n, lb, ub)
    A = rng.normal(size=(m, n))
    lo = np.where(rng.random(m) < 0.5, -np.inf, -rng.uniform(0, 3, m))
    hi = rng.uniform(0, 3, m)
    mdl.add_rows(x, A, lo, hi)
    c = rng.normal(size=n)
    mdl.set_objective(x, c, sense, constant=float(rng.normal()))
    A_ub = np.vstack([A, -A])
    b_ub = np.r_[hi, -lo]
    keep = np.isfinite(b_ub)
    res = linprog(-c if sense == "max" else c, A_ub=A_ub[keep], b_ub=b_ub[keep],
                  bounds=list(zip(lb, ub)), method="highs")
    assert res.status == 0  # 0 is inside every row and the box, so it is feasible
    ref = (-res.fun if sense == "max" else res.fun) + mdl.obj_constant
    return mdl, ref


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), sense=st.sampled_from(["max", "min"]))
def test_lp_dual_bound_is_valid_for_any_multipliers(seed, sense):
    rng = np.random.default_rng(seed)
    mdl, ref = _random_lp(rng, sense)
    for scale in (0.0, 0.1, 1.0, 10.0):
        b = solve_module.lp_dual_bound(mdl, rng.normal(size=mdl.n_rows) * scale)
        assert (b >= ref - 1e-9) if sense == "max" else (b <= ref + 1e-9)


@pytest.mark.parametrize("solver", _solver_params(["gurobi", "highs"]))
@pytest.mark.parametrize("sense", ["max", "min"])
def test_lp_bound_is_tight_at_optimum_and_valid_under_a_limit(solver, sense):
    rng = np.random.default_rng(11)
    mdl, ref = _random_lp(rng, sense, n=60, m=40)
    r = solve(mdl, solver)
    assert r.status == "optimal" and r.objective == pytest.approx(ref, abs=1e-7)
    assert abs(r.bound - ref) <= 1e-6
    assert (r.bound >= ref) if sense == "max" else (r.bound <= ref)
    limit = {"gurobi": {"IterationLimit": 3}, "highs": {"simplex_iteration_limit": 3}}[solver]
    r = solve(mdl, solver, options=limit)
    assert r.status == "time_limit"
    assert (r.bound >= ref) if sense == "max" else (r.bound <= ref)


def test_lp_dual_bound_free_variable_gives_no_bound():
    m = SparseModel()
    x = m.add_vars(2)  # free
    m.add_row(x, [1.0, 1.0], hi=1.0)
    m.set_objective(x, [1.0, 0.5], "max")
    assert solve_module.lp_dual_bound(m, [0.0]) == math.inf
    # with the right multiplier (y = 1 kills x0's cost) x1 still has cost -0.5 and is free
    assert solve_module.lp_dual_bound(m, [1.0]) == math.inf


# ------------------------------------------------------------------ options, fallbacks, Ctrl-C
def _tiny():
    m = SparseModel()
    x = m.add_vars(2, 0.0, 1.0, vtype="B")
    m.add_row(x, [1.0, 1.0], hi=1.0)
    m.set_objective(x, [1.0, 2.0], "max")
    return m


@pytest.mark.parametrize("solver, bad", [("gurobi", {"NoSuchParam": 1}),
                                         ("highs", {"no_such_option": 1}),
                                         ("scip", {"no/such/param": 1})])
def test_unknown_solver_option_is_a_solver_error(solver, bad):
    if solver not in AVAILABLE:
        pytest.skip(f"{solver} not installed")
    with pytest.raises(SolverError, match="rejected"):
        solve(_tiny(), solver, options=bad)


def test_options_per_solver_and_flat_options_need_a_named_solver():
    with pytest.raises(SolverError, match="per solver"):
        solve(_tiny(), "auto", options={"FeasibilityTol": 1e-8})
    per = {"gurobi": {"FeasibilityTol": 1e-8}, "highs": {"mip_feasibility_tolerance": 1e-8},
           "scip": {"numerics/feastol": 1e-8}}
    r = solve(_tiny(), "auto", options=per)
    assert r.status == "optimal" and r.objective == pytest.approx(2.0)


@pytest.mark.skipif("gurobi" not in AVAILABLE, reason="gurobi not installed")
def test_auto_falls_back_when_gurobi_fails(monkeypatch):
    gurobi_backend = importlib.import_module("dynid.milp.backends.gurobi")

    def broken(model, **kw):
        return solve_module.SolveResult("error", None, math.inf, None, "gurobi", 0.0,
                                        "gurobi error 10005: simulated")
    monkeypatch.setattr(gurobi_backend, "solve", broken)
    r = solve(_tiny(), "auto")
    assert r.solver == "highs" and "gurobi failed" in r.message
    assert r.status == "optimal" and r.objective == pytest.approx(2.0)


_CTRL_C_SCRIPT = """
import json, os, signal, sys, threading
# a user's shell delivers Ctrl-C; the test runner's process may have left SIGINT ignored or
# blocked (both are inherited by this child), so restore what an interactive Python has
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
sys.path.insert(0, {root!r})
import numpy as np
from tests.test_milp import _market_split
from dynid.milp.solve import solve
m = _market_split(5, seed=2)
timer = threading.Timer(0.7, lambda: os.kill(os.getpid(), signal.SIGINT))
timer.start()
try:
    r = solve(m, {solver!r}, time_limit=30)
finally:
    timer.cancel()
print(json.dumps({{"status": r.status, "seconds": r.seconds, "objective": r.objective,
                  "bound": r.bound, "message": r.message}}))
"""


@pytest.mark.parametrize("solver", ALL)
def test_ctrl_c_gives_interrupted_with_the_incumbent(solver):
    """Ctrl-C (a real SIGINT) during a long solve gives 'interrupted' quickly, with a valid
    bound. It runs in a fresh interpreter: a signal is a per-process thing, and the state
    hundreds of earlier tests leave in this process (solver threads, pools) is not what a user's
    Ctrl-C meets."""
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", _CTRL_C_SCRIPT.format(root=root, solver=solver)],
                         capture_output=True, text=True, timeout=120, cwd=root)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert lines, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    r = json.loads(lines[-1])
    assert r["status"] == "interrupted", r
    assert r["seconds"] < 10
    if r["objective"] is not None:
        assert r["bound"] <= r["objective"]


def test_set_bounds_keeps_types_and_changes_the_answer():
    w, p, cap = _knapsack()
    m = SparseModel()
    x = m.add_vars(5, vtype="B")
    m.add_row(x, w, hi=cap)
    m.set_objective(x, p, "max")
    m.set_bounds(x[3:4], ub=0.0)  # forbid item 3: enumerate again without it
    best = max(float(p @ np.array(z)) for z in itertools.product([0, 1], repeat=5)
               if w @ np.array(z) <= cap and z[3] == 0)
    assert m.n_binaries == 5
    r = solve(m)
    assert r.status == "optimal" and r.objective == pytest.approx(best)
    assert m.violation(r.x) <= 1e-6
    z = np.zeros(5)
    z[3] = 1.0
    assert m.violation(z) == pytest.approx(1.0)  # the new upper bound is violated by 1


def test_empty_model_needs_no_solver():
    m = SparseModel()
    m.set_objective(constant=2.5, sense="min")
    r = solve(m)
    assert r.status == "optimal" and r.objective == 2.5 and r.bound <= 2.5


def test_self_check_agrees_with_references(tmp_path, monkeypatch):
    import json

    selfcheck = importlib.import_module("dynid.milp.__main__")
    # skip the 1 s time-limit rows to keep the test quick
    monkeypatch.setattr(selfcheck, "CASES", [c for c in selfcheck.CASES if c[3] is None])
    assert selfcheck.main(["--json", str(tmp_path / "check.json")]) == 0
    rows = json.loads((tmp_path / "check.json").read_text())
    assert rows and all(r["agrees"] for r in rows)


@pytest.mark.skipif(not {"gurobi", "scip"} <= set(AVAILABLE), reason="needs gurobi and scip")
def test_quadratic_refusal_does_not_block_linear_models_of_the_same_size():
    # the size-limited licence allows ~200 variables with quadratic terms, 2000 without
    n = 300
    q = SparseModel()
    v = q.add_vars(n, -1.0, 1.0)
    q.set_objective(quad=([v[0]], [v[0]], [1.0]), sense="max")  # max v0^2 = 1
    rq = solve(q)
    assert rq.status == "optimal" and rq.objective == pytest.approx(1.0)
    if rq.solver == "gurobi":
        pytest.skip("this Gurobi licence is not size-limited")
    assert rq.solver == "scip" and "10010" in rq.message
    lin = SparseModel()
    x = lin.add_vars(n + 10, 0.0, 1.0)
    lin.add_row(x, np.ones(n + 10), hi=3.0)
    lin.set_objective(x, np.ones(n + 10), "max")
    r = solve(lin)
    assert r.solver == "gurobi" and r.objective == pytest.approx(3.0)


@pytest.mark.skipif("highs" not in AVAILABLE, reason="highspy not installed")
def test_highs_ctrl_c_noticed_in_another_phase_is_interrupted(monkeypatch):
    """A Ctrl-C that HiGHS reports as another limit (under load it can land in the root LP and
    come back as an iteration or time limit) is still 'interrupted'; an unrequested limit stays
    'time_limit'."""
    highs_backend = importlib.import_module("dynid.milp.backends.highs")
    m = _market_split(5, seed=2)
    r = solve(m, "highs", time_limit=0.05)
    assert r.status == "time_limit"
    monkeypatch.setattr(highs_backend, "_cancelled", lambda h: True)
    r = solve(m, "highs", time_limit=0.05)
    assert r.status == "interrupted" and "Ctrl-C" in r.message
    if r.objective is not None:
        assert r.bound <= r.objective


def test_highs_prints_nothing_on_stdout(capfd):
    """Issue 17 item 8: HiGHS's banner and logs stay off the user's stdout, from the MIP path,
    the warm LP and the tolerance-free branch-and-bound alike (checked at the fd level)."""
    if "highs" not in AVAILABLE:
        pytest.fail("highspy is a dependency of dynid: it must be importable")
    from dynid.milp.lp import WarmLP, branch_and_bound

    m = SparseModel()
    x = m.add_vars(3, 0.0, 1.0, vtype="B")
    m.add_row(x, [1.0, 1.0, 1.0], hi=1.5)
    m.set_objective(x, [1.0, 2.0, 3.0], sense="max")
    capfd.readouterr()
    r = solve(m, "highs")
    WarmLP(m).maximize(np.eye(3))
    b = branch_and_bound(m, 3.0)
    out = capfd.readouterr().out
    assert r.status == "optimal" and 3.0 <= b < 3.0 + 1e-9
    assert out == "", out[:200]
