"""Certified radii around a point: where F is locally invertible.

- ``mode="preimage"``: the distance from ``center`` to the nearest *other* preimage of
  F(center) (the largest ball in which F(center) has a single preimage).
- ``mode="ball"``: the largest ball around ``center`` on which F is injective.

Both up to the distance tolerance ``tol`` (pairs closer than ``tol`` count as one point, as in
the paper) and within ``r_max``.

``method="reference"`` is the paper's protocol: R = 0.1, multiplied by 5 while certified, then
bisection to a bracket of width ``resolution`` (at most 25 steps), one max-distance MIP each.
``method="fast"`` answers with ONE MIP: minimise the radius of a ball holding a pair with equal
outputs and distance >= ``tol`` (ball mode), or the distance to a point with the same output at
distance >= ``tol`` (preimage mode). Its optimum is the same number the reference protocol
brackets; its best bound is a certified radius and its solution a checked witness.

The result is a :class:`~dynid.results.Certificate` with ``value`` = certified radius (a
valid lower bound) and ``bound`` = an upper bound on the radius backed by a checked witness
(inf when none); ``status`` is certified when both are known and within ``resolution``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

from dynid.certify.encode import encode_relunet
from dynid.errors import ConfigError, ShapeError, parse_norm
from dynid.relunet import ReLUNet
from dynid.results import Certificate, Status

MODES = ("preimage", "ball")


def certified_radius(net: ReLUNet, center, mode: str = "preimage", norm="inf",
                     method: str = "fast", *, r0: float = 0.1, growth: float = 5.0,
                     resolution: float = 1e-3, max_steps: int = 25, r_max: float = 10.0,
                     tol: float = 1e-4, formulation: str = "ours", solver: str = "auto",
                     time_limit: float | None = None, log=None) -> Certificate:
    """Certified radius of local invertibility at ``center``.

    Parameters
    ----------
    net : the map F (n -> n or n -> m).
    center : the point.
    mode : "preimage" or "ball" (see the module docstring).
    norm : 1, 2 or inf, for the ball and the distances.
    method : "fast" (one MIP) or "reference" (grow x5 from ``r0``, then bisect).
    r_max : largest radius searched; a radius >= r_max is reported as r_max.
    tol : pairs closer than this count as one point.
    formulation : MIP formulation of each reference step ("ours" or "naive").
    time_limit : seconds per MIP; a limit hit leaves the bracket open (status unknown).

    Example
    -------
    >>> import numpy as np
    >>> from dynid.relunet import ReLUNet
    >>> net = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[-1.0, -1.0]])],
    ...               [np.zeros(2), np.zeros(1)])            # x -> -|x|
    >>> c = certified_radius(net, [0.5], mode="preimage")   # other preimage: -0.5
    >>> round(c.value, 3)
    1.0
    """
    p = parse_norm(norm)
    if mode not in MODES:
        raise ConfigError(f"radius mode {mode!r} is unknown: use 'preimage' or 'ball'")
    if method not in ("fast", "reference"):
        raise ConfigError(f"radius method {method!r} is unknown: use 'fast' or 'reference'")
    c = np.asarray(center, dtype=np.float64).reshape(-1)
    if c.shape != (net.n_in,):
        raise ShapeError(f"center needs {net.n_in} values, got {c.size}")
    if not np.all(np.isfinite(c)):
        raise ShapeError("center must be finite")
    if not (r_max > 0 and r0 > 0 and resolution > 0):
        raise ConfigError("r_max, r0 and resolution must be > 0")
    orig, (net, scale) = net, _unit_output_scale(net, c, r_max)
    if method == "reference":
        cert = _reference(net, c, mode, p, r0, growth, resolution, max_steps, r_max, tol,
                          formulation, solver, time_limit, log)
    elif mode == "ball":
        cert = _fast_ball(net, c, p, r_max, tol, resolution, solver, time_limit, log)
    else:
        cert = _fast(net, c, mode, p, r_max, tol, resolution, solver, time_limit, log)
    if scale != 1.0:
        cert.info["output_scale"] = scale
        w = cert.witness
        if w is not None and "x" in w and "y" in w:   # report the witness in F's own units
            w["Fx"], w["Fy"] = orig.forward(np.asarray(w["x"])), orig.forward(np.asarray(w["y"]))
            if "output_gap" in w:
                w["output_gap"] = float(w["output_gap"]) / scale
    return cert


def _unit_output_scale(net: ReLUNet, c, r_max: float):
    """``(s F, s)``: F scaled by a power of two (exact in float64) so that its outputs over c +- r_max are of
    size about 1. Preimages and equal-output pairs do not change; the solvers' absolute
    tolerances then mean the same thing at every output scale (at 1e-6 a MIP called the
    preimage query infeasible although another preimage exists)."""
    from dynid.bounds import interval_bounds

    b = interval_bounds(net, c - r_max, c + r_max)
    top = float(max(np.max(np.abs(b.lower[-1])), np.max(np.abs(b.upper[-1]))))
    if not (top > 0 and math.isfinite(top)):
        return net, 1.0
    s = float(2.0 ** -np.round(np.log2(top)))
    if s == 1.0:
        return net, 1.0
    return ReLUNet(list(net.weights[:-1]) + [net.weights[-1] * s],
                   list(net.biases[:-1]) + [net.biases[-1] * s], net.relu, net.meta), s


# ---------------------------------------------------------------------- reference protocol
def _reference(net, c, mode, p, r0, growth, resolution, max_steps, r_max, tol, formulation,
               solver, time_limit, log):
    """Grow x``growth`` from ``r0`` while certified, then bisect. A confirmed witness pair
    bounds the radius by its own distance to ``c`` (``witness_radius``): the bracket's upper
    end is that distance, not the radius of the step that found it, and the search stops as
    soon as the bracket [certified, witness] is within ``resolution``."""
    from dynid.certify.invertibility import noninvertibility, pnorm

    t0 = time.perf_counter()
    steps = []
    witness, w_r, unknown = None, math.inf, 0

    def witness_radius(wit):
        dx = pnorm(np.asarray(wit["x"]) - c, p)
        return dx if mode == "preimage" else max(dx, pnorm(np.asarray(wit["y"]) - c, p))

    def step(r):
        nonlocal witness, w_r, unknown
        cert = noninvertibility(net, c - r, c + r, p, 0.0, method=formulation, solver=solver,
                                time_limit=time_limit, tol=tol, ball=(c, r),
                                fixed_y=c if mode == "preimage" else None,
                                query="radius-step")
        steps.append({"radius": r, "status": cert.status.value, "bound": cert.bound,
                      "seconds": cert.seconds})
        if log:
            log(f"radius step R={r:.6g}: {cert.status.value} ({cert.seconds:.2f}s)")
        if cert.status is Status.COUNTEREXAMPLE:
            wr = witness_radius(cert.witness)
            steps[-1]["witness_radius"] = wr
            if wr < w_r:
                witness, w_r = cert.witness, wr
        elif cert.status is Status.UNKNOWN:
            unknown += 1
        return cert.status

    lo_r, hi_r = 0.0, None      # certified radius; smallest radius not certified
    r = min(r0, r_max)
    while True:
        s = step(r)
        if s is Status.CERTIFIED:
            lo_r = r
            if r >= r_max:
                break
            r = min(r * growth, r_max)
        else:
            hi_r = r
            break
    n_bisect = 0
    while hi_r is not None and min(hi_r, w_r) - lo_r > resolution and n_bisect < max_steps:
        mid = 0.5 * (lo_r + min(hi_r, w_r))
        s = step(mid)
        n_bisect += 1
        if s is Status.CERTIFIED:
            lo_r = mid
        else:
            hi_r = mid
    done = hi_r is None or w_r - lo_r <= resolution * (1 + 1e-9)
    status = Status.CERTIFIED if done and unknown == 0 else Status.UNKNOWN
    bound = w_r if hi_r is not None else math.inf
    info = {"method": "reference", "mode": mode, "norm": _nn(p), "steps": steps,
            "unknown_steps": unknown, "r_max": r_max, "tol": tol, "resolution": resolution,
            "formulation": formulation, "radius": lo_r, "bisection_upper": hi_r,
            "reached_r_max": hi_r is None}
    if w_r < lo_r:   # cannot happen with sound steps; say so loudly rather than hide it
        info["inconsistent"] = f"witness at {w_r:.6g} inside the certified radius {lo_r:.6g}"
        status = Status.UNKNOWN
    return Certificate("certified_radius", status, lo_r, max(bound, lo_r),
                       bound - lo_r if math.isfinite(bound) else math.inf, witness,
                       "mixed" if not steps else "per-step", time.perf_counter() - t0, {},
                       info)


def _nn(p):
    return "inf" if math.isinf(p) else str(int(p))


# ---------------------------------------------------------------------- fast: one MIP
def _fast_ball(net, c, p, r_max, tol, resolution, solver, time_limit, log):
    """Ball mode: for maps R^2 -> R^2 first the fold witness and the Jacobian-hull proof
    (:func:`_hull_ball`, no MIP); when they do not meet, the one-MIP method on growing boxes
    c +- r (tight bounds on small boxes), up to the witness radius.

    Start at the proven radius (the hull proof's, else twice the interval-Jacobian radius of
    :func:`injective_radius_lower`); a box whose MIP has no equal-output pair proves radius
    >= r (the next box starts its radius variable there), and an optimum t* < r inside the box
    c +- r is the answer for every larger box too, since the ball of radius t* lies in it."""
    t0 = time.perf_counter()
    pre = _hull_ball(net, c, p, r_max, tol, resolution, time_limit, log)
    if pre is not None and pre.status is Status.CERTIFIED:
        return pre
    r_jac = injective_radius_lower(net, c, r_max)
    hull_r = pre.value if pre is not None else 0.0
    w_r = pre.bound if pre is not None else math.inf         # a checked witness's radius
    base = {"method": "fast", "mode": "ball", "norm": _nn(p), "r_max": r_max, "tol": tol,
            "resolution": resolution, "interval_jacobian_radius": r_jac}
    if pre is not None:
        base["hull"] = pre.info.get("hull")
    r_jac = max(r_jac, hull_r)
    if r_jac >= r_max:
        info = {**base, "radius": r_max, "reached_r_max": True, "jacobian_radius": r_jac,
                "boxes": [], "proof": "Jacobian regular on the whole ball"}
        return Certificate("certified_radius", Status.CERTIFIED, r_max, math.inf, math.inf,
                           None, "interval-jacobian", time.perf_counter() - t0, {}, info)
    cap = min(r_max, w_r)
    start = r_jac if hull_r > 0 else 2.0 * r_jac
    proven, r, tries = r_jac, min(cap, max(start, 8 * resolution)), []
    while True:
        left = None if time_limit is None else max(time_limit - (time.perf_counter() - t0), 0.1)
        cert = _fast(net, c, "ball", p, r, tol, resolution, solver, left, log, t_lo=proven)
        tries.append({"box_radius": r, "status": cert.status.value, "lower": cert.value,
                      "upper": cert.bound, "seconds": cert.seconds})
        reached = cert.info.get("reached_r_max", False)
        if reached:
            proven = max(proven, r)
        if not reached or r >= cap or (time_limit is not None
                                       and time.perf_counter() - t0 >= time_limit):
            break
        r = min(2.0 * r, cap)
    value = max(cert.value, proven) if not reached else r
    witness, upper = cert.witness, cert.bound
    if not reached and w_r < upper:
        witness, upper = pre.witness, w_r
    info = {**cert.info, **base, "jacobian_radius": r_jac, "boxes": tries, "radius": value,
            "reached_r_max": reached and r >= r_max}
    if reached and r < r_max and not math.isfinite(w_r):   # out of time before r_max
        status, upper = Status.UNKNOWN, math.inf
    elif reached and r < r_max:                            # proven up to the witness box
        witness, upper = pre.witness, w_r
        status = Status.CERTIFIED if upper - value <= resolution * (1 + 1e-9) else \
            Status.UNKNOWN
    else:
        status = Status.CERTIFIED if math.isfinite(upper) and \
            upper - value <= resolution * (1 + 1e-9) else cert.status
    return Certificate("certified_radius", status, value, upper,
                       upper - value if math.isfinite(upper) else math.inf, witness,
                       cert.solver, time.perf_counter() - t0, cert.model_size, info)


def _hull_ball(net, c, p, r_max, tol, resolution, time_limit, log):
    """Ball radius of a map R^2 -> R^2 without a MIP: the nearest fold's checked witness
    pair (:func:`dynid.certify.folds.fold_witness`, radius U) and the Jacobian-hull proof
    (:func:`dynid.certify.hull.hull_injective`) on the ball of radius U - resolution / 2 (or
    r_max when no fold is found); when that fails, a short bisection for the proven radius.
    None for other maps."""
    from dynid.certify.folds import fold_witness
    from dynid.certify.hull import hull_injective, hull_radius

    if net.n_in != 2 or net.n_out != 2:
        return None
    t0 = time.perf_counter()
    budget = None if time_limit is None else 0.5 * time_limit
    wit = fold_witness(net, c, r_max, p, tol)
    t_wit = time.perf_counter() - t0
    upper = min(wit["radius"], math.inf) if wit is not None else math.inf
    target = r_max if upper - 0.5 * resolution >= r_max else max(upper - 0.5 * resolution, 0.0)
    ok, hinfo = hull_injective(net, c, target, p, time_limit=budget)
    lower = target if ok else 0.0
    tries = [{"radius": target, "ok": ok, **hinfo}]
    if not ok:      # how far the proof reaches: a bisection with what is left of the budget
        left = None if budget is None else max(budget - (time.perf_counter() - t0), 0.0)
        lower, binfo = hull_radius(net, c, target, p, resolution=max(resolution, 0.01 * target),
                                   time_limit=left, skip_top=True, max_leaves=4000)
        tries += binfo["tries"]
    if log:
        log(f"ball radius (Jacobian hull): proven {lower:.6g}, witness {upper:.6g} "
            f"({time.perf_counter() - t0:.2f}s)")
    witness = None
    if wit is not None:
        witness = {k: wit[k] for k in ("x", "y", "Fx", "Fy", "distance", "output_gap")}
    reached = ok and target >= r_max
    done = reached or (math.isfinite(upper) and upper - lower <= resolution * (1 + 1e-9))
    info = {"method": "fast", "mode": "ball", "norm": _nn(p), "r_max": r_max, "tol": tol,
            "resolution": resolution, "radius": lower, "reached_r_max": reached,
            "jacobian_radius": lower, "boxes": [],
            "proof": "Jacobian hull (dynid.certify.hull) on the ball; witness at the nearest "
                     "fold (dynid.certify.folds)",
            "hull": {"tries": tries, "witness_seconds": t_wit,
                     "fold_point": None if wit is None else wit["fold_point"]}}
    bound = math.inf if reached else upper
    return Certificate("certified_radius", Status.CERTIFIED if done else Status.UNKNOWN,
                       lower, bound, bound - lower if math.isfinite(bound) else math.inf,
                       None if reached else witness, "jacobian-hull",
                       time.perf_counter() - t0, {}, info)


def _fast(net, c, mode, p, r_max, tol, resolution, solver, time_limit, log, t_lo=0.0):
    from dynid.certify.invertibility import _as_identity_output, check_pair, pnorm
    from dynid.certify.pairs import add_copy_differences, copy_bounds, interval_diff_bounds
    from dynid.milp import SparseModel, padded_bound, solve

    t0 = time.perf_counter()
    net = _as_identity_output(net)
    n = net.n_in
    lo, hi = c - r_max, c + r_max
    r_jac = float(t_lo)    # a proven lower bound on the radius (ball mode)
    bx = copy_bounds(net, lo, hi, "ours")
    m = SparseModel()
    ex = encode_relunet(m, net, bx)
    if mode == "preimage":
        fc = net.forward(c)
        m.set_bounds(ex.out, lb=fc, ub=fc)
        d = m.add_vars(n, lo - c, hi - c, "C")
        eye = sp.identity(n)
        m.add_rows(np.concatenate([d, ex.x]), sp.hstack([eye, -eye]), -c, -c)
        # no other preimage lies in c's own linear region when its Jacobian is injective:
        # exclude that ball, which also keeps solver tolerances from faking nearby preimages
        r_loc = min(local_injectivity_radius(net, c), r_max)
        _exclusion(m, d, max(tol, r_loc), r_max, one_sign=False)
        radius_of = _distance_objective(m, d, p, r_max)
        y_idx = None
    else:
        ey = encode_relunet(m, net, bx)
        db = interval_diff_bounds(net, bx, bx, lo - hi, hi - lo)
        d, dzs = add_copy_differences(m, net, (ex.x, ex.h), (ey.x, ey.h), bx, bx, db)
        m.set_bounds(dzs[-1], lb=0.0, ub=0.0)
        # the pair (x, y) and (y, x) are both solutions: the separating coordinate is >= tol
        _exclusion(m, d, tol, 2 * r_max, one_sign=True)
        radius_of = _ball_objective(m, ex.x, ey.x, c, p, r_max,
                                    t_lo=r_jac if math.isinf(p) else 0.0)
        y_idx = ey.x
    size = m.size()
    info = {"method": "fast", "mode": mode, "norm": _nn(p), "r_max": r_max, "tol": tol,
            "resolution": resolution, "exclusion": "pairs with ||x - y||_inf >= tol"}
    if mode == "preimage":
        info["local_injectivity_radius"] = r_loc
    else:
        info["jacobian_radius"] = r_jac
    # tight tolerances: they keep the solver from faking equal outputs, and the bound is
    # padded for what they can still move it (dynid.milp.bound_pad)
    res = solve(m, solver=solver, time_limit=time_limit, mip_gap=1e-6,
                mip_gap_abs=resolution / 10, log=log, tolerances="tight")
    info["solver_status"] = res.status
    info["tight_tolerances"] = True
    info["tolerances"] = res.info.get("tolerances")
    if res.message:
        info["solver_message"] = res.message
    if res.status == "infeasible":
        info["radius"] = r_max
        info["reached_r_max"] = True
        return Certificate("certified_radius", Status.CERTIFIED, r_max, math.inf,
                           math.inf, None, res.solver, time.perf_counter() - t0, size, info)
    lower = min(radius_of(padded_bound(m, res)), r_max) if math.isfinite(res.bound) \
        else 0.0
    lower = max(lower, r_jac)
    upper, witness = math.inf, None
    if res.x is not None:
        xw = res.x[ex.x]
        yw = c if y_idx is None else res.x[y_idx]
        if y_idx is None:   # polish the free point towards F(x) = F(c)
            ok, dist, mis, yw2, xw2 = check_pair(net, yw, xw, p, math.inf, 0.0,
                                                 tol * 0.999, lo, hi, fixed_x=True)
            xw = xw2
        else:
            ok, dist, mis, xw, yw = check_pair(net, xw, yw, p, math.inf, 0.0,
                                               tol * 0.999, lo, hi)
        if ok:
            upper = max(pnorm(xw - c, p), pnorm(yw - c, p)) if y_idx is not None \
                else pnorm(xw - c, p)
            witness = {"x": xw, "y": yw, "Fx": net.forward(xw), "Fy": net.forward(yw),
                       "distance": dist, "output_gap": mis}
    info["radius"] = lower
    ok = math.isfinite(upper) and upper - lower <= resolution * (1 + 1e-9)
    status = Status.CERTIFIED if ok else Status.UNKNOWN
    return Certificate("certified_radius", status, lower, upper,
                       upper - lower if math.isfinite(upper) else math.inf, witness,
                       res.solver, time.perf_counter() - t0, size, info)


def local_injectivity_radius(net: ReLUNet, c) -> float:
    """Radius (inf-norm) of a ball around ``c`` on which F is affine and injective: the ball
    stays inside c's linear region (no ReLU pre-activation changes sign: |z_j(c)| over the
    1-norm of its gradient) and the region's Jacobian has full column rank. 0 when c sits on a
    kink or the Jacobian is (numerically) rank deficient.

    Example
    -------
    >>> import numpy as np
    >>> from dynid.relunet import ReLUNet
    >>> net = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[-1.0, -1.0]])],
    ...               [np.zeros(2), np.zeros(1)])            # x -> -|x|
    >>> round(local_injectivity_radius(net, np.array([0.5])), 6)
    0.5
    """
    c = np.asarray(c, dtype=np.float64)
    grad = np.eye(net.n_in)
    h = c
    r = math.inf
    for w, b, relu in zip(net.weights, net.biases, net.relu):
        z = w @ h + b
        gz = w @ grad
        if relu.any():
            norms = np.abs(gz[relu]).sum(axis=1)
            zr = np.abs(z[relu])
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(norms > 0, zr / norms, math.inf)
            r = min(r, float(np.min(ratio)))
        act = np.where(relu, (z > 0).astype(float), 1.0)
        h = np.where(relu, np.maximum(z, 0.0), z)
        grad = act[:, None] * gz
    sv = np.linalg.svd(grad, compute_uv=False)
    if sv.size < net.n_in or sv.min() <= 1e-9 * max(1.0, sv.max()):
        return 0.0
    # shrink a little: rounding in z and in the gradient norms
    return max(0.0, r * (1 - 1e-9) - 1e-12) if math.isfinite(r) else math.inf


def jacobian_injective(net: ReLUNet, lo, hi, bounds=None) -> bool:
    """True when F is provably injective on the box [lo, hi] (False: not proven).

    For x, y in the box, F(y) - F(x) = M (y - x) with M a convex combination of the Jacobians
    of the activation patterns met along the segment, so M lies in the interval Jacobian [J]
    (unstable units contribute D_jj in [0, 1]; units stable on the box a fixed 0 or 1). With
    P ~ pinv(mid J), P M = I + E where |E| <= |P mid J - I| + |P| rad J; when that bound has
    inf-norm < 1, P M is nonsingular for every such M, so M has full column rank and
    F(y) = F(x) forces y = x. The interval product is kept in midpoint-radius form with every
    radius padded for rounding, and the norm test keeps a 1e-6 margin.

    >>> import numpy as np
    >>> from dynid.relunet import ReLUNet
    >>> net = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[-1.0, -1.0]])],
    ...               [np.zeros(2), np.zeros(1)])            # x -> -|x|
    >>> jacobian_injective(net, [0.1], [1.0]), jacobian_injective(net, [-1.0], [1.0])
    (True, False)
    """
    from dynid.bounds import crown_bounds, interval_bounds
    from dynid.certify.hull import interval_jacobians

    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    if net.n_out < net.n_in:
        return False
    if bounds is None:
        bounds = crown_bounds(net, lo, hi).intersect(interval_bounds(net, lo, hi))
    mid, rad = interval_jacobians(net, [np.asarray(v, np.float64)[None] for v in bounds.lower],
                                  [np.asarray(v, np.float64)[None] for v in bounds.upper])
    mid, rad = mid[0], rad[0]
    if not (np.all(np.isfinite(mid)) and np.all(np.isfinite(rad))):
        return False
    try:
        P = np.linalg.pinv(mid)
    except np.linalg.LinAlgError:
        return False
    e = np.abs(P @ mid - np.eye(net.n_in)) + np.abs(P) @ rad
    return bool(np.isfinite(e).all() and np.abs(e).sum(axis=1).max() < 1 - 1e-6)


def injective_radius_lower(net: ReLUNet, c, r_max: float, steps: int = 30) -> float:
    """The largest R <= r_max found by bisection with F provably injective on the box c +- R
    (:func:`jacobian_injective`; 0 when none): a lower bound on the ball radius in every
    norm, since each norm ball of radius R lies in that box."""
    c = np.asarray(c, np.float64)
    if jacobian_injective(net, c - r_max, c + r_max):
        return float(r_max)
    good, bad = 0.0, float(r_max)
    for _ in range(steps):
        mid = 0.5 * (good + bad)
        if jacobian_injective(net, c - mid, c + mid):
            good = mid
        else:
            bad = mid
        if bad - good <= 1e-3 * bad:
            break
    return good


def _exclusion(m, d, tol, big, one_sign):
    """||d||_inf >= tol with coordinate (and sign) binaries: d_i >= tol - M (1 - r_i)."""
    n = d.size
    k = n if one_sign else 2 * n
    r = m.add_vars(k, 0.0, 1.0, "B")
    mm = big + tol
    for i in range(n):
        m.add_row([d[i], r[i]], [1.0, -mm], tol - mm, np.inf)
        if not one_sign:
            m.add_row([d[i], r[n + i]], [-1.0, -mm], tol - mm, np.inf)
    m.add_row(r, np.ones(k), 1.0, np.inf)


def _distance_objective(m, d, p, r_max):
    """min ||d||_p; returns the map from the solver bound to the distance."""
    n = d.size
    if math.isinf(p) or p == 1.0:
        cap = r_max if math.isinf(p) else n * r_max
        if math.isinf(p):
            t = m.add_vars(1, 0.0, cap, "C")
            for i in range(n):
                m.add_row([t[0], d[i]], [1.0, -1.0], 0.0, np.inf)
                m.add_row([t[0], d[i]], [1.0, 1.0], 0.0, np.inf)
            m.set_objective(t, [1.0], sense="min")
        else:
            e = m.add_vars(n, 0.0, r_max, "C")
            for i in range(n):
                m.add_row([e[i], d[i]], [1.0, -1.0], 0.0, np.inf)
                m.add_row([e[i], d[i]], [1.0, 1.0], 0.0, np.inf)
            m.set_objective(e, np.ones(n), sense="min")
        return lambda b: b
    m.set_objective(sense="min", quad=(d, d, np.ones(n)))
    return lambda b: math.sqrt(max(b, 0.0))


def _ball_objective(m, x, y, c, p, r_max, t_lo=0.0):
    """min t with ||x - c||_p <= t and ||y - c||_p <= t (inf-norm: t >= ``t_lo``, a proven
    lower bound)."""
    n = x.size
    if math.isinf(p):
        t = m.add_vars(1, t_lo, r_max, "C")
        for v in (x, y):
            for i in range(n):
                m.add_row([t[0], v[i]], [1.0, -1.0], -c[i], np.inf)
                m.add_row([t[0], v[i]], [1.0, 1.0], c[i], np.inf)
        m.set_objective(t, [1.0], sense="min")
        return lambda b: b
    if p == 1.0:
        t = m.add_vars(1, 0.0, r_max * n, "C")
        for v in (x, y):
            e = m.add_vars(n, 0.0, r_max, "C")
            for i in range(n):
                m.add_row([e[i], v[i]], [1.0, -1.0], -c[i], np.inf)
                m.add_row([e[i], v[i]], [1.0, 1.0], c[i], np.inf)
            m.add_row(np.concatenate([e, t]), np.concatenate([np.ones(n), [-1.0]]), -np.inf, 0.0)
        m.set_objective(t, [1.0], sense="min")
        return lambda b: b
    s = m.add_vars(1, 0.0, n * r_max ** 2, "C")
    for v in (x, y):
        # ||v - c||^2 - s <= 0  <=>  v.v - 2 c.v - s <= -c.c
        m.add_quadratic_constraint((v, v, np.ones(n)), np.concatenate([v, s]),
                                   np.concatenate([-2.0 * c, [-1.0]]), -float(c @ c), "<=")
    m.set_objective(s, [1.0], sense="min")
    return lambda b: math.sqrt(max(b, 0.0))
