"""Import the engineer's own logs (CSV, Parquet, netCDF) as a dynid trajectories dataset.

A log is a table: one row per sample, columns for the time, the measured states, the applied
inputs and (optionally) an experiment id. :func:`import_table` turns it into the dataset layout
of :mod:`dynid.datasets` — ``x (trajectory, time, state)``, ``u (trajectory, time, input)``, one
trajectory per experiment, an ``experiment`` coordinate and a ``length`` coordinate (experiments
may have different lengths; shorter ones are NaN-padded after their end) — so pairs are never
formed across experiments. ``u[k]`` is the input applied from sample k to sample k + 1
(zero-order hold); the last row's input drives nothing.

Every problem is one :class:`~dynid.errors.DataValidationError` line that names the file, the
column and the row (rows count data rows from 1, header excluded; CSV messages also give the
file line): a missing column, a name given twice, a non-numeric or NaN/inf value, time that
does not increase or is sampled irregularly within an experiment (or at another rate than the
other experiments, or than ``dt``), an experiment with fewer than two samples, and units that
contradict the file's own ``units`` attributes. Nothing is written unless all checks pass.

Formats: ``.csv`` / ``.txt`` / ``.tsv`` (pandas), ``.parquet`` / ``.pq`` (pandas with
pyarrow: ``pip install dynid[io]``), ``.nc`` / ``.nc4`` / ``.cdf`` (xarray; variables of any
names along a common dimension, or 2-D ``(run, time)`` variables, flattened to rows; rows whose
states and inputs are all NaN are padding and are dropped).

Example
-------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "log.csv"
>>> _ = path.write_text("t,th,om,tau\\n0,0.1,0,1\\n0.1,0.1,0.1,1\\n0.2,0.11,0.2,0\\n")
>>> ds = import_table(path, states=["th", "om"], inputs=["tau"], time="t")
>>> ds.x.shape, ds.u.shape, float(ds.attrs["dt"])
((1, 3, 2), (1, 3, 1), 0.1)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dynid.errors import ConfigError, DataValidationError

FORMATS = {"csv": (".csv", ".txt", ".tsv"), "parquet": (".parquet", ".pq"),
           "netcdf": (".nc", ".nc4", ".cdf", ".netcdf")}
DT_RTOL = 1e-6


def detect_format(path, fmt: str | None = None) -> str:
    """``csv``, ``parquet`` or ``netcdf`` from ``fmt`` or the file's extension."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    raise ConfigError(f"cannot tell the format of {path} from its extension "
                      f"{suffix or '(none)'}: use .csv, .parquet or .nc, or pass --format")


def _check_names(states, inputs, time, experiment) -> None:
    seen: dict[str, str] = {}
    roles = [("state", s) for s in states] + [("input", s) for s in inputs]
    roles += [("time", time)] if time else []
    roles += [("experiment", experiment)] if experiment else []
    if not states:
        raise ConfigError("give at least one state column (--states NAME,NAME)")
    for role, name in roles:
        if not name or not str(name).strip():
            raise ConfigError(f"an empty {role} column name was given")
        if name in seen:
            what = f"{role} {name!r} is named twice" if seen[name] == role else \
                f"column {name!r} is named as {seen[name]} and as {role}"
            raise ConfigError(f"{what}; each column may appear once")
        seen[name] = role


