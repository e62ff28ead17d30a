"""System-identification benchmark: plants with inputs identified from excitation experiments.

Setup (issue 11): for the damped pendulum with torque and the cart-pole, simulate training
experiments (initial states uniform in a box, uniform random input steps held 4-20 samples,
exact flow with zero-order hold, dt = 0.05 s) and, with another seed, held-out experiments of
100 steps. Fit, on the same training experiments:

- ours: a residual ReLU surrogate x + dt N(x, u) (one-step loss, a fixed number of epochs);
- the baseline a control engineer tries first: a linear ARX / least-squares model
  x[k+1] = A x[k] + B u[k] + c.

Both run side by side in this process. Each is scored by a 100-step free run from every
held-out experiment's initial state under its recorded inputs: fit % per state
(100 (1 - ||y - yhat|| / ||y - mean(y)||), pooled over the held-out experiments: the compare
convention), the median of the per-experiment fits, and the NRMSE. Goals: >= 95 % per state for
the pendulum, >= 90 % per state for the cart-pole. Training seconds are wall-clock on the
machine as loaded (see load_1min_start / load_1min_end).

Run:  python benchmarks/sysid_bench.py            (full: 200 experiments x 200 steps each)
      python benchmarks/sysid_bench.py --quick    (reduced, < 2 minutes)
Writes benchmarks/results/sysid_bench.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import markdown_table, write_results  # noqa: E402

COLS = ["system", "model", "fit_percent_per_state", "fit_median_per_state", "nrmse_per_state",
        "goal_percent", "goal_met", "train_seconds", "epochs", "n_train_pairs"]

# experiment design per plant: initial-state box, input box, hidden widths, goal (fit %)
PLANTS = {
    "pendulum_torque": {"lo": [-2.5, -1.5], "hi": [2.5, 1.5], "u_lo": [-2.0], "u_hi": [2.0],
                        "hidden": (32, 32), "goal": 95.0},
    "cart_pole": {"lo": [-1.0, -1.0, 2.1416, -1.0], "hi": [1.0, 1.0, 4.1416, 1.0],
                  "u_lo": [-5.0], "u_hi": [5.0], "hidden": (64, 64), "goal": 90.0},
}
DT = 0.05
HOLD = (4, 20)
HORIZON = 100


def run_plant(name: str, cfg: dict, n_exp: int, steps: int, epochs: int, n_test: int,
              seed: int = 0) -> list[dict]:
    import numpy as np

    from dynid.simulate import experiments
    from dynid.sysid import arx_fit, evaluate_experiments
    from dynid.train import train

    design = dict(lo=cfg["lo"], hi=cfg["hi"], u_lo=cfg["u_lo"], u_hi=cfg["u_hi"],
                  signal="random_steps", signal_options={"hold": HOLD})
    t0 = time.perf_counter()
    data = experiments(name, n_exp, steps, DT, seed=seed, **design)
    held = experiments(name, n_test, HORIZON, DT, seed=seed + 1000, **design)
    sim_seconds = time.perf_counter() - t0
    rows = []
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    net, summary = train(data, arch="residual", hidden=cfg["hidden"], epochs=epochs,
                         batch_size=256, lr=3e-3, val_fraction=0.1, seed=seed, progress=False)
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    t0 = time.perf_counter()
    arx = arx_fit(data)
    arx_s = time.perf_counter() - t0
    for label, model, secs, cpu, ep in (
            (f"residual ReLU {'-'.join(map(str, cfg['hidden']))}", net, train_s, train_cpu,
             summary["epochs"]),
            ("linear ARX (least squares)", arx, arx_s, arx_s, None)):
        r = evaluate_experiments(model, held, steps=HORIZON)
        fits = r["fit_percent_per_state"]
        rows.append({"system": name, "model": label, "states": r["state_names"],
                     "fit_percent_per_state": [round(f, 2) for f in fits],
                     "fit_median_per_state": [round(f, 2) for f in
                                              r["fit_percent_median_per_state"]],
                     "fit_min_per_state": [round(float(f), 2) for f in
                                           np.min(r["fit_percent_per_experiment"], axis=0)],
                     "nrmse_per_state": [round(v, 4) for v in r["nrmse_per_state"]],
                     "goal_percent": cfg["goal"], "goal_met": bool(min(fits) >= cfg["goal"]),
                     "train_seconds": round(secs, 2), "train_cpu_seconds": round(cpu, 2),
                     "epochs": ep, "n_train_experiments": n_exp, "steps_per_experiment": steps,
                     "n_train_pairs": int(n_exp * steps), "n_heldout": n_test,
                     "horizon": HORIZON, "dt": DT, "hold": list(HOLD), "design": design,
                     "one_step_val_rmse": summary["best_val_rmse"] if model is net else None,
                     "simulate_seconds": round(sim_seconds, 2)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="reduced run (< 2 minutes)")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default 150; "
                                                              "quick 40)")
    ap.add_argument("--systems", nargs="+", default=list(PLANTS), choices=list(PLANTS))
    args = ap.parse_args(argv)

    load_start = os.getloadavg()
    n_exp, steps = (60, 150) if args.quick else (200, 200)
    epochs = args.epochs or (40 if args.quick else 150)
    n_test = 20 if args.quick else 30
    rows = []
    for name in args.systems:
        rows += run_plant(name, PLANTS[name], n_exp, steps, epochs, n_test)
    load_end = os.getloadavg()
    for r in rows:
        r.update(load_1min_start=load_start[0], load_1min_end=load_end[0],
                 quick=bool(args.quick))
    path = write_results("sysid_bench", rows, {"quick": bool(args.quick),
                                                "load_start": load_start, "load_end": load_end})
    print(markdown_table(rows, COLS))
    print(f"\nload average (1 min) {load_start[0]:.2f} at start, {load_end[0]:.2f} at end; "
          f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
