"""The triangle LP relaxation of a ReLUNet over a box, solved exactly by HiGHS.

Given pre-activation bounds ``l_i <= z_i <= u_i`` of every layer (a :class:`dynid.bounds.Bounds`),
the relaxation keeps every affine layer exact, every identity unit and every stable ReLU unit
exact (active: ``h = z``; inactive: ``h = 0``), the box ``l <= z <= u`` on every unit, and
replaces each unstable ReLU by its triangle ``h >= 0, h >= z, h <= u (z - l) / (u - l)``.
This is the LP that :class:`reach.splitting.SplittingSolver` solves; the HiGHS version here
is its exact reference (tests, benchmark baseline).

:func:`triangle_lp_highs` builds the sparse LP once and re-solves it per objective row (only
the costs change). :func:`highs_intermediate_bounds` is the classical LP-tight pipeline: one
LP per unit bound, layer by layer.

Example
-------
>>> import numpy as np
>>> from dynid.relunet import ReLUNet
>>> from dynid.bounds import interval_bounds
>>> net = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[1.0, 1.0]])],
...               [np.zeros(2), np.zeros(1)])          # x -> |x|
>>> b = interval_bounds(net, [-1.0], [1.0])
>>> round(float(triangle_lp_highs(net, [-1.0], [1.0], b, np.eye(1))[0]), 6)  # max |x|
1.0
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import scipy.sparse as sp

from dynid.errors import ShapeError, SolverError
from dynid.relunet import ReLUNet, check_box

# HiGHS optima are primal-dual solutions up to its 1e-7 tolerances: a bound taken from one is
# padded outward by this much (relative + absolute) before anyone treats it as valid.
HIGHS_REL_PAD = 1e-7
HIGHS_ABS_PAD = 1e-7


def unit_kinds(bounds, i: int, relu: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the units of layer ``i``: identity, active, inactive, unstable.

    Identity units and stable-active ReLU units both satisfy ``h = z``; inactive ones ``h = 0``.
    """
    lo, up = np.asarray(bounds.lower[i]), np.asarray(bounds.upper[i])
    relu = np.asarray(relu, dtype=bool)
    inactive = relu & (up <= 0)
    active = relu & (lo >= 0) & ~inactive
    unstable = relu & ~inactive & ~active
    return {"identity": ~relu, "active": active, "inactive": inactive, "unstable": unstable}


def check_bounds(net: ReLUNet, bounds) -> None:
    """Raise ShapeError unless ``bounds`` has one (lower, upper) pair per layer of ``net``."""
    if len(bounds.lower) != net.n_layers or len(bounds.upper) != net.n_layers:
        raise ShapeError(f"bounds have {len(bounds.lower)} layers but the network has "
                         f"{net.n_layers}: compute them for this network")
    for i, (l, u) in enumerate(zip(bounds.lower, bounds.upper)):
        n = net.weights[i].shape[0]
        if np.shape(l) != (n,) or np.shape(u) != (n,):
            raise ShapeError(f"bounds of layer {i} have shape {np.shape(l)}, the layer has {n} "
                             "units: compute the bounds for this network")
        if np.any(np.asarray(l) > np.asarray(u)):
            raise ShapeError(f"bounds of layer {i} are empty (lower > upper): the box or the "
                             "bounds are inconsistent")


