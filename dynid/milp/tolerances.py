"""Solver tolerances, and how far they can move a MIP's best bound: the pad that makes a
reported bound hold for the exact problem.

A MIP solver works with three tolerances: *feasibility* (a row or bound may be violated by
``eps_f``), *optimality* (a reduced cost may have the wrong sign by ``eps_o``) and
*integrality* (a binary within ``eps_i`` of 0 or 1 counts as integral). The first and the last
only ever *enlarge* the feasible set the solver searches, which is harmless for a bound. What
can make a best bound fall below the true optimum is how each node's LP bound is computed from
an inexact basis: by weak duality the exact node optimum exceeds the value the solver uses by at
most

    eps_o * sum_j (ub_j - lb_j)  +  eps_f * sum_i |y_i| (1 + |A_i| |x|max + |rhs_i|)

(dual infeasibility times how far each variable can move, plus each row's primal residual,
relative to the row's scale, times the size of its multiplier ``y_i``). :func:`bound_pad`
evaluates this with the tolerances the solver actually ran with and a bound on the multipliers:
``sensitivity`` = ``sum_i |y_i| (1 + scale_i)`` when the caller knows one (for a ReLU network,
the multiplier of a unit's rows is at most the unit's path sensitivity, see
:func:`dynid.certify.encode.encoding_sensitivity`), else ``|c|_inf`` per row. The argument and
its assumptions are written out in ``docs/solvers.md`` ("Why a certified bound holds").

Certification code solves with :data:`TIGHT` tolerances (``solve(..., tolerances="tight")``),
which shrinks both the error and the pad by three orders of magnitude.

Example
-------
>>> tolerances_of("gurobi", {"FeasibilityTol": 1e-9})["feasibility"]
1e-09
>>> tolerances_of("highs", {})["optimality"]
1e-07
"""

from __future__ import annotations

import math

import numpy as np

# (feasibility, optimality, integrality) parameter names and documented defaults per backend
PARAMS = {
    "gurobi": {"feasibility": ("FeasibilityTol", 1e-6), "optimality": ("OptimalityTol", 1e-6),
               "integrality": ("IntFeasTol", 1e-5)},
    "highs": {"feasibility": ("primal_feasibility_tolerance", 1e-7),
              "mip_feasibility": ("mip_feasibility_tolerance", 1e-6),
              "optimality": ("dual_feasibility_tolerance", 1e-7),
              "integrality": ("mip_feasibility_tolerance", 1e-6)},
    "scip": {"feasibility": ("numerics/feastol", 1e-6), "optimality": ("numerics/dualfeastol", 1e-7),
             "integrality": ("numerics/feastol", 1e-6)},
}
# tight tolerances for certificates (the smallest value all three backends accept reliably)
TIGHT = 1e-9
# float64 evaluation of the pad itself and of the solver's objective: a relative margin
ROUND = 1e-12


def tight_options(solver: str) -> dict:
    """Backend parameters that set every tolerance of ``solver`` to :data:`TIGHT`.

    Example
    -------
    >>> sorted(tight_options("scip"))
    ['numerics/dualfeastol', 'numerics/feastol']
    """
    names = {name for name, _ in PARAMS.get(solver, {}).values()}
    return {name: TIGHT for name in sorted(names)}


def tolerances_of(solver: str, options: dict | None) -> dict:
    """The tolerances a backend runs with: its defaults overridden by ``options``.

    Unknown solvers get the loosest defaults of the three (1e-5 everywhere)."""
    options = options or {}
    if solver not in PARAMS:
        return {"feasibility": 1e-5, "optimality": 1e-5, "integrality": 1e-5}
    out = {}
    for key, (name, default) in PARAMS[solver].items():
        out[key] = float(options.get(name, default))
    if "mip_feasibility" in out:  # HiGHS checks MIP rows against the larger of the two
        out["feasibility"] = max(out["feasibility"], out.pop("mip_feasibility"))
    return out


def row_scales(model) -> np.ndarray:
    """``|A_i| . max(|lb|, |ub|) + |rhs_i|`` per row: the size of the terms a row sums, which
    is what its feasibility tolerance is relative to (infinite bounds count as 0)."""
    a = abs(model.matrix())
    mag = np.maximum(np.abs(np.where(np.isfinite(model.lb), model.lb, 0.0)),
                     np.abs(np.where(np.isfinite(model.ub), model.ub, 0.0)))
    rhs = np.maximum(np.abs(np.where(np.isfinite(model.row_lo), model.row_lo, 0.0)),
                     np.abs(np.where(np.isfinite(model.row_hi), model.row_hi, 0.0)))
    return np.asarray(a @ mag).reshape(-1) + rhs


