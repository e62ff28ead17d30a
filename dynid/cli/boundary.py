"""``dynid certify boundary``: exact L_p distance from points to the decision boundary.

Registered from :mod:`dynid.cli.certify` as one more query of ``dynid certify``.
"""

from __future__ import annotations

import argparse

from dynid.cli.box import _domain
from dynid.cli.common import (add_input, add_json_option, add_norm_option, add_solver_options,
                              finite_float, nonneg_float, points_arg, run_points)

EXAMPLES = """\
examples:
  dynid certify boundary examples/voronoi_mlp.h5 --at 0.2 0.7 --norm 2
  dynid certify boundary model.h5 --at 0.1 0.2 0.5 0.5 --norm inf --time-limit 60 --json d.json
"""


def register(sub) -> None:
    p = sub.add_parser(
        "boundary", help="exact L_p distance from points to the decision boundary",
        description="For each point given by --at, the exact minimal L_p distance to where the "
                    "decision of MODEL changes (the sign of a single output, else the argmax), "
                    "as a bracket [exact_lo, exact_hi] from a MIP (best bound, and a float64 "
                    "checked witness on the other side), with a CROWN certified radius below "
                    "and an attack above. Only points of the domain count (default: the "
                    "model's domain; --no-domain for all of R^n).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input(p, "model", help="model file (.h5)")
    p.add_argument("--at", type=finite_float, nargs="+", required=True, metavar="X",
                   help="the point (n values; several points: 2n, 3n, ... values)")
    add_norm_option(p)
    p.add_argument("--lo", type=finite_float, nargs="+", metavar="L",
                   help="lower corner of the domain (default: the model's domain)")
    p.add_argument("--hi", type=finite_float, nargs="+", metavar="H",
                   help="upper corner of the domain (default: the model's domain)")
    p.add_argument("--no-domain", action="store_true",
                   help="all of R^n counts (ignore the model's domain)")
    p.add_argument("--gap", type=nonneg_float, default=1e-4,
                   help="relative width at which the bracket counts as closed (default 1e-4)")
    p.add_argument("--tighten", choices=["crown", "obbt"], default="crown",
                   help="intermediate bounds of the MIP (default crown; obbt adds LP tightening)")
    add_solver_options(p)
    add_json_option(p)
    p.set_defaults(func=_boundary)


def _boundary(args) -> int:
    from dynid.certify import boundary_distance
    from dynid.modelfile import load_model

    net = load_model(args.model)
    points = points_arg(net, args.at)
    domain = _domain(net, args)
    certs = run_points(points, lambda pt: boundary_distance(
        net, pt, args.norm, domain, solver=args.solver, time_limit=args.time_limit,
        threads=args.threads, gap=args.gap, tighten=args.tighten), _line, args.json)
    return 0 if len(certs) == len(points) else 130


def _line(pt, c) -> str:
    i = c.info
    return (f"at {pt.tolist()}: {c.status.value}  L{i['norm']} distance in "
            f"[{c.value:.9g}, {c.bound:.9g}]  (CROWN {i['lower']:.6g}, attack "
            f"{i['upper']:.6g}, {i.get('mip_solver', '-')})  {c.seconds:.2f}s")
