"""Closed-loop reachability benchmark: methods x engines on the double integrator (5 steps),
the 6-D quadrotor (12 steps) and a FitzHugh-Nagumo surrogate (w = 100, 5 steps).

For every row: the final-step error ratio (area of the certified box - area of the sampled
box) / area of the sampled box, the seconds, and ``sound`` (every step's certified box
contains every sampled state). Sampled boxes: 10^5 trajectories with --quick, 2 * 10^6
otherwise (plus corners and gradient-guided points). All rows run in the same process.

    python benchmarks/reach_bench.py [--quick] [--systems di,quad,fhn]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, markdown_table, write_results  # noqa: E402

COLS = ["system", "method", "engine", "partitions", "seconds", "error", "sound"]


def inner_boxes(step, lo, hi, steps, n, seed=0):
    from reach.falsify import sampled_boxes

    t = time.perf_counter()
    f = sampled_boxes(step, lo, hi, steps, n=n, seed=seed, chunk=100_000)
    print(f"  sampled {f.n_samples} trajectories in {time.perf_counter() - t:.1f} s",
          flush=True)
    return f


def row_for(system, ds, seconds, f, method, engine, partitions, **extra):
    from reach.falsify import error_ratio

    K = int(ds.step.values[-1])
    blo, bhi = ds.box_lo.values, ds.box_hi.values
    sound = bool(np.all(blo <= f.inner_lo + 1e-12) and np.all(bhi >= f.inner_hi - 1e-12))
    err = error_ratio(blo[K], bhi[K], f.inner_lo[K], f.inner_hi[K])
    width_ratio = ((bhi[K] - blo[K]) / (f.inner_hi[K] - f.inner_lo[K])).tolist()
    row = dict(system=system, method=method, engine=engine, partitions=int(partitions),
               seconds=float(seconds), error=float(err), sound=sound,
               width_ratio=width_ratio, final_lo=blo[K].tolist(), final_hi=bhi[K].tolist(),
               **extra)
    print("  " + " | ".join(f"{k}={row[k]:.4g}" if isinstance(row[k], float) else
                            f"{k}={row[k]}" for k in COLS), flush=True)
    return row


def run_case(system, step, lo, hi, steps, f, method, engine, partitions=None, repeat=1,
             **kw):
    from reach.reachability import reach

    best = None
    for _ in range(repeat):  # best of a few: the machine is shared
        t = time.perf_counter()
        ds = reach(step, lo, hi, steps, method=method, engine=engine, partitions=partitions,
                   **kw)
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    cells = int(ds.sizes["cell"])
    label = method if kw.get("window") is None else f"{method} (w={kw['window']})"
    return row_for(system, ds, best, f, label, engine, cells)


def run_refine(system, step, lo, hi, steps, f, engine, budget, **kw):
    from reach.partition import refine

    t = time.perf_counter()
    ds = refine(step, lo, hi, steps, engine=engine, budget_s=budget,
                inner=(f.inner_lo[steps], f.inner_hi[steps]), **kw)
    dt = time.perf_counter() - t
    return row_for(system, ds, dt, f, f"refined ({budget:g} s budget)", ds.attrs["engine"],
                   int(ds.sizes["cell"]), refinements=int(ds.attrs["refinements"]))


def double_integrator(quick):
    from reach.benchmarks import double_integrator as di

    print("double integrator, 5 steps", flush=True)
    b = di()
    f = inner_boxes(b.step_net, b.x0_lo, b.x0_hi, 5, 100_000 if quick else 2_000_000)
    args = ("double_integrator", b.step_net, b.x0_lo, b.x0_hi, 5, f)
    # warm-up (imports, first solver start) outside the timings
    run_case(*args, "one-shot", "lp-highs")
    rep = 3
    rows = [run_case(*args, "one-shot", "ibp", repeat=rep),
            run_case(*args, "one-shot", "crown", repeat=rep),
            run_case(*args, "recursive", "crown", repeat=rep),
            run_case(*args, "hybrid", "crown", window=2, repeat=rep),
            run_case(*args, "one-shot", "lp-highs", repeat=rep),
            run_case(*args, "one-shot", "lp-splitting", repeat=1,
                     engine_opts={"max_iter": 200}),
            run_case(*args, "one-shot", "lp-highs", partitions=2, repeat=rep),
            run_case(*args, "one-shot", "lp-highs", partitions=4, repeat=1),
            run_case(*args, "one-shot", "crown", partitions=2, repeat=rep),
            run_case(*args, "one-shot", "crown", partitions=4, repeat=1),
            run_case(*args, "one-shot", "mip", repeat=1)]
    return rows


def quadrotor(quick):
    from reach.benchmarks import quadrotor6d

    print("quadrotor 6-D, 12 steps", flush=True)
    b = quadrotor6d()
    f = inner_boxes(b.step_net, b.x0_lo, b.x0_hi, 12, 100_000 if quick else 300_000)
    args = ("quadrotor6d", b.step_net, b.x0_lo, b.x0_hi, 12, f)
    rows = [run_case(*args, "one-shot", "ibp"),
            run_case(*args, "one-shot", "crown"),
            run_case(*args, "recursive", "crown"),
            run_case(*args, "hybrid", "crown", window=4),
            run_case(*args, "one-shot", "lp-highs")]
    if not quick:
        rows.append(run_case(*args, "one-shot", "crown", partitions=2))
    return rows


def fhn_surrogate(width=100, seed=0):
    """2-w-w-2 ReLU surrogate of the FitzHugh-Nagumo Euler map on a 50 x 50 grid of [-5, 5]^2
    (cached in benchmarks/results/)."""
    import torch

    from dynid.modelfile import load_model, save_model
    from dynid.relunet import ReLUNet

    try:  # the splitting benchmark's cached surrogate (reach/fhn.py), when present
        from reach.fhn import fhn_surrogate as shared

        return shared(width)
    except ImportError:
        pass
    cache = RESULTS / f"fhn_w{width}_seed{seed}.h5"
    if cache.exists():
        return load_model(cache)
    g = np.linspace(-5, 5, 50)
    X = np.array(np.meshgrid(g, g)).reshape(2, -1).T
    x1, x2 = X[:, 0], X[:, 1]
    Y = np.stack([x1 + 0.2 * (x1 - x1 ** 3 / 3 - x2 + 0.875),
                  x2 + 0.2 * 0.08 * (x1 + 0.7 - 0.8 * x2)], axis=1)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.ReLU(),
                                torch.nn.Linear(width, width), torch.nn.ReLU(),
                                torch.nn.Linear(width, 2))
    xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32)
    scale = yt.abs().max(dim=0).values
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 1500)
    for _ in range(1500):
        opt.zero_grad()
        loss = (((model(xt) - yt) / scale) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
    net = ReLUNet.from_torch(model).with_meta(system="fitzhugh_nagumo", map="euler", dt=0.2,
                                             state_names=["x1", "x2"])
    save_model(cache, net)
    return net


def fhn(quick):
    print("FitzHugh-Nagumo surrogate (w = 100), 5 steps", flush=True)
    net = fhn_surrogate(100)
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    f = inner_boxes(net, lo, hi, 5, 100_000 if quick else 500_000)
    args = ("fhn_w100", net, lo, hi, 5, f)
    rows = [run_case(*args, "one-shot", "crown"),
            run_case(*args, "one-shot", "lp-highs")]
    # refinement stops as soon as the step-5 box is within 2x of the sampled width
    rows.append(run_refine(*args, "crown", 30.0 if quick else 58.0, target_ratio=2.0))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="10^5 samples, fewer rows (< 2 min)")
    p.add_argument("--systems", default="di,quad,fhn")
    a = p.parse_args(argv)
    systems = a.systems.split(",")
    rows = []
    # rows of systems not run now are kept from the previous results of the same mode
    prev = RESULTS / "reach_bench.json"
    names = {"di": "double_integrator", "quad": "quadrotor6d", "fhn": "fhn_w100"}
    if prev.exists():
        import json

        old = json.loads(prev.read_text())
        if old.get("quick") == a.quick:
            run_now = {names[s] for s in systems if s in names}
            rows = [r for r in old.get("rows", []) if r["system"] not in run_now]
    extra = {"quick": a.quick, "peer": {
        "nfl_veripy Reach-LP, double integrator, this kind of machine": {
            "no partitioning": [1189, 0.022], "4 cells": [134, 0.084],
            "16 cells": [24.9, 0.34]}}}
    for key, fn in (("di", double_integrator), ("quad", quadrotor), ("fhn", fhn)):
        if key in systems:
            rows += fn(a.quick)
            # written after every system, so an interrupted run keeps what finished
            path = write_results("reach_bench", rows, extra=extra)
    print(markdown_table(rows, COLS))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
