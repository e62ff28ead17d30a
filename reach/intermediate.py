"""Intermediate (pre-activation) bounds of every layer, by name.

- ``ibp``: interval arithmetic; ``crown``: CROWN backward bounds (both from :mod:`dynid.bounds`).
- ``splitting``: start from CROWN, then tighten every unstable unit layer by layer with the
  batched operator-splitting solver: all units of a layer, both bounds, in ONE batch; each new
  bound is the solver's float64 dual bound, so it is sound whatever the iteration count.
- ``lp``: the same layer-by-layer tightening with HiGHS, one LP per unit bound (the baseline).

Example
-------
>>> import numpy as np
>>> from dynid.relunet import ReLUNet
>>> net = ReLUNet([np.eye(2), np.array([[1.0, -1.0]])], [np.zeros(2), np.zeros(1)])
>>> b = intermediate_bounds(net, [-1, -1], [1, 1], method="ibp")
>>> [round(float(v), 6) for v in (b.lower[-1][0], b.upper[-1][0])]
[-1.0, 1.0]
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from dynid.errors import ConfigError
from dynid.relunet import ReLUNet, check_box
from reach.relaxation import _Prefix, highs_intermediate_bounds, ibp_layer, prefix_net

METHODS = ("ibp", "crown", "splitting", "lp")


def _refresh(b, net: ReLUNet, first: int) -> None:
    """Intersect layers ``first..L-1`` with interval bounds from the (tighter) layers before."""
    for i in range(max(first, 1), net.n_layers):
        l, u = ibp_layer(b, net, i)
        b.lower[i] = np.maximum(b.lower[i], l)
        b.upper[i] = np.maximum(np.minimum(b.upper[i], u), b.lower[i])


def splitting_bounds(net: ReLUNet, lo, hi, init=None, *, device="cpu", dtype=torch.float32,
                     max_iter: int = 2000, tol: float = 1e-3, polish_steps: int = 0,
                     polish_lr: float = 0.02, time_limit: float | None = None,
                     log: Callable[[str], None] | None = None,
                     progress: Callable[[int, int], None] | None = None, **solver_opts):
    """Tighten the unstable units of every hidden layer with the splitting solver.

    Parameters
    ----------
    net, lo, hi : network and input box.
    init : starting bounds (default: CROWN); they are only ever intersected, so the result is
        at least as tight.
    device, dtype : where and in which precision the ADMM iterations run.
    max_iter, tol : per-layer solve options (the bounds are valid at any iteration count).
    polish_steps, polish_lr : slope-optimisation steps of the layer dual after the ADMM
        iterations (:meth:`reach.splitting.SplittingSolver.polish_dual`); ``max_iter=0`` with
        ``polish_steps > 0`` tightens by the polished dual alone, which is much faster per
        certified digit for intermediate bounds (they need no primal point).
    time_limit : seconds for the whole pipeline; remaining layers keep their (valid) bounds.
    solver_opts : extra :class:`reach.splitting.SplittingSolver` options (rho, alpha).

    Returns
    -------
    dynid.bounds.Bounds with ``method="splitting"``; ``info`` has ``iterations`` per layer,
    ``max_gap`` per layer, ``complete`` and ``seconds``.

    Example
    -------
    >>> # b = splitting_bounds(net, lo, hi, crown_bounds(net, lo, hi), tol=1e-3)
    """
    from dynid.bounds import crown_bounds

    from reach.splitting import SplittingSolver

    lo, hi = check_box(net, lo, hi)
    b = (init if init is not None else crown_bounds(net, lo, hi)).copy()
    start = time.perf_counter()
    iters, gaps, complete = {}, {}, True
    for i in range(1, net.n_layers - 1):
        _refresh(b, net, i)
        un = np.flatnonzero(b.unstable(i))
        if un.size == 0:
            continue
        if time_limit is not None and time.perf_counter() - start > time_limit:
            complete = False
            break
        sub = prefix_net(net, i)
        e = np.zeros((un.size, net.weights[i].shape[0]))
        e[np.arange(un.size), un] = 1.0
        solver = SplittingSolver(sub, lo, hi, _Prefix(b, i), device=device, dtype=dtype,
                                 **solver_opts)
        res = solver.solve(np.vstack([e, -e]), sense="max", max_iter=max_iter, tol=tol,
                           polish_steps=polish_steps, polish_lr=polish_lr, progress=progress)
        up, low = res.bound[:un.size], -res.bound[un.size:]
        b.upper[i][un] = np.minimum(b.upper[i][un], up)
        b.lower[i][un] = np.maximum(b.lower[i][un], low)
        b.upper[i] = np.maximum(b.upper[i], b.lower[i])
        iters[i] = int(res.iterations.max())
        gaps[i] = float(res.gap.max()) if max_iter > 0 else None   # no primal without ADMM
        if log is not None:
            what = (f"{iters[i]} iterations, largest gap {gaps[i]:.3g}" if max_iter > 0
                    else f"{polish_steps} polishing steps")
            log(f"layer {i}: {un.size} unstable units, {int(b.unstable(i).sum())} remain; "
                f"{what} ({time.perf_counter() - start:.1f} s)")
    _refresh(b, net, 1)
    b.method = "splitting"
    b.info = {**b.info, "iterations": iters, "max_gap": gaps, "complete": complete,
              "seconds": time.perf_counter() - start}
    return b


def intermediate_bounds(net: ReLUNet, lo, hi, method: str = "crown", *, device="cpu",
                        init=None, **opts):
    """Pre-activation bounds of every layer of ``net`` over [lo, hi] by ``method``.

    Parameters
    ----------
    method : "ibp", "crown", "splitting" (CROWN tightened by the splitting solver's dual
        bounds) or "lp" (CROWN tightened by one HiGHS LP per unit bound).
    device : torch device for crown / splitting.
    init : starting bounds for splitting / lp (default CROWN).
    opts : passed on (splitting: dtype, max_iter, tol, rho, alpha, time_limit, log, progress;
        lp: time_limit, log, progress).

    Example
    -------
    >>> # b = intermediate_bounds(net, lo, hi, method="splitting", tol=1e-3)
    """
    from dynid.bounds import crown_bounds, interval_bounds

    lo, hi = check_box(net, lo, hi)
    if method == "ibp":
        return interval_bounds(net, lo, hi)
    if method == "crown":
        return crown_bounds(net, lo, hi, device=device)
    if method == "splitting":
        return splitting_bounds(net, lo, hi, init, device=device, **opts)
    if method == "lp":
        start = init if init is not None else crown_bounds(net, lo, hi, device=device)
        return highs_intermediate_bounds(net, lo, hi, start, **opts)
    raise ConfigError(f"unknown intermediate-bound method {method!r}: use one of "
                      f"{', '.join(METHODS)}")


__all__ = ["intermediate_bounds", "splitting_bounds", "METHODS"]
