"""HiGHS backend: one ``HighsLp`` in column-wise form passed with ``Highs.passModel``.

Linear programs and MILPs only (HiGHS has no nonconvex or mixed-integer quadratic solver).
The MIP bound is ``info.mip_dual_bound``. For an LP it is the rigorous weak-duality bound
:func:`dynid.milp.solve.lp_dual_bound` of HiGHS's row duals (valid even under an iteration or
time limit), falling back to the optimal objective when a free variable makes that infinite.
"""

from __future__ import annotations

import math
import time

import numpy as np

from dynid.errors import SolverError

from dynid.milp.solve import (BackendUnavailable, SolveResult, Throttle, infinite_bound,
                              lp_dual_bound, progress_line)

NAME = "highs"


def _lp(highspy, model, zero_objective=False):
    lp = highspy.HighsLp()
    n = model.n_vars
    lp.num_col_ = n
    lp.num_row_ = model.n_rows
    lp.col_cost_ = np.zeros(n) if zero_objective else model.objective_vector()
    lp.col_lower_ = model.lb
    lp.col_upper_ = model.ub
    lp.row_lower_ = model.row_lo
    lp.row_upper_ = model.row_hi
    lp.offset_ = 0.0 if zero_objective else model.obj_constant
    lp.sense_ = highspy.ObjSense.kMaximize if model.sense == "max" else highspy.ObjSense.kMinimize
    A = model.matrix().tocsc()
    A.sort_indices()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_ = n
    lp.a_matrix_.num_row_ = model.n_rows
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data.astype(np.float64)
    if model.is_mip:
        vt = highspy.HighsVarType
        lp.integrality_ = [vt.kInteger if t else vt.kContinuous for t in model.integer_mask]
    return lp


def _highs(highspy, model, time_limit, threads, mip_gap, mip_gap_abs, options,
           zero_objective=False):
    from dynid.milp.lp import quiet_highs

    h = quiet_highs(highspy, threads=None)
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    if threads is not None:
        h.setOptionValue("threads", int(threads))
    h.setOptionValue("mip_rel_gap", float(mip_gap))
    if mip_gap_abs is not None:
        h.setOptionValue("mip_abs_gap", float(mip_gap_abs))
    for key, value in options.items():
        if h.setOptionValue(key, value) != highspy.HighsStatus.kOk:
            raise SolverError(f"highs option {key}={value!r} rejected: see the HiGHS options "
                              "reference")
    h.passModel(_lp(highspy, model, zero_objective))
    start = model.start
    if start and model.is_mip and not zero_objective:
        idx = np.fromiter(start.keys(), dtype=np.int32)
        val = np.fromiter(start.values(), dtype=np.float64)
        try:
            h.setSolution(len(idx), idx, val)
        except Exception:  # older highspy without sparse starts: skip the hint
            pass
    return h


def _subscribe_log(h, log, is_mip, sense):
    throttle = Throttle(log)

    def on_event(e, force=False):
        d = e.data_out
        inc, bnd = float(d.mip_primal_bound), float(d.mip_dual_bound)
        inc = inc if math.isfinite(inc) and abs(inc) < 1e99 else None
        throttle(progress_line(NAME, d.running_time, inc, bnd, d.mip_node_count),
                 d.running_time, force)

    if is_mip:
        h.cbMipImprovingSolution.subscribe(lambda e: on_event(e, True))
        h.cbMipInterrupt.subscribe(lambda e: on_event(e, False))
    return throttle


def _run(h):
    """Run HiGHS; a Ctrl-C stops it cleanly (status kInterrupt) instead of killing Python."""
    try:
        h.HandleKeyboardInterrupt = True
    except Exception:
        pass
    return h.solve() if hasattr(h, "solve") else h.run()


def _cancelled(h) -> bool:
    """Whether a Ctrl-C asked this HiGHS run to stop (highspy keeps the request privately)."""
    return bool(getattr(h, "_Highs__solver_should_stop", False))


_STATUS = {
    "kOptimal": "optimal", "kInfeasible": "infeasible", "kUnbounded": "unbounded",
    "kTimeLimit": "time_limit", "kInterrupt": "interrupted", "kHighsInterrupt": "interrupted",
    "kIterationLimit": "time_limit", "kSolutionLimit": "time_limit",
    "kObjectiveBound": "time_limit", "kObjectiveTarget": "time_limit",
    "kMemoryLimit": "time_limit", "kModelEmpty": "optimal",
}


