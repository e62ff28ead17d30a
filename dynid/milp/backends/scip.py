"""SCIP backend (pyscipopt, the optional ``dynid[scip]`` extra).

Built row by row from the CSR matrix. SCIP needs a linear objective, so a quadratic objective
becomes an epigraph variable ``t`` with ``t <= x'Qx`` (max) or ``t >= x'Qx`` (min); SCIP's
spatial branch-and-bound then solves the nonconvex case exactly. Single-threaded.
"""

from __future__ import annotations

import math
import time

import numpy as np

from dynid.errors import SolverError

from dynid.milp.solve import (BackendUnavailable, SolveResult, Throttle, infinite_bound,
                              progress_line)

NAME = "scip"
_VT = {"C": "C", "B": "B", "I": "I"}


def _linexpr(Expr, Term, xs, idx, coef):
    terms: dict = {}
    for j, c in zip(idx, coef):
        if c != 0.0:
            t = Term(xs[j])
            terms[t] = terms.get(t, 0.0) + float(c)
    return Expr(terms)


def _quadexpr(Expr, Term, xs, qi, qj, qv):
    terms: dict = {}
    for i, j, c in zip(qi, qj, qv):
        if c != 0.0:
            t = Term(xs[i], xs[j])  # Term sorts its variables, so (i, j) and (j, i) merge
            terms[t] = terms.get(t, 0.0) + float(c)
    return Expr(terms)


def _build(model, time_limit, mip_gap, mip_gap_abs, options, zero_objective=False):
    """Returns (scip model, variables, infeasible_reason or None)."""
    import pyscipopt
    from pyscipopt.scip import Expr, ExprCons, Term

    s = pyscipopt.Model(model.name)
    s.hideOutput()
    lb, ub, vt = model.lb, model.ub, model.vtype
    xs = [s.addVar(name=f"x{i}", vtype=_VT[vt[i]],
                   lb=None if lb[i] == -math.inf else float(lb[i]),
                   ub=None if ub[i] == math.inf else float(ub[i]))
          for i in range(model.n_vars)]
    A = model.matrix()
    lo, hi = model.row_lo, model.row_hi
    for r in range(model.n_rows):
        a, b = A.indptr[r], A.indptr[r + 1]
        if a == b:  # a row with no variables: 0 must lie in [lo, hi]
            if lo[r] > 1e-9 or hi[r] < -1e-9:
                return s, xs, f"row {r} has no variables but requires {lo[r]} <= 0 <= {hi[r]}"
            continue
        e = _linexpr(Expr, Term, xs, A.indices[a:b], A.data[a:b])
        s.addCons(ExprCons(e, lhs=None if lo[r] == -math.inf else float(lo[r]),
                           rhs=None if hi[r] == math.inf else float(hi[r])), name=f"r{r}")
    for k, q in enumerate(model.quad_rows):
        e = _linexpr(Expr, Term, xs, q.lin_idx, q.lin_coef) + _quadexpr(Expr, Term, xs, q.qi,
                                                                     q.qj, q.qv)
        s.addCons(e <= q.rhs if q.sense == "<=" else e >= q.rhs, name=f"q{k}")
    obj = Expr() if zero_objective else _linexpr(Expr, Term, xs, np.arange(model.n_vars),
                                                 model.objective_vector())
    qi, qj, qv = model.objective_quad()
    if qv.size and not zero_objective:
        t = s.addVar(name="_objective_epigraph", lb=None, ub=None)
        quad = _quadexpr(Expr, Term, xs, qi, qj, qv)
        s.addCons(t <= quad if model.sense == "max" else t >= quad, name="objective_epigraph")
        obj = obj + t
    const = 0.0 if zero_objective else model.obj_constant
    s.setObjective(obj, "maximize" if model.sense == "max" else "minimize")
    if const:
        s.addObjoffset(const)
    if time_limit is not None:
        s.setParam("limits/time", float(time_limit))
    s.setParam("limits/gap", float(mip_gap))
    if mip_gap_abs is not None:
        s.setParam("limits/absgap", float(mip_gap_abs))
    for key, value in options.items():
        try:
            s.setParam(key, value)
        except (KeyError, LookupError, ValueError, TypeError) as exc:
            raise SolverError(f"scip parameter {key}={value!r} rejected ({exc}): see the "
                              "SCIP parameter list") from None
    start = model.start
    if start and not zero_objective:
        sol = s.createPartialSol()
        for i, v in start.items():
            s.setSolVal(sol, xs[i], v)
        s.addSol(sol)
    return s, xs, None