def bound_pad(model, result, sensitivity: float | None = None) -> float:
    """How far ``result.bound`` may lie on the wrong side of the exact optimum of ``model``.

    0 for a bound that is already rigorous (an LP bound recomputed by weak duality in float64,
    ``result.info["bound_kind"] == "lp-dual"``) or not finite. Otherwise the weak-duality
    estimate of the module docstring with the tolerances in ``result.info["tolerances"]``.

    Parameters
    ----------
    sensitivity : ``sum_i |y_i| (1 + scale_i)`` over the rows, a bound the caller derived from
        the structure of the model (see the module docstring); default ``|c|_inf * sum_i
        (1 + scale_i)``.

    Example
    -------
    >>> from dynid.milp import SparseModel, solve
    >>> m = SparseModel(); x = m.add_vars(2, 0.0, 1.0, vtype="B")
    >>> _ = m.add_row(x, [1.0, 1.0], hi=1.0)
    >>> m.set_objective(x, [2.0, 3.0], sense="max")
    >>> r = solve(m, "highs", tolerances="tight")
    >>> 0 < bound_pad(m, r) < 1e-7
    True
    """
    b = result.bound
    if b is None or not math.isfinite(b) or result.info.get("bound_kind") == "lp-dual":
        return 0.0
    tol = result.info.get("tolerances") or tolerances_of(result.solver, None)
    lb, ub = model.lb, model.ub
    width = np.where(np.isfinite(lb) & np.isfinite(ub), ub - lb, np.inf)
    c = model.objective_vector()
    if not np.all(np.isfinite(width)):
        # a free variable: its reduced cost error cannot be bounded
        return math.inf
    if sensitivity is None:
        cmax = float(np.max(np.abs(c))) if c.size else 0.0
        q = model.objective_quad()
        if len(q[2]):   # gradient of the quadratic part over the box
            cmax = max(cmax, 2.0 * float(np.max(np.abs(q[2]))) * float(np.max(
                np.maximum(np.abs(lb), np.abs(ub)))) * len(q[2]))
        sensitivity = cmax * float(np.sum(1.0 + row_scales(model)))
    pad = tol["optimality"] * float(np.sum(width)) + tol["feasibility"] * float(sensitivity)
    return float(pad + ROUND * (1.0 + abs(b)) + 1e-15)


# the tolerance-free re-derivation of a padded bound (padded_bound): nodes and seconds at most
VERIFY_NODES = 64
VERIFY_SECONDS = 2.0


def padded_bound(model, result, sensitivity: float | None = None, *,
                 verify: int = VERIFY_NODES, verify_seconds: float | None = VERIFY_SECONDS
                 ) -> float:
    """``result.bound`` moved outward (up for max, down for min) by :func:`bound_pad`.

    With ``verify = N > 0`` (the default: :data:`VERIFY_NODES` nodes, at most
    :data:`VERIFY_SECONDS` seconds) the bound is also re-derived without any solver tolerance, by an
    LP branch-and-bound of at most N nodes whose every node value is a float64 dual bound
    (:func:`dynid.milp.lp.branch_and_bound`, its target the solver's bound plus a hair); when
    that closes, the tighter of the two is returned. The pad is a worst case over all rows at
    once and grows with depth (on a 5-step unrolled closed loop it is ~1e-3); the rigorous
    bound is usually the LP bound of the root plus a few nodes.
    """
    pad = bound_pad(model, result, sensitivity)
    up = model.sense == "max"
    out = result.bound + pad if up else result.bound - pad
    if verify > 0 and pad > 0 and math.isfinite(out):
        from dynid.milp.lp import branch_and_bound

        hair = min(pad, 1e-9 * (1.0 + abs(result.bound)))
        exact = branch_and_bound(model, result.bound + hair if up else result.bound - hair,
                                 max_nodes=int(verify), time_limit=verify_seconds)
        if exact is not None:
            out = min(out, exact) if up else max(out, exact)
    return float(out)


__all__ = ["PARAMS", "TIGHT", "VERIFY_NODES", "VERIFY_SECONDS", "tight_options",
           "tolerances_of", "bound_pad", "padded_bound", "row_scales"]
