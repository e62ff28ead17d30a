"""Solver-neutral sparse optimisation models and thin backends (Gurobi, HiGHS, SCIP).

Build a :class:`SparseModel` (variables with bounds and types, sparse rows ``lo <= A x <= hi``,
linear or quadratic objective, convex or nonconvex quadratic rows), then call :func:`solve`.
The result's ``bound`` is a valid bound on the optimum (the solver's best/dual bound, padded),
never an incumbent; a time limit gives status ``time_limit`` with both numbers.

Example
-------
>>> from dynid.milp import SparseModel, solve
>>> m = SparseModel()
>>> x = m.add_vars(2, lb=-1.0, ub=1.0)
>>> m.set_objective(quad=(x, x, [1.0, 1.0]), sense="max")   # max ||x||^2: nonconvex
>>> r = solve(m, "scip"); r.status, round(r.objective, 6)
('optimal', 2.0)
"""

from dynid.milp.model import ModelError, QuadRow, SparseModel
from dynid.milp.solve import (STATUSES, SolveResult, available_solvers, solve,
                              stop_if_interrupted)
from dynid.milp.tolerances import bound_pad, padded_bound

__all__ = ["SparseModel", "QuadRow", "ModelError", "SolveResult", "solve", "available_solvers",
           "STATUSES", "bound_pad", "padded_bound", "stop_if_interrupted"]