def _attach_log(s, log):
    """Report each new incumbent through an event handler."""
    from pyscipopt import Eventhdlr, SCIP_EVENTTYPE

    throttle = Throttle(log)

    class _Progress(Eventhdlr):
        def eventinit(self):
            self.model.catchEvent(SCIP_EVENTTYPE.BESTSOLFOUND, self)

        def eventexit(self):
            self.model.dropEvent(SCIP_EVENTTYPE.BESTSOLFOUND, self)

        def eventexec(self, event):
            m = self.model
            now = m.getSolvingTime()
            throttle(progress_line(NAME, now, m.getPrimalbound(), m.getDualbound(),
                                   m.getNNodes()), now, force=True)

    s.includeEventhdlr(_Progress(), "dynid_progress", "forwards new incumbents to a log")
    return throttle


_STATUS = {"optimal": "optimal", "gaplimit": "optimal", "infeasible": "infeasible",
           "unbounded": "unbounded", "timelimit": "time_limit", "userinterrupt": "interrupted",
           "terminate": "interrupted"}


def solve(model, *, time_limit=None, threads=None, mip_gap=1e-4, mip_gap_abs=None, log=None,
          options=None) -> SolveResult:
    """Solve ``model`` with SCIP (threads are ignored: SCIP solves on one thread)."""
    try:
        import pyscipopt  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(f"pyscipopt does not import ({exc})") from None
    t0 = time.perf_counter()
    options = options or {}
    s, xs, bad = _build(model, time_limit, mip_gap, mip_gap_abs, options)
    if bad is not None:
        return SolveResult("infeasible", None, -infinite_bound(model.sense), None, NAME,
                           time.perf_counter() - t0, bad, model.sense, {})
    throttle = _attach_log(s, log) if log is not None else None
    if log is not None:
        log(f"scip: {model!r}")
    _optimize(s)
    key = s.getStatus()
    if key == "inforunbd":
        key = _disambiguate(model, options, time_limit, t0)
    status = _STATUS.get(key)
    message = ""
    if status is None:
        if key.endswith("limit"):
            status, message = "time_limit", f"scip stopped at its {key}"
        else:
            status, message = "error", f"scip status {key}"
    elif status == "time_limit":
        message = "scip hit the time limit"
    objective = x = None
    if s.getNSols() > 0 and status not in ("infeasible",):
        best = s.getBestSol()
        objective = float(s.getSolObjVal(best))
        x = np.array([s.getSolVal(best, v) for v in xs], dtype=np.float64)
    bound = infinite_bound(model.sense)
    if status in ("optimal", "time_limit", "interrupted"):
        b = float(s.getDualbound())
        if math.isfinite(b) and abs(b) < 1e19:  # SCIP's infinity is 1e20
            bound = b
    info = {"solver_status": key, "nodes": float(s.getNNodes())}
    if throttle is not None:
        throttle(progress_line(NAME, s.getSolvingTime(), objective, bound) + f"  [{status}]",
                 0.0, force=True)
    s.freeProb()
    return SolveResult(status, objective, bound, x, NAME, time.perf_counter() - t0, message,
                       model.sense, info)


def _optimize(s) -> None:
    """Run SCIP in a worker thread without the GIL, so Ctrl-C in the main thread reaches
    Python; it asks SCIP to stop (status 'userinterrupt') and the incumbent is kept."""
    import threading

    if not hasattr(s, "optimizeNogil"):
        s.optimize()
        return
    errors: list = []

    def run():
        try:
            s.optimizeNogil()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=run, name="scip-solve", daemon=True)
    worker.start()
    while worker.is_alive():
        try:
            worker.join(0.1)
        except KeyboardInterrupt:
            try:
                s.interruptSolve()
            except Exception:
                pass
    if errors:
        raise errors[0]


def _disambiguate(model, options, time_limit, t0):
    """SCIP said 'infeasible or unbounded': solve the feasibility problem to decide."""
    left = None if time_limit is None else max(1e-3, time_limit - (time.perf_counter() - t0))
    s, _, bad = _build(model, left, 1e-4, None, options, zero_objective=True)
    if bad is not None:
        return "infeasible"
    s.optimize()
    key = s.getStatus()
    s.freeProb()
    return {"infeasible": "infeasible", "optimal": "unbounded"}.get(key, key)
