"""Solve a :class:`~dynid.milp.model.SparseModel` with Gurobi, HiGHS or SCIP; choose one by name.

:func:`solve` returns a :class:`SolveResult` whose ``bound`` is always a *valid* bound in the
model's sense (for ``max`` an upper bound on the optimum, ``+inf`` when unknown), taken from
the solver's best bound / dual bound — never from an incumbent — and padded outward by a tiny
relative amount for floating-point round-off. ``objective`` is the incumbent (``None`` when
there is none). A time limit gives status ``time_limit`` with both numbers, never ``optimal``.

The bound holds up to the solver's feasibility tolerance (about 1e-6 on rows and integrality for
all three backends by default): it is the optimum of a problem whose constraints are relaxed by
that tolerance. Callers that certify should say so.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from dynid.errors import SolverError

STATUSES = ("optimal", "time_limit", "infeasible", "unbounded", "error", "interrupted")
#: The one backend table: name -> (Python module it needs, how to install it, dynid's adapter
#: module, whether it takes quadratic constraints). Everything else (SOLVERS, the CLI's
#: ``--solver`` choices, the tight-tolerance options) is derived from it.
BACKENDS = {
    "gurobi": {"module": "gurobipy", "pip": "pip install gurobipy",
               "adapter": "dynid.milp.backends.gurobi", "quadratic": True},
    "highs": {"module": "highspy", "pip": "pip install highspy",
              "adapter": "dynid.milp.backends.highs", "quadratic": False},
    "scip": {"module": "pyscipopt", "pip": "pip install dynid[scip]",
             "adapter": "dynid.milp.backends.scip", "quadratic": True},
}
SOLVERS = tuple(BACKENDS)
_PIP = {name: b["pip"] for name, b in BACKENDS.items()}
_MODULE = {name: b["module"] for name, b in BACKENDS.items()}
# Relative + absolute outward padding of reported bounds (float round-off, not tolerances).
BOUND_PAD = 1e-9


class LicenceRefused(Exception):
    """Raised by a backend when its licence refuses the model (Gurobi error 10010)."""


class BackendUnavailable(Exception):
    """Raised by a backend that cannot start (module missing, no licence at all)."""


@dataclass(frozen=True, eq=False)
class SolveResult:
    """Outcome of one solve.

    Attributes
    ----------
    status : "optimal" | "time_limit" | "infeasible" | "unbounded" | "error" | "interrupted".
        ``optimal`` means proven within the requested ``mip_gap``; any limit (time, nodes,
        solutions) is ``time_limit``.
    objective : incumbent objective value (``None`` when no feasible point is known).
    bound : valid bound on the optimum in the model's sense (max: upper bound, ``+inf`` when
        unknown, ``-inf`` when proven infeasible; min: the mirror image).
    x : incumbent (float64 array of length ``model.n_vars``) or ``None``.
    solver : the backend that answered ("gurobi", "highs", "scip").
    seconds : wall-clock seconds of building and solving.
    message : human-readable notes (fallbacks, limits, solver messages).
    info : extra facts (raw solver bound, node count, solver status, sizes).

    Example
    -------
    >>> r = SolveResult("optimal", 1.0, 1.0, None, "highs", 0.01)
    >>> r.gap
    0.0
    """

    status: str
    objective: float | None
    bound: float
    x: np.ndarray | None
    solver: str
    seconds: float
    message: str = ""
    sense: str = "max"
    info: dict = field(default_factory=dict)

    @property
    def gap(self) -> float:
        """Absolute gap ``|bound - objective|`` in the model's sense (inf without incumbent)."""
        if self.objective is None or not math.isfinite(self.bound):
            return math.inf
        d = self.bound - self.objective if self.sense == "max" else self.objective - self.bound
        return max(0.0, float(d))

    @property
    def rel_gap(self) -> float:
        """Gap relative to ``max(|objective|, 1e-10)``."""
        g = self.gap
        return g if not math.isfinite(g) else g / max(abs(self.objective), 1e-10)

    @property
    def has_solution(self) -> bool:
        return self.x is not None

    def to_dict(self) -> dict:
        from dynid.results import jsonable

        return jsonable({"status": self.status, "objective": self.objective,
                         "bound": self.bound, "gap": self.gap, "solver": self.solver,
                         "seconds": self.seconds, "message": self.message, "info": self.info})


def available_solvers() -> list[str]:
    """Names of the backends whose Python module imports, in order of preference.

    Example
    -------
    >>> "highs" in available_solvers()
    True
    """
    return [name for name in SOLVERS if _importable(name)]


