"""Simulation: one-step pairs over a box and trajectories, as ``xarray.Dataset`` with provenance.

- :func:`one_step_pairs` samples states ``x`` in a box (uniform, Latin hypercube or grid) and
  returns ``x (sample, state)`` and ``x_next (sample, state)`` with ``x_next = F(x)`` for the
  exact flow over ``dt`` or an explicit map (Euler, RK4).
- :func:`trajectories` iterates the map from given initial states: ``x (trajectory, time,
  state)`` with a ``time`` coordinate.

Attributes on every dataset: ``kind`` ("pairs" | "trajectories"), ``system``, ``params`` (JSON
text), ``dt``, ``map``, ``integrator``, ``rtol``, ``atol``, ``seed``, ``sampling``,
``domain_lo``, ``domain_hi``, ``dynid_version`` (netCDF-safe: text, numbers, arrays).

Example
-------
>>> from dynid.systems import get_system
>>> ds = one_step_pairs(get_system("brusselator"), 100, 0.1, method="euler", sampling="lhs")
>>> ds.x.shape, ds.attrs["kind"], ds.state.values.tolist()
((100, 2), 'pairs', ['x', 'y'])
"""

from __future__ import annotations

import json

import numpy as np

from dynid.errors import ConfigError, ShapeError
from dynid.systems import INTEGRATORS, METHODS, System, _check_choice, _check_dt, get_system

SAMPLINGS = ("uniform", "lhs", "grid")


def _resolve_system(system) -> System:
    return system if isinstance(system, System) else get_system(system)


def _resolve_box(system: System, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    dlo, dhi = system.domain
    lo = dlo if lo is None else np.asarray(lo, dtype=float).reshape(-1)
    hi = dhi if hi is None else np.asarray(hi, dtype=float).reshape(-1)
    n = system.n_state
    if lo.shape != (n,) or hi.shape != (n,):
        raise ShapeError(f"box bounds for {system.name!r} need {n} entries each (states "
                         f"{list(system.state_names)}), got lo {lo.shape} and hi {hi.shape}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ConfigError("box bounds must be finite numbers")
    if not np.all(lo <= hi):
        raise ConfigError(f"box lo {lo.tolist()} must not exceed hi {hi.tolist()}")
    return lo, hi


def grid_points(lo, hi, n: int) -> np.ndarray:
    """A full tensor grid with ``m = round(n ** (1/d))`` points per dimension (endpoints
    included), so ``m**d`` points in all (10000 in 2-D gives 100 x 100).

    Example
    -------
    >>> grid_points([0, 0], [1, 2], 9).tolist()[:4]
    [[0.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.5, 0.0]]
    """
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    d = lo.size
    m = max(1, int(round(n ** (1.0 / d))))
    axes = [np.linspace(lo[i], hi[i], m) if m > 1 else np.array([0.5 * (lo[i] + hi[i])])
            for i in range(d)]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.reshape(-1) for g in mesh], axis=1)


