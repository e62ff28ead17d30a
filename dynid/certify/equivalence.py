"""epsilon-equivalence of two ReLUNets: the certified maximum of ||f1(x) - f2(x)||_p over a box.

Both networks are encoded on one shared input. Two formulations:

- ``method="naive"`` (the baseline): interval-arithmetic big-M on both networks, a binary for
  every ReLU unit, nothing linking the two copies except the shared input.
- ``method="ours"``: CROWN bounds on each network (stable units get no binary) and, when the
  two networks have the same layer shapes (e.g. a network and its pruned copy, before
  ``simplify``), bounds on the *difference* of corresponding units, layer by layer: an
  interval propagation of ``z1 - z2 = W1 (h1 - h2) + (W1 - W2) h2 + (b1 - b2)`` (both
  factorisations, intersected) and CROWN on the difference network ``z1_k(x) - z2_k(x)`` built
  as one ReLUNet. These bounds (a) tighten each network's own unit bounds (``z2 = z1 - dz``),
  so more units become stable, and (b) are added to the MIP as rows ``dl <= z1 - z2 <= du``
  and ``h1 - h2`` likewise, which make the LP relaxation of structurally similar networks
  tight. For networks of different shapes, CROWN on ``difference(f1, f2)`` bounds the output.

For L-inf and L1 with at most ``SPLIT_MAX_DIM`` inputs, "ours" is instead a branch and bound
over the input box: CROWN on the difference network (identical units of f1 and f2 merged, so
untouched units cancel) bounds every cell, best cell first, and cells with few unstable units
are closed exactly by small MILPs (see :func:`_solve_split`); the whole-box MIP below is used
for L2 and for many inputs.

The L-inf norm is solved as 2 n_out MILPs ``max +-(f1_j - f2_j)`` (recorded in ``info``);
"ours" orders them by their CROWN bound, starts from the best sampled point, skips directions
whose bound is below the best checked value and adds that value as a cutoff row. L1 is one
MILP with sign binaries; L2 one nonconvex MIQP (max ||d||^2, Gurobi NonConvex or SCIP).

Every reported value is the float64 deviation at the witness (a forward pass of both
networks); the certified maximum deviation is the solver's best bound, padded.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from dynid.errors import ConfigError, ShapeError, parse_norm
from dynid.relunet import ReLUNet, check_box, difference
from dynid.results import Certificate, Status, verdict

METHODS = ("ours", "naive")
# objective padding for solver tolerances (feasibility ~1e-6 on rows scaled by the weights)
ABS_TOL = 1e-6
REL_TOL = 1e-6
# input splitting pays off in low input dimension (surrogates of 2-6 state ODEs)
SPLIT_MAX_DIM = 6
# a cell with at most this many unstable units is solved exactly by a MILP
LEAF_UNSTABLE = 3
# a whole problem with at most this many unstable units is one MILP (no splitting)
ROOT_MIP = 24


def deviation(f1: ReLUNet, f2: ReLUNet, x, norm="inf") -> np.ndarray:
    """Float64 ``||f1(x) - f2(x)||_p`` at the points ``x`` (shape (..., n_in))."""
    p = parse_norm(norm)
    d = f1.forward(x) - f2.forward(x)
    return np.linalg.norm(d, ord=p, axis=-1)


def same_shape(f1: ReLUNet, f2: ReLUNet) -> bool:
    """Whether the two networks have the same layer widths and ReLU masks (unit i of layer k
    of f1 corresponds to unit i of layer k of f2)."""
    return (f1.widths == f2.widths
            and all(np.array_equal(a, b) for a, b in zip(f1.relu, f2.relu)))


def _truncate(net: ReLUNet, k: int) -> ReLUNet:
    """Layers 0..k of ``net`` with the pre-activations of layer k as output."""
    return ReLUNet(net.weights[:k + 1], net.biases[:k + 1],
                   list(net.relu[:k]) + [np.zeros(net.weights[k].shape[0], bool)])


def _imul(w, lo, hi):
    """Interval of W v for v in [lo, hi] and the magnitude of its terms (for padding)."""
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    mag = np.abs(w) @ np.maximum(np.abs(lo), np.abs(hi))
    return w @ mid - np.abs(w) @ rad, w @ mid + np.abs(w) @ rad, mag


@dataclass
class DiffBounds:
    """Bounds on ``z1_k - z2_k`` and ``h1_k - h2_k`` for every layer k (same-shape networks)."""

    dz_lo: list
    dz_hi: list
    dh_lo: list
    dh_hi: list


def difference_bounds(f1: ReLUNet, f2: ReLUNet, b1, b2, lo, hi, *, crown: bool = True):
    """Bounds on the differences of corresponding units of two same-shape networks.

    Tightens ``b1`` and ``b2`` (Bounds, modified in place) with ``z2 = z1 - dz`` and returns a
    :class:`DiffBounds`. All intervals are padded outward (sound in float64).

    Example
    -------
    >>> import numpy as np
    >>> from dynid.bounds import crown_bounds
    >>> f = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[1.0, 1.0]])],
    ...             [np.zeros(2), np.zeros(1)])
    >>> d = difference_bounds(f, f, crown_bounds(f, [-1.], [1.]), crown_bounds(f, [-1.], [1.]),
    ...                       [-1.], [1.])
    >>> float(d.dz_hi[-1][0]) < 1e-6
    True
    """
    from dynid.bounds import Bounds, crown_output, pad_interval

    if not same_shape(f1, f2):
        raise ShapeError("difference_bounds needs two networks with the same layer shapes")
    dz_lo, dz_hi, dh_lo, dh_hi = [], [], [], []
    dh_prev_lo = dh_prev_hi = np.zeros(f1.n_in)
    h1_lo, h1_hi = np.asarray(lo, float), np.asarray(hi, float)
    h2_lo, h2_hi = h1_lo, h1_hi
    for k in range(f1.n_layers):
        w1, w2 = f1.weights[k], f2.weights[k]
        db = f1.biases[k] - f2.biases[k]
        dw = w1 - w2
        # z1 - z2 = W1 dh + dW h2 + db   and   = W2 dh + dW h1 + db
        a_lo, a_hi, a_mag = _imul(w1, dh_prev_lo, dh_prev_hi)
        c_lo, c_hi, c_mag = _imul(dw, h2_lo, h2_hi)
        lo_a, hi_a = pad_interval(a_lo + c_lo + db, a_hi + c_hi + db, a_mag + c_mag + np.abs(db))
        a_lo, a_hi, a_mag = _imul(w2, dh_prev_lo, dh_prev_hi)
        c_lo, c_hi, c_mag = _imul(dw, h1_lo, h1_hi)
        lo_b, hi_b = pad_interval(a_lo + c_lo + db, a_hi + c_hi + db, a_mag + c_mag + np.abs(db))
        zl, zu = np.maximum(lo_a, lo_b), np.minimum(hi_a, hi_b)
        # the individual bounds also bound the difference
        zl = np.maximum(zl, b1.lower[k] - b2.upper[k])
        zu = np.minimum(zu, b1.upper[k] - b2.lower[k])
        if crown and k > 0:
            dnet = difference(_truncate(f1, k), _truncate(f2, k))
            hb = Bounds([np.concatenate([b1.lower[i], b2.lower[i]]) for i in range(k)] + [zl],
                        [np.concatenate([b1.upper[i], b2.upper[i]]) for i in range(k)] + [zu],
                        np.asarray(lo, float), np.asarray(hi, float), list(dnet.relu), "diff")
            cl, cu = crown_output(dnet, lo, hi, np.eye(dnet.n_out), bounds=hb)
            zl, zu = np.maximum(zl, cl), np.minimum(zu, cu)
        zu = np.maximum(zu, zl)  # both valid: an empty interval is rounding only
        # tighten each network's own bounds: z2 = z1 - dz, z1 = z2 + dz
        l1, u1, l2, u2 = b1.lower[k], b1.upper[k], b2.lower[k], b2.upper[k]
        nl2, nu2 = pad_interval(l1 - zu, u1 - zl)
        nl1, nu1 = pad_interval(l2 + zl, u2 + zu)
        b2.lower[k], b2.upper[k] = np.maximum(l2, nl2), np.maximum(np.minimum(u2, nu2), np.maximum(l2, nl2))
        b1.lower[k], b1.upper[k] = np.maximum(l1, nl1), np.maximum(np.minimum(u1, nu1), np.maximum(l1, nl1))
        # post-activation differences: relu is monotone and 1-Lipschitz
        m = f1.relu[k]
        p1_lo, p1_hi = b1.post_bounds(k)
        p2_lo, p2_hi = b2.post_bounds(k)
        both_active = m & (b1.lower[k] >= 0) & (b2.lower[k] >= 0)
        hl = np.where(m, np.maximum(np.minimum(zl, 0.0), p1_lo - p2_hi), zl)
        hu = np.where(m, np.minimum(np.maximum(zu, 0.0), p1_hi - p2_lo), zu)
        hl = np.where(both_active, zl, hl)
        hu = np.where(both_active, zu, hu)
        hl, hu = pad_interval(hl, np.maximum(hu, hl))
        dz_lo.append(zl), dz_hi.append(zu), dh_lo.append(hl), dh_hi.append(hu)
        dh_prev_lo, dh_prev_hi = hl, hu
        h1_lo, h1_hi, h2_lo, h2_hi = p1_lo, p1_hi, p2_lo, p2_hi
    return DiffBounds(dz_lo, dz_hi, dh_lo, dh_hi)


def _pair_rows(model, a, b, lo, hi) -> None:
    """Rows lo <= x[a] - x[b] <= hi (skipped where a == b or the interval is infinite)."""
    import scipy.sparse as sp

    keep = (a != b) & np.isfinite(lo) & np.isfinite(hi)
    if not keep.any():
        return
    k = int(keep.sum())
    eye = sp.identity(k, format="csr")
    model.add_rows(np.concatenate([a[keep], b[keep]]), sp.hstack([eye, -eye], format="csr"),
                   lo[keep], hi[keep])


@dataclass
class _Built:
    model: object
    x: np.ndarray
    d: np.ndarray           # variables d_j = out1_j - out2_j
    d_lo: np.ndarray
    d_hi: np.ndarray
    binaries: int
    copies: tuple = ()      # ((net, bounds), ...) of the encoded networks


def build_shared_input(f1: ReLUNet, f2: ReLUNet, lo, hi, method: str = "ours") -> _Built:
    """Encode f1 and f2 on one shared input x in [lo, hi] and add d = f1(x) - f2(x).

    Returns the model, the input and difference variable indices and bounds on d.
    """
    from dynid.bounds import crown_bounds, crown_output, interval_bounds
    from dynid.certify.encode import encode_relunet
    from dynid.milp import SparseModel

    model = SparseModel("equivalence")
    if method == "naive":
        b1, b2 = interval_bounds(f1, lo, hi), interval_bounds(f2, lo, hi)
        e1 = encode_relunet(model, f1, b1, method="naive")
        e2 = encode_relunet(model, f2, b2, e1.x, method="naive")
        d_lo = b1.output_lo - b2.output_hi
        d_hi = b1.output_hi - b2.output_lo
        diff = None
    else:
        b1, b2 = crown_bounds(f1, lo, hi), crown_bounds(f2, lo, hi)
        diff = None
        if same_shape(f1, f2):
            diff = difference_bounds(f1, f2, b1, b2, lo, hi)
            d_lo, d_hi = diff.dh_lo[-1], diff.dh_hi[-1]
        else:
            d_lo, d_hi = crown_output(difference(f1, f2), lo, hi, np.eye(f1.n_out))
        e1 = encode_relunet(model, f1, b1, method="bigm")
        e2 = encode_relunet(model, f2, b2, e1.x, method="bigm")
        if diff is not None:
            for k in range(f1.n_layers):
                _pair_rows(model, e1.z[k], e2.z[k], diff.dz_lo[k], diff.dz_hi[k])
                if f1.relu[k].any():
                    _pair_rows(model, e1.h[k], e2.h[k], diff.dh_lo[k], diff.dh_hi[k])
    n = f1.n_out
    d = model.add_vars(n, d_lo, d_hi, "C")
    import scipy.sparse as sp

    eye = sp.identity(n, format="csr")
    model.add_rows(np.concatenate([d, e1.out, e2.out]), sp.hstack([eye, -eye, eye], format="csr"),
                   np.zeros(n), np.zeros(n))
    return _Built(model, e1.x, d, np.asarray(d_lo, float), np.asarray(d_hi, float),
                  e1.n_binaries + e2.n_binaries, ((f1, b1), (f2, b2)))


def _remaining(deadline):
    if deadline is None:
        return None
    return max(deadline - time.perf_counter(), 0.01)


def _witness(built: _Built, res, lo, hi):
    if res.x is None:
        return None
    x = np.asarray(res.x, dtype=np.float64)[built.x]
    return np.clip(x, lo, hi)


def equivalence(f1: ReLUNet, f2: ReLUNet, lo, hi, norm="inf", method: str = "ours",
                solver: str = "auto", time_limit: float | None = None, *,
                eps: float | None = None, threads: int | None = None, mip_gap: float = 1e-4,
                samples: int = 2000, seed: int = 0, log=None) -> Certificate:
    """Certified maximum deviation ``max_{x in [lo, hi]} ||f1(x) - f2(x)||_p``.

    Parameters
    ----------
    f1, f2 : networks with the same input and output sizes.
    lo, hi : the box.
    norm : "inf", 1 or 2.
    method : "ours" (difference-network bounds, stable units linear) or "naive" (interval
        big-M on both networks).
    solver, time_limit, threads, mip_gap : passed to :func:`dynid.milp.solve`; the time limit
        covers the whole query.
    eps : optional tolerance: with it, the status says whether the networks are
        eps-equivalent (certified: bound <= eps; counterexample: a checked x with deviation
        > eps); without it, certified means the maximum is pinned down within the MIP gap.

    Returns
    -------
    Certificate with ``value`` = float64 deviation at the witness ``{"x": ...}``, ``bound`` =
    certified maximum deviation (the solver's best bound, padded), ``info`` with the
    formulation, the bounds on the difference and per-MIP statistics.

    Example
    -------
    >>> import numpy as np
    >>> from dynid.relunet import ReLUNet
    >>> f = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[1.0, 1.0]])],
    ...             [np.zeros(2), np.zeros(1)])                     # |x|
    >>> g = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[1.0, 0.5]])],
    ...             [np.zeros(2), np.zeros(1)])                     # max(x, 0) + max(-x, 0)/2
    >>> cert = equivalence(f, g, [-1.0], [1.0])
    >>> round(cert.value, 6), bool(cert.bound < 0.5 + 1e-4)
    (0.5, True)
    """
    t0 = time.perf_counter()
    p = parse_norm(norm)
    if method not in METHODS:
        raise ConfigError(f"equivalence method {method!r} is unknown: use 'ours' or 'naive'")
    if f1.n_in != f2.n_in or f1.n_out != f2.n_out:
        raise ShapeError(f"networks differ in shape: {f1.n_in} -> {f1.n_out} and "
                         f"{f2.n_in} -> {f2.n_out}; equivalence needs the same input and output")
    lo, hi = check_box(f1, lo, hi)
    deadline = None if time_limit is None else t0 + float(time_limit)
    opts = dict(solver=solver, threads=threads, mip_gap=mip_gap, log=log)

    # a checked starting point: the best of a few samples (only "ours" uses it)
    best_x, best_val = (lo + hi) / 2, float(deviation(f1, f2, (lo + hi) / 2, p))
    if method == "ours" and samples:
        rng = np.random.default_rng(seed)
        pts = lo + (hi - lo) * rng.random((int(samples), lo.size))
        vals = deviation(f1, f2, pts, p)
        if vals.max() > best_val:
            best_x, best_val = pts[int(np.argmax(vals))], float(vals.max())

    use_split = method == "ours" and p != 2.0 and f1.n_in <= SPLIT_MAX_DIM and \
        (p == math.inf or f1.n_out <= 8)
    if use_split:
        info = {"method": method, "norm": _norm_name(p), "same_shape": same_shape(f1, f2),
                "mips": [], "formulation": "input splitting: CROWN on the difference network "
                "per cell, big-M MILPs (stable units eliminated) on cells with few unstable "
                "units, max over " + ("+-e_j" if p == math.inf else "sign vectors s.d")}
        bound, status, solver_name, best_x, best_val, size = _solve_split(
            f1, f2, lo, hi, p, best_x, best_val, deadline, opts, info, mip_gap)
        return _finish(f1, f2, best_x, best_val, bound, status, solver_name, size, info, eps,
                       mip_gap, t0)
    built = build_shared_input(f1, f2, lo, hi, method)
    size = {**built.model.size(), "binaries_relu": built.binaries}
    info = {"method": method, "norm": _norm_name(p), "diff_lo": built.d_lo,
            "diff_hi": built.d_hi, "same_shape": same_shape(f1, f2), "mips": []}
    if p == math.inf:
        bound, status, solver_name, best_x, best_val = _solve_linf(
            f1, f2, built, lo, hi, method, best_x, best_val, deadline, opts, info)
        info["formulation"] = f"2*n_out = {2 * f1.n_out} MILPs max +-(f1_j - f2_j)"
    else:
        bound, status, solver_name, best_x, best_val = _solve_l1_l2(
            f1, f2, built, lo, hi, p, best_x, best_val, deadline, opts, info)
        if p == 2.0:
            bound, status, solver_name = _l2_linear_bound(
                f1, f2, lo, hi, method, best_x, deadline, opts, info, bound, status,
                solver_name)
    return _finish(f1, f2, best_x, best_val, bound, status, solver_name, size, info, eps,
                   mip_gap, t0)


def _finish(f1, f2, best_x, best_val, bound, status, solver_name, size, info, eps, mip_gap, t0):
    bound = max(bound, best_val)
    gap = bound - best_val
    solved = status == "optimal"
    info["solver_status"] = status   # "time_limit": a clock stopped it (said by the stages)
    if eps is not None:
        st = verdict(bound, eps, best_val > eps)     # bound >= best_val: never both
        info["eps"] = float(eps)
    else:
        if info.get("norm") == "2":
            # the MIQP bounds ||d||^2: its absolute gap is what the solver closes (sqrt
            # magnifies a gap of 1e-7 near zero to 3e-4)
            closed = bound ** 2 - best_val ** 2 <= mip_gap * max(1.0, bound ** 2) + 10 * ABS_TOL
        else:
            closed = gap <= mip_gap * max(1.0, abs(bound)) + 10 * ABS_TOL
        st = Status.CERTIFIED if solved and closed else Status.UNKNOWN
    return Certificate("equivalence", st, best_val, bound, gap, {"x": best_x},
                       solver_name, time.perf_counter() - t0, size, info)


def merge_duplicate_units(net: ReLUNet) -> ReLUNet:
    """The same map with identical hidden units merged (same incoming row, bias and kind):
    their outgoing columns are added. In a difference network f1 - f2 the units that pruning
    left untouched appear twice; merging them lets their contributions cancel exactly, so
    CROWN and the MILPs see only the units that really differ. Then ``simplify`` drops units
    whose outgoing weights cancelled to zero."""
    ws = [np.array(w) for w in net.weights]
    bs = [np.array(b) for b in net.biases]
    ms = [np.array(m) for m in net.relu]
    for i in range(len(ws) - 1):
        key = np.hstack([ws[i], bs[i][:, None], ms[i][:, None].astype(float)])
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        if first.size == key.shape[0]:
            continue
        out = np.zeros((ws[i + 1].shape[0], first.size))
        np.add.at(out.T, inverse, ws[i + 1].T)
        ws[i], bs[i], ms[i] = ws[i][first], bs[i][first], ms[i][first]
        ws[i + 1] = out
    return ReLUNet(ws, bs, ms, net.meta).simplify()


def _directions(n: int, p: float) -> np.ndarray:
    """Rows c with ||d||_p = max_c c.d: +-e_j for L-inf, all sign vectors for L1."""
    if math.isinf(p):
        return np.vstack([np.eye(n), -np.eye(n)])
    import itertools

    return np.array(list(itertools.product([1.0, -1.0], repeat=n)))


MAX_DEPTH = 60
# open cells split per round; their children share one batched CROWN pass
EXPAND_BATCH = 16


def _solve_split(f1, f2, lo, hi, p, best_x, best_val, deadline, opts, info, mip_gap):
    """Branch and bound over the input box: CROWN bounds of c.(f1 - f2) on each cell (one
    ReLUNet for the difference), best-first; a cell with few unstable units is closed by
    small exact MILPs. The bound is the largest bound of any open or closed cell."""
    import heapq

    from dynid.bounds import crown_bounds_many, crown_output_many
    from dynid.certify.encode import encode_relunet, encoding_sensitivity, objective_scale
    from dynid.milp import SparseModel, padded_bound, solve, stop_if_interrupted

    dnet = merge_duplicate_units(difference(f1, f2))
    C = _directions(f1.n_out, p)
    width = np.where(hi > lo, hi - lo, 1.0)
    stats = {"cells": 0, "mips": 0, "variables": 0, "binaries": 0, "constraints": 0,
             "binaries_total": 0}
    solvers, status = set(), "optimal"

    def bound_cells(boxes):
        """CROWN over several cells in one batched pass: [(upper bounds per direction, b)]."""
        stats["cells"] += len(boxes)
        LO, HI = np.array([c[0] for c in boxes]), np.array([c[1] for c in boxes])
        bs = crown_bounds_many(dnet, LO, HI)
        _, up = crown_output_many(dnet, LO, HI, C, bounds=bs)
        return list(zip(up, bs))

    def tol():
        return mip_gap * abs(best_val) + ABS_TOL

    ups, b = bound_cells([(lo, hi)])[0]
    heap = [(-float(ups.max()), 0, lo, hi, ups, b, False, 0)]
    count = 1
    done = False
    while heap and not done:
        if deadline is not None and time.perf_counter() > deadline:
            status = "time_limit"
            break
        # take up to EXPAND_BATCH open cells, best first; their children are bounded together
        batch = []
        while heap and len(batch) < EXPAND_BATCH:
            entry = heapq.heappop(heap)
            if entry[6] or -entry[0] <= best_val + tol():
                heapq.heappush(heap, entry)    # closed or dominated: nothing better is open
                break
            batch.append(entry)
        if not batch:
            break
        kids, parents = [], []
        for n_done, entry in enumerate(batch):
            negub, _, cl, ch, ups, b, closed, depth = entry
            if status != "optimal" or (deadline is not None and time.perf_counter() > deadline):
                for e in batch[n_done:]:       # unprocessed cells go back untouched
                    heapq.heappush(heap, e)
                if status == "optimal":
                    status = "time_limit"
                done = True
                break
            xc = (cl + ch) / 2
            v = float(deviation(f1, f2, xc, p))
            if v > best_val:
                best_x, best_val = xc, v
            rel = (ch - cl) / width
            small = b.n_unstable <= LEAF_UNSTABLE or (depth == 0 and b.n_unstable <= ROOT_MIP)
            if not (small or depth >= MAX_DEPTH or rel.max() < 1e-9):
                k = int(np.argmax(rel))
                mid = (cl[k] + ch[k]) / 2
                kids += [(cl, np.where(np.arange(cl.size) == k, mid, ch)),
                         (np.where(np.arange(cl.size) == k, mid, cl), ch)]
                parents += [entry, entry]
                continue
            leaf = 0.0
            for r in np.flatnonzero(ups > best_val + tol()):
                m = SparseModel("equivalence-cell")
                enc = encode_relunet(m, dnet, b, method="bigm")
                sc = objective_scale(dnet, C[r])   # multipliers about 1 (absolute tolerances)
                m.set_objective(enc.out, C[r] / sc, sense="max")
                m.set_start(enc.x, xc)
                res = solve(m, time_limit=_remaining(deadline), tolerances="tight", **opts)
                stop_if_interrupted(res)
                solvers.add(res.solver)
                sz = m.size()
                stats["mips"] += 1
                stats["binaries_total"] += sz["binaries"]
                for key in ("variables", "binaries", "constraints"):
                    stats[key] = max(stats[key], sz[key])
                if res.status == "optimal" and res.bound is not None and math.isfinite(res.bound):
                    rb = min(sc * padded_bound(m, res, encoding_sensitivity(dnet, b, C[r] / sc)),
                             float(ups[r]))
                else:
                    rb = float(ups[r])
                    if res.status in ("time_limit", "interrupted"):
                        status = res.status
                    elif res.status != "infeasible":
                        # a solver failure: the cell keeps its CROWN bound (sound, maybe loose)
                        info.setdefault("messages", []).append(res.message)
                if res.x is not None:
                    x = np.clip(np.asarray(res.x, dtype=np.float64)[enc.x], cl, ch)
                    v = float(deviation(f1, f2, x, p))
                    if v > best_val:
                        best_x, best_val = x, v
                leaf = max(leaf, rb)
            # directions not solved were below best + tol: their bound still counts
            rest = ups[ups <= best_val + tol()]
            leaf = max(leaf, float(rest.max()) if rest.size else 0.0)
            heapq.heappush(heap, (-min(leaf, -negub), count, cl, ch, ups, b, True, depth))
            count += 1
        if kids:
            for (a, z), (cu, cb), par in zip(kids, bound_cells(kids), parents):
                heapq.heappush(heap, (-min(float(cu.max()), -par[0]), count, a, z, cu, cb,
                                      False, par[7] + 1))
                count += 1
    bound = max(best_val, max((-e[0] for e in heap), default=best_val))
    info["split"] = dict(stats)
    size = {"variables": stats["variables"], "binaries": stats["binaries"],
            "constraints": stats["constraints"], "cells": stats["cells"], "mips": stats["mips"],
            "binaries_total": stats["binaries_total"]}
    return bound, status, "+".join(sorted(solvers)) or "crown", best_x, best_val, size


def _norm_name(p: float) -> str:
    return "inf" if math.isinf(p) else str(int(p))


def _shared_sensitivity(built, model, c_out) -> float:
    """Multiplier bound of the shared-input model for an objective ``c_out @ d``: both
    networks' rows (path sensitivities) plus every row weighted by |c|_inf (the coupling and
    difference rows, whose multipliers the networks do not bound)."""
    from dynid.certify.encode import encoding_sensitivity
    from dynid.milp.tolerances import row_scales

    c_out = np.abs(np.asarray(c_out, float))
    s = sum(encoding_sensitivity(f, b, c_out) for f, b in built.copies)
    return s + float(np.max(c_out)) * float(np.sum(1.0 + row_scales(model)))


def _solve_linf(f1, f2, built, lo, hi, method, best_x, best_val, deadline, opts, info):
    from dynid.milp import padded_bound, solve, stop_if_interrupted

    n = f1.n_out
    dirs = [(j, s) for j in range(n) for s in (1.0, -1.0)]
    ub = {(j, s): (built.d_hi[j] if s > 0 else -built.d_lo[j]) for j, s in dirs}
    if method == "ours":
        dirs.sort(key=lambda js: -ub[js])
    bound, statuses, solvers = 0.0, [], set()
    model = built.model
    for j, s in dirs:
        rec = {"output": j, "sign": s, "prebound": float(ub[(j, s)])}
        if method == "ours" and ub[(j, s)] <= best_val:
            rec.update(skipped=True, bound=float(ub[(j, s)]))
            info["mips"].append(rec)
            bound = max(bound, float(ub[(j, s)]))
            continue
        model.set_objective([built.d[j]], [s], sense="max")
        cut_row = None
        if method == "ours":
            model.clear_start()
            model.set_start(built.x, best_x)
        if method == "ours" and best_val > 0:
            # cutoff: only better points than the checked one matter for the maximum
            cut_row = best_val
            m2 = _with_cutoff(model, built.d[j], s, best_val)
        else:
            m2 = model
        res = solve(m2, time_limit=_remaining(deadline), tolerances="tight", **opts)
        stop_if_interrupted(res)
        solvers.add(res.solver)
        rec.update(status=res.status, seconds=res.seconds, solver=res.solver)
        if res.status == "infeasible" and cut_row is not None:
            dir_bound = cut_row
        elif res.status in ("optimal", "time_limit", "interrupted") and res.bound is not None \
                and math.isfinite(res.bound):
            e = np.zeros(n)
            e[j] = s
            dir_bound = min(padded_bound(m2, res, _shared_sensitivity(built, m2, e)),
                            float(ub[(j, s)]))
        else:
            dir_bound = float(ub[(j, s)])
            if res.status not in ("time_limit", "interrupted"):
                rec["message"] = res.message
        if res.status not in ("optimal", "infeasible"):
            statuses.append(res.status)
        x = _witness(built, res, lo, hi)
        if x is not None:
            v = float(deviation(f1, f2, x, math.inf))
            if v > best_val:
                best_x, best_val = x, v
        rec["bound"] = dir_bound
        info["mips"].append(rec)
        bound = max(bound, dir_bound)
        if res.status == "interrupted":
            break
    status = "optimal" if not statuses else statuses[0]
    return bound, status, "+".join(sorted(solvers)) or "crown", best_x, best_val


def _l2_linear_bound(f1, f2, lo, hi, method, best_x, deadline, opts, info, miqp_bound,
                     miqp_status, miqp_solver):
    """The certified L2 bound, from linear MILPs only: ||d||_2^2 <= ||d||_inf ||d||_1.

    A nonconvex MIQP's best bound is not covered by the weak-duality pad of
    :mod:`dynid.milp.tolerances` (spatial branching has tolerances of its own): the property
    suite found Gurobi's "optimal" bound of max ||d||_2^2 below a sampled value (by 6e-9 on
    8e-4). So the MIQP only searches (its witness counts, re-checked in float64), and the bound
    comes from the padded L-inf and L1 MILPs. With one output it is exact (|d| three ways);
    with more it can be looser than the MIQP by up to n_out^(1/4)."""
    info["miqp_bound_not_used"] = float(miqp_bound)
    statuses = [miqp_status]
    solvers = {miqp_solver}
    b_inf, st, sv, _, _ = _solve_linf(
        f1, f2, build_shared_input(f1, f2, lo, hi, method), lo, hi, method, best_x,
        float(deviation(f1, f2, best_x, math.inf)), deadline, opts, info)
    statuses.append(st)
    solvers.add(sv)
    b_1, st, sv, _, _ = _solve_l1_l2(
        f1, f2, build_shared_input(f1, f2, lo, hi, method), lo, hi, 1.0, best_x,
        float(deviation(f1, f2, best_x, 1.0)), deadline, opts, info)
    statuses.append(st)
    solvers.add(sv)
    # rounded up: sqrt and the product are correctly rounded, two ulps cover them
    bound = math.sqrt(max(b_inf, 0.0) * max(b_1, 0.0)) * (1.0 + 4.0 * np.finfo(float).eps)
    bad = [x for x in statuses if x != "optimal"]
    info["formulation"] = ("nonconvex MIQP max ||d||_2^2 for the search; bound sqrt(L-inf "
                           "bound x L1 bound) from padded MILPs")
    return bound, (bad[0] if bad else "optimal"), "+".join(sorted(solvers))


def _with_cutoff(model, d_idx, sign, value):
    """A copy of ``model`` with the row sign * d >= value (the shared model stays clean)."""
    import copy

    m2 = copy.deepcopy(model)
    m2.add_row([d_idx], [sign], lo=value)
    return m2


def _solve_l1_l2(f1, f2, built, lo, hi, p, best_x, best_val, deadline, opts, info):
    from dynid.milp import padded_bound, solve, stop_if_interrupted

    import scipy.sparse as sp

    model = built.model
    n = f1.n_out
    d_lo, d_hi = built.d_lo, built.d_hi
    if p == 1.0:
        # |d_j| = pos_j + neg_j with a sign binary: pos <= d_hi s, neg <= -d_lo (1 - s)
        pos = model.add_vars(n, 0.0, np.maximum(d_hi, 0.0))
        neg = model.add_vars(n, 0.0, np.maximum(-d_lo, 0.0))
        sgn = model.add_vars(n, 0.0, 1.0, "B")
        eye = sp.identity(n, format="csr")
        model.add_rows(np.concatenate([built.d, pos, neg]), sp.hstack([eye, -eye, eye]), 0.0, 0.0)
        model.add_rows(np.concatenate([pos, sgn]),
                       sp.hstack([eye, sp.diags(-np.maximum(d_hi, 0.0))]), hi=0.0)
        model.add_rows(np.concatenate([neg, sgn]),
                       sp.hstack([eye, sp.diags(np.maximum(-d_lo, 0.0))]),
                       hi=np.maximum(-d_lo, 0.0))
        model.set_objective(np.concatenate([pos, neg]), np.ones(2 * n), sense="max")
        info["formulation"] = "one MILP: sum |d_j| with sign binaries"
        prebound = float(np.maximum(np.abs(d_lo), np.abs(d_hi)).sum())
    else:
        model.set_objective(quad=(built.d, built.d, np.ones(n)), sense="max")
        info["formulation"] = "one nonconvex MIQP: max ||d||_2^2"
        prebound = float(np.sqrt((np.maximum(np.abs(d_lo), np.abs(d_hi)) ** 2).sum()))
    model.set_start(built.x, best_x)
    res = solve(model, time_limit=_remaining(deadline), tolerances="tight", **opts)
    stop_if_interrupted(res)
    rec = {"status": res.status, "seconds": res.seconds, "solver": res.solver,
           "prebound": prebound}
    if res.status in ("optimal", "time_limit", "interrupted") and res.bound is not None \
            and math.isfinite(res.bound):
        # the objective's gradient in d: ones (L1) or 2 d (L2, |d| <= its box)
        grad = np.ones(n) if p == 1.0 else 2.0 * np.maximum(np.abs(d_lo), np.abs(d_hi))
        raw = padded_bound(model, res, _shared_sensitivity(built, model, grad))
        bound = min(math.sqrt(max(raw, 0.0)) if p == 2.0 else raw, prebound)
    else:
        bound = prebound
        rec["message"] = res.message
    x = _witness(built, res, lo, hi)
    if x is not None:
        v = float(deviation(f1, f2, x, p))
        if v > best_val:
            best_x, best_val = x, v
    rec["bound"] = bound
    info["mips"].append(rec)
    return bound, res.status, res.solver, best_x, best_val


__all__ = ["equivalence", "deviation", "difference_bounds", "same_shape", "build_shared_input"]
