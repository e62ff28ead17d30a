"""Exact L_p distance from a point to the decision boundary of a ReLU network, bracketed.

The *decision* of ``net`` at ``x`` is the sign of its single output (positive iff F(x) > 0) or
the argmax of its outputs (ties to the lowest index). With ``c`` that decision, the margins
``g = C @ F`` (``g = s F`` for one output, ``g_j = F_c - F_j`` for j != c) are >= 0 at ``x``,
and a point x' is *on the other side* when some margin is < 0 there. The distance is
``d* = inf { ||x' - x||_p : x' on the other side, x' in the domain box }``.

Three numbers bracket it, every one of them sound:

- ``lower``: a CROWN certified radius (bisection on the radius r of the region
  ``{||x' - x||_p <= r} ∩ domain``; for L1 / L2 the linear bounds are maximised over the ball,
  not over its bounding box), a valid lower bound on d*;
- ``upper``: the distance of a PGD attack's point (DeepFool start, line search, PGD with a
  bisection on the radius), re-checked in float64: an upper bound on d*;
- the exact value, as a bracket ``[exact_lo, exact_hi]`` from one MIP over the ball of radius
  ``upper`` (MILP for L1 / L-inf, a convex MIQP ``min ||x' - x||_2^2`` for L2): ``exact_lo`` is the
  solver's best bound for the *closed* set ``{min_j g_j <= 0}``, padded for tolerances (a
  lower bound on d*, because that set contains the other side); ``exact_hi`` is the distance of a
  witness *strictly* on the other side: the MIP's optimum (which sits on the boundary, margin
  ~0, up to solver tolerances) is stepped across along the steepest descent of its smallest
  margin, the step doubled until the float64 margin is ``< -max(tau, e)``, with ``e`` a bound on
  the rounding error of the float64 pass there (:func:`rounding_bound`), so the margin is
  negative in exact arithmetic as well. The step costs about ``tau / ||grad g||_q`` in distance
  (``tau`` defaults to 1e-9 times the largest |margin| at x). Since d* is an infimum over an
  open set (it is attained only on the boundary, where the margin is 0), no witness can have
  distance exactly d*; ``exact_hi - d*`` is this step. So ``exact_lo <= d* <= exact_hi`` holds
  rigorously; the status is ``certified`` when the bracket is closed to ``abs_gap + gap *
  exact_hi`` and the MIP was solved to optimality, else ``unknown`` with the gap.

The :class:`~dynid.results.Certificate` has ``value`` = ``exact_lo`` (a certified distance: no
point closer than this is on the other side) and ``bound`` = ``exact_hi`` (the witness distance),
as :func:`dynid.certify.certified_radius` does; ``info`` holds ``lower``, ``upper``, ``exact_lo``,
``exact_hi``, the raw MIP numbers and the seconds of each phase. ``witness["x"]`` is the point.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from dynid.certify.encode import TIGHT_OPTIONS
from dynid.errors import ConfigError, ShapeError, parse_norm
from dynid.options import check_number
from dynid.relunet import ReLUNet, check_box, compose, linear
from dynid.results import Certificate, Status

QUERY = "boundary_distance"
TAU_REL = 1e-9     # default margin of the witness, relative to the largest |margin| at x
STRICT_REL = 1e-6  # margin asked of the second MIP when the nearest point is on a tie plateau
# Relative padding of the MIP best bound, times max(bound, search radius): the solver's LP
# bounds hold up to its optimality tolerance, which we set to 1e-9; the pad covers that with a
# wide margin, and scales with the distances (no absolute part: 1e-8-sized distances stay
# meaningful).
MIP_PAD = 1e-7
L2_FORM = "soc"
L2_L1CUT = True
# tight feasibility (dynid.certify.encode.TIGHT_OPTIONS) and optimality tolerances: the best
# bound is that of the problem relaxed by these, so they set how small a distance stays useful
_TIGHT = {name: {**TIGHT_OPTIONS[name], **extra} for name, extra in (
    ("gurobi", {"OptimalityTol": 1e-9}), ("highs", {"dual_feasibility_tolerance": 1e-9}),
    ("scip", {"numerics/dualfeastol": 1e-9}))}


def _dual(p: float) -> float:
    return 1.0 if math.isinf(p) else (math.inf if p == 1.0 else 2.0)


def _norm(v, p: float) -> float:
    return float(np.linalg.norm(np.asarray(v, dtype=np.float64).ravel(), ord=p))


# ---------------------------------------------------------------------- decision and margins
def decision(net: ReLUNet, x) -> tuple[int, np.ndarray]:
    """The decision at ``x`` and the margin matrix ``C``: ``C @ F(x') < 0`` in some row means
    x' is on the other side.

    Example
    -------
    >>> import numpy as np
    >>> net = ReLUNet([np.eye(2)], [np.zeros(2)])          # two outputs: argmax
    >>> label, C = decision(net, np.array([0.2, 0.7]))
    >>> label, C.tolist()
    (1, [[-1.0, 1.0]])
    """
    f = net.forward(np.asarray(x, dtype=np.float64))
    if net.n_out == 1:
        label = int(f[0] > 0)
        return label, np.array([[1.0 if label else -1.0]])
    label = int(np.argmax(f))
    others = [j for j in range(net.n_out) if j != label]
    C = np.zeros((len(others), net.n_out))
    C[:, label] = 1.0
    C[np.arange(len(others)), others] = -1.0
    return label, C


@dataclass(frozen=True)
class Region:
    """The ball ``||x' - center||_p <= radius`` intersected with the box [lo, hi] (the box is
    already clipped to the ball's bounding box)."""

    center: np.ndarray
    radius: float
    p: float
    lo: np.ndarray
    hi: np.ndarray

    @staticmethod
    def make(center, radius, p, dom_lo, dom_hi) -> "Region":
        lo = np.maximum(center - radius, dom_lo)
        hi = np.minimum(center + radius, dom_hi)
        return Region(center, float(radius), p, lo, np.maximum(hi, lo))

    def max_linear(self, A) -> np.ndarray:
        """Upper bounds of the rows of ``A @ x'`` over the region."""
        mid, rad = (self.lo + self.hi) / 2, (self.hi - self.lo) / 2
        box = A @ mid + np.abs(A) @ rad
        if math.isinf(self.p):
            return box
        ball = A @ self.center + self.radius * np.linalg.norm(A, ord=_dual(self.p), axis=1)
        return np.minimum(box, ball)

    def project(self, y) -> np.ndarray:
        """A point of the region near ``y`` (exact for L-inf and L2 without the box)."""
        d = y - self.center
        if self.p == 2.0:
            n = np.linalg.norm(d)
            d = d if n <= self.radius else d * (self.radius / n)
        elif self.p == 1.0:
            d = _project_l1(d, self.radius)
        return np.clip(self.center + d, self.lo, self.hi)


def _project_l1(d, r):
    """Euclidean projection onto the L1 ball of radius r (Duchi et al. 2008)."""
    a = np.abs(d)
    if a.sum() <= r:
        return d
    u = np.sort(a)[::-1]
    css = np.cumsum(u)
    k = np.nonzero(u * np.arange(1, u.size + 1) > css - r)[0][-1]
    theta = (css[k] - r) / (k + 1)
    return np.sign(d) * np.maximum(a - theta, 0.0)


# ---------------------------------------------------------------------- bounds over a region
def _relax(l, u, relu):
    """CROWN relaxation of each unit: (upper slope, upper offset, lower slope)."""
    unstable = relu & (l < 0) & (u > 0)
    inactive = relu & (u <= 0)
    den = np.where(unstable, u - l, 1.0)
    su = np.where(unstable, u / den, np.where(inactive, 0.0, 1.0))
    tu = np.where(unstable, -u * l / den, 0.0)
    sl = np.where(unstable, (u >= -l).astype(float), np.where(inactive, 0.0, 1.0))
    return su, tu, sl


def _backward_upper(net, lowers, uppers, A, k, region):
    """Upper bounds of the rows of ``A @ z_k`` over the region, and the magnitude of the
    summed terms (for the rounding pad)."""
    const = np.zeros(A.shape[0])
    mag = np.zeros(A.shape[0])
    for j in range(k, -1, -1):
        const += A @ net.biases[j]
        mag += np.abs(A) @ np.abs(net.biases[j])
        A = A @ net.weights[j]
        if j == 0:
            break
        su, tu, sl = _relax(lowers[j - 1], uppers[j - 1], net.relu[j - 1])
        pos, neg = np.maximum(A, 0.0), np.minimum(A, 0.0)
        const += pos @ tu
        mag += pos @ np.abs(tu)
        A = pos * su + neg * sl
    scale = np.maximum(np.abs(region.lo), np.abs(region.hi))
    mag += np.abs(A) @ scale + region.radius * np.abs(A).sum(axis=1)
    return const + region.max_linear(A), mag


def region_bounds(net: ReLUNet, region: Region):
    """Pre-activation bounds of every layer over ``region`` (:class:`dynid.bounds.Bounds`).

    L-inf: CROWN on the box (:func:`dynid.bounds.crown_bounds`). L1 / L2: the same backward
    relaxation, with each linear bound maximised over the ball as well as over its bounding
    box (the smaller value holds), intersected with interval bounds; padded for rounding.
    Valid for points of the region only.

    Example
    -------
    >>> import numpy as np
    >>> net = ReLUNet([np.ones((1, 4))], [np.zeros(1)])       # x -> sum(x)
    >>> r = Region.make(np.zeros(4), 1.0, 1.0, -np.ones(4), np.ones(4))
    >>> b = region_bounds(net, r)                              # |sum x| <= ||x||_1 <= 1
    >>> round(float(b.upper[0][0]), 6), round(float(b.lower[0][0]), 6)
    (1.0, -1.0)
    """
    from dynid.bounds import Bounds, crown_bounds, interval_bounds, pad_interval

    if math.isinf(region.p):
        return crown_bounds(net, region.lo, region.hi)
    ibp = interval_bounds(net, region.lo, region.hi)
    lowers, uppers = [], []
    for k in range(net.n_layers):
        n = net.weights[k].shape[0]
        eye = np.eye(n)
        vals, mag = _backward_upper(net, lowers, uppers, np.vstack([eye, -eye]), k, region)
        lo_k, hi_k = pad_interval(-vals[n:], vals[:n], np.maximum(mag[:n], mag[n:]))
        lo_k = np.maximum(lo_k, ibp.lower[k])
        hi_k = np.maximum(np.minimum(hi_k, ibp.upper[k]), lo_k)
        lowers.append(lo_k)
        uppers.append(hi_k)
    return Bounds(lowers, uppers, region.lo, region.hi, list(net.relu), f"crown-ball-l{int(region.p)}")


def _tighten(gnet, region, how, solver, time_limit):
    from dynid.bounds.obbt import obbt_bounds

    b = region_bounds(gnet, region)
    if how == "obbt":
        # LP bound tightening over the box, started from the region's bounds: every LP
        # relaxes the region (points outside it only enlarge the LP), so the result holds there
        b = obbt_bounds(gnet, region.lo, region.hi, init=b, mode="lp", time_limit=time_limit)
    return b


# ---------------------------------------------------------------------- the driver
def boundary_distance(net: ReLUNet, x, norm="inf", domain=None, *, solver: str = "auto",
                      time_limit: float | None = None, threads: int | None = None,
                      gap: float = 1e-4, abs_gap: float = 1e-9, tighten: str = "crown",
                      r_max: float | None = None, tau: float | None = None,
                      attack_steps: int = 20, seed: int = 0, log=None) -> Certificate:
    """Exact L_p distance from ``x`` to the decision boundary of ``net`` (see the module doc).

    Parameters
    ----------
    net : the classifier (one output: its sign; several: the argmax).
    x : the point (n_in,).
    norm : 1, 2 or inf.
    domain : None (all of R^n) or ``(lo, hi)``: only points of this box count; ``x`` must lie
        in it.
    solver, threads : MIP backend (``auto``: Gurobi, falling back to HiGHS for L1 / L-inf or
        SCIP for L2 when the size-limited licence refuses) and its threads.
    time_limit : seconds for the whole call; a MIP cut short leaves status ``unknown``.
    gap, abs_gap : the bracket counts as closed when ``exact_hi - exact_lo <= abs_gap + gap *
        exact_hi``.
    tighten : intermediate bounds for the MIP: ``"crown"`` (CROWN over the ball) or ``"obbt"``
        (then LP bound tightening).
    r_max : search radius when the attack finds no point on the other side (default: the
        domain, or give up with ``upper = inf`` when there is none).
    tau : the witness's float64 margin is < -max(tau, rounding bound) (default 1e-9 times
        the largest |margin| at x; 0 keeps only the rounding bound).
    attack_steps : PGD steps per radius of the attack.
    seed : seed of the attack's random restarts.

    Example
    -------
    >>> import numpy as np
    >>> net = ReLUNet([np.array([[1.0, 1.0]])], [np.array([-1.0])])   # sign of x0 + x1 - 1
    >>> c = boundary_distance(net, [0.0, 0.0], norm="inf")
    >>> c.status.value, round(c.value, 6), round(c.bound, 6)       # the line x0 + x1 = 1
    ('certified', 0.5, 0.5)
    """
    t0 = time.perf_counter()
    p = parse_norm(norm)
    x, dom_lo, dom_hi = _check_inputs(net, x, domain)
    if tighten not in ("crown", "obbt"):
        raise ConfigError(f"tighten={tighten!r} is unknown: use 'crown' or 'obbt'")
    gap = check_number(gap, "gap", rule="nonneg", text_ok=False)
    abs_gap = check_number(abs_gap, "abs_gap", rule="nonneg", text_ok=False)
    time_limit = check_number(time_limit, "time_limit", none_ok=True, text_ok=False)
    r_max = check_number(r_max, "r_max", none_ok=True, text_ok=False)
    tau = check_number(tau, "tau", rule="nonneg", none_ok=True, text_ok=False)
    threads = check_number(threads, "threads", kind=int, none_ok=True, text_ok=False)
    label, C = decision(net, x)
    gnet = compose(linear(C), net)
    g_x = C @ net.forward(x)
    tau = TAU_REL * float(np.max(np.abs(g_x))) if tau is None else tau
    side = _Side(net, C, dom_lo, dom_hi, tau, x)
    info = {"norm": _pname(p), "label": label, "n_margins": int(C.shape[0]), "tau": tau,
            "domain": None if domain is None else {"lo": dom_lo, "hi": dom_hi},
            "tighten": tighten, "mip_pad": MIP_PAD}
    say = log or (lambda s: None)

    # 1. attack: an upper bound with a checked point
    ta = time.perf_counter()
    w_att = _attack(gnet, side, x, p, dom_lo, dom_hi, attack_steps, seed)
    upper = _norm(w_att - x, p) if w_att is not None else math.inf
    info["upper"] = upper
    info["seconds_attack"] = time.perf_counter() - ta
    say(f"attack: upper {upper:.6g} ({info['seconds_attack']:.2f}s)")

    # 2. CROWN certified radius
    tc = time.perf_counter()
    r_dom = _far_corner(x, p, dom_lo, dom_hi) if domain is not None else math.inf
    cap = min(upper, r_dom, math.inf if r_max is None else float(r_max))
    if not math.isfinite(cap):
        cap = None
    lower, whole = _crown_radius(gnet, x, p, dom_lo, dom_hi, cap, r_dom)
    info["lower"] = lower
    info["seconds_crown"] = time.perf_counter() - tc
    say(f"crown: lower {lower:.6g} ({info['seconds_crown']:.2f}s)")
    done = lambda *a, **k: _certificate(t0, info, *a, **k)  # noqa: E731
    if whole:   # no point of the domain is on the other side
        info.update(exact_lo=math.inf, exact_hi=math.inf, no_boundary_in_domain=True)
        return done(Status.CERTIFIED, math.inf, math.inf, None, "crown", {})

    # 3. the exact MIP on the ball of radius R around x
    R = upper if w_att is not None else (float(r_max) if r_max is not None else r_dom)
    if not math.isfinite(R):
        info.update(exact_lo=lower, exact_hi=math.inf,
                    note="the attack found no point on the other side: give domain= or r_max=")
        return done(Status.UNKNOWN, lower, math.inf, None, "", {})
    region = Region.make(x, R, p, dom_lo, dom_hi)
    left = None if time_limit is None else max(0.05, time_limit - (time.perf_counter() - t0))
    tb = time.perf_counter()
    bounds = _tighten(gnet, region, tighten, solver, None if left is None else 0.3 * left)
    info["seconds_bounds"] = time.perf_counter() - tb
    info["n_unstable"] = bounds.n_unstable
    left = None if time_limit is None else max(0.05, time_limit - (time.perf_counter() - t0))
    mip = _solve_mip(gnet, bounds, region, w_att, gap, abs_gap, solver, left, threads, log)
    info.update(mip.info)
    say(f"mip: {mip.status} bound {mip.lo:.6g} incumbent {mip.dist:.6g} "
        f"({info['seconds_mip']:.2f}s, {mip.solver})")

    # 4. the bracket
    lo = max(lower, mip.lo)
    witness_x, hi = w_att, upper
    stepped = None if mip.x is None else _step_across(gnet, side, mip.x, p)
    if stepped is not None and _norm(stepped - x, p) < hi:
        witness_x, hi = stepped, _norm(stepped - x, p)
        info["step"] = hi - mip.dist
    far = mip.status == "optimal" and hi - lo > abs_gap + gap * hi
    if mip.x is not None and (stepped is None or far):
        # the nearest point with margin <= 0 cannot be stepped across (or only far away): it
        # sits on a plateau where the margin is 0 (a tie, e.g. every unit of a layer dead in
        # a bias-free net) or on a sliver thinner than the solver's tolerances. The
        # closed-set bound stays valid; a second MIP asks for margin <= -tau2 to get a witness
        if mip.status == "optimal":   # solved, yet no point of the open set near its optimum
            info["tie_plateau"] = True
        tau2 = max(STRICT_REL * float(np.max(np.abs(g_x))), 1e3 * tau, 1e-300)
        left = None if time_limit is None else max(0.05, time_limit - (time.perf_counter() - t0))
        strict = _solve_mip(gnet, bounds, region, w_att, gap, abs_gap, solver, left, threads,
                            log, below=tau2)
        info.update(strict_mip=True, strict_tau=tau2, strict_mip_status=strict.status,
                    strict_mip_upper=strict.dist, seconds_strict_mip=strict.info["seconds_mip"])
        w2 = None if strict.x is None else _step_across(gnet, side, strict.x, p)
        if w2 is not None and _norm(w2 - x, p) < hi:
            witness_x, hi = w2, _norm(w2 - x, p)
    if mip.status == "infeasible":
        if w_att is not None:   # contradicts a checked point: numerical trouble, say so
            info["note"] = "the MIP called the ball empty of boundary points but the attack " \
                           "found one: solver tolerances; bracket from the attack and CROWN"
            lo = lower
        else:
            lo = max(lower, R)
            if R >= r_dom:
                lo, hi = math.inf, math.inf
                info["no_boundary_in_domain"] = True
    if witness_x is not None:
        hi = _norm(witness_x - x, p)
    if lo > hi:
        # a checked witness lies in the closed set the bound is about, so lo <= hi must hold:
        # a violation means solver tolerances broke a bound; keep only what stays sound
        info["note"] = (f"the MIP bound {lo:.9g} exceeds the checked witness distance "
                        f"{hi:.9g}: solver tolerances; bracket from CROWN and the witness")
        lo = min(lower, hi)
    info.update(exact_lo=lo, exact_hi=hi)
    closed = hi - lo <= abs_gap + gap * hi if math.isfinite(hi) else lo == hi
    status = Status.CERTIFIED if closed and mip.status in ("optimal", "infeasible") \
        and "note" not in info else Status.UNKNOWN
    return done(status, lo, hi, witness_x, mip.solver, mip.size, side=side)


def _pname(p):
    return "inf" if math.isinf(p) else str(int(p))


def _check_inputs(net, x, domain):
    if not isinstance(net, ReLUNet):
        raise ShapeError(f"boundary_distance needs a ReLUNet, got {type(net).__name__}")
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.shape != (net.n_in,):
        raise ShapeError(f"x needs {net.n_in} values, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ShapeError("x must be finite")
    if domain is None:
        return x, np.full(net.n_in, -np.inf), np.full(net.n_in, np.inf)
    try:
        lo, hi = domain
    except (TypeError, ValueError):
        raise ShapeError("domain must be None or a pair (lo, hi) of arrays") from None
    lo, hi = check_box(net, lo, hi, "domain")
    if np.any(x < lo) or np.any(x > hi):
        raise ShapeError("x lies outside the domain box: move it in or widen the domain")
    return x, lo, hi


def _far_corner(x, p, lo, hi):
    """Largest L_p distance from x to a point of the box."""
    return _norm(np.maximum(x - lo, hi - x), p)


def _certificate(t0, info, status, lo, hi, witness_x, solver, size, side=None):
    witness = None
    if witness_x is not None:
        f = side.net.forward(witness_x)
        witness = {"x": witness_x, "F": f, "margins": side.C @ f,
                   "label": int(f[0] > 0) if side.net.n_out == 1 else int(np.argmax(f)),
                   "distance": hi}
    gap = hi - lo if math.isfinite(hi) else (0.0 if lo == hi else math.inf)
    return Certificate(QUERY, status, lo, hi, gap, witness, solver, time.perf_counter() - t0,
                       size, info)


class _Side:
    """The float64 check of "on the other side": inside the domain, and some margin
    ``< -max(tau, e)`` with ``e`` a bound on the rounding error of the float64 pass at that
    point (:func:`rounding_bound`), so the margin is negative in exact arithmetic too."""

    def __init__(self, net, C, lo, hi, tau, center):
        self.net, self.C, self.lo, self.hi, self.tau = net, C, lo, hi, tau
        self.center = center

    def margins(self, y):
        return self.net.forward(y) @ self.C.T

    def slack(self, y):
        """Per margin: how far below zero it must be at y (tau or the rounding bound)."""
        return np.maximum(self.tau, rounding_bound(self.net, y, self.C))

    def other(self, y) -> bool:
        y = np.asarray(y, dtype=np.float64)
        if not (np.all(y >= self.lo) and np.all(y <= self.hi)):
            return False
        return bool(np.any(self.margins(y) < -self.slack(y)))


def rounding_bound(net: ReLUNet, y, C=None) -> np.ndarray:
    """A bound on ``|fl(C F(y)) - C F(y)|``: the float64 forward pass (and the margin rows
    ``C``) against exact arithmetic, by the standard dot-product bound ``gamma_k |a| |b|``
    (k terms, ``gamma_k = k u / (1 - k u)``, u the unit round-off) propagated through the
    layers; doubled for safety. ReLU and the comparisons are exact.

    Example
    -------
    >>> import numpy as np
    >>> net = ReLUNet([np.array([[1.0, 1.0]])], [np.array([-1.0])])
    >>> e = rounding_bound(net, [0.5, 0.5])
    >>> bool(0 < e[0] < 1e-14)
    True
    """
    u = np.finfo(np.float64).eps / 2
    gamma = lambda k: k * u / (1 - k * u)  # noqa: E731
    h = np.asarray(y, dtype=np.float64)
    err = np.zeros_like(h)
    for w, b, relu in zip(net.weights, net.biases, net.relu):
        aw = np.abs(w)
        mag = aw @ np.abs(h) + np.abs(b)
        # error carried in (|W| err), the new rounding of W h + b, and the error of |W| @ ...
        err = aw @ err + gamma(w.shape[1] + 1) * (mag + aw @ err)
        z = w @ h + b
        h = np.where(relu, np.maximum(z, 0.0), z)
    if C is not None:
        ac = np.abs(C)
        err = ac @ err + gamma(C.shape[1]) * (ac @ (np.abs(h) + err))
    return 2.0 * err


# ---------------------------------------------------------------------- CROWN lower bound
def _crown_radius(gnet, x, p, lo, hi, cap, r_dom, steps: int = 30):
    """Largest r (by bisection) with every margin's CROWN lower bound > 0 on the region of
    radius r; and whether the whole domain is certified."""
    def ok(r):
        b = region_bounds(gnet, Region.make(x, r, p, lo, hi))
        return bool(np.all(b.lower[-1] > 0))

    if math.isfinite(r_dom) and ok(r_dom):
        return r_dom, True
    if cap is None:   # no finite radius known to fail: grow
        r, good = 1e-3 * (1.0 + _norm(x, p)), 0.0
        while r < 1e12 and ok(r):
            good, r = r, 4 * r
        lo_r, hi_r = good, r
    else:
        lo_r, hi_r = 0.0, cap
        if ok(cap):
            return cap, False
    for _ in range(steps):
        mid = 0.5 * (lo_r + hi_r)
        if ok(mid):
            lo_r = mid
        else:
            hi_r = mid
        if hi_r - lo_r <= 1e-6 * hi_r:
            break
    return lo_r, False


# ---------------------------------------------------------------------- attack
def _direction(a, p, blocked):
    """Unit (in L_p) direction of steepest descent of a.x', not moving blocked coordinates."""
    a = np.where(blocked(a), 0.0, a)
    q = _dual(p)
    nq = np.linalg.norm(a, ord=q)
    if not nq > 0:
        return None, 0.0
    if math.isinf(p):
        return -np.sign(a), nq
    if p == 2.0:
        return -a / nq, nq
    v = np.zeros_like(a)
    k = int(np.argmax(np.abs(a)))
    v[k] = -np.sign(a[k])
    return v, nq


def _pgd_direction(a, p, frac: float = 0.1):
    """PGD step direction of unit L_p length: sign (L-inf), normalised gradient (L2), signs of
    the largest 10 % of the entries (L1, sparse steps as in L1-PGD attacks)."""
    if not np.any(a):
        return None
    if math.isinf(p):
        return -np.sign(a)
    if p == 2.0:
        return -a / np.linalg.norm(a)
    k = max(1, int(frac * a.size))
    top = np.argsort(-np.abs(a))[:k]
    v = np.zeros_like(a)
    v[top] = -np.sign(a[top]) / k
    return v


def _blocker(y, lo, hi):
    """Mask of gradient entries whose descent step would leave the domain at y."""
    return lambda a: ((a > 0) & (y <= lo)) | ((a < 0) & (y >= hi))


def _deepfool(gnet, side, x, p, lo, hi, iters=100, overshoot=0.02):
    y = x.copy()
    for _ in range(iters):
        g = gnet.forward(y)
        if side.other(y):
            return y
        J = gnet.jacobian(y)
        slack = side.slack(y)
        best = None
        for j in range(g.size):
            v, nq = _direction(J[j], p, _blocker(y, lo, hi))
            if v is not None:
                step = (max(g[j], 0.0) + 2 * slack[j]) / nq
                if best is None or step < best[0]:
                    best = (step, v)
        if best is None:
            return None
        y = np.clip(y + best[0] * (1 + overshoot) * best[1] + 1e-12 * best[1], lo, hi)
    return y if side.other(y) else None


def _line_search(side, x, w, iters=50):
    """Smallest t found with x + t (w - x) on the other side (w is)."""
    t_lo, t_hi = 0.0, 1.0
    for _ in range(iters):
        mid = 0.5 * (t_lo + t_hi)
        if side.other(x + mid * (w - x)):
            t_hi = mid
        else:
            t_lo = mid
    return x + t_hi * (w - x)


def _pgd(gnet, side, region, start, steps, rng):
    """Minimise min_j g_j over the region by projected steepest descent; a point on the other
    side or None."""
    y = region.project(start)
    eps = region.radius
    for k in range(steps):
        if side.other(y):
            return y
        g = gnet.forward(y)
        j = int(np.argmin(g))
        v = _pgd_direction(gnet.jacobian(y)[j], region.p)
        if v is None:
            v = rng.standard_normal(y.size)
            v /= np.linalg.norm(v, ord=region.p)
        alpha = eps * 0.5 * (1 - k / steps) + eps / steps
        y = region.project(y + alpha * v)
    return y if side.other(y) else None


def _sphere_directions(rng, k, n, p):
    """k random directions of unit L_p norm (L-inf: half of them cube corners)."""
    if math.isinf(p):
        d = rng.uniform(-1.0, 1.0, (k, n))
        d[: k // 2] = np.sign(d[: k // 2])
    elif p == 1.0:
        d = rng.laplace(size=(k, n))
    else:
        d = rng.standard_normal((k, n))
    return d / np.linalg.norm(d, ord=p, axis=1, keepdims=True)


def _random_search(side, x, p, lo, hi, rng, k: int = 256):
    """The first of the spheres of radii r0 2^j around x (clipped to the domain) where a
    random sample is on the other side: the nearest such sample, or None."""
    far = _far_corner(x, p, lo, hi)
    cap = far if math.isfinite(far) else 1e6 * (1.0 + _norm(x, p))
    r = 1e-3 * (1.0 + _norm(x, p))
    while True:
        r = min(r, cap)
        pts = np.clip(x + r * _sphere_directions(rng, k, x.size, p), lo, hi)
        g = side.margins(pts).min(axis=1)
        for i in np.argsort(g)[:8]:
            if g[i] < 0 and side.other(pts[i]):
                return pts[i]
        if r >= cap:
            return None
        r *= 2.0


def _attack(gnet, side, x, p, lo, hi, steps, seed):
    """DeepFool start (random restarts, then random search on growing spheres where it gets
    stuck), line search, then PGD with a bisection on the radius."""
    rng = np.random.default_rng(seed)
    w = _deepfool(gnet, side, x, p, lo, hi)
    for q in (2.0, math.inf, 1.0):   # any point on the other side bounds every norm
        if w is None and q != p:
            w = _deepfool(gnet, side, x, q, lo, hi)
    if w is None:
        for _ in range(4):   # random restarts far out, within the domain
            scale = 1.0 + _norm(x, math.inf)
            y0 = np.clip(x + scale * rng.standard_normal(x.size), lo, hi)
            w = _deepfool(gnet, side, y0, p, lo, hi)
            if w is not None:
                break
        if w is None:   # no useful gradient (e.g. dead units): sample growing spheres
            w = _random_search(side, x, p, lo, hi, rng)
        if w is None:
            return None
    w = _line_search(side, x, w)
    best = _norm(w - x, p)
    r_lo = 0.0
    for _ in range(12):
        eps = 0.5 * (r_lo + best) if r_lo > 0 else 0.7 * best
        region = Region.make(x, eps, p, lo, hi)
        y = _pgd(gnet, side, region, x + (eps / best) * (w - x), steps, rng)
        if y is None:
            r_lo = eps
        else:
            y = _line_search(side, x, y)
            d = _norm(y - x, p)
            if d < best:
                w, best = y, d
        if best - r_lo <= 1e-3 * best:
            break
    return w


# ---------------------------------------------------------------------- MIP
@dataclass
class _MipResult:
    status: str
    lo: float          # padded lower bound on the distance to {min g <= 0}
    x: np.ndarray | None
    dist: float        # distance of the incumbent
    solver: str
    size: dict
    info: dict


def _solve_mip(gnet, bounds, region, w_att, gap, abs_gap, solver, time_limit, threads, log,
               below: float = 0.0):
    """min ||x' - x||_p over the region with some margin <= -below (0: the closed set)."""
    import scipy.sparse as sp

    from dynid.certify.encode import encode_relunet
    from dynid.milp import SparseModel, solve

    t0 = time.perf_counter()
    x, p, R = region.center, region.p, region.radius
    n = x.size
    m = SparseModel()
    enc = encode_relunet(m, gnet, bounds)
    g_lo, g_hi = bounds.lower[-1], bounds.upper[-1]
    rows = np.nonzero(g_lo <= -below)[0]     # margins that can reach -below in the region
    info = {"region_radius": R, "n_binaries_relu": int(enc.n_binaries)}
    if rows.size == 0:
        return _MipResult("infeasible", R, None, math.inf, "bounds", {}, {
            **info, "mip_status": "infeasible", "seconds_mip": time.perf_counter() - t0})
    sel = None
    if rows.size == 1:
        m.set_bounds(enc.out[rows], ub=np.array([-below]))
    else:   # some margin <= -below: g_j <= -below + (M_j + below) (1 - s_j), sum s_j = 1
        sel = m.add_vars(rows.size, 0.0, 1.0, "B")
        for k, j in enumerate(rows):
            M = max(float(g_hi[j]), -below)
            m.add_row([enc.out[j], sel[k]], [1.0, M + below], -np.inf, M)
        m.add_row(sel, np.ones(rows.size), 1.0, 1.0)
    aux = None
    squared = p == 2.0 and L2_FORM != "soc"
    if math.isinf(p):
        aux = m.add_vars(1, 0.0, R)
        A = sp.vstack([sp.hstack([np.ones((n, 1)), -sp.identity(n)]),
                       sp.hstack([np.ones((n, 1)), sp.identity(n)])])
        m.add_rows(np.concatenate([aux, enc.x]), A, np.concatenate([-x, x]), np.inf)
        m.set_objective(aux, [1.0], sense="min")
    elif p == 1.0:
        aux = m.add_vars(n, 0.0, R)
        eye = sp.identity(n)
        m.add_rows(np.concatenate([aux, enc.x]), sp.vstack([sp.hstack([eye, -eye]),
                                                            sp.hstack([eye, eye])]),
                   np.concatenate([-x, x]), np.inf)
        m.add_row(aux, np.ones(n), -np.inf, R)
        m.set_objective(aux, np.ones(n), sense="min")
    elif L2_FORM == "soc":   # min r with ||x' - x||_2 <= r, plus linear valid cuts
        aux = m.add_vars(1, 0.0, R)
        d = m.add_vars(n, -R, R)
        eye = sp.identity(n)
        m.add_rows(np.concatenate([d, enc.x]), sp.hstack([eye, -eye]), -x, -x)
        m.add_quadratic_constraint((np.concatenate([d, aux]), np.concatenate([d, aux]),
                                    np.concatenate([np.ones(n), [-1.0]])), rhs=0.0)
        A = sp.vstack([sp.hstack([np.ones((n, 1)), -eye]), sp.hstack([np.ones((n, 1)), eye])])
        m.add_rows(np.concatenate([aux, d]), A, 0.0, np.inf)
        if L2_L1CUT:   # ||d||_2 >= ||d||_1 / sqrt(n)
            e = m.add_vars(n, 0.0, R)
            m.add_rows(np.concatenate([e, d]), sp.vstack([sp.hstack([eye, -eye]),
                                                          sp.hstack([eye, eye])]), 0.0, np.inf)
            m.add_row(np.concatenate([aux, e]), np.concatenate([[math.sqrt(n)], -np.ones(n)]),
                      0.0, np.inf)
        if w_att is not None:
            u = (w_att - x) / max(_norm(w_att - x, 2), 1e-300)
            m.add_row(np.concatenate([aux, d]), np.concatenate([[1.0], -u]), 0.0, np.inf)
        m.set_objective(aux, [1.0], sense="min")
        if w_att is not None:
            m.set_start(d, w_att - x)
    else:   # ||x' - x||^2 = x'.x' - 2 x.x' + x.x
        m.set_objective(enc.x, -2.0 * x, sense="min", quad=(enc.x, enc.x, np.ones(n)),
                        constant=float(x @ x))
    if w_att is not None:
        _set_start(m, gnet, enc, w_att, x, p, aux, sel, rows)
    # the solver's gap is on the objective: squared distance for L2 (twice the relative gap)
    res = solve(m, solver, time_limit=time_limit, threads=threads, log=log,
                mip_gap=gap if squared else 0.5 * gap,
                mip_gap_abs=abs_gap * R if squared else 0.5 * abs_gap, options=_TIGHT)
    to_dist = (lambda v: math.sqrt(max(v, 0.0))) if squared else (lambda v: max(v, 0.0))
    if res.status == "infeasible":
        lo = R
    elif math.isfinite(res.bound):
        b = to_dist(res.bound)
        lo = max(0.0, b - MIP_PAD * max(b, R))
    else:
        lo = 0.0
    xm = None if res.x is None else res.x[enc.x].copy()
    dist = _norm(xm - x, p) if xm is not None else math.inf
    info.update(mip_status=res.status, mip_solver=res.solver, mip_bound=res.bound,
                mip_lower=lo, mip_upper=dist, seconds_mip=time.perf_counter() - t0,
                mip_solver_seconds=res.seconds)
    if res.message:
        info["mip_message"] = res.message
    return _MipResult(res.status, lo, xm, dist, res.solver, m.size(), info)


def _set_start(m, gnet, enc, w, x, p, aux, sel, rows):
    """A complete MIP start from the attack's point (feasible: it is on the other side)."""
    zs = gnet.preactivations(w)
    idx, val = [enc.x], [w]
    for i, z in enumerate(zs):
        relu = gnet.relu[i]
        h = np.where(relu, np.maximum(z, 0.0), z)
        idx += [enc.z[i], enc.h[i]]
        val += [z, h]
        has = enc.t[i] >= 0
        if has.any():
            idx.append(enc.t[i][has])
            val.append((z[has] > 0).astype(float))
    d = np.abs(w - x)
    if aux is not None:
        idx.append(aux)
        val.append(d if p == 1.0 else [d.max() if math.isinf(p) else np.linalg.norm(d)])
    if sel is not None:
        s = np.zeros(rows.size)
        s[int(np.argmin(zs[-1][rows]))] = 1.0
        idx.append(sel)
        val.append(s)
    m.set_start(np.concatenate([np.asarray(i).ravel() for i in idx]),
                np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in val]))


def _step_across(gnet, side, xm, p, tries: int = 40, seed: int = 0):
    """Move the MIP's boundary point (margin ~0) just across, to a float64 margin below
    ``-max(tau, rounding bound)``: steps of doubling length along a few directions, the
    nearest crossing kept. Directions: the steepest descent of the smallest margins at the
    point and at tiny random perturbations of it (the point is often a kink, where a one-sided
    gradient can point the wrong way), and the ray from x through the point."""
    if side.other(xm):
        return xm
    y = np.clip(xm, side.lo, side.hi)
    x = side.center
    rng = np.random.default_rng(seed)
    floor = 4 * np.finfo(np.float64).eps * (1.0 + _norm(y, math.inf))
    blocked = _blocker(y, side.lo, side.hi)
    g = gnet.forward(y)
    slack = side.slack(y)
    need = float(np.min(np.maximum(g, 0.0) + 2 * slack))
    dirs = []
    ray = y - x
    if _norm(ray, p) > 0:
        dirs.append((ray / _norm(ray, p), 1.0))
    jitter = 1e-9 * (1.0 + _norm(y - x, math.inf))
    for k in range(4):
        yk = y if k == 0 else y + jitter * rng.standard_normal(y.size)
        J = gnet.jacobian(yk)
        for j in np.argsort(gnet.forward(yk))[:2]:
            v, nq = _direction(J[j], p, blocked)
            if v is not None:
                dirs.append((v, nq))
    best = None
    for v, nq in dirs:
        delta = max(need / nq, floor)
        for _ in range(tries):
            if best is not None and delta >= best[0]:
                break
            cand = np.clip(y + delta * v, side.lo, side.hi)
            if side.other(cand):
                best = (delta, cand)
                break
            delta *= 2.0
    return None if best is None else best[1]
