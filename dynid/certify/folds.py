"""Witness pairs at the nearest fold of a 2-input ReLU map: an upper bound on the ball radius.

Where two adjacent linear regions A and B of F have Jacobian determinants of opposite signs
(a fold), F is not injective on any neighbourhood of their common boundary point p: with
``J_B = J_A + u g^T`` (the regions differ in the slope of the unit whose kink ``g.(x - p) = 0``
separates them), a step ``dy`` into B and ``dx = J_A^-1 J_B dy`` give ``F(p + dx) = F(p + dy)``,
and ``g.dx = g.dy det J_B / det J_A`` puts ``p + dx`` in A. So the ball radius at c is at most
the distance from c to the nearest fold point, plus the size of such a pair.

:func:`fold_witness` finds that point by sampling ``sign det J`` on nested grids around c
(down to boxes of a few ``tol``), refining the grid around the nearest sign changes, locating
the kink on the last grid edge by bisection and building the pair there. Since a ball that
holds points of both orientations holds a fold, it also takes the region of the far end of
each such edge (det J of the sign opposite to c's), finds that region's point nearest to c
exactly (an LP over the region's activation pattern, inf- and 1-norm) and builds the pair at a
kink on the segment from c to it. Every pair returned has passed the float64 re-check
(:func:`dynid.certify.invertibility.check_pair`); the search is a heuristic for the upper
bound only, no lower bound depends on it.

Example
-------
>>> import numpy as np
>>> from dynid.relunet import ReLUNet
>>> relu = [np.array([True, True, False]), np.zeros(2, bool)]
>>> net = ReLUNet([np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]),
...                np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])], [np.zeros(3), np.zeros(2)],
...               relu)                                         # (|x0|, x1)
>>> w = fold_witness(net, np.array([-0.3, 0.1]), 1.0)
>>> bool(0.3 <= w["radius"] < 0.3 + 1e-3)     # it folds along x0 = 0
True
"""

from __future__ import annotations

import math

import numpy as np

from dynid.certify.hull import point_jacobians
from dynid.relunet import ReLUNet


def _dist(X, c, p):
    return np.linalg.norm(np.atleast_2d(X) - c, ord=p, axis=1)


def _flip_edges(net, c, lo, hi, k, p):
    """Grid edges (a, b) of a k x k grid over [lo, hi] whose ends have Jacobian determinants of
    opposite signs, nearest to c first (by the farther end's distance)."""
    g0, g1 = np.linspace(lo[0], hi[0], k), np.linspace(lo[1], hi[1], k)
    X = np.stack(np.meshgrid(g0, g1, indexing="ij"), -1)
    s = np.sign(np.linalg.det(point_jacobians(net, X.reshape(-1, 2)))).reshape(k, k)
    edges = []
    for da, db in (((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                   ((slice(None), slice(None, -1)), (slice(None), slice(1, None)))):
        flip = s[da] * s[db] < 0
        if flip.any():
            edges.append(np.stack([X[da][flip], X[db][flip]], 1))
    if not edges:
        return np.zeros((0, 2, 2))
    e = np.concatenate(edges)
    key = np.maximum(_dist(e[:, 0], c, p), _dist(e[:, 1], c, p))
    return e[np.argsort(key)]


def _kink(net, a, b, steps: int = 60):
    """Bisect the segment a -> b (det J of opposite signs at the ends) to two points pa, pb
    about 1e-15 apart on either side of a sign change."""
    sa = np.sign(np.linalg.det(net.jacobian(a)))
    for _ in range(steps):
        m = (a + b) / 2
        if np.array_equal(m, a) or np.array_equal(m, b):
            break
        if np.sign(np.linalg.det(net.jacobian(m))) == sa:
            a = m
        else:
            b = m
    return a, b


def _pair_at(net, pa, pb, c, p, tol, lo, hi):
    """A checked pair straddling the kink between pa (region A) and pb (region B)."""
    from dynid.certify.invertibility import check_pair

    ja, jb = net.jacobian(pa), net.jacobian(pb)
    try:
        m = np.linalg.solve(ja, jb)
    except np.linalg.LinAlgError:
        return None
    pm = (pa + pb) / 2
    e = pb - pa
    e = e / max(np.max(np.abs(e)), 1e-300)
    best = None
    for ang in (0.0, 0.4, -0.4, 0.8, -0.8, 1.2, -1.2):
        dy = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]]) @ e
        dx = m @ dy
        sep = np.max(np.abs(dx - dy))
        if not sep > 0:
            continue
        for scale in (1.05, 1.5, 3.0):
            t = scale * tol / sep
            x, y = pm + t * dx, pm + t * dy
            ok, dist, mis, x2, y2 = check_pair(net, x, y, p, math.inf, 0.0, tol * 0.999, lo, hi)
            if ok and np.max(np.abs(x2 - y2)) >= tol:
                fx, fy = net.forward(x2), net.forward(y2)
                # a pair on the two affine pieces is exact up to rounding: prefer those
                exact = mis <= 1e-12 * max(1.0, float(np.max(np.abs(fx))))
                r = max(float(_dist(x2, c, p)[0]), float(_dist(y2, c, p)[0]))
                key = r + (0.0 if exact else 1e-3)
                if best is None or key < best["key"]:
                    best = {"x": x2, "y": y2, "Fx": fx, "Fy": fy, "distance": dist,
                            "output_gap": mis, "radius": r, "fold_point": pm, "key": key,
                            "exact": exact}
                if exact:
                    break
        if best is not None and best["exact"]:
            break
    return best


