"""Multi-step reachable sets of a discrete-time ReLU map x_{k+1} = F(x_k) from a box X0.

Three methods, one loop (an *anchor* set is a box the bound restarts from):

- ``one-shot``: step k is bounded through the k-times unrolled network from X0 (tight; the
  cost grows with k because the network gets deeper),
- ``recursive``: step k+1 is bounded through F from the bounding box of step k (cheap, loose:
  the wrapping effect compounds),
- ``hybrid``: unroll a window of w steps from the anchor, then restart from the box of the
  window's last step (``window=1`` is recursive, ``window=steps`` is one-shot).

Each step's set is a template polyhedron {x : lower <= D x <= upper}; D is "box", "octagon" or
a user matrix (box rows always first, see :mod:`reach.templates`). With ``partitions`` the
initial box is split into cells, each cell is propagated on its own, and the reachable set is
the union of the cell sets (``hull_lower/hull_upper`` give its template hull).

Every bound is sound: it comes from a registered engine (:mod:`reach.engines`) and holds for
every state reachable from X0 at that step.

Example
-------
>>> import numpy as np
>>> from dynid.relunet import linear
>>> ds = reach(linear([[0.5, 0.0], [0.0, 0.5]]), [1, 1], [2, 2], steps=2, engine="ibp")
>>> [round(float(v), 6) for v in ds.box_hi.sel(step=2).values]
[0.5, 0.5]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from dynid.errors import ConfigError, ShapeError
from dynid.relunet import ReLUNet, check_box
from reach.engines import bound, check_engine_options, get_engine
from reach.templates import direction_labels, template_matrix

METHODS = ("one-shot", "recursive", "hybrid")


def _progress(progress, total: int, desc: str):
    """A callable ``tick(msg)`` from progress=None | True (tqdm) | callable(str)."""
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, leave=False)

        def tick(msg="", n=1):
            bar.set_postfix_str(msg)
            bar.update(n)

        tick.close = bar.close  # type: ignore[attr-defined]
        return tick
    if callable(progress):
        def tick(msg="", n=1):
            progress(msg)

        tick.close = lambda: None  # type: ignore[attr-defined]
        return tick

    def tick(msg="", n=1):
        return None

    tick.close = lambda: None  # type: ignore[attr-defined]
    return tick


class _Unrolled:
    """Cache of F unrolled k times (shared by all cells)."""

    def __init__(self, net: ReLUNet):
        self.net = net
        self.cache = {1: net}

    def __call__(self, k: int) -> ReLUNet:
        if k not in self.cache:
            from dynid.relunet import compose

            self.cache[k] = compose(self.net, self(k - 1))
        return self.cache[k]


def _window(method: str, steps: int, window) -> int:
    if method == "one-shot":
        return steps
    if method == "recursive":
        return 1
    if method == "hybrid":
        w = 2 if window is None else int(window)
        if w < 1:
            raise ConfigError(f"hybrid window must be >= 1 step, got {window}")
        return w
    raise ConfigError(f"unknown reachability method {method!r}: use one of {', '.join(METHODS)}")


# engines that accept precomputed intermediate bounds through the ``bounds`` option
# cells bounded together by reach_cells with the CROWN engine
CELL_BATCH = 64
_REUSES_BOUNDS = {"ibp", "crown", "lp-highs", "lp-splitting", "mip"}


def _prefix_bounds(full, net_j: ReLUNet):
    """Bounds of ``net_j`` (= F unrolled j times) from the bounds ``full`` of a deeper
    unrolling from the same box: the hidden layers coincide exactly, only the output layer
    (folded into the next step in the deeper net) is new; it gets interval bounds."""
    from dynid.bounds import Bounds, pad_interval

    L = net_j.n_layers
    lower, upper = list(full.lower[:L - 1]), list(full.upper[:L - 1])
    if L == 1:
        h_lo, h_hi = full.input_lo, full.input_hi
    else:
        h_lo, h_hi = full.post_bounds(L - 2)
    w, b = net_j.weights[-1], net_j.biases[-1]
    mid, rad = (h_lo + h_hi) / 2, (h_hi - h_lo) / 2
    mag = np.abs(w) @ np.maximum(np.abs(h_lo), np.abs(h_hi)) + np.abs(b)
    z_lo, z_hi = pad_interval(w @ mid + b - np.abs(w) @ rad, w @ mid + b + np.abs(w) @ rad, mag)
    return Bounds(lower + [z_lo], upper + [z_hi], full.input_lo, full.input_hi,
                  list(net_j.relu), full.method + "/prefix")


def reach_cell(step_net: ReLUNet, lo, hi, steps: int, *, D: np.ndarray, window: int,
               engine: str = "crown", unrolled=None, engine_opts=None, tick=None, extra=None):
    """Bounds of ``D x_k`` for k = 1..steps from one box ``[lo, hi]``.

    Intermediate bounds are computed once per window (on the deepest unrolling of the window)
    and shared by its steps: layer-by-layer methods give the same hidden-layer bounds for every
    prefix, so this is a saving, not a loosening.

    ``extra = (lo, hi)`` is the box of further inputs of the unrolled nets (disturbances, see
    :mod:`reach.disturbance`), appended to every anchor box.

    Returns ``(lower, upper, seconds)`` with shapes (steps, m), (steps, m), (steps,).
    """
    def box(a, b):
        return (a, b) if extra is None else (np.r_[a, extra[0]], np.r_[b, extra[1]])

    from reach.engines import engine_options, intermediate_for

    n = step_net.n_in
    unrolled = unrolled or _Unrolled(step_net)
    opts = engine_options(engine, engine_opts)
    reuse = (engine in _REUSES_BOUNDS and "bounds" not in opts
             and not step_net.relu[-1].any())
    if engine == "ibp":
        opts["intermediate"] = "ibp"
    lower = np.full((steps, D.shape[0]), np.nan)
    upper = np.full((steps, D.shape[0]), np.nan)
    secs = np.zeros(steps)
    a_lo, a_hi, anchor = np.asarray(lo, float), np.asarray(hi, float), 0
    full = None
    for k in range(1, steps + 1):
        t0 = time.perf_counter()
        j = k - anchor
        net_j = unrolled(j)
        kw = dict(opts)
        if reuse:
            if full is None:
                deepest = unrolled(min(window, steps - anchor))
                full = intermediate_for(deepest, *box(a_lo, a_hi), opts)
            kw["bounds"] = _prefix_bounds(full, net_j)
        low, up = bound(net_j, *box(a_lo, a_hi), D, engine=engine, **kw)
        # keep every interval ordered: rounding in a degenerate box must not flip a bound
        up = np.maximum(up, low)
        lower[k - 1], upper[k - 1] = low, up
        secs[k - 1] = time.perf_counter() - t0
        if j == window:
            a_lo, a_hi, anchor, full = low[:n].copy(), up[:n].copy(), k, None
        if tick is not None:
            tick(f"step {k}")
    return lower, upper, secs


def reach_cells(step_net: ReLUNet, LO, HI, steps: int, *, D: np.ndarray, window: int,
                engine: str = "crown", unrolled=None, engine_opts=None, extra=None):
    """:func:`reach_cell` for many boxes (rows of ``LO``/``HI``): a list of
    ``(lower, upper, seconds)``, one per box. With the CROWN engine (CROWN intermediate bounds,
    CPU) all boxes go through one batched CROWN pass per window and per step
    (:func:`dynid.bounds.crown_bounds_many`): the same bounds, several times faster for many
    small cells. Other engines bound the boxes one after the other. ``extra``: as in
    :func:`reach_cell`."""
    def box(A, B):
        if extra is None:
            return A, B
        k = A.shape[0]
        return (np.hstack([A, np.tile(extra[0], (k, 1))]),
                np.hstack([B, np.tile(extra[1], (k, 1))]))

    from dynid.bounds import crown_bounds_many, crown_output_many

    LO = np.atleast_2d(np.asarray(LO, dtype=np.float64))
    HI = np.atleast_2d(np.asarray(HI, dtype=np.float64))
    opts = dict(engine_opts or {})
    unrolled = unrolled or _Unrolled(step_net)
    batched = (engine == "crown" and not (set(opts) - {"intermediate", "device"})
               and opts.get("intermediate", "crown") == "crown" and not step_net.relu[-1].any())
    if not batched or LO.shape[0] == 1:
        return [reach_cell(step_net, a, b, steps, D=D, window=window, engine=engine,
                           unrolled=unrolled, engine_opts=engine_opts, extra=extra)
                for a, b in zip(LO, HI)]
    n, B, m = step_net.n_in, LO.shape[0], D.shape[0]
    dev = opts.get("device", "cpu")
    lower = np.full((B, steps, m), np.nan)
    upper = np.full((B, steps, m), np.nan)
    secs = np.zeros((B, steps))
    a_lo, a_hi, anchor, full = LO.copy(), HI.copy(), 0, None
    for k in range(1, steps + 1):
        t0 = time.perf_counter()
        j = k - anchor
        net_j = unrolled(j)
        if full is None:
            full = crown_bounds_many(unrolled(min(window, steps - anchor)), *box(a_lo, a_hi),
                                     device=dev)
        low, up = crown_output_many(net_j, *box(a_lo, a_hi), D, device=dev,
                                    bounds=[_prefix_bounds(f, net_j) for f in full])
        up = np.maximum(up, low)
        lower[:, k - 1], upper[:, k - 1] = low, up
        secs[:, k - 1] = (time.perf_counter() - t0) / B
        if j == window:
            a_lo, a_hi, anchor, full = low[:, :n].copy(), up[:, :n].copy(), k, None
    return [(lower[i], upper[i], secs[i]) for i in range(B)]


def reach(step_net: ReLUNet, x0_lo, x0_hi, steps: int, method: str = "one-shot",
          engine: str = "crown", template="box", window: int | None = None,
          partitions=None, cells=None, progress=None, engine_opts: dict | None = None,
          state_names=None, model_error=None, error_box=None):
    """Sound per-step over-approximations of the states reachable from the box X0.

    Parameters
    ----------
    step_net : ReLUNet mapping R^n to R^n (one closed-loop step)
    x0_lo, x0_hi : corners of the initial box
    steps : horizon K (>= 1)
    method : "one-shot" | "recursive" | "hybrid"
    engine : "ibp" | "crown" | "lp-highs" | "lp-splitting" | "mip" (see :mod:`reach.engines`)
    template : "box" | "octagon" | (m, n) matrix of directions
    window : hybrid window length (default 2)
    partitions : None, an int p (p cells along every coordinate) or one count per coordinate
    cells : explicit list of (lo, hi) cells covering X0 (overrides ``partitions``)
    progress : None, True (a tqdm bar) or a callable taking a message
    engine_opts : options passed to the engine (``intermediate``, ``solver``, ``time_limit``)
    state_names : names of the coordinates (default from ``step_net.meta['state_names']``)
    model_error : None (sets of the surrogate), or a per-state bound e of the model error
        (an array or a :class:`dynid.certify.model_error.ModelErrorBound`): sets of the plant,
        see :mod:`reach.disturbance`; ``error_box`` = (lo, hi) where e holds (default: the
        bound's box). ``attrs['about']`` says which.

    Returns
    -------
    xarray.Dataset with dims ``step`` (0..K), ``direction``, ``cell``, ``state`` and variables
    ``lower``/``upper`` (step, direction, cell), ``hull_lower``/``hull_upper`` (step,
    direction), ``box_lo``/``box_hi`` (step, state), ``directions`` (direction, state),
    ``cell_lo``/``cell_hi`` (cell, state), ``seconds`` (step). Step 0 is X0 itself.
    If interrupted (Ctrl-C), the steps of unfinished cells are NaN and ``attrs['complete']``
    is 0.

    Example
    -------
    >>> from dynid.relunet import linear
    >>> ds = reach(linear([[1.0, 1.0], [0.0, 1.0]]), [0, 0], [1, 1], 3, engine="crown")
    >>> float(ds.box_hi.sel(step=3)[0]) >= 4.0
    True
    """
    from reach.partition import grid_cells

    if not isinstance(step_net, ReLUNet):
        raise ShapeError("reach needs a ReLUNet step map (see reach.closed_loop to build one)")
    if step_net.n_in != step_net.n_out:
        raise ShapeError(f"the step map must map R^n to R^n, this one is {step_net.n_in} -> "
                         f"{step_net.n_out}")
    steps = int(steps)
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    check_engine_options(engine, dict(engine_opts or {}))
    w = _window(method, steps, window)
    lo, hi = check_box(step_net, x0_lo, x0_hi, "initial box")
    n = step_net.n_in
    D = template_matrix(template, n)
    if cells is None:
        cells = grid_cells(lo, hi, partitions)
    else:
        cells = [check_box(n, c[0], c[1], "cell") for c in cells]
    names = list(state_names or step_net.meta.get("state_names") or
                 [f"x{i + 1}" for i in range(n)])
    if len(names) != n:
        raise ShapeError(f"need {n} state names, got {len(names)}")

    P, m = len(cells), D.shape[0]
    lower = np.full((steps + 1, m, P), np.nan)
    upper = np.full((steps + 1, m, P), np.nan)
    seconds = np.zeros(steps + 1)
    unrolled, plant, extra = _Unrolled(step_net), None, None
    if model_error is not None:        # the plant: F(x) + w, w in [-e, e] (reach.disturbance)
        from reach.disturbance import PlantSetup

        plant = PlantSetup(step_net, model_error, w, error_box)
        unrolled, extra = plant.unrolled, plant.extra
    tick = _progress(progress, P * steps, f"reach {method}/{engine}")
    t_start = time.perf_counter()
    complete = True
    try:
        chunk = CELL_BATCH if engine == "crown" else 1
        for start in range(0, P, chunk):
            part = cells[start:start + chunk]
            for c, (clo, chi) in enumerate(part, start):
                lower[0, :, c], upper[0, :, c] = _support(D, clo, chi)
            if len(part) == 1:
                res = [reach_cell(step_net, part[0][0], part[0][1], steps, D=D, window=w,
                                  engine=engine, unrolled=unrolled, engine_opts=engine_opts,
                                  tick=tick, extra=extra)]
            else:   # many cells: one batched CROWN pass (same bounds, fewer Python steps)
                res = reach_cells(step_net, [c[0] for c in part], [c[1] for c in part], steps,
                                  D=D, window=w, engine=engine, unrolled=unrolled,
                                  engine_opts=engine_opts, extra=extra)
                tick(f"{start + len(part)} of {P} cells", n=len(part) * steps)
            for c, (lo_c, up_c, secs) in enumerate(res, start):
                lower[1:, :, c], upper[1:, :, c] = lo_c, up_c
                seconds[1:] += secs
    except KeyboardInterrupt:
        complete = False
    finally:
        tick.close()
    total = time.perf_counter() - t_start
    about = {"about": "surrogate"}
    if plant is not None:
        lower, upper, about = plant.mark(lower, upper, D)
    return _dataset(lower, upper, D, cells, names, seconds, attrs=dict(**about,
        method=method, engine=engine, window=w,
        template=template if isinstance(template, str) else "matrix",
        steps=steps, n_cells=P, seconds_total=total, complete=int(complete),
        engine_opts=json.dumps(_jsonable_opts(engine_opts)),
        x0_lo=lo, x0_hi=hi))


def _support(D, lo, hi):
    """Exact range of D x over a box (padded for rounding)."""
    from dynid.bounds import pad_interval

    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    mag = np.abs(D) @ np.maximum(np.abs(lo), np.abs(hi))
    return pad_interval(D @ mid - np.abs(D) @ rad, D @ mid + np.abs(D) @ rad, mag)


def _jsonable_opts(opts):
    from dynid.results import jsonable

    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v))
            for k, v in jsonable(dict(opts or {})).items()}


def _dataset(lower, upper, D, cells, names, seconds, attrs):
    import xarray as xr

    from dynid import __version__

    steps1, m, P = lower.shape
    n = D.shape[1]
    with np.errstate(invalid="ignore"):
        hull_lo = lower.min(axis=2)
        hull_hi = upper.max(axis=2)
    # a NaN (unfinished cell) must not be hidden by min/max: the hull is then unknown
    unfinished = np.isnan(lower).any(axis=2)
    hull_lo[unfinished], hull_hi[unfinished] = np.nan, np.nan
    cell_lo = np.array([c[0] for c in cells])
    cell_hi = np.array([c[1] for c in cells])
    ds = xr.Dataset(
        {
            "lower": (("step", "direction", "cell"), lower),
            "upper": (("step", "direction", "cell"), upper),
            "hull_lower": (("step", "direction"), hull_lo),
            "hull_upper": (("step", "direction"), hull_hi),
            "box_lo": (("step", "state"), hull_lo[:, :n]),
            "box_hi": (("step", "state"), hull_hi[:, :n]),
            "directions": (("direction", "state"), D),
            "cell_lo": (("cell", "state"), cell_lo),
            "cell_hi": (("cell", "state"), cell_hi),
            "seconds": (("step",), seconds),
        },
        coords={"step": np.arange(steps1), "direction": np.arange(m), "cell": np.arange(P),
                "state": names},
    )
    attrs = dict(attrs)
    attrs["x0_lo"] = np.asarray(attrs["x0_lo"], float)
    attrs["x0_hi"] = np.asarray(attrs["x0_hi"], float)
    attrs["direction_labels"] = json.dumps(direction_labels(D, names))
    attrs["dynid_version"] = __version__
    attrs["kind"] = "reachable-sets"
    attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ds.attrs.update(attrs)
    return ds


def final_box(ds, step: int | None = None):
    """(lo, hi) of the bounding box of the reachable set at ``step`` (default: last)."""
    step = int(ds.step.values[-1]) if step is None else int(step)
    return ds.box_lo.sel(step=step).values.copy(), ds.box_hi.sel(step=step).values.copy()


def save_reach(ds, path) -> Path:
    """Write a reach Dataset to netCDF (h5netcdf) atomically."""
    from dynid.atomic import atomic_path

    path = Path(path)
    with atomic_path(path, suffix=".nc.tmp") as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    return path


def load_reach(path):
    """Read a Dataset written by :func:`save_reach`."""
    import xarray as xr

    from dynid.errors import DataValidationError

    try:
        ds = xr.load_dataset(path, engine="h5netcdf")
    except (OSError, ValueError) as exc:
        raise DataValidationError(f"cannot read reachable sets from {path}: {exc}") from exc
    for v in ("lower", "upper", "box_lo", "box_hi", "directions"):
        if v not in ds:
            raise DataValidationError(f"{path} is not a reach result (variable {v!r} missing); "
                                      "write it with reach.reachability.save_reach")
    return ds


__all__ = ["reach", "reach_cell", "final_box", "save_reach", "load_reach", "METHODS"]
