"""Two coupled copies of a network: the model behind every invertibility query.

The copies x and y share nothing but the coupling rows. Our formulation (``method="ours"``) adds
on top of the per-copy big-M encodings with CROWN/OBBT bounds:

- difference variables ``d = x - y``, ``dz_i = z_i(x) - z_i(y)``, ``dh_i = h_i(x) - h_i(y)``
  bounded both by the copies' bounds and by interval propagation through the weights;
- the convex hull of the ReLU "bow-tie" ``{(dz, dh): dh between 0 and dz}`` for every ReLU
  unit (valid because relu is monotone and 1-Lipschitz), which ties the two copies together
  in the LP relaxation;
- optimisation-based tightening of the difference bounds on the coupled LP relaxation (the
  output coupling included), repeated while it shrinks them; when it alone bounds the
  distance by the tolerance, no MIP is needed at all;
- symmetry breaking: (x, y) and (y, x) are both solutions, so one sign is fixed.

``method="naive"`` is the baseline of the paper's code: interval bounds, a binary per ReLU in
each copy, 2n coordinate/sign binaries with M = 2 * (largest box width), no difference cuts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from dynid.bounds import Bounds, crown_bounds, interval_bounds
from dynid.certify.lp import RowLP
from dynid.relunet import ReLUNet


@dataclass
class DiffBounds:
    """Bounds of the differences between two copies: input d, and dz_i per layer."""

    d_lo: np.ndarray
    d_hi: np.ndarray
    dz_lo: list
    dz_hi: list
    info: dict = field(default_factory=dict)

    def dh(self, i: int, relu: np.ndarray, bx: Bounds, by: Bounds):
        """Bounds of dh_i = h_i(x) - h_i(y) from dz_i (relu is monotone, 1-Lipschitz) and
        from the copies' post-activation bounds."""
        lo, hi = self.dz_lo[i], self.dz_hi[i]
        rlo = np.where(relu, np.minimum(lo, 0.0), lo)
        rhi = np.where(relu, np.maximum(hi, 0.0), hi)
        xl, xh = bx.post_bounds(i)
        yl, yh = by.post_bounds(i)
        return np.maximum(rlo, xl - yh), np.minimum(rhi, xh - yl)


def copy_bounds(net: ReLUNet, lo, hi, method: str = "ours", obbt: bool | str = "auto") -> Bounds:
    """Per-copy bounds: interval for the naive baseline; CROWN ∩ interval (+ LP-OBBT for nets
    with two or more hidden layers, or when ``obbt`` is True) for ours."""
    ibp = interval_bounds(net, lo, hi)
    if method == "naive":
        return ibp
    b = crown_bounds(net, lo, hi).intersect(ibp)
    if obbt is True or (obbt == "auto" and net.n_layers >= 3 and b.n_unstable > 0):
        from dynid.certify.obbt import obbt_bounds

        b = obbt_bounds(net, lo, hi, init=b)
    return b


def interval_diff_bounds(net: ReLUNet, bx: Bounds, by: Bounds, d_lo, d_hi) -> DiffBounds:
    """Propagate difference bounds forward: dz_i = W_i dh_{i-1} (biases cancel)."""
    dz_lo, dz_hi = [], []
    plo, phi = np.asarray(d_lo, float), np.asarray(d_hi, float)
    db = DiffBounds(plo, phi, dz_lo, dz_hi)
    for i, (w, relu) in enumerate(zip(net.weights, net.relu)):
        wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)
        lo = wp @ plo + wn @ phi
        hi = wp @ phi + wn @ plo
        mag = np.abs(w) @ np.maximum(np.abs(plo), np.abs(phi))
        lo, hi = lo - 1e-12 * mag - 1e-12, hi + 1e-12 * mag + 1e-12
        # also from the copies' own pre-activation bounds
        lo = np.maximum(lo, bx.lower[i] - by.upper[i])
        hi = np.minimum(hi, bx.upper[i] - by.lower[i])
        dz_lo.append(lo)
        dz_hi.append(np.maximum(hi, lo))
        plo, phi = db.dh(i, relu, bx, by)
    return db


