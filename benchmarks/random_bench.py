"""Random-network scaling law of the distance to the decision boundary, with exact distances.

He-initialised 2-output MLPs (widths 64-64, no biases), inputs uniform on [0, 1]^n, n in
{8, 16, 32, 64, 128}; for each point and each norm (L1, L2, L-inf) the distance to the decision
boundary is bracketed by ``dynid.certify.boundary_distance``: CROWN certified radius <= exact
(MIP best bound .. checked witness) <= PGD attack, all three in the same call. Reported:

- log-log slopes of the median distance against n, with bootstrap 95 % intervals (nets
  resampled within each n), for the exact value, the attack and CROWN, beside the theory
  (+0.5, 0, -0.5: distance ~ ||x||_p / sqrt(n)) and the authors' attack-based fit on random
  ResNet-20 (0.42 / 0.01 / -0.54; De Palma, Kiani, Lloyd, ICML 2021);
- the ratio exact / attack (how loose the attack is) and CROWN / exact;
- seconds per exact distance by n and norm (goal: n = 128, L-inf, median under 10 s) and how
  many brackets closed (status certified) within the time limit.

Run: ``python benchmarks/random_bench.py`` (the full study: 30 nets x 5 inputs per n, 120 s
per distance; many hours on 2 cores, ``--workers`` on a bigger machine), a reduced grid with
``--nets 20 --inputs 1 --time-limit 30 --workers 2`` (the run in the README), or ``--quick``
(n <= 32, 3 nets, widths 32-32, < 2 min idle; written to random_bench_quick.* so it never
overwrites a long run). Points are appended to ``benchmarks/results/random_bench_points.jsonl``
as they finish: rerunning the same command resumes (rows computed with other settings are
kept in the file but not reused). Writes benchmarks/results/random_bench.json and random_bench.png and prints
markdown tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from _common import RESULTS, write_results  # noqa: E402
from random_scaling import run, tables  # noqa: E402

from dynid.random_nets import (load_rows, plot_scaling, slope_rows, study_grid,  # noqa: E402
                               summarise, summary_rows)

GOAL_SECONDS = 10.0   # n = 128, L-inf, median seconds per exact distance


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small subset (under 2 minutes idle)")
    ap.add_argument("--ns", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    ap.add_argument("--nets", type=int, default=30)
    ap.add_argument("--inputs", type=int, default=5)
    ap.add_argument("--norms", nargs="+", default=["1", "2", "inf"])
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per distance")
    ap.add_argument("--solver", default="auto")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    widths = [64, 64]
    name = "random_bench"
    if args.quick:
        args.ns, args.nets, args.inputs, widths = [8, 16, 32], 3, 1, [32, 32]
        args.time_limit = min(args.time_limit, 15.0)
        name = "random_bench_quick"
    specs = study_grid(ns=args.ns, n_nets=args.nets, n_inputs=args.inputs, norms=args.norms,
                       widths=widths, time_limit=args.time_limit, solver=args.solver,
                       threads=1)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    RESULTS.mkdir(parents=True, exist_ok=True)
    points_path = RESULTS / f"{name}_points.jsonl"
    before = len(load_rows(points_path))
    rows, complete = run(specs, points_path, args.workers)
    if not rows:
        return 1
    summary = summarise(rows)
    per_n, slopes = summary_rows(summary), slope_rows(summary)
    inf128 = [r for r in per_n if r["norm"] == "inf" and r["n"] == 128]
    settings = {"quick": args.quick, "ns": args.ns, "nets": args.nets, "inputs": args.inputs,
                "norms": args.norms, "widths": widths, "bias_std": 0.0,
                "time_limit": args.time_limit, "solver": args.solver, "gap": 1e-4}
    extra = {"settings": {**settings, "workers": args.workers},
             "complete": complete, "points": len(rows),
             "load_average_start": load_start, "load_average_end": os.getloadavg(),
             "wall_seconds": time.perf_counter() - t0,
             # every invocation that computed points, with its load (a resumed or re-summarised
             # run keeps the earlier ones); each row also has the load when it finished
             "runs": _runs(name, settings, {
                 "date": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_start": load_start,
                 "load_average_end": os.getloadavg(), "wall_seconds": time.perf_counter() - t0,
                 "points_computed": len(load_rows(points_path)) - before}),
             "goal_inf_128_median_seconds": GOAL_SECONDS,
             "inf_128_median_seconds": inf128[0]["seconds_median"] if inf128 else None,
             "slopes": slopes, "summary": summary}
    path = write_results(name, per_n, extra)
    title = (f"He MLPs {'-'.join(map(str, widths))}, {args.nets} nets x {args.inputs} inputs "
             f"per n, {args.time_limit:g} s per distance" + ("" if complete else " (partial)"))
    plot_scaling(summary, RESULTS / f"{name}.png", title=title)
    print(tables(summary))
    if inf128:
        s = inf128[0]["seconds_median"]
        print(f"\nn = 128 L-inf: median {s:.1f} s per exact distance "
              f"(goal < {GOAL_SECONDS:g} s: {'met' if s < GOAL_SECONDS else 'missed'})")
    print(f"\nwrote {path} and {RESULTS / (name + '.png')}; load average "
          f"{load_start[0]:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0 if complete else 130


def _runs(name: str, settings: dict, this: dict) -> list[dict]:
    """The earlier invocations recorded in NAME.json for the same settings, plus this one
    when it computed points."""
    import json

    old = []
    try:
        prev = json.loads((RESULTS / f"{name}.json").read_text())
        if {k: v for k, v in prev.get("settings", {}).items() if k != "workers"} == settings:
            old = prev.get("runs", [])
    except (OSError, ValueError):
        pass
    return old + ([this] if this["points_computed"] > 0 else [])


if __name__ == "__main__":
    sys.exit(main())
