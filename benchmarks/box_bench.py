"""Largest certified boxes: non-uniform vs uniform volume, three relaxations, seconds per point.

Cases (every point runs through ``dynid.certify.maxbox.max_box_job``, the per-point function
an executor can farm out):

1. the 2-D Voronoi toy (examples/voronoi_mlp.h5, 2-32-32-10): keep the label, domain
   [-1, 1]^2, points uniform on [-0.95, 0.95]^2;
2. scikit-learn's 8x8 digits: an MLP 64-32-32-10 (MLPClassifier, relu, random_state 0, the
   first 1500 images), keep the label of held-out images, domain [0, 16]^64;
3. the demo Brusselator (a = 1, b = 3, exact flow over dt = 0.1 on [0, 4] x [0, 5]): a residual
   surrogate x + dt N(x), N = 2-32-32-2 with fixed random hidden layers and a least-squares
   output layer (deterministic, no training run), K = 1 and 5 steps; spec: each state after K
   steps within 0.1 of that of the point; domain [0, 4] x [0, 5].

For each case: the relaxations "crown" and "fastlin" on all points, "crown-opt" (optimised
slopes, slow) on the first few, and on the Brusselator K = 5 also "crown" with 150 instead of
400 augmented-Lagrangian iterations (the schedule scaled). Rows give the geometric mean over
the points of the volume ratio non-uniform / uniform (same relaxation, same checks), mean
log-volumes, how the boxes were certified, and wall and CPU seconds per point.

Run: ``python benchmarks/box_bench.py`` (full: 50 points per case, about 30-60 min on a
loaded 2-core machine) or ``--quick`` (6 points, no crown-opt, < 2 min idle). The points of a
case are independent jobs of a :class:`dynid.executor.Executor`: ``--workers N`` runs them in
N local processes, ``--scheduler ADDRESS`` on a Dask cluster (same boxes, same rows but the
timings). Writes benchmarks/results/box_bench.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, write_results  # noqa: E402

from dynid.certify import keep_label, safe_set  # noqa: E402
from dynid.certify.maxbox import max_box_job  # noqa: E402
from dynid.relunet import ReLUNet, residual  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def voronoi_case(n_points: int):
    from dynid.modelfile import load_model

    net = load_model(REPO / "examples" / "voronoi_mlp.h5")
    pts = np.random.default_rng(1).uniform(-0.95, 0.95, size=(n_points, 2))
    dom = (np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
    return {"case": "voronoi", "net": net, "points": pts, "steps": 1, "domain": dom,
            "spec": lambda x: keep_label()}


def digits_case(n_points: int):
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    d = load_digits()
    X, y = d.data.astype(float), d.target
    clf = MLPClassifier(hidden_layer_sizes=(32, 32), activation="relu", max_iter=300,
                        random_state=0).fit(X[:1500], y[:1500])
    net = ReLUNet([w.T for w in clf.coefs_], clf.intercepts_)
    acc = float(np.mean(np.argmax(net.forward(X[1500:]), 1) == y[1500:]))
    dom = (np.zeros(64), np.full(64, 16.0))
    return {"case": "digits", "net": net, "points": X[1500:1500 + n_points], "steps": 1,
            "domain": dom, "spec": lambda x: keep_label(), "note": f"test accuracy {acc:.3f}"}


def brusselator_surrogate(seed: int = 0, hidden: int = 32, dt: float = 0.1):
    """x + dt N(x), N = 2-h-h-2: random hidden layers (ReLU kinks spread over the domain),
    output layer by least squares on exact flow-map pairs of the demo Brusselator."""
    from dynid.simulate import one_step_pairs
    from dynid.systems import get_system

    lo, hi = np.array([0.0, 0.0]), np.array([4.0, 5.0])
    ds = one_step_pairs(get_system("brusselator", a=1.0, b=3.0), 6000, dt=dt, lo=lo, hi=hi,
                        seed=seed)
    X, Y = ds.x.values, ds.x_next.values
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(hidden, 2))
    w1 /= np.linalg.norm(w1, axis=1, keepdims=True)
    b1 = -np.sum(w1 * rng.uniform(lo, hi, size=(hidden, 2)), axis=1)
    h1 = np.maximum(X @ w1.T + b1, 0)
    w2 = rng.normal(size=(hidden, hidden)) / np.sqrt(hidden)
    b2 = -np.median(h1 @ w2.T, axis=0)
    h2 = np.maximum(h1 @ w2.T + b2, 0)
    phi = np.hstack([h2, np.ones((len(X), 1))])
    coef = np.linalg.lstsq(phi, (Y - X) / dt, rcond=None)[0]
    inner = ReLUNet([w1, w2, coef[:-1].T], [b1, b2, coef[-1]])
    net = residual(inner, dt).with_meta(domain={"lo": lo.tolist(), "hi": hi.tolist()})
    rmse = float(np.sqrt(np.mean((net.forward(X) - Y) ** 2)))
    return net, rmse


def brusselator_case(n_points: int, steps: int, tol: float = 0.1):
    net, rmse = brusselator_surrogate()
    net_k = net.unroll(steps) if steps > 1 else net
    pts = np.random.default_rng(2).uniform([0.5, 0.5], [3.5, 4.5], size=(n_points, 2))
    H = np.vstack([np.eye(2), -np.eye(2)])

    def spec(x):
        y = net_k.forward(x)
        return safe_set(H, np.r_[y + tol, -(y - tol)])

    return {"case": f"brusselator K={steps}", "net": net, "points": pts, "steps": steps,
            "domain": (np.array([0.0, 0.0]), np.array([4.0, 5.0])), "spec": spec,
            "note": f"one-step RMSE {rmse:.2e}"}


def run_case(case, relaxation, iterations, points, log, executor=None):
    """max_box_job at every point, run by ``executor`` (a dynid.executor.Executor; None: one
    after the other in this process). Wall seconds per point are each certificate's own
    ``seconds``; CPU seconds per point are measured in-process only (None with workers)."""
    from dynid.executor import resolve

    ex = resolve(executor)
    jobs = [(case["net"], x, {"spec": case["spec"](x), "steps": case["steps"],
                              "domain": case["domain"], "relaxation": relaxation,
                              "iterations": iterations}) for x in points]
    t0, c0 = time.perf_counter(), time.process_time()
    certs = ex.map(max_box_job, jobs, desc=f"{case['case']} {relaxation}")
    elapsed, cpu_all = time.perf_counter() - t0, time.process_time() - c0
    wall = [c.seconds for c in certs]
    cpu = cpu_all / len(points) if ex.kind == "in-process" else None
    ok = [c for c in certs if c.certified and c.info.get("volume_ratio") is not None]
    logr = np.array([math.log(c.info["volume_ratio"]) for c in ok])
    checked = {}
    tightest = {}
    for c in ok:
        checked[c.info["checked_by"]] = checked.get(c.info["checked_by"], 0) + 1
        t = c.info["tightness"]["tightest"]
        tightest[t] = tightest.get(t, 0) + 1
    row = {"case": case["case"], "widths": case["net"].widths, "steps": case["steps"],
           "relaxation": relaxation, "iterations": iterations, "points": len(points),
           "certified": len(ok),
           "volume_ratio_geomean": float(np.exp(logr.mean())) if ok else None,
           "volume_ratio_median": float(np.exp(np.median(logr))) if ok else None,
           "ratio_per_dim": float(np.exp(logr.mean() / len(points[0]))) if ok else None,
           "mean_log_volume": float(np.mean([c.value for c in ok])) if ok else None,
           "mean_log_volume_uniform": float(np.mean([c.info["uniform"]["log_volume"]
                                                     for c in ok])) if ok else None,
           "seconds_per_point": float(np.mean(wall)), "seconds_max": float(np.max(wall)),
           "cpu_seconds_per_point": cpu, "elapsed_s": elapsed, "executor": ex.describe(),
           "checked_by": checked,
           "tightest_at_box": tightest, "note": case.get("note", ""),
           "log_volumes": [c.value for c in certs]}
    log(f"{row['case']:>16} {relaxation:>9} it={iterations:<4} ratio "
        f"{row['volume_ratio_geomean'] or float('nan'):.4g}  {row['seconds_per_point']:.2f} s/pt "
        f"({cpu if cpu is not None else float('nan'):.2f} cpu)  "
        f"certified {len(ok)}/{len(points)}")
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="reduced run (< 2 minutes idle)")
    ap.add_argument("--points", type=int, default=None, help="points per case (default 50; "
                                                             "quick 6)")
    ap.add_argument("--opt-points", type=int, default=None,
                    help="points for crown-opt per case (default 10; quick 0)")
    ap.add_argument("--cases", default="voronoi,digits,brusselator1,brusselator5")
    ap.add_argument("--workers", type=int, default=1,
                    help="points in N local worker processes (default 1: in this process)")
    ap.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="points on the Dask cluster at ADDRESS (pip install 'dynid[dask]')")
    args = ap.parse_args(argv)
    from dynid.errors import DynidError
    from dynid.executor import Executor

    try:
        executor = Executor(workers=args.workers, scheduler=args.scheduler).start()
    except DynidError as exc:
        print(f"box_bench: {exc}", file=sys.stderr)
        return 2
    n = args.points or (6 if args.quick else 50)
    n_opt = args.opt_points if args.opt_points is not None else (0 if args.quick else 10)
    load_start = os.getloadavg()
    log = lambda s: print(s, flush=True)  # noqa: E731
    builders = {"voronoi": lambda: voronoi_case(n), "digits": lambda: digits_case(n),
                "brusselator1": lambda: brusselator_case(n, 1),
                "brusselator5": lambda: brusselator_case(n, 5)}
    rows = []
    extra = {"load_average_start": load_start, "quick": args.quick,
             "executor": executor.describe()}
    try:
        for name in args.cases.split(","):
            try:
                case = builders[name]()
            except ImportError as exc:      # scikit-learn for the digits case
                log(f"{name} skipped: {exc} (pip install scikit-learn)")
                continue
            pts = case["points"]
            rows.append(run_case(case, "crown", 400, pts, log, executor))
            rows.append(run_case(case, "fastlin", 400, pts, log, executor))
            if name == "brusselator5":
                rows.append(run_case(case, "crown", 150, pts, log, executor))
            if n_opt:
                rows.append(run_case(case, "crown", 400, pts[:n_opt], log, executor))
                rows[-1]["relaxation"] = "crown (crown-opt points)"
                rows.append(run_case(case, "crown-opt", 400, pts[:n_opt], log, executor))
    except KeyboardInterrupt:
        log(f"interrupted: writing the {len(rows)} rows that finished")
    finally:
        executor.close()
    extra["load_average_end"] = os.getloadavg()
    path = write_results("box_bench", rows, extra)
    print()
    print(markdown_table(rows, ["case", "steps", "relaxation", "iterations", "points",
                                "certified", "volume_ratio_geomean", "ratio_per_dim",
                                "mean_log_volume",
                                "mean_log_volume_uniform", "seconds_per_point",
                                "cpu_seconds_per_point"]))
    print(f"\nwrote {path}; load average {load_start[0]:.1f} -> {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
