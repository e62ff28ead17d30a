"""A certified bound of the model error: how far the true system's step map can be from the
surrogate's, over a box of states (and inputs).

``model_error(net, system, lo, hi)`` returns a :class:`ModelErrorBound` with a per-state ``e``
such that ``|F_true(x, u)_i - F_net(x, u)_i| <= e_i`` for every x in [lo, hi] (and u in
[u_lo, u_hi]), where ``F_true`` is the system's exact flow map over dt (or its Euler / RK4
map). The argument (see docs/model_error.md):

- cover the box by cells; on a cell with centre c and half-widths r, the error g = F_true -
  F_net satisfies ``|g_i(z)| <= |g_i(c)| + sum_j S_ij r_j``, where ``S_ij`` bounds
  ``|dg_i/dz_j|`` over the cell: S = max |[J_true] - [J_net]| from an interval enclosure of
  the true map's Jacobian (:mod:`dynid.validated`) and the net's interval Jacobian over its
  activation patterns (:mod:`dynid.lipschitz`). The difference of the two enclosures is much
  tighter than ``L_true + L_net`` (both Jacobians are close where the fit is good), which is
  also available as ``slopes="lipschitz"`` (the issue's grid bound with per-cell constants);
- ``g(c)`` is enclosed rigorously: the true map in interval arithmetic (plus the flow's
  validated truncation bound rho), the net by its padded forward pass;
- branch and bound: the largest centre error found is a lower bound of the true maximum (a
  witness point); cells whose bound exceeds ``(1 + rtol)`` times it are bisected along the
  coordinate that contributes most, largest bounds first, until every cell is within the
  target or the budget (cells, seconds) is spent. The maximum over the cells is a valid bound
  at every moment, so a budget stop gives a looser bound, still certified.

For plants without equations, ``model_error(..., method="empirical")`` gives the held-out
maximum error with a scenario-approach confidence; it is labelled "empirical, not certified"
wherever it appears.

Example
-------
>>> from dynid.relunet import linear
>>> from dynid.systems import linear_system
>>> sys = linear_system([[-1.0]])                       # x' = -x, Euler over 0.1: 0.9 x
>>> res = model_error(linear([[0.89]]), sys, [0.0], [1.0], dt=0.1, map="euler")
>>> res.label, bool(0.01 <= res.e[0] <= 0.0101)
('certified', True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from dynid.errors import ConfigError, ShapeError
from dynid.results import Certificate, Status, jsonable

CERTIFIED_LABEL = "certified"
EMPIRICAL_LABEL = "empirical, not certified"
CHUNK = 2048            # cells per batched evaluation (keeps the arrays in cache)


@dataclass(frozen=True)
class ModelErrorBound(Certificate):
    """A bound ``e`` (per state) of ``|F_true - F_net|`` on a box, with what it is valid on.

    Extra attributes (besides :class:`dynid.results.Certificate`'s): ``e`` (per-state bound),
    ``sampled`` (the largest error found, per state: a lower bound of the true maximum),
    ``lo``/``hi`` (the state box), ``u_lo``/``u_hi`` (the input box, empty without inputs),
    ``label`` ("certified" or "empirical, not certified"), ``map``, ``dt``, ``system``.
    ``value`` and ``bound`` are the largest of ``sampled`` and of ``e``.
    """

    e: np.ndarray = None
    sampled: np.ndarray = None
    lo: np.ndarray = None
    hi: np.ndarray = None
    u_lo: np.ndarray = None
    u_hi: np.ndarray = None
    label: str = CERTIFIED_LABEL
    map: str = "flow"
    dt: float = 0.0
    system: str = ""

    @property
    def empirical(self) -> bool:
        return self.label == EMPIRICAL_LABEL

    @property
    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """The box of [x; u] on which the bound holds."""
        return np.r_[self.lo, self.u_lo], np.r_[self.hi, self.u_hi]

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["valid_on"] = {"lo": jsonable(self.lo), "hi": jsonable(self.hi),
                         "u_lo": jsonable(self.u_lo), "u_hi": jsonable(self.u_hi)}
        for k in ("lo", "hi", "u_lo", "u_hi"):
            d.pop(k, None)
        return d

    def summary(self) -> str:
        es = ", ".join(f"{v:.4g}" for v in np.asarray(self.e, float))
        if self.empirical:
            found = f"max over {self.info.get('samples')} samples"
        else:
            ratio = (float(np.max(self.e / np.maximum(self.sampled, 1e-300)))
                     if np.all(np.isfinite(self.e)) else float("nan"))
            ss = ", ".join(f"{v:.4g}" for v in np.asarray(self.sampled, float))
            found = f"largest error found [{ss}], ratio {ratio:.3g}"
        return (f"model error [{self.label}]: e = [{es}] ({found})  {self.map} map, "
                f"dt={self.dt:g}, status {self.status.value}, {self.seconds:.2f}s")


# ---------------------------------------------------------------------- inputs
def _resolve(net, system, lo, hi, u_lo, u_hi, dt, map_):
    """System, dt, map and the boxes, from the arguments or the model's metadata."""
    from dynid.relunet import ReLUNet, check_box
    from dynid.systems import System, get_system

    if not isinstance(net, ReLUNet):
        raise ShapeError("model_error needs a ReLUNet (load it with dynid.modelfile.load_model)")
    meta = net.meta if isinstance(net.meta, dict) else {}
    if system is None:
        if not meta.get("system"):
            raise ConfigError("give the true system (the model file does not record one)")
        system = get_system(meta["system"], **_params(meta))
    elif not isinstance(system, System):      # a name: the model's parameters if it is its
        same = str(system).strip().lower().replace("-", "_") == str(meta.get("system", ""))
        system = get_system(system, **(_params(meta) if same else {}))
    dt = meta.get("dt") if dt is None else dt
    if dt is None:
        raise ConfigError("give dt (the model file does not record its time step)")
    dt = _positive("dt", dt)
    map_ = map_ or meta.get("map") or "flow"
    if map_ not in ("flow", "euler", "rk4"):
        raise ConfigError(f"map {map_!r} is not one of flow, euler, rk4")
    n = system.n_state
    m = len(getattr(system, "input_names", ()) or ())
    if net.n_out != n or net.n_in != n + m:
        raise ShapeError(f"the model maps R^{net.n_in} -> R^{net.n_out} but system "
                         f"{system.name!r} has {n} states and {m} inputs: the surrogate must "
                         f"map [x; u] (R^{n + m}) to the next state (R^{n})")
    if lo is None and hi is None:
        dom = meta.get("domain")
        if not (isinstance(dom, dict) and "lo" in dom):
            raise ConfigError("give the box lo, hi (the model has no training domain)")
        lo, hi = dom["lo"], dom["hi"]
    lo, hi = check_box(n, lo, hi, "state box")
    if m:
        if u_lo is None and u_hi is None:
            box = getattr(system, "input_box", None)
            if box is None:
                raise ConfigError("give the input box u_lo, u_hi")
            u_lo, u_hi = box
        u_lo, u_hi = check_box(m, u_lo, u_hi, "input box")
    elif u_lo is not None or u_hi is not None:
        if np.size(u_lo) or np.size(u_hi):
            raise ShapeError(f"system {system.name!r} has no inputs: leave u_lo, u_hi out")
        u_lo = u_hi = None
    u_lo = np.zeros(0) if u_lo is None else u_lo
    u_hi = np.zeros(0) if u_hi is None else u_hi
    return system, dt, map_, lo, hi, u_lo, u_hi


def _params(meta) -> dict:
    import json

    p = meta.get("params") or {}
    if isinstance(p, str):
        p = json.loads(p)
    return dict(p)


# ---------------------------------------------------------------------- the certified bound
class _Cells:
    """Evaluates cells: the bound of |g| on each and the enclosure of |g| at its centre."""

    def __init__(self, net, truemap, slopes):
        self.net = net
        self.truemap = truemap
        self.slopes = slopes

    def __call__(self, LO, HI):
        out = [self._chunk(LO[s:s + CHUNK], HI[s:s + CHUNK]) for s in range(0, len(LO), CHUNK)]
        return tuple(np.concatenate(parts) for parts in zip(*out))

    def _chunk(self, LO, HI):
        from dynid.intervals import isub
        from dynid.lipschitz import abs_max, interval_jacobian, output_bounds

        C = 0.5 * (LO + HI)
        R = np.maximum(HI - C, C - LO)          # half-widths, covering the rounding of C
        (t_lo, t_hi), J_t, rho = self.truemap.enclose(LO, HI)
        n_lo, n_hi = output_bounds(self.net, C, C)
        g_lo, g_hi = isub((t_lo, t_hi), (n_lo, n_hi))    # (T - F_net)(c); |F - T| <= rho
        up = np.maximum(np.abs(g_lo), np.abs(g_hi)) + rho
        low = np.where((g_lo <= 0) & (g_hi >= 0), 0.0,
                       np.minimum(np.abs(g_lo), np.abs(g_hi))) - rho
        J_n = interval_jacobian(self.net, LO, HI)
        if self.slopes == "lipschitz":
            # |g_i(z) - g_i(c)| <= (L_true,i + L_net,i) ||z - c||_inf, booked on the widest
            # coordinate (where a bisection helps)
            L = abs_max(*J_t).sum(axis=2) + abs_max(*J_n).sum(axis=2)       # (B, n)
            widest = np.arange(R.shape[1]) == R.argmax(axis=1)[:, None]    # (B, d)
            contrib = L[:, :, None] * (R.max(axis=1)[:, None] * widest)[:, None, :]
        else:
            S = abs_max(*isub(J_t, J_n))                                    # |dg_i / dz_j|
            contrib = S * R[:, None, :]
        bound = up + contrib.sum(axis=2) * (1 + 1e-12) + 1e-300
        bound = np.where(np.isfinite(bound), bound, np.inf)
        return bound, np.maximum(low, 0.0), contrib, C


def model_error(net, system=None, lo=None, hi=None, u_lo=None, u_hi=None, dt=None, map=None,
                *, method: str = "certified", rtol: float = 0.2, atol: float = 1e-9,
                max_cells: int = 500_000,
                time_limit: float | None = 120.0, initial: int | None = None,
                slopes: str = "difference", order: int | None = None, substeps=None,
                data=None, samples: int = 100_000, beta: float = 1e-6, seed: int = 0,
                progress=None) -> ModelErrorBound:
    """A bound on ``|F_true(x, u) - F_net(x, u)|`` per state over the box (see the module
    docstring).

    Parameters
    ----------
    net : ReLUNet surrogate of the step map, [x; u] -> x_next
    system : the true system (a System or a catalogue name; default: the model's)
    lo, hi : state box (default: the model's training domain)
    u_lo, u_hi : input box (systems with inputs; default: the system's input box)
    dt, map : time step and map (flow | euler | rk4), default the model's
    method : "certified" (needs CasADi equations) or "empirical" (sampled, not certified)
    rtol, atol : stop refining a cell when its bound is within (1 + rtol) times the largest
        error found, or below atol (a surrogate that is exact up to rounding)
    max_cells, time_limit : budget of the refinement (a stop returns a valid, looser bound)
    initial : cells per coordinate of the initial grid (default: about 1024 cells)
    slopes : "difference" (interval Jacobian of F_true - F_net) or "lipschitz"
        ((L_true + L_net) per cell, the plain grid bound)
    order, substeps : Taylor order and substeps of the validated flow (default: 8, chosen)
    data, samples, beta, seed : the empirical bound (see :func:`empirical_model_error`)
    progress : callable(str) called after each refinement round

    Returns
    -------
    ModelErrorBound (status certified, or unknown when no finite bound was found)
    """
    if method == "empirical":
        return empirical_model_error(net, system, lo, hi, u_lo, u_hi, dt, map, data=data,
                                     samples=samples, beta=beta, seed=seed)
    if method != "certified":
        raise ConfigError(f"method {method!r} is not one of certified, empirical")
    if slopes not in ("difference", "lipschitz"):
        raise ConfigError(f"slopes {slopes!r} is not one of difference, lipschitz")
    rtol = _positive("rtol", rtol)
    atol = _positive("atol", atol)
    max_cells = _positive("max_cells", max_cells, int)
    if time_limit is not None:
        time_limit = _positive("time_limit", time_limit)
    from dynid.validated import TAYLOR_ORDER, TrueStepMap

    t0, cpu0 = time.perf_counter(), time.process_time()
    system, dt, map_, lo, hi, u_lo, u_hi = _resolve(net, system, lo, hi, u_lo, u_hi, dt, map)
    Z_lo, Z_hi = np.r_[lo, u_lo], np.r_[hi, u_hi]
    d, n = Z_lo.size, lo.size
    truemap = TrueStepMap(system, dt, map_, order=order or TAYLOR_ORDER, substeps=substeps)
    if initial is None:
        initial = max(1, int(round(1024 ** (1.0 / d))))
    LO, HI = _grid(Z_lo, Z_hi, initial)
    rho_target = None
    if map_ == "flow" and substeps is None:
        rho_target = _flow_target(net, system, dt, Z_lo, Z_hi, n, seed)
        C = 0.5 * (LO + HI)
        probe = 1e-3 * (HI - LO)
        truemap.choose_substeps(C - probe, C + probe, rho_target)
    cells = _Cells(net, truemap, slopes)
    bound, low, contrib, C = cells(LO, HI)
    # the box corners as points: extreme errors often sit there (a better lower bound)
    K = _corners(Z_lo, Z_hi)
    low_k, C_k = cells(K, K)[1], K
    low_all, C_all = np.vstack([low, low_k]), np.vstack([C, C_k])
    best = low_all.max(axis=0)
    witness = C_all[low_all.argmax(axis=0)]
    closed_max = np.zeros(n)
    n_eval, rounds, stop = len(LO), 0, "target reached"
    try:
        while True:
            target = np.maximum(best * (1 + rtol), atol)
            score = (bound / np.maximum(target, 1e-300)).max(axis=1)
            done = score <= 1
            if done.any():
                closed_max = np.maximum(closed_max, bound[done].max(axis=0))
                LO, HI, bound, contrib = LO[~done], HI[~done], bound[~done], contrib[~done]
                score = score[~done]
            if len(LO) == 0:
                break
            if n_eval >= max_cells:
                stop = "cell budget spent"
                break
            if time_limit is not None and time.perf_counter() - t0 > time_limit:
                stop = "time limit"
                break
            take = np.argsort(-score)[:min(len(LO), CHUNK * 2, max_cells - n_eval)]
            keep = np.ones(len(LO), bool)
            keep[take] = False
            open_out = bound[take] > target             # (k, n) outputs still too loose
            weight = np.where(open_out[:, :, None], contrib[take], 0.0).max(axis=1)
            dims = weight.argmax(axis=1)
            c_lo, c_hi = _bisect(LO[take], HI[take], dims)
            b2, l2, k2, C2 = cells(c_lo, c_hi)
            n_eval += len(c_lo)
            rounds += 1
            better = l2.max(axis=0) > best
            if better.any():
                idx = l2.argmax(axis=0)
                witness = np.where(better[:, None], C2[idx], witness)
                best = np.maximum(best, l2.max(axis=0))
            LO = np.vstack([LO[keep], c_lo])
            HI = np.vstack([HI[keep], c_hi])
            bound = np.vstack([bound[keep], b2])
            contrib = np.concatenate([contrib[keep], k2])
            if progress is not None:
                e_now = np.maximum(closed_max, bound.max(axis=0))
                progress(f"round {rounds}: {n_eval} cells, {len(LO)} open, e = "
                         f"{np.array2string(e_now, precision=3)}, found "
                         f"{np.array2string(best, precision=3)}")
    except KeyboardInterrupt:
        stop = "interrupted"
    e = closed_max if len(LO) == 0 else np.maximum(closed_max, bound.max(axis=0))
    finite = bool(np.all(np.isfinite(e)))
    seconds = time.perf_counter() - t0
    info = {"method": "interval mean-value form over an adaptive grid (branch and bound)",
            "slopes": slopes, "true_map": truemap.description, "cells": int(n_eval),
            "open_cells": int(len(LO)), "rounds": rounds, "stop": stop, "rtol": rtol,
            "atol": atol,
            "witness": witness, "flow_substeps": truemap.substeps if map_ == "flow" else None,
            "flow_rho_target": rho_target, "cpu_seconds": time.process_time() - cpu0}
    if not finite:
        info["reason"] = ("no finite bound on some cells (the a-priori enclosure of the flow "
                          "failed there): raise the cell budget or shrink the box")
    return ModelErrorBound(
        "model_error", Status.CERTIFIED if finite else Status.UNKNOWN,
        float(best.max()), float(e.max()), float(e.max() - best.max()), {"x": witness},
        "interval", seconds, {"cells": int(n_eval)}, info, e=e, sampled=best, lo=lo, hi=hi,
        u_lo=u_lo, u_hi=u_hi, label=CERTIFIED_LABEL, map=map_, dt=dt, system=system.name)


def _positive(name, v, kind=float, maximum=None):
    """``v`` as a finite number > 0 (dynid.options' rule for API arguments)."""
    from dynid.options import check_number

    return check_number(v, name, kind=kind, maximum=maximum, text_ok=False)


def _grid(lo, hi, k: int):
    from dynid.bounds.core import grid_cells

    if int(k) ** lo.size > 1_000_000:
        raise ConfigError(f"initial grid of {k}^{lo.size} cells is too large")
    cells = grid_cells(lo, hi, int(k))
    return np.array([c[0] for c in cells]), np.array([c[1] for c in cells])


def _corners(lo, hi, max_dim: int = 12):
    import itertools

    if lo.size > max_dim:
        return np.vstack([lo, hi])
    return np.array([np.where(bits, hi, lo) for bits in
                     itertools.product((False, True), repeat=lo.size)], dtype=np.float64)


def _bisect(LO, HI, dims):
    """Halves of every box along its coordinate ``dims[b]``: (2B, d) arrays."""
    rows = np.arange(len(LO))
    mid = 0.5 * (LO[rows, dims] + HI[rows, dims])
    hi1, lo2 = HI.copy(), LO.copy()
    hi1[rows, dims] = mid
    lo2[rows, dims] = mid
    return np.vstack([LO, lo2]), np.vstack([hi1, HI])


def _flow_target(net, system, dt, Z_lo, Z_hi, n, seed) -> float:
    """Accuracy asked of the flow's truncation bound: 1e-3 of the smallest per-state error
    seen on a few points with the system's own integrator (an estimate that only sets the
    number of substeps, not the bound)."""
    rng = np.random.default_rng(seed)
    Z = Z_lo + (Z_hi - Z_lo) * rng.random((256, Z_lo.size))
    err = np.abs(_true_step(system, Z, n, dt, "flow") - net.forward(Z)).max(axis=0)
    return float(max(1e-3 * err.min(), 1e-13))   # noqa: the floor keeps N finite


def _true_step(system, Z, n, dt, map_):
    """The system's step map at points [x; u] (its simulator: CVODES or the explicit map)."""
    if Z.shape[1] > n:
        return system.step_map(Z[:, :n], dt, map_, u=Z[:, n:])
    return system.step_map(Z, dt, map_)


# ---------------------------------------------------------------------- the empirical bound
def scenario_epsilon(n_samples: int, n_params: int, beta: float) -> float:
    """Violation level of the scenario approach (Campi and Garatti): with probability at
    least 1 - beta over N i.i.d. samples, the box of the sampled maxima (a convex program
    with ``n_params`` decision variables) is violated by a new sample with probability at
    most epsilon, the solution of ``sum_{i < d} C(N, i) eps^i (1 - eps)^(N - i) = beta``.

    Example
    -------
    >>> round(scenario_epsilon(1000, 1, 1e-6), 6) == round(1 - 1e-6 ** (1 / 1000), 6)
    True
    """
    from scipy.stats import beta as beta_dist

    N, d = int(n_samples), int(n_params)
    if N <= d:
        return 1.0
    return float(beta_dist.ppf(1.0 - beta, d, N - d + 1))


def empirical_model_error(net, system=None, lo=None, hi=None, u_lo=None, u_hi=None, dt=None,
                          map=None, *, data=None, samples: int = 100_000, beta: float = 1e-6,
                          seed: int = 0) -> ModelErrorBound:
    """The largest error on held-out samples, with a scenario-approach confidence. Labelled
    "empirical, not certified" (status unknown): it is a statistical statement about the
    sampling distribution, not a bound for every point of the box.

    With ``data`` (a dataset of pairs or trajectories, e.g. the held-out split, or an
    ``(X, Y)`` pair of arrays) the errors are those of its pairs inside the box; otherwise
    ``samples`` uniform points of the box are simulated with the system's own step map.
    """
    from dynid.relunet import ReLUNet, check_box

    t0 = time.perf_counter()
    if not isinstance(net, ReLUNet):
        raise ShapeError("model_error needs a ReLUNet (load it with dynid.modelfile.load_model)")
    beta = _positive("beta", beta, maximum=1.0)
    if beta >= 1:
        raise ConfigError(f"beta={beta} must be below 1 (confidence 1 - beta)")
    meta = net.meta if isinstance(net.meta, dict) else {}
    if data is None:
        system, dt, map_, lo, hi, u_lo, u_hi = _resolve(net, system, lo, hi, u_lo, u_hi, dt,
                                                        map)
        samples = _positive("samples", samples, int)
        rng = np.random.default_rng(seed)
        Z_lo, Z_hi = np.r_[lo, u_lo], np.r_[hi, u_hi]
        Z = Z_lo + (Z_hi - Z_lo) * rng.random((samples, Z_lo.size))
        Y = _true_step(system, Z, lo.size, dt, map_)
        source, name = f"{samples} uniform samples simulated by the system's step map", \
            system.name
    else:
        Z, Y = _data_pairs(data)
        n = Y.shape[1]
        if net.n_in != Z.shape[1] or net.n_out != n:
            raise ShapeError(f"the data pairs are {Z.shape[1]} -> {n} but the model maps "
                             f"R^{net.n_in} -> R^{net.n_out}")
        if lo is None and hi is None:
            lo, hi = Z[:, :n].min(axis=0), Z[:, :n].max(axis=0)
        lo, hi = check_box(n, lo, hi, "state box")
        m = Z.shape[1] - n
        if m and (u_lo is None or u_hi is None):
            u_lo, u_hi = Z[:, n:].min(axis=0), Z[:, n:].max(axis=0)
        u_lo = np.zeros(0) if not m else check_box(m, u_lo, u_hi, "input box")[0]
        u_hi = np.zeros(0) if not m else check_box(m, u_lo, u_hi, "input box")[1]
        inside = np.all((Z >= np.r_[lo, u_lo]) & (Z <= np.r_[hi, u_hi]), axis=1)
        Z, Y = Z[inside], Y[inside]
        if len(Z) == 0:
            raise ConfigError("no data pair lies in the box: give a box the data covers")
        map_, dt = meta.get("map", "data"), float(meta.get("dt") or 0.0)
        name = getattr(system, "name", system) or meta.get("system") or "data"
        source = f"{len(Z)} data pairs inside the box (assumed i.i.d. and not used in training)"
    err = np.abs(Y - net.forward(Z))
    e = err.max(axis=0)
    N, n = err.shape
    eps = scenario_epsilon(N, n, beta)
    info = {"method": "empirical (scenario approach)", "samples": int(N), "source": source,
            "confidence": 1.0 - beta, "violation_probability": eps,
            "statement": (f"with confidence {1 - beta:.6g} over the draw of the {N} samples, a "
                          f"new point from the same distribution has an error outside [-e, e] "
                          f"with probability at most {eps:.3g}; NOT a bound for every point"),
            "witness": Z[err.argmax(axis=0)]}
    return ModelErrorBound(
        "model_error", Status.UNKNOWN, float(e.max()), float(e.max()), 0.0,
        {"x": Z[err.argmax(axis=0)]}, "sampling", time.perf_counter() - t0,
        {"samples": int(N)}, info, e=e, sampled=e, lo=np.asarray(lo, float),
        hi=np.asarray(hi, float), u_lo=np.asarray(u_lo, float), u_hi=np.asarray(u_hi, float),
        label=EMPIRICAL_LABEL, map=str(map_), dt=float(dt or 0.0), system=str(name))


def _data_pairs(data):
    """``([x; u], x_next)`` arrays from a dataset or an (X, Y) pair."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        X = np.atleast_2d(np.asarray(data[0], dtype=np.float64))
        Y = np.atleast_2d(np.asarray(data[1], dtype=np.float64))
    else:
        from dynid.datasets import pairs_from

        X, Y = pairs_from(data)
    if X.shape[0] != Y.shape[0] or X.shape[0] == 0:
        raise ShapeError(f"data needs as many inputs as next states (>= 1), got {X.shape[0]} "
                         f"and {Y.shape[0]}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
        raise ShapeError("data contains NaN or inf")
    return X, Y


__all__ = ["model_error", "empirical_model_error", "ModelErrorBound", "scenario_epsilon",
           "CERTIFIED_LABEL", "EMPIRICAL_LABEL"]
