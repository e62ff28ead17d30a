"""The random-network scaling law of the distance to the decision boundary, measured exactly.

De Palma, Kiani and Lloyd (ICML 2021) prove that for a random ReLU network the L_p distance of
an input x from the decision boundary scales as ||x||_p / sqrt(n), n the input dimension, and
check it with attacks (upper bounds). Here every distance is bracketed by a CROWN certified
radius, the exact MIP value and a PGD attack (``dynid.certify.boundary_distance``), on
He-initialised 2-output MLPs (widths 64-64, no biases) with inputs uniform on [0, 1]^n.

For x uniform on [0, 1]^n, ||x||_1 ~ n/2, ||x||_2 ~ sqrt(n/3), ||x||_inf ~ 1, so the law
predicts log-log slopes +0.5 (L1), 0 (L2), -0.5 (L-inf); the figure plots
``distance * sqrt(n) / ||x||_p`` against n, flat if the law holds.

Every point (n, net, input, norm) is one call of ``dynid.random_nets.study_point`` (a pure
function of a JSON dict); results are appended to ``OUT/points.jsonl`` as they finish, so an
interrupted run resumes where it stopped (Ctrl-C keeps every finished point).

Run:  python examples/random_scaling.py --quick                       (about 1-2 minutes)
      python examples/random_scaling.py                               (the full study:
            n in 8..128, 30 nets x 5 inputs, hours; --workers 8 on a bigger machine)
      python examples/random_scaling.py --ns 8 16 32 --nets 10 --inputs 2 --norms inf 1
Writes OUT/points.jsonl, OUT/summary.json, OUT/scaling.png (OUT = runs/random_scaling).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="n in 8, 16, 32; 4 nets x 1 input; widths 32-32; 20 s per point")
    ap.add_argument("--ns", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    ap.add_argument("--nets", type=int, default=30, help="random nets per n")
    ap.add_argument("--inputs", type=int, default=5, help="inputs per net")
    ap.add_argument("--norms", nargs="+", default=["1", "2", "inf"])
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 64])
    ap.add_argument("--bias-std", type=float, default=0.0, help="std of random biases (0: none)")
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per distance")
    ap.add_argument("--solver", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="processes (each single-threaded)")
    ap.add_argument("--out", type=Path, default=Path("runs/random_scaling"))
    args = ap.parse_args(argv)
    if args.quick:
        args.ns, args.nets, args.inputs, args.widths = [8, 16, 32], 4, 1, [32, 32]
        args.time_limit = min(args.time_limit, 20.0)
    return args


def specs_of(args) -> list[dict]:
    from dynid.random_nets import study_grid

    return study_grid(ns=args.ns, n_nets=args.nets, n_inputs=args.inputs, norms=args.norms,
                      widths=args.widths, bias_std=args.bias_std, seed=args.seed,
                      time_limit=args.time_limit, solver=args.solver, threads=1)


def run(specs, points_path: Path, workers: int = 1) -> tuple[list[dict], bool]:
    """Run the points not yet in ``points_path`` (JSON lines), with a progress bar; returns
    the rows and whether every point finished (False after Ctrl-C)."""
    from tqdm import tqdm

    from dynid.random_nets import load_rows, point_config, point_key, pool_map, run_study

    tty = sys.stderr.isatty()
    bar = tqdm(total=len(specs), unit="pt", dynamic_ncols=True, disable=not tty)

    def progress(done, total, row):
        bar.n = done
        if row is None:
            return
        line = f"{row['key']} {row['status']} {row['seconds']:.1f}s"
        if tty:
            bar.set_postfix_str(line)
            bar.refresh()
        else:   # a log file: one line per point
            print(f"[{done}/{total}] {line}", file=sys.stderr, flush=True)

    try:
        rows = run_study(specs, points_path, map_fn=pool_map(workers), progress=progress)
        complete = True
    except KeyboardInterrupt:
        wanted = {(point_key(s), point_config(s)) for s in specs}
        rows = [r for r in load_rows(points_path) if (r["key"], r.get("config")) in wanted]
        print(f"\ninterrupted: {len(rows)} of {len(specs)} points kept in {points_path}; "
              "run the same command again to resume")
        complete = False
    finally:
        bar.close()
    return rows, complete


def tables(summary: dict) -> str:
    """Markdown tables: slopes against theory and the authors, then per n and norm."""
    from dynid.random_nets import slope_rows, summary_rows

    def table(rows, cols):
        def fmt(v):
            return f"{v:.4g}" if isinstance(v, float) else ("-" if v is None else str(v))
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
        return "\n".join(lines)

    slopes = slope_rows(summary)
    return (table(slopes, ["norm", "series", "slope", "ci_lo", "ci_hi", "theory", "authors"])
            + "\n\n" + table(summary_rows(summary),
                              ["norm", "n", "points", "certified", "exact", "exact_p45",
                               "exact_p55", "normalised", "exact_over_attack",
                               "hi_over_attack", "crown", "seconds_median", "seconds_p90",
                               "bracket_violations"]))


def main(argv=None) -> int:
    args = parse(argv)
    from dynid.atomic import write_text_atomic
    from dynid.random_nets import plot_scaling, summarise

    specs = specs_of(args)       # validates the options before anything is written
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows, complete = run(specs, args.out / "points.jsonl", args.workers)
    if not rows:
        return 1
    summary = summarise(rows)
    write_text_atomic(args.out / "summary.json", json.dumps(
        {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
         "complete": complete, "points": len(rows), "summary": summary}, indent=2) + "\n")
    title = (f"He MLPs {'-'.join(map(str, args.widths))}, {args.nets} nets x {args.inputs} "
             f"inputs per n" + ("" if complete else " (partial)"))
    plot_scaling(summary, args.out / "scaling.png", title=title)
    print(tables(summary))
    print(f"\n{len(rows)} points in {time.perf_counter() - t0:.0f} s; wrote "
          f"{args.out / 'summary.json'} and {args.out / 'scaling.png'}")
    return 0 if complete else 130


if __name__ == "__main__":
    sys.exit(main())