def _importable(name: str) -> bool:
    try:
        __import__(_MODULE[name])
        return True
    except Exception:  # ImportError, or a broken binary wheel
        return False


def _backend(name: str):
    import importlib

    if name not in BACKENDS:
        raise SolverError(f"unknown solver {name!r}: use one of auto, {', '.join(SOLVERS)}")
    return importlib.import_module(BACKENDS[name]["adapter"])


def _check_options(time_limit, threads, mip_gap):
    if time_limit is not None and not (float(time_limit) > 0):
        raise SolverError(f"time_limit must be > 0 seconds (or None), got {time_limit}")
    if threads is not None and int(threads) < 1:
        raise SolverError(f"threads must be >= 1 (or None for the solver's default), "
                          f"got {threads}")
    if mip_gap is not None and not (float(mip_gap) >= 0):
        raise SolverError(f"mip_gap must be >= 0, got {mip_gap}")


def solve(model, solver: str = "auto", *, time_limit: float | None = None,
          threads: int | None = None, mip_gap: float = 1e-4, log=None,
          mip_gap_abs: float | None = None, options: dict | None = None,
          tolerances: str = "default") -> SolveResult:
    """Solve ``model`` and return a :class:`SolveResult` with a valid bound.

    Parameters
    ----------
    model : SparseModel
    solver : "auto" | "gurobi" | "highs" | "scip". ``auto`` tries Gurobi when it is
        importable; if its size-limited licence refuses the model (error 10010) it falls back
        to HiGHS (linear) or SCIP (quadratic) and says so in ``message``.
    time_limit : seconds (``None``: no limit). Hitting it gives status ``time_limit``.
    threads : solver threads (``None``: the solver's default). SCIP is single-threaded.
    mip_gap : relative MIP gap at which the solver may stop and call the result optimal.
    log : callable receiving progress lines (incumbent, bound, gap, time), or None.
    mip_gap_abs : absolute MIP gap (``None``: the solver's default).
    options : extra backend parameters, per solver:
        ``{"gurobi": {"FeasibilityTol": 1e-8}, "highs": {"mip_feasibility_tolerance": 1e-8},
        "scip": {"numerics/feastol": 1e-8}}``; with a named solver a flat dict of that
        solver's parameters is accepted too. An unknown parameter raises SolverError.
    tolerances : "default" (the solver's own) or "tight" (every feasibility, optimality and
        integrality tolerance at :data:`dynid.milp.tolerances.TIGHT`, whichever backend
        answers; explicit ``options`` win). The tolerances used are in
        ``result.info["tolerances"]``; :func:`dynid.milp.tolerances.bound_pad` turns them into
        the pad that makes a MIP bound hold for the exact problem.

    Raises
    ------
    SolverError
        unknown or uninstalled solver (naming the pip command), a model the named solver
        cannot handle (HiGHS and quadratic terms), a licence refusal of a named solver,
        bad option values.

    Example
    -------
    >>> from dynid.milp import SparseModel, solve
    >>> m = SparseModel(); x = m.add_vars(2, 0.0, 1.0, vtype="B")
    >>> _ = m.add_row(x, [1.0, 1.0], hi=1.0)
    >>> m.set_objective(x, [2.0, 3.0], sense="max")
    >>> r = solve(m, "highs"); r.status, round(r.objective, 6)
    ('optimal', 3.0)
    """
    from dynid.milp.model import ModelError, SparseModel

    if not isinstance(model, SparseModel):
        raise ModelError(f"solve() needs a dynid.milp.SparseModel, got {type(model).__name__}")
    _check_options(time_limit, threads, mip_gap)
    per_solver = _split_options(options, solver)
    if tolerances not in ("default", "tight"):
        raise SolverError(f"tolerances must be 'default' or 'tight', got {tolerances!r}")
    if tolerances == "tight":
        from dynid.milp.tolerances import tight_options

        per_solver = {name: {**tight_options(name), **per_solver.get(name, {})}
                      for name in SOLVERS}
    opts = dict(time_limit=None if time_limit is None else float(time_limit),
                threads=None if threads is None else int(threads),
                mip_gap=float(mip_gap), mip_gap_abs=mip_gap_abs, log=log)
    t0 = time.perf_counter()
    if solver not in SOLVERS + ("auto",):
        raise SolverError(f"unknown solver {solver!r}: use one of auto, gurobi, highs, scip")
    if model.n_vars == 0:  # nothing to decide: no solver needed (HiGHS rejects empty models)
        return _finish(model, _solve_empty(model, solver), time.perf_counter() - t0, "", {})
    if solver == "auto":
        result, note = _solve_auto(model, opts, per_solver, t0)
    else:
        opts["options"] = per_solver.get(solver, {})
        if not _importable(solver):
            raise SolverError(f"solver {solver!r} is not installed: {_PIP[solver]}")
        _refuse_unsupported(model, solver)
        try:
            result = _backend(solver).solve(model, **opts)
        except LicenceRefused as exc:
            raise SolverError(f"{solver} refused the model ({exc}): use solver='auto' to fall "
                              "back to HiGHS/SCIP, or a full Gurobi licence") from None
        except BackendUnavailable as exc:
            raise SolverError(f"solver {solver!r} cannot start: {exc}") from None
        note = ""
    return _finish(model, result, time.perf_counter() - t0, note, per_solver)


