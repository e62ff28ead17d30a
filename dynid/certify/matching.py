"""Network matching: calibrate one network's output to another's, decide whether one network
is a function of another on a box, and check what pruning preserves.

- :func:`calibrate` fits the affine map T(v) = A v + b minimising max_x ||T(f1(x)) - f2(x)||_inf
  by a cutting-plane loop: an LP over a growing set of points gives T and a lower bound on the
  best achievable residual; an equivalence MIP (:func:`dynid.certify.equivalence.equivalence`
  on T∘f1 vs f2) gives the worst point of the current T and a certified upper bound; the loop
  stops when the two meet within ``tol``.
- :func:`is_function_of`: max ||f2(x) - f2(y)||_inf subject to f1(x) = f1(y), x, y in the box.
  Zero means a map g with f2 = g∘f1 exists on the box; a positive value comes with a checked
  pair (x, y) proving none does.
- :func:`transformation_invertible`: the same question with the roles swapped.
- :func:`preservation_report`: does a pruned network keep the invertibility verdict and the
  certified radii of the original?
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from dynid.errors import ConfigError, ShapeError
from dynid.relunet import ReLUNet, check_box, compose, linear, stack
from dynid.results import Certificate, Status, jsonable, verdict


@dataclass(frozen=True)
class CalibrationResult:
    """Outcome of :func:`calibrate`.

    ``A``, ``b``: the map T; ``residual``: certified max_x ||T(f1(x)) - f2(x)||_inf (the MIP's
    best bound for this T); ``lower_bound``: the LP value on the final point set (no affine T
    does better on those points, so none does better on the box); ``worst_x``: the checked
    worst point of T; ``status``: certified when residual - lower_bound <= tol.
    """

    A: np.ndarray
    b: np.ndarray
    residual: float
    lower_bound: float
    worst_value: float
    worst_x: np.ndarray
    iterations: int
    status: Status
    seconds: float
    solver: str
    history: list = field(default_factory=list)
    certificate: Certificate | None = None

    def transform(self) -> ReLUNet:
        """T as a one-layer ReLUNet (compose it with f1: ``compose(res.transform(), f1)``)."""
        return linear(self.A, self.b)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status.value
        d["certificate"] = self.certificate.to_dict() if self.certificate else None
        return jsonable(d)

    def summary(self) -> str:
        return (f"calibrate: {self.status.value}  residual={self.residual:.6g}  "
                f"lower_bound={self.lower_bound:.6g}  iterations={self.iterations}  "
                f"solver={self.solver}  {self.seconds:.2f}s")


def _fit_affine_linf(F1: np.ndarray, F2: np.ndarray):
    """min_{A, b, t} t  s.t.  |A F1_p + b - F2_p|_k <= t for every point p and output k (LP)."""
    from scipy.optimize import linprog
    import scipy.sparse as sp

    n, m1 = F1.shape
    m2 = F2.shape[1]
    nv = m2 * m1 + m2 + 1  # A (row-major), b, t
    rows = []
    rhs = []
    feats = np.hstack([F1, np.ones((n, 1))])  # (n, m1 + 1)
    for k in range(m2):
        # coefficient block of output k: columns of A[k, :] and b[k]
        cols = np.concatenate([np.arange(k * m1, (k + 1) * m1), [m2 * m1 + k]])
        blk = sp.lil_matrix((n, nv))
        blk[:, cols] = feats
        blk[:, nv - 1] = -1.0
        rows.append(blk.tocsr())            #  A f + b - t <= F2
        rhs.append(F2[:, k])
        neg = -blk.tocsr()
        neg[:, nv - 1] = -1.0
        rows.append(neg)                    # -A f - b - t <= -F2
        rhs.append(-F2[:, k])
    a_ub = sp.vstack(rows, format="csr")
    c = np.zeros(nv)
    c[-1] = 1.0
    res = linprog(c, A_ub=a_ub, b_ub=np.concatenate(rhs), bounds=[(None, None)] * nv,
                  method="highs")
    if res.status != 0:
        raise ConfigError(f"calibration LP failed ({res.message}): check that the networks' "
                          "outputs are finite on the box")
    x = res.x
    A = x[:m2 * m1].reshape(m2, m1)
    b = x[m2 * m1:m2 * m1 + m2]
    # the LP value itself can be off by its tolerance: recompute the max residual at the points
    t_points = float(np.abs(F1 @ A.T + b - F2).max())
    return A, b, float(res.fun), t_points


def calibrate(f1: ReLUNet, f2: ReLUNet, lo, hi, kind: str = "affine", *, tol: float = 1e-4,
              max_iter: int = 30, n_init: int | None = None, method: str = "ours",
              solver: str = "auto", time_limit: float | None = None, seed: int = 0,
              log=None) -> CalibrationResult:
    """Fit T(v) = A v + b minimising max_{x in box} ||T(f1(x)) - f2(x)||_inf, certified.

    Parameters
    ----------
    f1, f2 : networks with the same input size (outputs may differ in size).
    lo, hi : the box.
    kind : "affine" (the only kind implemented).
    tol : stop when certified residual - LP lower bound <= tol * max(1, residual).
    max_iter : cutting-plane iterations.
    n_init : initial random points (default 4 (m1 + 1) + 1).
    method, solver : passed to :func:`equivalence` for the worst-point MIP.
    time_limit : for the whole loop; hitting it gives status unknown.

    Example
    -------
    >>> import numpy as np
    >>> from dynid.relunet import ReLUNet, compose, linear
    >>> rng = np.random.default_rng(0)
    >>> f1 = ReLUNet([rng.normal(size=(4, 2)), rng.normal(size=(2, 4))], [np.zeros(4), np.zeros(2)])
    >>> f2 = compose(linear([[2.0, 0.0], [1.0, -1.0]], [0.5, 0.0]), f1)
    >>> res = calibrate(f1, f2, [-1, -1], [1, 1])
    >>> bool(res.residual < 1e-4), np.allclose(res.A, [[2, 0], [1, -1]], atol=1e-6)
    (True, True)
    """
    from dynid.certify.equivalence import equivalence

    t0 = time.perf_counter()
    if kind != "affine":
        raise ConfigError(f"calibration kind {kind!r} is not supported: use 'affine'")
    if f1.n_in != f2.n_in:
        raise ShapeError(f"both networks must take the same input: {f1.n_in} and {f2.n_in} "
                         "inputs")
    lo, hi = check_box(f1, lo, hi)
    rng = np.random.default_rng(seed)
    n0 = int(n_init or 4 * (f1.n_out + 1) + 1)
    pts = np.vstack([(lo + hi) / 2, lo + (hi - lo) * rng.random((n0, lo.size))])
    deadline = None if time_limit is None else t0 + float(time_limit)
    history, cert = [], None
    lower = 0.0
    A = b = None
    status = Status.UNKNOWN
    it = 0
    for it in range(1, int(max_iter) + 1):
        A, b, lp_val, t_pts = _fit_affine_linf(f1.forward(pts), f2.forward(pts))
        lower = max(lower, min(lp_val, t_pts))
        g = compose(linear(A, b), f1)
        remaining = None if deadline is None else max(deadline - time.perf_counter(), 0.05)
        cert = equivalence(g, f2, lo, hi, norm="inf", method=method, solver=solver,
                           time_limit=remaining)
        history.append({"iteration": it, "points": int(pts.shape[0]), "lp_value": lp_val,
                        "residual_bound": cert.bound, "worst_value": cert.value,
                        "status": cert.status.value})
        if log:
            log(f"calibrate iteration {it}: LP {lp_val:.6g}, certified residual {cert.bound:.6g}")
        if cert.certified and cert.bound - lower <= tol * max(1.0, cert.bound):
            status = Status.CERTIFIED
            break
        if not cert.certified or (deadline is not None and time.perf_counter() > deadline):
            break
        x = cert.witness["x"]
        if np.any(np.all(np.isclose(pts, x, atol=1e-12), axis=1)):
            break  # the worst point is already in the set: the LP cannot improve further
        pts = np.vstack([pts, x])
    return CalibrationResult(A, b, float(cert.bound), float(lower), float(cert.value),
                             np.asarray(cert.witness["x"]), it, status,
                             time.perf_counter() - t0, cert.solver, history, cert)


# ---------------------------------------------------------------------- functional dependence


def _polish(f1: ReLUNet, x, y, lo, hi):
    """Move y so that f1(y) = f1(x) more exactly (Newton steps on f1's affine piece)."""
    from dynid.certify.invertibility import polish_pair

    return polish_pair(f1, x, y, lo, hi)


def is_function_of(f1: ReLUNet, f2: ReLUNet, lo, hi, *, tol: float = 1e-5,
                   method: str = "ours", solver: str = "auto", time_limit: float | None = None,
                   mip_gap: float = 1e-4, log=None, query: str = "is_function_of") -> Certificate:
    """Is f2 a function of f1 on the box?  max ||f2(x) - f2(y)||_inf  s.t.  f1(x) = f1(y).

    ``certified`` (bound <= tol): a map g with f2 = g∘f1 exists on the box (equality of f1
    outputs is enforced up to the solver's feasibility tolerance, which only enlarges the
    feasible set, so the bound stays valid). ``counterexample``: a pair (x, y), polished and
    re-checked in float64, with f1(x) = f1(y) up to ``witness["f1_gap"]`` and
    ||f2(x) - f2(y)||_inf = value > tol. ``unknown`` otherwise (time limit, or a pair whose
    f1 values could not be matched to 1e-6 relative).

    Example
    -------
    >>> import numpy as np
    >>> from dynid.relunet import ReLUNet, linear
    >>> absx = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[1.0, 1.0]])],
    ...                [np.zeros(2), np.zeros(1)])
    >>> is_function_of(absx, linear([[1.0]]), [-1.0], [1.0]).status.value   # x is not g(|x|)
    'counterexample'
    """
    from dynid.bounds import crown_bounds, interval_bounds
    from dynid.certify.encode import encode_relunet
    from dynid.milp import SparseModel, padded_bound, solve, stop_if_interrupted

    t0 = time.perf_counter()
    if f1.n_in != f2.n_in:
        raise ShapeError(f"both networks must take the same input: {f1.n_in} and {f2.n_in}")
    if method not in ("ours", "naive"):
        raise ConfigError(f"method {method!r} is unknown: use 'ours' or 'naive'")
    lo, hi = check_box(f1, lo, hi)
    both = stack(f1, f2)
    if method == "naive":
        bnd, enc_method = interval_bounds(both, lo, hi), "naive"
    else:
        bnd, enc_method = crown_bounds(both, lo, hi), "bigm"
    model = SparseModel(query)
    ex = encode_relunet(model, both, bnd, method=enc_method)
    ey = encode_relunet(model, both, bnd, method=enc_method)
    m1 = f1.n_out
    for j in range(m1):  # f1(x) = f1(y)
        model.add_row([ex.out[j], ey.out[j]], [1.0, -1.0], 0.0, 0.0)
    deadline = None if time_limit is None else t0 + float(time_limit)
    best = (0.0, (lo + hi) / 2, (lo + hi) / 2, 0.0)
    bound, statuses, solvers, mips = 0.0, [], set(), []
    # the feasible set is symmetric in (x, y): max f2_j(x) - f2_j(y) covers both signs
    for j in range(f2.n_out):
        model.set_objective([ex.out[m1 + j], ey.out[m1 + j]], [1.0, -1.0], sense="max")
        remaining = None if deadline is None else max(deadline - time.perf_counter(), 0.05)
        res = solve(model, solver, time_limit=remaining, mip_gap=mip_gap, log=log,
                    tolerances="tight")
        stop_if_interrupted(res)
        solvers.add(res.solver)
        hi_j = float(bnd.output_hi[m1 + j] - bnd.output_lo[m1 + j])
        if res.status in ("optimal", "time_limit", "interrupted") and res.bound is not None \
                and math.isfinite(res.bound):
            bj = min(padded_bound(model, res), hi_j)   # padded for the tolerances
        else:
            bj = hi_j
        if res.status != "optimal":
            statuses.append(res.status)
        bound = max(bound, bj)
        mips.append({"output": j, "status": res.status, "bound": bj, "seconds": res.seconds})
        if res.x is not None:
            xv = np.clip(np.asarray(res.x)[ex.x], lo, hi)
            yv = np.clip(np.asarray(res.x)[ey.x], lo, hi)
            yv = _polish(f1, xv, yv, lo, hi)
            gap1 = float(np.abs(f1.forward(xv) - f1.forward(yv)).max())
            val = float(np.abs(f2.forward(xv) - f2.forward(yv)).max())
            if val > best[0]:
                best = (val, xv, yv, gap1)
    value, xv, yv, gap1 = best
    scale = max(1.0, float(np.abs(f1.forward(xv)).max()), float(np.abs(f1.forward(yv)).max()))
    bound = max(bound, value)
    status = verdict(bound, tol, value > tol and gap1 <= 1e-6 * scale)
    witness = {"x": xv, "y": yv, "f1_gap": gap1, "f2_gap": value}
    info = {"method": method, "formulation": f"{f2.n_out} MILPs max f2_j(x) - f2_j(y), "
            "f1(x) = f1(y), x, y in the box (symmetric: one sign suffices)",
            "tol": tol, "mips": mips, "solver_statuses": statuses}
    return Certificate(query, status, value, bound, bound - value, witness,
                       "+".join(sorted(solvers)), time.perf_counter() - t0, model.size(), info)


def transformation_invertible(f1: ReLUNet, f2: ReLUNet, lo, hi, **kw) -> Certificate:
    """Is the map g with f2 = g∘f1 invertible on f1(box)?  That holds exactly when f1 is a
    function of f2 on the box, i.e. :func:`is_function_of` with the roles swapped.

    Example
    -------
    >>> import numpy as np
    >>> from dynid.relunet import linear
    >>> f = linear([[1.0, 0.0], [0.0, 2.0]])
    >>> transformation_invertible(f, linear([[2.0, 0.0], [0.0, 1.0]]), [0, 0], [1, 1]).certified
    True
    """
    return is_function_of(f2, f1, lo, hi, query="transformation_invertible", **kw)


# ---------------------------------------------------------------------- preservation


def preservation_report(original: ReLUNet, pruned: ReLUNet, lo, hi, points=None, *,
                        norm="inf", mode: str = "preimage", solver: str = "auto",
                        time_limit: float | None = None, deviation: bool = True) -> dict:
    """Does ``pruned`` keep the invertibility verdict and the certified radii of ``original``?

    Returns a JSON-able dict: ``invertibility`` (both certificates and whether the verdicts
    agree), ``radii`` (per point: both certified radii as [lower, upper] and whether the
    intervals overlap), ``deviation`` (the equivalence certificate) and ``preserved`` (both
    checks hold).

    Example
    -------
    >>> import numpy as np
    >>> from dynid.relunet import linear
    >>> rep = preservation_report(linear(np.eye(2)), linear(0.9 * np.eye(2)), [0, 0], [1, 1],
    ...                           deviation=False)
    >>> rep["invertibility"]["same_verdict"]
    True
    """
    from dynid.certify.equivalence import equivalence
    from dynid.certify.invertibility import noninvertibility
    from dynid.certify.radius import certified_radius

    lo, hi = check_box(original, lo, hi)
    inv_o = noninvertibility(original, lo, hi, norm=norm, solver=solver, time_limit=time_limit)
    inv_p = noninvertibility(pruned, lo, hi, norm=norm, solver=solver, time_limit=time_limit)
    decided = inv_o.status is not Status.UNKNOWN and inv_p.status is not Status.UNKNOWN
    same = bool(decided and inv_o.status == inv_p.status)
    out = {"invertibility": {"original": inv_o.to_dict(), "pruned": inv_p.to_dict(),
                             "same_verdict": same, "decided": decided}, "radii": []}
    radii_ok = True
    for c in [] if points is None else np.atleast_2d(np.asarray(points, dtype=np.float64)):
        ro = certified_radius(original, c, mode=mode, norm=norm, solver=solver,
                              time_limit=time_limit)
        rp = certified_radius(pruned, c, mode=mode, norm=norm, solver=solver,
                              time_limit=time_limit)
        overlap = bool(max(ro.value, rp.value) <= min(ro.bound, rp.bound) + 1e-9)
        radii_ok &= overlap
        out["radii"].append({"point": c, "original": [ro.value, ro.bound],
                             "pruned": [rp.value, rp.bound], "same": overlap})
    if deviation:
        out["deviation"] = equivalence(original, pruned, lo, hi, norm=norm, solver=solver,
                                       time_limit=time_limit).to_dict()
    out["preserved"] = bool(same and radii_ok)
    return jsonable(out)


__all__ = ["calibrate", "CalibrationResult", "is_function_of", "transformation_invertible",
           "preservation_report"]
