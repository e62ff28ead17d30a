"""Injectivity of a 2-input ReLU map on a ball from the convex hull of its Jacobians.

For x != y in a convex set S, the segment from x to y splits into finitely many pieces on
which F is affine, so ``F(y) - F(x) = sum_k s_k J_k (y - x)`` with ``s_k >= 0`` and ``J_k`` the
Jacobian of a linear region met by piece k (a unit whose pre-activation stays 0 along a piece
has zero derivative there, so either slope gives the same ``J_k (y - x)``). Cover S by
sub-boxes ("leaves"): on a leaf every such ``J_k`` lies in the leaf's interval Jacobian
``[J]`` (units stable on the leaf keep their slope 0 or 1, the others get [0, 1]). Cover the
half circle of directions by arcs; a difference ``y - x`` pointing into the arc spanned by
``u1, u2`` is ``a u1 + b u2`` with ``a, b >= 0`` (or minus that). If some ``w`` has
``w.M u1 > 0`` and ``w.M u2 > 0`` for every M in every leaf's ``[J]``, then
``w.(F(y) - F(x)) > 0`` for all those pairs, so ``F(x) != F(y)``. When every arc has such a
``w``, F is injective on S.

The test asks that 0 stays outside the convex hull of ``{J u}`` for every direction u; it
fails exactly at a fold (adjacent regions whose Jacobian determinants have opposite signs),
so on a surrogate whose nearest non-injectivity is a fold it certifies a radius up to that
fold. Leaves and arcs are refined where the test fails; the last check of every arc is done
with its ``w`` in float64 with a rounding pad, so a heuristic choice can only make the test
fail, never pass wrongly.

Example
-------
>>> import numpy as np
>>> from dynid.relunet import ReLUNet
>>> net = ReLUNet([np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]),
...                np.array([[1.0, 0.0, -1.5], [0.0, 1.0, 0.0]])],
...               [np.zeros(3), np.zeros(2)], [np.array([False, False, True]),
...                                            np.zeros(2, bool)])   # x0 - 1.5 relu(x0)
>>> hull_injective(net, np.array([-1.0, 0.0]), 0.5)[0]   # x0 < 0 on the ball: F linear
True
>>> hull_injective(net, np.array([-0.2, 0.0]), 0.5)[0]   # folds at x0 = 0
False
"""

from __future__ import annotations

import math
import time

import numpy as np

from dynid.bounds.core import ABS_PAD, REL_PAD
from dynid.bounds.relaxation import affine_image
from dynid.relunet import ReLUNet


def _mul(w, A):
    """``w @ A`` for a stack ``A`` of shape (j, K, n): one matrix product, shape (m, K, n)."""
    j, K, n = A.shape
    return (w @ A.reshape(j, K * n)).reshape(w.shape[0], K, n)


