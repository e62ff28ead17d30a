"""A small LP, built once and solved for many objectives with HiGHS, with *safe* bounds.

Used by optimisation-based bound tightening: the LP (a triangle relaxation) is passed to one
HiGHS instance and only the objective changes between solves, so HiGHS warm-starts from the
previous basis. The bound reported for each objective is not HiGHS's objective value but a
bound recomputed in float64 from its row duals (any dual vector gives a valid bound when every
variable has finite bounds), padded for rounding: it stays valid whatever the solver's
tolerances, and a solve that stops early still yields a valid (looser) bound.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from dynid.errors import SolverError


class RowLP:
    """Variables with finite bounds and rows ``lo <= A x <= hi``, accumulated as triplets.

    Example
    -------
    >>> lp = RowLP()
    >>> v = lp.add_vars(2, [0.0, 0.0], [1.0, 1.0])
    >>> lp.add_rows(v, np.array([[1.0, 1.0]]), [-np.inf], [1.5])
    >>> ub = lp.maximize(np.array([[1.0, 1.0]]))      # max x0 + x1 s.t. x0 + x1 <= 1.5
    >>> bool(abs(ub[0] - 1.5) < 1e-6)
    True
    """

    def __init__(self):
        self.lb: list = []
        self.ub: list = []
        self._r, self._c, self._v = [], [], []
        self.row_lo: list = []
        self.row_hi: list = []
        self.n_vars = 0
        self.n_rows = 0
        self._highs = None

    def add_vars(self, n, lb, ub) -> np.ndarray:
        lb = np.broadcast_to(np.asarray(lb, dtype=np.float64), (n,))
        ub = np.broadcast_to(np.asarray(ub, dtype=np.float64), (n,))
        if not (np.all(np.isfinite(lb)) and np.all(np.isfinite(ub))):
            raise SolverError("RowLP needs finite variable bounds (they make dual bounds safe)")
        idx = np.arange(self.n_vars, self.n_vars + n)
        self.lb.extend(lb.tolist())
        self.ub.extend(np.maximum(ub, lb).tolist())
        self.n_vars += n
        self._highs = None
        return idx

    def add_rows(self, cols, a, lo, hi) -> None:
        a = sp.coo_matrix(a)
        cols = np.asarray(cols, dtype=np.int64)
        self._r.append(a.row + self.n_rows)
        self._c.append(cols[a.col])
        self._v.append(a.data)
        k = a.shape[0]
        self.row_lo.extend(np.broadcast_to(np.asarray(lo, dtype=np.float64), (k,)).tolist())
        self.row_hi.extend(np.broadcast_to(np.asarray(hi, dtype=np.float64), (k,)).tolist())
        self.n_rows += k
        self._highs = None

    def matrix(self) -> sp.csr_matrix:
        if not self._r:
            return sp.csr_matrix((self.n_rows, self.n_vars))
        return sp.csr_matrix((np.concatenate(self._v), (np.concatenate(self._r),
                                                        np.concatenate(self._c))),
                             shape=(self.n_rows, self.n_vars))

    # ------------------------------------------------------------------ solving
    def _build(self):
        import highspy

        a = self.matrix().tocsc()
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        lp = highspy.HighsLp()
        lp.num_col_ = self.n_vars
        lp.num_row_ = self.n_rows
        lp.col_cost_ = np.zeros(self.n_vars)
        lp.col_lower_ = np.asarray(self.lb)
        lp.col_upper_ = np.asarray(self.ub)
        inf = highspy.kHighsInf
        lp.row_lower_ = np.where(np.isfinite(self.row_lo), self.row_lo, -inf)
        lp.row_upper_ = np.where(np.isfinite(self.row_hi), self.row_hi, inf)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr.astype(np.int32)
        lp.a_matrix_.index_ = a.indices.astype(np.int32)
        lp.a_matrix_.value_ = a.data
        lp.sense_ = highspy.ObjSense.kMaximize
        h.passModel(lp)
        self._highs = h
        self._a = a.tocsr()
        self._at = a.T.tocsr()
        self._abs_at = abs(self._at)
        self._lb = np.asarray(self.lb)
        self._ub = np.asarray(self.ub)
        self._rl = np.asarray(self.row_lo)
        self._ru = np.asarray(self.row_hi)

    def set_var_bounds(self, idx, lb, ub) -> None:
        """Tighten variable bounds in place (keeps the HiGHS instance and its basis)."""
        idx = np.asarray(idx, dtype=np.int64)
        lb = np.broadcast_to(np.asarray(lb, float), idx.shape)
        ub = np.broadcast_to(np.asarray(ub, float), idx.shape)
        for j, l, u in zip(idx, lb, ub):
            self.lb[j], self.ub[j] = float(l), float(max(u, l))
        if self._highs is not None:
            self._lb[idx] = lb
            self._ub[idx] = np.maximum(ub, lb)
            self._highs.changeColsBounds(idx.size, idx.astype(np.int32), self._lb[idx],
                                         self._ub[idx])

    def maximize(self, objectives, time_limit: float | None = None) -> np.ndarray:
        """Safe upper bounds of ``max c^T x`` for each row ``c`` of ``objectives``."""
        import time

        if self._highs is None:
            self._build()
        h = self._highs
        objs = sp.csr_matrix(objectives)
        out = np.empty(objs.shape[0])
        t0 = time.perf_counter()
        allc = np.arange(self.n_vars, dtype=np.int32)
        prev_nz = allc
        for k in range(objs.shape[0]):
            c = objs.getrow(k).toarray().ravel()
            if time_limit is not None and time.perf_counter() - t0 > time_limit:
                out[k] = self._dual_bound(c, np.zeros(self.n_rows))
                continue
            # reset only the costs set last time, then set the new ones
            h.changeColsCost(prev_nz.size, prev_nz, np.zeros(prev_nz.size))
            nz = np.flatnonzero(c).astype(np.int32)
            h.changeColsCost(nz.size, nz, c[nz])
            prev_nz = nz
            h.run()
            y = np.asarray(h.getSolution().row_dual, dtype=np.float64)
            if y.size != self.n_rows:
                y = np.zeros(self.n_rows)
            out[k] = min(self._dual_bound(c, y), self._dual_bound(c, -y))
        return out

    def _dual_bound(self, c: np.ndarray, y: np.ndarray) -> float:
        """max c^T x <= sum_r sup(y_r (A x)_r) + sum_j sup((c - A^T y)_j x_j), padded."""
        # any y is a valid multiplier: drop entries that would multiply an infinite side
        y = np.where(np.abs(y) < 1e-13, 0.0, y)
        y = np.where((y > 0) & ~np.isfinite(self._ru), 0.0, y)
        y = np.where((y < 0) & ~np.isfinite(self._rl), 0.0, y)
        with np.errstate(invalid="ignore"):
            row_terms = np.where(y > 0, y * self._ru, np.where(y < 0, y * self._rl, 0.0))
            red = c - self._at @ y
            col_terms = np.where(red > 0, red * self._ub, red * self._lb)
        total = row_terms.sum() + col_terms.sum()
        if not np.isfinite(total):
            return np.inf
        mag = (np.abs(row_terms).sum() + np.abs(col_terms).sum()
               + self._abs_at.dot(np.abs(y)).dot(np.maximum(np.abs(self._lb),
                                                                np.abs(self._ub))))
        return float(total + 1e-12 * mag + 1e-9 * (1.0 + abs(total)))
