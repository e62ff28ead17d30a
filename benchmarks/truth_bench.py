"""Truth benchmark: certified model error vs the sampled error, and the plant's reachable sets
vs the surrogate's vs runs of the true system.

Brusselator (a = 1, b = 3, exact flow over dt = 0.1): a demo-like residual 2-32-32-2 surrogate
trained here for a fixed number of epochs on the demo's data (14000 uniform pairs on
[0, 4] x [0, 5] plus 120 trajectories of 50 steps), or a stored model (--model).

1. Model error: the certified per-state bound e (dynid.certify.model_error) on the box the
   10-step plant analysis needs and on the whole training domain, against the largest error
   of the true flow (CVODES) on N uniform samples: ratio e / sampled (goal < 3) and seconds
   (goal < 60 s on 2 cores). Side by side, the same branch and bound with the issue's plain
   per-cell bound (L_true + L_net) h / 2 instead of the interval Jacobian of the difference,
   under the same time limit.
2. Reach, 10 steps from the demo's initial box [1.8, 2.2] x [2.25, 2.75] (CROWN, 4 x 4 cells):
   widths of the plant's set (surrogate + certified e per step), of the surrogate's set and
   of the sampled true runs at the last step, and how many true runs lie outside each set
   (the surrogate's set is not a statement about the plant).

Run: ``python benchmarks/truth_bench.py`` (full: 400 epochs, 10^6 samples, 10^5 true runs;
the coordinator's idle-machine run) or ``--quick`` (40 epochs, 10^5 samples, < 2 min).
Writes benchmarks/results/truth_bench.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, write_results  # noqa: E402

X0 = (np.array([1.8, 2.25]), np.array([2.2, 2.75]))
DOMAIN = (np.array([0.0, 0.0]), np.array([4.0, 5.0]))


def brusselator_model(epochs: int, path=None):
    """The stored model at ``path``, else a demo-like surrogate trained for ``epochs``."""
    if path is not None:
        from dynid.modelfile import load_model

        return load_model(path), str(path), 0.0
    from dynid.stages.data import simulate_dataset
    from dynid.train import train

    t0 = time.perf_counter()
    ds = simulate_dataset("brusselator", params={"a": 1.0, "b": 3.0}, dt=0.1, method="flow",
                          samples=14000, trajectory_samples=120, steps=50, lo=DOMAIN[0],
                          hi=DOMAIN[1], seed=0)
    net, summ = train(ds, arch="residual", hidden=(32, 32), epochs=epochs, batch_size=128,
                      lr=5e-3, schedule="cosine", seed=0, progress=False)
    return net, (f"residual 2-32-32-2, {epochs} epochs (one-step rmse "
                 f"{summ['one_step_rmse']:.2g})"), time.perf_counter() - t0


def sampled_max(net, system, lo, hi, n, seed=1):
    X = np.random.default_rng(seed).uniform(lo, hi, (n, lo.size))
    return np.abs(system.step_map(X, 0.1) - net.forward(X)).max(axis=0)


def error_row(label, res, seen, extra):
    return {"box": label, "slopes": res.info["slopes"],
            "e": np.round(res.e, 6).tolist(), "sampled_max": np.round(seen, 6).tolist(),
            "ratio": float(np.max(res.e / seen)), "seconds": res.seconds,
            "cells": res.info["cells"], "stop": res.info["stop"], "status": res.status.value,
            "substeps": res.info["flow_substeps"], **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="40 epochs, 1e5 samples (< 2 min)")
    ap.add_argument("--model", type=Path, default=None, help="a stored Brusselator model")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--time-limit", type=float, default=None,
                    help="seconds per model-error bound (default 300, 60 with --quick)")
    args = ap.parse_args()
    from dynid.certify.model_error import model_error
    from dynid.systems import get_system
    from reach.plant import plant_reach, true_runs

    load0 = os.getloadavg()
    quick = args.quick
    epochs = args.epochs or (40 if quick else 400)
    n_samples = 100_000 if quick else 1_000_000
    n_runs = 10_000 if quick else 100_000
    limit = args.time_limit or (60.0 if quick else 300.0)
    rtol = 0.3 if quick else 0.1
    system = get_system("brusselator", a=1.0, b=3.0)
    net, model_desc, train_s = brusselator_model(epochs, args.model)
    common = {"system": "brusselator", "map": "flow", "dt": 0.1, "model": model_desc}
    rows, reach_rows = [], []

    # 1 + 2: the plant analysis certifies e on the box its sets need
    t0 = time.perf_counter()
    run = plant_reach(net, X0[0], X0[1], 10, engine="crown", partitions=4, samples=100,
                      model_error_opts={"rtol": rtol, "time_limit": limit})
    plant_s = time.perf_counter() - t0
    box = run.error_box
    seen_box = sampled_max(net, system, box[0], box[1], n_samples)
    rows.append(error_row(f"plant box {np.round(box[0], 3).tolist()}-"
                          f"{np.round(box[1], 3).tolist()}", run.model_error, seen_box,
                          common))
    lip = model_error(net, system, box[0], box[1], rtol=rtol,
                      time_limit=limit / 2 if quick else limit, slopes="lipschitz")
    rows.append(error_row("plant box (same)", lip, seen_box, common))
    if not quick:
        dom = model_error(net, system, DOMAIN[0], DOMAIN[1], rtol=rtol, time_limit=limit)
        seen_dom = sampled_max(net, system, DOMAIN[0], DOMAIN[1], n_samples)
        rows.append(error_row("training domain [0, 0]-[4, 5]", dom, seen_dom, common))
    for r in rows:
        print(f"  {r['box']} {r['slopes']}: e {r['e']}, ratio {r['ratio']:.3g}, "
              f"{r['seconds']:.1f} s", file=sys.stderr)

    x0 = np.random.default_rng(3).uniform(X0[0], X0[1], (n_runs, 2))
    truth = true_runs(system, 0.1, "flow", x0, 10, check=run.dataset)
    sur_out = true_runs(system, 0.1, "flow", x0, 10, check=run.surrogate).outside
    K = 10
    w = lambda ds: ds.box_hi.values[K] - ds.box_lo.values[K]  # noqa: E731
    w_true = truth.inner_hi[K] - truth.inner_lo[K]
    reach_rows.append({**common, "steps": K, "engine": "crown", "cells": 16,
                       "e": np.round(run.model_error.e, 6).tolist(),
                       "plant_width": np.round(w(run.dataset), 4).tolist(),
                       "surrogate_width": np.round(w(run.surrogate), 4).tolist(),
                       "true_width": np.round(w_true, 4).tolist(),
                       "plant_over_true": np.round(w(run.dataset) / w_true, 3).tolist(),
                       "surrogate_over_true": np.round(w(run.surrogate) / w_true, 3).tolist(),
                       "true_runs": n_runs, "outside_plant": truth.outside,
                       "outside_surrogate": sur_out,
                       "unknown_from": int(run.dataset.attrs["plant_unknown_from"]),
                       "plant_seconds": plant_s})
    load1 = os.getloadavg()
    extra = {"quick": quick, "epochs": epochs, "samples": n_samples, "train_seconds": train_s,
             "loadavg_start": load0, "loadavg_end": load1,
             "reach": reach_rows}
    path = write_results("truth_bench", rows, extra)
    print(f"\nModel error (goal: ratio < 3, < 60 s); load average {load0[0]:.2f} -> "
          f"{load1[0]:.2f}\n")
    print(markdown_table(rows, ["box", "slopes", "e", "sampled_max", "ratio", "seconds",
                                "cells", "stop"]))
    print("\nReach, 10 steps from [1.8, 2.2] x [2.25, 2.75]\n")
    print(markdown_table(reach_rows, ["e", "plant_width", "surrogate_width", "true_width",
                                      "plant_over_true", "surrogate_over_true",
                                      "outside_plant", "outside_surrogate", "true_runs"]))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
