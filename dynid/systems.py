"""The ODE catalogue: every system is defined once with CasADi symbols.

A :class:`System` knows its state names, its parameters (with defaults), a default sampling box
and its right-hand side ``x' = f(x; p)``, or ``x' = f(x, u; p)`` for a plant with inputs (named
inputs and a declared input box; the input is held constant over each step: zero-order hold).
From that one definition it gives

- ``rhs(x, u=None)``: the vector field, numpy, batched over samples;
- ``step_map(x, dt, method, u=None)``: one step of the discrete-time map
  ``x_{k+1} = F(x_k[, u_k])``, where
  ``method`` is ``flow`` (the exact flow over ``dt``: a CasADi CVODES integrator, batched with
  ``Function.map``; or ``scipy.integrate.solve_ivp`` as the independent reference), ``euler``
  (forward Euler) or ``rk4`` (one classical Runge-Kutta step);
- ``casadi_rhs()``: the symbols and the expression, e.g. for exact Jacobians.

Catalogue (``list_systems()``): ``brusselator``, ``van_der_pol``, ``fitzhugh_nagumo``,
``lotka_volterra``, ``duffing``, ``pendulum`` (damped), ``linear`` (from A, B with a constant
input u), and the plants with inputs of :mod:`dynid.plants`: ``pendulum_torque``,
``cart_pole``, ``mass_spring_damper``, ``linear_input``. Users add systems with :meth:`System.from_casadi`, :meth:`System.from_python` and
:func:`register_system`.

Example
-------
>>> import numpy as np
>>> sys = get_system("brusselator", b=2.0)
>>> sys.step_map(np.array([1.0, 1.0]), 0.15, "euler")      # x + tau f(x), f(1, 1) = (-1, 1)
array([0.85, 1.15])
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Callable, Mapping, Sequence

import numpy as np

from dynid.errors import ConfigError, ShapeError, UnknownSystemError
from dynid.plants import PLANTS, sin as _sin

METHODS = ("flow", "euler", "rk4")
INTEGRATORS = ("casadi", "scipy")

# CVODES settings of the exact flow. rtol 1e-10 leaves ~1e-8 errors on the stiffer corners of
# the Brusselator box, so one decade tighter keeps the flow within 1e-8 of a DOP853 reference.
FLOW_RTOL = 1e-11
FLOW_ATOL = 1e-13
SCIPY_RTOL = 1e-11
SCIPY_ATOL = 1e-12
SCIPY_METHOD = "DOP853"

_CHUNK = 256          # samples per batched CVODES run (measured best of 128..1024)
_CACHE_SIZE = 32      # built integrators / mapped functions kept per process


class _LRU:
    """A small thread-safe LRU cache of built CasADi functions (building costs ~10-100 ms)."""

    def __init__(self, size: int):
        self.size = size
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, build: Callable):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        value = build()
        with self._lock:
            self._d[key] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value


_FUNCTIONS = _LRU(_CACHE_SIZE)


def _jsonable_params(params: Mapping) -> dict:
    out = {}
    for k, v in params.items():
        arr = np.asarray(v, dtype=float)
        out[k] = float(arr) if arr.ndim == 0 else arr.tolist()
    return out


class System:
    """An ODE ``x' = f(x; p)``, or a plant ``x' = f(x, u; p)`` with inputs, with named states,
    parameters, a default state box and (for plants) a declared input box.

    Build one with :func:`get_system` (catalogue), :meth:`from_casadi`, :meth:`from_python`
    or :func:`linear_system`; do not call the constructor directly.

    Attributes
    ----------
    name : str
    state_names : tuple of str
    input_names : tuple of str
        Empty for an autonomous system.
    params : dict
        Parameter values (floats or nested lists for matrices), JSON-able.
    domain_lo, domain_hi : ndarray
        The default sampling box of the states.
    input_lo, input_hi : ndarray
        The declared input box (empty arrays when autonomous).
    state_units, input_units : tuple of str
        Units ("" when not declared).

    Example
    -------
    >>> sys = get_system("van_der_pol", mu=2.0)
    >>> sys.rhs(np.array([[2.0, 1.0]]))          # (y, mu (1 - x^2) y - x)
    array([[ 1., -8.]])
    >>> plant = get_system("pendulum_torque")
    >>> plant.input_names, plant.rhs([0.0, 0.0], u=[2.0]).tolist()   # omega' = tau / (m l^2)
    (('tau',), [0.0, 2.0])
    """

    def __init__(self, name: str, state_names: Sequence[str], params: Mapping,
                 domain_lo, domain_hi, *, casadi=None, python_rhs=None,
                 p_order: Sequence[str] = (), structure: str = "", description: str = "",
                 numeric_rhs=None, input_names: Sequence[str] = (), input_lo=None,
                 input_hi=None, state_units: Sequence[str] | None = None,
                 input_units: Sequence[str] | None = None):
        self.name = str(name)
        self.state_names = tuple(str(s) for s in state_names)
        self.input_names = tuple(str(s) for s in input_names)
        self.params = _jsonable_params(params)
        self.domain_lo = np.asarray(domain_lo, dtype=float).reshape(-1)
        self.domain_hi = np.asarray(domain_hi, dtype=float).reshape(-1)
        self.description = description
        n, m = len(self.state_names), len(self.input_names)
        if len(set(self.state_names)) != n or n == 0:
            raise ConfigError(f"system {name!r}: state names {self.state_names} must be "
                              "non-empty and distinct")
        if len(set(self.input_names)) != m or set(self.input_names) & set(self.state_names):
            raise ConfigError(f"system {name!r}: input names {self.input_names} must be "
                              "distinct and differ from the state names")
        if self.domain_lo.shape != (n,) or self.domain_hi.shape != (n,):
            raise ShapeError(f"system {name!r}: domain bounds must have {n} entries (one per "
                             f"state), got {self.domain_lo.shape} and {self.domain_hi.shape}")
        if not np.all(self.domain_lo < self.domain_hi):
            raise ConfigError(f"system {name!r}: domain lo {self.domain_lo.tolist()} must be "
                              f"below hi {self.domain_hi.tolist()} in every state")
        self.input_lo = (-np.ones(m) if input_lo is None else
                         np.asarray(input_lo, dtype=float).reshape(-1))
        self.input_hi = (np.ones(m) if input_hi is None else
                         np.asarray(input_hi, dtype=float).reshape(-1))
        if self.input_lo.shape != (m,) or self.input_hi.shape != (m,):
            raise ShapeError(f"system {name!r}: the input box needs {m} entries per side (one "
                             f"per input {list(self.input_names)}), got "
                             f"{self.input_lo.size} and {self.input_hi.size}")
        if not (np.all(np.isfinite(self.input_lo)) and np.all(np.isfinite(self.input_hi))
                and np.all(self.input_lo < self.input_hi)):
            raise ConfigError(f"system {name!r}: input box lo {self.input_lo.tolist()} must be "
                              f"finite and below hi {self.input_hi.tolist()}")
        self.state_units = _units(name, "state", state_units, n)
        self.input_units = _units(name, "input", input_units, m)
        self._casadi = casadi              # (x_sym, u_sym, p_sym, expr) or None
        self._python_rhs = python_rhs      # f(x, [u,] params dict) -> (n, nx) or None
        self._p_order = tuple(p_order)     # params that form the CasADi parameter vector
        # what, besides the parameter vector, fixes the expression (linear: A and B)
        self._structure = structure
        # the same formula as the CasADi expression, evaluated on numpy columns: catalogue
        # systems get fast batched numpy RHS (Euler, RK4, scipy reference) from their one
        # definition; f(columns, [input columns,] params dict) -> list of columns
        self._numeric_rhs = numeric_rhs
        self._rhs_fn = None
        if casadi is not None:
            import casadi as ca

            x, u, p, expr = casadi
            self._rhs_fn = ca.Function(f"{self.name}_rhs", [x, u, p], [expr], ["x", "u", "p"],
                                       ["xdot"])

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_casadi(cls, name: str, x, rhs, *, u=None, p=None, params: Mapping | None = None,
                    state_names: Sequence[str] | None = None,
                    input_names: Sequence[str] | None = None, domain=None, input_box=None,
                    description: str = "", state_units=None, input_units=None) -> "System":
        """A system from CasADi symbols: ``x`` (SX/MX column), ``rhs`` (same size),
        optionally an input column ``u`` (a plant ``x' = f(x, u)``; ``input_box = (lo, hi)``,
        default ``[-1, 1]`` per input) and a parameter vector ``p`` whose entries are named,
        in order, by ``params`` (name -> default value).

        ``domain`` is ``(lo, hi)``; default ``[-1, 1]`` in every state.

        Example
        -------
        >>> import casadi as ca
        >>> x = ca.SX.sym("x", 1); k = ca.SX.sym("k")
        >>> decay = System.from_casadi("decay", x, -k * x, p=k, params={"k": 2.0})
        >>> float(decay.step_map(np.array([1.0]), 0.5, "euler")[0])
        0.0
        >>> u = ca.SX.sym("u", 1)
        >>> tank = System.from_casadi("tank", x, -x + u, u=u, input_box=([0.0], [2.0]))
        >>> float(tank.step_map([0.0], 0.5, "euler", u=[2.0])[0])
        1.0
        """
        import casadi as ca

        if not isinstance(x, (ca.SX, ca.MX)) or not x.is_column():
            raise ConfigError(f"system {name!r}: x must be a CasADi SX/MX column symbol")
        nx = x.numel()
        rhs = ca.vec(rhs) if isinstance(rhs, (ca.SX, ca.MX)) else ca.vertcat(*rhs)
        if rhs.numel() != nx:
            raise ShapeError(f"system {name!r}: rhs has {rhs.numel()} entries but x has {nx}")
        params = dict(params or {})
        if p is None:
            p = type(x).sym("p", 0)
        else:
            p = ca.vec(p) if isinstance(p, (ca.SX, ca.MX)) else ca.vertcat(*p)
        if p.numel() != len(params):
            raise ConfigError(f"system {name!r}: p has {p.numel()} entries but params names "
                              f"{len(params)} ({list(params)}); give one default per entry")
        if u is None:
            u = type(x).sym("u", 0)
        elif not isinstance(u, (ca.SX, ca.MX)) or not u.is_column():
            raise ConfigError(f"system {name!r}: u must be a CasADi SX/MX column symbol")
        nu = u.numel()
        names = tuple(state_names) if state_names else tuple(f"x{i + 1}" for i in range(nx))
        inputs = tuple(input_names) if input_names else tuple(f"u{i + 1}" for i in range(nu))
        if len(inputs) != nu:
            raise ShapeError(f"system {name!r}: {len(inputs)} input names for {nu} inputs")
        lo, hi = domain if domain is not None else (-np.ones(nx), np.ones(nx))
        ulo, uhi = input_box if input_box is not None else (None, None)
        return cls(name, names, params, lo, hi, casadi=(x, u, p, rhs), p_order=list(params),
                   structure=str(rhs), description=description, input_names=inputs,
                   input_lo=ulo, input_hi=uhi, state_units=state_units,
                   input_units=input_units)

    @classmethod
    def from_python(cls, name: str, rhs: Callable, state_names: Sequence[str],
                    params: Mapping | None = None, domain=None,
                    description: str = "", *, input_names: Sequence[str] = (),
                    input_box=None, state_units=None, input_units=None) -> "System":
        """A system from a numpy right-hand side ``rhs(x, p)`` (or ``rhs(x, u, p)`` when
        ``input_names`` are given).

        ``x`` has shape ``(n, n_state)`` (batched over the first axis), ``u`` ``(n, n_input)``,
        ``p`` is the dict of parameter values; it returns an array of the same shape as ``x``.
        The flow of such a system uses ``scipy.integrate.solve_ivp`` (it has no CasADi form).

        Example
        -------
        >>> decay = System.from_python("decay", lambda x, p: -p["k"] * x, ["x"], {"k": 2.0})
        >>> round(float(decay.step_map(np.array([1.0]), 0.5, "flow")[0]), 8)   # exp(-1)
        0.36787944
        """
        if not callable(rhs):
            raise ConfigError(f"system {name!r}: rhs must be a callable f(x, p)")
        n = len(state_names)
        lo, hi = domain if domain is not None else (-np.ones(n), np.ones(n))
        ulo, uhi = input_box if input_box is not None else (None, None)
        return cls(name, state_names, dict(params or {}), lo, hi, python_rhs=rhs,
                   p_order=list(params or {}), structure=f"python:{id(rhs)}",
                   description=description, input_names=input_names, input_lo=ulo,
                   input_hi=uhi, state_units=state_units, input_units=input_units)

    def with_params(self, **params) -> "System":
        """A copy with some parameter values replaced (names must be existing parameters).

        Only parameters of the CasADi parameter vector (or of a Python RHS) can change here;
        catalogue systems with structural parameters (``linear``'s A and B) are rebuilt by
        :func:`get_system`.
        """
        _check_param_names(self.name, params, self._p_order)
        new = dict(self.params)
        for k, v in params.items():
            old = np.asarray(self.params[k], dtype=float)
            val = np.asarray(v, dtype=float)
            if val.shape != old.shape:
                raise ConfigError(f"system {self.name!r}: parameter {k!r} must have shape "
                                  f"{old.shape}, got {val.shape}")
            new[k] = val
        other = object.__new__(System)
        other.__dict__.update(self.__dict__)
        other.params = _jsonable_params(new)
        return other

    # ------------------------------------------------------------------ properties
    @property
    def n_state(self) -> int:
        return len(self.state_names)

    @property
    def n_input(self) -> int:
        """Number of inputs (0 for an autonomous system)."""
        return len(self.input_names)

    @property
    def domain(self) -> tuple[np.ndarray, np.ndarray]:
        """The default sampling box ``(lo, hi)`` (copies)."""
        return self.domain_lo.copy(), self.domain_hi.copy()

    @property
    def input_box(self) -> tuple[np.ndarray, np.ndarray]:
        """The declared input box ``(u_lo, u_hi)`` (float64 copies; empty when autonomous)."""
        return self.input_lo.copy(), self.input_hi.copy()

    @property
    def has_casadi(self) -> bool:
        return self._rhs_fn is not None

    def param_vector(self) -> np.ndarray:
        """Values of the CasADi parameter vector ``p`` in order (flattened)."""
        parts = [np.ravel(np.asarray(self.params[k], dtype=float)) for k in self._p_order]
        return np.concatenate(parts) if parts else np.zeros(0)

    def casadi_rhs(self):
        """The CasADi symbols and the right-hand side expression: ``(x_sym, p_sym, expr)`` for
        an autonomous system, ``(x_sym, u_sym, p_sym, expr)`` for a plant with inputs.

        Use it for exact Jacobians, e.g. ``casadi.jacobian(expr, x_sym)``; substitute
        :meth:`param_vector` for ``p_sym``. :meth:`casadi_function` gives ``f(x, u, p)`` as a
        CasADi Function for both kinds.
        """
        if self._casadi is None:
            raise ConfigError(f"system {self.name!r} was defined by a Python function and has "
                              "no CasADi form; define it with System.from_casadi for symbolic use")
        x, u, p, expr = self._casadi
        return (x, p, expr) if self.n_input == 0 else (x, u, p, expr)

    def casadi_function(self):
        """The vector field as a CasADi ``Function f(x, u, p) -> xdot`` (``u`` has size 0 for
        an autonomous system; pass :meth:`param_vector` as ``p``).

        Example
        -------
        >>> f = get_system("pendulum_torque").casadi_function()
        >>> sys = get_system("pendulum_torque")
        >>> np.asarray(f([0.0, 1.0], [0.5], sys.param_vector())).ravel().round(6).tolist()
        [1.0, 0.0]
        """
        self.casadi_rhs()   # the error for Python-RHS systems
        return self._rhs_fn

    def to_dict(self) -> dict:
        """Provenance: name, state names, parameters and default domain (JSON-able); plants
        also give ``input_names`` and ``input_box``."""
        out = {"name": self.name, "state_names": list(self.state_names),
               "params": dict(self.params), "domain": {"lo": self.domain_lo.tolist(),
                                                       "hi": self.domain_hi.tolist()}}
        if self.n_input:
            out["input_names"] = list(self.input_names)
            out["input_box"] = {"lo": self.input_lo.tolist(), "hi": self.input_hi.tolist()}
        return out

    def __repr__(self) -> str:
        inputs = f", inputs={list(self.input_names)}" if self.n_input else ""
        return f"System({self.name!r}, states={list(self.state_names)}{inputs}, " \
               f"params={self.params})"

    # ------------------------------------------------------------------ evaluation
    def _as_batch(self, x) -> tuple[np.ndarray, bool]:
        arr = np.asarray(x, dtype=np.float64)
        single = arr.ndim == 1
        if single:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.n_state:
            raise ShapeError(f"system {self.name!r} has {self.n_state} states "
                             f"{list(self.state_names)}: states must have shape (n, "
                             f"{self.n_state}) or ({self.n_state},), got {np.shape(x)}")
        return arr, single

    def input_batch(self, u, n: int) -> np.ndarray:
        """Inputs as an ``(n, n_input)`` float64 array (a single input row is broadcast);
        checks the shape, and that an autonomous system gets none."""
        m = self.n_input
        if m == 0:
            if u is not None and np.size(u) > 0:
                raise ShapeError(f"system {self.name!r} has no inputs, but u of shape "
                                 f"{np.shape(u)} was given")
            return np.zeros((n, 0))
        if u is None:
            raise ConfigError(f"system {self.name!r} has inputs {list(self.input_names)}: pass "
                              f"u of shape (n, {m}) (held constant over the step)")
        arr = np.asarray(u, dtype=np.float64)
        if arr.ndim == 1 and arr.shape == (m,):
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != m or arr.shape[0] not in (1, n):
            raise ShapeError(f"system {self.name!r} has {m} input(s) "
                             f"{list(self.input_names)}: u must have shape ({n}, {m}) or "
                             f"({m},), got {np.shape(u)}")
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"system {self.name!r}: the inputs u contain NaN or inf")
        return np.broadcast_to(arr, (n, m))

    def _mapped(self, kind: str, fn_build: Callable, size: int):
        key = (kind, self.name, self._structure, size)
        return _FUNCTIONS.get(key, lambda: fn_build(size))

    def _call_mapped(self, kind: str, fn_build: Callable, X: np.ndarray, U: np.ndarray,
                     chunk: int, progress=None) -> np.ndarray:
        """Evaluate ``fn_build(m)`` (a function of ``(states (nx, m), inputs (nu, m), p)``
        returning (nx, m), e.g. a CasADi function mapped over m columns) on all rows of ``X``
        (and ``U``) in blocks of ``chunk`` rows; the last, shorter block gets its own (cached)
        function."""
        p = self.param_vector()
        n = X.shape[0]
        out = np.empty_like(X)
        for start in range(0, n, chunk):
            block = X[start:start + chunk]
            m = block.shape[0]
            fn = self._mapped(kind, fn_build, m)
            ub = np.ascontiguousarray(U[start:start + m].T)
            out[start:start + m] = np.asarray(fn(block.T, ub, p)).reshape(self.n_state, m).T
            if progress is not None:
                progress(start + m, n)
        return out

    def rhs(self, x, u=None) -> np.ndarray:
        """The vector field ``f(x[, u])``; ``x`` of shape ``(n, n_state)`` or ``(n_state,)``,
        ``u`` of shape ``(n, n_input)`` or ``(n_input,)`` (plants only)."""
        X, single = self._as_batch(x)
        U = self.input_batch(u, X.shape[0])
        if self._python_rhs is not None:
            out = self._python_rhs_eval(X, U)
        elif self._numeric_rhs is not None:
            out = self._numeric_eval(X, U)
        else:
            out = self._call_mapped("rhs", lambda m: self._rhs_fn.map(m), X, U, 4096)
        return out[0] if single else out

    def _numeric_eval(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        cols = [X[:, i] for i in range(self.n_state)]
        if self.n_input:
            cols = self._numeric_rhs(cols, [U[:, j] for j in range(self.n_input)], self.params)
        else:
            cols = self._numeric_rhs(cols, self.params)
        return np.stack([np.broadcast_to(np.asarray(c, dtype=np.float64), X.shape[:1])
                         for c in cols], axis=1)

    def _python_rhs_eval(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        if self.n_input:
            out = self._python_rhs(X, np.asarray(U), dict(self.params))
        else:
            out = self._python_rhs(X, dict(self.params))
        out = np.asarray(out, dtype=np.float64)
        if out.shape != X.shape:
            raise ShapeError(f"system {self.name!r}: the Python rhs returned shape {out.shape} "
                             f"for input shape {X.shape}; it must be batched over the first axis")
        return out

    def step_map(self, x, dt: float, method: str = "flow", u=None, *,
                 integrator: str = "casadi", progress=None) -> np.ndarray:
        """One step of the discrete-time map ``x_{k+1} = F(x_k[, u_k])`` over a time step
        ``dt``; the input ``u_k`` is held constant over the step (zero-order hold).

        Parameters
        ----------
        x : array, shape (n, n_state) or (n_state,)
        dt : float > 0
        method : {"flow", "euler", "rk4"}
            ``flow`` = exact flow (integrated to rtol 1e-11 / atol 1e-13 per sample by CVODES
            in blocks of 256 samples, or by
            scipy's DOP853 at rtol 1e-11 / atol 1e-12 with ``integrator="scipy"``);
            ``euler`` = ``x + dt f(x, u)``; ``rk4`` = one classical RK4 step of size ``dt``.
        u : array, shape (n, n_input) or (n_input,)
            The inputs of a plant (required there; must be None for an autonomous system).
        integrator : {"casadi", "scipy"}
            Only for ``flow``. Python-RHS systems always use scipy.
        progress : callable(done, total), optional
            Called after each batch of the CasADi flow.

        Example
        -------
        >>> sys = get_system("linear", A=[[-1.0]])
        >>> round(float(sys.step_map(np.array([1.0]), 1.0)[0]), 9)        # exp(-1)
        0.367879441
        >>> msd = get_system("linear_input", A=[[0.0]], B=[[1.0]])        # x' = u
        >>> round(float(msd.step_map([0.0], 0.5, u=[3.0])[0]), 9)         # ZOH: x = 0.5 u
        1.5
        """
        dt = _check_dt(dt)
        method = _check_choice("method", method, METHODS)
        integrator = _check_choice("integrator", integrator, INTEGRATORS)
        X, single = self._as_batch(x)
        U = self.input_batch(u, X.shape[0])
        if method == "euler":
            out = X + dt * self.rhs(X, U)
        elif method == "rk4":
            k1 = self.rhs(X, U)
            k2 = self.rhs(X + 0.5 * dt * k1, U)
            k3 = self.rhs(X + 0.5 * dt * k2, U)
            k4 = self.rhs(X + dt * k3, U)
            out = X + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        elif integrator == "scipy" or not self.has_casadi:
            out = np.stack([self._scipy_solution(row, np.array([0.0, dt]), ur)[-1]
                            for row, ur in zip(X, U)])
        else:
            out = self._casadi_flow(X, U, dt, progress)
        return out[0] if single else out

    def flow_integrator_name(self, method: str, integrator: str = "casadi") -> str:
        """The provenance label of how ``step_map`` computes ``method``."""
        if method != "flow":
            return "explicit"
        if integrator == "scipy" or not self.has_casadi:
            return f"scipy-{SCIPY_METHOD}"
        return "casadi-cvodes"

    def flow_tolerances(self, method: str, integrator: str = "casadi") -> tuple[float, float]:
        """``(rtol, atol)`` used by ``step_map`` (0, 0 for the explicit maps)."""
        if method != "flow":
            return 0.0, 0.0
        if integrator == "scipy" or not self.has_casadi:
            return SCIPY_RTOL, SCIPY_ATOL
        return FLOW_RTOL, FLOW_ATOL

    def _casadi_flow(self, X: np.ndarray, U: np.ndarray, dt: float, progress=None) -> np.ndarray:
        import casadi as ca

        x, _u, p, _expr = self._casadi
        nx, nu = self.n_state, self.n_input

        def build(m: int):
            # m samples integrated as ONE ODE of size nx*m: the RHS is the symbolic map of f
            # over the columns, so CVODES runs once per block instead of once per sample
            # (~10x the throughput of Function.map over a per-sample integrator). CVODES's
            # error test is a weighted RMS over all components, so the tolerances are divided
            # by sqrt(m): RMS <= tol/sqrt(m) implies every component's weighted error <= tol,
            # i.e. each sample gets at least the per-sample FLOW_RTOL / FLOW_ATOL test.
            # The block's inputs are parameters of the integrator: held constant over dt.
            xs = type(x).sym("X", nx, m)
            us = type(x).sym("U", nu, m)
            ode = ca.vec(self._rhs_fn.map(m)(xs, us, p))
            scale = float(np.sqrt(m))
            opts = {"abstol": FLOW_ATOL / scale, "reltol": FLOW_RTOL / scale,
                    "max_num_steps": 20000, "linear_multistep_method": "adams"}
            F = ca.integrator(f"{self.name}_flow_{m}", "cvodes",
                              {"x": ca.vec(xs), "p": ca.vertcat(p, ca.vec(us)), "ode": ode},
                              0.0, float(dt), opts)

            def run(block_t, u_t, ps):
                pu = np.concatenate([ps, np.reshape(u_t, -1, order="F")])
                xf = F(x0=np.reshape(block_t, -1, order="F"), p=pu)["xf"]
                return np.reshape(np.asarray(xf), (nx, m), order="F")

            return run

        try:
            out = self._call_mapped(f"flow-{float(dt)!r}", build, X, U, _CHUNK, progress)
            if not np.all(np.isfinite(out)):
                raise RuntimeError("non-finite states")
            return out
        except RuntimeError as exc:  # CVODES failure, e.g. finite-time blow-up in the box
            raise ConfigError(f"system {self.name!r}: the CasADi flow over dt={dt} failed "
                              f"({str(exc).splitlines()[-1][:160]}); the solution may blow up "
                              "in this box: shrink the domain or dt") from None

    def _scipy_rhs(self, u_row=None):
        p = self.param_vector()
        u_row = np.zeros(0) if u_row is None else np.asarray(u_row, dtype=np.float64)
        if self._python_rhs is not None:
            return lambda t, z: self._python_rhs_eval(z[None, :], u_row[None, :])[0]
        if self._numeric_rhs is not None:
            params, fn = self.params, self._numeric_rhs
            if self.n_input:
                return lambda t, z: np.array(fn(list(z), list(u_row), params), dtype=np.float64)
            return lambda t, z: np.array(fn(list(z), params), dtype=np.float64)
        f = self._rhs_fn
        return lambda t, z: np.asarray(f(z, u_row, p)).ravel()

    def _scipy_solution(self, x0: np.ndarray, t_eval: np.ndarray, u_row=None,
                        method: str = SCIPY_METHOD) -> np.ndarray:
        """States at the times ``t_eval`` (t_eval[0] = 0) by solve_ivp, the input (if any)
        held at ``u_row``; shape (len, n)."""
        from scipy.integrate import solve_ivp

        sol = solve_ivp(self._scipy_rhs(u_row), (0.0, float(t_eval[-1])),
                        np.asarray(x0, float), method=method, t_eval=t_eval, rtol=SCIPY_RTOL,
                        atol=SCIPY_ATOL)
        if not sol.success or sol.y.shape[1] != len(t_eval):
            raise ConfigError(f"system {self.name!r}: solve_ivp failed from x0={x0.tolist()} "
                              f"({sol.message}); the solution may blow up: shrink the domain "
                              "or the horizon")
        return sol.y.T


def _units(system: str, what: str, units, n: int) -> tuple[str, ...]:
    if units is None:
        return ("",) * n
    units = tuple(str(v) for v in units)
    if len(units) != n:
        raise ShapeError(f"system {system!r}: {len(units)} {what} units for {n} {what}s")
    return units


# ---------------------------------------------------------------------- validation helpers
def _check_dt(dt) -> float:
    return _check_positive(dt, "dt", "time step")


def _check_positive(v, what: str, noun: str = "number") -> float:
    """A positive finite float, or a ConfigError naming ``what``."""
    try:
        value = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}={v!r} is not a number: give a positive {noun}") from None
    if not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{what}={v!r} must be a positive finite {noun}")
    return value


def _check_count(n, what: str = "sample count") -> int:
    """A positive integer (an integral float is accepted), or a ConfigError naming ``what``."""
    try:
        value = int(n)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} {n!r} must be a positive integer") from None
    if value != n or value < 1:
        raise ConfigError(f"{what} {n!r} must be a positive integer")
    return value


def _check_choice(what: str, value, choices) -> str:
    if value not in choices:
        raise ConfigError(f"{what} {value!r} is not one of {', '.join(choices)}")
    return value


def _check_param_names(system: str, given: Mapping, valid: Sequence[str]) -> None:
    unknown = [k for k in given if k not in valid]
    if unknown:
        raise ConfigError(f"system {system!r} has no parameter {', '.join(map(repr, unknown))}; "
                          f"valid parameters: {', '.join(valid) or '(none)'}")


# ---------------------------------------------------------------------- the catalogue
def _scalar_system(name, states, defaults, domain, rhs_of, description, *, inputs=(),
                   input_box=None, state_units=None, input_units=None):
    """A factory for a catalogue system with scalar parameters (all in the CasADi p vector).

    ``rhs_of(x, p)`` (or ``rhs_of(x, u, p)`` when ``inputs`` are named) is one formula on lists
    of columns that serves both the CasADi symbols and numpy arrays.
    """

    def factory(**params):
        _check_param_names(name, params, list(defaults))
        import casadi as ca

        values = {**defaults, **params}
        for k, v in values.items():
            try:
                values[k] = float(v)
            except (TypeError, ValueError):
                raise ConfigError(f"system {name!r}: parameter {k!r}={v!r} must be a number") \
                    from None
            if not np.isfinite(values[k]):
                raise ConfigError(f"system {name!r}: parameter {k!r} must be finite")
        x = ca.SX.sym("x", len(states))
        u = ca.SX.sym("u", len(inputs))
        p = ca.SX.sym("p", len(defaults))
        sym = {k: p[i] for i, k in enumerate(defaults)}
        xs = [x[i] for i in range(len(states))]
        if inputs:
            expr = ca.vertcat(*rhs_of(xs, [u[j] for j in range(len(inputs))], sym))
        else:
            expr = ca.vertcat(*rhs_of(xs, sym))
        ulo, uhi = input_box if input_box is not None else (None, None)
        return System(name, states, values, *domain, casadi=(x, u, p, expr),
                      p_order=list(defaults), structure="catalogue", description=description,
                      numeric_rhs=rhs_of, input_names=inputs, input_lo=ulo, input_hi=uhi,
                      state_units=state_units, input_units=input_units)

    factory.defaults = dict(defaults)
    factory.description = description
    return factory


def _brusselator(x, p):
    u, v = x
    return [p["a"] - (p["b"] + 1) * u + u ** 2 * v, p["b"] * u - u ** 2 * v]


def _van_der_pol(x, p):
    u, v = x
    return [v, p["mu"] * (1 - u ** 2) * v - u]


def _fitzhugh_nagumo(x, p):
    v, w = x
    return [v - v ** 3 / 3 - w + p["I"], p["eps"] * (v + p["a"] - p["b"] * w)]


def _lotka_volterra(x, p):
    u, v = x
    return [p["alpha"] * u - p["beta"] * u * v, p["delta"] * u * v - p["gamma"] * v]


def _duffing(x, p):
    u, v = x
    return [v, -p["delta"] * v - p["alpha"] * u - p["beta"] * u ** 3]


def _pendulum(x, p):
    th, om = x
    return [om, -(p["g"] / p["l"]) * _sin(th) - p["c"] * om]


def linear_system(A, B=None, u=None, *, state_names: Sequence[str] | None = None,
                  domain=None, name: str = "linear", inputs: bool = False,
                  input_names: Sequence[str] | None = None, input_box=None) -> System:
    """The linear system ``x' = A x + B u``.

    By default ``u`` is a constant parameter (zeros unless given). With ``inputs=True`` the
    columns of B are the plant's inputs (named ``u1..um`` unless ``input_names`` are given,
    input box ``input_box = (lo, hi)``, default ``[-1, 1]`` each), held constant over each
    step; ``u`` must then be left out.

    Example
    -------
    >>> sys = linear_system([[0.0, 1.0], [-1.0, 0.0]])      # harmonic oscillator
    >>> np.round(sys.step_map(np.array([1.0, 0.0]), np.pi / 2), 9) + 0.0
    array([ 0., -1.])
    >>> plant = linear_system([[0.0]], [[2.0]], inputs=True)  # x' = 2 u
    >>> plant.input_names, round(float(plant.step_map([1.0], 0.25, u=[1.0])[0]), 9)
    (('u1',), 1.5)
    """
    import casadi as ca

    try:
        A = np.atleast_2d(np.asarray(A, dtype=float))
    except (TypeError, ValueError):
        raise ConfigError(f"linear system: A={A!r} is not a numeric matrix") from None
    n = A.shape[0]
    if A.ndim != 2 or A.shape != (n, n) or n == 0:
        raise ShapeError(f"linear system: A must be square, got shape {A.shape}")
    if B is None:
        B = np.zeros((n, 0))
    try:
        B = np.asarray(B, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError(f"linear system: B={B!r} is not a numeric matrix") from None
    if B.ndim == 1:
        B = B.reshape(n, -1) if B.size % n == 0 and B.size else B.reshape(n, 0)
    if B.ndim != 2 or B.shape[0] != n:
        raise ShapeError(f"linear system: B must have {n} rows (one per state), got {B.shape}")
    m = B.shape[1]
    if inputs and u is not None:
        raise ConfigError("linear system: with inputs=True the columns of B are inputs; do not "
                          "give a constant u as well")
    if inputs and m == 0:
        raise ShapeError("linear system: inputs=True needs a B with at least one column")
    u = np.zeros(m) if u is None else np.asarray(u, dtype=float).reshape(-1)
    if u.shape != (m,):
        raise ShapeError(f"linear system: u must have {m} entries (columns of B), got {u.shape}")
    for what, arr in (("A", A), ("B", B), ("u", u)):
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"linear system: {what} contains NaN or inf")
    x = ca.SX.sym("x", n)
    p = ca.SX.sym("u", m)
    names = tuple(state_names) if state_names else tuple(f"x{i + 1}" for i in range(n))
    lo, hi = domain if domain is not None else (-2 * np.ones(n), 2 * np.ones(n))
    structure = json.dumps({"A": A.tolist(), "B": B.tolist(), "inputs": bool(inputs)})
    if inputs:
        expr = ca.mtimes(ca.DM(A), x) + ca.mtimes(ca.DM(B), p)
        params = {"A": A.tolist(), "B": B.tolist()}

        def numeric_u(cols, ucols, prm):
            X = np.stack(np.broadcast_arrays(*cols), axis=-1)
            U = np.stack(np.broadcast_arrays(*ucols), axis=-1)
            Y = X @ A.T + U @ B.T
            return [Y[..., i] for i in range(n)]

        ulo, uhi = input_box if input_box is not None else (None, None)
        unames = tuple(input_names) if input_names else tuple(f"u{j + 1}" for j in range(m))
        return System(name, names, params, lo, hi, casadi=(x, p, ca.SX.sym("p", 0), expr),
                      structure=structure, description="linear plant x' = A x + B u",
                      numeric_rhs=numeric_u, input_names=unames, input_lo=ulo, input_hi=uhi)
    expr = ca.mtimes(ca.DM(A), x) + (ca.mtimes(ca.DM(B), p) if m else 0)
    params = {"A": A.tolist(), "B": B.tolist(), "u": u.tolist()}

    def numeric(cols, prm):
        X = np.stack(np.broadcast_arrays(*cols), axis=-1)
        Y = X @ A.T + (B @ np.asarray(prm["u"], dtype=float) if m else 0.0)
        return [Y[..., i] for i in range(n)]

    return System(name, names, params, lo, hi, casadi=(x, ca.SX.sym("w", 0), p, expr),
                  p_order=["u"], structure=structure,
                  description="linear x' = A x + B u, u held constant", numeric_rhs=numeric)


def _linear_factory(**params):
    _check_param_names("linear", params, ["A", "B", "u"])
    A = params.get("A", [[0.0, 1.0], [-2.0, -0.5]])
    return linear_system(A, params.get("B"), params.get("u"))


_linear_factory.defaults = {"A": [[0.0, 1.0], [-2.0, -0.5]], "B": None, "u": None}
_linear_factory.description = "linear x' = A x + B u (u constant, zeros by default)"


def _linear_input_factory(**params):
    _check_param_names("linear_input", params, ["A", "B", "u_lo", "u_hi"])
    A = params.get("A", _linear_input_factory.defaults["A"])
    B = params.get("B", _linear_input_factory.defaults["B"])
    m = np.asarray(B, dtype=float).reshape(np.asarray(A, dtype=float).shape[0], -1).shape[1] \
        if np.size(B) else 0
    box = None
    if "u_lo" in params or "u_hi" in params:
        box = (np.broadcast_to(np.asarray(params.get("u_lo", -1.0), float), (m,)),
               np.broadcast_to(np.asarray(params.get("u_hi", 1.0), float), (m,)))
    return linear_system(A, B, inputs=True, name="linear_input", input_box=box)


_linear_input_factory.defaults = {"A": [[0.0, 1.0], [-2.0, -0.5]], "B": [[0.0], [1.0]]}
_linear_input_factory.description = "linear plant x' = A x + B u (u an input, box [-1, 1])"


def _plant_factories() -> dict:
    """Catalogue factories of the plants with inputs (:data:`dynid.plants.PLANTS`)."""
    return {name: _scalar_system(name, e["states"], e["params"], e["domain"], e["rhs"],
                                 e["description"], inputs=e["inputs"],
                                 input_box=e["input_box"], state_units=e["state_units"],
                                 input_units=e["input_units"])
            for name, e in PLANTS.items()}


_REGISTRY: dict[str, Callable[..., System]] = {
    "brusselator": _scalar_system(
        "brusselator", ("x", "y"), {"a": 1.0, "b": 3.0}, ([0.0, 0.0], [4.0, 5.0]), _brusselator,
        "Brusselator x' = a - (b+1) x + x^2 y, y' = b x - x^2 y"),
    "van_der_pol": _scalar_system(
        "van_der_pol", ("x", "y"), {"mu": 1.0}, ([-3.0, -3.0], [3.0, 3.0]), _van_der_pol,
        "Van der Pol x' = y, y' = mu (1 - x^2) y - x"),
    "fitzhugh_nagumo": _scalar_system(
        "fitzhugh_nagumo", ("v", "w"), {"a": 0.7, "b": 0.8, "eps": 0.08, "I": 0.875},
        ([-5.0, -5.0], [5.0, 5.0]), _fitzhugh_nagumo,
        "FitzHugh-Nagumo v' = v - v^3/3 - w + I, w' = eps (v + a - b w)"),
    "lotka_volterra": _scalar_system(
        "lotka_volterra", ("prey", "predator"),
        {"alpha": 1.5, "beta": 1.0, "delta": 1.0, "gamma": 3.0},
        ([0.1, 0.1], [6.0, 6.0]), _lotka_volterra,
        "Lotka-Volterra prey' = alpha prey - beta prey predator, "
        "predator' = delta prey predator - gamma predator"),
    "duffing": _scalar_system(
        "duffing", ("x", "v"), {"delta": 0.3, "alpha": -1.0, "beta": 1.0},
        ([-2.0, -2.0], [2.0, 2.0]), _duffing,
        "unforced Duffing x' = v, v' = -delta v - alpha x - beta x^3 (double well)"),
    "pendulum": _scalar_system(
        "pendulum", ("theta", "omega"), {"g": 9.81, "l": 1.0, "c": 0.5},
        ([-3.0, -4.0], [3.0, 4.0]), _pendulum,
        "damped pendulum theta' = omega, omega' = -(g/l) sin(theta) - c omega"),
    "linear": _linear_factory,
    **_plant_factories(),
    "linear_input": _linear_input_factory,
}
_CATALOGUE = tuple(_REGISTRY)


def list_systems() -> list[str]:
    """Names of the registered systems (catalogue first, then user-registered ones)."""
    return list(_REGISTRY)


def get_system(name: str, **params) -> System:
    """A system by name with parameters overriding the defaults.

    Raises :class:`UnknownSystemError` for an unknown name and :class:`ConfigError` for a
    parameter the system does not have.

    Example
    -------
    >>> get_system("brusselator").params
    {'a': 1.0, 'b': 3.0}
    """
    if isinstance(name, System):
        return name.with_params(**params) if params else name
    key = str(name).strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        raise UnknownSystemError(f"unknown system {name!r}; known systems: "
                                 f"{', '.join(list_systems())} (or register your own with "
                                 "dynid.systems.register_system)")
    return _REGISTRY[key](**params)


def register_system(system, name: str | None = None, *, overwrite: bool = False) -> str:
    """Add a :class:`System` (or a factory ``f(**params) -> System``) to the registry.

    Afterwards ``get_system(name, **params)`` works for it. Catalogue names cannot be
    replaced; a user name can be with ``overwrite=True``. Returns the registered name.

    Example
    -------
    >>> import casadi as ca
    >>> x = ca.SX.sym("x", 1)
    >>> register_system(System.from_casadi("cubic_decay", x, -x ** 3), overwrite=True)
    'cubic_decay'
    """
    if isinstance(system, System):
        key = name or system.name
        template = system

        def factory(**params):
            return template.with_params(**params) if params else template
    elif callable(system):
        if not name:
            raise ConfigError("register_system: give a name when registering a factory")
        key, factory = name, system
    else:
        raise ConfigError("register_system expects a System or a factory f(**params) -> System")
    key = str(key).strip().lower().replace("-", "_")
    if key in _CATALOGUE:
        raise ConfigError(f"system name {key!r} is a catalogue system; choose another name")
    if key in _REGISTRY and not overwrite:
        raise ConfigError(f"system {key!r} is already registered; pass overwrite=True to "
                          "replace it")
    _REGISTRY[key] = factory
    return key


def system_defaults(name: str) -> dict:
    """Default parameters of a registered system (for ``--help`` texts and ``dynid info``)."""
    return dict(get_system(name).params)
