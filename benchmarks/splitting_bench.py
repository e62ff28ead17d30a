"""Splitting solver vs HiGHS on the FitzHugh–Nagumo reachability LPs (DeepSplit setting).

For each surrogate width w (2-w-w-2, Euler map, 5-step unroll, X0 = [-1, 1]^2, 4 box
directions at step 5), side by side in one process:
(a) ``pipeline``: LP-tight intermediate bounds layer by layer, then the output LPs —
    HiGHS one LP per unit bound vs the batched splitting solver (dual bounds, sound);
(b) ``final``: the 4 output LPs alone given the SAME intermediate bounds — HiGHS vs splitting;
(c) CROWN and IBP; (d) the sampled inner box.

Usage::

    python benchmarks/splitting_bench.py [--quick] [--widths 100,200,400] [--cap SECONDS]
        [--max-iter N] [--polish STEPS] [--final-iter N] [--device cpu|cuda]

``--device cuda`` runs the splitting solver (and CROWN) on the GPU, for the CUDA rows beside
the CPU ones; without a CUDA device it stops with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import markdown_table, write_results  # noqa: E402

C4 = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
LO, HI = -np.ones(2), np.ones(2)


class PeakRSS:
    """Peak resident memory (MB) above the level at entry, sampled every 20 ms."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = False
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        self.start = time.perf_counter()
        return self

    @staticmethod
    def _rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    def _watch(self):
        while not self._stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, self._rss())
        self.mb = self.peak - self.base
        return False


DEVICE = "cpu"   # set by --device


def row(width, stage, method, sec, bounds, sound, gap=None, peak=None, **extra):
    device = DEVICE if method.startswith(("splitting", "crown")) else "cpu"
    return {"width": width, "stage": stage, "method": method, "device": device,
            "seconds": sec, "bounds": [float(v) for v in bounds], "sound": None if sound is None else bool(sound),
            "gap": gap, "peak_mb": peak, **extra}