@dataclass
class PairModel:
    """Indices of a built two-copy model."""

    x: np.ndarray
    y: np.ndarray | None
    d: np.ndarray
    out_diff_rows: int
    binaries: int


def add_copy_differences(model, net: ReLUNet, ex, ey, bx: Bounds, by: Bounds, db: DiffBounds,
                         lp_mode: bool = False):
    """Add d, dz_i, dh_i variables with their defining rows and the bow-tie hull cuts.

    ``ex``/``ey`` are the copies' index sets (Encoding or (x, hs) from the triangle LP);
    returns the index arrays (d, list of dz)."""
    add = (lambda n, l, u: model.add_vars(n, l, u)) if lp_mode else \
        (lambda n, l, u: model.add_vars(n, l, u, "C"))
    xs, hxs = ex
    ys, hys = ey
    n = net.n_in
    d = add(n, db.d_lo, db.d_hi)
    eye = sp.identity(n)
    model.add_rows(np.concatenate([d, xs, ys]), sp.hstack([eye, -eye, eye]), np.zeros(n),
                   np.zeros(n))
    prev = d
    dzs = []
    for i, (w, relu) in enumerate(zip(net.weights, net.relu)):
        k = w.shape[0]
        lo, hi = db.dz_lo[i], db.dz_hi[i]
        dz = add(k, lo, hi)
        model.add_rows(np.concatenate([dz, prev]), sp.hstack([sp.identity(k), sp.csr_matrix(-w)]),
                       np.zeros(k), np.zeros(k))
        dzs.append(dz)
        if i == net.n_layers - 1:
            break
        hl, hh = db.dh(i, relu, bx, by)
        dh = dz.copy()
        if relu.any():
            r = np.flatnonzero(relu)
            dh[r] = add(r.size, hl[r], hh[r])
            # dh = h_x - h_y
            e = sp.identity(r.size)
            model.add_rows(np.concatenate([dh[r], hxs[i][r], hys[i][r]]),
                           sp.hstack([e, -e, e]), np.zeros(r.size), np.zeros(r.size))
            _bowtie_rows(model, dz[r], dh[r], lo[r], hi[r])
        prev = dh
    return d, dzs


def _bowtie_rows(model, dz, dh, lo, hi) -> None:
    """Convex hull of {(s, t): t between 0 and s, lo <= s <= hi} for each unit."""
    for j in range(dz.size):
        L, U = float(lo[j]), float(hi[j])
        cols = np.array([dh[j], dz[j]])
        if L >= 0:      # 0 <= dh <= dz
            model.add_rows(cols, np.array([[1.0, -1.0]]), [-np.inf], [0.0])
        elif U <= 0:    # dz <= dh <= 0
            model.add_rows(cols, np.array([[1.0, -1.0]]), [0.0], [np.inf])
        elif U - L > 1e-12:
            s = U / (U - L)          # chord from (L, 0) to (U, U): dh <= s (dz - L)
            model.add_rows(cols, np.array([[1.0, -s]]), [-np.inf], [-s * L])
            s2 = -L / (U - L)        # chord from (L, L) to (U, 0): dh >= s2 (U - dz)... as
            # dh >= L (U - dz) / (U - L) = s2 * (dz - U)
            model.add_rows(cols, np.array([[1.0, -s2]]), [-s2 * U], [np.inf])


