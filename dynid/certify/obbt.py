"""Optimisation-based bound tightening (OBBT) of pre-activation bounds.

(Lives in :mod:`dynid.certify` because it solves LPs and MILPs built by the encodings;
``dynid.bounds.obbt`` is a deprecated alias of this module.)

``mode="lp"``: layer by layer, the triangle LP relaxation of the layers before it (with the
bounds found so far) is built once and maximised / minimised for every unit of the layer; only
the objective changes between solves. The bound kept is a float64 *dual* bound recomputed from
HiGHS's row duals (valid whatever the solver's tolerances), padded for rounding.

``mode="milp"``: the same, but each unit's bound is the MILP best bound of the exact big-M
encoding of the last ``window`` layers (the earlier ones enter through their bounds). A time
limit keeps the solver's best bound (never an incumbent objective value).

Bounds never get looser than the ones started from (``init``, default CROWN ∩ IBP).

Example
-------
>>> import numpy as np
>>> from dynid.relunet import ReLUNet
>>> net = ReLUNet([np.array([[1.0, 1.0], [1.0, -1.0]]), np.array([[1.0, 1.0]])],
...               [np.zeros(2), np.zeros(1)])
>>> b = obbt_bounds(net, [-1.0, -1.0], [1.0, 1.0])
>>> bool(2.0 <= b.upper[-1][0] <= 3.0 + 1e-6)   # triangle LP: x0 + 2 <= 3 (exact max 2)
True
>>> m = obbt_bounds(net, [-1.0, -1.0], [1.0, 1.0], init=b, mode="milp", solver="highs")
>>> bool(2.0 <= m.upper[-1][0] <= 2.0 + 1e-5)   # the exact MILP bound
True
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from dynid.bounds.core import Bounds
from dynid.bounds.relaxation import add_triangle_layers
from dynid.errors import ConfigError
from dynid.relunet import ReLUNet, check_box


def obbt_bounds(net: ReLUNet, lo, hi, init: Bounds | None = None, *, mode: str = "lp",
                solver: str = "auto", time_limit: float | None = None,
                window: int | None = None, layers=None, log=None) -> Bounds:
    """Tighten the pre-activation bounds of ``net`` over the box [lo, hi] by optimisation.

    Parameters
    ----------
    init : starting bounds (default: CROWN ∩ interval); the result is never looser.
    mode : ``"lp"`` (triangle LP per unit, safe dual bounds) or ``"milp"`` (exact MILP of the
        last ``window`` layers per unit, best bounds).
    solver, time_limit : MILP solver and the total time budget (seconds) for the whole call;
        units left when the budget is spent keep their ``init`` bounds.
    window : number of layers encoded exactly in MILP mode (default: all).
    layers : indices of the layers to tighten (default: every layer but the input).
    log : optional callable receiving progress lines.

    Returns
    -------
    Bounds (method ``"obbt-lp"`` or ``"obbt-milp"``).
    """
    from dynid.bounds import crown_bounds, interval_bounds
    from dynid.certify.lp import RowLP

    lo, hi = check_box(net, lo, hi)
    if mode not in ("lp", "milp"):
        raise ConfigError(f"OBBT mode {mode!r} is unknown: use 'lp' or 'milp'")
    if init is None:
        init = crown_bounds(net, lo, hi).intersect(interval_bounds(net, lo, hi))
    b = init.copy()
    t0 = time.perf_counter()
    layers = range(1, net.n_layers) if layers is None else layers
    for i in layers:
        if i == 0:
            continue  # layer 0 is affine in the box: interval bounds are already exact
        left = None if time_limit is None else time_limit - (time.perf_counter() - t0)
        if left is not None and left <= 0:
            break
        w, bias = net.weights[i], net.biases[i]
        if mode == "lp":
            lp = RowLP()
            _, hs = add_triangle_layers(lp, net, b, i)
            cols = hs[-1]
            c = sp.csr_matrix((np.concatenate([w, -w]).ravel(),
                               (np.repeat(np.arange(2 * w.shape[0]), w.shape[1]),
                                np.tile(cols, 2 * w.shape[0]))),
                              shape=(2 * w.shape[0], lp.n_vars))
            vals = lp.maximize(c, time_limit=left)
            n = w.shape[0]
            up = vals[:n] + bias
            dn = -vals[n:] + bias
            mag = np.abs(bias) + np.abs(vals[:n]) + np.abs(vals[n:])
            up, dn = up + 1e-12 * mag, dn - 1e-12 * mag
        else:
            dn, up = _milp_layer(net, b, i, solver, left, window)
        b.lower[i] = np.maximum(b.lower[i], dn)
        b.upper[i] = np.maximum(np.minimum(b.upper[i], up), b.lower[i])
        if log:
            log(f"obbt-{mode}: layer {i} done, {b.n_unstable} unstable units, "
                f"{time.perf_counter() - t0:.2f}s")
    b.method = f"obbt-{mode}"
    b.info = {**b.info, "obbt_seconds": time.perf_counter() - t0}
    return b


def _milp_layer(net: ReLUNet, b: Bounds, i: int, solver, budget, window):
    """Per-unit MILP bounds of layer i, encoding layers max(0, i-window)..i-1 exactly."""
    from dynid.certify.encode import encode_relunet, encoding_sensitivity
    from dynid.milp import SparseModel, padded_bound, solve, stop_if_interrupted

    start = 0 if window is None else max(0, i - int(window))
    sub = ReLUNet(net.weights[start:i], net.biases[start:i], net.relu[start:i])
    if start == 0:
        sub_lo, sub_hi = b.input_lo, b.input_hi
    else:
        sub_lo, sub_hi = b.post_bounds(start - 1)
    sub_b = Bounds(b.lower[start:i], b.upper[start:i], sub_lo, sub_hi, list(net.relu[start:i]),
                   "sub")
    w, bias = net.weights[i], net.biases[i]
    n = w.shape[0]
    dn, up = b.lower[i].copy(), b.upper[i].copy()
    t0 = time.perf_counter()
    for k in range(n):
        for sense in ("max", "min"):
            left = None if budget is None else budget - (time.perf_counter() - t0)
            if left is not None and left <= 0:
                return dn, up
            m = SparseModel()
            enc = encode_relunet(m, sub, sub_b)
            m.set_objective(enc.out, w[k], sense=sense)
            res = solve(m, solver=solver, time_limit=left, tolerances="tight")
            stop_if_interrupted(res)
            if res.bound is None or not np.isfinite(res.bound):
                continue
            # the best bound padded for the solver's tolerances, then for adding the bias
            v = padded_bound(m, res, encoding_sensitivity(sub, sub_b, w[k]))
            r = 1e-15 + 1e-15 * (abs(v) + abs(bias[k]))
            if sense == "max":
                up[k] = min(up[k], v + bias[k] + r)
            else:
                dn[k] = max(dn[k], v + bias[k] - r)
    return dn, up