def _refuse_unsupported(model, solver: str) -> None:
    if solver in BACKENDS and model.is_quadratic and not BACKENDS[solver]["quadratic"]:
        can = " or ".join(repr(n) for n, b in BACKENDS.items() if b["quadratic"])
        raise SolverError(f"{solver} cannot solve a model with a quadratic objective or "
                          f"quadratic constraint: use solver={can} (pip install dynid[scip])")


def _solve_empty(model, solver) -> SolveResult:
    """A model without variables: feasible iff 0 satisfies every row; the value is the constant."""
    ok = bool(np.all(model.row_lo <= 0.0) and np.all(model.row_hi >= 0.0))
    ok = ok and all((q.rhs >= 0.0) if q.sense == "<=" else (q.rhs <= 0.0)
                    for q in model.quad_rows)
    name = "none" if solver == "auto" else solver
    if not ok:
        return SolveResult("infeasible", None, -infinite_bound(model.sense), None, name, 0.0,
                           "a model without variables has an unsatisfiable row", model.sense)
    c = model.obj_constant
    return SolveResult("optimal", c, c, np.zeros(0), name, 0.0, "", model.sense)


def _split_options(options, solver) -> dict:
    """``{solver: {param: value}}``; a flat dict is allowed only with a named solver."""
    if not options:
        return {}
    if not isinstance(options, dict):
        raise SolverError("options must be a dict of solver parameters")
    if all(k in SOLVERS and isinstance(v, dict) for k, v in options.items()):
        return {k: dict(v) for k, v in options.items()}
    if solver == "auto":
        raise SolverError("with solver='auto' give options per solver, e.g. "
                          "options={'gurobi': {'FeasibilityTol': 1e-8}, 'highs': {...}}")
    return {solver: dict(options)}


def _solve_auto(model, opts, per_solver, t0):
    why = None
    if _importable("gurobi"):
        try:
            first = _backend("gurobi").solve(model, **opts, options=per_solver.get("gurobi", {}))
            if first.status != "error":
                return first, ""
            why = f"gurobi failed ({first.message})"
        except LicenceRefused:
            why = "gurobi refused (size-limited licence, error 10010)"
        except BackendUnavailable as exc:
            why = f"gurobi unavailable ({exc})"
    else:
        why = "gurobi not installed"
    if model.is_quadratic:
        order = ["scip"]
    else:
        order = ["highs", "scip"]
    for name in order:
        if _importable(name):
            if opts["log"] is not None:
                opts["log"](f"{why}: using {name}")
            if opts["time_limit"] is not None:  # the fallback gets what is left of the limit
                left = opts["time_limit"] - (time.perf_counter() - t0)
                opts = {**opts, "time_limit": max(left, 0.01)}
            return (_backend(name).solve(model, **opts, options=per_solver.get(name, {})),
                    f"{why}: used {name}")
    need = "SCIP (pip install dynid[scip])" if model.is_quadratic else "HiGHS (pip install highspy)"
    raise SolverError(f"no solver can take this model: {why}, and {need} is not installed")


def _pad(v: float, up: bool) -> float:
    if not math.isfinite(v):
        return v
    step = BOUND_PAD * (1.0 + abs(v))
    return v + step if up else v - step


