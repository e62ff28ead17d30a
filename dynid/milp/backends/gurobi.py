"""Gurobi backend through the matrix API (addMVar, addMConstr, addMQConstr, setMObjective).

A size-limited licence (pip's gurobipy: about 2000 variables / 2000 constraints) refuses larger
models with error 10010 at ``optimize()``; that becomes :class:`LicenceRefused`, which
``solve(..., solver="auto")`` turns into a fallback. Refused sizes are remembered so a later,
larger model skips the wasted build.
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

from dynid.errors import SolverError

from dynid.milp.solve import (BackendUnavailable, LicenceRefused, SolveResult, Throttle,
                              infinite_bound, lp_dual_bound, progress_line)

NAME = "gurobi"
_ENV = None
# (quadratic?, variables, constraints) of models the licence refused; the size-limited licence
# has lower limits for models with quadratic terms, so the two kinds are kept apart
_REFUSED: list[tuple[bool, int, int]] = []
_BIG = 1e99  # Gurobi reports "no bound" as +-1e100


def _env():
    """One quiet Gurobi environment per process (started once: the licence banner is silent)."""
    global _ENV
    if _ENV is None:
        import gurobipy as gp

        try:
            env = gp.Env(empty=True)
            env.setParam("OutputFlag", 0)
            env.start()
        except gp.GurobiError as exc:
            raise BackendUnavailable(f"no usable licence: {exc}") from None
        _ENV = env
    return _ENV


def _row_blocks(model):
    """Split ranged rows lo <= Ax <= hi into Gurobi's one-sided blocks (=, <, >)."""
    A = model.matrix()
    lo, hi = model.row_lo, model.row_hi
    eq = lo == hi
    le = ~eq & np.isfinite(hi)
    ge = ~eq & np.isfinite(lo)
    return [(mask, A[mask], sense, rhs[mask]) for mask, sense, rhs in
            ((eq, "=", lo), (le, "<", hi), (ge, ">", lo)) if mask.any()]


def gurobi_size(model) -> tuple[int, int]:
    """(variables, constraints) as Gurobi counts them (ranged rows become two)."""
    lo, hi = model.row_lo, model.row_hi
    eq = lo == hi
    n = int(np.count_nonzero(eq) + np.count_nonzero(~eq & np.isfinite(hi))
            + np.count_nonzero(~eq & np.isfinite(lo)))
    return model.n_vars, n + len(model.quad_rows)


def _quad_matrix(n, qi, qj, qv):
    return sp.csr_matrix((qv, (qi, qj)), shape=(n, n))


def _build(gp, GRB, model, env, time_limit, threads, mip_gap, mip_gap_abs, options):
    m = gp.Model(model.name, env=env)
    n = model.n_vars
    x = m.addMVar(n, lb=model.lb, ub=model.ub, vtype=model.vtype)
    blocks = [(mask, m.addMConstr(A, x, sense, rhs)) for mask, A, sense, rhs in
              _row_blocks(model)]
    for q in model.quad_rows:
        c = np.zeros(n)
        np.add.at(c, q.lin_idx, q.lin_coef)
        m.addMQConstr(_quad_matrix(n, q.qi, q.qj, q.qv), c, "<" if q.sense == "<=" else ">",
                      q.rhs, x, x, x)
    qi, qj, qv = model.objective_quad()
    Q = _quad_matrix(n, qi, qj, qv) if qv.size else None
    m.setMObjective(Q, model.objective_vector(), model.obj_constant,
                    x if Q is not None else None, x if Q is not None else None, x,
                    GRB.MAXIMIZE if model.sense == "max" else GRB.MINIMIZE)
    if not model.is_convex:
        m.Params.NonConvex = 2
    if time_limit is not None:
        m.Params.TimeLimit = time_limit
    if threads is not None:
        m.Params.Threads = threads
    m.Params.MIPGap = mip_gap
    if mip_gap_abs is not None:
        m.Params.MIPGapAbs = mip_gap_abs
    for key, value in options.items():
        try:
            m.setParam(key, value)
        except gp.GurobiError as exc:
            m.dispose()
            raise SolverError(f"gurobi parameter {key}={value!r} rejected ({exc}): see "
                              "the Gurobi parameter reference") from None
    start = model.start
    if start:
        s = np.full(n, GRB.UNDEFINED)
        s[list(start)] = list(start.values())
        x.Start = s
    return m, x, blocks


def _callback(GRB, throttle):
    def cb(m, where):
        if where == GRB.Callback.MIP or where == GRB.Callback.MIPSOL:
            what = GRB.Callback
            if where == GRB.Callback.MIP:
                inc, bnd = m.cbGet(what.MIP_OBJBST), m.cbGet(what.MIP_OBJBND)
                nodes = m.cbGet(what.MIP_NODCNT)
            else:
                inc, bnd = m.cbGet(what.MIPSOL_OBJBST), m.cbGet(what.MIPSOL_OBJBND)
                nodes = m.cbGet(what.MIPSOL_NODCNT)
            now = m.cbGet(what.RUNTIME)
            inc = None if abs(inc) >= _BIG else inc
            bnd = math.copysign(math.inf, bnd) if abs(bnd) >= _BIG else bnd
            throttle(progress_line(NAME, now, inc, bnd, nodes), now,
                     force=where == GRB.Callback.MIPSOL)
    return cb


