"""A small LP, built once and solved for many objectives, with *safe* bounds.

:class:`RowLP` is the row-by-row builder the pair tightening of the invertibility queries
uses: variables with finite bounds and rows ``lo <= A x <= hi``; :meth:`RowLP.maximize` solves
it with :class:`dynid.milp.lp.WarmLP` (one warm-started HiGHS instance, only the objective
changes between solves), and every value is a float64 dual bound, valid whatever the solver's
tolerances (a solve that stops early still yields a valid, looser bound).
"""

from __future__ import annotations

import numpy as np

from dynid.errors import SolverError


class RowLP:
    """Variables with finite bounds and rows ``lo <= A x <= hi``, solved by dual bounds.

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
        from dynid.milp import SparseModel

        self.model = SparseModel("row-lp")
        self._lp = None

    @property
    def n_vars(self) -> int:
        return self.model.n_vars

    @property
    def n_rows(self) -> int:
        return self.model.n_rows

    def add_vars(self, n, lb, ub) -> np.ndarray:
        lb = np.broadcast_to(np.asarray(lb, dtype=np.float64), (n,))
        ub = np.broadcast_to(np.asarray(ub, dtype=np.float64), (n,))
        if not (np.all(np.isfinite(lb)) and np.all(np.isfinite(ub))):
            raise SolverError("RowLP needs finite variable bounds (they make dual bounds safe)")
        self._lp = None
        return self.model.add_vars(n, lb, np.maximum(ub, lb))

    def add_rows(self, cols, a, lo, hi) -> None:
        self._lp = None
        self.model.add_rows(cols, a, lo, hi)

    def matrix(self):
        return self.model.matrix()

    def set_var_bounds(self, idx, lb, ub) -> None:
        """Change variable bounds in place (keeps the HiGHS instance and its basis)."""
        idx = np.asarray(idx, dtype=np.int64)
        lb = np.broadcast_to(np.asarray(lb, float), idx.shape)
        ub = np.maximum(np.broadcast_to(np.asarray(ub, float), idx.shape), lb)
        self.model.set_bounds(idx, lb=lb, ub=ub)
        if self._lp is not None:
            self._lp.set_var_bounds(idx, lb, ub)

    def maximize(self, objectives, time_limit: float | None = None) -> np.ndarray:
        """Safe upper bounds of ``max c^T x`` for each row ``c`` of ``objectives``."""
        from dynid.milp.lp import WarmLP

        if self._lp is None:
            self._lp = WarmLP(self.model)
        self._lp.time_limit = time_limit
        return self._lp.maximize(objectives)


__all__ = ["RowLP"]
