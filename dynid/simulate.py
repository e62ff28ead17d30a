"""Simulation: one-step pairs over a box and trajectories, as ``xarray.Dataset`` with provenance.

- :func:`one_step_pairs` samples states ``x`` in a box (uniform, Latin hypercube or grid) and
  returns ``x (sample, state)`` and ``x_next (sample, state)`` with ``x_next = F(x)`` for the
  exact flow over ``dt`` or an explicit map (Euler, RK4).
- :func:`trajectories` iterates the map from given initial states: ``x (trajectory, time,
  state)`` with a ``time`` coordinate; a plant with inputs is driven by a given input sequence
  ``u (trajectory, time, input)`` (held constant over each step), optionally with measurement
  noise on the recorded states.
- :func:`experiments` runs identification experiments: initial states sampled in the state
  box, inputs from an excitation signal (:mod:`dynid.excitation`), one ``experiment`` label
  per trajectory.

For a plant with inputs, :func:`one_step_pairs` samples ``[x; u]`` in the state box times the
input box and adds ``u (sample, input)``.

Attributes on every dataset: ``kind`` ("pairs" | "trajectories"), ``system``, ``params`` (JSON
text), ``dt``, ``map``, ``integrator``, ``rtol``, ``atol``, ``seed``, ``sampling``,
``domain_lo``, ``domain_hi``, ``dynid_version`` (netCDF-safe: text, numbers, arrays); data
of a plant with inputs also carry ``input_lo``, ``input_hi`` (the input box the data cover),
``state_units`` and ``input_units`` (JSON lists), experiments ``excitation`` (JSON) and
``noise_std``.

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
from dynid.systems import (INTEGRATORS, METHODS, System, _check_choice, _check_count, _check_dt,
                           get_system)

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


def _provenance(system: System, kind: str, dt: float, method: str, integrator: str,
                seed, sampling: str, lo, hi, u_lo=None, u_hi=None) -> dict:
    from dynid import __version__

    rtol, atol = system.flow_tolerances(method, integrator)
    extra = {}
    if system.n_input:
        ulo, uhi = system.input_box
        extra = {"input_lo": np.asarray(ulo if u_lo is None else u_lo, dtype=float),
                 "input_hi": np.asarray(uhi if u_hi is None else u_hi, dtype=float),
                 "state_units": json.dumps(list(system.state_units)),
                 "input_units": json.dumps(list(system.input_units))}
    return {**extra, 
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


def _resolve_input_box(system: System, u_lo, u_hi) -> tuple[np.ndarray, np.ndarray]:
    """The input box of a plant (default: its declared box), checked; empty when autonomous."""
    if system.n_input == 0:
        if u_lo is not None or u_hi is not None:
            raise ConfigError(f"system {system.name!r} has no inputs: drop the input bounds")
        return np.zeros(0), np.zeros(0)
    dlo, dhi = system.input_box
    m = system.n_input
    try:
        lo = dlo if u_lo is None else np.broadcast_to(np.asarray(u_lo, float).reshape(-1), (m,))
        hi = dhi if u_hi is None else np.broadcast_to(np.asarray(u_hi, float).reshape(-1), (m,))
    except ValueError:
        raise ShapeError(f"input bounds for {system.name!r} need {m} entries each (inputs "
                         f"{list(system.input_names)})") from None
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
        raise ConfigError(f"input box lo {np.asarray(lo).tolist()} and hi "
                          f"{np.asarray(hi).tolist()} must be finite with lo < hi")
    return np.array(lo, dtype=float), np.array(hi, dtype=float)


def one_step_pairs(system, n: int, dt: float, method: str = "flow",
                   sampling: str = "uniform", lo=None, hi=None, seed: int = 0,
                   integrator: str = "casadi", progress=None, u_lo=None, u_hi=None):
    """Sample ``n`` states in a box and map each one step: ``x_next = F(x)``; for a plant
    with inputs, sample ``[x; u]`` in the state box times the input box (``u_lo``, ``u_hi``,
    default the system's input box) and map ``x_next = F(x, u)``.

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

    u_lo, u_hi : array-like, optional
        The input box of a plant (default: its declared ``input_box``).

    Returns
    -------
    xarray.Dataset
        ``x (sample, state)``, ``x_next (sample, state)`` (and ``u (sample, input)``), coord
        ``state`` = state names (``input`` = input names), and provenance attributes (see the
        module docstring).

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
    ulo, uhi = _resolve_input_box(system, u_lo, u_hi)
    n_state = system.n_state
    XU = sample_box(np.concatenate([lo, ulo]), np.concatenate([hi, uhi]), n, sampling, seed)
    X, U = XU[:, :n_state], XU[:, n_state:]
    callback, bar = _progress_callback(progress, X.shape[0], f"simulate {system.name}")
    try:
        Y = system.step_map(X, dt, method, u=U if system.n_input else None,
                            integrator=integrator, progress=callback)
    finally:
        if bar is not None:
            bar.close()
    variables = {"x": (("sample", "state"), X), "x_next": (("sample", "state"), Y)}
    coords = {"state": list(system.state_names)}
    if system.n_input:
        variables["u"] = (("sample", "input"), U)
        coords["input"] = list(system.input_names)
    ds = xr.Dataset(variables, coords=coords,
                    attrs=_provenance(system, "pairs", dt, method, integrator, seed, sampling,
                                      lo, hi, ulo, uhi))
    return ds


def _input_sequence(system: System, u, n_traj: int, n_steps: int) -> np.ndarray | None:
    """Inputs of a plant as (n_traj, n_steps + 1, m); the last row (after the last step)
    drives nothing and repeats the one before when only n_steps rows are given."""
    if system.n_input == 0:
        if u is not None and np.size(u) > 0:
            raise ShapeError(f"system {system.name!r} has no inputs, but u was given")
        return None
    m = system.n_input
    if u is None:
        raise ConfigError(f"system {system.name!r} has inputs {list(system.input_names)}: give "
                          f"u of shape (n_traj, n_steps, {m}) (see dynid.excitation), or use "
                          "dynid.simulate.experiments")
    U = np.asarray(u, dtype=float)
    if U.ndim == 2:
        U = np.broadcast_to(U[None], (n_traj,) + U.shape)
    if U.ndim != 3 or U.shape[0] != n_traj or U.shape[1] not in (n_steps, n_steps + 1) or \
            U.shape[2] != m:
        raise ShapeError(f"inputs for {system.name!r} must have shape ({n_traj}, {n_steps}, {m})"
                         f" (trajectories, steps, inputs {list(system.input_names)}), got "
                         f"{np.shape(u)}")
    if not np.all(np.isfinite(U)):
        raise ConfigError("the input sequence contains NaN or inf")
    if U.shape[1] == n_steps:
        U = np.concatenate([U, U[:, -1:]], axis=1)
    return np.array(U)


def _noise(noise_std, n: int) -> np.ndarray:
    try:
        std = np.broadcast_to(np.asarray(noise_std, dtype=float).reshape(-1), (n,)).copy()
    except ValueError:
        raise ShapeError(f"noise_std must be a number or one per state ({n})") from None
    if not np.all(np.isfinite(std)) or np.any(std < 0):
        raise ConfigError(f"noise_std {std.tolist()} must be finite and >= 0")
    return std


def trajectories(system, x0, n_steps: int, dt: float, method: str = "flow",
                 integrator: str = "casadi", progress=None, *, u=None, noise_std=0.0,
                 noise_seed: int = 0, experiment=None):
    """Iterate the map ``n_steps`` times from each initial state (driven by the inputs ``u``
    for a plant, each held constant over its step).

    With ``method="flow"`` and ``integrator="scipy"`` each autonomous trajectory is one
    ``solve_ivp`` run over the whole horizon, read at the time grid (an independent reference
    for the CasADi path, which applies the one-step flow map repeatedly); driven trajectories
    are integrated step by step (the input jumps at every step).

    Parameters
    ----------
    system : System or str
    x0 : array, shape (n_traj, n_state) or (n_state,)
    n_steps : int >= 1
    dt : float
    method : {"flow", "euler", "rk4"}
    integrator : {"casadi", "scipy"}
    u : array (n_traj, n_steps, n_input) (or ``n_steps + 1`` rows), plants only
        ``u[:, k]`` is held over ``[k dt, (k + 1) dt)``. A 2-D array drives every trajectory.
    noise_std : float or (n_state,) array
        Standard deviation of Gaussian measurement noise added to the recorded states (the
        noise-free states are kept in ``x_true``); seeded by ``noise_seed``.
    experiment : list of labels, optional
        One per trajectory (default ``"0", "1", ...`` for plants; none for autonomous data).

    Returns
    -------
    xarray.Dataset
        ``x (trajectory, time, state)`` with ``time = dt * [0, 1, ..., n_steps]``; plants add
        ``u (trajectory, time, input)`` (the last time point repeats the last input and
        drives nothing) and an ``experiment`` coordinate.

    Example
    -------
    >>> ds = trajectories("linear", [[1.0, 0.0]], 10, 0.1, method="rk4")
    >>> ds.x.shape, float(ds.time[-1])
    ((1, 11, 2), 1.0)
    >>> d = trajectories("pendulum_torque", [[0.0, 0.0]], 4, 0.1, u=np.ones((1, 4, 1)))
    >>> d.u.dims, d.experiment.values.tolist()
    (('trajectory', 'time', 'input'), ['0'])
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
    U = _input_sequence(system, u, X0.shape[0], n_steps)
    std = _noise(noise_std, system.n_state)
    time = dt * np.arange(n_steps + 1)
    out = np.empty((X0.shape[0], n_steps + 1, system.n_state))
    out[:, 0] = X0
    whole_horizon = U is None and method == "flow" and (integrator == "scipy" or
                                                        not system.has_casadi)
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
                out[:, k + 1] = system.step_map(out[:, k], dt, method,
                                                u=None if U is None else U[:, k],
                                                integrator=integrator)
                if callback:
                    callback(k + 1, n_steps)
    finally:
        if bar is not None:
            bar.close()
    attrs = _provenance(system, "trajectories", dt, method, integrator, -1, "initial_states",
                        system.domain_lo, system.domain_hi)
    variables = {"x": (("trajectory", "time", "state"), out)}
    coords = {"time": time, "state": list(system.state_names)}
    if np.any(std > 0):
        rng = np.random.default_rng(noise_seed)
        variables["x"] = (("trajectory", "time", "state"),
                          out + rng.normal(size=out.shape) * std)
        variables["x_true"] = (("trajectory", "time", "state"), out)
        attrs.update(noise_std=std, noise_seed=int(noise_seed))
    if U is not None:
        variables["u"] = (("trajectory", "time", "input"), U)
        coords["input"] = list(system.input_names)
        ulo, uhi = system.input_box
        attrs.update(input_lo=np.minimum(ulo, U.min(axis=(0, 1))),
                     input_hi=np.maximum(uhi, U.max(axis=(0, 1))))
    if experiment is not None or U is not None:
        labels = [str(i) for i in range(X0.shape[0])] if experiment is None else \
            [str(v) for v in experiment]
        if len(labels) != X0.shape[0]:
            raise ShapeError(f"{len(labels)} experiment labels for {X0.shape[0]} trajectories")
        coords["experiment"] = ("trajectory", labels)
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def experiment_seed(seed: int, i: int, stream: int = 0) -> int:
    """The seed of experiment ``i`` of a run seeded ``seed`` (independent streams; ``stream``
    1 is the measurement noise)."""
    entropy = [int(seed) % 2 ** 63, int(i) % 2 ** 63, int(stream)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def experiments(system, n_experiments: int, n_steps: int, dt: float, *, method: str = "flow",
                signal: str = "random_steps", signal_options: dict | None = None,
                u_lo=None, u_hi=None, lo=None, hi=None, sampling: str = "uniform",
                seed: int = 0, noise_std=0.0, integrator: str = "casadi", progress=None):
    """Identification experiments of a plant: initial states sampled in the state box
    ``[lo, hi]`` (default: the system's domain), each run driven for ``n_steps`` by its own
    excitation signal (:func:`dynid.excitation.excitation`) in the input box ``[u_lo, u_hi]``
    (default: the system's), optionally with measurement noise.

    Example
    -------
    >>> ds = experiments("pendulum_torque", 3, 50, 0.05, signal="prbs", seed=1,
    ...                  signal_options={"hold": 5})
    >>> ds.x.shape, ds.u.shape, ds.experiment.values.tolist()
    ((3, 51, 2), (3, 51, 1), ['0', '1', '2'])
    """
    from dynid.excitation import excitation

    system = _resolve_system(system)
    if system.n_input == 0:
        raise ConfigError(f"system {system.name!r} has no inputs: simulate trajectories (or "
                          "pairs) instead of excitation experiments")
    dt = _check_dt(dt)
    n_exp = _check_count(n_experiments)
    n_steps = _check_count(n_steps)
    lo, hi = _resolve_box(system, lo, hi)
    ulo, uhi = _resolve_input_box(system, u_lo, u_hi)
    opts = dict(signal_options or {})
    x0 = sample_box(lo, hi, n_exp, sampling, seed)
    U = np.stack([excitation(signal, n_steps, dt, ulo, uhi, seed=experiment_seed(seed, i),
                             **opts) for i in range(n_exp)])
    ds = trajectories(system, x0, n_steps, dt, method=method, integrator=integrator,
                      progress=progress, u=U, noise_std=noise_std,
                      noise_seed=experiment_seed(seed, 0, stream=1))
    ds.attrs.update(seed=int(seed), sampling=f"initial states: {sampling}",
                    domain_lo=lo, domain_hi=hi, input_lo=ulo, input_hi=uhi,
                    excitation=json.dumps({"signal": signal, "options": opts,
                                           "u_lo": ulo.tolist(), "u_hi": uhi.tolist()}))
    return ds


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