def _finish(model, r: SolveResult, seconds: float, note: str, per_solver) -> SolveResult:
    """Make the bound safe and consistent: an incumbent can only tighten how *low* a max bound
    may be (bound >= incumbent), infeasible gives -inf for max, and pad outward."""
    is_max = model.sense == "max"
    bound = r.bound
    if bound is None or (isinstance(bound, float) and math.isnan(bound)):
        bound = math.inf if is_max else -math.inf
    bound = float(bound)
    objective = None if r.objective is None else float(r.objective)
    if objective is not None and not math.isfinite(objective):
        objective = None
    if r.status == "infeasible":
        bound = -math.inf if is_max else math.inf
        objective = None
    elif r.status == "unbounded":  # an incumbent of an unbounded problem means nothing
        bound = math.inf if is_max else -math.inf
        objective = None
    elif r.status == "error":
        bound = math.inf if is_max else -math.inf
    info = dict(r.info)
    info["raw_bound"] = r.bound
    from dynid.milp.tolerances import tolerances_of

    info["tolerances"] = tolerances_of(r.solver, per_solver.get(r.solver))
    if objective is not None and r.status != "error":
        bound = max(bound, objective) if is_max else min(bound, objective)
    bound = _pad(bound, up=is_max)
    status = r.status if r.status in STATUSES else "error"
    x = None if objective is None else r.x
    if x is not None:
        x = np.asarray(x, dtype=np.float64).reshape(-1)[: model.n_vars].copy()
        if x.size != model.n_vars or not np.all(np.isfinite(x)):
            x = None
    message = "; ".join(s for s in (note, r.message) if s)
    return SolveResult(status, objective, bound, x, r.solver, float(seconds), message,
                       model.sense, info)


def lp_dual_bound(model, y) -> float:
    """A rigorous bound on the LP optimum from *any* row multipliers ``y`` (weak duality).

    For ``max c.x`` over ``lo <= A x <= hi``, ``lb <= x <= ub`` and any ``y``,
    ``c.x = y.(A x) + (c - A'y).x`` is at most ``sum_i max(y_i lo_i, y_i hi_i) +
    sum_j max(r_j lb_j, r_j ub_j)`` with ``r = c - A'y``. Evaluated in float64 and padded by
    a bound on the rounding error, so it holds for every feasible ``x`` no matter how
    inaccurate ``y`` is (Neumaier-Shcherbina); it is ``inf`` when an infinite bound meets a
    nonzero multiplier. Only for linear models (quadratic terms and integrality are ignored,
    which keeps it valid as a bound on the relaxation, hence on the problem). For ``min`` it
    is the mirror image (a lower bound).

    Example
    -------
    >>> from dynid.milp import SparseModel
    >>> m = SparseModel(); x = m.add_vars(2, 0.0, 10.0)
    >>> _ = m.add_rows(x, [[1.0, 2.0], [3.0, 1.0]], hi=[4.0, 6.0])
    >>> m.set_objective(x, [1.0, 1.0], "max")
    >>> round(lp_dual_bound(m, [0.4, 0.2]), 6)
    2.8
    """
    from dynid.milp.lp import DualBound

    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if y.size != model.n_rows or not np.all(np.isfinite(y)):
        return infinite_bound(model.sense)
    sign = 1.0 if model.sense == "max" else -1.0  # work on max (sign * objective)
    best = DualBound.of(model)(sign * model.objective_vector(), y) + sign * model.obj_constant
    # the constant is added in float64: pad for that one rounding too
    best = best + _EPS_PAD * (1.0 + abs(best))
    return float(sign * best)


_EPS_PAD = 2.3e-16


def stop_if_interrupted(result) -> None:
    """Raise KeyboardInterrupt when ``result`` is a solve the user interrupted (Ctrl-C): code
    that runs many solves calls this so one Ctrl-C stops all of them, not only the current one."""
    if getattr(result, "status", None) == "interrupted":
        raise KeyboardInterrupt


def infinite_bound(sense: str) -> float:
    """The 'nothing known' bound for ``sense``: +inf for max, -inf for min."""
    return math.inf if sense == "max" else -math.inf


class Throttle:
    """Call ``log`` at most once per ``every`` seconds (always for ``force=True``)."""

    def __init__(self, log, every: float = 1.0):
        self.log, self.every, self.last = log, every, -math.inf

    def __call__(self, line: str, now: float, force: bool = False) -> None:
        if self.log is None:
            return
        if force or now - self.last >= self.every:
            self.last = now
            self.log(line)


def progress_line(solver: str, seconds: float, incumbent, bound, nodes=None) -> str:
    """One progress line: ``gurobi    3.1s  incumbent 1.2  bound 1.5  gap 25%  nodes 10``."""
    def known(v):  # solvers spell "none yet" as inf, 1e20 (SCIP) or 1e100 (Gurobi)
        return v is not None and math.isfinite(v) and abs(v) < 1e19

    inc = f"{incumbent:.6g}" if known(incumbent) else "-"
    bnd = f"{bound:.6g}" if known(bound) else "-"
    gap = "-"
    if inc != "-" and bnd != "-":
        gap = f"{abs(bound - incumbent) / max(abs(incumbent), 1e-10):.2%}"
    line = f"{solver:6s} {seconds:7.1f}s  incumbent {inc}  bound {bnd}  gap {gap}"
    return line + (f"  nodes {int(nodes)}" if nodes is not None else "")