def latin_hypercube(lo, hi, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` Latin-hypercube samples: in each dimension, exactly one sample falls in each of
    the ``n`` equal strata of ``[lo, hi]``.

    Example
    -------
    >>> X = latin_hypercube([0, 0], [1, 1], 4, np.random.default_rng(0))
    >>> sorted(np.floor(X[:, 0] * 4).astype(int).tolist())
    [0, 1, 2, 3]
    """
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    d = lo.size
    strata = np.stack([rng.permutation(n) for _ in range(d)], axis=1)
    u = (strata + rng.random((n, d))) / n
    return lo + u * (hi - lo)


def sample_box(lo, hi, n: int, sampling: str = "uniform", seed: int = 0) -> np.ndarray:
    """States in the box ``[lo, hi]`` by ``uniform``, ``lhs`` or ``grid`` sampling."""
    sampling = _check_choice("sampling", sampling, SAMPLINGS)
    n = _check_count(n)
    try:
        lo, hi = np.asarray(lo, float).reshape(-1), np.asarray(hi, float).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigError(f"box bounds lo={lo!r}, hi={hi!r} must be lists of numbers") from None
    if lo.shape != hi.shape or lo.size == 0:
        raise ShapeError(f"box bounds lo and hi need the same number of entries, got "
                         f"{lo.size} and {hi.size}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo <= hi)):
        raise ConfigError(f"box lo {lo.tolist()} and hi {hi.tolist()} must be finite with "
                          "lo <= hi")
    rng = np.random.default_rng(seed)
    if sampling == "uniform":
        return lo + rng.random((n, lo.size)) * (hi - lo)
    if sampling == "lhs":
        return latin_hypercube(lo, hi, n, rng)
    return grid_points(lo, hi, n)


def _check_count(n) -> int:
    try:
        value = int(n)
    except (TypeError, ValueError):
        raise ConfigError(f"sample count {n!r} must be a positive integer") from None
    if value != n or value < 1:
        raise ConfigError(f"sample count {n!r} must be a positive integer")
    return value


def _provenance(system: System, kind: str, dt: float, method: str, integrator: str,
                seed, sampling: str, lo, hi) -> dict:
    from dynid import __version__

    rtol, atol = system.flow_tolerances(method, integrator)
    return {
        "kind": kind,
        "system": system.name,
        "params": json.dumps(system.params),
        "dt": float(dt),
        "map": method,
        "integrator": system.flow_integrator_name(method, integrator),
        "rtol": float(rtol),
        "atol": float(atol),
        "seed": int(seed),
        "sampling": sampling,
        "domain_lo": np.asarray(lo, dtype=float),
        "domain_hi": np.asarray(hi, dtype=float),
        "dynid_version": __version__,
    }


def _progress_callback(progress, total: int, desc: str, unit: str = "pairs"):
    """Turn ``progress`` (None, True or a callable(done, total)) into a callable or None."""
    if progress is None or progress is False:
        return None, None
    if callable(progress):
        return progress, None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, leave=False)

    def update(done, _total):
        bar.n = done
        bar.refresh()

    return update, bar


def one_step_pairs(system, n: int, dt: float, method: str = "flow",
                   sampling: str = "uniform", lo=None, hi=None, seed: int = 0,
                   integrator: str = "casadi", progress=None):
    """Sample ``n`` states in a box and map each one step: ``x_next = F(x)``.

    Parameters
    ----------
    system : System or str
        A :class:`~dynid.systems.System` or a catalogue name (default parameters).
    n : int
        Number of samples (``grid`` uses ``round(n**(1/d))`` points per dimension).
    dt : float
        Time step of the map.
    method : {"flow", "euler", "rk4"}
    sampling : {"uniform", "lhs", "grid"}
    lo, hi : array-like, optional
        The box; default the system's domain.
    seed : int
    integrator : {"casadi", "scipy"}
        How the exact flow is computed (CVODES batched with ``map``, or ``solve_ivp`` per
        sample: the independent reference, ~20-50x slower).
    progress : None, True or callable(done, total)
        Progress of the flow integration (True: a tqdm bar).

    Returns
    -------
    xarray.Dataset
        ``x (sample, state)``, ``x_next (sample, state)``, coord ``state`` = state names, and
        provenance attributes (see the module docstring).

    Example
    -------
    >>> ds = one_step_pairs("van_der_pol", 16, 0.05, sampling="grid")
    >>> ds.sizes["sample"], ds.attrs["integrator"]
    (16, 'casadi-cvodes')
    """
    import xarray as xr

    system = _resolve_system(system)
    dt = _check_dt(dt)
    method = _check_choice("map", method, METHODS)
    integrator = _check_choice("integrator", integrator, INTEGRATORS)
    lo, hi = _resolve_box(system, lo, hi)
    X = sample_box(lo, hi, n, sampling, seed)
    callback, bar = _progress_callback(progress, X.shape[0], f"simulate {system.name}")
    try:
        Y = system.step_map(X, dt, method, integrator=integrator, progress=callback)
    finally:
        if bar is not None:
            bar.close()
    ds = xr.Dataset(
        {"x": (("sample", "state"), X), "x_next": (("sample", "state"), Y)},
        coords={"state": list(system.state_names)},
        attrs=_provenance(system, "pairs", dt, method, integrator, seed, sampling, lo, hi),
    )
    return ds


def trajectories(system, x0, n_steps: int, dt: float, method: str = "flow",
                 integrator: str = "casadi", progress=None):
    """Iterate the map ``n_steps`` times from each initial state.

    With ``method="flow"`` and ``integrator="scipy"`` each trajectory is one ``solve_ivp`` run
    over the whole horizon, read at the time grid (an independent reference for the CasADi
    path, which applies the one-step flow map repeatedly).

    Parameters
    ----------
    system : System or str
    x0 : array, shape (n_traj, n_state) or (n_state,)
    n_steps : int >= 1
    dt : float
    method : {"flow", "euler", "rk4"}
    integrator : {"casadi", "scipy"}

    Returns
    -------
    xarray.Dataset
        ``x (trajectory, time, state)`` with ``time = dt * [0, 1, ..., n_steps]``.

    Example
    -------
    >>> ds = trajectories("linear", [[1.0, 0.0]], 10, 0.1, method="rk4")
    >>> ds.x.shape, float(ds.time[-1])
    ((1, 11, 2), 1.0)
    """
    import xarray as xr

    system = _resolve_system(system)
    dt = _check_dt(dt)
    method = _check_choice("map", method, METHODS)
    integrator = _check_choice("integrator", integrator, INTEGRATORS)
    n_steps = _check_count(n_steps)
    X0 = np.asarray(x0, dtype=float)
    if X0.ndim == 1:
        X0 = X0[None, :]
    if X0.ndim != 2 or X0.shape[1] != system.n_state or X0.shape[0] == 0:
        raise ShapeError(f"initial states for {system.name!r} must have shape (n_traj, "
                         f"{system.n_state}), got {np.shape(x0)}")
    if not np.all(np.isfinite(X0)):
        raise ConfigError("initial states contain NaN or inf")
    time = dt * np.arange(n_steps + 1)
    out = np.empty((X0.shape[0], n_steps + 1, system.n_state))
    out[:, 0] = X0
    whole_horizon = method == "flow" and (integrator == "scipy" or not system.has_casadi)
    callback, bar = _progress_callback(progress, X0.shape[0] if whole_horizon else n_steps,
                                       f"trajectories {system.name}",
                                       "trajectories" if whole_horizon else "steps")
    try:
        if whole_horizon:
            for i, row in enumerate(X0):
                out[i] = system._scipy_solution(row, time)
                if callback:
                    callback(i + 1, X0.shape[0])
        else:
            for k in range(n_steps):
                out[:, k + 1] = system.step_map(out[:, k], dt, method, integrator=integrator)
                if callback:
                    callback(k + 1, n_steps)
    finally:
        if bar is not None:
            bar.close()
    attrs = _provenance(system, "trajectories", dt, method, integrator, -1, "initial_states",
                        system.domain_lo, system.domain_hi)
    return xr.Dataset(
        {"x": (("trajectory", "time", "state"), out)},
        coords={"time": time, "state": list(system.state_names)},
        attrs=attrs,
    )


def throughput(system, n: int = 2000, dt: float = 0.1, *, n_scipy: int | None = None,
               seed: int = 0) -> dict:
    """Measure one-step flow pairs per second, CasADi vs solve_ivp, on the same samples.

    Returns ``{"pairs_per_s_casadi", "pairs_per_s_scipy", "max_abs_diff", "n", "n_scipy"}``;
    the scipy side runs on the first ``n_scipy`` samples (default ``min(n, 200)``).

    Example
    -------
    >>> r = throughput("brusselator", n=50, n_scipy=5)
    >>> r["max_abs_diff"] < 1e-8
    True
    """
    import time as _time

    system = _resolve_system(system)
    lo, hi = system.domain
    X = sample_box(lo, hi, n, "uniform", seed)
    n_scipy = min(n, 200) if n_scipy is None else min(int(n_scipy), n)
    from dynid.systems import _CHUNK

    # build and cache the block integrators (full and remainder block) outside the timing
    for m in {min(n, _CHUNK), n % _CHUNK}:
        if m:
            system.step_map(X[:m], dt, "flow")
    t0 = _time.perf_counter()
    Yc = system.step_map(X, dt, "flow", integrator="casadi")
    t1 = _time.perf_counter()
    Ys = system.step_map(X[:n_scipy], dt, "flow", integrator="scipy")
    t2 = _time.perf_counter()
    return {"n": n, "n_scipy": n_scipy,
            "pairs_per_s_casadi": n / max(t1 - t0, 1e-12),
            "pairs_per_s_scipy": n_scipy / max(t2 - t1, 1e-12),
            "max_abs_diff": float(np.abs(Yc[:n_scipy] - Ys).max())}
