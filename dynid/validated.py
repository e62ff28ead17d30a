"""Validated step maps: the true discrete-time map of a System with rigorous enclosures.

For a certified model error the true map ``F(x, u)`` must be enclosed, not approximated.
:class:`TrueStepMap` writes it as an explicit map ``T`` (a CasADi SX expression) applied
``N`` times, plus a rigorous bound ``rho`` of ``|F - T|``:

- ``euler`` / ``rk4``: ``T`` is the map itself (N = 1, rho = 0), evaluated exactly in interval
  arithmetic (:mod:`dynid.intervals`), so float64 rounding is accounted for.
- ``flow`` (the exact flow over dt, inputs held constant): ``T`` is N substeps of the Taylor
  polynomial of order p of the solution (coefficients by automatic Taylor arithmetic), and
  ``rho`` bounds the truncation error of all N substeps: on each substep an a-priori
  enclosure E (a box with ``X + [0, h] f(E)`` inside E, so every solution from X stays in E
  over [0, h]) bounds the Lagrange remainder ``h^(p+1) |x_(p+1)(E)|`` and the logarithmic
  norm ``mu`` of ``df/dx`` over E; the errors add up as ``eps_(k+1) = exp(mu h) eps_k + tau_k``
  (Gronwall with the one-sided Lipschitz constant). N is chosen by doubling until rho is
  below a target. This is a validated integrator in its simplest form (boxes, no QR
  re-orthogonalisation): enough for steps of a few hundred substeps over small boxes.

On boxes the map gives the interval Jacobian of ``T`` (products of the substeps' interval
Jacobians over enclosures of the numerical iterates, which are tightened by the mean-value
form), and at points the enclosure of ``T(x)``.

Example
-------
>>> from dynid.systems import get_system
>>> F = TrueStepMap(get_system("linear", A=[[-1.0]]), 1.0, "flow")
>>> (lo, hi), jac, rho = F.enclose(np.array([[1.0]]), np.array([[1.0]]))
>>> bool(lo[0, 0] - rho[0, 0] <= np.exp(-1.0) <= hi[0, 0] + rho[0, 0])
True
"""

from __future__ import annotations

import numpy as np

from dynid.errors import ConfigError
from dynid.intervals import (IntervalFunction, iadd, imatmul, imatvec, imul, intersect, isub,
                             taylor_coefficients)

TAYLOR_ORDER = 8
MAX_SUBSTEPS = 1024


def rhs_function(system):
    """``f(x, u)`` of a system as a CasADi SX Function with the parameters substituted
    (inputs of size 0 for an autonomous system)."""
    import casadi as ca

    if not getattr(system, "has_casadi", False):
        raise ConfigError(f"system {system.name!r} has no CasADi equations (it was defined by a "
                          "Python function): a certified model error needs the equations; use "
                          "the empirical bound (method='empirical') instead")
    sym = system.casadi_rhs()
    if len(sym) == 4:                      # (x, u, p, expr): a system with inputs
        x, u, p, expr = sym
    else:
        x, p, expr = sym
        u = type(x).sym("u", 0)
    expr = ca.substitute(expr, p, ca.DM(system.param_vector())) if p.numel() else expr
    f = ca.Function(f"{system.name}_f", [x, u], [expr])
    if not f.is_a("SXFunction"):
        f = f.expand()
    return f


