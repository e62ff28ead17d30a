"""The cell-pair invertibility verdict: F is injective on a box B exactly when no pair of
grid cells (C_i, C_j), i <= j, holds x in C_i, y in C_j with F(x) = F(y) and ||x - y|| > tol.

Pairs whose sound output bounds lie more than delta apart are settled without a solver; each
remaining pair is one small :func:`~dynid.certify.invertibility.noninvertibility` query with
its own box for y (``y_box``), run as a job of a :class:`dynid.executor.Executor` (in-process,
worker processes or Dask; with a journal, an interrupted verdict resumes at the first
unfinished pair). Used by ``invertible_on(..., cells=k)``.
"""

from __future__ import annotations

import time

import numpy as np

from dynid.certify.invertibility import (FEASIBILITY_NOTE, _norm_from_box, noninvertibility,
                                         norm_name)
from dynid.errors import ConfigError, parse_norm
from dynid.executor import job_threads, resolve
from dynid.journal import Volatile
from dynid.relunet import check_box
from dynid.results import Certificate, Status, verdict


def _pair_job(net, box_x, box_y, budget, kw):
    """One cell pair's MIP (x in ``box_x``, y in ``box_y``; None: the same cell). ``budget``
    = (deadline or None, share): the pair gets the time left divided by ``share`` (the pairs
    still to do, at most 3); None when the deadline has passed before it started."""
    deadline, share = budget
    left = None
    if deadline is not None:
        left = deadline - time.time()
        if left <= 0.05:
            return None
        left = max(left / share, 0.1)
    kw = dict(kw)
    kw.setdefault("threads", job_threads())
    c = noninvertibility(net, *box_x, query="invertible_on", y_box=box_y, time_limit=left, **kw)
    if c.info.get("solver_status") == "interrupted":
        raise KeyboardInterrupt     # Ctrl-C in the solver: not a result (and not journaled)
    return c


def invertible_by_cells(net, lo, hi, k, progress, kw) -> Certificate:
    """The cell-pair verdict of :func:`invertible_on` with ``cells = k`` (``kw``: its other
    keyword arguments, passed to each pair's :func:`noninvertibility`; ``executor`` runs the
    pairs as jobs, see :mod:`dynid.executor`: the verdict, bound and witness are the same
    whichever executor runs them, unless a time budget ends some pairs)."""
    from dynid.bounds import crown_bounds_many, grid_cells

    t0 = time.perf_counter()
    lo, hi = check_box(net, lo, hi)
    if k ** net.n_in > 4096:
        raise ConfigError(f"cells = {k} makes {k ** net.n_in} cells in {net.n_in} dimensions; "
                          "use fewer cells (at most 4096)")
    p = parse_norm(kw.get("norm", "inf"))
    delta = float(kw.get("delta", 0.0))
    tol = float(kw.get("tol", 1e-4))
    budget = kw.pop("time_limit", None)
    executor = kw.pop("executor", None)
    kw.pop("log", None)     # solver logs of jobs in other processes would not reach the caller
    boxes = grid_cells(lo, hi, k)
    # cheap screen first: pairs whose output boxes are apart need no solver
    cb = crown_bounds_many(net, np.array([c[0] for c in boxes]), np.array([c[1] for c in boxes]))
    outb = [(b.lower[-1], b.upper[-1]) for b in cb]     # CROWN, already intersected with IBP
    pairs, screened = [], 0
    for i in range(len(boxes)):
        for j in range(i, len(boxes)):
            sep = np.maximum(outb[i][0] - outb[j][1], outb[j][0] - outb[i][1])
            if i != j and np.max(sep) > delta:
                screened += 1
            else:
                pairs.append((i, j))
    pairs.sort(key=lambda ij: (ij[0] != ij[1], ij))   # same-cell pairs first: they fold first
    info = {"method": kw.get("method", "ours"), "norm": norm_name(p), "delta": delta,
            "tol": tol, "cells": k, "n_cells": len(boxes),
            "pairs_total": len(boxes) * (len(boxes) + 1) // 2,
            "pairs_screened_by_bounds": screened, "pairs_solved": 0, "pairs_unknown": 0,
            "pairs_time_limited": 0, "feasibility": FEASIBILITY_NOTE}

    def pair_bound(i, j):
        """Largest ||x - y|| with x in cell i, y in cell j: what an unsolved pair may hold."""
        return _norm_from_box(boxes[i][0] - boxes[j][1], boxes[i][1] - boxes[j][0], p)

    bound, solvers, size = 0.0, set(), {}
    worst = None
    # each remaining pair is one job; a time budget becomes a deadline every job checks
    deadline = None if budget is None else time.time() + float(budget)
    jobs = [(net, boxes[i], None if i == j else boxes[j],
             Volatile((deadline, min(3, len(pairs) - n))), kw)
            for n, (i, j) in enumerate(pairs)]

    def report(n, c):
        if progress and c is not None:
            i, j = pairs[n]
            progress(f"cells {i}, {j}: {c.status.value} (bound {c.bound:.3g}, "
                     f"{c.seconds:.1f} s)")

    done = resolve(executor).map(_pair_job, jobs, desc="cell pairs", on_result=report,
                                 stop=lambda c: c is not None
                                 and c.status is Status.COUNTEREXAMPLE)
    for n_done, c in enumerate(done):   # in pair order, whichever executor ran them
        if c is None:    # the budget was spent before this pair started
            info["pairs_unknown"] += 1
            bound = max(bound, pair_bound(*pairs[n_done]))
            info["note"] = "time budget spent before every cell pair was solved"
            continue
        info["pairs_solved"] += 1
        solvers.add(c.solver)
        size = {key: max(size.get(key, 0), v) for key, v in c.model_size.items()}
        bound = max(bound, c.bound)
        if c.status is Status.UNKNOWN:
            info["pairs_unknown"] += 1
        if c.info.get("solver_status") == "time_limit" or c.info.get("tighten_time_limit_hit"):
            # a clock stopped this pair's work: its bound may differ on another run
            info["pairs_time_limited"] += 1
        if c.witness is not None and (worst is None or c.value > worst.value):
            worst = c
        if c.status is Status.COUNTEREXAMPLE:
            # a confirmed witness answers the question: stop; the pairs not solved keep the
            # bound of their own cells (the largest distance between them)
            rest = pairs[n_done + 1:]
            bound = max([bound] + [pair_bound(a, b) for a, b in rest])
            info["pairs_unsolved"] = len(rest)
            info["note"] = "stopped at the first cell pair with a confirmed witness"
    value = worst.value if worst is not None else 0.0
    witness = worst.witness if worst is not None else None
    # same rule as one noninvertibility query: a proven bound <= tol wins over a witness pair
    # closer than tol (equal outputs within the distance tolerance are one point)
    status = verdict(bound, tol, witness is not None)
    solver = "+".join(sorted(s for s in solvers if s)) or "bounds"
    return Certificate("invertible_on", status, value, max(bound, value),
                       max(0.0, bound - value), witness, solver, time.perf_counter() - t0,
                       size, info)


__all__ = ["invertible_by_cells"]