class TriangleLP:
    """The triangle relaxation as one sparse HiGHS model; objectives are swapped per solve.

    Parameters
    ----------
    net, lo, hi : the network and its input box.
    bounds : pre-activation bounds of every layer (valid over the box).
    time_limit : seconds per LP (None: no limit).

    Example
    -------
    >>> # lp = TriangleLP(net, lo, hi, bounds); lp.maximize(np.eye(net.n_out))
    """

    def __init__(self, net: ReLUNet, lo, hi, bounds, time_limit: float | None = None):
        import highspy

        lo, hi = check_box(net, lo, hi)
        check_bounds(net, bounds)
        self.net = net
        col_lo, col_hi = [lo], [hi]
        n_cols = net.n_in
        prev = np.arange(net.n_in)          # column of each post-activation unit (-1: zero)
        rows, cols, vals, r_lo, r_hi = [], [], [], [], []
        n_rows = 0
        for i, (w, b, m) in enumerate(zip(net.weights, net.biases, net.relu)):
            l, u = np.asarray(bounds.lower[i]), np.asarray(bounds.upper[i])
            k = unit_kinds(bounds, i, m)
            n = w.shape[0]
            z = n_cols + np.arange(n)
            n_cols += n
            col_lo.append(l)
            col_hi.append(u)
            # z - W h_prev = b (inactive previous units are constant zero and drop out)
            live = prev >= 0
            wl = sp.coo_matrix(w[:, live])
            rows += [n_rows + np.arange(n), n_rows + wl.row]
            cols += [z, prev[live][wl.col]]
            vals += [np.ones(n), -wl.data]
            r_lo.append(b)
            r_hi.append(b)
            n_rows += n
            post = np.where(k["inactive"], -1, z)
            un = np.flatnonzero(k["unstable"])
            if un.size:
                h = n_cols + np.arange(un.size)
                n_cols += un.size
                lu, uu = l[un], u[un]
                col_lo.append(np.zeros(un.size))
                col_hi.append(uu)
                slope = uu / (uu - lu)
                # h - z >= 0
                r = n_rows + np.arange(un.size)
                rows += [r, r]
                cols += [h, z[un]]
                vals += [np.ones(un.size), -np.ones(un.size)]
                r_lo.append(np.zeros(un.size))
                r_hi.append(np.full(un.size, np.inf))
                n_rows += un.size
                # h - slope z <= -slope l   (the chord of the triangle)
                r = n_rows + np.arange(un.size)
                rows += [r, r]
                cols += [h, z[un]]
                vals += [np.ones(un.size), -slope]
                r_lo.append(np.full(un.size, -np.inf))
                r_hi.append(-slope * lu)
                n_rows += un.size
                post[un] = h
            prev = post
        self.out_cols = prev
        self.n_cols, self.n_rows = n_cols, n_rows
        a = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n_rows, n_cols))
        a.sum_duplicates()
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = n_cols, n_rows
        lp.col_cost_ = np.zeros(n_cols)
        lp.col_lower_ = np.concatenate(col_lo)
        lp.col_upper_ = np.concatenate(col_hi)
        lp.row_lower_ = np.concatenate(r_lo)
        lp.row_upper_ = np.concatenate(r_hi)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr.astype(np.int32)
        lp.a_matrix_.index_ = a.indices.astype(np.int32)
        lp.a_matrix_.value_ = a.data
        self.highs = highspy.Highs()
        self.highs.setOptionValue("output_flag", False)
        self.highs.setOptionValue("threads", 1)
        if time_limit is not None:
            self.highs.setOptionValue("time_limit", float(time_limit))
        self.highs.passModel(lp)
        self._highspy = highspy

    def solve(self, c, sense: str = "max") -> float:
        """Optimum of ``c @ F(x)`` over the relaxation (``sense`` max or min)."""
        hs = self._highspy
        c = np.asarray(c, dtype=np.float64).reshape(-1)
        live = self.out_cols >= 0
        cost = np.zeros(self.n_cols)
        np.add.at(cost, self.out_cols[live], c[live])
        self.highs.changeObjectiveSense(hs.ObjSense.kMaximize if sense == "max"
                                        else hs.ObjSense.kMinimize)
        idx = np.arange(self.n_cols, dtype=np.int32)
        self.highs.changeColsCost(self.n_cols, idx, cost)
        self.highs.run()
        status = self.highs.getModelStatus()
        if status != hs.HighsModelStatus.kOptimal:
            raise SolverError(f"HiGHS did not solve the triangle LP ({self.highs.modelStatusToString(status)}); "
                              "check the bounds or raise the time limit")
        return float(self.highs.getInfo().objective_function_value)

    def maximize(self, C, sense: str = "max") -> np.ndarray:
        """One LP per row of ``C``; returns the optima (float64)."""
        C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        return np.array([self.solve(c, sense) for c in C])


def _check_sense(sense: str) -> str:
    if sense not in ("max", "min"):
        raise ShapeError(f"sense must be 'max' or 'min', got {sense!r}")
    return sense


def triangle_lp_highs(net: ReLUNet, lo, hi, bounds, C, sense: str = "max",
                      time_limit: float | None = None) -> np.ndarray:
    """Exact optimum of ``C[j] @ F(x)`` over the triangle relaxation, one LP per row of C.

    The values are HiGHS optima (tolerance 1e-7), i.e. references, not padded bounds; pad
    them with :func:`pad_highs` before using them as certificates.

    Parameters
    ----------
    net : ReLUNet
    lo, hi : input box.
    bounds : pre-activation bounds (``bounds.lower[i]``, ``bounds.upper[i]``) valid over the box.
    C : (m, n_out) objective rows.
    sense : "max" or "min".

    Example
    -------
    >>> # vals = triangle_lp_highs(net, lo, hi, crown_bounds(net, lo, hi), np.eye(2))
    """
    _check_sense(sense)
    C = np.atleast_2d(np.asarray(C, dtype=np.float64))
    if C.shape[1] != net.n_out:
        raise ShapeError(f"objective rows have {C.shape[1]} entries, the network has "
                         f"{net.n_out} outputs")
    return TriangleLP(net, lo, hi, bounds, time_limit).maximize(C, sense)


def pad_highs(values, sense: str = "max") -> np.ndarray:
    """Pad HiGHS optima outward (up for max, down for min) by its tolerances."""
    v = np.asarray(values, dtype=np.float64)
    pad = HIGHS_ABS_PAD + HIGHS_REL_PAD * np.abs(v)
    return v + pad if sense == "max" else v - pad


