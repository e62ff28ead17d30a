"""CPL benchmark: invertible-by-construction CPL surrogates vs residual surrogates.

For three flow maps (dt = 0.1, exact flow) — the damped pendulum (catalogue ``pendulum``,
c = 0.5: every trajectory converges to a rest state), Van der Pol (mu = 1: an unstable origin
and a limit cycle) and the demo Brusselator (a = 1, b = 3, with the demo's trajectory pairs) —
train side by side, on the same pairs, for the same number of epochs and with (nearly) the
same number of trainable parameters:

- residual: x + dt N(x), N = 2-32-32-2 (1218 parameters);
- cpl: K convex potential blocks of equal width (c = 0.9, a learnt scalar gain, learnt step
  fractions starting at 0.1), the width chosen so that the parameter count is at most the
  residual's. Adam with the cosine schedule, lr 5e-3 for the residual (its best) and 1e-2
  for CPL (``--cpl-lr``; 5e-3 fitted the pendulum better in a side run, see the README).

Measured: one-step RMSE on fresh pairs, 50-step rollout NRMSE from 20 held-out initial states
(in the middle half of the box, so the true runs stay in the data region), training seconds;
and seconds to certify invertibility: analytically for the CPL surrogate
(:func:`dynid.certify.invertible_analytic`, on all of R^n) vs the 2 x 2 cell-pair MIP on the
residual surrogate (:func:`dynid.certify.invertible_on`, on the box, with a time limit; a
time-limited run gives a lower bound on the ratio). Goal (issue 13): certification >= 1000x
faster; fit within 2x of the residual surrogate on the contracting system (the pendulum).

Run:  python benchmarks/cpl_bench.py            (full: 20000 pairs, 200 epochs, MIP <= 600 s)
      python benchmarks/cpl_bench.py --quick    (< 2 minutes: 4000 pairs, 20 epochs, MIP <= 20 s)
Writes benchmarks/results/cpl_bench.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import markdown_table, write_results  # noqa: E402

SYSTEMS = {
    # name: (catalogue name, params, data box lo, hi, trajectory pairs as in the demo)
    "pendulum": ("pendulum", {}, [-3.0, -5.0], [3.0, 5.0], False),
    "van_der_pol": ("van_der_pol", {"mu": 1.0}, [-3.0, -3.0], [3.0, 3.0], False),
    "brusselator": ("brusselator", {"a": 1.0, "b": 3.0}, [0.0, 0.0], [4.0, 5.0], True),
}
COLS = ["system", "arch", "parameters", "epochs", "one_step_rmse", "rmse_ratio",
        "rollout_nrmse", "certify", "certify_status", "certify_seconds", "speedup"]


def residual_parameters(n: int, hidden) -> int:
    sizes = [n, *hidden, n]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def cpl_parameters(n: int, blocks: int, width: int, gain: str) -> int:
    """Trainable parameters: W and b of every block, the offset beta and the gain."""
    return blocks * width * (n + 1) + n + {"none": 0, "scalar": 1, "matrix": n * n}[gain]


def cpl_width(n: int, blocks: int, budget: int, gain: str) -> int:
    """Largest equal block width whose CPL parameter count is at most ``budget``."""
    return max(1, (budget - cpl_parameters(n, blocks, 0, gain)) // (blocks * (n + 1)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="reduced run (< 2 minutes)")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    ap.add_argument("--epochs", type=int, default=None, help="default 200 (quick 20)")
    ap.add_argument("--samples", type=int, default=None, help="default 20000 (quick 4000)")
    ap.add_argument("--blocks", type=int, default=8, help="CPL blocks (default 8)")
    ap.add_argument("--gain", default="scalar", choices=["none", "scalar", "matrix"])
    ap.add_argument("--cpl-lr", type=float, default=1e-2,
                    help="CPL learning rate (default 1e-2; the residual's is 5e-3)")
    ap.add_argument("--mip-time", type=float, default=None,
                    help="time limit of the residual's cell-pair MIP (default 600; quick 20)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from dynid.certify import invertible_analytic, invertible_on
    from dynid.metrics import heldout_initial_states, one_step_rmse, rollout_metrics
    from dynid.simulate import one_step_pairs
    from dynid.stages.data import simulate_dataset
    from dynid.systems import get_system
    from dynid.train import train

    torch.set_num_threads(1)
    epochs = args.epochs or (20 if args.quick else 200)
    n_samples = args.samples or (4000 if args.quick else 20000)
    mip_time = args.mip_time or (20.0 if args.quick else 600.0)
    dt, hidden = 0.1, (32, 32)
    load_before = os.getloadavg()
    rows = []
    for key in [s.strip() for s in args.systems.split(",") if s.strip()]:
        name, params, lo, hi, traj = SYSTEMS[key]
        system = get_system(name, **params)
        lo, hi = np.array(lo), np.array(hi)
        n_traj = int(0.3 * n_samples) // 50 if traj else 0
        ds = simulate_dataset(name, params=params, dt=dt, samples=n_samples - 50 * n_traj,
                              lo=lo, hi=hi, seed=0, trajectory_samples=n_traj, steps=50)
        test = one_step_pairs(system, 4000, dt, "flow", lo=lo, hi=hi, seed=1)
        mid_lo, mid_hi = (3 * lo + hi) / 4, (lo + 3 * hi) / 4
        x0 = heldout_initial_states(mid_lo, mid_hi, 20, seed=12345)
        budget = residual_parameters(2, hidden)
        width = cpl_width(2, args.blocks, budget, args.gain)
        label = f"{system.name}({', '.join(f'{k}={v:g}' for k, v in system.params.items())})"
        base = None
        for arch in ("residual", "cpl"):
            kw = dict(hidden=hidden, lr=5e-3) if arch == "residual" else dict(
                hidden=(width,) * args.blocks, lr=args.cpl_lr,
                arch_options={"gain": args.gain, "c": 0.9})
            net, s = train(ds, arch=arch, epochs=epochs, progress=False, seed=0, **kw)
            n_par = (budget if arch == "residual" else
                     cpl_parameters(2, args.blocks, width, args.gain))
            rm = rollout_metrics(net, system, x0, 50, dt, "flow")
            rmse = one_step_rmse(net, test["x"].values, test["x_next"].values)
            if arch == "residual":
                base = rmse
                cert = invertible_on(net, lo, hi, cells=2, time_limit=mip_time, threads=1)
                how = "cell-pair MIP 2x2 on the box"
            else:
                cert = invertible_analytic(net)
                how = "analytic (R^n)"
            row = {"system": label, "arch": arch if arch == "residual" else
                   f"cpl {args.blocks}x{width} gain={args.gain}",
                   "parameters": n_par, "epochs": s["epochs"], "one_step_rmse": rmse,
                   "rmse_ratio": rmse / base, "rollout_nrmse": rm["nrmse"],
                   "rollout_fit_percent": rm["fit_percent"], "certify": how,
                   "certify_status": cert.status.value, "certify_seconds": cert.seconds,
                   "certify_bound": cert.bound, "train_seconds": s["seconds"],
                   "relu_units": net.n_relu, "data_box": [lo.tolist(), hi.tolist()],
                   "rollout_box": [mid_lo.tolist(), mid_hi.tolist()], "n_pairs": n_samples,
                   "mip_time_limit": mip_time if arch == "residual" else None}
            if arch == "cpl":
                row["lipschitz"] = cert.info["lipschitz"]
                row["inverse_lipschitz"] = cert.info["inverse_lipschitz"]
                std = np.asarray(net.meta["normalisation"]["x_std"])
                row["gain_norm"] = float(np.linalg.norm(net.weights[-1] / std[:, None], 2))
                mip_row = rows[-1]
                ratio = mip_row["certify_seconds"] / max(cert.seconds, 1e-9)
                row["speedup"] = ratio
                mip_row["speedup"] = ratio
                if mip_row["certify_status"] == "unknown":
                    row["speedup_note"] = "MIP hit its time limit: the ratio is a lower bound"
            rows.append(row)
            print(f"  {label} {row['arch']}: one-step rmse {rmse:.3g} (x{rmse / base:.2f}), "
                  f"rollout nrmse {rm['nrmse']:.3g}, certify {how}: {cert.status.value} in "
                  f"{cert.seconds:.3g} s, trained in {s['seconds']:.0f} s", flush=True)
    load_after = os.getloadavg()
    cli = sys.argv[1:] if argv is None else list(argv)
    extra = {"command": " ".join(["python benchmarks/cpl_bench.py", *cli]),
             "quick": args.quick, "epochs": epochs, "samples": n_samples, "dt": dt,
             "blocks": args.blocks, "gain": args.gain, "cpl_lr": args.cpl_lr,
             "residual_lr": 5e-3, "mip_time_limit": mip_time,
             "load_average_before": load_before[0], "load_average_after": load_after[0]}
    path = write_results("cpl_bench", rows, extra)
    print(markdown_table(rows, COLS))
    print(f"\nwrote {path} (load average {load_before[0]:.1f} -> {load_after[0]:.1f} on "
          f"{os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
