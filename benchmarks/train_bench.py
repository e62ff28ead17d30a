"""Training benchmark: Brusselator flow-map surrogates, time to a one-step RMSE target.

Setup (issue 2): Brusselator a = 1, b = 3, exact flow, dt = 0.1, domain [0, 4] x [0, 5].
Residual 2-32-32-2 surrogate (ours) and, side by side in the same process, a plain MLP
2-32-32-2 (x -> x_next) as the baseline, plus the residual surrogate trained on the same number
of pairs of which 30 % lie along 50-step trajectories from the box. For each: wall time until the validation one-step
RMSE reaches 1e-3 (None when the training budget ends first), the one-step RMSE on fresh test
pairs, and the 50-step rollout NRMSE from 20 held-out initial states. Also the one-step pair
throughput of the exact flow, CasADi (batched CVODES) vs scipy solve_ivp (per sample).

Run:  python benchmarks/train_bench.py [--quick]
Writes benchmarks/results/train_bench.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import markdown_table, write_results  # noqa: E402

TARGET = 1e-3
COLS = ["system", "arch", "seconds_to_target", "one_step_rmse", "rollout_nrmse",
        "pairs_per_s_casadi", "pairs_per_s_scipy", "train_seconds", "train_cpu_seconds",
        "epochs", "best_val_rmse", "rollout_fit_percent"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="reduced run (< 2 minutes)")
    ap.add_argument("--budget", type=float, default=None,
                    help="training wall-clock budget per model in seconds (default 60; "
                         "quick 15)")
    ap.add_argument("--samples", type=int, default=None,
                    help="training pairs (default 20000; quick 8000)")
    args = ap.parse_args(argv)

    import numpy as np

    from dynid.metrics import heldout_initial_states, one_step_rmse, rollout_metrics
    from dynid.simulate import one_step_pairs, throughput
    from dynid.stages.data import simulate_dataset
    from dynid.systems import get_system
    from dynid.train import train

    budget = args.budget or (15.0 if args.quick else 60.0)
    n_samples = args.samples or (8000 if args.quick else 20000)
    lo, hi = np.array([0.0, 0.0]), np.array([4.0, 5.0])
    system = get_system("brusselator", a=1.0, b=3.0)
    dt = 0.1
    load_before = os.getloadavg()[0]

    t0 = time.perf_counter()
    ds = one_step_pairs(system, n_samples, dt, "flow", lo=lo, hi=hi, seed=0)
    sim_seconds = time.perf_counter() - t0
    test = one_step_pairs(system, 4000, dt, "flow", lo=lo, hi=hi, seed=1)
    x0 = heldout_initial_states(lo, hi, 20, seed=12345)
    tp = throughput(system, n=1000 if args.quick else 4000, dt=dt,
                    n_scipy=50 if args.quick else 200)
    print(f"simulated {n_samples} pairs in {sim_seconds:.1f} s; throughput casadi "
          f"{tp['pairs_per_s_casadi']:.0f}/s, scipy {tp['pairs_per_s_scipy']:.0f}/s "
          f"(max diff {tp['max_abs_diff']:.1e})", flush=True)

    # the same number of pairs, 30 % of them along 50-step trajectories from the box, which
    # cover the region the rollouts visit (they leave the box: the limit cycle reaches x = 7)
    n_traj = int(0.3 * n_samples) // 50
    ds_mixed = simulate_dataset("brusselator", params={"a": 1.0, "b": 3.0}, dt=dt,
                                samples=n_samples - 50 * n_traj, lo=lo, hi=hi, seed=0,
                                trajectory_samples=n_traj, steps=50)
    variants = [("residual", "", ds), ("mlp", "", ds),
                ("residual", " + trajectory pairs", ds_mixed)]
    rows = []
    for arch, label, data in variants:
        c0 = time.process_time()
        net, s = train(data, arch=arch, hidden=(32, 32), target_rmse=TARGET, max_seconds=budget,
                       progress=False, seed=0,
                       log=lambda m: print(f"  [{arch}] {m}", flush=True))
        cpu = time.process_time() - c0
        rm = rollout_metrics(net, system, x0, 50, dt, "flow")
        row = {"system": "brusselator(a=1,b=3) flow dt=0.1", "arch": f"{arch} 2-32-32-2{label}",
               "seconds_to_target": s["seconds_to_target"],
               "one_step_rmse": one_step_rmse(net, test["x"].values, test["x_next"].values),
               "rollout_nrmse": rm["nrmse"], "rollout_fit_percent": rm["fit_percent"],
               "pairs_per_s_casadi": tp["pairs_per_s_casadi"],
               "pairs_per_s_scipy": tp["pairs_per_s_scipy"],
               "train_seconds": s["seconds"], "train_cpu_seconds": cpu,
               "epochs": s["epochs"], "best_val_rmse": s["best_val_rmse"],
               "stopped": s["stopped"], "target_rmse": TARGET, "budget_s": budget,
               "n_train_pairs": s["n_train"], "batch_size": s["batch_size"], "lr": s["lr"],
               "schedule": s["schedule"], "dtype": s["dtype"],
               "throughput_max_abs_diff": tp["max_abs_diff"]}
        rows.append(row)
        print(f"  {arch}: one-step rmse {row['one_step_rmse']:.3g}, rollout nrmse "
              f"{100 * rm['nrmse']:.2f} %, target reached after {s['seconds_to_target']} s",
              flush=True)
    extra = {"quick": args.quick, "load_average_before": load_before,
             "load_average_after": os.getloadavg()[0], "simulate_seconds": sim_seconds}
    path = write_results("train_bench", rows, extra)
    print(markdown_table(rows, COLS[:7] + ["train_seconds", "epochs"]))
    print(f"\nwrote {path} (load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