def leaf_bounds(net: ReLUNet, LO, HI):
    """Pre-activation bounds over K boxes at once (rows of ``LO``/``HI``, shape (K, n)):
    interval arithmetic intersected with forward linear bounds (each unit's lower and upper
    affine functions of x, with CROWN's relaxation of the unstable units), padded for rounding.
    Returns (lowers, uppers), one (K, m_i) array per layer."""
    LO, HI = np.atleast_2d(LO).astype(np.float64), np.atleast_2d(HI).astype(np.float64)
    K, n = LO.shape
    mid, rad = (LO + HI) / 2, (HI - LO) / 2
    xm = np.maximum(np.abs(LO), np.abs(HI))
    # affine bounds A x + a of the current layer's inputs, stacked as (units, K, n) / (units, K)
    A_l = np.broadcast_to(np.eye(n)[:, None, :], (n, K, n)).copy()
    A_u = A_l.copy()
    a_l, a_u = np.zeros((n, K)), np.zeros((n, K))
    err = np.zeros((n, K))              # |float affine function - exact one| on the box
    h_lo, h_hi = LO.T, HI.T
    lowers, uppers = [], []

    def at(A, v):                       # (A x) evaluated per box for x = v (K, n)
        return (A * v[None]).sum(-1)

    for w, b, relu in zip(net.weights, net.biases, net.relu):
        wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)
        aw = np.abs(w)
        Zl_A = _mul(wp, A_l) + _mul(wn, A_u)
        Zu_A = _mul(wp, A_u) + _mul(wn, A_l)
        Zl_a = wp @ a_l + wn @ a_u + b[:, None]
        Zu_a = wp @ a_u + wn @ a_l + b[:, None]
        prev_mag = np.maximum(np.maximum(np.abs(a_l) + at(np.abs(A_l), xm),
                                         np.abs(a_u) + at(np.abs(A_u), xm)),
                              np.maximum(np.abs(h_lo), np.abs(h_hi)))
        err_z = aw @ err + REL_PAD * (aw @ prev_mag + np.abs(b)[:, None])
        zl = Zl_a + at(Zl_A, mid) - at(np.abs(Zl_A), rad)
        zu = Zu_a + at(Zu_A, mid) + at(np.abs(Zu_A), rad)
        cmag = np.maximum(np.abs(Zl_a) + at(np.abs(Zl_A), xm), np.abs(Zu_a) + at(np.abs(Zu_A), xm))
        pad = err_z + REL_PAD * cmag + ABS_PAD
        il, iu = affine_image(w, b, h_lo.T, h_hi.T)
        lo, hi = np.maximum(zl - pad, il.T), np.minimum(zu + pad, iu.T)
        hi = np.maximum(hi, lo)
        lowers.append(lo.T)
        uppers.append(hi.T)
        # relaxation of h = relu(z) (identity units: h = z)
        r = relu[:, None]
        off = r & (hi <= 0)
        unst = r & (lo < 0) & (hi > 0)
        den = np.where(unst, hi - lo, 1.0)
        s_up = np.where(unst, hi / den, np.where(off, 0.0, 1.0))
        t_up = np.where(unst, -s_up * lo, 0.0)
        s_lo = np.where(unst, (hi >= -lo).astype(float), np.where(off, 0.0, 1.0))
        A_u, a_u = s_up[:, :, None] * Zu_A, s_up * Zu_a + t_up
        A_l, a_l = s_lo[:, :, None] * Zl_A, s_lo * Zl_a
        err = np.where(off, 0.0, err_z + np.where(unst, REL_PAD * (hi - lo), 0.0))
        h_lo = np.where(r, np.maximum(lo, 0.0), lo)
        h_hi = np.where(r, np.maximum(hi, 0.0), hi)
    return lowers, uppers


def interval_jacobians(net: ReLUNet, lowers, uppers):
    """Midpoint-radius enclosures ``(mid, rad)`` (each (K, n_out, n_in)) of every Jacobian
    of F on K boxes whose pre-activation bounds are ``lowers``/``uppers`` ((K, m_i) per layer):
    a unit stable on a box has its fixed slope, an unstable one any slope in [0, 1]. Every
    radius is padded for rounding."""
    K = lowers[0].shape[0]
    n = net.n_in
    mid = np.broadcast_to(np.eye(n)[:, None, :], (n, K, n)).copy()    # (units, K, n)
    rad = np.zeros((n, K, n))
    for i, (w, relu) in enumerate(zip(net.weights, net.relu)):
        aw = np.abs(w)
        m2 = _mul(w, mid)
        r2 = _mul(aw, rad)
        r2 = r2 + 1e-12 * (_mul(aw, np.abs(mid)) + r2) + 1e-300
        if relu.any():
            off = (relu[:, None] & (uppers[i].T <= 0))[:, :, None]
            unst = (relu[:, None] & (lowers[i].T < 0) & (uppers[i].T > 0))[:, :, None]
            m2 = np.where(off, 0.0, m2)
            r2 = np.where(off, 0.0, r2)
            # [0, 1] * [m - r, m + r] = the hull of 0 and the interval
            a, b = np.minimum(m2 - r2, 0.0), np.maximum(m2 + r2, 0.0)
            m2 = np.where(unst, (a + b) / 2, m2)
            r2 = np.where(unst, (b - a) / 2 * (1 + 1e-12), r2)
        mid, rad = m2, r2
    return mid.transpose(1, 0, 2), rad.transpose(1, 0, 2)


