"""Scale-out of independent jobs: in-process vs local worker processes vs a Dask cluster.

Two workloads, each run by every executor side by side in one process, with the results
compared bit for bit against the in-process run:

- ``reach``: the double integrator closed loop (published controller), X0 split into 16 x 16 =
  256 cells, 5 steps, exact triangle LP per cell and step (``lp-highs``): 256 jobs;
- ``cell pairs``: the cell-pair invertibility verdict of a Brusselator surrogate (residual
  2-32-32-2, trained here once with a fixed seed and cached) on [0, 3] x [0, 4], a 3 x 3
  grid: one MIP per pair of cells that the bounds do not separate (31 of 45), all needed,
  since the surrogate is injective there (it folds near the (4, 5) corner of its domain).

``seconds`` is the work alone (best of ``--rounds`` interleaved rounds): worker pools and the
Dask cluster are started (and warmed with one small job each) before the clock starts; their
start-up is the ``startup_s`` column.
``speedup`` = in-process seconds / seconds. Every job runs on 1 thread (workers x threads <=
cores). The load average at start and end is recorded: on a machine shared with other jobs
the speed-up measures the cores we actually got.

``--device cuda`` adds the GPU rows (batched CROWN over 1024 cells of a linear plant with a
2-100-100-1 ReLU controller); without a CUDA device it stops with one line and exit code 2.

Usage::

    python benchmarks/scale_bench.py [--quick] [--workers 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, markdown_table, write_results  # noqa: E402

CACHE = RESULTS / "cache"


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def surrogate(log):
    """Residual 2-32-32-2 Brusselator surrogate (exact flow, dt 0.1, [0, 4] x [0, 5]),
    150 epochs, seed 0: trained once, then read from the cache."""
    from dynid.modelfile import load_model, save_model

    path = CACHE / "scale_bench_brusselator.h5"
    if path.is_file():
        return load_model(path)
    from dynid.simulate import one_step_pairs
    from dynid.systems import get_system
    from dynid.train import train

    log("training the Brusselator surrogate (once; cached in benchmarks/results/cache)")
    ds = one_step_pairs(get_system("brusselator", a=1.0, b=3.0), 8000, 0.1, lo=[0, 0],
                        hi=[4, 5], seed=0)
    net, _ = train(ds, hidden=(32, 32), epochs=150, progress=False, seed=0)
    save_model(path, net)
    return load_model(path)


def reach_job(partitions: int):
    from reach.benchmarks import get_benchmark
    from reach.reachability import reach

    b = get_benchmark("double_integrator")

    def run(ex):
        return reach(b.step_net, b.x0_lo, b.x0_hi, b.steps, engine="lp-highs",
                     partitions=partitions, executor=ex)

    def same(a, ref):
        return all(a[v].values.tobytes() == ref[v].values.tobytes()
                   for v in ("lower", "upper", "cell_lo", "cell_hi"))

    return run, same, f"{partitions ** 2} cells, {b.steps} steps, lp-highs"


def pairs_job(cells: int, hi, log):
    from dynid.certify import invertible_on

    net = surrogate(log)

    def run(ex):
        return invertible_on(net, [0, 0], hi, cells=cells, executor=ex)

    def same(a, ref):
        da, db = a.to_dict(), ref.to_dict()
        da.pop("seconds")
        db.pop("seconds")
        return da == db

    return run, same, f"{cells} x {cells} grid on [0, {hi[0]:g}] x [0, {hi[1]:g}], 2-32-32-2"


def gpu_job(device: str, side: int = 32):
    """Batched CROWN over side x side cells of a 2-100-100-1 controller loop."""
    from dynid.relunet import ReLUNet
    from reach.closed_loop import linear_plant_loop
    from reach.reachability import reach

    rng = np.random.default_rng(0)
    w = [rng.normal(size=(100, 2)) / np.sqrt(2), rng.normal(size=(100, 100)) / 10,
         rng.normal(size=(1, 100)) / 10]
    ctrl = ReLUNet(w, [np.zeros(100), np.zeros(100), np.zeros(1)])
    loop = linear_plant_loop([[1, 1], [0, 1]], [[0.5], [1]], ctrl, u_lo=[-1], u_hi=[1])

    def run(_ex):
        return reach(loop, [2.5, -0.25], [3.0, 0.25], 5, engine="crown", partitions=side,
                     engine_opts={"device": device})

    return run


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="64 reach cells, a 2 x 2 cell-pair grid on [0, 0.6] x [0, 0.8] "
                        "(10 MIPs) and 64 CROWN cells (< 2 minutes)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="cuda: add the GPU rows (needs a CUDA device)")
    p.add_argument("--no-dask", action="store_true", help="skip the Dask rows")
    p.add_argument("--rounds", type=int, default=1,
                   help="interleaved timing rounds, best of them (default 1)")
    p.add_argument("--tasks", default="reach,pairs,crown",
                   help="comma-separated subset of reach, pairs, crown (default all); a "
                        "subset writes scale_bench_<tasks>.json, the full file stays")
    p.add_argument("--pairs-grid", type=int, default=None, metavar="N",
                   help="cell-pair grid N x N (default 3, --quick 2)")
    p.add_argument("--pairs-hi", type=float, nargs=2, default=None, metavar=("X", "Y"),
                   help="cell-pair box [0, X] x [0, Y] (default 3 4, --quick 0.6 0.8)")
    a = p.parse_args(argv)
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    if not tasks or set(tasks) - {"reach", "pairs", "crown"}:
        p.error(f"--tasks {a.tasks!r}: a comma-separated subset of reach, pairs, crown")
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        print("scale_bench: --device cuda needs a CUDA GPU, and torch sees none here "
              "(torch.cuda.is_available() is False); run it on a GPU machine or use "
              "--device cpu", file=sys.stderr)
        return 2
    from dynid.executor import Executor

    torch.set_num_threads(1)
    log = lambda m: print(m, flush=True)  # noqa: E731
    load_start = load()
    log(f"load average at start: {load_start} on {os.cpu_count()} cores")
    grid = a.pairs_grid or (2 if a.quick else 3)
    pairs_hi = a.pairs_hi or ([0.6, 0.8] if a.quick else [3, 4])
    workloads = ([("reach", reach_job(8 if a.quick else 16))] if "reach" in tasks else []) + \
        ([("cell pairs", pairs_job(grid, pairs_hi, log))] if "pairs" in tasks else [])
    executors = [("in-process", lambda: Executor()),
                 (f"--workers {a.workers}", lambda: Executor(workers=a.workers))]
    cluster = None
    if not a.no_dask:
        try:
            import distributed
        except ImportError:
            log("distributed is not installed: no Dask rows (pip install 'dynid[dask]')")
        else:
            def dask_executor():
                nonlocal cluster
                cluster = distributed.LocalCluster(n_workers=a.workers, threads_per_worker=1,
                                                   processes=True, dashboard_address=None)
                return Executor(scheduler=cluster.scheduler_address)
            executors.append((f"Dask {a.workers} workers", dask_executor))
    # start every executor first (their start-up is not part of the work), then time the
    # workloads in interleaved rounds (in-process, pool, Dask, again ...), best of the
    # rounds: a load that changes during the run then hits every executor alike
    warm_reach = reach_job(2)[0]
    started = []
    for ex_name, make in executors:
        t0 = time.perf_counter()
        ex = make().start()
        warm_reach(ex)                      # workers up, imports done, one LP solved
        started.append((ex_name, ex, time.perf_counter() - t0))
    rounds = max(1, a.rounds)
    best: dict = {}
    outs: dict = {}
    for r in range(rounds):
        for task, (run, same, what) in workloads:
            for ex_name, ex, _ in started:
                log(f"round {r + 1}/{rounds}: {task} ({what}) with {ex_name} ...")
                out, secs = timed(run, ex)
                outs.setdefault((task, ex_name), out)
                key = (task, ex_name)
                best[key] = min(best.get(key, np.inf), secs)
                log(f"  {secs:.2f} s, load {load()}")
    rows = []
    for task, (run, same, what) in workloads:
        ref = outs[(task, "in-process")]
        for ex_name, ex, startup in started:
            out, secs = outs[(task, ex_name)], best[(task, ex_name)]
            rows.append({"task": task, "setup": what, "executor": ex_name,
                         "workers": 1 if ex_name == "in-process" else a.workers,
                         "seconds": round(secs, 3),
                         "speedup": round(best[(task, "in-process")] / secs, 2),
                         "startup_s": round(startup, 2), "identical": bool(same(out, ref)),
                         "rounds": rounds})
            if task == "cell pairs":
                rows[-1]["verdict"] = out.status.value
                rows[-1]["pairs_solved"] = out.info["pairs_solved"]
    for _, ex, _ in started:
        ex.close()
    if cluster is not None:
        cluster.close()
    devices = (["cpu"] + (["cuda"] if a.device == "cuda" else [])) if "crown" in tasks else []
    side = 8 if a.quick else 32
    for dev in devices:
        run = gpu_job(dev, side)
        run(None)                                           # warm-up (kernels, caches)
        secs = min(timed(run, None)[1] for _ in range(1 if dev == "cpu" else 3))
        rows.append({"task": "reach crown", "setup": f"{side * side} cells, 2-100-100-1 "
                     "loop, 5 steps", "executor": f"in-process ({dev})", "workers": 1,
                     "seconds": round(secs, 4)})
    load_end = load()
    log(f"load average at end: {load_end}")
    name = "scale_bench" if len(tasks) == 3 else "scale_bench_" + "_".join(tasks)
    path = write_results(name, rows, {"quick": a.quick, "workers": a.workers,
                                      "tasks": tasks, "pairs_grid": grid,
                                      "pairs_hi": pairs_hi, "load_start": load_start,
                                      "load_end": load_end, "threads_per_job": 1})
    print(markdown_table(rows, ["task", "setup", "executor", "seconds", "speedup",
                                "startup_s", "identical"]))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
