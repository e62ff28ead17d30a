"""The triangle LP relaxation of a ReLUNet over a box, bounded by HiGHS (rigorous dual bounds).

Given pre-activation bounds ``l_i <= z_i <= u_i`` of every layer (a :class:`dynid.bounds.Bounds`),
the relaxation keeps every affine layer exact, every identity unit and every stable ReLU unit
exact (active: ``h = z``; inactive: ``h = 0``), the box ``l <= z <= u`` on every unit, and
replaces each unstable ReLU by its triangle ``h >= 0, h >= z, h <= u (z - l) / (u - l)``.
This is the LP that :class:`reach.splitting.SplittingSolver` solves; the HiGHS version here
is its exact reference (tests, benchmark baseline).

:func:`triangle_lp_highs` builds the sparse LP once and re-solves it per objective row (only
the costs change). :func:`highs_intermediate_bounds` is the classical LP-tight pipeline: one
LP per unit bound, layer by layer. Every value is the float64 dual bound of
:class:`dynid.milp.lp.WarmLP` (valid whatever HiGHS's tolerances), never a primal optimum; the
relaxation itself is :func:`dynid.bounds.relaxation.add_triangle_layers`, shared with the MIP
encodings, OBBT and the pair queries.

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
import warnings
from typing import Callable

import numpy as np

from dynid.bounds.relaxation import (add_triangle_layers, affine_image, check_bounds,
                                     objective_rows, prefix_bounds, prefix_net, unit_kinds)
from dynid.errors import ShapeError
from dynid.relunet import ReLUNet, check_box

# kept for callers of the old names; LP bounds are no longer padded primal optima
HIGHS_REL_PAD = 1e-7
HIGHS_ABS_PAD = 1e-7


class TriangleLP:
    """The triangle relaxation as one warm-started HiGHS model; objectives are swapped per
    solve and every answer is a rigorous float64 dual bound (:class:`dynid.milp.lp.WarmLP`).

    Parameters
    ----------
    net, lo, hi : the network and its input box.
    bounds : pre-activation bounds of every layer (valid over the box).
    time_limit : seconds per :meth:`maximize` call (None: no limit).

    Example
    -------
    >>> import numpy as np
    >>> from dynid.relunet import linear
    >>> from dynid.bounds import interval_bounds
    >>> net = linear([[1.0, 2.0]])
    >>> lp = TriangleLP(net, [0, 0], [1, 1], interval_bounds(net, [0, 0], [1, 1]))
    >>> round(float(lp.solve([1.0])), 6), round(float(lp.solve([1.0], "min")), 6) + 0.0
    (3.0, 0.0)
    """

    def __init__(self, net: ReLUNet, lo, hi, bounds, time_limit: float | None = None):
        from dynid.bounds import Bounds
        from dynid.milp import SparseModel
        from dynid.milp.lp import WarmLP

        lo, hi = check_box(net, lo, hi)
        check_bounds(net, bounds)
        self.net = net
        b = Bounds(list(bounds.lower), list(bounds.upper), lo, hi, list(net.relu), "triangle")
        m = SparseModel("triangle")
        self.layers = add_triangle_layers(m, net, b)
        self.out_cols = self.layers.out
        self.n_cols, self.n_rows = m.n_vars, m.n_rows
        self.lp = WarmLP(m, time_limit=time_limit)

    def solve(self, c, sense: str = "max") -> float:
        """A rigorous bound of ``c @ F(x)`` over the relaxation: an upper bound of the max
        (``sense="max"``) or a lower bound of the min."""
        return float(self.maximize(np.atleast_2d(np.asarray(c, float)), sense)[0])

    def maximize(self, C, sense: str = "max") -> np.ndarray:
        """One LP per row of ``C``; rigorous bounds (upper for max, lower for min)."""
        _check_sense(sense)
        C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        rows = objective_rows(C, self.out_cols, self.n_cols)
        return self.lp.maximize(rows) if sense == "max" else self.lp.minimize(rows)


def _check_sense(sense: str) -> str:
    if sense not in ("max", "min"):
        raise ShapeError(f"sense must be 'max' or 'min', got {sense!r}")
    return sense


def triangle_lp_highs(net: ReLUNet, lo, hi, bounds, C, sense: str = "max",
                      time_limit: float | None = None) -> np.ndarray:
    """Rigorous bounds of ``C[j] @ F(x)`` over the triangle relaxation, one LP per row of C.

    Each value is the float64 dual bound from HiGHS's row duals: an upper bound on the LP
    maximum (``sense="max"``; a lower bound on the minimum for ``"min"``) that equals the
    optimum up to ~1e-9 when HiGHS converges and stays valid when it does not.

    Parameters
    ----------
    net : ReLUNet
    lo, hi : input box.
    bounds : pre-activation bounds (``bounds.lower[i]``, ``bounds.upper[i]``) valid over the box.
    C : (m, n_out) objective rows.
    sense : "max" or "min".

    Example
    -------
    >>> import numpy as np
    >>> from dynid.relunet import ReLUNet
    >>> from dynid.bounds import crown_bounds
    >>> net = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[1.0, 1.0]])],
    ...               [np.zeros(2), np.zeros(1)])          # |x|
    >>> v = triangle_lp_highs(net, [-1.0], [2.0], crown_bounds(net, [-1.0], [2.0]), np.eye(1))
    >>> bool(2.0 <= v[0] <= 2.0 + 1e-8)
    True
    """
    _check_sense(sense)
    C = np.atleast_2d(np.asarray(C, dtype=np.float64))
    if C.shape[1] != net.n_out:
        raise ShapeError(f"objective rows have {C.shape[1]} entries, the network has "
                         f"{net.n_out} outputs")
    return TriangleLP(net, lo, hi, bounds, time_limit).maximize(C, sense)


def pad_highs(values, sense: str = "max") -> np.ndarray:
    """Deprecated: LP values from :func:`triangle_lp_highs` are rigorous dual bounds now and
    need no pad. Returns them padded outward by the old 1e-7 margin (never looser-invalid)."""
    warnings.warn("pad_highs is deprecated: triangle_lp_highs returns rigorous dual bounds",
                  DeprecationWarning, stacklevel=2)
    v = np.asarray(values, dtype=np.float64)
    pad = HIGHS_ABS_PAD + HIGHS_REL_PAD * np.abs(v)
    return v + pad if sense == "max" else v - pad


class _Prefix:
    """Bounds restricted to the layers of a prefix network (duck-typed like Bounds)."""

    def __init__(self, bounds, i: int):
        self.lower = list(bounds.lower[:i + 1])
        self.upper = list(bounds.upper[:i + 1])


def ibp_layer(bounds, net: ReLUNet, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds of z_i from the bounds of layer i-1 (or the input box), padded."""
    if i == 0:
        plo, phi = np.asarray(bounds.input_lo), np.asarray(bounds.input_hi)
    else:
        plo, phi = bounds.post_bounds(i - 1)
    return affine_image(net.weights[i], net.biases[i], plo, phi)