def point_jacobians(net: ReLUNet, X) -> np.ndarray:
    """Jacobians (K, n_out, n_in) of F at the rows of X (relu'(0) taken as 0)."""
    zs = net.preactivations(np.atleast_2d(np.asarray(X, np.float64)))
    K = zs[0].shape[0]
    g = np.broadcast_to(np.eye(net.n_in)[:, None, :], (net.n_in, K, net.n_in))
    for w, z, relu in zip(net.weights, zs, net.relu):
        g = _mul(w, g)
        if relu.any():
            g = g * np.where(relu[:, None], z.T > 0, True)[:, :, None]
    return g.transpose(1, 0, 2)


def _vertex_bounds(net, lowers, uppers, max_vertices):
    """For boxes with at most log2(max_vertices) unstable units: one row of fake bounds per
    vertex of their slopes in {0, 1} (unstable units fixed on or off), since a Jacobian is
    multilinear in the slopes and so lies in the convex hull of these vertex Jacobians.
    Returns (rows of the boxes expanded, lowers, uppers, mask of the boxes expanded)."""
    unst = [r & (l < 0) & (u > 0) for l, u, r in zip(lowers, uppers, net.relu)]
    count = sum(u.sum(axis=1) for u in unst)
    small = count <= int(math.log2(max_vertices))
    rows, lw, up = [], [[] for _ in lowers], [[] for _ in lowers]
    for k in np.flatnonzero(small):
        units = [(i, j) for i, u in enumerate(unst) for j in np.flatnonzero(u[k])]
        for bits in range(2 ** len(units)):
            lk = [l[k].copy() for l in lowers]
            uk = [u[k].copy() for u in uppers]
            for b, (i, j) in enumerate(units):
                on = (bits >> b) & 1
                lk[i][j], uk[i][j] = (1.0, 1.0) if on else (-1.0, -1.0)
            rows.append(k)
            for i in range(len(lowers)):
                lw[i].append(lk[i])
                up[i].append(uk[i])
    if not rows:
        return np.zeros(0, int), None, None, small
    return np.array(rows), [np.array(v) for v in lw], [np.array(v) for v in up], small


