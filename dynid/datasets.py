"""Datasets on disk: netCDF4 files (engine h5netcdf), validation, splits, statistics, recipes.

Two kinds of dataset (both made by :mod:`dynid.simulate`; trajectories also by
:mod:`dynid.dataimport` from the engineer's own logs):

- ``pairs``: ``x (sample, state)`` and ``x_next (sample, state)``, plus ``u (sample, input)``
  for a plant with inputs and optionally an ``experiment`` label per sample;
- ``trajectories``: ``x (trajectory, time, state)`` with a strictly increasing ``time`` coord,
  plus ``u (trajectory, time, input)`` (``u[k]`` is held from ``time[k]`` to ``time[k+1]``),
  an ``experiment`` label per trajectory and, for experiments of uneven length, ``length
  (trajectory)`` (time points of each; the rest is NaN padding).

Both carry a ``state`` coordinate with the state names (and ``input`` with the input names);
units are in the attributes ``state_units`` / ``input_units``. :func:`load_dataset` and
:func:`save_dataset` validate, and every problem is a :class:`DataValidationError` whose
message names the variable and the fix. Recipes (``datasets/*.toml``) describe how to simulate
a dataset: :func:`load_recipe`, :func:`dataset_from_recipe`.

Example
-------
>>> import tempfile, pathlib
>>> from dynid.simulate import one_step_pairs
>>> ds = one_step_pairs("brusselator", 50, 0.1, method="rk4")
>>> path = pathlib.Path(tempfile.mkdtemp()) / "data.nc"
>>> _ = save_dataset(ds, path)
>>> X, Y = pairs_from(load_dataset(path))
>>> X.shape, Y.dtype
((50, 2), dtype('float64'))
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import numpy as np

from dynid.atomic import atomic_path
from dynid.errors import ConfigError, DataValidationError, DynidError

PAIR_DIMS = ("sample", "state")
TRAJ_DIMS = ("trajectory", "time", "state")


# ---------------------------------------------------------------------- validation
def dataset_kind(ds) -> str:
    """``"pairs"`` or ``"trajectories"``, from the variables present (validates nothing else)."""
    if "x" not in ds.variables:
        raise DataValidationError(f"dataset has no variable 'x' (variables: "
                                  f"{sorted(map(str, ds.data_vars)) or 'none'}); a dynid dataset "
                                  "has x and x_next (pairs) or x (trajectory, time, state): make "
                                  "one with dynid simulate")
    return "pairs" if "x_next" in ds.variables or "trajectory" not in ds["x"].dims else \
        "trajectories"


def validate(ds, *, name: str = "dataset"):
    """Check a dataset and return it; raise :class:`DataValidationError` on any problem.

    Checks: the variables and their dims (``x``/``x_next`` as ``(sample, state)``, or ``x`` as
    ``(trajectory, time, state)``; inputs ``u`` as ``(sample, input)`` or ``(trajectory, time,
    input)``), at least one sample (two time points), numeric finite values (no NaN/inf; in
    trajectories of uneven length, given by a ``length`` coordinate, the padding after each
    trajectory's end is ignored), a ``state`` (and ``input``) coordinate of distinct names that
    agrees with any ``state_names`` attribute of the dataset or its variables, one
    ``experiment`` label per sample or trajectory (distinct across trajectories), a strictly
    increasing ``time``, and a ``kind`` attribute (when present) that matches the content.

    Example
    -------
    >>> import xarray as xr
    >>> bad = xr.Dataset({"x": (("sample", "state"), [[0.0, np.nan]]),
    ...                   "x_next": (("sample", "state"), [[0.0, 1.0]])},
    ...                  coords={"state": ["x", "y"]})
    >>> validate(bad)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dynid.errors.DataValidationError: dataset: variable 'x' has 1 NaN/inf value(s) (first at ...
    """
    import xarray as xr

    if not isinstance(ds, xr.Dataset):
        raise DataValidationError(f"{name}: expected an xarray.Dataset, got {type(ds).__name__}")
    kind = dataset_kind(ds)
    variables = ("x", "x_next") if kind == "pairs" else ("x",)
    dims = PAIR_DIMS if kind == "pairs" else TRAJ_DIMS
    if kind == "pairs" and "x_next" not in ds.variables:
        raise DataValidationError(f"{name}: variable 'x' has dims {ds['x'].dims} but there is no "
                                  "'x_next'; pairs need x and x_next (sample, state), "
                                  "trajectories need x (trajectory, time, state)")
    for var in variables:
        got = tuple(map(str, ds[var].dims))
        if got != dims:
            raise DataValidationError(f"{name}: variable {var!r} has dims {got}; expected {dims} "
                                      f"for a {kind} dataset (transpose or re-simulate)")
        _check_real(ds, var, name)
    if kind == "pairs" and ds["x"].shape != ds["x_next"].shape:
        raise DataValidationError(f"{name}: x has shape {ds['x'].shape} but x_next has "
                                  f"{ds['x_next'].shape}; every sample needs one x_next")
    shape = ds["x"].shape
    if shape[-1] < 1:
        raise DataValidationError(f"{name}: there are no states (state dimension is empty)")
    if shape[0] < 1:
        first = dims[0]
        raise DataValidationError(f"{name}: there are no samples ({first} dimension is empty)")
    if kind == "trajectories" and shape[1] < 2:
        raise DataValidationError(f"{name}: trajectories need at least 2 time points, got "
                                  f"{shape[1]}")
    _check_states(ds, variables, name)
    if kind == "trajectories":
        _check_time(ds, name)
    _check_inputs(ds, kind, name)
    _check_experiments(ds, kind, name)
    valid = _valid_mask(ds, kind, name)
    for var in variables + (("u",) if "u" in ds.variables else ()):
        values = np.asarray(ds[var].values, dtype=float)
        bad = ~np.isfinite(values)
        if valid is not None:
            bad &= valid[..., None]
        if bad.any():
            where = np.argwhere(bad)[0]
            var_dims = tuple(map(str, ds[var].dims))
            at = ", ".join(f"{d} {int(i)}" for d, i in zip(var_dims, where))
            if "experiment" in ds.coords:
                at += f" (experiment {_labels(ds)[int(where[0])]!r})"
            raise DataValidationError(f"{name}: variable {var!r} has {int(bad.sum())} NaN/inf "
                                      f"value(s) (first at {at}); drop or re-simulate those "
                                      "samples")
    declared = ds.attrs.get("kind")
    if declared is not None and str(declared) != kind:
        raise DataValidationError(f"{name}: attribute kind={declared!r} but the variables make "
                                  f"a {kind} dataset; fix the attribute or the variables")
    return ds


def _check_real(ds, var: str, name: str) -> None:
    if not np.issubdtype(ds[var].dtype, np.number) or np.issubdtype(ds[var].dtype,
                                                                      np.complexfloating):
        raise DataValidationError(f"{name}: variable {var!r} has dtype {ds[var].dtype}; "
                                  "it must be real numbers")


def _labels(ds) -> list[str]:
    return [str(v) for v in np.asarray(ds["experiment"].values).tolist()]


def _check_inputs(ds, kind: str, name: str) -> None:
    if "u" not in ds.variables:
        if "input" in ds.dims and ds.sizes["input"] > 0:
            raise DataValidationError(f"{name}: there is an 'input' dimension but no variable "
                                      "'u' holding the inputs")
        return
    want = ("sample", "input") if kind == "pairs" else ("trajectory", "time", "input")
    got = tuple(map(str, ds["u"].dims))
    if got != want:
        raise DataValidationError(f"{name}: variable 'u' has dims {got}; expected {want} for a "
                                  f"{kind} dataset")
    _check_real(ds, "u", name)
    if ds.sizes["input"] < 1:
        raise DataValidationError(f"{name}: variable 'u' has no inputs (input dimension is "
                                  "empty); drop it for an autonomous dataset")
    if "input" not in ds.coords:
        raise DataValidationError(f"{name}: no 'input' coordinate naming the "
                                  f"{ds.sizes['input']} inputs; add one, e.g. "
                                  "ds.assign_coords(input=['tau'])")
    inputs = [str(s) for s in ds["input"].values.tolist()]
    if len(set(inputs)) != len(inputs):
        raise DataValidationError(f"{name}: input names {inputs} are not distinct")
    states = [str(s) for s in ds["state"].values.tolist()]
    both = sorted(set(inputs) & set(states))
    if both:
        raise DataValidationError(f"{name}: {both} named both as state and as input")
    declared = ds.attrs.get("input_names")
    if declared is not None and _names(declared) != inputs:
        raise DataValidationError(f"{name}: input names of the dataset {_names(declared)} do not "
                                  f"match the input coordinate {inputs}")


def _check_experiments(ds, kind: str, name: str) -> None:
    if "experiment" not in ds.coords and "experiment" not in ds.variables:
        return
    dim = "sample" if kind == "pairs" else "trajectory"
    got = tuple(map(str, ds["experiment"].dims))
    if got != (dim,):
        raise DataValidationError(f"{name}: 'experiment' must label each {dim} (dims "
                                  f"({dim!r},)), got dims {got}")
    if kind == "trajectories":
        labels = _labels(ds)
        if len(set(labels)) != len(labels):
            dup = next(v for v in labels if labels.count(v) > 1)
            raise DataValidationError(f"{name}: experiment {dup!r} labels more than one "
                                      "trajectory; each experiment is one trajectory")


def _valid_mask(ds, kind: str, name: str):
    """(trajectory, time) bool mask of the samples inside each trajectory's ``length``, or None
    when every trajectory uses the whole time axis."""
    if kind != "trajectories" or "length" not in ds.variables:
        return None
    if tuple(map(str, ds["length"].dims)) != ("trajectory",):
        raise DataValidationError(f"{name}: 'length' must have dims ('trajectory',)")
    lengths = np.asarray(ds["length"].values)
    T = ds.sizes["time"]
    if not np.issubdtype(lengths.dtype, np.integer) or np.any(lengths < 2) or \
            np.any(lengths > T):
        raise DataValidationError(f"{name}: 'length' must hold integers in [2, {T}] (time "
                                  f"points of each trajectory), got {lengths.tolist()[:8]}")
    return np.arange(T)[None, :] < lengths[:, None]


def _names(value) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = [s.strip() for s in value.split(",")]
    return [str(v) for v in np.atleast_1d(np.asarray(value, dtype=object)).tolist()]


def _check_states(ds, variables, name: str) -> None:
    n = ds.sizes["state"]
    if "state" not in ds.coords:
        raise DataValidationError(f"{name}: no 'state' coordinate naming the {n} states; add "
                                  "one, e.g. ds.assign_coords(state=['x', 'y'])")
    states = [str(s) for s in ds["state"].values.tolist()]
    if len(set(states)) != len(states):
        raise DataValidationError(f"{name}: state names {states} are not distinct")
    sources = [("the dataset", ds.attrs.get("state_names"))]
    sources += [(f"variable {v!r}", ds[v].attrs.get("state_names")) for v in variables]
    for where, declared in sources:
        if declared is None:
            continue
        if _names(declared) != states:
            raise DataValidationError(f"{name}: state names of {where} {_names(declared)} do "
                                      f"not match the state coordinate {states}; the variables "
                                      "must describe the same states in the same order")


def _check_time(ds, name: str) -> None:
    if "time" not in ds.coords:
        raise DataValidationError(f"{name}: trajectories need a 'time' coordinate (the sample "
                                  "times, strictly increasing)")
    t = np.asarray(ds["time"].values)
    if not np.issubdtype(t.dtype, np.number):
        raise DataValidationError(f"{name}: time coordinate must be numeric (seconds), got "
                                  f"{t.dtype}")
    t = t.astype(float)
    if not np.all(np.isfinite(t)):
        raise DataValidationError(f"{name}: time coordinate contains NaN or inf")
    steps = np.diff(t)
    if np.any(steps <= 0):
        k = int(np.argmax(steps <= 0))
        raise DataValidationError(f"{name}: time is not strictly increasing (t[{k}]={t[k]} then "
                                  f"t[{k + 1}]={t[k + 1]}); sort the time axis")


# ---------------------------------------------------------------------- files
def _netcdf_attrs(attrs: dict) -> dict:
    """Attributes netCDF accepts: text, numbers, numeric arrays (dicts/lists become JSON)."""
    out = {}
    for k, v in attrs.items():
        if v is None:
            continue
        if isinstance(v, bool | np.bool_):
            out[k] = int(v)
        elif isinstance(v, dict):
            out[k] = json.dumps(v)
        elif isinstance(v, (list, tuple)):
            arr = np.asarray(v)
            out[k] = arr if np.issubdtype(arr.dtype, np.number) and arr.ndim == 1 else \
                json.dumps(np.asarray(v).tolist())
        elif isinstance(v, Path):
            out[k] = str(v)
        else:
            out[k] = v
    return out


def save_dataset(ds, path) -> Path:
    """Validate ``ds`` and write it to ``path`` as netCDF4 (h5netcdf), atomically.

    Dict attributes are stored as JSON text. Returns the path.
    """
    ds = validate(ds)
    path = Path(path)
    out = ds.copy()
    out.attrs = _netcdf_attrs(dict(ds.attrs))
    for var in out.variables:
        out[var].attrs = _netcdf_attrs(dict(out[var].attrs))
    with atomic_path(path, suffix=".nc.tmp") as tmp:
        out.to_netcdf(tmp, engine="h5netcdf")
        # the temporary file is created private (0600); give the dataset the usual mode
        os.chmod(tmp, 0o666 & ~_umask())
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def load_dataset(path):
    """Read and validate a dataset written by :func:`save_dataset` (or any netCDF file with
    the same layout). Raises :class:`DataValidationError` for a missing, unreadable,
    truncated or malformed file."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"dataset file {path} does not exist; make one with "
                                  "dynid simulate SYSTEM --out FILE")
    if path.is_dir():
        raise DataValidationError(f"{path} is a folder, not a dataset file")
    try:
        with xr.open_dataset(path, engine="h5netcdf", phony_dims="sort") as handle:
            ds = handle.load()
    except DynidError:
        raise
    except Exception as exc:  # h5py/h5netcdf raise OSError, ValueError, KeyError, ...
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise DataValidationError(f"{path} is not a readable netCDF4 dataset ({reason}); it "
                                  "may be truncated or of another format") from None
    if "x" not in ds.variables:
        hint = " (it looks like an HDF5 model file: use dynid info)" if \
            path.suffix in (".h5", ".hdf5") else ""
        raise DataValidationError(f"{path} has no variable 'x'{hint}; a dynid dataset has x "
                                  "and x_next, or x (trajectory, time, state)")
    return validate(ds, name=str(path))


# ---------------------------------------------------------------------- splits and statistics
def split(ds, fractions=(0.8, 0.2), seed: int = 0) -> tuple:
    """Split at random into parts of the given fractions: by sample (pairs) or by whole
    trajectory (trajectories), so no trajectory is shared between parts.

    Every part gets at least one sample (trajectory); the attribute ``split`` records the part
    index and ``split_fractions`` the fractions.

    Example
    -------
    >>> from dynid.simulate import one_step_pairs
    >>> train, val = split(one_step_pairs("duffing", 100, 0.1, method="euler"), (0.8, 0.2))
    >>> train.sizes["sample"], val.sizes["sample"]
    (80, 20)
    """
    ds = validate(ds)
    dim = "sample" if dataset_kind(ds) == "pairs" else "trajectory"
    try:
        fr = np.asarray(fractions, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigError(f"split fractions {fractions!r} must be numbers") from None
    if fr.size < 1 or np.any(~np.isfinite(fr)) or np.any(fr <= 0) or abs(fr.sum() - 1) > 1e-6:
        raise ConfigError(f"split fractions {list(fractions)} must be positive and sum to 1, "
                          "e.g. (0.8, 0.2)")
    n = ds.sizes[dim]
    if n < fr.size:
        raise DataValidationError(f"cannot split {n} {dim}(s) into {fr.size} non-empty parts; "
                                  "simulate more data")
    # cumulative rounding, then make every part non-empty
    edges = np.round(np.cumsum(fr) * n).astype(int)
    edges[-1] = n
    counts = np.diff(np.concatenate([[0], edges]))
    while np.any(counts < 1):
        counts[np.argmax(counts)] -= 1
        counts[np.argmin(counts)] += 1
    order = np.random.default_rng(seed).permutation(n)
    parts, start = [], 0
    for i, c in enumerate(counts):
        idx = np.sort(order[start:start + c])
        start += c
        part = ds.isel({dim: idx})
        part.attrs = {**ds.attrs, "split": i, "split_fractions": fr, "split_seed": int(seed)}
        parts.append(part)
    return tuple(parts)


def input_names(ds) -> list[str]:
    """Names of the dataset's inputs (``[]`` for autonomous data)."""
    if "u" not in ds.variables:
        return []
    return [str(s) for s in ds["input"].values.tolist()]


def trajectory_arrays(ds) -> dict:
    """The trajectories of a trajectories dataset as float64 arrays.

    Returns ``{"x": (n_traj, T, n_state), "u": (n_traj, T, n_input) or None, "length":
    (n_traj,) int (time points of each trajectory; the rest is padding), "experiment": list of
    labels (``"0", "1", ...`` when the dataset has none), "time": (T,)}``.

    Example
    -------
    >>> from dynid.simulate import trajectories
    >>> t = trajectory_arrays(trajectories("linear", [[1, 0]], 3, 0.1, method="euler"))
    >>> t["x"].shape, t["length"].tolist(), t["experiment"]
    ((1, 4, 2), [4], ['0'])
    """
    ds = validate(ds)
    if dataset_kind(ds) != "trajectories":
        raise DataValidationError("expected a trajectories dataset (x with dims (trajectory, "
                                  "time, state)), got pairs")
    x = np.asarray(ds["x"].values, dtype=np.float64)
    u = np.asarray(ds["u"].values, dtype=np.float64) if "u" in ds.variables else None
    T = x.shape[1]
    length = np.asarray(ds["length"].values, dtype=np.int64) if "length" in ds.variables \
        else np.full(x.shape[0], T, dtype=np.int64)
    labels = _labels(ds) if "experiment" in ds.variables else \
        [str(i) for i in range(x.shape[0])]
    return {"x": x, "u": u, "length": length, "experiment": labels,
            "time": np.asarray(ds["time"].values, dtype=np.float64)}


def _pairs(ds) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(X, Y, experiment label per pair or None); X = [x, u]."""
    ds = validate(ds)
    if dataset_kind(ds) == "pairs":
        X = np.array(ds["x"].values, dtype=np.float64)
        if "u" in ds.variables:
            X = np.hstack([X, np.asarray(ds["u"].values, dtype=np.float64)])
        labels = np.asarray(_labels(ds)) if "experiment" in ds.variables else None
        return X, np.array(ds["x_next"].values, dtype=np.float64), labels
    t = trajectory_arrays(ds)
    Xs, Ys, labs = [], [], []
    for i, L in enumerate(t["length"]):
        xi = t["x"][i, :L]
        Xi = xi[:-1] if t["u"] is None else np.hstack([xi[:-1], t["u"][i, :L - 1]])
        Xs.append(Xi)
        Ys.append(xi[1:])
        labs.append(np.full(L - 1, t["experiment"][i], dtype=object))
    labels = np.concatenate(labs).astype(str) if "experiment" in ds.variables else None
    return np.concatenate(Xs), np.concatenate(Ys), labels


def pairs_from(ds) -> tuple[np.ndarray, np.ndarray]:
    """``(X, Y)`` float64 arrays of consecutive states: ``X = [x, u]`` (``X = x`` for
    autonomous data), shape ``(n_pairs, n_state + n_input)``, and ``Y = x_next``, shape
    ``(n_pairs, n_state)``.

    Pairs datasets give ``([x, u], x_next)``; trajectories give every ``([x[k], u[k]],
    x[k+1])`` inside every trajectory (trajectory-major order, up to each trajectory's
    ``length``), so no pair crosses from one experiment into the next.

    Example
    -------
    >>> from dynid.simulate import trajectories
    >>> X, Y = pairs_from(trajectories("linear", [[1, 0], [0, 1]], 5, 0.1, method="euler"))
    >>> X.shape
    (10, 2)
    """
    X, Y, _ = _pairs(ds)
    return X, Y


def pair_experiments(ds) -> np.ndarray | None:
    """The experiment label of every pair of :func:`pairs_from` (None when the dataset has no
    ``experiment`` coordinate)."""
    return _pairs(ds)[2]


def normalisation_stats(ds, min_std: float = 1e-12) -> dict:
    """Per-state mean and standard deviation of ``x`` and of the increment ``x_next - x``
    (and per input of ``u`` for data with inputs).

    Returns ``{"state_names", "x_mean", "x_std", "dx_mean", "dx_std"}`` (float64 arrays of
    length n_state), plus ``"input_names", "u_mean", "u_std"`` when there are inputs. A
    standard deviation below ``min_std`` (a constant state) is reported as 1.0, so dividing by
    it is always safe.

    Example
    -------
    >>> from dynid.simulate import one_step_pairs
    >>> s = normalisation_stats(one_step_pairs("brusselator", 1000, 0.1, method="euler"))
    >>> bool(abs(s["x_mean"][0] - 2.0) < 0.2)               # uniform on [0, 4]
    True
    """
    XU, Y = pairs_from(ds)
    n = Y.shape[1]
    X, U = XU[:, :n], XU[:, n:]
    dX = Y - X

    def std(a):
        s = a.std(axis=0)
        return np.where(s < min_std, 1.0, s)

    out = {"state_names": [str(s) for s in ds["state"].values.tolist()],
           "x_mean": X.mean(axis=0), "x_std": std(X),
           "dx_mean": dX.mean(axis=0), "dx_std": std(dX)}
    if U.shape[1]:
        out.update(input_names=input_names(ds), u_mean=U.mean(axis=0), u_std=std(U))
    return out


def dataset_summary(ds) -> dict:
    """What is in a dataset, as a JSON-able dict (for ``dynid info`` and reports): kind,
    sizes, state names, per-state min/max of ``x``, input names and ranges, the number of
    experiments, and the provenance attributes (``params`` and ``recipe`` decoded from JSON).

    Example
    -------
    >>> from dynid.simulate import one_step_pairs
    >>> s = dataset_summary(one_step_pairs("duffing", 10, 0.1, method="euler"))
    >>> s["kind"], s["sizes"], s["state_names"]
    ('pairs', {'sample': 10, 'state': 2}, ['x', 'v'])
    """
    ds = validate(ds)
    XU, _ = pairs_from(ds)
    n = ds.sizes["state"]
    x = XU[:, :n]
    attrs = {}
    for k, v in ds.attrs.items():
        if k in ("params", "recipe", "excitation") and isinstance(v, str):
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                pass
        attrs[k] = v.tolist() if isinstance(v, np.ndarray) else \
            v.item() if isinstance(v, np.generic) else v
    out = {"kind": dataset_kind(ds), "sizes": {str(k): int(v) for k, v in ds.sizes.items()},
           "state_names": [str(s) for s in ds["state"].values.tolist()],
           "x_min": x.min(axis=0).tolist(), "x_max": x.max(axis=0).tolist(), "attrs": attrs}
    if "u" in ds.variables:
        u = XU[:, n:]
        out.update(input_names=input_names(ds), u_min=u.min(axis=0).tolist(),
                   u_max=u.max(axis=0).tolist())
    if "experiment" in ds.variables:
        out["experiments"] = len(set(_labels(ds)))
    if out["kind"] == "trajectories":
        t = np.asarray(ds["time"].values, dtype=float)
        out["time"] = {"start": float(t[0]), "stop": float(t[-1]), "n": int(t.size)}
        if "length" in ds.variables:
            L = np.asarray(ds["length"].values)
            out["length"] = {"min": int(L.min()), "max": int(L.max())}
    return out


# ---------------------------------------------------------------------- recipes
RECIPE_KEYS = {
    "name": str, "description": str, "system": str, "params": dict, "dt": float, "map": str,
    "sampling": str, "n": int, "seed": int, "domain": dict, "integrator": str, "kind": str,
    "steps": int,
}
REQUIRED_KEYS = ("system", "dt", "n")


def load_recipe(path) -> dict:
    """Read and check a dataset recipe (TOML). Returns a dict with defaults filled in.

    Keys: ``system`` (catalogue name), ``params`` (table), ``dt``, ``map`` (flow | euler | rk4,
    default flow), ``sampling`` (uniform | lhs | grid, default lhs), ``n`` (samples, or initial
    states for trajectories), ``seed`` (0), ``domain`` (table with ``lo`` and ``hi``; default
    the system's), ``integrator`` (casadi | scipy), ``kind`` (pairs | trajectories), ``steps``
    (trajectories only), ``name``, ``description``.

    Example
    -------
    >>> r = load_recipe(Path(__file__).parents[1] / "datasets" / "brusselator.toml")
    >>> r["system"], r["map"]
    ('brusselator', 'flow')
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"recipe {path} does not exist")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"recipe {path} is not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"recipe {path} is not a text TOML file") from None
    recipe = check_recipe(raw, where=str(path))
    recipe.setdefault("name", path.stem)
    return recipe


def check_recipe(raw: dict, where: str = "recipe") -> dict:
    """Validate a recipe dict (as parsed from TOML) and fill in defaults; raise ConfigError."""
    from dynid.simulate import SAMPLINGS
    from dynid.systems import INTEGRATORS, METHODS, get_system

    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a recipe is a table of keys, got {type(raw).__name__}")
    unknown = [k for k in raw if k not in RECIPE_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: "
                          f"{', '.join(RECIPE_KEYS)}")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
    r = {"params": {}, "map": "flow", "sampling": "lhs", "seed": 0, "integrator": "casadi",
         "kind": "pairs", **raw}
    for key, typ in RECIPE_KEYS.items():
        if key not in r:
            continue
        v = r[key]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) if typ is float else \
            isinstance(v, int) and not isinstance(v, bool) if typ is int else isinstance(v, typ)
        if not ok:
            raise ConfigError(f"{where}: key {key!r} must be a {typ.__name__}, got {v!r}")
    r["dt"] = float(r["dt"])
    if not np.isfinite(r["dt"]) or r["dt"] <= 0:
        raise ConfigError(f"{where}: dt must be positive, got {r['dt']}")
    if r["n"] < 1:
        raise ConfigError(f"{where}: n must be a positive integer, got {r['n']}")
    for key, choices in (("map", METHODS), ("sampling", SAMPLINGS),
                         ("integrator", INTEGRATORS), ("kind", ("pairs", "trajectories"))):
        if r[key] not in choices:
            raise ConfigError(f"{where}: {key}={r[key]!r} is not one of {', '.join(choices)}")
    if r["kind"] == "trajectories" and "steps" not in r:
        raise ConfigError(f"{where}: kind='trajectories' needs 'steps' (steps per trajectory)")
    if "steps" in r and r["steps"] < 1:
        raise ConfigError(f"{where}: steps must be a positive integer")
    system = get_system(r["system"], **r["params"])  # unknown system / params raise here
    if "domain" in r:
        dom = r["domain"]
        bad = [k for k in dom if k not in ("lo", "hi")]
        if bad or "lo" not in dom or "hi" not in dom:
            raise ConfigError(f"{where}: domain must be a table with exactly 'lo' and 'hi'")
        for k in ("lo", "hi"):
            try:
                arr = np.asarray(dom[k], dtype=float)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: domain.{k} must be a list of numbers") from None
            if arr.shape != (system.n_state,):
                raise ConfigError(f"{where}: domain.{k} needs {system.n_state} numbers (states "
                                  f"{list(system.state_names)}), got {dom[k]!r}")
        if not np.all(np.asarray(dom["lo"], float) < np.asarray(dom["hi"], float)):
            raise ConfigError(f"{where}: domain lo must be below hi in every state")
    return r


def dataset_from_recipe(recipe, *, progress=None):
    """Simulate the dataset a recipe describes (a dict from :func:`load_recipe`, or a path).

    Pairs recipes call :func:`dynid.simulate.one_step_pairs`; trajectory recipes sample ``n``
    initial states in the domain (``sampling``, ``seed``) and call
    :func:`dynid.simulate.trajectories` for ``steps`` steps. The recipe is kept in the
    attribute ``recipe`` (JSON text).
    """
    from dynid.simulate import one_step_pairs, sample_box, trajectories
    from dynid.systems import get_system

    if isinstance(recipe, (str, Path)):
        recipe = load_recipe(recipe)
    else:
        recipe = check_recipe(dict(recipe))
    system = get_system(recipe["system"], **recipe["params"])
    lo, hi = system.domain
    if "domain" in recipe:
        lo = np.asarray(recipe["domain"]["lo"], float)
        hi = np.asarray(recipe["domain"]["hi"], float)
    if recipe["kind"] == "pairs":
        ds = one_step_pairs(system, recipe["n"], recipe["dt"], method=recipe["map"],
                            sampling=recipe["sampling"], lo=lo, hi=hi, seed=recipe["seed"],
                            integrator=recipe["integrator"], progress=progress)
    else:
        x0 = sample_box(lo, hi, recipe["n"], recipe["sampling"], recipe["seed"])
        ds = trajectories(system, x0, recipe["steps"], recipe["dt"], method=recipe["map"],
                          integrator=recipe["integrator"], progress=progress)
        ds.attrs.update(seed=int(recipe["seed"]), sampling=recipe["sampling"],
                        domain_lo=lo, domain_hi=hi)
    ds.attrs["recipe"] = json.dumps(recipe)
    return ds