def _nearest_in_region(net: ReLUNet, x_in, c, p, lo, hi):
    """The point nearest to c (inf- or 1-norm, an LP) of the linear region of ``x_in``
    (every ReLU keeps its sign at x_in, with a small margin so the point lies inside), or
    None (2-norm, or the LP fails)."""
    from dynid.milp import SparseModel, solve

    if not (math.isinf(p) or p == 1.0):
        return None
    n = c.size
    m = SparseModel("nearest-in-region")
    x = m.add_vars(n, lo, hi, "C")
    A, a = np.eye(n), np.zeros(n)
    for w, b, relu, z in zip(net.weights, net.biases, net.relu, net.preactivations(x_in)):
        ZA, Za = w @ A, w @ a + b
        if relu.any():
            on = z > 0
            # every ReLU keeps its side, with a margin: on z >= margin, off z <= -margin
            margin = 1e-9 * (1.0 + np.abs(ZA[relu]) @ np.abs(x_in) + np.abs(Za[relu]))
            r = relu & on
            if r.any():
                m.add_rows(x, ZA[r], margin[on[relu]] - Za[r], np.inf)
            r = relu & ~on
            if r.any():
                m.add_rows(x, ZA[r], -np.inf, -margin[~on[relu]] - Za[r])
            keep = np.where(relu, on, True)
            ZA, Za = ZA * keep[:, None], Za * keep
        A, a = ZA, Za
    k = 1 if math.isinf(p) else n          # t (inf-norm) or e_i (1-norm) >= |x_i - c_i|
    t = m.add_vars(k, 0.0, np.inf, "C")
    for i in range(n):
        ti = t[0] if k == 1 else t[i]
        m.add_row([ti, x[i]], [1.0, -1.0], -c[i], np.inf)
        m.add_row([ti, x[i]], [1.0, 1.0], c[i], np.inf)
    m.set_objective(t, np.ones(k), sense="min")
    res = solve(m, solver="highs")
    return None if res.x is None else np.asarray(res.x)[x]


def _via_region(net, x_in, s_c, c, p, tol, lo, hi):
    """A pair on the segment from c to the nearest point of x_in's region (whose det J has
    the sign opposite to c's, ``s_c``): the segment crosses a fold inside that ball."""
    q = _nearest_in_region(net, x_in, c, p, lo, hi)
    if q is None or np.sign(np.linalg.det(net.jacobian(q))) != -s_c:
        return None
    pa, pb = _kink(net, c.copy(), q)
    return _pair_at(net, pa, pb, c, p, tol, lo, hi)


def fold_witness(net: ReLUNet, center, r_max: float, p: float = math.inf, tol: float = 1e-4,
                 *, grid: int = 48, levels: int | None = None, refine: int = 5,
                 candidates: int = 4):
    """A float64-checked pair (x, y) with F(x) = F(y), ||x - y||_inf >= tol, near the fold
    nearest to ``center`` (within ``r_max``), as a dict with ``radius`` = max(||x - c||_p,
    ||y - c||_p) (an upper bound on the ball radius); None when no fold was found. Only for
    maps with 2 inputs and 2 outputs."""
    c = np.asarray(center, np.float64).reshape(-1)
    if net.n_in != 2 or net.n_out != 2:
        return None
    lo_all, hi_all = c - r_max, c + r_max
    if levels is None:                   # down to boxes of a few tol around c
        levels = max(1, int(math.ceil(math.log2(max(r_max / (64 * tol), 2.0)))))
    s_c = np.sign(np.linalg.det(net.jacobian(c)))
    found = []
    for lev in range(levels):           # nested grids: fine near c, coarse far out
        r = r_max / 2 ** lev
        e = _flip_edges(net, c, c - r, c + r, grid, p)
        if e.shape[0]:
            found.append(e[:candidates])
    if not found:
        return None
    edges = np.concatenate(found)
    key = np.maximum(_dist(edges[:, 0], c, p), _dist(edges[:, 1], c, p))
    edges = edges[np.argsort(key)][:candidates]
    best = None
    for a, b in edges:
        h = float(np.max(np.abs(b - a)))
        for _ in range(refine):         # zoom in around the nearest sign change
            mid = (a + b) / 2
            e = _flip_edges(net, c, np.maximum(mid - 2 * h, lo_all),
                            np.minimum(mid + 2 * h, hi_all), 17, p)
            if e.shape[0] == 0:
                break
            a, b = e[0]
            h = float(np.max(np.abs(b - a)))
        pa, pb = _kink(net, a, b)
        tries = [_pair_at(net, pa, pb, c, p, tol, lo_all, hi_all)]
        if s_c != 0:   # the exact nearest point of the opposite region found (an LP)
            far = b if np.sign(np.linalg.det(net.jacobian(b))) == -s_c else a
            tries.append(_via_region(net, far, s_c, c, p, tol, lo_all, hi_all))
        for w in tries:
            if w is not None and (best is None or w["key"] < best["key"]):
                best = w
    if best is not None:
        del best["key"]
    return best
