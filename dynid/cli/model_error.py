"""``dynid certify model-error``: a bound of |F_true - F_net| over a box, per state.

    dynid certify model-error model.h5 [--system NAME] [--param K=V ..] [--lo .. --hi ..]
          [--u-lo .. --u-hi ..] [--dt DT] [--map flow|euler|rk4] [--rtol R]
          [--max-cells N] [--time-limit S] [--slopes difference|lipschitz]
          [--empirical [--data DATA.nc] [--samples N] [--beta B]] [--json PATH]

Without ``--empirical`` the bound is certified (interval arithmetic on the system's CasADi
equations); with it, it is the largest error on samples with a scenario confidence, and every
line printed and the JSON say "empirical, not certified".
"""

from __future__ import annotations

import sys

import numpy as np

from dynid.cli.common import (add_box_options, add_input, add_json_option, finite_float,
                              number_type, positive_float, positive_int, write_json)

beta_float = number_type("positive", float, maximum=1.0, label="beta")

HELP = "bound the model error |F_true - F_net| per state over a box (certified or empirical)"


def register(subparsers) -> None:
    p = subparsers.add_parser("model-error", help=HELP, description=HELP + ". The true map is "
                              "the system's exact flow over dt (or its Euler / RK4 map); "
                              "system, parameters, dt and map default to the model's.")
    add_input(p, "model", help="model file (.h5 written by dynid train)")
    p.add_argument("--system", default=None, help="the true system (default: the model's)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="system parameter, repeatable (default: the model's parameters)")
    add_box_options(p, required=False, what="state box (default: the training domain)")
    p.add_argument("--u-lo", type=finite_float, nargs="+", default=None, metavar="L",
                   help="lower corner of the input box (systems with inputs)")
    p.add_argument("--u-hi", type=finite_float, nargs="+", default=None, metavar="H",
                   help="upper corner of the input box")
    p.add_argument("--dt", type=positive_float, default=None, help="time step (default: the model's)")
    p.add_argument("--map", default=None, choices=["flow", "euler", "rk4"],
                   help="true map (default: the model's)")
    p.add_argument("--rtol", type=positive_float, default=0.2,
                   help="refine until the bound is within (1 + rtol) of the largest error "
                        "found (default 0.2)")
    p.add_argument("--max-cells", type=positive_int, default=500_000,
                   help="budget of grid cells (default 500000)")
    p.add_argument("--time-limit", type=positive_float, default=120.0, metavar="S",
                   help="seconds of refinement; a stop keeps a valid, looser bound (default 120)")
    p.add_argument("--slopes", default="difference", choices=["difference", "lipschitz"],
                   help="per-cell slope bound: the interval Jacobian of F_true - F_net "
                        "(default) or L_true + L_net")
    p.add_argument("--empirical", action="store_true",
                   help="empirical bound (sampled maximum with a scenario confidence), for "
                        "plants without equations: NOT certified")
    add_input(p, "--data", default=None,
              help="with --empirical: held-out data (netCDF) instead of simulated samples")
    p.add_argument("--samples", type=positive_int, default=100_000,
                   help="with --empirical and no --data: simulated samples (default 100000)")
    p.add_argument("--beta", type=beta_float, default=1e-6,
                   help="with --empirical: confidence 1 - beta (default 1e-6)")
    add_json_option(p)
    p.set_defaults(func=handle)


def handle(args) -> int:
    from dynid.certify.model_error import model_error
    from dynid.cli.data import _params
    from dynid.errors import ConfigError
    from dynid.modelfile import load_model

    if (args.lo is None) != (args.hi is None):
        raise ConfigError("give both --lo and --hi (or neither, for the training domain)")
    if args.data is not None and not args.empirical:
        raise ConfigError("--data is for the empirical bound: add --empirical")
    net = load_model(args.model)
    system = _system(net, args.system, _params(args.param))
    data = None
    if args.data is not None:
        from dynid.datasets import load_dataset

        data = load_dataset(args.data)
    quiet = args.json == "-"
    res = model_error(net, system, args.lo, args.hi, args.u_lo, args.u_hi, args.dt, args.map,
                      method="empirical" if args.empirical else "certified", rtol=args.rtol,
                      max_cells=args.max_cells, time_limit=args.time_limit,
                      slopes=args.slopes, data=data, samples=args.samples, beta=args.beta,
                      progress=None if quiet else (lambda m: print(f"  {m}", file=sys.stderr)))
    out = sys.stderr if quiet else sys.stdout
    print(res.summary(), file=out)
    print(f"  valid on states lo = {_vec(res.lo)}, hi = {_vec(res.hi)}"
          + (f"; inputs lo = {_vec(res.u_lo)}, hi = {_vec(res.u_hi)}" if np.size(res.u_lo)
             else ""), file=out)
    if res.empirical:
        print(f"  {res.info['statement']}", file=out)
    else:
        print(f"  {res.info['true_map']}; {res.info['cells']} cells, stop: {res.info['stop']}",
              file=out)
    write_json(res, args.json)
    return 0


def _system(net, name, params):
    """The true system: --system/--param, else the model's (None for data-only use)."""
    from dynid.certify.model_error import _params as model_params
    from dynid.systems import get_system

    meta = net.meta if isinstance(net.meta, dict) else {}
    if name is None:
        if not meta.get("system"):
            return None
        name = meta["system"]
        params = {**model_params(meta), **params}
    return get_system(name, **params)


def _vec(v) -> str:
    return "[" + ", ".join(f"{float(a):.6g}" for a in np.asarray(v).ravel()) + "]"