class _Leaves:
    """Sub-boxes of a box with the matrices that enclose their Jacobians ("generators": the
    vertex Jacobians of a box with few unstable units, else its interval Jacobian), split on
    demand."""

    def __init__(self, net, lo, hi, grid, keep, max_vertices=64):
        self.net, self.keep, self.max_vertices = net, keep, max_vertices
        g = np.linspace(0.0, 1.0, grid + 1)
        starts = np.stack(np.meshgrid(g[:-1], g[:-1], indexing="ij"), -1).reshape(-1, 2)
        ends = np.stack(np.meshgrid(g[1:], g[1:], indexing="ij"), -1).reshape(-1, 2)
        LO = lo + starts * (hi - lo)
        HI = np.where(ends >= 1.0, hi, lo + ends * (hi - lo))   # the last cells end at hi
        self.LO, self.HI = np.zeros((0, 2)), np.zeros((0, 2))
        self.mid, self.rad = np.zeros((0, 2, 2)), np.zeros((0, 2, 2))
        self.owner = np.zeros(0, int)
        self.gen_id = np.zeros(0, int)     # increasing: which generators an arc has seen
        self.next_id = 0
        self.Jc = np.zeros((0, 2, 2))      # the Jacobian at each leaf's centre (a real one)
        self._add(LO, HI)

    def _add(self, LO, HI):
        ok = self.keep(LO, HI)
        LO, HI = LO[ok], HI[ok]
        if LO.shape[0] == 0:
            return
        base = self.LO.shape[0]
        lw, up = leaf_bounds(self.net, LO, HI)
        rows, vlw, vup, small = _vertex_bounds(self.net, lw, up, self.max_vertices)
        mids, rads, owners = [self.mid], [self.rad], [self.owner]
        if rows.size:
            m, r = interval_jacobians(self.net, vlw, vup)
            mids.append(m)
            rads.append(r)
            owners.append(base + rows)
        big = np.flatnonzero(~small)
        if big.size:
            m, r = interval_jacobians(self.net, [v[big] for v in lw], [v[big] for v in up])
            mids.append(m)
            rads.append(r)
            owners.append(base + big)
        self.LO, self.HI = np.vstack([self.LO, LO]), np.vstack([self.HI, HI])
        n_new = sum(m.shape[0] for m in mids[1:])
        self.mid, self.rad = np.concatenate(mids), np.concatenate(rads)
        self.owner = np.concatenate(owners)
        self.gen_id = np.concatenate([self.gen_id, self.next_id + np.arange(n_new)])
        self.next_id += n_new
        self.Jc = np.concatenate([self.Jc, point_jacobians(self.net, (LO + HI) / 2)])

    def split(self, idx):
        """Split the leaves ``idx`` into 4 each."""
        idx = np.unique(idx)
        keep = np.ones(self.LO.shape[0], bool)
        keep[idx] = False
        LO, HI = self.LO[idx], self.HI[idx]
        renumber = np.cumsum(keep) - 1
        gk = keep[self.owner]
        self.LO, self.HI, self.Jc = self.LO[keep], self.HI[keep], self.Jc[keep]
        self.mid, self.rad = self.mid[gk], self.rad[gk]
        self.owner, self.gen_id = renumber[self.owner[gk]], self.gen_id[gk]
        m = (LO + HI) / 2
        kids_lo, kids_hi = [], []
        for sx in (0, 1):
            for sy in (0, 1):
                s = np.array([sx, sy], bool)
                kids_lo.append(np.where(s, m, LO))
                kids_hi.append(np.where(s, HI, m))
        self._add(np.vstack(kids_lo), np.vstack(kids_hi))

    @property
    def size(self) -> int:
        return int(self.LO.shape[0])


def _directions(theta):
    """Unit vectors at the angles ``theta`` (0 .. pi), with u(0) = (1, 0) and u(pi) = (-1, 0)
    exactly, so consecutive arcs share their float endpoints and cover the half circle."""
    u = np.stack([np.cos(theta), np.sin(theta)], 1)
    u[theta == 0.0] = (1.0, 0.0)
    u[theta == math.pi] = (-1.0, 0.0)
    return u


def _images(mid, rad, u):
    """Centres and radii (each (G, J, 2)) of the boxes [M] u_j for the generators (mid, rad)
    and the directions u (J, 2); also |mid| |u_j|, the size of the terms in the centres."""
    q = (mid @ u.T).transpose(0, 2, 1)
    rho = (rad @ np.abs(u).T).transpose(0, 2, 1)
    mau = (np.abs(mid) @ np.abs(u).T).transpose(0, 2, 1)
    return q, rho, mau


def _fits_half_plane(q):
    """Whether the points q (G, 2) (all nonzero) lie in an open half plane through 0: the
    largest circular gap between their angles exceeds pi."""
    a = np.sort(np.arctan2(q[:, 1], q[:, 0]))
    gaps = np.diff(np.concatenate([a, a[:1] + 2 * math.pi]))
    return bool(gaps.max() > math.pi) if a.size else True