def tighten_differences(net: ReLUNet, bx: Bounds, by: Bounds, db: DiffBounds, delta_lo, delta_hi,
                        *, rounds: int = 30, stop_at: float = 0.0, time_limit: float | None = None,
                        min_gain: float = 0.02, symmetric: bool = False, log=None,
                        hidden_targets: bool = True, hybrid: bool = False) -> DiffBounds:
    """OBBT of the difference bounds on the coupled LP relaxation (both copies' triangle
    relaxations, the difference variables, the bow-tie hulls and delta_lo <= F(x) - F(y) <=
    delta_hi). Repeated while the total width shrinks by more than ``min_gain``; stops early
    once every |d_i| <= ``stop_at``. Every bound kept is a safe dual bound.
    ``hidden_targets=False`` tightens only d (dz follows by interval propagation);
    ``hybrid=True`` alternates: full rounds first and when d-only rounds stall (fewer LPs on
    wide layers; measured faster on h = 50 and slower on h = 10, so off by default).
    ``time_limit`` (seconds, default None: no wall clock, the work is bounded by ``rounds``)
    ends the tightening early; the bounds then depend on the machine's speed and load."""
    from dynid.bounds.relaxation import add_triangle_layers

    t0 = time.perf_counter()
    hidden = [i for i in range(net.n_layers - 1) if net.relu[i].any()]
    stalled = False
    n_hidden = sum(int(net.relu[i].sum()) for i in hidden)
    for rnd in range(rounds):
        lp = RowLP()
        ex = add_triangle_layers(lp, net, bx, net.n_layers - 1)
        ey = add_triangle_layers(lp, net, by, net.n_layers - 1)
        d, dzs = add_copy_differences(lp, net, ex, ey, bx, by, db, lp_mode=True)
        out = dzs[-1]
        lp.set_var_bounds(out, np.maximum(db.dz_lo[-1], delta_lo),
                          np.minimum(db.dz_hi[-1], delta_hi))
        # full rounds (hidden dz targets too) at the start and whenever cheap d-only rounds
        # stall; d-only rounds in between cost n instead of n + #relu LPs
        full = hidden_targets and (not hybrid or rnd == 0 or stalled
                                   or n_hidden <= 3 * net.n_in)
        targets = [d] + ([dzs[i][net.relu[i]] for i in hidden] if full else [])
        cols = np.concatenate(targets)
        c = sp.vstack([sp.csr_matrix((np.ones(cols.size), (np.arange(cols.size), cols)),
                                     shape=(cols.size, lp.n_vars))] * 1)
        left = None if time_limit is None else time_limit - (time.perf_counter() - t0)
        if left is not None and left <= 0:
            db.info["tighten_time_limit_hit"] = True
            break
        up = lp.maximize(c, time_limit=left)
        dn = -up if symmetric else -lp.maximize(-c, time_limit=left)
        old_w = float(np.sum(db.d_hi - db.d_lo))
        n = net.n_in
        db.d_lo = np.maximum(db.d_lo, dn[:n])
        db.d_hi = np.maximum(np.minimum(db.d_hi, up[:n]), db.d_lo)
        pos = n
        for i in (hidden if full else []):
            r = np.flatnonzero(net.relu[i])
            db.dz_lo[i][r] = np.maximum(db.dz_lo[i][r], dn[pos:pos + r.size])
            db.dz_hi[i][r] = np.maximum(np.minimum(db.dz_hi[i][r], up[pos:pos + r.size]),
                                        db.dz_lo[i][r])
            pos += r.size
        # propagate the tighter input differences forward (intersecting, never loosening)
        fwd = interval_diff_bounds(net, bx, by, db.d_lo, db.d_hi)
        for i in range(net.n_layers):
            db.dz_lo[i] = np.maximum(db.dz_lo[i], fwd.dz_lo[i])
            db.dz_hi[i] = np.maximum(np.minimum(db.dz_hi[i], fwd.dz_hi[i]), db.dz_lo[i])
        new_w = float(np.sum(db.d_hi - db.d_lo))
        db.info["tighten_rounds"] = rnd + 1
        if log:
            log(f"difference tightening round {rnd + 1}: max |d| <= "
                f"{max(np.max(db.d_hi), -np.min(db.d_lo)):.3g}")
        if max(np.max(db.d_hi), -np.min(db.d_lo)) <= stop_at:
            break
        if old_w - new_w <= min_gain * old_w:
            if full or not hidden_targets:
                break
            stalled = True
        else:
            stalled = False
    db.info["tighten_seconds"] = time.perf_counter() - t0
    if time_limit is not None and db.info["tighten_seconds"] > time_limit:
        db.info["tighten_time_limit_hit"] = True   # some LPs fell back to their dual bound
    return db