def run_width(width: int, cap: float, max_iter: int, tol: float, log, polish: int = 0,
              final_iter: int | None = None) -> list[dict]:
    """Rows for one width. ``polish > 0`` adds the ``splitting+polish`` variant side by side:
    intermediate bounds by the polished layer dual alone (no ADMM: they need no primal point),
    then ``final_iter`` ADMM iterations (for the feasible primal value that certifies the gap)
    and ``polish`` slope-optimisation steps on the 4 output LPs."""
    import torch

    from dynid.bounds import crown_bounds, crown_output, interval_bounds
    from reach.fhn import fhn_surrogate
    from reach.intermediate import splitting_bounds
    from reach.relaxation import highs_intermediate_bounds, pad_highs, triangle_lp_highs
    from reach.splitting import SplittingSolver

    final_iter = max_iter if final_iter is None else final_iter
    net = fhn_surrogate(width, log=log).unroll(5)
    rows = []
    # (d) sampled inner box: every sound bound must contain it
    rng = np.random.default_rng(0)
    x = np.vstack([rng.uniform(LO, HI, size=(200_000, 2)),
                   np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], float)])
    with PeakRSS() as t:     # in chunks: the unrolled activations of 200k points are large
        sampled = np.max([(net(xc) @ C4.T).max(axis=0) for xc in np.array_split(x, 40)], axis=0)
    rows.append(row(width, "final", "sampled", t.seconds, sampled, True, peak=t.mb))
    contains = lambda b: bool(np.all(np.asarray(b) >= sampled - 1e-9))  # noqa: E731
    # (c) IBP and CROWN
    with PeakRSS() as t:
        ib = interval_bounds(net, LO, HI)
        lo_o, hi_o = ib.output_lo, ib.output_hi
        ibp = np.array([hi_o[0], hi_o[1], -lo_o[0], -lo_o[1]])
    rows.append(row(width, "pipeline", "ibp", t.seconds, ibp, contains(ibp), peak=t.mb))
    with PeakRSS() as t:
        init = crown_bounds(net, LO, HI, device=DEVICE)
        _, crown = crown_output(net, LO, HI, C4, bounds=init, device=DEVICE)
    rows.append(row(width, "pipeline", "crown", t.seconds, crown, contains(crown), peak=t.mb))
    log(f"w={width}: IBP {np.round(ibp, 3)}, CROWN {np.round(crown, 3)}, sampled "
        f"{np.round(sampled, 3)}; {init.n_unstable} unstable units after CROWN")
    # (a) splitting pipelines: all units of a layer (both bounds) in one batch
    variants = [("splitting", dict(max_iter=max_iter), dict(max_iter=max_iter))]
    if polish > 0:
        variants.append(("splitting+polish", dict(max_iter=0, polish_steps=polish),
                         dict(max_iter=final_iter, polish_steps=polish)))
    pipes = {}
    for name, layer_kw, final_kw in variants:
        log(f"w={width}: {name} pipeline")
        with PeakRSS() as t:
            sb = splitting_bounds(net, LO, HI, init, dtype=torch.float32, tol=tol, log=log,
                                  device=DEVICE, **layer_kw)
            fin = SplittingSolver(net, LO, HI, sb, dtype=torch.float32,
                                  device=DEVICE).solve(C4, tol=tol, **final_kw)
        pipes[name] = (sb, fin, t, final_kw)
    # (a) HiGHS pipeline, capped
    with PeakRSS() as th:
        hb = highs_intermediate_bounds(net, LO, HI, init, time_limit=cap, log=log)
        done = hb.info["complete"]
        highs_raw = (triangle_lp_highs(net, LO, HI, hb, C4) if done else np.full(4, np.nan))
        highs_pipe = pad_highs(highs_raw)
    total_lps = 2 * init.n_unstable - 2 * int(init.unstable(net.n_layers - 1).sum())
    extrap = th.seconds if done else th.seconds * max(total_lps, 1) / max(hb.info["lps"], 1)
    rows.append(row(width, "pipeline", "highs", th.seconds if done else f"> {th.seconds:.0f}",
                    highs_pipe, contains(highs_pipe) if done else None, peak=th.mb,
                    complete=done, lps=hb.info["lps"], extrapolated_seconds=extrap))
    # (b) the final 4 LPs given the same intermediate bounds (the last variant's)
    sb = pipes[variants[-1][0]][0]
    with PeakRSS() as tf:
        ref = triangle_lp_highs(net, LO, HI, sb, C4)
    rows.append(row(width, "final", "highs", tf.seconds, pad_highs(ref), contains(ref),
                    peak=tf.mb))
    for name, _, final_kw in variants:
        with PeakRSS() as tsf:
            fin2 = SplittingSolver(net, LO, HI, sb, dtype=torch.float32,
                                   device=DEVICE).solve(C4, tol=tol, **final_kw)
        sound_final = bool(np.all(fin2.bound >= ref - 1e-9) and contains(fin2.bound))
        rows.append(row(width, "final", name, tsf.seconds, fin2.bound, sound_final,
                        gap=float(np.max(fin2.gap / np.maximum(1, np.abs(fin2.bound)))),
                        peak=tsf.mb, iterations=int(fin2.iterations.max()),
                        excess_over_lp=[float(v) for v in fin2.bound - ref]))
    # soundness of each splitting pipeline: contains the samples and, where the HiGHS pipeline
    # finished, never beats the exact LP over the LP-tight intermediate bounds
    for name, _, _ in variants:
        psb, fin, t, _ = pipes[name]
        # (looser intermediate bounds only enlarge the LP, so its dual bound is >= that optimum)
        lp_ok = (bool(np.all(fin.bound >= highs_raw - 1e-6 * np.maximum(1, np.abs(highs_raw))))
                 if done else True)
        rows.append(row(width, "pipeline", name, t.seconds, fin.bound,
                        bool(contains(fin.bound) and lp_ok),
                        gap=float(np.max(fin.gap / np.maximum(1, np.abs(fin.bound)))),
                        peak=t.mb, layer_iterations=psb.info["iterations"],
                        layer_max_gap=psb.info["max_gap"],
                        speedup_vs_highs=(extrap / t.seconds)))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="w = 100 only, capped (< 2 minutes)")
    p.add_argument("--widths", default="100,200,400")
    p.add_argument("--cap", type=float, default=None, help="seconds for the HiGHS pipeline")
    p.add_argument("--max-iter", type=int, default=None)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--polish", type=int, default=0,
                   help="also run the splitting+polish variant with this many slope-"
                        "optimisation steps per solve (0: ADMM only)")
    p.add_argument("--final-iter", type=int, default=None,
                   help="ADMM iterations on the output LPs of the polish variant "
                        "(default: --max-iter)")
    p.add_argument("--name", default="splitting_bench", help="results/NAME.json")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: the machine is shared; HiGHS runs on 1 thread too)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where the splitting solver and CROWN run (cuda: the GPU rows)")
    a = p.parse_args(argv)
    import torch

    global DEVICE
    if a.device == "cuda" and not torch.cuda.is_available():
        print("splitting_bench: --device cuda needs a CUDA GPU, and torch sees none here "
              "(torch.cuda.is_available() is False); run it on a GPU machine or use "
              "--device cpu", file=sys.stderr)
        return 2
    DEVICE = a.device

    torch.set_num_threads(a.threads)
    widths = [100] if a.quick else [int(w) for w in a.widths.split(",")]
    cap = a.cap if a.cap is not None else (20.0 if a.quick else 900.0)
    max_iter = a.max_iter if a.max_iter is not None else (100 if a.quick else 3000)
    log = lambda m: print(m, flush=True)  # noqa: E731
    rows = []
    for w in widths:
        rows += run_width(w, cap, max_iter, a.tol, log, a.polish, a.final_iter)
        write_results(a.name, rows, {"quick": a.quick, "cap_seconds": cap,
                                                "max_iter": max_iter, "tol": a.tol,
                                                "polish": a.polish,
                                                "final_iter": a.final_iter,
                                                "threads": a.threads,
                                                "device": a.device})
    print(markdown_table(rows, ["width", "stage", "method", "device", "seconds", "bounds",
                                "sound", "gap", "peak_mb"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