def hull_injective(net: ReLUNet, center, radius: float, p: float = math.inf, *,
                   grid: int = 8, arcs: int = 32, max_leaves: int = 20000,
                   max_arcs: int = 4096, time_limit: float | None = None):
    """Whether F (R^2 -> R^2) is provably injective on the p-norm ball of ``radius`` around
    ``center``; returns ``(ok, info)`` (False: not proven). See the module docstring.

    ``info["reason"]``: "proven"; "fold" when the Jacobians at the centres of some leaves
    (real Jacobians of points in the ball) already wrap round 0 in some direction, so no
    refinement can prove it; "budget" / "time" when the leaves, arcs or seconds ran out."""
    t0 = time.perf_counter()
    c = np.asarray(center, np.float64).reshape(-1)
    if net.n_in != 2 or net.n_out != 2 or not radius > 0:
        return (radius == 0), {"leaves": 0, "arcs": 0, "seconds": 0.0}
    # the box c +- radius, widened by its rounding so that it holds the exact ball
    slack = 4 * np.finfo(np.float64).eps * (np.abs(c) + radius)
    lo, hi = c - radius - slack, c + radius + slack

    def in_ball(LO, HI):   # leaves that meet the ball (all of them for the inf-norm)
        if math.isinf(p):
            return np.ones(LO.shape[0], bool)
        gap = np.maximum(np.maximum(LO - c, c - HI), 0.0)
        return np.linalg.norm(gap, ord=p, axis=1) <= radius * (1 + 1e-9) + 1e-12

    leaves = _Leaves(net, lo, hi, grid, in_ball)
    arcs_ = _Arcs(arcs)
    while True:
        ok, reason, split_arcs, split_leaves = arcs_.check(leaves)
        if ok or not (split_arcs or split_leaves.size):
            break
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            reason = "time"
            break
        if leaves.size + 3 * split_leaves.size > max_leaves or \
                arcs_.size + len(split_arcs) > max_arcs:
            reason = "budget"
            break
        arcs_.split(split_arcs)
        if split_leaves.size:
            leaves.split(split_leaves)
    return ok, {"leaves": leaves.size, "generators": int(leaves.mid.shape[0]),
                "arcs": arcs_.size, "reason": reason, "seconds": time.perf_counter() - t0}


class _Arcs:
    """The arcs of directions, each with the separating w found for it (or none yet) and
    the generators it was verified against."""

    def __init__(self, n: int):
        self.theta = np.linspace(0.0, math.pi, n + 1)
        self.theta[-1] = math.pi
        self.w = np.full((n, 2), np.nan)
        self.seen = np.full(n, -1)      # largest generator id verified against w

    @property
    def size(self) -> int:
        return len(self.theta) - 1

    def split(self, idx) -> None:
        if not len(idx):
            return
        idx = np.asarray(idx)
        mids = (self.theta[idx] + self.theta[idx + 1]) / 2
        keep = np.ones(self.size, bool)
        keep[idx] = False
        w = np.vstack([self.w[keep], np.full((2 * idx.size, 2), np.nan)])
        seen = np.concatenate([self.seen[keep], np.full(2 * idx.size, -1)])
        start = np.concatenate([self.theta[:-1][keep], self.theta[idx], mids])
        order = np.argsort(start, kind="stable")
        self.theta = np.concatenate([start[order], [math.pi]])
        self.w, self.seen = w[order], seen[order]

    def check(self, leaves):
        """Verify every arc; returns (all proven, reason, arcs to split, leaves to split)."""
        u = _directions(self.theta)
        # arcs already verified need only the generators added since
        known = ~np.isnan(self.w[:, 0])
        for i in np.flatnonzero(known):
            new = leaves.gen_id > self.seen[i]
            if new.any():
                q, rho, mau = _images(leaves.mid[new], leaves.rad[new], u[i:i + 2])
                if not _separates(self.w[i], q, rho, mau).all():
                    self.w[i] = np.nan
            self.seen[i] = leaves.next_id - 1 if not np.isnan(self.w[i, 0]) else -1
        todo = np.flatnonzero(np.isnan(self.w[:, 0]))
        if todo.size == 0:
            return True, "proven", [], np.zeros(0, int)
        ends = np.unique(np.concatenate([todo, todo + 1]))
        pos = {j: k for k, j in enumerate(ends)}
        q, rho, mau = _images(leaves.mid, leaves.rad, u[ends])
        qc = (leaves.Jc @ u[ends].T).transpose(0, 2, 1)           # real Jacobians' images
        for j in range(len(ends)):
            if not _fits_half_plane(qc[:, j]):
                return False, "fold", [], np.zeros(0, int)
        helpable = np.bincount(leaves.owner, minlength=leaves.size) > 1
        np.logical_or.at(helpable, leaves.owner, np.max(leaves.rad, axis=(1, 2)) > 1e-9)
        split_arcs, split_gens = [], []
        for i in todo:
            a, b = pos[i], pos[i + 1]
            qq, rr, mm = q[:, [a, b]], rho[:, [a, b]], mau[:, [a, b]]
            w = _best_w(qq, rr)
            if w is not None and _separates(w, qq, rr, mm).all():
                self.w[i], self.seen[i] = w, leaves.next_id - 1
                continue
            # refine: an arc whose endpoints' centres fit a half plane one at a time but
            # not together is split; else the generators violating the centres' w are
            wc = _best_w(qq, np.zeros_like(rr))
            if wc is None:   # the generators' centres wrap: take the real Jacobians' w
                wc = _best_w(qc[:, [a, b]], np.zeros_like(rr[:leaves.size]))
                if wc is None:       # they fit at each endpoint (checked) but not together
                    split_arcs.append(i)
                    continue
            bad = ~_separates(wc, qq, rr, mm)
            if not bad.any():    # the centres' w separates every generator: verified
                self.w[i], self.seen[i] = wc, leaves.next_id - 1
                continue
            split_gens.append(np.flatnonzero(bad))
        if not split_arcs and not split_gens:
            return True, "proven", [], np.zeros(0, int)
        gens = np.unique(np.concatenate(split_gens)) if split_gens else np.zeros(0, int)
        cand = np.unique(leaves.owner[gens])
        return False, "refining", split_arcs, cand[helpable[cand]]