def solve(model, *, time_limit=None, threads=None, mip_gap=1e-4, mip_gap_abs=None, log=None,
          options=None) -> SolveResult:
    """Solve a linear ``model`` (LP or MILP) with HiGHS."""
    try:
        import highspy
    except ImportError as exc:
        raise BackendUnavailable(f"highspy does not import ({exc})") from None
    if model.is_quadratic:
        raise BackendUnavailable("HiGHS cannot solve quadratic models")
    t0 = time.perf_counter()
    options = options or {}
    h = _highs(highspy, model, time_limit, threads, mip_gap, mip_gap_abs, options)
    throttle = _subscribe_log(h, log, model.is_mip, model.sense) if log is not None else None
    if log is not None:
        log(f"highs: {model!r}")
    _run(h)
    ms = h.getModelStatus()
    key = ms.name if hasattr(ms, "name") else str(ms).split(".")[-1]
    message = ""
    if key == "kUnboundedOrInfeasible":
        key = _disambiguate(highspy, model, options, time_limit, t0)
    status = _STATUS.get(key)
    if _cancelled(h) and status not in ("optimal", "infeasible", "unbounded"):
        # a Ctrl-C that HiGHS noticed in a phase which reports another limit (seen under load:
        # interrupted in the root LP, the MIP status is an iteration or time limit)
        status, message = "interrupted", f"highs interrupted by Ctrl-C (model status {key})"
    if status is None:
        status, message = "error", f"highs model status {key}"
    elif status == "time_limit":
        message = "highs hit the time limit" if key == "kTimeLimit" else f"highs stopped: {key}"
    info = h.getInfo()
    objective, bound, xs, rigorous = _values(h, info, model, status)
    extra = {"solver_status": key, "nodes": _num(getattr(info, "mip_node_count", None))}
    if rigorous:
        extra["bound_kind"] = "lp-dual"
    if throttle is not None:
        throttle(progress_line(NAME, time.perf_counter() - t0, objective, bound)
                 + f"  [{status}]", 0.0, force=True)
    return SolveResult(status, objective, bound, xs, NAME, time.perf_counter() - t0, message,
                       model.sense, extra)


def _num(v):
    try:
        return float(v)
    except Exception:
        return None


def _values(h, info, model, status):
    """Incumbent, bound and x from a finished HiGHS run."""
    feasible = int(info.primal_solution_status) == 2  # kSolutionStatusFeasible
    objective = float(info.objective_function_value) if feasible else None
    xs = np.asarray(h.getSolution().col_value, dtype=np.float64) if feasible else None
    if xs is not None and xs.size != model.n_vars:
        xs, objective = None, None
    bound = infinite_bound(model.sense)
    rigorous = False
    if status in ("infeasible", "unbounded", "error"):
        return objective, bound, xs, rigorous
    if model.is_mip:
        b = float(info.mip_dual_bound)
        if math.isfinite(b) and abs(b) < 1e99:
            bound = b
    else:
        # LP: a rigorous weak-duality bound from the row duals when every variable with a
        # nonzero reduced cost is bounded; otherwise the optimal value as HiGHS reports it
        sol = h.getSolution()
        if getattr(sol, "dual_valid", False):
            bound = lp_dual_bound(model, np.asarray(sol.row_dual, dtype=np.float64))
            rigorous = math.isfinite(bound)
        if not math.isfinite(bound) and status == "optimal" and objective is not None:
            bound = objective
    return objective, bound, xs, rigorous


def _disambiguate(highspy, model, options, time_limit, t0):
    """HiGHS said 'unbounded or infeasible': ask whether any feasible point exists."""
    left = None if time_limit is None else max(1e-3, time_limit - (time.perf_counter() - t0))
    h = _highs(highspy, model, left, None, 1e-4, None, {**options, "presolve": "off"},
               zero_objective=True)
    _run(h)
    ms = h.getModelStatus()
    key = ms.name if hasattr(ms, "name") else str(ms).split(".")[-1]
    if key == "kInfeasible":
        return "kInfeasible"
    if key == "kOptimal":
        return "kUnbounded"
    return key
