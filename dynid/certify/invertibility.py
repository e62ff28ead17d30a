"""Certified (non)invertibility of a ReLUNet on a box, as mixed-integer programs.

``noninvertibility(net, lo, hi, norm, delta)`` solves

    max ||x - y||_p   s.t.  ||F(x) - F(y)||_q <= delta,  x, y in [lo, hi]

(q = ``out_norm``, inf by default; delta = 0 is exact output equality up to the solver's
feasibility tolerance, stated in ``info``). The optimum is 0 exactly when F is injective on the
box (up to ``tol``); a positive optimum comes with a witness pair re-checked in float64.

Verdicts: ``certified`` when the valid bound (solver best bound, or the safe LP bound of the
difference tightening) is <= ``tol``; ``counterexample`` when a witness pair has distance >
``tol`` and the float64 forward pass confirms ``||F(x) - F(y)||_q <= delta + witness_tol``;
otherwise ``unknown`` with the gap.

Example
-------
>>> import numpy as np
>>> from dynid.relunet import ReLUNet
>>> net = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[-1.0, -1.0]])],
...               [np.zeros(2), np.zeros(1)])            # x -> -|x|
>>> c = noninvertibility(net, [-1.0], [1.0], norm="inf")
>>> c.status.value, round(c.value, 6)
('counterexample', 2.0)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from dynid.certify.encode import encode_relunet
from dynid.certify.pairs import (add_copy_differences, copy_bounds, interval_diff_bounds,
                                 tighten_differences)
from dynid.errors import ConfigError, ShapeError, parse_norm
from dynid.relunet import ReLUNet, check_box, compose, linear
from dynid.results import Certificate, Status, verdict

METHODS = ("ours", "naive")
FEASIBILITY_NOTE = ("solved with tight solver tolerances (1e-9) and the bound padded for "
                    "them; output equality is exact up to those tolerances on the coupling rows")


def _as_identity_output(net: ReLUNet) -> ReLUNet:
    """Coupling rows act on the output layer's pre-activations: make it all identity."""
    if net.relu[-1].any():
        return compose(linear(np.eye(net.n_out)), net)
    return net


def pnorm(v, p: float) -> float:
    v = np.abs(np.asarray(v, dtype=np.float64).reshape(-1))
    if v.size == 0:
        return 0.0
    if math.isinf(p):
        return float(v.max())
    if p == 1.0:
        return float(v.sum())
    return float(np.sqrt((v ** 2).sum()))


def _norm_from_box(lo, hi, p: float) -> float:
    """Largest ||d||_p over the box [lo, hi]."""
    m = np.maximum(np.abs(lo), np.abs(hi))
    return pnorm(m, p)


def witness_tolerance(net: ReLUNet, *points) -> float:
    """Slack on ||F(x) - F(y)|| accepted when re-checking a witness in float64."""
    scale = max([1.0] + [float(np.max(np.abs(net.forward(p)))) for p in points])
    return 1e-6 * scale


def polish_pair(net: ReLUNet, x, y, lo, hi, steps: int = 6):
    """Move y (inside the box) so that F(y) = F(x) more exactly: Newton steps on the affine
    piece of F at y. Returns the polished y (or y unchanged when it does not help)."""
    best = np.array(y, dtype=np.float64)
    fx = net.forward(x)
    best_r = pnorm(net.forward(best) - fx, math.inf)
    cur = best.copy()
    for _ in range(steps):
        r = net.forward(cur) - fx
        if pnorm(r, math.inf) <= 1e-13:
            break
        j = net.jacobian(cur)
        step = np.linalg.lstsq(j, r, rcond=None)[0]
        cur = np.clip(cur - step, lo, hi)
        rc = pnorm(net.forward(cur) - fx, math.inf)
        if rc < best_r:
            best, best_r = cur.copy(), rc
    return best


def polish_jointly(net: ReLUNet, x, y, lo, hi, steps: int = 3):
    """Move x and y together (least-norm corrections on their affine pieces) so that
    F(x) = F(y) more exactly while x - y keeps its largest coordinate: repairs witnesses whose
    solver tolerance matters (pairs close together near a fold)."""
    x, y = np.array(x, dtype=np.float64), np.array(y, dtype=np.float64)
    n = x.size
    k = int(np.argmax(np.abs(x - y)))
    for _ in range(steps):
        r = net.forward(x) - net.forward(y)
        if pnorm(r, math.inf) <= 1e-14:
            break
        jx, jy = net.jacobian(x), net.jacobian(y)
        sel = np.zeros((1, 2 * n))
        sel[0, k], sel[0, n + k] = 1.0, -1.0
        a = np.vstack([np.hstack([jx, -jy]), sel])
        step = np.linalg.lstsq(a, np.r_[-r, 0.0], rcond=None)[0]
        x = np.clip(x + step[:n], lo, hi)
        y = np.clip(y + step[n:], lo, hi)
    return x, y