class TrueStepMap:
    """The true step map of ``system`` over ``dt`` by ``method`` (flow | euler | rk4), with
    rigorous enclosures (see the module docstring).

    Parameters
    ----------
    system : dynid.systems.System with CasADi equations
    dt : time step
    method : "flow", "euler" or "rk4"
    order : Taylor order p of the flow substeps
    substeps : number N of flow substeps (default: chosen by :meth:`choose_substeps`; 8 until
        then)
    """

    def __init__(self, system, dt: float, method: str = "flow", *, order: int = TAYLOR_ORDER,
                 substeps: int | None = None):
        import casadi as ca

        self.system = system
        from dynid.systems import _check_dt

        self.dt = _check_dt(dt)
        if method not in ("flow", "euler", "rk4"):
            raise ConfigError(f"map {method!r} is not one of flow, euler, rk4")
        self.method = method
        self.order = int(order)
        if self.order < 1:
            raise ConfigError(f"Taylor order must be >= 1, got {order}")
        f = rhs_function(system)
        self.n = f.nnz_in(0)
        self.m = f.nnz_in(1)
        x = ca.SX.sym("x", self.n)
        u = ca.SX.sym("u", self.m)
        fx = f(x, u)
        self._f = IntervalFunction(ca.Function("f", [x, u], [fx]))
        self._df = IntervalFunction(ca.Function("df", [x, u], [ca.jacobian(fx, x)]))
        if method == "flow":
            coefs, cx, cu = taylor_coefficients(f, self.order + 1)
            self._coefs, self._cx, self._cu = coefs, cx, cu
            self._rem = IntervalFunction(ca.Function("rem", [cx, cu], [coefs[-1]]))
            self.set_substeps(substeps or 8)
        else:
            if method == "euler":
                t1 = x + self.dt * fx
            else:
                k1 = fx
                k2 = f(x + 0.5 * self.dt * k1, u)
                k3 = f(x + 0.5 * self.dt * k2, u)
                k4 = f(x + self.dt * k3, u)
                t1 = x + (self.dt / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
            self._build(x, u, t1, 1)

    # ------------------------------------------------------------------ construction
    def _build(self, x, u, t1, substeps: int):
        import casadi as ca

        self.substeps = int(substeps)
        xu = ca.vertcat(x, u)
        self._t1 = IntervalFunction(ca.Function("t1", [x, u], [t1]))
        self._t1_jac = IntervalFunction(ca.Function("t1j", [x, u],
                                                    [t1, ca.jacobian(t1, xu)]))

    def set_substeps(self, substeps: int) -> None:
        """Use N flow substeps (rebuilds the Taylor substep map)."""
        if self.method != "flow":
            return
        n = int(substeps)
        if not 1 <= n <= MAX_SUBSTEPS:
            raise ConfigError(f"substeps must be in 1..{MAX_SUBSTEPS}, got {substeps}")
        h = self.dt / n
        t1 = sum((c * h ** k for k, c in enumerate(self._coefs[:-1])), 0 * self._cx)
        self._h = h
        self._build(self._cx, self._cu, t1, n)

    @property
    def description(self) -> str:
        if self.method == "flow":
            return (f"exact flow over dt={self.dt:g}: {self.substeps} Taylor substeps of order "
                    f"{self.order} with a validated remainder bound")
        return f"{self.method} map over dt={self.dt:g}, evaluated in interval arithmetic"

    # ------------------------------------------------------------------ evaluation
    def _split(self, Z_lo, Z_hi):
        Z_lo = np.atleast_2d(np.asarray(Z_lo, dtype=np.float64))
        Z_hi = np.atleast_2d(np.asarray(Z_hi, dtype=np.float64))
        n = self.n
        return (Z_lo[:, :n], Z_hi[:, :n]), (Z_lo[:, n:], Z_hi[:, n:])

    def values(self, Z) -> tuple[np.ndarray, np.ndarray]:
        """Enclosure ``(lo, hi)`` of ``T(z)`` at the points z = [x; u] (rows of Z), shape
        (B, n). For the flow, the true value lies within ``rho`` of it (:meth:`remainder`)."""
        (x_lo, x_hi), (u_lo, u_hi) = self._split(Z, Z)
        y = (x_lo, x_hi)
        for _ in range(self.substeps):
            lo, hi = self._t1([y[0], u_lo], [y[1], u_hi])
            y = (lo[0][:, :, 0], hi[0][:, :, 0])
        return y

    def enclose(self, LO, HI):
        """Everything the model-error bound needs on the boxes (rows of LO, HI over [x; u]):
        ``(value, jacobian, rho)`` where ``value = (lo, hi)`` (B, n) encloses ``T`` at the box
        centres, ``jacobian = (lo, hi)`` (B, n, n + m) encloses the Jacobian of ``T`` at every
        point of each box, and ``rho`` (B, n) bounds ``|F_true - T|`` on each box (zeros for
        euler/rk4; inf where no a-priori enclosure was found: the box is too large).

        The numerical iterates ``y_k(z)`` of the boxes are enclosed by the mean-value form
        ``y_k(z_c) + [J_k] (z - z_c)`` met with the natural interval extension, so the sets
        are not wrapped into ever larger boxes substep after substep; the true states lie
        within ``eps_k`` of them, which gives the boxes for the a-priori enclosures.
        """
        with np.errstate(all="ignore"):     # inf - inf etc. become unbounded intervals
            return self._enclose(LO, HI)

    def _enclose(self, LO, HI):
        LO = np.atleast_2d(np.asarray(LO, dtype=np.float64))
        HI = np.atleast_2d(np.asarray(HI, dtype=np.float64))
        (x_lo, x_hi), U = self._split(LO, HI)
        B, n, m = LO.shape[0], self.n, self.m
        Zc = 0.5 * (LO + HI)
        (c_lo, c_hi), Uc = self._split(Zc, Zc)
        dz = isub((LO, HI), (Zc, Zc))
        c, Y = (c_lo, c_hi), (x_lo, x_hi)
        J = (np.concatenate([np.broadcast_to(np.eye(n), (B, n, n)), np.zeros((B, n, m))], 2),) * 2
        flow = self.method == "flow"
        eps = np.zeros(B)
        found = np.ones(B, bool)
        for _ in range(self.substeps):
            if flow:
                eps, ok = self._remainder_step(Y, U, eps)
                found &= ok
            (t_lo, jt_lo), (t_hi, jt_hi) = self._t1_jac([Y[0], U[0]], [Y[1], U[1]])
            jy = (jt_lo[:, :, :n], jt_hi[:, :, :n])
            J = imatmul(jy, J)                 # d y_(k+1) / d[x; u] = Jy J + [0, Ju]
            if m:
                j_u = iadd((J[0][:, :, n:], J[1][:, :, n:]), (jt_lo[:, :, n:], jt_hi[:, :, n:]))
                J = (np.concatenate([J[0][:, :, :n], j_u[0]], 2),
                     np.concatenate([J[1][:, :, :n], j_u[1]], 2))
            lo, hi = self._t1([c[0], Uc[0]], [c[1], Uc[1]])
            c = (lo[0][:, :, 0], hi[0][:, :, 0])
            mv = iadd(c, imatvec(J, dz))
            Y = intersect((t_lo[:, :, 0], t_hi[:, :, 0]), mv)
            Y = (np.minimum(Y[0], Y[1]), np.maximum(Y[0], Y[1]))
        rho = np.where(found & np.isfinite(eps), eps, np.inf)
        return c, J, np.repeat(rho[:, None], n, axis=1)

    def jacobian(self, LO, HI) -> tuple[np.ndarray, np.ndarray]:
        """Interval enclosure (B, n, n + m) of the Jacobian of ``T`` with respect to [x; u] at
        every point of each box."""
        return self.enclose(LO, HI)[1]

    def remainder(self, LO, HI) -> np.ndarray:
        """Rigorous bound rho (B, n) of ``|F_true(z) - T(z)|`` for every z in each box."""
        return self.enclose(LO, HI)[2]

    # ------------------------------------------------------------------ flow remainder
    def _apriori(self, X, U, h, iters: int = 12):
        """Boxes E with X + [0, h] f(E) inside E (then every solution from X stays in E on
        [0, h]); returns (E, ok) where ok marks the boxes for which one was found."""
        zero_h = (np.zeros_like(X[0]), np.full_like(X[0], h))

        def step(E):
            lo, hi = self._f([E[0], U[0]], [E[1], U[1]])
            return iadd(X, imul(zero_h, (lo[0][:, :, 0], hi[0][:, :, 0])))

        E = step(X)
        ok = np.zeros(X[0].shape[0], bool)
        out = (np.full_like(X[0], -np.inf), np.full_like(X[0], np.inf))
        for _ in range(iters):
            w = E[1] - E[0]
            E = (E[0] - 0.1 * w - 1e-12 * (1 + np.abs(E[0])),
                 E[1] + 0.1 * w + 1e-12 * (1 + np.abs(E[1])))
            cand = step(E)
            inside = np.all((cand[0] >= E[0]) & (cand[1] <= E[1]), axis=1) & ~ok
            inside &= np.all(np.isfinite(cand[0]) & np.isfinite(cand[1]), axis=1)
            out[0][inside], out[1][inside] = cand[0][inside], cand[1][inside]
            ok |= inside
            if ok.all():
                break
            E = (np.minimum(E[0], cand[0]), np.maximum(E[1], cand[1]))
        return out, ok

    def _remainder_step(self, Y, U, eps):
        """One substep of the error recursion: from the enclosure Y of the numerical iterates
        and the error bound eps so far, ``eps' = exp(mu h) eps + tau`` (and which boxes got
        an a-priori enclosure)."""
        h = self._h
        Xg = (Y[0] - eps[:, None], Y[1] + eps[:, None])   # true and numerical states
        E, ok = self._apriori(Xg, U, h)
        E = (np.where(ok[:, None], E[0], Xg[0]), np.where(ok[:, None], E[1], Xg[1]))
        r_lo, r_hi = self._rem([E[0], U[0]], [E[1], U[1]])
        tau = np.maximum(np.abs(r_lo[0]), np.abs(r_hi[0]))[:, :, 0].max(axis=1)
        tau = tau * h ** (self.order + 1) * (1 + 1e-12)
        d_lo, d_hi = self._df([E[0], U[0]], [E[1], U[1]])
        mu = _lognorm_inf(d_lo[0], d_hi[0])
        with np.errstate(over="ignore", invalid="ignore"):
            eps = np.exp(mu * h) * (1 + 1e-12) * eps + tau
        return eps, ok

    def _first_guess(self, LO, HI) -> int:
        """A power of two N with h |df/dx| about 1/2 on the boxes (fewer trials than from 1)."""
        (x_lo, x_hi), U = self._split(LO, HI)
        with np.errstate(all="ignore"):
            d_lo, d_hi = self._df([x_lo, U[0]], [x_hi, U[1]])
        L = np.nanmax(np.maximum(np.abs(d_lo[0]), np.abs(d_hi[0])).sum(axis=2))
        if not np.isfinite(L) or L <= 0:
            return 1
        n = 2 ** max(0, int(np.ceil(np.log2(2 * L * self.dt))) - 1)
        return int(min(n, MAX_SUBSTEPS))

    def choose_substeps(self, LO, HI, target: float) -> float:
        """Double N (from 1) until ``max rho <= target`` over the boxes (or N reaches
        MAX_SUBSTEPS, then the N with the smallest rho); sets N and returns that rho. Probe
        with small boxes: N is a matter of the dynamics' time scale, large boxes are split."""
        if self.method != "flow":
            return 0.0
        best = (np.inf, None)
        n = self._first_guess(LO, HI)
        while n <= MAX_SUBSTEPS:
            self.set_substeps(n)
            rho = float(np.max(self.remainder(LO, HI)))
            if rho < best[0]:
                best = (rho, n)
            if rho <= target:
                return rho
            if np.isfinite(best[0]) and rho > 4 * best[0]:
                break              # rounding dominates: more substeps only hurt
            n *= 2
        if best[1] is None:
            raise ConfigError(f"system {self.system.name!r}: no enclosure of the flow over "
                              f"dt={self.dt:g} was found from this box even with "
                              f"{MAX_SUBSTEPS} substeps (the solution may blow up): shrink the "
                              "box or dt")
        self.set_substeps(best[1])
        return best[0]


def _lognorm_inf(lo, hi):
    """Upper bound of the inf-norm logarithmic norm max_i (a_ii + sum_{j != i} |a_ij|) over
    the interval matrices (B, n, n)."""
    n = lo.shape[1]
    mag = np.maximum(np.abs(lo), np.abs(hi))
    diag = np.einsum("bii->bi", hi)
    off = mag.sum(axis=2) - np.einsum("bii->bi", mag)
    val = diag + off
    val = val + 1e-12 * np.abs(val) + 1e-300        # the sums' rounding, outward
    return np.where(np.isfinite(val), val, np.inf).max(axis=1) if n else np.zeros(lo.shape[0])


__all__ = ["TrueStepMap", "rhs_function", "TAYLOR_ORDER"]
