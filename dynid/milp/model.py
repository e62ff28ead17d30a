"""A solver-neutral sparse optimisation model: bounded variables, sparse rows, quadratic terms.

Encoders build a :class:`SparseModel` straight from weight matrices (rows are accumulated as COO
triplets, one CSR matrix is built at solve time), and :func:`dynid.milp.solve` hands it to a thin
backend (gurobipy, highspy or pyscipopt) through that solver's matrix API.

The model is

    maximise / minimise   constant + c^T x + sum_k q_k x[i_k] x[j_k]
    subject to            row_lo <= A x <= row_hi
                          lin_r^T x + sum_k Q_rk x[i_k] x[j_k]  (<= | >=)  rhs_r   (quadratic rows)
                          lb <= x <= ub,  x[j] in {0, 1} for binaries

Quadratic terms are listed as triplets ``(i, j, q)`` meaning ``q * x[i] * x[j]`` (no factor 1/2;
repeated pairs add up; ``(i, j)`` and ``(j, i)`` both count).

Example
-------
>>> m = SparseModel()
>>> x = m.add_vars(2, lb=0.0, ub=[4.0, 3.0])
>>> b = m.add_vars(1, vtype="B")
>>> _ = m.add_row([x[0], x[1]], [1.0, 1.0], hi=5.0)
>>> _ = m.add_rows([x[1], b[0]], [[1.0, -3.0]], hi=0.0)   # x1 <= 3 b
>>> m.set_objective([x[0], x[1], b[0]], [1.0, 2.0, -0.5], sense="max")
>>> m.size()
{'variables': 3, 'binaries': 1, 'constraints': 2, 'quadratic': False}
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from dynid.errors import DynidError, ShapeError

VTYPES = ("C", "B", "I")


class ModelError(DynidError):
    """A malformed optimisation model (bad index, NaN coefficient, empty bound interval)."""


def _vector(value, n: int, what: str, allow_inf: bool = True) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    arr = arr.reshape(-1)
    if arr.shape[0] != n:
        raise ShapeError(f"{what} has {arr.shape[0]} entries, expected {n}")
    if np.isnan(arr).any():
        raise ModelError(f"{what} contains NaN: give finite numbers (or +-inf for no bound)")
    if not allow_inf and np.isinf(arr).any():
        raise ModelError(f"{what} contains inf: coefficients must be finite")
    return arr


def _triplets(quad, what: str):
    """Validate ``(rows, cols, vals)`` quadratic triplets; returns three flat arrays."""
    if quad is None:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    try:
        qi, qj, qv = quad
    except (TypeError, ValueError):
        raise ModelError(f"{what} must be a triple (rows, cols, vals)") from None
    qi = np.asarray(qi, dtype=np.int64).reshape(-1)
    qj = np.asarray(qj, dtype=np.int64).reshape(-1)
    qv = _vector(qv, qi.shape[0], f"{what} values", allow_inf=False) if qi.size else np.zeros(0)
    if qj.shape[0] != qi.shape[0]:
        raise ShapeError(f"{what}: rows, cols and vals must have the same length "
                         f"({qi.shape[0]}, {qj.shape[0]}, {qv.shape[0]})")
    return qi, qj, qv


@dataclass(frozen=True)
class QuadRow:
    """One quadratic constraint ``lin_coef . x[lin_idx] + sum q x_i x_j  (sense)  rhs``."""

    lin_idx: np.ndarray
    lin_coef: np.ndarray
    qi: np.ndarray
    qj: np.ndarray
    qv: np.ndarray
    sense: str  # "<=" or ">="
    rhs: float
    name: str | None = None

    @property
    def convex(self) -> bool:
        """True when the feasible set of this row is convex (Q PSD for <=, NSD for >=)."""
        sign = 1.0 if self.sense == "<=" else -1.0
        return _is_psd(self.qi, self.qj, sign * self.qv)


def _is_psd(qi, qj, qv, tol: float = 1e-10) -> bool:
    """Whether x -> sum q x_i x_j is convex, checked on the variables it touches."""
    if qv.size == 0:
        return True
    used, inv = np.unique(np.concatenate([qi, qj]), return_inverse=True)
    k = used.size
    if k > 3000:  # too large for a dense eigenvalue check: call it nonconvex (safe choice)
        return False
    Q = np.zeros((k, k))
    np.add.at(Q, (inv[: qi.size], inv[qi.size:]), qv)
    Q = 0.5 * (Q + Q.T)
    lam_min = float(np.linalg.eigvalsh(Q)[0])
    return lam_min >= -tol * max(1.0, float(np.abs(Q).max()))


class SparseModel:
    """Variables with bounds and types, sparse linear rows, quadratic objective/constraints.

    Build it incrementally (``add_vars``, ``add_rows``, ``add_row``, ``add_quadratic_constraint``,
    ``set_objective``, ``set_start``) and pass it to :func:`dynid.milp.solve`. Indices returned by
    ``add_vars`` are plain integer arrays into the model's variable vector.

    Example
    -------
    >>> m = SparseModel()
    >>> x = m.add_vars(2, lb=-1.0, ub=1.0)
    >>> m.set_objective(x, [1.0, 1.0], sense="max")
    >>> m.n_vars, m.n_rows, m.is_quadratic
    (2, 0, False)
    """

    def __init__(self, name: str = "dynid"):
        self.name = name
        self._lb: list[np.ndarray] = []
        self._ub: list[np.ndarray] = []
        self._vt: list[np.ndarray] = []
        self._vnames: dict[int, str] = {}
        self._n_vars = 0
        # rows as COO chunks
        self._ri: list[np.ndarray] = []
        self._rj: list[np.ndarray] = []
        self._rv: list[np.ndarray] = []
        self._rlo: list[np.ndarray] = []
        self._rhi: list[np.ndarray] = []
        self._rnames: dict[int, str] = {}
        self._n_rows = 0
        self.quad_rows: list[QuadRow] = []
        # objective
        self.sense = "max"
        self.obj_constant = 0.0
        self._obj_idx = np.zeros(0, np.int64)
        self._obj_coef = np.zeros(0)
        self._obj_q = _triplets(None, "quad")
        # MIP start: index -> value
        self._start: dict[int, float] = {}
        self._cache: dict = {}

    # ------------------------------------------------------------------ variables
    def add_vars(self, n: int, lb=-math.inf, ub=math.inf, vtype: str = "C",
                 names=None) -> np.ndarray:
        """Add ``n`` variables; returns their indices.

        Parameters
        ----------
        n : number of variables.
        lb, ub : scalar or length-``n`` bounds; ``-inf``/``inf`` for none (the default: free,
            unlike scipy/HiGHS whose default lower bound is 0). Binaries are clipped to [0, 1].
        vtype : "C" continuous, "B" binary, "I" integer.
        names : optional list of ``n`` names (or a prefix string) for solver logs / LP files.

        Example
        -------
        >>> m = SparseModel(); m.add_vars(3, lb=0.0).tolist()
        [0, 1, 2]
        """
        n = int(n)
        if n < 0:
            raise ModelError(f"cannot add {n} variables: n must be >= 0")
        if vtype not in VTYPES:
            raise ModelError(f"variable type {vtype!r} is not supported: use 'C', 'B' or 'I'")
        lb = _vector(lb, n, "lb").copy()
        ub = _vector(ub, n, "ub").copy()
        if vtype == "B":
            lb, ub = np.maximum(lb, 0.0), np.minimum(ub, 1.0)
        if np.any(lb > ub):
            k = int(np.argmax(lb > ub))
            raise ModelError(f"variable bound interval is empty (lb={lb[k]} > ub={ub[k]}): "
                             "check the bounds passed to add_vars")
        if np.any(lb == math.inf) or np.any(ub == -math.inf):
            raise ModelError("a lower bound of +inf or an upper bound of -inf is not allowed")
        idx = np.arange(self._n_vars, self._n_vars + n, dtype=np.int64)
        self._lb.append(lb)
        self._ub.append(ub)
        self._vt.append(np.full(n, vtype, dtype="<U1"))
        if names is not None:
            if isinstance(names, str):
                names = [f"{names}[{k}]" for k in range(n)]
            if len(names) != n:
                raise ShapeError(f"names has {len(names)} entries, expected {n}")
            self._vnames.update({int(i): str(s) for i, s in zip(idx, names)})
        self._n_vars += n
        self._cache.clear()
        return idx

    def add_var(self, lb=-math.inf, ub=math.inf, vtype: str = "C", name=None) -> int:
        """Add one variable; returns its index."""
        return int(self.add_vars(1, lb, ub, vtype, None if name is None else [name])[0])

    def set_bounds(self, idx, lb=None, ub=None) -> None:
        """Change the bounds of existing variables (``None`` keeps the current one)."""
        idx = self._check_idx(idx, "set_bounds index")
        lbs, ubs = self.lb.copy(), self.ub.copy()
        if lb is not None:
            lbs[idx] = _vector(lb, idx.size, "lb")
        if ub is not None:
            ubs[idx] = _vector(ub, idx.size, "ub")
        binary = self.vtype == "B"
        lbs[binary], ubs[binary] = np.maximum(lbs[binary], 0.0), np.minimum(ubs[binary], 1.0)
        if np.any(lbs[idx] > ubs[idx]):
            raise ModelError("set_bounds would make a variable's bound interval empty")
        self._lb, self._ub = [lbs], [ubs]
        self._vt = [self.vtype.copy()]
        self._cache.clear()

    def _check_idx(self, idx, what: str) -> np.ndarray:
        arr = np.asarray(idx, dtype=np.int64).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= self._n_vars):
            bad = arr[(arr < 0) | (arr >= self._n_vars)][0]
            raise ModelError(f"{what} refers to variable {bad}, but the model has "
                             f"{self._n_vars} variables: add them first with add_vars")
        return arr

    # ------------------------------------------------------------------ rows
    def add_rows(self, cols, A, lo=-math.inf, hi=math.inf, names=None) -> np.ndarray:
        """Add rows ``lo <= A @ x[cols] <= hi``; returns the row indices.

        Parameters
        ----------
        cols : variable indices, length ``k`` (the columns of ``A``).
        A : dense ``(m, k)`` array or scipy sparse matrix; a 1-D array is one row.
        lo, hi : scalar or length-``m`` bounds (``-inf``/``inf`` for one-sided rows;
            ``lo == hi`` for equalities).

        Example
        -------
        >>> m = SparseModel(); x = m.add_vars(2)
        >>> m.add_rows(x, [[1.0, -1.0], [1.0, 1.0]], lo=[0.0, -1.0], hi=[0.0, 1.0]).tolist()
        [0, 1]
        """
        cols = self._check_idx(cols, "add_rows cols")
        if sp.issparse(A):
            A = sp.coo_matrix(A)
            m, k = A.shape
            ri, cj, val = A.row.astype(np.int64), A.col.astype(np.int64), A.data.astype(float)
        else:
            A = np.asarray(A, dtype=np.float64)
            if A.ndim == 1:
                A = A[None, :]
            if A.ndim != 2:
                raise ShapeError(f"A must be 2-D, got shape {A.shape}")
            m, k = A.shape
            ri, cj = np.nonzero(A)
            val = A[ri, cj]
        if k != cols.size:
            raise ShapeError(f"A has {k} columns but {cols.size} variable indices were given")
        if val.size and not np.all(np.isfinite(val)):
            raise ModelError("row coefficients contain NaN or inf: coefficients must be finite")
        lo = _vector(lo, m, "row lo")
        hi = _vector(hi, m, "row hi")
        if np.any(lo > hi):
            r = int(np.argmax(lo > hi))
            raise ModelError(f"row bounds are empty (lo={lo[r]} > hi={hi[r]}): check lo/hi")
        if np.any(lo == math.inf) or np.any(hi == -math.inf):
            raise ModelError("a row lower bound of +inf or upper bound of -inf is not allowed")
        rows = np.arange(self._n_rows, self._n_rows + m, dtype=np.int64)
        self._ri.append(ri.astype(np.int64) + self._n_rows)
        self._rj.append(cols[cj])
        self._rv.append(val)
        self._rlo.append(lo)
        self._rhi.append(hi)
        if names is not None:
            if isinstance(names, str):
                names = [f"{names}[{r}]" for r in range(m)]
            self._rnames.update({int(r): str(s) for r, s in zip(rows, names)})
        self._n_rows += m
        self._cache.clear()
        return rows

    def add_row(self, idx, coef, lo=-math.inf, hi=math.inf, name=None) -> int:
        """Add one row ``lo <= sum coef_k x[idx_k] <= hi``; returns its index.

        Example
        -------
        >>> m = SparseModel(); x = m.add_vars(2)
        >>> m.add_row(x, [1.0, 2.0], hi=3.0)
        0
        """
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        coef = _vector(coef, idx.size, "row coef", allow_inf=False)
        names = None if name is None else [name]
        return int(self.add_rows(idx, coef[None, :], lo, hi, names)[0])

    def add_quadratic_constraint(self, quad, lin_idx=(), lin_coef=(), rhs=0.0,
                                 sense: str = "<=", name=None) -> int:
        """Add ``lin_coef . x[lin_idx] + sum_k q_k x[i_k] x[j_k]  (<= or >=)  rhs``.

        Convex rows (``<=`` with a PSD quadratic form, e.g. an L2 ball) are solved by every
        quadratic backend as they are; nonconvex ones need Gurobi (NonConvex=2) or SCIP.
        Returns the index of the quadratic row.

        Example
        -------
        >>> m = SparseModel(); v = m.add_vars(2)
        >>> m.add_quadratic_constraint((v, v, [1.0, 1.0]), rhs=4.0)   # ||v||_2 <= 2
        0
        """
        if sense not in ("<=", ">="):
            raise ModelError(f"quadratic constraint sense {sense!r} must be '<=' or '>='")
        qi, qj, qv = _triplets(quad, "quadratic constraint")
        self._check_idx(qi, "quadratic constraint")
        self._check_idx(qj, "quadratic constraint")
        li = self._check_idx(lin_idx, "quadratic constraint lin_idx")
        lc = _vector(lin_coef, li.size, "quadratic constraint lin_coef", allow_inf=False)
        rhs = float(rhs)
        if not math.isfinite(rhs):
            raise ModelError("quadratic constraint rhs must be finite")
        self.quad_rows.append(QuadRow(li, lc, qi, qj, qv, sense, rhs, name))
        self._cache.clear()
        return len(self.quad_rows) - 1

    def add_l2_ball(self, idx, radius: float, center=None) -> int:
        """Add the convex constraint ``||x[idx] - center||_2 <= radius``.

        Example
        -------
        >>> m = SparseModel(); v = m.add_vars(3)
        >>> m.add_l2_ball(v, 1.5)
        0
        """
        idx = self._check_idx(idx, "add_l2_ball idx")
        c = np.zeros(idx.size) if center is None else _vector(center, idx.size, "center", False)
        radius = float(radius)
        if not radius >= 0 or not math.isfinite(radius):
            raise ModelError(f"ball radius must be finite and >= 0, got {radius}")
        # ||x - c||^2 = x.x - 2 c.x + c.c <= r^2
        return self.add_quadratic_constraint((idx, idx, np.ones(idx.size)), idx, -2.0 * c,
                                             radius ** 2 - float(c @ c), "<=")

    # ------------------------------------------------------------------ objective / start
    def set_objective(self, lin_idx=(), lin_coef=(), sense: str = "max", quad=None,
                      constant: float = 0.0) -> None:
        """Set the objective ``constant + lin_coef . x[lin_idx] + sum q x_i x_j``.

        Parameters
        ----------
        lin_idx, lin_coef : linear part (repeated indices add up).
        sense : "max" or "min".
        quad : ``(rows, cols, vals)`` triplets or None. Maximising a convex form (for example
            ``||x - y||^2``) is nonconvex: Gurobi (NonConvex=2) or SCIP solve it exactly.
        constant : objective offset.

        Example
        -------
        >>> m = SparseModel(); x = m.add_vars(2, -1.0, 1.0)
        >>> m.set_objective(quad=(x, x, [1.0, 1.0]), sense="max")   # max ||x||^2
        >>> m.objective_convex
        False
        """
        if sense not in ("max", "min"):
            raise ModelError(f"objective sense {sense!r} must be 'max' or 'min'")
        li = self._check_idx(lin_idx, "objective lin_idx")
        lc = _vector(lin_coef, li.size, "objective lin_coef", allow_inf=False)
        qi, qj, qv = _triplets(quad, "objective quad")
        self._check_idx(qi, "objective quad")
        self._check_idx(qj, "objective quad")
        constant = float(constant)
        if not math.isfinite(constant):
            raise ModelError("objective constant must be finite")
        self.sense, self.obj_constant = sense, constant
        self._obj_idx, self._obj_coef, self._obj_q = li, lc, (qi, qj, qv)
        self._cache.clear()

    def set_start(self, idx, values) -> None:
        """Give a (partial) MIP start: values for the variables ``idx``."""
        idx = self._check_idx(idx, "set_start idx")
        vals = _vector(values, idx.size, "start values", allow_inf=False)
        self._start.update({int(i): float(v) for i, v in zip(idx, vals)})

    def clear_start(self) -> None:
        self._start.clear()

    # ------------------------------------------------------------------ views
    @property
    def n_vars(self) -> int:
        return self._n_vars

    @property
    def n_rows(self) -> int:
        return self._n_rows

    @property
    def lb(self) -> np.ndarray:
        return np.concatenate(self._lb) if self._lb else np.zeros(0)

    @property
    def ub(self) -> np.ndarray:
        return np.concatenate(self._ub) if self._ub else np.zeros(0)

    @property
    def vtype(self) -> np.ndarray:
        return np.concatenate(self._vt) if self._vt else np.zeros(0, dtype="<U1")

    @property
    def integer_mask(self) -> np.ndarray:
        return self.vtype != "C"

    @property
    def n_binaries(self) -> int:
        return int(np.count_nonzero(self.vtype == "B"))

    @property
    def n_integers(self) -> int:
        """Binary plus general integer variables."""
        return int(np.count_nonzero(self.integer_mask))

    @property
    def is_mip(self) -> bool:
        return self.n_integers > 0

    @property
    def has_quadratic_objective(self) -> bool:
        return bool(np.any(self._obj_q[2] != 0))

    @property
    def is_quadratic(self) -> bool:
        """True when the objective or any constraint has quadratic terms."""
        return self.has_quadratic_objective or bool(self.quad_rows)

    @property
    def objective_convex(self) -> bool:
        """True when the objective is convex for its sense (PSD for min, NSD for max)."""
        if "objective_convex" not in self._cache:
            qi, qj, qv = self._obj_q
            sign = 1.0 if self.sense == "min" else -1.0
            self._cache["objective_convex"] = _is_psd(qi, qj, sign * qv)
        return self._cache["objective_convex"]

    @property
    def is_convex(self) -> bool:
        """Continuous relaxation is convex: convex objective and convex quadratic rows."""
        return self.objective_convex and all(q.convex for q in self.quad_rows)

    @property
    def start(self) -> dict:
        return dict(self._start)

    def var_name(self, i: int) -> str | None:
        return self._vnames.get(int(i))

    def row_name(self, r: int) -> str | None:
        return self._rnames.get(int(r))

    def size(self) -> dict:
        """Model size: ``{"variables", "binaries", "constraints", "quadratic"}``.

        ``constraints`` counts linear rows plus quadratic rows.
        """
        return {"variables": self.n_vars, "binaries": self.n_binaries,
                "constraints": self.n_rows + len(self.quad_rows), "quadratic": self.is_quadratic}

    def matrix(self) -> sp.csr_matrix:
        """The linear rows as one CSR matrix ``(n_rows, n_vars)`` (duplicates summed)."""
        if "csr" not in self._cache:
            if self._ri:
                ri, rj, rv = (np.concatenate(c) for c in (self._ri, self._rj, self._rv))
            else:
                ri = rj = np.zeros(0, np.int64)
                rv = np.zeros(0)
            A = sp.csr_matrix((rv, (ri, rj)), shape=(self._n_rows, self._n_vars))
            A.sum_duplicates()
            A.eliminate_zeros()
            self._cache["csr"] = A
        return self._cache["csr"]

    @property
    def row_lo(self) -> np.ndarray:
        return np.concatenate(self._rlo) if self._rlo else np.zeros(0)

    @property
    def row_hi(self) -> np.ndarray:
        return np.concatenate(self._rhi) if self._rhi else np.zeros(0)

    def objective_vector(self) -> np.ndarray:
        """Dense linear objective ``c`` of length ``n_vars``."""
        c = np.zeros(self._n_vars)
        np.add.at(c, self._obj_idx, self._obj_coef)
        return c

    def objective_quad(self):
        """Quadratic objective triplets ``(rows, cols, vals)``."""
        return self._obj_q

    @staticmethod
    def _quad_value(q, x) -> float:
        qi, qj, qv = q
        return float(np.sum(qv * x[qi] * x[qj])) if qv.size else 0.0

    # ------------------------------------------------------------------ checks
    def objective_value(self, x) -> float:
        """The objective at ``x``, evaluated in float64 (independent of any solver)."""
        x = np.asarray(x, dtype=np.float64)
        return self.obj_constant + float(self.objective_vector() @ x) + self._quad_value(
            self._obj_q, x)

    def violation(self, x) -> float:
        """Largest violation at ``x`` of bounds, rows, quadratic rows and integrality."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size != self._n_vars:
            raise ShapeError(f"x has {x.size} entries, the model has {self._n_vars} variables")
        worst = 0.0
        if x.size:
            worst = max(worst, float(np.max(self.lb - x, initial=0.0)),
                        float(np.max(x - self.ub, initial=0.0)))
            ints = self.integer_mask
            if ints.any():
                worst = max(worst, float(np.max(np.abs(x[ints] - np.round(x[ints])))))
        if self._n_rows:
            ax = self.matrix() @ x
            worst = max(worst, float(np.max(self.row_lo - ax, initial=0.0)),
                        float(np.max(ax - self.row_hi, initial=0.0)))
        for q in self.quad_rows:
            val = float(q.lin_coef @ x[q.lin_idx]) + self._quad_value((q.qi, q.qj, q.qv), x)
            worst = max(worst, val - q.rhs if q.sense == "<=" else q.rhs - val)
        return worst

    def __repr__(self) -> str:
        s = self.size()
        return (f"SparseModel({s['variables']} vars, {s['binaries']} binaries, "
                f"{s['constraints']} rows, {'quadratic' if s['quadratic'] else 'linear'}, "
                f"{self.sense})")