def check_pair(net, x, y, p, q, delta, tol, lo, hi, fixed_x: bool = False):
    """Float64 re-check of a witness pair; returns (ok, distance, mismatch, x, y)."""
    x = np.clip(np.asarray(x, float), lo, hi)
    y = np.clip(np.asarray(y, float), lo, hi)
    wtol = witness_tolerance(net, x, y)
    best = None
    cands = [(x, y), (x, polish_pair(net, x, y, lo, hi))]
    if not fixed_x:
        cands.append(polish_jointly(net, x, y, lo, hi))
    for xx, yy in cands:
        dist = pnorm(xx - yy, p)
        mis = pnorm(net.forward(xx) - net.forward(yy), q)
        ok = dist > tol and mis <= delta + wtol
        cand = (ok, dist, mis, xx, yy)
        if best is None or (ok and (not best[0] or dist > best[1])):
            best = cand
    return best


def _objective(model, d, p: float, d_lo, d_hi, symmetric: bool, naive: bool):
    """Add max ||d||_p (linearised for p in {1, inf}); return a function mapping the solver's
    objective bound to a bound on ||d||_p."""
    n = d.size
    width = np.maximum(d_hi, -d_lo)
    if math.isinf(p):
        if naive or not symmetric:
            # coordinate and sign binaries: d_i >= w - M(1 - r_i), -d_i >= w - M(1 - r'_i)
            big = float(2 * width.max()) if naive else None
            wmax = float(width.max())
            w = model.add_vars(1, 0.0, wmax, "C")
            r = model.add_vars(2 * n, 0.0, 1.0, "B")
            for i in range(n):
                m_pos = big if naive else wmax - d_lo[i]
                m_neg = big if naive else wmax + d_hi[i]
                model.add_row([d[i], w[0], r[i]], [1.0, -1.0, -m_pos], -m_pos, np.inf)
                model.add_row([d[i], w[0], r[n + i]], [-1.0, -1.0, -m_neg], -m_neg, np.inf)
            model.add_row(r, np.ones(2 * n), 1.0, 1.0)
        else:
            # (x, y) and (y, x) are both feasible: the coordinate attaining the max can be
            # taken with d_i >= 0, so one binary per coordinate suffices
            wmax = float(np.max(d_hi)) if np.max(d_hi) > 0 else 0.0
            w = model.add_vars(1, 0.0, max(wmax, 0.0), "C")
            r = model.add_vars(n, 0.0, 1.0, "B")
            for i in range(n):
                m_i = wmax - d_lo[i]
                model.add_row([d[i], w[0], r[i]], [1.0, -1.0, -m_i], -m_i, np.inf)
            model.add_row(r, np.ones(n), 1.0, 1.0)
        model.set_objective(w, [1.0], sense="max")
        return lambda b: b
    if symmetric and not naive:
        model.set_bounds(d[:1], lb=max(0.0, float(d_lo[0])))
        d_lo = d_lo.copy()
        d_lo[0] = max(0.0, d_lo[0])
    if p == 1.0:
        hi_p = np.maximum(d_hi, 0.0)
        hi_n = np.maximum(-d_lo, 0.0)
        dp = model.add_vars(n, 0.0, hi_p, "C")
        dn = model.add_vars(n, 0.0, hi_n, "C")
        s = model.add_vars(n, 0.0, 1.0, "B")
        for i in range(n):
            model.add_row([d[i], dp[i], dn[i]], [1.0, -1.0, 1.0], 0.0, 0.0)
            model.add_row([dp[i], s[i]], [1.0, -hi_p[i]], -np.inf, 0.0)
            model.add_row([dn[i], s[i]], [1.0, hi_n[i]], -np.inf, hi_n[i])
        model.set_objective(np.concatenate([dp, dn]), np.ones(2 * n), sense="max")
        return lambda b: b
    model.set_objective(sense="max", quad=(d, d, np.ones(n)))
    return lambda b: math.sqrt(max(b, 0.0)) if math.isfinite(b) else b


