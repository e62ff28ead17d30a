"""``dynid certify box``: the largest certified box (a radius per dimension) at points.

Registered from :mod:`dynid.cli.certify` as one more query of ``dynid certify``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dynid.cli.common import (add_input, add_json_option, add_output, add_solver_options,
                              finite_float, nonneg_float, nonneg_int, points_arg, positive_int,
                              run_points)
from dynid.errors import ConfigError, ShapeError

EXAMPLES = """\
examples:
  dynid certify box examples/voronoi_mlp.h5 --at 0.2 0.7 --keep-label --figure box.png
  dynid certify box model.h5 --at 2.0 2.5 --steps 5 --safe-box 1.5 2.0 2.5 3.0
  dynid certify box model.h5 --at 2.0 2.5 --steps 5 --safe "[[1, 0], [0, 1]], [2.5, 3.0]"
"""


def register(sub) -> None:
    p = sub.add_parser(
        "box", help="largest certified box (a radius per dimension) keeping a spec",
        description="Find the box around each point given by --at, with a separate radius per "
                    "dimension, of largest log-volume such that the state after --steps steps "
                    "stays in a safe polytope (--safe / --safe-box), or the classifier keeps "
                    "its label (--keep-label). The box is certified by sound CROWN bounds or "
                    "the MIP; the uniform box (one radius) is reported beside it.",
        epilog=EXAMPLES, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    add_input(p, "model", help="model file (.h5)")
    p.add_argument("--at", type=finite_float, nargs="+", required=True, metavar="X",
                   help="the point (n values; several points: 2n, 3n, ... values)")
    p.add_argument("--steps", type=positive_int, default=1, metavar="K",
                   help="the spec is about F^K (default 1)")
    spec = p.add_mutually_exclusive_group(required=True)
    spec.add_argument("--safe", metavar="H,c",
                      help='safe polytope H y <= c as JSON rows and bounds: "[[1, 0], [0, 1]], '
                           '[2.5, 3.0]" (or a .json file with keys H and c)')
    spec.add_argument("--safe-box", type=finite_float, nargs="+", metavar="V",
                      help="safe box of the output: n lower then n upper corner values")
    spec.add_argument("--keep-label", action="store_true",
                      help="keep the argmax of the output (one output: its sign)")
    p.add_argument("--mode", choices=["nonuniform", "uniform"], default="nonuniform")
    p.add_argument("--weights", type=nonneg_float, nargs="+", metavar="W",
                   help="weights of the log-volume, one per input (default all 1)")
    p.add_argument("--relaxation", choices=["crown", "crown-opt", "fastlin"], default="crown",
                   help="relaxation steering the search (default crown)")
    p.add_argument("--iterations", type=nonneg_int, default=400,
                   help="augmented-Lagrangian iterations (default 400)")
    p.add_argument("--lo", type=finite_float, nargs="+", metavar="L",
                   help="lower corner of the search domain (default: the model's domain)")
    p.add_argument("--hi", type=finite_float, nargs="+", metavar="H",
                   help="upper corner of the search domain (default: the model's domain)")
    p.add_argument("--no-domain", action="store_true",
                   help="search without a domain (ignore the model's)")
    p.add_argument("--confirm", choices=["auto", "mip", "none"], default="auto",
                   help="auto: sound CROWN, MIP where it fails; mip: MIP on every row too; "
                        "none: sound CROWN only")
    p.add_argument("--grow", action="store_true",
                   help="enlarge each box along its shape by bisection with the MIP")
    add_output(p, "--figure", metavar="PNG", help="2-D inputs: draw the boxes over the region "
                                                   "where the spec holds")
    add_solver_options(p)
    add_json_option(p)
    p.set_defaults(func=_box)


def _spec(args, n_out: int):
    from dynid.certify import keep_label, safe_set

    if args.keep_label:
        return keep_label()
    if args.safe_box is not None:
        v = np.asarray(args.safe_box, float)
        if v.size != 2 * n_out:
            raise ShapeError(f"--safe-box needs {2 * n_out} values ({n_out} lower, then "
                             f"{n_out} upper), got {v.size}")
        lo, hi = v[:n_out], v[n_out:]
        if np.any(lo > hi):
            raise ShapeError("--safe-box needs lower values <= upper values")
        return safe_set(np.vstack([np.eye(n_out), -np.eye(n_out)]), np.r_[hi, -lo])
    text = args.safe
    try:
        if text.strip().endswith(".json") and Path(text).is_file():
            d = json.loads(Path(text).read_text())
            H, c = d["H"], d["c"]
        else:
            H, c = json.loads(f"[{text}]")
    except (ValueError, KeyError, TypeError, OSError):
        raise ConfigError('--safe needs "H, c" as JSON, e.g. "[[1, 0], [0, 1]], [2.5, 3.0]" '
                          "(rows of H, then c), or a .json file with keys H and c") from None
    try:
        return safe_set(H, c)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"--safe: {exc}") from None


def _box(args) -> int:
    from dynid.certify import max_box
    from dynid.modelfile import load_model

    net = load_model(args.model)
    points = points_arg(net, args.at)
    if args.steps > 1 and net.n_in != net.n_out:
        raise ShapeError(f"--steps {args.steps} needs a map from R^n to R^n; this model is "
                         f"{net.n_in} -> {net.n_out}")
    if args.figure is not None and net.n_in != 2:
        raise ShapeError(f"--figure draws 2-D inputs; this model has {net.n_in}")
    spec = _spec(args, net.n_out)
    domain = _domain(net, args)
    certs = run_points(points, lambda pt: max_box(
        net, pt, spec, steps=args.steps, mode=args.mode, weights=args.weights, domain=domain,
        relaxation=args.relaxation, iterations=args.iterations, confirm=args.confirm,
        grow=args.grow, solver=args.solver, time_limit=args.time_limit,
        threads=args.threads), _line, args.json)
    if args.figure is not None and certs:
        from dynid.certify.maxbox import box_figure
        from dynid.stages.figures import save_png

        label = certs[0].info.get("spec", {}).get("kind") == "label"
        save_png(box_figure(net, certs, domain if label else None), args.figure)
    return 0 if len(certs) == len(points) else 130


def _domain(net, args):
    if args.no_domain:
        if args.lo is not None or args.hi is not None:
            raise ConfigError("--no-domain cannot be combined with --lo/--hi")
        return None
    if args.lo is None and args.hi is None:
        from dynid.relunet import default_box

        return default_box(net, required=False)
    if args.lo is None or args.hi is None:
        raise ShapeError("give both --lo and --hi (or neither, to use the model's domain)")
    return np.asarray(args.lo, float), np.asarray(args.hi, float)


def _line(pt, c) -> str:
    i = c.info
    if "half_widths" not in i:
        return f"at {pt.tolist()}: {c.status.value} - {i.get('message', '')}"
    u = i.get("uniform", {})
    ratio = i.get("volume_ratio")
    return (f"at {pt.tolist()}: {c.status.value} (checked by {i.get('checked_by') or '-'}) "
            f"half-widths {np.round(i['half_widths'], 6).tolist()}  log-volume "
            f"{c.value:.6g}  uniform radius {np.round(u.get('eps', [np.nan])[0], 6)}  "
            f"ratio {'-' if ratio is None else f'{ratio:.4g}'}  {c.seconds:.2f}s")