def prefix_net(net: ReLUNet, i: int) -> ReLUNet:
    """Layers 0..i of ``net`` with the last one's units made identity: its output is z_i."""
    relu = list(net.relu[:i]) + [np.zeros(net.weights[i].shape[0], bool)]
    return ReLUNet(net.weights[:i + 1], net.biases[:i + 1], relu)


class _Prefix:
    """Bounds restricted to the layers of a prefix network (duck-typed like Bounds)."""

    def __init__(self, bounds, i: int):
        self.lower = list(bounds.lower[:i + 1])
        self.upper = list(bounds.upper[:i + 1])


def ibp_layer(bounds, net: ReLUNet, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds of z_i from the bounds of layer i-1 (or the input box), padded."""
    from dynid.bounds import pad_interval

    if i == 0:
        plo, phi = np.asarray(bounds.input_lo), np.asarray(bounds.input_hi)
    else:
        plo, phi = bounds.post_bounds(i - 1)
    w, b = net.weights[i], net.biases[i]
    mid, rad = (plo + phi) / 2, (phi - plo) / 2
    c = w @ mid + b
    r = np.abs(w) @ rad
    mag = np.abs(w) @ np.maximum(np.abs(plo), np.abs(phi)) + np.abs(b)
    return pad_interval(c - r, c + r, mag)


def highs_intermediate_bounds(net: ReLUNet, lo, hi, init, *, time_limit: float | None = None,
                              log: Callable[[str], None] | None = None,
                              progress: Callable[[int, int], None] | None = None):
    """LP-tight bounds, layer by layer: one HiGHS LP per bound of every unstable unit.

    Each layer's LP uses the already tightened bounds of the layers before it; before a layer
    is tightened its interval bounds are refreshed from them (and intersected with ``init``).
    Optima are padded by :func:`pad_highs`. ``time_limit`` caps the whole pipeline: when it
    is hit, the remaining units keep their (valid) current bounds and
    ``result.info["complete"]`` is False.

    Returns
    -------
    dynid.bounds.Bounds with ``method="lp-highs"`` and ``info`` holding ``lps`` (number solved),
    ``complete``, ``seconds``.

    Example
    -------
    >>> # b = highs_intermediate_bounds(net, lo, hi, crown_bounds(net, lo, hi))
    """
    lo, hi = check_box(net, lo, hi)
    b = init.copy()
    start = time.perf_counter()
    n_lp, failed, complete = 0, 0, True
    total = int(sum(2 * b.unstable(i).sum() for i in range(net.n_layers - 1)))
    for i in range(net.n_layers - 1):
        if i > 0:
            l, u = ibp_layer(b, net, i)
            b.lower[i] = np.maximum(b.lower[i], l)
            b.upper[i] = np.maximum(np.minimum(b.upper[i], u), b.lower[i])
        un = np.flatnonzero(b.unstable(i))
        if un.size == 0:
            continue
        lp = TriangleLP(prefix_net(net, i), lo, hi, _Prefix(b, i))
        new_lo, new_hi = b.lower[i].copy(), b.upper[i].copy()
        for j in un:
            # the cap is checked between LPs (HiGHS's own time_limit runs on a clock that
            # accumulates over all runs of one model, so it cannot serve as a per-call budget)
            if time_limit is not None and time.perf_counter() - start >= time_limit:
                complete = False
                break
            e = np.zeros(net.weights[i].shape[0])
            e[j] = 1.0
            try:
                up = pad_highs(lp.solve(e, "max"), "max")
                low = pad_highs(lp.solve(e, "min"), "min")
            except SolverError:               # keep the unit's old (valid) bounds
                failed += 1
                continue
            new_hi[j] = min(new_hi[j], up)
            new_lo[j] = max(new_lo[j], low)
            n_lp += 2
            if progress is not None:
                progress(n_lp, total)
        b.lower[i], b.upper[i] = new_lo, np.maximum(new_hi, new_lo)
        if log is not None:
            log(f"layer {i}: {un.size} unstable units tightened, {b.unstable(i).sum()} remain "
                f"unstable ({time.perf_counter() - start:.1f} s)")
        if not complete:
            break
    # refresh the layers after the last one tightened (and the output) from what is known
    for i in range(1, net.n_layers):
        l, u = ibp_layer(b, net, i)
        b.lower[i] = np.maximum(b.lower[i], l)
        b.upper[i] = np.maximum(np.minimum(b.upper[i], u), b.lower[i])
    b.method = "lp-highs"
    b.info = {**b.info, "lps": n_lp, "complete": complete, "failed_units": failed,
              "seconds": time.perf_counter() - start}
    return b


__all__ = ["TriangleLP", "triangle_lp_highs", "highs_intermediate_bounds", "pad_highs",
           "prefix_net", "unit_kinds", "check_bounds", "ibp_layer"]
