"""``dynid certify invertibility|radius|model-error``: certificates from the CLI."""

from __future__ import annotations

import sys

import numpy as np

from dynid.cli.common import (add_box_options, add_input, add_json_option, add_norm_option,
                              add_solver_options, finite_float, nonneg_float, nonneg_int,
                              positive_float, write_json)
from dynid.errors import ConfigError, ShapeError


def register(subparsers) -> None:
    p = subparsers.add_parser("certify", help="certify invertibility / local radii / the model "
                                              "error of a model",
                              description="Prove that a surrogate is (or is not) invertible "
                                          "on a box, or find certified radii of local "
                                          "invertibility at points.")
    sub = p.add_subparsers(dest="certify_command", metavar="QUERY")
    sub.required = True

    inv = sub.add_parser("invertibility", help="max ||x - y|| with F(x) = F(y) on a box",
                         description="Certify that MODEL is injective on the box [lo, hi] "
                                     "(status certified), or give a witness pair x != y with "
                                     "F(x) = F(y) (status counterexample), or 'unknown' with "
                                     "the gap when a limit was hit.")
    add_input(inv, "model", help="model file (.h5 written by dynid train)")
    add_box_options(inv, required=False, what="box (default: the model's training domain)")
    add_norm_option(inv)
    inv.add_argument("--delta", type=nonneg_float, default=0.0,
                     help="output tolerance: pairs with ||F(x) - F(y)||_inf <= delta "
                          "(default 0: equal outputs)")
    inv.add_argument("--tol", type=positive_float, default=1e-4,
                     help="distance at or below which two points count as one (default 1e-4)")
    inv.add_argument("--formulation", choices=["ours", "naive"], default="ours",
                     help="MIP formulation (naive = the paper code's baseline)")
    inv.add_argument("--cells", type=nonneg_int, default=0, metavar="K",
                     help="split the box into a K x ... x K grid and solve one small MIP per "
                          "pair of cells (pairs whose outputs cannot meet are skipped); often "
                          "certifies where the single MIP times out. --time-limit is then the "
                          "budget of all pairs (default 0: one MIP over the whole box)")
    add_solver_options(inv)
    add_json_option(inv)
    inv.set_defaults(func=_invertibility)

    rad = sub.add_parser("radius", help="certified radius of local invertibility at points",
                         description="Certified radius at each point given by --at: mode "
                                     "'preimage' = distance to the nearest other preimage of "
                                     "F(x); mode 'ball' = largest ball on which F is injective.")
    add_input(rad, "model", help="model file (.h5)")
    rad.add_argument("--at", type=finite_float, nargs="+", required=True, metavar="X",
                     help="the point (n values; several points: 2n, 3n, ... values)")
    rad.add_argument("--mode", choices=["preimage", "ball"], default="preimage")
    add_norm_option(rad)
    rad.add_argument("--method", choices=["fast", "reference"], default="fast",
                     help="fast = one MIP; reference = the paper's grow-and-bisect protocol")
    rad.add_argument("--r-max", type=positive_float, default=10.0,
                     help="largest radius searched (default 10)")
    rad.add_argument("--resolution", type=positive_float, default=1e-3,
                     help="width of the certified bracket (default 1e-3)")
    add_solver_options(rad)
    add_json_option(rad)
    rad.set_defaults(func=_radius)

    from dynid.cli.box import register as register_box   # dynid certify box (max_box)
    from dynid.cli.model_error import register as register_model_error

    register_box(sub)
    register_model_error(sub)              # certify model-error (dynid/cli/model_error.py)

    from dynid.cli.boundary import register as register_boundary   # dynid certify boundary

    register_boundary(sub)


def _box(net, args):
    if args.lo is None and args.hi is None:
        from dynid.relunet import default_box

        return default_box(net, "the box with --lo and --hi")
    if args.lo is None or args.hi is None:
        raise ShapeError("give both --lo and --hi (or neither, to use the training domain)")
    return np.asarray(args.lo, float), np.asarray(args.hi, float)


def _progress(args):
    if getattr(args, "json", None) == "-":
        return None
    return lambda line: print(f"  {line}", file=sys.stderr)


def _invertibility(args) -> int:
    from dynid.certify import invertible_on
    from dynid.modelfile import load_model

    net = load_model(args.model)
    lo, hi = _box(net, args)
    if args.cells < 0 or args.cells == 1:
        raise ConfigError(f"--cells must be 0 (one MIP) or >= 2, got {args.cells}")
    cert = invertible_on(net, lo, hi, norm=args.norm, delta=args.delta, method=args.formulation,
                         solver=args.solver, time_limit=args.time_limit, threads=args.threads,
                         tol=args.tol, cells=args.cells or None, progress=_progress(args))
    out = sys.stderr if args.json == "-" else sys.stdout
    print(cert.summary(), file=out)
    if cert.witness is not None:
        w = cert.witness
        print(f"  witness x = {np.round(w['x'], 6).tolist()}  y = {np.round(w['y'], 6).tolist()}"
              f"  ||x - y|| = {w['distance']:.6g}  ||F(x) - F(y)|| = {w['output_gap']:.3g}",
              file=out)
    write_json(cert, args.json)
    return 0


def _radius(args) -> int:
    from dynid.certify import certified_radius
    from dynid.modelfile import load_model

    net = load_model(args.model)
    at = np.asarray(args.at, float)
    if at.size % net.n_in:
        raise ShapeError(f"--at needs a multiple of {net.n_in} values (one point is "
                         f"{net.n_in} values), got {at.size}")
    points = at.reshape(-1, net.n_in)
    out = sys.stderr if args.json == "-" else sys.stdout
    certs = []
    for pt in points:
        c = certified_radius(net, pt, mode=args.mode, norm=args.norm, method=args.method,
                             r_max=args.r_max, resolution=args.resolution, solver=args.solver,
                             time_limit=args.time_limit)
        certs.append(c)
        print(f"at {pt.tolist()}: radius {c.value:.6g} (upper {c.bound:.6g}) "
              f"{c.status.value} [{args.mode}, {args.norm}-norm, {args.method}] "
              f"{c.seconds:.2f}s", file=out)
    write_json(certs[0] if len(certs) == 1 else [c.to_dict() for c in certs], args.json)
    return 0