def _couple_outputs(model, od, q: float, delta: float) -> None:
    """||od||_q <= delta on the output-difference variables od."""
    k = od.size
    lb = np.maximum(model.lb[od], -delta)       # |od_i| <= delta is implied by every q-ball
    model.set_bounds(od, lb=lb, ub=np.maximum(np.minimum(model.ub[od], delta), lb))
    if delta == 0 or math.isinf(q):
        return
    if q == 1.0:
        e = model.add_vars(k, 0.0, delta, "C")
        for i in range(k):
            model.add_row([e[i], od[i]], [1.0, -1.0], 0.0, np.inf)
            model.add_row([e[i], od[i]], [1.0, 1.0], 0.0, np.inf)
        model.add_row(e, np.ones(k), -np.inf, delta)
    else:
        model.add_l2_ball(od, delta)


def _ball_rows(model, v, center, radius: float, p: float) -> None:
    """||v - center||_p <= radius (the box part is in the variable bounds)."""
    if math.isinf(p):
        return
    n = v.size
    if p == 1.0:
        e = model.add_vars(n, 0.0, radius, "C")
        for i in range(n):
            model.add_row([e[i], v[i]], [1.0, -1.0], -center[i], np.inf)
            model.add_row([e[i], v[i]], [1.0, 1.0], center[i], np.inf)
        model.add_row(e, np.ones(n), -np.inf, radius)
    else:
        model.add_l2_ball(v, radius, center)


