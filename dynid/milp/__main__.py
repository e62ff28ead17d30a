"""``python -m dynid.milp``: which solvers are installed, and do they answer correctly here?

Solves a few small problems with every installed backend and prints a markdown table next to
an independent reference (dynamic programming for the knapsack, enumeration of box corners for
the nonconvex max-distance). A size-limited Gurobi licence shows up in the last row as a
fallback to HiGHS. ``--json PATH`` also writes the rows.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from dynid.milp import SparseModel, available_solvers, solve


def knapsack(n=25, seed=0):
    """0/1 knapsack with integer weights; the reference is a dynamic program over capacity."""
    rng = np.random.default_rng(seed)
    w = rng.integers(10, 60, n)
    p = (w + rng.integers(-5, 6, n)).astype(float)
    cap = int(w.sum() // 2)
    m = SparseModel("knapsack")
    x = m.add_vars(n, vtype="B")
    m.add_row(x, w.astype(float), hi=float(cap))
    m.set_objective(x, p, "max")
    best = np.zeros(cap + 1)
    for wi, pi in zip(w, p):
        best[wi:] = np.maximum(best[wi:], best[: cap + 1 - wi] + pi)
    return m, float(best[cap])


def market_split(rows=4, seed=0):
    """Cornuejols-Dawande market split (hard for branch and bound): shows time limits."""
    rng = np.random.default_rng(seed)
    n = 10 * rows
    a = rng.integers(0, 100, size=(rows, n)).astype(float)
    d = np.floor(a.sum(1) / 2)
    m = SparseModel("market_split")
    x = m.add_vars(n, vtype="B")
    sp_, sm = m.add_vars(rows, lb=0.0), m.add_vars(rows, lb=0.0)
    m.add_rows(np.r_[x, sp_, sm], np.hstack([a, np.eye(rows), -np.eye(rows)]), lo=d, hi=d)
    m.set_objective(np.r_[sp_, sm], np.ones(2 * rows), "min")
    return m, None


def max_distance(d=4, seed=0):
    """max ||x - y||^2 over a box (nonconvex); the optimum is at a corner: enumerate them."""
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-2, 0, d)
    hi = lo + rng.uniform(0.5, 3, d)
    lo_y, hi_y = -hi[::-1], -lo[::-1]
    m = SparseModel("max_distance")
    x, y = m.add_vars(d, lo, hi), m.add_vars(d, lo_y, hi_y)
    m.set_objective(quad=(np.r_[x, y, x], np.r_[x, y, y],
                          np.r_[np.ones(d), np.ones(d), -2 * np.ones(d)]), sense="max")
    ref = sum(max((a - b) ** 2 for a in (lo[i], hi[i]) for b in (lo_y[i], hi_y[i]))
              for i in range(d))
    return m, float(ref)


def big_lp(n=2100):
    """An LP over 2000 variables (beyond the size-limited Gurobi licence); greedy reference."""
    k = (np.arange(n) % 7).astype(float)
    m = SparseModel("big_lp")
    x = m.add_vars(n, 0.0, 1.0)
    m.add_row(x, np.ones(n), hi=10.5)
    m.set_objective(x, k, "max")
    top = np.sort(k)[::-1]
    return m, float(top[:10].sum() + 0.5 * top[10])


CASES = [
    ("knapsack, 25 binaries", knapsack, ("gurobi", "highs", "scip"), None),
    ("market split 4x40, 1 s limit", market_split, ("gurobi", "highs", "scip"), 1.0),
    ("max dist^2 over a box, d=4 (nonconvex)", max_distance, ("gurobi", "scip"), None),
    ("LP, 2100 variables", big_lp, ("auto",), None),
]


def run(time_scale: float = 1.0) -> list[dict]:
    rows = []
    have = set(available_solvers())
    for name, make, solvers, limit in CASES:
        for solver in solvers:
            if solver != "auto" and solver not in have:
                continue
            model, ref = make()
            r = solve(model, solver, time_limit=None if limit is None else limit * time_scale)
            ok = None
            if ref is not None and r.objective is not None:
                ok = bool(abs(r.objective - ref) <= 1e-6 * (1 + abs(ref))
                          and (r.bound >= ref - 1e-6 if model.sense == "max"
                               else r.bound <= ref + 1e-6))
            rows.append({"problem": name, "solver": r.solver, "status": r.status,
                         "objective": r.objective, "bound": r.bound, "reference": ref,
                         "agrees": ok, "seconds": round(r.seconds, 3), "note": r.message})
    return rows


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return str(v)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dynid.milp", description=__doc__.split("\n")[0])
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = p.parse_args(argv)
    print("installed solvers:", ", ".join(available_solvers()) or "none")
    rows = run()
    keys = ["problem", "solver", "status", "objective", "bound", "reference", "agrees",
            "seconds", "note"]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(_fmt(row[k]) for k in keys) + " |")
    if args.json:
        from dynid.atomic import write_text_atomic
        from dynid.results import jsonable

        write_text_atomic(args.json, json.dumps(jsonable(rows), indent=2) + "\n")
    return 0 if all(r["agrees"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
