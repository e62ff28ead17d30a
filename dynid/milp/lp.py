"""One warm-started LP whose every answer is a rigorous float64 dual bound.

:class:`WarmLP` passes a (continuous) :class:`~dynid.milp.SparseModel` to one HiGHS instance
once; each call changes only the objective, so HiGHS restarts from the previous basis. The
value returned for an objective ``c`` is **not** HiGHS's objective value but the weak-duality
bound :func:`dual_bound` computed in float64 from HiGHS's row duals, padded for rounding
(Neumaier-Shcherbina): it holds for *any* multipliers, so neither HiGHS's tolerances nor an
iteration/time limit nor a failed solve can make it invalid (a failed solve falls back to the
multipliers 0, i.e. the bound given by the variable bounds alone).

Every LP bound in dynid comes from here (OBBT, the triangle-LP engine ``lp-highs``, LP-tight
intermediate bounds, the difference tightening of the invertibility queries) or from the same
:func:`dual_bound` (the LP path of :func:`dynid.milp.solve`).

Example
-------
>>> import numpy as np
>>> from dynid.milp import SparseModel
>>> m = SparseModel(); x = m.add_vars(2, 0.0, 1.0)
>>> _ = m.add_rows(x, [[1.0, 1.0]], hi=[1.5])
>>> lp = WarmLP(m)
>>> ub = lp.maximize(np.array([[1.0, 1.0], [1.0, 0.0]]))   # max x0 + x1, max x0
>>> bool(1.5 <= ub[0] < 1.5 + 1e-9 and 1.0 <= ub[1] < 1.0 + 1e-9)
True
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

_EPS = float(np.finfo(np.float64).eps)


class DualBound:
    """The weak-duality bound of ``max c.x`` over ``lo <= A x <= hi, lb <= x <= ub`` for any
    multipliers ``y``, with the matrices it needs prepared once (many objectives, one LP).

    For every feasible x: ``c.x = y.(A x) + (c - A'y).x <= sum_i sup(y_i [lo_i, hi_i]) +
    sum_j sup(r_j [lb_j, ub_j])``; ``r`` is enclosed with its rounding error and the sum is
    padded by its own, so the value is an upper bound in exact arithmetic. ``inf`` when an
    infinite bound meets a nonzero multiplier or reduced cost.
    """

    def __init__(self, a, lo, hi, lb, ub):
        a = sp.csr_matrix(a, dtype=np.float64)
        self.at = a.T.tocsr()
        self.abs_at = abs(self.at)
        self.k = np.diff(self.at.indptr) + 2
        self.lo, self.hi = np.asarray(lo, float), np.asarray(hi, float)
        self.lb, self.ub = np.asarray(lb, float), np.asarray(ub, float)
        self.n_rows = a.shape[0]

    @classmethod
    def of(cls, model) -> "DualBound":
        return cls(model.matrix(), model.row_lo, model.row_hi, model.lb, model.ub)

    def __call__(self, c, y) -> float:
        """The bound for objective ``c`` (max) and multipliers ``y`` (the better of y, -y:
        solvers differ in their sign conventions and both are valid)."""
        c = np.asarray(c, dtype=np.float64).reshape(-1)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if y.size != self.n_rows or not np.all(np.isfinite(y)):
            y = np.zeros(self.n_rows)
        return min(self._bound(c, y), self._bound(c, -y))

    def _bound(self, c, y) -> float:
        lo, hi, lb, ub = self.lo, self.hi, self.lb, self.ub
        # a multiplier on an infinite side is useless (and would make the bound infinite)
        y = np.where((y > 0) & ~np.isfinite(hi), 0.0, y)
        y = np.where((y < 0) & ~np.isfinite(lo), 0.0, y)
        row_terms = np.where(y > 0, y * np.where(np.isfinite(hi), hi, 0.0),
                             y * np.where(np.isfinite(lo), lo, 0.0))
        r = c - self.at @ y
        # |rounding error of r_j| <= gamma_k (|c_j| + sum_i |A_ij y_i|)
        r_err = 1.01 * self.k * _EPS / (1 - self.k * _EPS) * (np.abs(c) + self.abs_at @ np.abs(y))
        rl, rh = r - r_err, r + r_err
        if np.any((rh > 0) & ~np.isfinite(ub)) or np.any((rl < 0) & ~np.isfinite(lb)):
            return math.inf
        with np.errstate(invalid="ignore"):
            at_ub = np.where(np.isfinite(ub), np.maximum(rl * ub, rh * ub), -np.inf)
            at_lb = np.where(np.isfinite(lb), np.maximum(rl * lb, rh * lb), -np.inf)
        col_terms = np.maximum(at_ub, at_lb)
        col_terms = np.where(np.isneginf(col_terms), 0.0, col_terms)  # free var, r == 0
        total = float(np.sum(row_terms) + np.sum(col_terms))
        mag = float(np.sum(np.abs(row_terms)) + np.sum(np.abs(col_terms)))
        if not math.isfinite(total):
            return math.inf
        return total + 1.01 * (row_terms.size + col_terms.size + 2) * _EPS * mag + 1e-300


class WarmLP:
    """A continuous LP built once; :meth:`maximize` returns rigorous bounds per objective.

    Parameters
    ----------
    model : a :class:`~dynid.milp.SparseModel` (integrality is ignored: its LP relaxation).
    time_limit : seconds for each :meth:`maximize` call (the remaining objectives get the
        bound of the multipliers 0, still valid).
    """

    def __init__(self, model, time_limit: float | None = None):
        import highspy

        self._hs = highspy
        self.n_vars, self.n_rows = model.n_vars, model.n_rows
        self.lb = np.array(model.lb, dtype=np.float64)
        self.ub = np.maximum(np.array(model.ub, dtype=np.float64), self.lb)
        a = model.matrix()
        self.dual = DualBound(a, model.row_lo, model.row_hi, self.lb, self.ub)
        self.time_limit = time_limit
        self.stats = {"lps": 0, "failed": 0}
        self._a = a
        self._row_lo, self._row_hi = np.asarray(model.row_lo), np.asarray(model.row_hi)
        self._highs = None
        self._prev = np.zeros(0, np.int32)
        self.infeasible = False   # the last LP proven empty (a Farkas ray, checked in float64)
        self.x = None    # HiGHS's primal point of the last solve (a guide only, never a bound)

    def _build(self):
        hs = self._hs
        a = self._a.tocsc()
        a.sort_indices()
        lp = hs.HighsLp()
        lp.num_col_, lp.num_row_ = self.n_vars, self.n_rows
        lp.col_cost_ = np.zeros(self.n_vars)
        lp.col_lower_ = self.lb
        lp.col_upper_ = self.ub
        inf = hs.kHighsInf
        lp.row_lower_ = np.where(np.isfinite(self._row_lo), self._row_lo, -inf)
        lp.row_upper_ = np.where(np.isfinite(self._row_hi), self._row_hi, inf)
        lp.a_matrix_.format_ = hs.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr.astype(np.int32)
        lp.a_matrix_.index_ = a.indices.astype(np.int32)
        lp.a_matrix_.value_ = a.data.astype(np.float64)
        lp.sense_ = hs.ObjSense.kMaximize
        h = quiet_highs(hs)
        h.passModel(lp)
        self._highs = h

    def set_var_bounds(self, idx, lb, ub) -> None:
        """Tighten (or change) variable bounds in place, keeping the HiGHS basis."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        lb = np.broadcast_to(np.asarray(lb, float), idx.shape)
        ub = np.maximum(np.broadcast_to(np.asarray(ub, float), idx.shape), lb)
        self.lb[idx], self.ub[idx] = lb, ub
        self.dual.lb, self.dual.ub = self.lb, self.ub
        if self._highs is not None:
            self._highs.changeColsBounds(idx.size, idx.astype(np.int32), self.lb[idx],
                                         self.ub[idx])

    def _duals(self, c) -> np.ndarray | None:
        """HiGHS's row duals for max c.x (None when it produced none)."""
        h = self._highs
        nz = np.flatnonzero(c).astype(np.int32)
        if self._prev.size:
            h.changeColsCost(self._prev.size, self._prev, np.zeros(self._prev.size))
        h.changeColsCost(nz.size, nz, c[nz])
        self._prev = nz
        self.x = None
        self.infeasible = False
        try:
            h.run()
        except Exception:
            return None
        if h.getModelStatus() == self._hs.HighsModelStatus.kInfeasible:
            self.infeasible = self._farkas()
            return None
        sol = h.getSolution()
        if not getattr(sol, "dual_valid", True):
            return None
        x = np.asarray(sol.col_value, dtype=np.float64)
        self.x = x if x.size == self.n_vars else None
        y = np.asarray(sol.row_dual, dtype=np.float64)
        return y if y.size == self.n_rows else None

    def _farkas(self) -> bool:
        """Whether HiGHS's dual ray proves the LP empty in float64: with the objective 0 its
        weak-duality bound is below 0, which no feasible point allows."""
        try:
            status, has, ray = self._highs.getDualRay()
        except Exception:
            return False
        ray = np.asarray(ray, dtype=np.float64)
        if not has or ray.size != self.n_rows:
            return False
        return bool(self.dual(np.zeros(self.n_vars), ray) < 0)

    def maximize(self, objectives) -> np.ndarray:
        """Rigorous upper bounds of ``max c.x`` for each row ``c`` of ``objectives``
        (``-inf`` where a dual ray proves the LP empty)."""
        if self._highs is None:
            self._build()
        C = sp.csr_matrix(objectives, dtype=np.float64)
        out = np.empty(C.shape[0])
        t0 = time.perf_counter()
        zero = np.zeros(self.n_rows)
        for k in range(C.shape[0]):
            c = C.getrow(k).toarray().ravel()
            # HiGHS's dual feasibility tolerance is absolute: an objective of size 1e-8 would
            # pass as optimal at any basis. Solve and bound with c scaled to size ~1 by a power
            # of two (exact), then scale the bound back.
            top = float(np.max(np.abs(c))) if c.size else 0.0
            s = 2.0 ** -np.round(np.log2(top)) if 0 < top < math.inf else 1.0
            c = c * s
            y = None
            if self.time_limit is None or time.perf_counter() - t0 <= self.time_limit:
                y = self._duals(c)
                self.stats["lps"] += 1
                if y is None and self.infeasible:
                    out[k] = -math.inf
                    continue
                if y is None:
                    self.stats["failed"] += 1
            out[k] = self.dual(c, zero if y is None else y) / s
        return out

    def minimize(self, objectives) -> np.ndarray:
        """Rigorous lower bounds of ``min c.x`` for each row ``c``."""
        return -self.maximize(-sp.csr_matrix(objectives, dtype=np.float64))


def branch_and_bound(model, target: float, *, max_nodes: int = 64,
                     time_limit: float | None = None) -> float | None:
    """A rigorous bound of the optimum of the MIP ``model`` that needs no solver tolerance:
    LP branch-and-bound over its binaries in which every node's value is the float64
    weak-duality bound of :class:`WarmLP`.

    A node is closed when its bound is at most ``target`` (typically the MIP solver's own best
    bound plus a hair) or when HiGHS's LP point is integral on the binaries still free; the
    answer is the largest bound of the closed nodes (for ``min``: the smallest lower bound).
    Branching takes the most fractional binary of HiGHS's LP point (a guide only: whatever
    point HiGHS returns, each closed node's bound holds for every integer point in it, and the
    nodes cover the whole binary domain). Quadratic rows are left out (a relaxation: still an
    upper bound). ``None`` when ``model`` has integers that are not binaries, a quadratic
    objective, or when ``max_nodes`` / ``time_limit`` run out first. A node whose LP a dual
    ray proves empty is closed with no bound.

    Example
    -------
    >>> from dynid.milp import SparseModel
    >>> m = SparseModel(); x = m.add_vars(2, 0.0, 1.0, vtype="B")
    >>> _ = m.add_row(x, [2.0, 2.0], hi=3.0)       # at most one of the two
    >>> m.set_objective(x, [1.0, 1.0], sense="max")
    >>> b = branch_and_bound(m, 1.0)               # the LP alone gives 1.5
    >>> bool(1.0 <= b < 1.0 + 1e-9)
    True
    """
    if len(model.objective_quad()[2]) or not math.isfinite(target):
        return None
    ints = np.flatnonzero(model.integer_mask)
    lb0, ub0 = np.asarray(model.lb, float), np.asarray(model.ub, float)
    if np.any(lb0[ints] < 0) or np.any(ub0[ints] > 1):
        return None
    sign = 1.0 if model.sense == "max" else -1.0
    c = sign * model.objective_vector()
    const = sign * float(model.obj_constant)
    goal = sign * float(target) - const
    lp = WarmLP(model)
    lo_b, hi_b = np.ceil(lb0[ints] - 1e-9), np.floor(ub0[ints] + 1e-9)
    stack = [(lo_b, hi_b)]
    best, nodes, t0 = -math.inf, 0, time.perf_counter()
    while stack:
        if nodes >= max_nodes or (time_limit is not None
                                  and time.perf_counter() - t0 > time_limit):
            return None
        lo, hi = stack.pop()
        nodes += 1
        lp.set_var_bounds(ints, lo, hi)
        val = float(lp.maximize(c[None, :])[0])
        closed = val <= goal
        if not closed:
            x = lp.x
            free = lo < hi
            frac = np.abs(x[ints] - np.round(x[ints])) if x is not None else np.ones(ints.size)
            frac = np.where(free, frac, -1.0)
            if not free.any() or (x is not None and frac.max() <= 1e-9):
                # nothing left to branch on, or the LP point is integral: this node's bound
                # is final (it may lie above the target: then the solver's bound was low)
                closed = True
            else:
                k = int(np.argmax(frac))
                first = 1.0 if x is not None and x[ints[k]] > 0.5 else 0.0
                for v in (1.0 - first, first):      # the likelier side is popped first
                    nlo, nhi = lo.copy(), hi.copy()
                    nlo[k] = nhi[k] = v
                    stack.append((nlo, nhi))
        if closed:
            best = max(best, val)
    if not math.isfinite(best):
        return None
    value = best + const
    value += 4 * _EPS * (abs(best) + abs(const))     # the addition's rounding
    return sign * value


def quiet_highs(highspy=None, threads: int | None = 1):
    """A ``highspy.Highs()`` that prints nothing, not even its banner (it goes to stdout
    otherwise, breaking ``--json -``); ``threads=None`` keeps HiGHS's default."""
    if highspy is None:
        import highspy

    # the banner is written by the C++ constructor on file descriptor 1: silence fd 1 for it
    with _quiet_fd(1):
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("log_to_console", False)
    if threads is not None:
        h.setOptionValue("threads", int(threads))
    return h


class _quiet_fd:
    """Redirect a file descriptor to /dev/null for the duration of a block."""

    def __init__(self, fd: int):
        self.fd = fd

    def __enter__(self):
        import os
        import sys

        try:
            sys.stdout.flush()
        except Exception:
            pass
        try:
            self.saved = os.dup(self.fd)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.fd)
            os.close(null)
        except OSError:
            self.saved = None
        return self

    def __exit__(self, *exc):
        import os

        if self.saved is not None:
            os.dup2(self.saved, self.fd)
            os.close(self.saved)
        return False


__all__ = ["WarmLP", "DualBound", "branch_and_bound", "quiet_highs"]