def noninvertibility(net: ReLUNet, lo, hi, norm="inf", delta: float = 0.0, *,
                     out_norm="inf", method: str = "ours", solver: str = "auto",
                     time_limit: float | None = None, threads: int | None = None,
                     mip_gap: float = 1e-4, tol: float = 1e-4, bounds=None,
                     tighten: bool = True, log=None, ball=None, fixed_y=None,
                     query: str = "noninvertibility", ball_norm=None,
                     y_box=None) -> Certificate:
    """Largest distance ||x - y||_p between two points of the box whose images are within
    ``delta`` (in the ``out_norm``).

    Parameters
    ----------
    net : the map F.
    lo, hi : the box.
    norm : p in {1, 2, inf} for the input distance (2 is a nonconvex MIQP: Gurobi or SCIP).
    delta : output tolerance (0 = equal outputs).
    out_norm : q for ||F(x) - F(y)||_q (default inf: linear rows).
    method : "ours" (tight bounds, difference cuts, symmetry breaking) or "naive" (the paper
        code's formulation, the baseline).
    solver, time_limit, threads, mip_gap, log : passed to :func:`dynid.milp.solve`.
    tol : distance at or below which the map counts as injective (paper: 1e-4).
    bounds : per-copy bounds to use instead of computing them.
    tighten : run the LP tightening of the difference bounds before the MIP (ours only).
    ball : ``(center, radius)``: restrict both points to the p-ball (and the box).
    fixed_y : fix y to this point (the preimage query): max ||x - y|| with F(x) = F(y).
    y_box : ``(lo_y, hi_y)``: y ranges over this box instead of [lo, hi] (x stays in [lo, hi]);
        the cross-cell query of :func:`invertible_on` with ``cells``. Pairs whose sound output
        bounds lie more than delta apart are certified without a solver.

    Returns
    -------
    Certificate (query "noninvertibility"): value = distance of the checked witness (0 when
    none), bound = valid upper bound on the optimum, witness {"x", "y"} when one exists.

    Example
    -------
    >>> import numpy as np
    >>> from dynid.relunet import linear
    >>> noninvertibility(linear(np.eye(2)), [0, 0], [1, 1]).status.value
    'certified'
    """
    from dynid.milp import padded_bound, solve

    t0 = time.perf_counter()
    p, q = parse_norm(norm), parse_norm(out_norm)
    pb = p if ball_norm is None else parse_norm(ball_norm)
    if method not in METHODS:
        raise ConfigError(f"method {method!r} is unknown: use 'ours' or 'naive'")
    lo, hi = check_box(net, lo, hi)
    delta = float(delta)
    if not (delta >= 0 and math.isfinite(delta)):
        raise ConfigError(f"delta must be a finite number >= 0, got {delta}")
    net = _as_identity_output(net)
    if ball is not None:
        center = np.asarray(ball[0], dtype=np.float64).reshape(-1)
        if center.shape != (net.n_in,):
            raise ShapeError(f"ball center needs {net.n_in} values, got {center.size}")
        ball = (center, float(ball[1]))
    if y_box is not None and (ball is not None or fixed_y is not None):
        raise ConfigError("y_box cannot be combined with ball or fixed_y")
    if fixed_y is not None:
        fixed_y = np.asarray(fixed_y, dtype=np.float64).reshape(-1)
        if fixed_y.shape != (net.n_in,):
            raise ShapeError(f"fixed_y needs {net.n_in} values, got {fixed_y.size}")
    enc = encode_noninvertibility(net, lo, hi, p, q, delta, method=method, tol=tol,
                                  bounds=bounds, tighten=tighten, time_limit=time_limit,
                                  log=log, ball=ball, fixed_y=fixed_y, ball_norm=pb,
                                  y_box=y_box)
    info, model, lo, hi, lo_y, hi_y = enc.info, enc.model, enc.lo, enc.hi, enc.lo_y, enc.hi_y
    if enc.proof is not None:   # proved by bounds alone: no MIP needed
        return Certificate(query, Status.CERTIFIED, 0.0, enc.lp_bound, enc.lp_bound, None,
                           enc.proof_solver, time.perf_counter() - t0, enc.size, info)
    lp_bound, size = enc.lp_bound, enc.size
    left = None if time_limit is None else max(0.1, time_limit - (time.perf_counter() - t0))
    res = solve(model, solver=solver, time_limit=left, threads=threads, mip_gap=mip_gap,
                mip_gap_abs=tol / 10 if math.isinf(p) or p == 1.0 else (tol / 10) ** 2, log=log,
                tolerances="tight")
    info["solver_status"] = res.status
    info["tolerances"] = res.info.get("tolerances")
    if res.message:
        info["solver_message"] = res.message
    # the best bound, padded for what the solver's tolerances can move it (dynid.milp)
    bound = min(enc.to_dist(padded_bound(model, res)), lp_bound) if res.status != "error" \
        else lp_bound
    if res.status == "infeasible":
        if y_box is not None and np.any(np.maximum(lo, lo_y) > np.minimum(hi, hi_y)):
            bound = 0.0   # disjoint boxes: no pair with equal outputs (the solver's proof)
            info["proof"] = "the solver proved the coupled MIP infeasible"
        else:
            # x = y is feasible; infeasible only from tolerances: say so, keep the LP bound
            info["note"] = "solver reported infeasible although x = y is feasible"
            bound = lp_bound
    value, witness = 0.0, None
    if res.x is not None:
        xw = res.x[enc.x]
        yw = res.x[enc.y] if enc.y is not None else fixed_y
        if fixed_y is None:   # polishing may move both points within the boxes' hull
            ok, dist, mis, xw, yw = check_pair(net, xw, yw, p, q, delta, tol,
                                               np.minimum(lo, lo_y), np.maximum(hi, hi_y))
        else:   # only x may be polished: y is the given point
            ok, dist, mis, yw, xw = check_pair(net, yw, xw, p, q, delta, tol, lo, hi,
                                               fixed_x=True)
        if ok:
            value = dist
            witness = {"x": xw, "y": yw, "Fx": net.forward(xw), "Fy": net.forward(yw),
                       "distance": dist, "output_gap": mis}
        elif dist > tol:
            info["rejected_witness"] = {"distance": dist, "output_gap": mis}
    if p == 2.0 and bound > tol and witness is None:
        # the squared objective's bound is too coarse near 0 (tol^2 is below the solver's
        # tolerances): ||d||_2 <= sqrt(n) ||d||_inf, so certify the inf-norm problem instead
        sub = noninvertibility(net, lo, hi, "inf", delta, out_norm=out_norm, method=method,
                               solver=solver, time_limit=time_limit, threads=threads,
                               mip_gap=mip_gap, tol=tol / math.sqrt(net.n_in), bounds=bounds,
                               tighten=tighten, log=log, ball=ball, fixed_y=fixed_y,
                               query=query, ball_norm=pb, y_box=y_box)
        if sub.certified:
            bound = min(bound, math.sqrt(net.n_in) * sub.bound)
            info["l2_bound_via_inf_norm"] = True
    status = verdict(bound, tol, witness is not None)
    gap = max(0.0, bound - value) if math.isfinite(bound) else math.inf
    return Certificate(query, status, value, max(bound, value), gap, witness, res.solver,
                       time.perf_counter() - t0, size, info)


