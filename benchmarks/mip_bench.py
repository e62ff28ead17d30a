"""MIP certification benchmark: naive (paper code) vs our formulation, and radius methods.

1. Random invertible iResNets f(x) = x + W2 relu(W1 x + b1) + b2 (weights and biases uniform
   on [-1, 1]; W1 and W2 each rescaled to spectral norm 1/(1 + alpha), alpha ~ U(0, 1), exact
   SVD norms, so Lip(g) < 1 and f is invertible), (d, h) in {(4,10), (6,10), (8,10), (6,20),
   (6,50)}, box radius R in {5, 10, 15, 20}, 5 nets each: time to certify max ||x - y||_inf = 0
   subject to f(x) = f(y) with the naive formulation (interval big-M, a binary per ReLU in each
   copy, 2n coordinate binaries, M = 4R) and with ours, same solver, same process.
2. Certified radius (preimage and ball modes, inf-norm) at 3 points of a forward-Euler
   Brusselator surrogate: the reference protocol (x5 growth from 0.1, then bisection to 1e-3)
   vs our one-MIP method.
3. Certified radius in ball mode with our method on a trained 2-64-64-2 residual surrogate of
   the same map (x + N(x), N 2-64-64-2, seed 0; goal < 10 s per point): for this 2-input map
   the fold witness and the Jacobian-hull proof (solver "jacobian-hull"), the MIP only where
   they do not meet.

Run: ``python benchmarks/mip_bench.py [--quick] [--time-limit 120]``. Writes
benchmarks/results/mip_bench.json and prints markdown tables. The machine is shared with other
jobs while measuring: compare the ratios, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, write_results  # noqa: E402

from dynid.certify import certified_radius, noninvertibility  # noqa: E402
from dynid.relunet import ReLUNet  # noqa: E402

CELLS = [(4, 10), (6, 10), (8, 10), (6, 20), (6, 50)]
RADII = [5, 10, 15, 20]


def iresnet(d: int, h: int, seed: int) -> ReLUNet:
    rng = np.random.default_rng(1000 * d + 10 * h + seed)
    alpha = rng.uniform()
    w1 = rng.uniform(-1, 1, (h, d))
    w2 = rng.uniform(-1, 1, (d, h))
    w1 *= (1 / (1 + alpha)) / np.linalg.norm(w1, 2)
    w2 *= (1 / (1 + alpha)) / np.linalg.norm(w2, 2)
    b1, b2 = rng.uniform(-1, 1, h), rng.uniform(-1, 1, d)
    relu0 = np.r_[np.zeros(d, bool), np.ones(h, bool)]
    return ReLUNet([np.vstack([np.eye(d), w1]), np.hstack([np.eye(d), w2])],
                   [np.r_[np.zeros(d), b1], b2], [relu0, np.zeros(d, bool)])


def brusselator_surrogate(path=None):
    """The model file at `path` when given, else a fixed least-squares fit of the forward-Euler
    Brusselator (tau 0.15, a 1, b 2) on [2, 4] x [0, 2], where it folds.  The default does not
    depend on what else is on disk (e.g. a demo run), so the numbers are reproducible."""
    if path is not None:
        from dynid.modelfile import load_model

        return load_model(path), str(path)
    tau, a, b = 0.15, 1.0, 2.0
    lo, hi = np.array([2.0, 0.0]), np.array([4.0, 2.0])
    rng = np.random.default_rng(0)
    X = rng.uniform(lo, hi, size=(3000, 2))
    x, y = X[:, 0], X[:, 1]
    Y = np.stack([x + tau * (a - (b + 1) * x + x * x * y), y + tau * (b * x - x * x * y)], 1)
    hidden = 16
    w1 = rng.normal(size=(hidden, 2))
    w1 /= np.linalg.norm(w1, axis=1, keepdims=True)
    b1 = -np.sum(w1 * rng.uniform(lo, hi, size=(hidden, 2)), axis=1)
    phi = np.hstack([np.maximum(X @ w1.T + b1, 0), X, np.ones((len(X), 1))])
    coef = np.linalg.lstsq(phi, Y, rcond=None)[0]
    net = ReLUNet([np.vstack([w1, np.eye(2)]), coef[:-1].T], [np.r_[b1, 0, 0], coef[-1]],
                  [np.r_[np.ones(hidden, bool), False, False], np.zeros(2, bool)],
                  meta={"domain": {"lo": lo.tolist(), "hi": hi.tolist()}})
    return net, "least-squares fit (16 random ReLU features + linear skip)"


def brusselator_surrogate64(seed: int = 0, epochs: int = 150):
    """A 2-64-64-2 residual surrogate x + N(x) of the same forward-Euler Brusselator map on
    [2, 4] x [0, 2], trained here (4000 uniform samples, seed ``seed``; about 15 s)."""
    from dynid.train import train

    tau, a, b = 0.15, 1.0, 2.0
    lo, hi = np.array([2.0, 0.0]), np.array([4.0, 2.0])
    rng = np.random.default_rng(seed)
    X = rng.uniform(lo, hi, size=(4000, 2))
    x, y = X[:, 0], X[:, 1]
    Y = np.stack([x + tau * (a - (b + 1) * x + x * x * y), y + tau * (b * x - x * x * y)], 1)
    net, summary = train((X, Y), arch="residual", hidden=(64, 64), epochs=epochs, seed=seed,
                         progress=False)
    return net.with_meta(domain={"lo": lo.tolist(), "hi": hi.tolist()}), summary


def ball64_rows(points, time_limit, solver, rows, flush, net, rmse):
    for pt in points:
        c = certified_radius(net, pt, mode="ball", method="fast", r_max=2.0, solver=solver,
                             time_limit=time_limit)
        rows.append({"kind": "radius64", "d": 2, "h": 64, "R": 2.0, "seed": 0,
                     "point": [float(v) for v in pt], "mode": "ball", "method": "ours",
                     "seconds": round(c.seconds, 4), "radius": c.value,
                     "radius_upper": c.bound, "solver": c.solver, "status": c.status.value,
                     "jacobian_radius": c.info.get("jacobian_radius"),
                     "boxes": len(c.info.get("boxes", [])), "one_step_rmse": rmse,
                     "hull_leaves": [t.get("leaves") for t in
                                     (c.info.get("hull") or {}).get("tries", [])],
                     "goal_10s_met": bool(c.status.value == "certified" and c.seconds < 10)})
        print(f"radius64 {pt.tolist()} ball: {c.value:.5f}..{c.bound:.5f} ({c.status.value}) "
              f"{c.seconds:.2f}s", flush=True)
        flush()


def iresnet_rows(cells, radii, seeds, solver, time_limit, rows, flush):
    # seeds outermost: an interrupted run still covers every cell
    for seed in seeds:
        for d, h in cells:
            for R in radii:
                net = iresnet(d, h, seed)
                lo, hi = -R * np.ones(d), R * np.ones(d)
                for method in ("naive", "ours"):
                    c = noninvertibility(net, lo, hi, "inf", method=method, solver=solver,
                                         time_limit=time_limit)
                    verdict = {"certified": "invertible", "counterexample": "noninvertible",
                               "unknown": "unknown"}[c.status.value]
                    rows.append({"kind": "iresnet", "d": d, "h": h, "R": R, "seed": seed,
                                 "point": None, "mode": None, "method": method,
                                 "seconds": round(c.seconds, 4), "verdict": verdict,
                                 "solver": c.solver, "status": c.status.value,
                                 "bound": c.bound, "binaries": c.model_size.get("binaries"),
                                 "proof": c.info.get("proof", "mip"),
                                 "message": c.info.get("solver_message", "")})
                    print(f"iresnet d={d} h={h} R={R} seed={seed} {method}: "
                          f"{c.status.value} {c.seconds:.2f}s ({c.solver})", flush=True)
                    flush()


def radius_rows(points, time_limit, solver, rows, flush, net):
    for k, pt in enumerate(points):
        for mode in ("preimage", "ball"):
            res = {}
            for method in ("reference", "fast"):
                c = certified_radius(net, pt, mode=mode, method=method, r_max=2.0,
                                     solver=solver, time_limit=time_limit)
                res[method] = c
                rows.append({"kind": "radius", "d": net.n_in, "h": None, "R": 2.0,
                             "seed": None, "point": [float(v) for v in pt], "mode": mode,
                             "method": "ours" if method == "fast" else "reference",
                             "seconds": round(c.seconds, 4), "radius": c.value,
                             "radius_upper": c.bound, "solver": c.solver,
                             "status": c.status.value,
                             "steps": len(c.info.get("steps", [])) or 1})
                print(f"radius point {k} {mode} {method}: {c.value:.5f} "
                      f"({c.status.value}) {c.seconds:.2f}s", flush=True)
                flush()
            rows[-1]["agrees"] = bool(abs(res["fast"].value - res["reference"].value) <= 1.5e-3)
            rows[-1]["speedup"] = res["reference"].seconds / max(res["fast"].seconds, 1e-9)


def summarise(rows):
    """Per-cell medians and the geometric-mean speed-up over cells with naive > 1 s."""
    out = []
    cells = sorted({(r["d"], r["h"], r["R"]) for r in rows if r["kind"] == "iresnet"})
    ratios = []
    for d, h, R in cells:
        sel = [r for r in rows if r["kind"] == "iresnet" and (r["d"], r["h"], r["R"]) == (d, h, R)]
        nv = [r for r in sel if r["method"] == "naive"]
        us = [r for r in sel if r["method"] == "ours"]
        if not nv or not us:
            continue
        tn = float(np.median([r["seconds"] for r in nv]))
        to = float(np.median([r["seconds"] for r in us]))
        agree = all(a["verdict"] == b["verdict"] for a, b in zip(nv, us))
        hard = tn > 1.0
        if hard:
            ratios.append(tn / max(to, 1e-9))
        out.append({"d": d, "h": h, "R": R, "nets": len(nv), "naive_s": round(tn, 3),
                    "ours_s": round(to, 3), "speedup": round(tn / max(to, 1e-9), 1),
                    "naive_unknown": sum(r["status"] == "unknown" for r in nv),
                    "ours_unknown": sum(r["status"] == "unknown" for r in us),
                    "same_verdicts": agree, "hard": hard})
    gm = float(np.exp(np.mean(np.log(ratios)))) if ratios else math.nan
    return out, gm


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small subset (under 2 minutes)")
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per MIP")
    ap.add_argument("--solver", default="auto")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--model", type=Path, default=None,
                    help="model file for the radius rows (default: a fixed least-squares "
                         "Brusselator surrogate that folds)")
    ap.add_argument("--ball64-only", action="store_true",
                    help="only the ball-mode rows on the 2-64-64-2 surrogate (3 points, "
                         "writes results/mip_bench_ball64.json)")
    args = ap.parse_args(argv)
    if args.ball64_only:
        rows, extra = [], {"settings": {"time_limit": min(args.time_limit, 60.0),
                                        "solver": args.solver, "norm": "inf"}}
        net64, tsum = brusselator_surrogate64()
        extra["surrogate64"] = {"widths": net64.widths, "one_step_rmse": tsum["one_step_rmse"]}
        pts = [np.array([3.0, 0.6]), np.array([2.5, 1.5]), np.array([3.6, 0.4])]
        ball64_rows(pts, min(args.time_limit, 60.0), args.solver, rows,
                    lambda: write_results("mip_bench_ball64", rows, extra), net64,
                    tsum["one_step_rmse"])
        print(markdown_table(rows, ["point", "radius", "radius_upper", "seconds", "status",
                                    "solver", "jacobian_radius", "boxes", "goal_10s_met"]))
        return 0
    if args.quick:
        cells, radii, seeds, tl = [(4, 10), (6, 10)], [5, 15], [0], min(args.time_limit, 30)
    else:
        cells, radii, seeds, tl = CELLS, RADII, list(range(args.seeds)), args.time_limit
    rows: list = []
    extra = {"settings": {"quick": args.quick, "time_limit": tl, "solver": args.solver,
                          "norm": "inf", "tol": 1e-4}}

    def flush():
        write_results("mip_bench", rows, extra)

    # warm-up: imports (torch, solvers) and first-call costs stay out of the timings
    noninvertibility(iresnet(2, 4, 0), -np.ones(2), np.ones(2), method="ours")
    noninvertibility(iresnet(2, 4, 0), -np.ones(2), np.ones(2), method="naive")
    t0 = time.perf_counter()
    net, source = brusselator_surrogate(args.model)
    extra["brusselator_model"] = source
    pts = [np.array([3.0, 0.6]), np.array([2.5, 1.5]), np.array([3.6, 0.4])]
    if args.quick:
        pts = pts[:1]
    radius_rows(pts, tl, args.solver, rows, flush, net)
    t64 = time.perf_counter()
    net64, tsum = brusselator_surrogate64()
    extra["surrogate64"] = {"widths": net64.widths, "one_step_rmse": tsum["one_step_rmse"],
                            "train_seconds": time.perf_counter() - t64,
                            "form": "x + N(x), N 2-64-64-2 (widths with the skip: 2-66-66-2)"}
    ball64_rows(pts, min(tl, 60.0), args.solver, rows, flush, net64, tsum["one_step_rmse"])
    iresnet_rows(cells, radii, seeds, args.solver, tl, rows, flush)
    summary, gm = summarise(rows)
    extra["summary"] = summary
    extra["geomean_speedup_hard_cells"] = gm
    extra["total_seconds"] = time.perf_counter() - t0
    path = write_results("mip_bench", rows, extra)
    print()
    print(markdown_table(summary, ["d", "h", "R", "nets", "naive_s", "ours_s", "speedup",
                                   "naive_unknown", "ours_unknown", "same_verdicts"]))
    print(f"\ngeometric-mean speed-up over cells with naive > 1 s: {gm:.1f}x")
    rad = [r for r in rows if r["kind"] == "radius"]
    print()
    print(markdown_table(rad, ["point", "mode", "method", "radius", "radius_upper", "seconds",
                               "status", "steps", "agrees", "speedup"]))
    r64 = [r for r in rows if r["kind"] == "radius64"]
    print()
    print(markdown_table(r64, ["point", "radius", "radius_upper", "seconds", "status",
                               "solver", "jacobian_radius", "boxes", "goal_10s_met"]))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