def highs_intermediate_bounds(net: ReLUNet, lo, hi, init, *, time_limit: float | None = None,
                              log: Callable[[str], None] | None = None,
                              progress: Callable[[int, int], None] | None = None):
    """LP-tight bounds, layer by layer: one HiGHS LP per bound of every unstable unit.

    Each layer's LP uses the already tightened bounds of the layers before it; before a layer
    is tightened its interval bounds are refreshed from them (and intersected with ``init``).
    Every new bound is a rigorous float64 dual bound. ``time_limit`` caps the whole pipeline:
    when it is hit, the remaining units keep their (valid) current bounds and
    ``result.info["complete"]`` is False.

    Returns
    -------
    dynid.bounds.Bounds with ``method="lp-highs"`` and ``info`` holding ``lps`` (number solved),
    ``complete``, ``seconds``.

    Example
    -------
    >>> import numpy as np
    >>> from dynid.relunet import ReLUNet
    >>> from dynid.bounds import interval_bounds
    >>> net = ReLUNet([np.array([[1.0, 1.0], [1.0, -1.0]]), np.array([[1.0, -1.0]]),
    ...                np.array([[1.0]])], [np.zeros(2), np.zeros(1), np.zeros(1)])
    >>> b = highs_intermediate_bounds(net, [-1, -1], [1, 1], interval_bounds(net, [-1, -1], [1, 1]))
    >>> bool(b.upper[1][0] <= 2.0 + 1e-8)          # relu(x0+x1) - relu(x0-x1) <= 2
    True
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
        lp = TriangleLP(prefix_net(net, i), lo, hi, prefix_bounds(b, i))
        new_lo, new_hi = b.lower[i].copy(), b.upper[i].copy()
        for j in un:
            # the cap is checked between LPs
            if time_limit is not None and time.perf_counter() - start >= time_limit:
                complete = False
                break
            e = np.zeros(net.weights[i].shape[0])
            e[j] = 1.0
            up, low = lp.solve(e, "max"), lp.solve(e, "min")
            failed = lp.lp.stats["failed"]
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