def read_table(path, fmt: str, columns: list[str]):
    """The named columns of the file as a pandas DataFrame, plus the file's units per column.

    Raises DataValidationError for an unreadable file or a missing column (naming the
    columns that are there).
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"{path} does not exist")
    if path.is_dir():
        raise DataValidationError(f"{path} is a folder, not a log file")
    units: dict[str, str] = {}
    try:
        if fmt == "csv":
            sep = "\t" if path.suffix.lower() == ".tsv" else None
            df = pd.read_csv(path, sep=sep, engine="python", skip_blank_lines=False,
                             dtype=str, keep_default_na=False)
        elif fmt == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ConfigError("reading Parquet needs pyarrow: pip install 'dynid[io]' "
                                  "(or pyarrow)") from None
            df = pd.read_parquet(path)
        else:
            df, units = _read_netcdf(path, columns)
    except (DataValidationError, ConfigError):
        raise
    except Exception as exc:  # pandas / pyarrow / h5netcdf parser errors
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise DataValidationError(f"{path} is not a readable {fmt} table ({reason})") from None
    df.columns = [str(c).strip() for c in df.columns]
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup:
        raise DataValidationError(f"{path}: column {dup[0]!r} appears more than once in the file")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        have = ", ".join(map(str, df.columns[:20])) or "(none)"
        raise DataValidationError(f"{path}: column {missing[0]!r} not found; the file has: "
                                  f"{have}")
    df = df[columns]
    if fmt == "csv":  # trailing empty lines are not samples
        blank = df.apply(lambda col: col.astype(str).str.strip() == "").all(axis=1).to_numpy()
        end = len(df)
        while end > 0 and blank[end - 1]:
            end -= 1
        df = df.iloc[:end]
    return df.reset_index(drop=True), units


def _read_netcdf(path: Path, columns: list[str]):
    import xarray as xr

    with xr.open_dataset(path, engine="h5netcdf", decode_times=False,
                         phony_dims="sort") as handle:
        names = [c for c in columns if c in handle.variables]
        missing = [c for c in columns if c not in handle.variables]
        if missing:
            have = ", ".join(sorted(map(str, handle.variables))[:20]) or "(none)"
            raise DataValidationError(f"{path}: variable {missing[0]!r} not found; the file "
                                      f"has: {have}")
        sub = handle[[n for n in names if n not in handle.dims or n in handle.data_vars]]
        sub = sub.load()
        units = {n: str(handle[n].attrs["units"]) for n in names if "units" in handle[n].attrs}
    df = sub.to_dataframe().reset_index()
    if any(sub[n].ndim > 1 for n in sub.data_vars):
        data_cols = [c for c in df.columns if c in columns and c in sub.data_vars]
        df = df[~df[data_cols].isna().all(axis=1)]   # padding of uneven (run, time) arrays
    return df, units


def _numeric(df, path, fmt: str):
    """Float64 columns; the first non-numeric or NaN/inf entry raises, naming row and column."""
    import pandas as pd

    out = {}
    for col in df.columns:
        raw = df[col]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        if fmt == "csv":
            text = raw.astype(str).str.strip()
            empty = (text == "").to_numpy()
            nan_text = text.str.lower().isin(["nan", "na", "n/a", "null", "none"]).to_numpy()
            non_number = np.isnan(values) & ~empty & ~nan_text
        else:
            empty = np.zeros(len(values), bool)
            nan_text = raw.isna().to_numpy()
            non_number = np.isnan(values) & ~nan_text
        if non_number.any():
            i = int(np.argmax(non_number))
            raise DataValidationError(f"{path}: {_row(i, fmt)}, column {col!r}: "
                                      f"{str(raw.iloc[i])[:40]!r} is not a number")
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.argmax(bad))
            what = "is empty" if empty[i] else "is NaN" if (nan_text[i] or np.isnan(values[i])) \
                else "is infinite"
            raise DataValidationError(f"{path}: {_row(i, fmt)}, column {col!r} {what}; fill or "
                                      "drop that sample (or split the experiment there)")
        out[col] = values
    return out


def _row(i: int, fmt: str) -> str:
    """How to name data row i (0-based) in a message."""
    return f"row {i + 1} (file line {i + 2})" if fmt == "csv" else f"row {i + 1}"


def _parse_units(units, known: list[str]) -> dict[str, str]:
    if units is None:
        return {}
    if isinstance(units, str):
        items = [u for u in units.split(",") if u.strip()]
        units = {}
        for item in items:
            key, sep, val = item.partition("=")
            if not sep or not key.strip() or not val.strip():
                raise ConfigError(f"--units {item!r} must look like NAME=UNIT, e.g. th=rad")
            if key.strip() in units:
                raise ConfigError(f"--units gives column {key.strip()!r} twice")
            units[key.strip()] = val.strip()
    out = {}
    for key, val in dict(units).items():
        if key not in known:
            raise ConfigError(f"--units names column {key!r}, which is not one of the imported "
                              f"columns ({', '.join(known)})")
        if not str(val).strip():
            raise ConfigError(f"--units gives column {key!r} an empty unit")
        out[key] = str(val).strip()
    return out


def _experiment_rows(labels, n: int) -> list[tuple[str, np.ndarray]]:
    """(label, row indices in file order) per experiment, in order of first appearance."""
    if labels is None:
        return [("0", np.arange(n))]
    labels = np.asarray([str(v).strip() for v in labels], dtype=object)
    order, groups = [], {}
    for i, lab in enumerate(labels):
        if lab not in groups:
            groups[lab] = []
            order.append(lab)
        groups[lab].append(i)
    return [(lab, np.asarray(groups[lab])) for lab in order]


def _experiment_dt(t: np.ndarray, rows: np.ndarray, label: str, time: str, path, fmt: str,
                   dt: float | None, rtol: float, multi: bool) -> float:
    where = f" (experiment {label!r})" if multi else ""
    steps = np.diff(t)
    if np.any(steps <= 0):
        k = int(np.argmax(steps <= 0))
        hint = "" if multi else " (several experiments in one file? name the id column with " \
                                "--experiment)"
        raise DataValidationError(f"{path}: time column {time!r} does not increase at "
                                  f"{_row(int(rows[k + 1]), fmt)}{where}: {t[k + 1]:.9g} after "
                                  f"{t[k]:.9g}; sort the log by time or split the "
                                  f"experiment{hint}")
    # the reference step: the given dt, else the lower median of the steps (an actual step)
    step = float(np.sort(steps)[(steps.size - 1) // 2]) if dt is None else float(dt)
    off = np.abs(steps - step) > rtol * step
    if np.any(off):
        k = int(np.argmax(off))
        raise DataValidationError(f"{path}: irregular sampling at {_row(int(rows[k + 1]), fmt)}"
                                  f"{where}: time step {steps[k]:.9g} but the step is "
                                  f"{step:.9g}; resample the log to a fixed step (or pass "
                                  "--dt-tolerance)")
    return step


def import_table(path, states, inputs=(), time: str | None = None,
                 experiment: str | None = None, *, fmt: str | None = None, units=None,
                 dt: float | None = None, dt_tolerance: float = DT_RTOL):
    """Read a log file into a trajectories dataset (one trajectory per experiment).

    Parameters
    ----------
    path : the file (``.csv``, ``.parquet``, ``.nc``; or give ``fmt``).
    states, inputs : column names (lists or comma-separated text), states first.
    time : the time column (seconds, or ms / min / h when its units say so); without it give
        ``dt`` (rows are then taken as equally spaced). With both, the sampling step must equal ``dt``.
    experiment : the column of experiment ids (several experiments in one file, in any row
        order; each experiment's rows must be in time order).
    units : ``{"th": "rad", ...}`` or ``"th=rad,tau=N m"``; netCDF ``units`` attributes are
        used where not given (and a contradiction is an error).
    dt_tolerance : relative tolerance of the sampling-step checks.

    Returns
    -------
    xarray.Dataset : ``x (trajectory, time, state)``, ``u (trajectory, time, input)`` (when
    inputs are given), coordinates ``state``, ``input``, ``time`` (= dt k from each
    experiment's start), ``experiment``, ``length`` and ``t0`` (each experiment's start time in
    the log), attributes ``kind``, ``dt``, ``map = "data"``, ``source``, ``source_format``,
    ``time_column``, ``experiment_column``, ``state_units``, ``input_units``, ``time_units``,
    ``domain_lo``/``domain_hi`` and ``input_lo``/``input_hi`` (the data's bounding boxes).
    """
    import xarray as xr

    from dynid import __version__

    path = Path(path)
    states = _name_list(states, "states")
    inputs = _name_list(inputs, "inputs")
    _check_names(states, inputs, time, experiment)
    fmt = detect_format(path, fmt)
    if time is None and dt is None:
        raise ConfigError("give the time column (--time NAME) or the sampling step (--dt DT)")
    if dt is not None:
        dt = float(dt)
        if not np.isfinite(dt) or dt <= 0:
            raise ConfigError(f"--dt {dt} must be a positive number of seconds")
    rtol = float(dt_tolerance)
    if not np.isfinite(rtol) or rtol <= 0 or rtol >= 0.5:
        raise ConfigError(f"--dt-tolerance {dt_tolerance} must be in (0, 0.5)")
    columns = [*([experiment] if experiment else []), *([time] if time else []), *states,
               *inputs]
    given_units = _parse_units(units, states + inputs + ([time] if time else []))
    df, file_units = read_table(path, fmt, columns)
    for key, val in given_units.items():
        if key in file_units and file_units[key] != val:
            raise DataValidationError(f"{path}: column {key!r} has units {file_units[key]!r} in "
                                      f"the file but {val!r} was given; convert the data or "
                                      "fix --units")
    all_units = {**file_units, **given_units}
    if len(df) < 2:
        raise DataValidationError(f"{path}: the log has {len(df)} sample row(s); need at least "
                                  "2 (one step)")
    labels = df[experiment].to_numpy() if experiment else None
    if labels is not None:
        blank = np.array([str(v).strip() in ("", "nan", "None") for v in labels])
        if blank.any():
            i = int(np.argmax(blank))
            raise DataValidationError(f"{path}: {_row(i, fmt)}, column {experiment!r} (the "
                                      "experiment id) is empty")
    values = _numeric(df[[c for c in columns if c != experiment]], path, fmt)
    if time is not None:   # the dataset's time axis is in seconds
        values[time] = values[time] * _time_scale(all_units.get(time), time, path)
    groups = _experiment_rows(labels, len(df))
    multi = len(groups) > 1 or experiment is not None
    step = None
    t0s = []
    for label, rows in groups:
        if rows.size < 2:
            raise DataValidationError(f"{path}: experiment {label!r} has only {rows.size} "
                                      f"sample ({_row(int(rows[0]), fmt)}); need at least 2")
        if time is None:
            t0s.append(0.0)
            continue
        t = values[time][rows]
        this = _experiment_dt(t, rows, label, time, path, fmt, dt, rtol, multi)
        if step is None:
            step = this
        elif abs(this - step) > rtol * step:
            raise DataValidationError(f"{path}: experiment {label!r} is sampled every "
                                      f"{this:.9g} but experiment {groups[0][0]!r} every "
                                      f"{step:.9g}; import them separately or resample")
        t0s.append(float(t[0]))
    step = float(dt) if step is None else step
    T = max(rows.size for _, rows in groups)
    n_exp = len(groups)
    X = np.full((n_exp, T, len(states)), np.nan)
    U = np.full((n_exp, T, len(inputs)), np.nan)
    for i, (_, rows) in enumerate(groups):
        X[i, :rows.size] = np.stack([values[s][rows] for s in states], axis=1)
        if inputs:
            U[i, :rows.size] = np.stack([values[s][rows] for s in inputs], axis=1)
    lengths = np.array([rows.size for _, rows in groups], dtype=np.int64)
    flat_x = np.concatenate([X[i, :L] for i, L in enumerate(lengths)])
    variables = {"x": (("trajectory", "time", "state"), X)}
    coords = {"time": step * np.arange(T), "state": states,
              "experiment": ("trajectory", [lab for lab, _ in groups]),
              "length": ("trajectory", lengths), "t0": ("trajectory", np.asarray(t0s))}
    attrs = {"kind": "trajectories", "dt": step, "map": "data", "integrator": "measured",
             "source": path.name, "source_format": fmt, "time_column": time or "",
             "experiment_column": experiment or "", "seed": -1,
             "sampling": "measured experiments",
             "domain_lo": flat_x.min(axis=0), "domain_hi": flat_x.max(axis=0),
             "state_units": json.dumps([all_units.get(s, "") for s in states]),
             "time_units": "s", "source_time_units": all_units.get(time, "") if time else "",
             "dynid_version": __version__}
    if inputs:
        variables["u"] = (("trajectory", "time", "input"), U)
        coords["input"] = inputs
        flat_u = np.concatenate([U[i, :L] for i, L in enumerate(lengths)])
        attrs.update(input_lo=flat_u.min(axis=0), input_hi=flat_u.max(axis=0),
                     input_units=json.dumps([all_units.get(s, "") for s in inputs]))
    ds = xr.Dataset(variables, coords=coords, attrs=attrs)
    from dynid.datasets import validate

    return validate(ds, name=str(path))


def _name_list(v, what: str) -> list[str]:
    if v is None:
        return []
    items = v.split(",") if isinstance(v, str) else list(v)
    if isinstance(v, str) and not v.strip():
        return []
    names = [str(s).strip() for s in items]
    if any(not n for n in names):
        raise ConfigError(f"--{what} {v!r} has an empty name; separate names by single commas")
    return names


def _time_scale(unit: str | None, time: str, path) -> float:
    """Seconds per unit of the time column."""
    if unit is None:
        return 1.0
    key = unit.strip().lower()
    if key in _TIME_UNITS:
        return _TIME_UNITS[key]
    raise DataValidationError(f"{path}: time column {time!r} has units {unit!r}; use seconds "
                              "(s), ms, us, min or h (or convert the column)")


_TIME_UNITS = {"s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
               "ms": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3, "us": 1e-6,
               "microseconds": 1e-6, "min": 60.0, "minute": 60.0, "minutes": 60.0,
               "h": 3600.0, "hour": 3600.0, "hours": 3600.0}


__all__ = ["import_table", "read_table", "detect_format", "FORMATS"]
