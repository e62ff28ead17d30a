"""Exact output ranges of a ReLUNet over a box by MIP, keeping only solver best bounds.

Example
-------
>>> import numpy as np
>>> from dynid.relunet import ReLUNet
>>> net = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[-1.0, -1.0]])],
...               [np.zeros(2), np.zeros(1)])            # x -> -|x|
>>> lo, up = output_range(net, [-1.0], [0.5], np.eye(1))
>>> bool(-1.0 - 1e-6 <= lo[0] <= -1.0 + 1e-9 and 0.0 - 1e-9 <= up[0] <= 1e-6)
True
"""

from __future__ import annotations

import time

import numpy as np

from dynid.errors import ShapeError
from dynid.relunet import ReLUNet, check_box


def output_range(net: ReLUNet, lo, hi, C=None, *, solver: str = "auto",
                 time_limit: float | None = None, bounds=None, obbt: bool | str = "auto",
                 mip_gap: float = 1e-6, log=None, return_results: bool = False,
                 verify: int | None = None):
    """Sound lower and upper bounds of each row of ``C @ F(x)`` over the box [lo, hi].

    Each bound is the MIP *best bound* (valid even when the time limit stops the solver; then
    it is looser than the optimum), solved with tight tolerances and padded by what those
    tolerances can move it (:func:`dynid.milp.bound_pad`), so it holds for the exact network. With ``C = None`` the identity
    is used (the output box).

    Parameters
    ----------
    C : (k, n_out) array of objective rows.
    time_limit : seconds for the whole call, shared equally by the 2k MIPs.
    bounds : pre-activation bounds to encode with (default CROWN ∩ interval, plus LP-OBBT
        on deep nets).
    return_results : also return the list of :class:`dynid.milp.SolveResult` (min, max per row).
    verify : nodes of the tolerance-free LP branch-and-bound that may replace the pad by a
        rigorous bound (:func:`dynid.milp.padded_bound`; default its ``VERIFY_NODES``); 0
        keeps the pad alone.

    Returns
    -------
    (lower, upper) float64 arrays of length k.
    """
    from dynid.certify.encode import encode_relunet, encoding_sensitivity, objective_scale
    from dynid.certify.pairs import copy_bounds
    from dynid.milp import SparseModel, padded_bound, solve, stop_if_interrupted

    lo, hi = check_box(net, lo, hi)
    C = np.eye(net.n_out) if C is None else np.atleast_2d(np.asarray(C, dtype=np.float64))
    if C.shape[1] != net.n_out:
        raise ShapeError(f"C needs {net.n_out} columns (one per output), got {C.shape[1]}")
    b = bounds if bounds is not None else copy_bounds(net, lo, hi, "ours", obbt)
    m = SparseModel()
    enc = encode_relunet(m, net, b)
    scales = [objective_scale(net, c) for c in C]
    lower = np.full(C.shape[0], -np.inf)
    upper = np.full(C.shape[0], np.inf)
    results = []
    t0 = time.perf_counter()
    per = None if time_limit is None else time_limit / (2 * C.shape[0])
    for k in range(C.shape[0]):
        for sense in ("min", "max"):
            # objective scaled so that the rows' multipliers are about 1 (the solver's
            # tolerances are absolute), solved tight, its best bound padded for the
            # tolerances (dynid.milp.tolerances) and scaled back (a power of two: exact)
            s = scales[k]
            m.set_objective(enc.out, C[k] / s, sense=sense)
            res = solve(m, solver=solver, time_limit=per, mip_gap=mip_gap, log=log,
                        tolerances="tight")
            results.append(res)
            stop_if_interrupted(res)
            value = s * padded_bound(m, res, encoding_sensitivity(net, b, C[k] / s),
                                     **({} if verify is None else {"verify": verify}))
            if sense == "min":
                lower[k] = value
            else:
                upper[k] = value
    if log:
        log(f"output_range: {2 * C.shape[0]} MIPs in {time.perf_counter() - t0:.2f}s")
    return (lower, upper, results) if return_results else (lower, upper)
