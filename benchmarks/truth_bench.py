"""Truth benchmark: certified model error vs the sampled error, and the plant's reachable sets
vs the surrogate's vs runs of the true system.

Two systems:

- **Brusselator** (a = 1, b = 3, exact flow over dt = 0.1): a demo-like residual 2-32-32-2
  surrogate trained here for a fixed number of epochs on the demo's data (14000 uniform pairs
  on [0, 4] x [0, 5] plus 120 trajectories of 50 steps), or a stored model (--model).
  10 steps from the demo's initial box [1.8, 2.2] x [2.25, 2.75] (CROWN, 4 x 4 cells).
- **Pendulum closed loop** (examples/pendulum_closed_loop.toml: torque pendulum identified
  from 300 random-step experiments, residual [3, 32, 32, 2] surrogate, 150 epochs, ReLU
  controller distilled from LQR with |tau| <= 2, dt = 0.05), built here by the example's own
  simulate / train / controller stages, or read from a finished run (--pendulum-dir).
  10 steps from [3.04, 3.24] x [-0.2, 0.2] (CROWN one-shot, 8 x 8 cells as in the example).

For each:

1. Model error: the certified per-state bound e (dynid.certify.model_error) on the box B the
   10-step plant analysis needs (for the closed loop: B x U, U the saturated controller's
   image of B), against the largest error of the true flow (CVODES) on N uniform samples of
   that box: ratio e / sampled (goal < 3) and seconds (goal < 60 s on 2 cores; wall and CPU
   seconds, the machine being shared). Side by side,
   the same branch and bound with the issue's plain per-cell bound (L_true + L_net) h / 2
   instead of the interval Jacobian of the difference, under the same time limit (a quarter
   of it with --quick).
2. Reach, 10 steps: widths of the plant's set (surrogate + certified e per step), of the
   surrogate's set and of the sampled true runs (for the loop: the true pendulum with the
   controller and saturation in the loop) at the last step, and how many true runs lie
   outside each set (the surrogate's set is not a statement about the plant).

Run: ``python benchmarks/truth_bench.py`` (full: 400 Brusselator epochs, 10^6 samples,
10^5 true runs; the coordinator's idle-machine run) or ``--quick`` (40 Brusselator epochs,
10^5 samples, 10^4 runs; < 2 min on an idle machine). ``--only brusselator|pendulum``.
Writes benchmarks/results/truth_bench.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, write_results  # noqa: E402

K = 10
BRUSS_X0 = (np.array([1.8, 2.25]), np.array([2.2, 2.75]))
BRUSS_DOMAIN = (np.array([0.0, 0.0]), np.array([4.0, 5.0]))
PEND_X0 = (np.array([3.04, -0.2]), np.array([3.24, 0.2]))


# ---------------------------------------------------------------------- the models
def brusselator_model(epochs: int, path=None):
    """The stored model at ``path``, else a demo-like surrogate trained for ``epochs``."""
    if path is not None:
        from dynid.modelfile import load_model

        return load_model(path), str(path), 0.0
    from dynid.stages.data import simulate_dataset
    from dynid.train import train

    t0 = time.perf_counter()
    ds = simulate_dataset("brusselator", params={"a": 1.0, "b": 3.0}, dt=0.1, method="flow",
                          samples=14000, trajectory_samples=120, steps=50,
                          lo=BRUSS_DOMAIN[0], hi=BRUSS_DOMAIN[1], seed=0)
    net, summ = train(ds, arch="residual", hidden=(32, 32), epochs=epochs, batch_size=128,
                      lr=5e-3, schedule="cosine", seed=0, progress=False)
    return net, (f"residual 2-32-32-2, {epochs} epochs (one-step rmse "
                 f"{summ['one_step_rmse']:.2g})"), time.perf_counter() - t0


def pendulum_loop(run_dir=None):
    """(plant, controller, saturation, description, seconds) of the example's closed loop:
    from a finished run directory, or by running its simulate / train / controller stages."""
    from dynid.formats import load_network
    from dynid.modelfile import load_model

    t0 = time.perf_counter()
    if run_dir is None:
        from dynid.pipeline import run_pipeline

        text = (ROOT / "examples" / "pendulum_closed_loop.toml").read_text()
        lines = [('stages = ["simulate", "train", "controller"]'
                  if ln.startswith("stages =") else ln) for ln in text.splitlines()]
        run_dir = Path(tempfile.mkdtemp(prefix="truth_bench_"))
        cfg = run_dir / "pendulum.toml"
        cfg.write_text("\n".join(lines) + "\n")
        run_pipeline(cfg, out_dir=run_dir, log=lambda m: None)
    run_dir = Path(run_dir)
    plant = load_model(run_dir / "model.h5")
    ctrl = load_network(run_dir / "controller.h5")
    sat = ctrl.meta["saturation"]
    a = plant.meta.get("architecture") or {}
    sizes = [a.get("n_state", 2) + a.get("n_input", 1), *a.get("hidden", []),
             a.get("n_state", 2)]
    desc = (f"example pendulum_closed_loop: {a.get('kind', '')} plant "
            f"{'-'.join(map(str, sizes))}, ReLU controller, |tau| <= {sat['hi'][0]:g}")
    return plant, ctrl, (sat["lo"], sat["hi"]), desc, time.perf_counter() - t0


# ---------------------------------------------------------------------- the measurements
def sampled_max(plant, system, lo, hi, u_lo, u_hi, dt, n, seed=1):
    """The largest error of the surrogate against the true flow (CVODES) on n uniform points
    of the box [lo, hi] x [u_lo, u_hi]."""
    Z_lo, Z_hi = np.r_[lo, u_lo], np.r_[hi, u_hi]
    Z = np.random.default_rng(seed).uniform(Z_lo, Z_hi, (n, Z_lo.size))
    n_x = lo.size
    kw = {"u": Z[:, n_x:]} if Z_lo.size > n_x else {}
    return np.abs(system.step_map(Z[:, :n_x], dt, **kw) - plant.forward(Z)).max(axis=0)


def error_row(label, res, seen, extra):
    return {"box": label, "slopes": res.info["slopes"],
            "e": np.round(res.e, 6).tolist(), "sampled_max": np.round(seen, 6).tolist(),
            "ratio": float(np.max(res.e / seen)), "seconds": res.seconds,
            "cpu_seconds": res.info["cpu_seconds"], "cells": res.info["cells"],
            "stop": res.info["stop"], "status": res.status.value,
            "substeps": res.info["flow_substeps"], **extra}


def box_label(lo, hi):
    return f"{np.round(lo, 3).tolist()}-{np.round(hi, 3).tolist()}"


def analyse(name, plant, system, dt, x0, reach_opts, cfg, controller=None, sat=(None, None),
            extra_boxes=()):
    """Model-error rows and the reach row of one system (see the module docstring)."""
    from dynid.certify.model_error import model_error
    from reach.plant import ClosedLoop, plant_reach, true_runs

    common = {"system": name, "map": "flow", "dt": dt, "model": cfg["model"]}
    loop = None if controller is None else ClosedLoop(plant, controller, *sat)
    t0 = time.perf_counter()
    run = plant_reach(plant, x0[0], x0[1], K, controller=loop, samples=100,
                      model_error_opts={"rtol": cfg["rtol"], "time_limit": cfg["limit"]},
                      **reach_opts)
    plant_s = time.perf_counter() - t0
    me = run.model_error
    box = run.error_box
    seen = sampled_max(plant, system, box[0], box[1], me.u_lo, me.u_hi, dt, cfg["samples"])
    label = f"plant box {box_label(*box)}" + (
        f" x U {box_label(me.u_lo, me.u_hi)}" if me.u_lo.size else "")
    rows = [error_row(label, me, seen, common)]
    lip = model_error(plant, system, box[0], box[1], me.u_lo, me.u_hi, dt=dt, rtol=cfg["rtol"],
                      time_limit=cfg["lip_limit"], slopes="lipschitz")
    rows.append(error_row("plant box (same)", lip, seen, common))
    for label, (lo, hi, u_lo, u_hi) in extra_boxes:
        res = model_error(plant, system, lo, hi, u_lo, u_hi, dt=dt, rtol=cfg["rtol"],
                          time_limit=cfg["limit"])
        rows.append(error_row(label, res, sampled_max(plant, system, lo, hi, res.u_lo,
                                                      res.u_hi, dt, cfg["samples"]), common))
    for r in rows:
        print(f"  {name} {r['box']} {r['slopes']}: e {r['e']}, ratio {r['ratio']:.3g}, "
              f"{r['seconds']:.1f} s", file=sys.stderr)

    x0s = np.random.default_rng(3).uniform(x0[0], x0[1], (cfg["runs"], x0[0].size))
    inputs = None if loop is None else loop.inputs
    truth = true_runs(system, dt, "flow", x0s, K, check=run.dataset, inputs=inputs)
    sur_out = true_runs(system, dt, "flow", x0s, K, check=run.surrogate, inputs=inputs).outside
    k_known = int(run.dataset.attrs["plant_unknown_from"])
    w = lambda ds: ds.box_hi.values[K] - ds.box_lo.values[K]  # noqa: E731
    w_true = truth.inner_hi[K] - truth.inner_lo[K]
    reach_row = {**common, "steps": K, "engine": reach_opts.get("engine", "crown"),
                 "method": reach_opts.get("method", "one-shot"),
                 "cells": int(run.dataset.sizes["cell"]),
                 "e": np.round(me.e, 6).tolist(),
                 "plant_width": np.round(w(run.dataset), 4).tolist(),
                 "surrogate_width": np.round(w(run.surrogate), 4).tolist(),
                 "true_width": np.round(w_true, 4).tolist(),
                 "plant_over_true": np.round(w(run.dataset) / w_true, 3).tolist(),
                 "surrogate_over_true": np.round(w(run.surrogate) / w_true, 3).tolist(),
                 "true_runs": cfg["runs"], "outside_plant": truth.outside,
                 "outside_surrogate": sur_out, "unknown_from": k_known,
                 "tries": run.tries, "plant_seconds": plant_s}
    return rows, reach_row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="40 Brusselator epochs, 1e5 samples, 1e4 true runs (< 2 min)")
    ap.add_argument("--only", choices=["brusselator", "pendulum"], default=None)
    ap.add_argument("--model", type=Path, default=None, help="a stored Brusselator model")
    ap.add_argument("--pendulum-dir", type=Path, default=None,
                    help="a finished run of examples/pendulum_closed_loop.toml (model.h5, "
                         "controller.h5) instead of building one")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--time-limit", type=float, default=None,
                    help="seconds per model-error bound (default 300, 60 with --quick)")
    args = ap.parse_args()
    from dynid.systems import get_system

    load0 = os.getloadavg()
    quick = args.quick
    epochs = args.epochs or (40 if quick else 400)
    cfg = {"samples": 100_000 if quick else 1_000_000, "runs": 10_000 if quick else 100_000,
           "limit": args.time_limit or (60.0 if quick else 300.0),
           "rtol": 0.3 if quick else 0.1}
    cfg["lip_limit"] = cfg["limit"] / 4 if quick else cfg["limit"]
    rows, reach_rows, build = [], [], {}

    if args.only in (None, "brusselator"):
        net, desc, build["brusselator_train_seconds"] = brusselator_model(epochs, args.model)
        extra = () if quick else [("training domain [0, 0]-[4, 5]",
                                   (*BRUSS_DOMAIN, None, None))]
        r, rr = analyse("brusselator", net, get_system("brusselator", a=1.0, b=3.0), 0.1,
                        BRUSS_X0, {"engine": "crown", "partitions": 4},
                        {**cfg, "model": desc}, extra_boxes=extra)
        rows += r
        reach_rows.append(rr)
    if args.only in (None, "pendulum"):
        plant, ctrl, sat, desc, build["pendulum_build_seconds"] = pendulum_loop(
            args.pendulum_dir)
        params = plant.meta.get("params") or {}
        r, rr = analyse("pendulum closed loop", plant, get_system("pendulum_torque", **params),
                        float(plant.meta["dt"]), PEND_X0,
                        {"engine": "crown", "method": "one-shot", "partitions": 8},
                        {**cfg, "model": desc}, controller=ctrl, sat=sat)
        rows += r
        reach_rows.append(rr)

    load1 = os.getloadavg()
    extra = {"quick": quick, "epochs": epochs, "samples": cfg["samples"], **build,
             "loadavg_start": load0, "loadavg_end": load1, "reach": reach_rows}
    path = write_results("truth_bench", rows, extra)
    print(f"\nModel error (goal: ratio < 3, < 60 s); load average {load0[0]:.2f} -> "
          f"{load1[0]:.2f}\n")
    print(markdown_table(rows, ["system", "box", "slopes", "e", "sampled_max", "ratio",
                                "seconds", "cpu_seconds", "cells", "stop"]))
    print(f"\nReach, {K} steps: widths at step {K}\n")
    print(markdown_table(reach_rows, ["system", "e", "plant_width", "surrogate_width",
                                      "true_width", "plant_over_true", "surrogate_over_true",
                                      "outside_plant", "outside_surrogate", "true_runs",
                                      "plant_seconds"]))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
