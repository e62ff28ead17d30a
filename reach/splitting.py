"""Operator splitting (two-block ADMM, after DeepSplit) for the triangle LP, with dual bounds.

The LP of :mod:`reach.relaxation` is split into operators, each with closed-form projections:
the input box, every affine layer ``z_i = W_i h_{i-1} + b_i`` (its graph) and every
elementwise layer ``(z_i, h_i)`` (identity / stable ReLU: a segment; unstable ReLU: the
triangle). Consensus ("node") variables tie the copies of each operator's input and output
together. ADMM alternates an averaging node step, projections of every operator, and scaled
dual updates, batched over many objective vectors (batch dimension first), in torch.

Iterates are not bounds. What is returned is a Lagrangian dual bound: with the consensus
constraints dualised by the current multipliers ``nu = rho * u``, the Lagrangian separates into
linear minimisations over boxes (node variables, which we restrict to their known valid boxes),
over the input box, over the affine graphs (whose input is restricted to its valid box, so
the minimum is finite), and over segments / triangles. Each has a closed form; their sum,
evaluated in float64 and padded for rounding, is a valid bound on the LP optimum for ANY
multipliers, hence after any number of iterations.

Example
-------
>>> import numpy as np
>>> from dynid.relunet import ReLUNet
>>> from dynid.bounds import interval_bounds
>>> net = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[1.0, 1.0]])],
...               [np.zeros(2), np.zeros(1)])          # x -> |x|
>>> b = interval_bounds(net, [-1.0], [1.0])
>>> res = SplittingSolver(net, [-1.0], [1.0], b, dtype="float64").solve(np.eye(1), tol=1e-6)
>>> bool(res.bound[0] >= 1.0 - 1e-9 and res.gap[0] <= 1e-4)
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from dynid.bounds.core import ABS_PAD, REL_PAD
from dynid.errors import ConfigError, ShapeError
from dynid.relunet import ReLUNet, check_box
from reach.relaxation import check_bounds, unit_kinds

_EPS64 = float(np.finfo(np.float64).eps)
_KEYS = ("P", "Z", "Yb", "Ain", "Aout", "Ein", "Eout", "Ub", "UAin", "UAout", "UEin", "UEout")


@dataclass(frozen=True)
class SplitResult:
    """Outcome of :meth:`SplittingSolver.solve` for a batch of objective rows.

    ``bound``: valid float64 bounds (upper for max, lower for min) on the LP optimum;
    ``primal``: objective of a feasible point of the relaxation (so the LP optimum lies between
    the two); ``gap = |bound - primal|``; ``iterations`` per row; ``converged`` per row (gap
    within tolerance); ``state``: iterates to warm-start a later solve.
    """

    bound: np.ndarray
    primal: np.ndarray
    gap: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    state: dict
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"bound": self.bound.tolist(), "primal": self.primal.tolist(),
                "gap": self.gap.tolist(), "iterations": self.iterations.tolist(),
                "converged": self.converged.tolist(), "seconds": self.seconds}


def _dtype(dtype) -> torch.dtype:
    if dtype in (torch.float32, "float32", np.float32):
        return torch.float32
    if dtype in (torch.float64, "float64", np.float64, float):
        return torch.float64
    raise ConfigError(f"dtype {dtype!r} is not supported by the splitting solver: use float32 "
                      "or float64")


def project_elementwise(a, h, lo, up, diag, inactive, unstable):
    """Euclidean projection of the points (a, h) onto each unit's set, elementwise.

    ``diag`` units (identity, stable active): the segment {(t, t): t in [lo, up]};
    ``inactive``: {(t, 0): t in [lo, up]}; ``unstable``: the triangle with vertices
    (lo, 0), (0, 0), (up, up). Tensors broadcast as (batch, n) against (n,).

    Example
    -------
    >>> t = torch.tensor
    >>> a, h = project_elementwise(t([[2.0]]), t([[-1.0]]), t([-1.0]), t([1.0]),
    ...                            t([False]), t([False]), t([True]))
    >>> [round(float(a), 3), round(float(h), 3)]     # nearest point of the triangle
    [0.5, 0.5]
    """
    zero = torch.zeros((), dtype=a.dtype, device=a.device)
    # segments h = a on [lo, up] and h = 0 on [lo, up]
    t_diag = torch.minimum(torch.maximum((a + h) / 2, lo), up)
    a_in = torch.minimum(torch.maximum(a, lo), up)
    out_a = torch.where(diag, t_diag, a_in)
    out_h = torch.where(diag, t_diag, zero)
    if bool(unstable.any()):
        width = torch.where(unstable, up - lo, torch.ones_like(up))
        lo_u = torch.where(unstable, lo, -torch.ones_like(lo))
        up_u = torch.where(unstable, up, torch.ones_like(up))
        slope = up_u / width
        inside = (h >= 0) & (h >= a) & (h <= slope * (a - lo_u))
        # edge 1: h = 0, a in [lo, 0]
        a1 = torch.minimum(torch.maximum(a, lo_u), zero)
        d1 = (a - a1) ** 2 + h ** 2
        # edge 2: h = a, a in [0, up]
        t2 = torch.minimum(torch.maximum((a + h) / 2, zero), up_u)
        d2 = (a - t2) ** 2 + (h - t2) ** 2
        # edge 3: the chord from (lo, 0) to (up, up)
        s3 = ((a - lo_u) * width + h * up_u) / (width ** 2 + up_u ** 2)
        s3 = torch.clamp(s3, 0.0, 1.0)
        a3, h3 = lo_u + s3 * width, s3 * up_u
        d3 = (a - a3) ** 2 + (h - h3) ** 2
        best_a = torch.where(d1 <= d2, a1, t2)
        best_h = torch.where(d1 <= d2, zero, t2)
        best_d = torch.minimum(d1, d2)
        best_a = torch.where(d3 < best_d, a3, best_a)
        best_h = torch.where(d3 < best_d, h3, best_h)
        ua = torch.where(inside, a, best_a)
        uh = torch.where(inside, h, best_h)
        out_a = torch.where(unstable, ua, out_a)
        out_h = torch.where(unstable, uh, out_h)
    return out_a, out_h


def _cholesky(k):
    """Cholesky factor of the SPD matrix ``k = I + W'W``; when rounding has made it
    numerically indefinite, of ``k`` plus a tiny multiple of I. An inexact factor only makes
    the ADMM projection inexact: the dual bound is valid for any multipliers, so soundness
    never depends on it."""
    jitter = 0.0
    scale = float(torch.diagonal(k).abs().max()) if k.numel() else 1.0
    for _ in range(6):
        factor, info = torch.linalg.cholesky_ex(
            k + jitter * torch.eye(k.shape[0], dtype=k.dtype, device=k.device))
        if int(info) == 0:
            return factor
        jitter = 1e-14 * scale if jitter == 0.0 else jitter * 100
    vals, vecs = torch.linalg.eigh(k)
    return torch.linalg.cholesky((vecs * vals.clamp_min(1.0)) @ vecs.T)


class _Affine:
    """Projection onto the graph {(y, z): z = W y + b} with a float64 Cholesky factor of
    I + W^T W or I + W W^T (the smaller), cast to the iteration dtype."""

    def __init__(self, w: np.ndarray, b: np.ndarray, device, dtype):
        n_out, n_in = w.shape
        self.dual_form = n_out < n_in
        w64 = torch.tensor(w, dtype=torch.float64)
        k = (torch.eye(n_out, dtype=torch.float64) + w64 @ w64.T if self.dual_form
             else torch.eye(n_in, dtype=torch.float64) + w64.T @ w64)
        self.chol = _cholesky(k).to(device=device, dtype=dtype)
        self.w = w64.to(device=device, dtype=dtype)
        self.b = torch.tensor(b, dtype=dtype, device=device)

    def _solve(self, r):   # rows of r times K^{-1} (K symmetric)
        return torch.cholesky_solve(r.T, self.chol).T

    def project(self, y_hat, z_hat):
        if self.dual_form:
            s = self._solve(z_hat - self.b - y_hat @ self.w.T)
            y = y_hat + s @ self.w
        else:
            y = self._solve(y_hat + (z_hat - self.b) @ self.w)
        return y, y @ self.w.T + self.b


class SplittingSolver:
    """Batched two-block ADMM for the triangle LP relaxation of a ReLUNet over a box.

    Parameters
    ----------
    net : ReLUNet
    lo, hi : input box.
    bounds : pre-activation bounds of every layer, valid over the box (a
        :class:`dynid.bounds.Bounds` or anything with ``lower``/``upper`` lists).
    device : "cpu" or "cuda" (iterations run there; the dual bound is evaluated in float64 on
        the same device).
    dtype : float32 (default, fast) or float64 for the iterations.
    rho : initial penalty (per row, adapted by residual balancing when ``adaptive``).
    alpha : over-relaxation in (0, 2).

    Example
    -------
    >>> # s = SplittingSolver(net, lo, hi, crown_bounds(net, lo, hi))
    >>> # r = s.solve(np.vstack([np.eye(2), -np.eye(2)]), tol=1e-3); r.bound, r.gap
    """

    def __init__(self, net: ReLUNet, lo, hi, bounds, *, device="cpu", dtype=torch.float32,
                 rho: float = 0.1, alpha: float = 1.6, adaptive: bool = True):
        lo, hi = check_box(net, lo, hi)
        check_bounds(net, bounds)
        if not 0.0 < alpha < 2.0:
            raise ConfigError(f"over-relaxation alpha must lie in (0, 2), got {alpha}")
        if rho <= 0:
            raise ConfigError(f"rho must be positive, got {rho}")
        self.net = net
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was requested but no CUDA device is available; "
                              "use device='cpu'")
        self.dtype = _dtype(dtype)
        self.rho0, self.alpha, self.adaptive = float(rho), float(alpha), bool(adaptive)
        dev, dt = self.device, self.dtype
        L = net.n_layers
        self.L = L
        # valid boxes of every node (float64, for the dual) -- P[i] is the input of layer i
        self.p_lo64, self.p_hi64 = [lo], [hi]
        self.z_lo64, self.z_hi64 = [], []
        self.kinds = []
        for i in range(L):
            l = np.asarray(bounds.lower[i], dtype=np.float64)
            u = np.asarray(bounds.upper[i], dtype=np.float64)
            k = unit_kinds(bounds, i, net.relu[i])
            self.kinds.append(k)
            self.z_lo64.append(l)
            self.z_hi64.append(u)
            m = net.relu[i]
            self.p_lo64.append(np.where(m, np.maximum(l, 0.0), l))
            self.p_hi64.append(np.where(m, np.maximum(u, 0.0), u))
        t = lambda a, d=dt: torch.tensor(np.asarray(a), dtype=d, device=dev)  # noqa: E731
        # Diagonal scaling (why: node boxes differ by orders of magnitude across layers and
        # ADMM converges far faster on an equilibrated problem). Layer i's z and h share the
        # scale d[i + 1] (d[0] for the input), so a triangle stays a triangle after scaling.
        # The dual bound is evaluated in the original coordinates with the original weights,
        # so the scaling only affects speed, never soundness.
        self.d = [self._scale(self.p_lo64[0], self.p_hi64[0])]
        self.d += [self._scale(l, u) for l, u in zip(self.z_lo64, self.z_hi64)]
        # a global floor too: a layer whose units are all (nearly) constant (zero weight rows,
        # a box 1e-9 wide) must not blow its incoming weights up by 1e9 (I + W'W would lose
        # its identity part in float64 and the Cholesky factorisation fail)
        top = max(float(d.max(initial=0.0)) for d in self.d)
        self.d = [np.maximum(d, 1e-6 * max(top, 1e-300)) for d in self.d]
        self.affine = [_Affine(w * self.d[i][None, :] / self.d[i + 1][:, None],
                               b / self.d[i + 1], dev, dt)
                       for i, (w, b) in enumerate(zip(net.weights, net.biases))]
        self.p_lo = [t(a / d) for a, d in zip(self.p_lo64, self.d)]
        self.p_hi = [t(a / d) for a, d in zip(self.p_hi64, self.d)]
        self.z_lo = [t(a / d) for a, d in zip(self.z_lo64, self.d[1:])]
        self.z_hi = [t(a / d) for a, d in zip(self.z_hi64, self.d[1:])]
        self.d64 = [torch.tensor(d, dtype=torch.float64, device=dev) for d in self.d]
        self.diag = [t(k["identity"] | k["active"], torch.bool) for k in self.kinds]
        self.inact = [t(k["inactive"], torch.bool) for k in self.kinds]
        self.unst = [t(k["unstable"], torch.bool) for k in self.kinds]
        # float64 copies for the dual bound and the feasible primal point
        f = lambda a: torch.tensor(np.asarray(a), dtype=torch.float64, device=dev)  # noqa: E731
        self.w64 = [f(w) for w in net.weights]
        self.absw64 = [w.abs() for w in self.w64]
        self.b64 = [f(b) for b in net.biases]
        self.P_lo64, self.P_hi64 = [f(a) for a in self.p_lo64], [f(a) for a in self.p_hi64]
        self.Z_lo64, self.Z_hi64 = [f(a) for a in self.z_lo64], [f(a) for a in self.z_hi64]
        self.diag64 = [d.clone() for d in self.diag]
        self.inact64 = [d.clone() for d in self.inact]
        self.unst64 = [d.clone() for d in self.unst]
        self.n_max = max(net.widths)
        self.relu64 = [f(m).bool() for m in net.relu]

    @staticmethod
    def _scale(lo, hi) -> np.ndarray:
        """Per-unit scale: the width of the unit's box, kept away from zero."""
        w = np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)
        floor = 1e-3 * max(float(w.max(initial=0.0)), 1e-9)
        return np.maximum(w, floor)

    def _unscaled_nu(self, st: dict) -> dict:
        """Multipliers nu = rho * u of the copies, in the original coordinates (float64)."""
        f = (st["rho"][0] * st["cs"][0]).to(torch.float64)
        d = self.d64
        L = self.L
        return {"Ub": [f * st["Ub"][0].to(torch.float64) / d[0]],
                "UAin": [f * st["UAin"][i].to(torch.float64) / d[i] for i in range(L)],
                "UAout": [f * st["UAout"][i].to(torch.float64) / d[i + 1] for i in range(L)],
                "UEin": [f * st["UEin"][i].to(torch.float64) / d[i + 1] for i in range(L)],
                "UEout": [f * st["UEout"][i].to(torch.float64) / d[i + 1] for i in range(L)]}

    # ------------------------------------------------------------------ state
    def _init_state(self, batch: int) -> dict:
        """Start from the exact network at the box centre (clipped into the node boxes)."""
        dev, dt = self.device, self.dtype
        x = ((self.p_lo64[0] + self.p_hi64[0]) / 2)[None, :].repeat(batch, 0)
        zs = self.net.preactivations(x)
        hs = self.net.activations(x)
        t = lambda a: torch.tensor(a, dtype=dt, device=dev)  # noqa: E731
        P = [torch.minimum(torch.maximum(t(h / d), lo), hi)
             for h, d, lo, hi in zip(hs, self.d, self.p_lo, self.p_hi)]
        Z = [torch.minimum(torch.maximum(t(z / d), lo), hi)
             for z, d, lo, hi in zip(zs, self.d[1:], self.z_lo, self.z_hi)]
        st = {"P": P, "Z": Z, "Yb": [P[0].clone()],
              "Ain": [p.clone() for p in P[:-1]], "Aout": [z.clone() for z in Z],
              "Ein": [z.clone() for z in Z], "Eout": [p.clone() for p in P[1:]]}
        for k in ("Yb", "Ain", "Aout", "Ein", "Eout"):   # scaled duals start at zero
            st["U" + k.lstrip("Y")] = [torch.zeros_like(v) for v in st[k]]
        st["rho"] = [torch.full((batch, 1), self.rho0, dtype=dt, device=dev)]
        return st

    def _warm(self, st: dict, warm: dict | None, batch: int) -> dict:
        """Copy every tensor of ``warm`` whose shape matches (e.g. same net and batch)."""
        if warm is None:
            return st
        for key, vals in st.items():
            old = warm.get(key)
            if old is None:
                continue
            for j, v in enumerate(vals):
                if j < len(old) and tuple(old[j].shape) == tuple(v.shape):
                    vals[j] = old[j].to(device=self.device, dtype=self.dtype).clone()
        return st

    # ------------------------------------------------------------------ one ADMM iteration
    def _iterate(self, st: dict, c: torch.Tensor, with_residuals: bool):
        L, a = self.L, self.alpha
        P, Z = st["P"], st["Z"]
        Yb, Ain, Aout, Ein, Eout = st["Yb"], st["Ain"], st["Aout"], st["Ein"], st["Eout"]
        Ub, UAin, UAout, UEin, UEout = st["Ub"], st["UAin"], st["UAout"], st["UEin"], st["UEout"]
        rho = st["rho"][0]
        # node step: average the copies (minus their scaled duals); the output node also
        # takes the gradient step of the objective
        P[0] = ((Yb[0] - Ub[0]) + (Ain[0] - UAin[0])) / 2
        for i in range(1, L):
            P[i] = ((Eout[i - 1] - UEout[i - 1]) + (Ain[i] - UAin[i])) / 2
        P[L] = Eout[L - 1] - UEout[L - 1] - c / rho
        for i in range(L):
            Z[i] = ((Aout[i] - UAout[i]) + (Ein[i] - UEin[i])) / 2
        # operator step on the over-relaxed targets; the scaled dual becomes target - new copy
        rel = lambda x, y, u: a * x + (1 - a) * y + u  # noqa: E731
        old = None
        if with_residuals:
            old = {"Yb": Yb[0], "Ain": list(Ain), "Aout": list(Aout), "Ein": list(Ein),
                   "Eout": list(Eout)}
        tb = rel(P[0], Yb[0], Ub[0])
        Yb[0] = torch.minimum(torch.maximum(tb, self.p_lo[0]), self.p_hi[0])
        Ub[0] = tb - Yb[0]
        for i in range(L):
            ti, to = rel(P[i], Ain[i], UAin[i]), rel(Z[i], Aout[i], UAout[i])
            Ain[i], Aout[i] = self.affine[i].project(ti, to)
            UAin[i], UAout[i] = ti - Ain[i], to - Aout[i]
            ti, to = rel(Z[i], Ein[i], UEin[i]), rel(P[i + 1], Eout[i], UEout[i])
            Ein[i], Eout[i] = project_elementwise(ti, to, self.z_lo[i], self.z_hi[i],
                                                  self.diag[i], self.inact[i], self.unst[i])
            UEin[i], UEout[i] = ti - Ein[i], to - Eout[i]
        if not with_residuals:
            return None
        # primal residual: node minus copy; dual residual: rho * change of the copies per node
        sq = lambda x: (x * x).sum(dim=1)  # noqa: E731
        r2 = sq(P[0] - Yb[0]) + sq(P[0] - Ain[0]) + sq(P[L] - Eout[L - 1])
        s2 = sq((Yb[0] - old["Yb"]) + (Ain[0] - old["Ain"][0])) + sq(Eout[L - 1] - old["Eout"][L - 1])
        xn = sq(P[0]) * 2 + sq(P[L])
        yn = sq(Yb[0]) + sq(Ain[0]) + sq(Eout[L - 1])
        un = sq(Ub[0]) + sq(UAin[0]) + sq(UEout[L - 1])
        for i in range(L):
            r2 = r2 + sq(Z[i] - Aout[i]) + sq(Z[i] - Ein[i])
            s2 = s2 + sq((Aout[i] - old["Aout"][i]) + (Ein[i] - old["Ein"][i]))
            xn, yn = xn + 2 * sq(Z[i]), yn + sq(Aout[i]) + sq(Ein[i])
            un = un + sq(UAout[i]) + sq(UEin[i])
            if i >= 1:
                r2 = r2 + sq(P[i] - Eout[i - 1]) + sq(P[i] - Ain[i])
                s2 = s2 + sq((Eout[i - 1] - old["Eout"][i - 1]) + (Ain[i] - old["Ain"][i]))
                xn, yn = xn + 2 * sq(P[i]), yn + sq(Eout[i - 1]) + sq(Ain[i])
                un = un + sq(UEout[i - 1]) + sq(UAin[i])
        r = r2.sqrt()
        s = rho[:, 0] * s2.sqrt()
        return r, s, torch.maximum(xn, yn).sqrt(), rho[:, 0] * un.sqrt()

    def _adapt(self, st: dict, res) -> None:
        """Residual balancing (OSQP-style): rho *= sqrt(rel. primal / rel. dual residual),
        applied per row when it changes by more than 5x; scaled duals are rescaled."""
        r, s, xn, un = res
        tiny = torch.finfo(r.dtype).tiny ** 0.5
        ratio = torch.sqrt((r / (xn + tiny) + tiny) / (s / (un + tiny) + tiny))
        ratio = torch.where((ratio > 5) | (ratio < 0.2), ratio, torch.ones_like(ratio))
        rho = st["rho"][0]
        new = torch.clamp(rho * ratio[:, None], 1e-6, 1e6)
        f = rho / new
        st["rho"][0] = new
        for k in ("Ub", "UAin", "UAout", "UEin", "UEout"):
            st[k] = [u * f for u in st[k]]

    # ------------------------------------------------------------------ certificates
    def dual_bound(self, st: dict, c64: torch.Tensor) -> torch.Tensor:
        """Valid lower bound of min c^T F over the relaxation, for the multipliers in ``st``.

        Every term is min of a linear function over a box, a segment or a triangle (the affine
        graphs with their input restricted to its valid box), computed in float64; the total is
        padded down by a rounding margin proportional to the magnitude of the summed terms.
        """
        L = self.L
        nu = self._unscaled_nu(st)

        def box_min(g, lo, hi):  # min over x in [lo, hi] of g^T x, and its magnitude
            v = torch.minimum(g * lo, g * hi)
            return v.sum(dim=1), v.abs().sum(dim=1)

        total = torch.zeros(c64.shape[0], dtype=torch.float64, device=self.device)
        mag = torch.zeros_like(total)

        def add(pair):
            nonlocal total, mag
            total = total + pair[0]
            mag = mag + pair[1]

        # node variables restricted to their valid boxes
        add(box_min(nu["Ub"][0] + nu["UAin"][0], self.P_lo64[0], self.P_hi64[0]))
        for i in range(1, L):
            add(box_min(nu["UEout"][i - 1] + nu["UAin"][i], self.P_lo64[i], self.P_hi64[i]))
        add(box_min(nu["UEout"][L - 1] + c64, self.P_lo64[L], self.P_hi64[L]))
        for i in range(L):
            add(box_min(nu["UAout"][i] + nu["UEin"][i], self.Z_lo64[i], self.Z_hi64[i]))
        # input box operator
        add(box_min(-nu["Ub"][0], self.P_lo64[0], self.P_hi64[0]))
        for i in range(L):
            # affine graph with input in its box: min -(nu_in + W^T nu_out)^T y - nu_out^T b
            q = -(nu["UAin"][i] + nu["UAout"][i] @ self.w64[i])
            qmag = nu["UAin"][i].abs() + nu["UAout"][i].abs() @ self.absw64[i]
            v, _ = box_min(q, self.P_lo64[i], self.P_hi64[i])
            ymax = torch.maximum(self.P_lo64[i].abs(), self.P_hi64[i].abs())
            cb = nu["UAout"][i] @ self.b64[i]
            total = total + v - cb
            mag = mag + qmag @ ymax + nu["UAout"][i].abs() @ self.b64[i].abs()
            # elementwise sets: minimum over the vertices of each unit's segment / triangle
            na, nh = -nu["UEin"][i], -nu["UEout"][i]
            v, m = self._unit_set_min(i, na, nh)
            total = total + v
            mag = mag + m
        pad = ABS_PAD + max(REL_PAD, 4.0 * (self.n_max + 4 * L) * _EPS64) * mag
        return total - pad

    def _unit_set_min(self, i: int, na: torch.Tensor, nh: torch.Tensor):
        """min of na*z + nh*h over each unit's set of layer i (a segment for stable and identity
        units, the triangle for unstable ReLUs), summed over units, with its magnitude for the
        rounding pad. The minimum of a linear function sits at a vertex: (lo, h(lo)), (up, h(up)),
        and for an unstable unit also (0, 0)."""
        lo, up = self.Z_lo64[i], self.Z_hi64[i]
        h_lo = torch.where(self.diag64[i], lo, torch.zeros_like(lo))
        h_up = torch.where(self.inact64[i], torch.zeros_like(up), up)
        v1 = na * lo + nh * h_lo
        v2 = na * up + nh * h_up
        v = torch.minimum(v1, v2)
        v = torch.where(self.unst64[i], torch.minimum(v, torch.zeros_like(v)), v)
        return v.sum(dim=1), (v1.abs() + v2.abs()).sum(dim=1)

    def layer_dual_bound(self, lam: list, c64: torch.Tensor) -> torch.Tensor:
        """Valid lower bound of min c^T F from one multiplier vector per affine layer.

        Dualising only ``z_i = W_i h_{i-1} + b_i`` with ``lam[i]`` leaves, per unit, a linear
        minimisation over its segment / triangle (coefficient ``lam_i`` on z_i and
        ``-W_{i+1}^T lam_{i+1}`` (or c) on h_i) and a linear minimisation over the input box;
        each is exact at a vertex. Evaluated in float64 and padded for rounding.
        """
        L = self.L
        lo0, hi0 = self.P_lo64[0], self.P_hi64[0]
        g0 = -(lam[0] @ self.w64[0])
        v0 = torch.minimum(g0 * lo0, g0 * hi0)
        total = v0.sum(dim=1)
        mag = v0.abs().sum(dim=1) + (lam[0].abs() @ self.absw64[0]) @ torch.maximum(
            lo0.abs(), hi0.abs())
        for i in range(L):
            total = total - lam[i] @ self.b64[i]
            mag = mag + lam[i].abs() @ self.b64[i].abs()
            if i + 1 < L:
                nh = -(lam[i + 1] @ self.w64[i + 1])
                hmax = torch.maximum(self.P_lo64[i + 1].abs(), self.P_hi64[i + 1].abs())
                mag = mag + (lam[i + 1].abs() @ self.absw64[i + 1]) @ hmax
            else:
                nh = c64
            na = lam[i]
            v, m = self._unit_set_min(i, na, nh)
            total = total + v
            mag = mag + m
        pad = ABS_PAD + max(REL_PAD, 4.0 * (self.n_max + 4 * L) * _EPS64) * mag
        return total - pad

    def _slope_lams(self, alphas: list, c: torch.Tensor, w: list, b: list, lo: list,
                    up: list):
        """Layer multipliers of the CROWN form from lower-relaxation slopes ``alphas``.

        Going backward from the objective ``c`` (min form), a unit whose coefficient ``nh`` on
        its output is negative takes the chord slope, one with ``nh >= 0`` the slope ``alpha``
        in [0, 1]; identity / stable-active units take 1, inactive 0; ``lam_i = -nh * slope``.
        Returns the multipliers and the value of the Lagrangian at them (unpadded; in the dtype
        of ``c``), which :meth:`layer_dual_bound` re-evaluates soundly."""
        L = self.L
        lam = [None] * L
        nh = c
        val = torch.zeros(c.shape[0], dtype=c.dtype, device=c.device)
        for i in reversed(range(L)):
            unst = self.unst64[i]
            width = torch.where(unst, up[i] - lo[i], torch.ones_like(up[i]))
            chord = torch.where(unst, up[i] / width, torch.zeros_like(up[i]))
            a = alphas[i] if alphas[i] is not None else torch.zeros_like(nh)
            neg = nh < 0
            slope = torch.where(unst, torch.where(neg, chord, a),
                                self.diag64[i].to(c.dtype).expand_as(nh))
            lam[i] = -nh * slope
            # min over the unit's set: 0, except an unstable unit on its chord: -nh * s * lo
            val = val + torch.where(unst & neg, -nh * chord * lo[i], torch.zeros_like(nh)).sum(1)
            val = val - lam[i] @ b[i]
            nh = -(lam[i] @ w[i])
        val = val + torch.minimum(nh * lo[L], nh * up[L]).sum(1)
        return lam, val

    def polish_dual(self, c64: torch.Tensor, steps: int = 200, lr: float = 0.02,
                    check_every: int = 20) -> torch.Tensor:
        """Improve the dual bound by optimising the CROWN slopes of the unstable units.

        Projected Adam ascent on the Lagrangian over the layer multipliers of
        :meth:`_slope_lams` (the reduced dual of the triangle LP; its optimum is the LP
        optimum), run in the solver's dtype; every ``check_every`` steps and at the end the
        multipliers are re-evaluated by :meth:`layer_dual_bound` in float64 with the rounding
        pad. Returns the best such valid bound per row (min form). Any slopes give a valid
        bound, so the result is sound whatever ``steps`` and ``lr``.
        """
        dt = self.dtype
        w = [x.to(dt) for x in self.w64]
        b = [x.to(dt) for x in self.b64]
        # unit boxes of every layer, then the input box (read by _slope_lams as lo[L], up[L])
        lo = [x.to(dt) for x in self.Z_lo64] + [self.P_lo64[0].to(dt)]
        up = [x.to(dt) for x in self.Z_hi64] + [self.P_hi64[0].to(dt)]
        c = c64.to(dt)
        m = c.shape[0]
        alphas = []
        for i in range(self.L):
            if bool(self.unst64[i].any()):
                a0 = (self.Z_hi64[i] > -self.Z_lo64[i]).to(dt).expand(m, -1).clone()
                alphas.append(a0.requires_grad_(True))
            else:
                alphas.append(None)
        params = [a for a in alphas if a is not None]

        lo64, up64 = self.Z_lo64 + [self.P_lo64[0]], self.Z_hi64 + [self.P_hi64[0]]

        def valid():
            with torch.no_grad():
                a64 = [None if a is None else a.detach().to(torch.float64) for a in alphas]
                lam64, _ = self._slope_lams(a64, c64, self.w64, self.b64, lo64, up64)
                return self.layer_dual_bound(lam64, c64)

        best = valid()
        if not params or steps <= 0:
            return best
        opt = torch.optim.Adam(params, lr=lr)
        try:
            for k in range(1, steps + 1):
                opt.zero_grad()
                _, val = self._slope_lams(alphas, c, w, b, lo, up)
                (-val.sum()).backward()
                opt.step()
                with torch.no_grad():
                    for a in params:
                        a.clamp_(0.0, 1.0)
                if k % check_every == 0 or k == steps:
                    best = torch.maximum(best, valid())
        except KeyboardInterrupt:   # the best bound so far is valid: keep it
            pass
        return best

    def best_dual(self, st: dict, c64: torch.Tensor) -> torch.Tensor:
        """The best of several valid dual bounds built from the ADMM multipliers."""
        nu = self._unscaled_nu(st)
        aout, ein = nu["UAout"], [-v for v in nu["UEin"]]
        cands = [self.dual_bound(st, c64),
                 self.layer_dual_bound(aout, c64),
                 self.layer_dual_bound(ein, c64),
                 self.layer_dual_bound([(a + e) / 2 for a, e in zip(aout, ein)], c64)]
        self.last_candidates = torch.stack(cands)
        return torch.stack(cands).max(dim=0).values

    def primal_value(self, st: dict, c64: torch.Tensor) -> torch.Tensor:
        """Objective (min form) of a feasible point of the relaxation built from the iterate.

        The input copy is clipped into the box and pushed forward exactly; each unstable unit
        keeps its iterate value clipped into the triangle's slice at the computed z. Rows whose
        z leaves the bounds fall back to the exact network at that input (feasible whenever the
        bounds are valid).
        """
        x = torch.minimum(torch.maximum(st["Yb"][0].to(torch.float64) * self.d64[0],
                                        self.P_lo64[0]),
                          self.P_hi64[0])
        h, ok = x, torch.ones(x.shape[0], dtype=torch.bool, device=self.device)
        exact = x
        for i in range(self.L):
            z = h @ self.w64[i].T + self.b64[i]
            lo, up = self.Z_lo64[i], self.Z_hi64[i]
            tol = 1e-9 * (1 + z.abs())
            ok = ok & ((z >= lo - tol) & (z <= up + tol)).all(dim=1)
            z = torch.minimum(torch.maximum(z, lo), up)
            width = torch.where(self.unst64[i], up - lo, torch.ones_like(up))
            chord = up * (z - lo) / width
            cand = st["P"][i + 1].to(torch.float64) * self.d64[i + 1]
            hu = torch.minimum(torch.maximum(cand, torch.clamp(z, min=0.0)), chord)
            h = torch.where(self.diag64[i], z, torch.where(self.inact64[i],
                                                           torch.zeros_like(z), hu))
            ze = exact @ self.w64[i].T + self.b64[i]
            exact = torch.where(self.relu64[i], torch.clamp(ze, min=0.0), ze)
        relaxed = (h * c64).sum(dim=1)
        exact_v = (exact * c64).sum(dim=1)
        return torch.where(ok, torch.minimum(relaxed, exact_v), exact_v)

    # ------------------------------------------------------------------ driver
    def solve(self, C, sense: str = "max", max_iter: int = 5000, tol: float = 1e-4,
              atol: float = 1e-7, warm_start: dict | None = None, check_every: int = 20,
              polish_steps: int = 0, polish_lr: float = 0.02,
              log: Callable[[str], None] | None = None,
              progress: Callable[[int, int], None] | None = None) -> SplitResult:
        """Optimise ``C[j] @ F(x)`` over the relaxation for every row j at once.

        Parameters
        ----------
        C : (m, n_out) objective rows (the batch).
        sense : "max" (``bound`` is an upper bound) or "min" (a lower bound).
        max_iter : iteration cap per row.
        tol, atol : a row stops when ``gap <= atol * |c| + tol * max(|bound|, |primal|)``
            (gap between the certified dual bound and a feasible primal value).
        warm_start : ``state`` of an earlier result (same network and batch size).
        check_every : iterations between float64 dual evaluations / stopping checks.
        polish_steps, polish_lr : after the ADMM iterations, rows not yet within tolerance get
            ``polish_steps`` steps of :meth:`polish_dual` (slope optimisation of the layer
            dual); the better of the two valid bounds is kept. ``max_iter=0`` with polishing
            gives bounds without ADMM (the primal value is then that of the box centre).
        log, progress : callbacks (``progress(iteration, rows_left)``).

        Returns
        -------
        SplitResult. Interrupting (Ctrl-C) returns the best valid bounds found so far.
        """
        if sense not in ("max", "min"):
            raise ConfigError(f"sense must be 'max' or 'min', got {sense!r}")
        C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        if C.ndim != 2 or C.shape[1] != self.net.n_out:
            raise ShapeError(f"objective rows need {self.net.n_out} entries (one per output), "
                             f"got shape {C.shape}")
        if not np.all(np.isfinite(C)):
            raise ShapeError("objective rows contain NaN or inf")
        start = time.perf_counter()
        m = C.shape[0]
        sign = -1.0 if sense == "max" else 1.0        # internally: minimise sign * C x
        scale = np.linalg.norm(C, axis=1)
        scale = np.where(scale > 0, scale, 1.0)
        cmin64 = torch.tensor(sign * C / scale[:, None], dtype=torch.float64, device=self.device)
        st = self._warm(self._init_state(m), warm_start, m)
        c_sc = cmin64 * self.d64[self.L]           # the objective in scaled coordinates
        cs = c_sc.norm(dim=1, keepdim=True).clamp_min(1e-300)
        st["cs"] = [cs.to(self.dtype)]
        cmin_it = (c_sc / cs).to(self.dtype)
        best_d = self.best_dual(st, cmin64)          # nu = 0 at a cold start: the box bound
        best_p = self.primal_value(st, cmin64)
        iters = np.zeros(m, dtype=np.int64)
        done = np.zeros(m, dtype=bool)
        alive = torch.arange(m, device=self.device)
        final = {k: [None] * len(v) for k, v in st.items()}
        atol_n = atol / scale
        it = 0

        def retire(mask_np):
            """Move the rows of ``alive`` selected by mask out of the iteration."""
            nonlocal st, alive, cmin
            sel = torch.tensor(mask_np, device=self.device)
            idx = alive[sel].cpu()
            for k, vals in st.items():
                for j, v in enumerate(vals):
                    if final[k][j] is None:
                        final[k][j] = torch.zeros((m,) + tuple(v.shape[1:]), dtype=v.dtype)
                    final[k][j][idx] = v[sel].cpu()
            keep = ~sel
            st = {k: [v[keep] for v in vals] for k, vals in st.items()}
            alive = alive[keep]
            cmin = cmin[keep]

        cmin = cmin_it
        try:
            while alive.numel() > 0 and it < max_iter:
                check = (it + 1) % check_every == 0 or it + 1 == max_iter
                res = self._iterate(st, cmin, with_residuals=check and self.adaptive)
                it += 1
                if not check:
                    continue
                a_idx = alive
                d = self.best_dual(st, cmin64[a_idx])
                p = self.primal_value(st, cmin64[a_idx])
                best_d[a_idx] = torch.maximum(best_d[a_idx], d)
                best_p[a_idx] = torch.minimum(best_p[a_idx], p)
                a_np = a_idx.cpu().numpy()
                iters[a_np] = it
                gap = (best_p[a_idx] - best_d[a_idx]).cpu().numpy()
                size = np.maximum(np.abs(best_d[a_idx].cpu().numpy()),
                                  np.abs(best_p[a_idx].cpu().numpy()))
                fin = gap <= atol_n[a_np] + tol * size
                done[a_np[fin]] = True
                if self.adaptive and res is not None:
                    self._adapt(st, res)
                if fin.any() or it == max_iter:
                    retire(fin if it < max_iter else np.ones_like(fin))
                if progress is not None:
                    progress(it, int(alive.numel()))
                if log is not None and it % (check_every * 50) == 0:
                    log(f"iteration {it}: {int(alive.numel())} of {m} rows running, "
                        f"largest gap {gap.max():.3g}")
        except KeyboardInterrupt:
            if log is not None:
                log(f"interrupted at iteration {it}: returning the valid bounds found so far")
        if alive.numel() > 0:
            retire(np.ones(alive.numel(), dtype=bool))
        if polish_steps > 0 and not done.all():
            rows = torch.tensor(np.flatnonzero(~done), device=self.device)
            pol = self.polish_dual(cmin64[rows], polish_steps, polish_lr, check_every)
            best_d[rows] = torch.maximum(best_d[rows], pol)
            gap = (best_p - best_d).cpu().numpy()
            size = np.maximum(np.abs(best_d.cpu().numpy()), np.abs(best_p.cpu().numpy()))
            done = done | (gap <= atol_n + tol * size)
        d = best_d.cpu().numpy() * scale
        p = best_p.cpu().numpy() * scale
        bound, primal = sign * d, sign * p
        return SplitResult(bound=bound, primal=primal, gap=np.abs(bound - primal),
                           iterations=iters, converged=done, state=final,
                           seconds=time.perf_counter() - start)


__all__ = ["SplittingSolver", "SplitResult", "project_elementwise"]