def _value(v):
    return math.copysign(math.inf, v) if abs(v) >= _BIG else float(v)


def _read(GRB, m, x, model):
    """Map Gurobi's status and attributes to (status, objective, bound, x, message)."""
    st = m.Status
    has_sol = m.SolCount > 0
    objective = float(m.ObjVal) if has_sol else None
    xs = np.asarray(x.X, dtype=np.float64) if has_sol else None
    try:
        bound = _value(m.ObjBound)  # MIPs and nonconvex QPs
    except Exception:  # LP / convex QP: no ObjBound attribute; the optimum is the bound
        bound = objective if st == GRB.OPTIMAL else None
        if bound is not None and model.is_quadratic:
            # a barrier optimum is accurate to about BarConvTol (1e-8, relative): pad by more
            step = 1e-6 * (1.0 + abs(bound))
            bound = bound + step if model.sense == "max" else bound - step
    names = {GRB.OPTIMAL: "optimal", GRB.INFEASIBLE: "infeasible", GRB.UNBOUNDED: "unbounded",
             GRB.TIME_LIMIT: "time_limit", GRB.INTERRUPTED: "interrupted"}
    limits = {GRB.NODE_LIMIT: "node limit", GRB.ITERATION_LIMIT: "iteration limit",
              GRB.SOLUTION_LIMIT: "solution limit", GRB.WORK_LIMIT: "work limit",
              GRB.MEM_LIMIT: "memory limit", GRB.USER_OBJ_LIMIT: "objective limit"}
    message = ""
    if st in names:
        status = names[st]
    elif st in limits:
        status, message = "time_limit", f"gurobi stopped at its {limits[st]}"
    elif st == GRB.SUBOPTIMAL:
        status, message = "time_limit", "gurobi returned a sub-optimal solution (numerics)"
    else:
        status, message = "error", f"gurobi status {st} (numerical trouble)"
    if status == "time_limit" and st == GRB.TIME_LIMIT:
        message = "gurobi hit the time limit"
    if status in ("optimal",) and bound is None:
        bound = objective
    return status, objective, bound, xs, message


def solve(model, *, time_limit=None, threads=None, mip_gap=1e-4, mip_gap_abs=None, log=None,
          options=None) -> SolveResult:
    """Solve ``model`` with Gurobi; raises LicenceRefused on error 10010."""
    try:
        import gurobipy as gp
        from gurobipy import GRB
    except ImportError as exc:
        raise BackendUnavailable(f"gurobipy does not import ({exc})") from None
    size = gurobi_size(model)
    quad = model.is_quadratic
    if any(q == quad and size[0] >= v and size[1] >= c for q, v, c in _REFUSED):
        raise LicenceRefused(f"{size[0]} variables, {size[1]} constraints exceed the licence")
    env = _env()
    t0 = time.perf_counter()
    m, x, blocks = _build(gp, GRB, model, env, time_limit, threads, mip_gap, mip_gap_abs,
                  options or {})
    throttle = Throttle(log)
    try:
        if log is not None:
            log(f"gurobi: {model!r}")
        try:
            m.optimize(_callback(GRB, throttle) if log is not None else None)
        except gp.GurobiError as exc:
            if exc.errno == 10010:
                _REFUSED.append((quad, *size))
                raise LicenceRefused(str(exc)) from None
            return SolveResult("error", None, infinite_bound(model.sense), None, NAME,
                               time.perf_counter() - t0, f"gurobi error {exc.errno}: {exc}")
        if m.Status == GRB.INF_OR_UNBD:
            # presolve could not tell which: switch off dual reductions and ask again
            m.Params.DualReductions = 0
            if time_limit is not None:
                m.Params.TimeLimit = max(1e-3, time_limit - (time.perf_counter() - t0))
            m.optimize()
        status, objective, bound, xs, message = _read(GRB, m, x, model)
        if not model.is_mip and not model.is_quadratic and status in ("optimal", "time_limit"):
            safe = _safe_lp_bound(model, blocks)
            rigorous = math.isfinite(safe)
            if rigorous:
                bound = safe
        else:
            rigorous = False
        info = {"solver_status": int(m.Status), "nodes": _safe(m, "NodeCount"),
                "gurobi_size": size, "nonconvex": not model.is_convex}
        if rigorous:
            info["bound_kind"] = "lp-dual"
        if log is not None:
            throttle(progress_line(NAME, m.Runtime, objective, bound) + f"  [{status}]",
                     math.inf, force=True)
        return SolveResult(status, objective, bound, xs, NAME, time.perf_counter() - t0,
                           message, model.sense, info)
    finally:
        m.dispose()


def _safe_lp_bound(model, blocks) -> float:
    """Rigorous LP bound from the row duals (Pi) of every constraint block."""
    y = np.zeros(model.n_rows)
    try:
        for mask, constr in blocks:
            y[mask] += np.asarray(constr.Pi, dtype=np.float64)
    except Exception:  # no dual solution available (e.g. barrier without crossover, limit hit)
        return math.inf
    return lp_dual_bound(model, y)


def _safe(m, attr):
    try:
        return float(getattr(m, attr))
    except Exception:
        return None