@dataclass
class NoninvertibilityEncoding:
    """The MIP of a :func:`noninvertibility` query (see :func:`encode_noninvertibility`).

    ``model`` maximises the distance (absent when ``proof`` says bounds alone settle it);
    ``x`` / ``y`` index the two points (``y`` None with a fixed y); ``to_dist`` maps the
    model's bound to the distance; ``lp_bound`` is the bound from the (tightened) difference
    box; ``lo, hi`` the x box (met with the ball), ``lo_y, hi_y`` the y box."""

    model: object
    x: np.ndarray
    y: np.ndarray | None
    to_dist: object
    lp_bound: float
    lo: np.ndarray
    hi: np.ndarray
    lo_y: np.ndarray
    hi_y: np.ndarray
    info: dict
    size: dict
    proof: str | None = None
    proof_solver: str = ""


def encode_noninvertibility(net: ReLUNet, lo, hi, p: float, q: float, delta: float, *,
                            method: str = "ours", tol: float = 1e-4, bounds=None,
                            tighten: bool = True, time_limit=None, log=None, ball=None,
                            fixed_y=None, ball_norm=None, y_box=None
                            ) -> NoninvertibilityEncoding:
    """The encoding half of :func:`noninvertibility`: the two copies (or one copy and a fixed
    point), their difference rows, the output coupling, the ball rows and the distance
    objective. Arguments as there, already checked: ``p``/``q`` parsed norms, ``lo``/``hi``
    float arrays, ``net`` with an identity output layer, ``ball`` a ``(center, radius)`` pair
    of an array and a float."""
    from dynid.milp import SparseModel

    pb = p if ball_norm is None else ball_norm
    center = radius = None
    if ball is not None:
        center, radius = ball
        lo, hi = np.maximum(lo, center - radius), np.minimum(hi, center + radius)
        if np.any(lo > hi):
            raise ShapeError("the ball does not meet the box")
    naive = method == "naive"
    info = {"method": method, "norm": norm_name(p), "out_norm": norm_name(q), "delta": delta,
            "tol": tol, "feasibility": FEASIBILITY_NOTE}
    bx = bounds if bounds is not None else copy_bounds(net, lo, hi, method)
    info["unstable_units"] = int(bx.n_unstable)
    lo_y, hi_y, by = lo, hi, bx
    if y_box is not None:
        lo_y, hi_y = check_box(net, y_box[0], y_box[1], "y box")
        by = copy_bounds(net, lo_y, hi_y, method)
        info["y_box"] = {"lo": lo_y, "hi": hi_y}
        # F(x) - F(y) is bounded away from [-delta, delta] in some output: no pair at all
        sep = np.maximum(bx.lower[-1] - by.upper[-1], by.lower[-1] - bx.upper[-1])
        if np.max(sep) > delta:
            info["proof"] = ("sound output bounds of the two boxes are more than delta apart "
                             f"(by {float(np.max(sep)):.3g})")
            return NoninvertibilityEncoding(None, None, None, None, 0.0, lo, hi, lo_y, hi_y,
                                            info, {}, info["proof"], "bounds")
    model = SparseModel()
    ex = encode_relunet(model, net, bx, method="bigm" if not naive else "naive")
    lp_bound = math.inf
    if fixed_y is not None:
        yv = fixed_y
        d_lo, d_hi = lo - yv, hi - yv
        d = model.add_vars(net.n_in, d_lo, d_hi, "C")
        eye = sp.identity(net.n_in)
        model.add_rows(np.concatenate([d, ex.x]), sp.hstack([eye, -eye]), -yv, -yv)
        fy = net.forward(yv)
        od = model.add_vars(net.n_out, -np.inf, np.inf, "C")
        eo = sp.identity(net.n_out)
        model.add_rows(np.concatenate([od, ex.out]), sp.hstack([eo, -eo]), -fy, -fy)
        symmetric = False
        y_idx = None
    else:
        ey = encode_relunet(model, net, by, method="bigm" if not naive else "naive")
        y_idx = ey.x
        if naive:
            d_lo, d_hi = lo - hi_y, hi - lo_y
            d = model.add_vars(net.n_in, d_lo, d_hi, "C")
            eye = sp.identity(net.n_in)
            model.add_rows(np.concatenate([d, ex.x, ey.x]), sp.hstack([eye, -eye, eye]), 0.0, 0.0)
            od = model.add_vars(net.n_out, -np.inf, np.inf, "C")
            eo = sp.identity(net.n_out)
            model.add_rows(np.concatenate([od, ex.out, ey.out]), sp.hstack([eo, -eo, eo]),
                           0.0, 0.0)
        else:
            db = interval_diff_bounds(net, bx, by, lo - hi_y, hi - lo_y)
            if tighten:
                db = tighten_differences(net, bx, by, db, -delta, delta,
                                         stop_at=_stop_at(tol, p, net.n_in),
                                         time_limit=_tighten_budget(time_limit),
                                         symmetric=(ball is None and y_box is None), log=log)
                info["tighten_rounds"] = db.info.get("tighten_rounds", 0)
                info["tighten_seconds"] = db.info.get("tighten_seconds", 0.0)
                if db.info.get("tighten_time_limit_hit"):
                    # recorded: the bounds (not their soundness) then depend on the load
                    info["tighten_time_limit_hit"] = True
            d_lo, d_hi = db.d_lo, db.d_hi
            lp_bound = _norm_from_box(d_lo, d_hi, p)
            d, dzs = add_copy_differences(model, net, (ex.x, ex.h), (ey.x, ey.h), bx, by, db)
            od = dzs[-1]
        symmetric = y_box is None   # (x, y) <-> (y, x) maps the feasible set onto itself
        if ball is not None:
            _ball_rows(model, ex.x, center, radius, pb)
            _ball_rows(model, ey.x, center, radius, pb)
    if ball is not None and fixed_y is not None:
        _ball_rows(model, ex.x, center, radius, pb)
    _couple_outputs(model, od, q, delta)
    if lp_bound <= tol:
        # the LP relaxation alone proves it: no MIP needed
        info["proof"] = "LP tightening of the difference bounds (safe dual bounds)"
        return NoninvertibilityEncoding(model, ex.x, y_idx, None, lp_bound, lo, hi, lo_y, hi_y,
                                        info, model.size(), info["proof"], "highs")
    to_dist = _objective(model, d, p, np.asarray(d_lo, float), np.asarray(d_hi, float),
                         symmetric, naive)
    return NoninvertibilityEncoding(model, ex.x, y_idx, to_dist, lp_bound, lo, hi, lo_y, hi_y,
                                    info, model.size())