def _best_w(q, rho):
    """The direction w in the middle of the separating ones for the boxes q +- rho (G, 2, 2:
    generators, the arc's two endpoints, coordinates), or None when none separates them."""
    if np.any(np.all(np.abs(q) <= rho, axis=2)):
        return None                 # a box holds 0
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], float)
    corners = (q[:, :, None, :] + signs[None, None] * rho[:, :, None, :]).reshape(-1, 2)
    ref_v = (q / np.linalg.norm(q, axis=2, keepdims=True)).reshape(-1, 2).sum(axis=0)
    ref = math.atan2(ref_v[1], ref_v[0])
    d = np.mod(np.arctan2(corners[:, 1], corners[:, 0]) - ref + math.pi, 2 * math.pi) - math.pi
    if d.max() - d.min() >= math.pi:
        return None
    phi = ref + (d.max() + d.min()) / 2
    return np.array([math.cos(phi), math.sin(phi)])


def _separates(w, q, rho, mau):
    """Rigorous check, per generator, that w.(M u) > 0 for every M in its box and both
    endpoints u of the arc (q, rho, mau: (G, 2, 2) from :func:`_images`)."""
    aw = np.abs(w)
    val = q @ w - rho @ aw
    mag = mau @ aw + rho @ aw
    return np.all(val > 1e-12 * mag + 1e-300, axis=1)


def hull_radius(net: ReLUNet, center, r_hi: float, p: float = math.inf, *, r_lo: float = 0.0,
                resolution: float = 1e-3, time_limit: float | None = None,
                skip_top: bool = False, **kw):
    """The largest radius in [r_lo, r_hi] found by bisection (to ``resolution``) on which
    :func:`hull_injective` proves F injective (``r_lo`` when none is proven; ``r_lo`` itself is
    taken as proven by the caller; ``skip_top``: r_hi is known to fail). Returns
    (radius, info)."""
    t0 = time.perf_counter()
    tries = []

    def test(r):
        left = None if time_limit is None else max(time_limit - (time.perf_counter() - t0), 0.0)
        ok, info = hull_injective(net, center, r, p, time_limit=left, **kw)
        tries.append({"radius": r, "ok": ok, **info})
        return ok

    if not skip_top and test(r_hi):
        good = r_hi
    else:
        good, bad = r_lo, r_hi
        while bad - good > resolution:
            if time_limit is not None and time.perf_counter() - t0 > time_limit:
                break
            mid = 0.5 * (good + bad)
            if test(mid):
                good = mid
            else:
                bad = mid
    return good, {"tries": tries, "seconds": time.perf_counter() - t0}
