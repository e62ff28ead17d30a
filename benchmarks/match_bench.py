"""Certified L-inf deviation of a pruned Brusselator surrogate: naive vs ours, same solver.

A 2-64-64-2 surrogate of the Brusselator one-step map is trained here on simulated data
(``dynid.simulate``) unless ``runs/brusselator/model.h5`` holds a 64-wide one; it is pruned at
10, 30, 50, 70, 90 % (global magnitude pruning, then fine-tuning with the masks fixed), and the
maximum L-inf deviation between the original and each pruned copy over the training box is
certified twice, side by side in one process: with the naive encoding (interval big-M on
both networks, a binary per ReLU) and with ours (difference-network bounds, stable-unit
elimination, coupling rows, direction ordering and cutoffs).

    python benchmarks/match_bench.py            # full run
    python benchmarks/match_bench.py --quick    # smaller surrogate and fewer levels (< 2 min)

Rows: sparsity, method, seconds, deviation, bound, status, solver, variables, binaries.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import markdown_table, write_results  # noqa: E402


def surrogate(hidden: int, epochs: int, seed: int = 0, log=print):
    """The Brusselator surrogate (loaded from runs/brusselator if one of this width exists)."""
    from dynid.modelfile import load_model

    for cand in sorted(Path("runs/brusselator").glob("**/*.h5")) if Path(
            "runs/brusselator").exists() else []:
        try:
            net = load_model(cand)
        except Exception:  # not a model file: keep looking
            continue
        if net.widths == [2, hidden, hidden, 2]:
            log(f"using {cand}")
            return net, None, cand
    from dynid.simulate import one_step_pairs
    from dynid.train import train

    ds = one_step_pairs("brusselator", 4000, 0.1, method="flow", seed=seed)
    net, summary = train(ds, arch="mlp", hidden=(hidden, hidden), epochs=epochs, seed=seed,
                         progress=False)
    return net, ds, "trained in the benchmark"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2-16-16-2, levels 10/50/90 %%, 60 s limit")
    ap.add_argument("--solver", default="gurobi", help="solver for both methods (default gurobi)")
    ap.add_argument("--time-limit", type=float, default=None, help="per query (s; default 600, 60 with --quick)")
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args(argv)

    from dynid.certify.equivalence import equivalence
    from dynid.datasets import pairs_from
    from dynid.prune import one_step_loss, prune

    if args.time_limit is None:
        args.time_limit = 60.0 if args.quick else 600.0
    hidden = 16 if args.quick else 64
    levels = [0.1, 0.5, 0.9] if args.quick else [0.1, 0.3, 0.5, 0.7, 0.9]
    epochs = args.epochs or (40 if args.quick else 200)
    t0 = time.perf_counter()
    net, ds, source = surrogate(hidden, epochs)
    if ds is None:
        from dynid.simulate import one_step_pairs

        ds = one_step_pairs("brusselator", 4000, 0.1, method="flow", seed=0)
    X, Y = pairs_from(ds)
    lo, hi = X.min(axis=0), X.max(axis=0)
    print(f"surrogate {net.widths} ({source}), one-step RMSE {one_step_loss(net, X, Y):.3g}, "
          f"box {lo.round(3).tolist()} .. {hi.round(3).tolist()}, "
          f"{time.perf_counter() - t0:.1f}s", flush=True)

    rows = []
    for s in levels:
        pruned = prune(net, s, finetune_data=(X, Y), epochs=10 if args.quick else 20, lr=1e-3)
        rmse = one_step_loss(pruned, X, Y)
        for method in ("naive", "ours"):
            cert = equivalence(net, pruned, lo, hi, norm="inf", method=method,
                               solver=args.solver, time_limit=args.time_limit)
            fell_back = any("refused" in str(r.get("message", "")) for r in cert.info["mips"])
            row = {"sparsity": s, "method": method, "seconds": cert.seconds,
                   "deviation": cert.value, "bound": cert.bound, "status": cert.status.value,
                   "solver": cert.solver, "variables": cert.model_size.get("variables"),
                   "binaries": cert.model_size.get("binaries"),
                   "constraints": cert.model_size.get("constraints"),
                   "one_step_rmse": rmse, "licence_sufficed": cert.solver == "gurobi",
                   "mips": len([m for m in cert.info["mips"] if not m.get("skipped")]),
                   "fallback": fell_back}
            rows.append(row)
            print(f"  sparsity {s:.0%} {method:5s}: {cert.summary()} size {cert.model_size}",
                  flush=True)

    speedups = []
    for s in levels:
        a = next(r for r in rows if r["sparsity"] == s and r["method"] == "naive")
        b = next(r for r in rows if r["sparsity"] == s and r["method"] == "ours")
        speedups.append(a["seconds"] / max(b["seconds"], 1e-9))
        agree = abs(a["bound"] - b["bound"]) <= 1e-4 * max(1.0, a["bound"]) + 1e-5
        b["speedup"] = speedups[-1]
        b["agrees_with_naive"] = bool(agree)
    geo = float(math.exp(np.mean(np.log(speedups))))
    extra = {"surrogate": {"widths": net.widths, "source": str(source), "box_lo": lo,
                           "box_hi": hi}, "geomean_speedup": geo, "quick": args.quick,
             "solver": args.solver}
    path = write_results("match_bench", rows, extra)
    print(markdown_table(rows, ["sparsity", "method", "seconds", "deviation", "bound", "status",
                                "solver", "variables", "binaries"]))
    print(f"\ngeometric-mean speed-up ours vs naive: {geo:.2f}x  (target >= 5x); "
          f"all agree within the gap: {all(r.get('agrees_with_naive', True) for r in rows)}")
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