def _stop_at(tol: float, p: float, n: int) -> float:
    """Per-coordinate |d_i| that makes the box bound on ||d||_p reach tol."""
    return 0.9 * tol / (1.0 if math.isinf(p) else (n if p == 1.0 else math.sqrt(n)))


def _tighten_budget(time_limit):
    # no time limit: no wall clock either (the rounds bound the work), so the same query
    # gives the same bounds on a busy or an idle machine, in any process (issue 16)
    return None if time_limit is None else max(0.05, 0.3 * time_limit)


def norm_name(p: float) -> str:
    return "inf" if math.isinf(p) else str(int(p))


def invertible_on(net: ReLUNet, lo, hi, *, cells: int | None = None, progress=None,
                  **kw) -> Certificate:
    """Global verdict on the box: certified (injective, up to ``tol``) or a witness pair.

    ``cells = k`` splits the box into a k x ... x k grid and answers the same question pair of
    cells by pair: F is injective on the box exactly when no cell pair (C_i, C_j), i <= j, holds
    x in C_i, y in C_j with F(x) = F(y) and ||x - y|| > tol. Pairs whose sound output bounds are
    apart need no solver, and each remaining MIP is smaller and better bounded than the global
    one, which often turns a time-limited ``unknown`` into a certificate. ``time_limit`` is then
    the budget of the whole grid (each pair gets what is left, shared over the pairs still to
    do); the first confirmed witness ends the search. ``progress(msg)`` reports each pair;
    ``executor=`` (a :class:`dynid.executor.Executor`) runs the pairs in worker processes or
    on a Dask cluster, with the same result.

    Example
    -------
    >>> import numpy as np
    >>> from dynid.relunet import linear
    >>> invertible_on(linear(np.array([[2.0, 0.0], [0.0, 1.0]])), [0, 0], [1, 1]).certified
    True
    """
    kw.setdefault("norm", "inf")
    if not cells or cells <= 1:
        kw.pop("executor", None)    # one MIP: nothing to distribute
        return noninvertibility(net, lo, hi, query="invertible_on", **kw)
    from dynid.certify.cellpairs import invertible_by_cells

    return invertible_by_cells(net, lo, hi, int(cells), progress, kw)


from dynid.certify.radius import certified_radius  # noqa: E402  (re-export)

__all__ = ["noninvertibility", "encode_noninvertibility", "NoninvertibilityEncoding",
           "invertible_on", "certified_radius", "check_pair", "pnorm"]
