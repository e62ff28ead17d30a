"""Sub-commands ``simulate``, ``train``, ``evaluate``, ``info`` and ``data import``."""

from __future__ import annotations

import argparse
import json
import sys

from dynid.cli.common import (add_input, add_json_option, add_output, finite_float,
                              fraction_float, nonneg_float, nonneg_int, positive_float, positive_int,
                              torch_device, write_json)
from dynid.errors import ConfigError, DynidError

SIMULATE_HELP = """\
Simulate an ODE system and save a dataset (netCDF4) to train a surrogate on.

By default: one-step pairs (x, x_next) with x uniform in the system's domain and x_next the
exact flow over dt (CasADi CVODES). With --trajectories N --steps T: N trajectories of T steps
from initial states sampled in the domain. For a plant with inputs (pendulum_torque,
cart_pole, mass_spring_damper, linear_input), pairs sample [x; u] in the state box times the
input box, and --experiments N --steps T runs N identification experiments driven by an
excitation signal (held constant over each step).

examples:
  dynid simulate brusselator --out data.nc
  dynid simulate brusselator --out data.nc --samples 20000 --dt 0.1 --param a=1 --param b=3
  dynid simulate van_der_pol --out vdp.nc --map rk4 --sampling lhs --lo -3 -3 --hi 3 3
  dynid simulate duffing --out traj.nc --trajectories 50 --steps 100
  dynid simulate pendulum_torque --out exp.nc --experiments 200 --steps 100 --dt 0.05 \\
        --signal random_steps --hold 4,20 --u-lo -2 --u-hi 2 --noise-std 0.001
"""

TRAIN_HELP = """\
Train a ReLU surrogate x[k+1] = F(x[k]) on a dataset and save it as an HDF5 model file.

The saved network is the map in physical units (normalisation folded into the weights), so
every later certificate is about the map you see. Ctrl-C stops training and saves the best
model so far.

examples:
  dynid train data.nc --out model.h5
  dynid train data.nc --out model.h5 --arch mlp --hidden 64,64 --epochs 200
  dynid train traj.nc --out model.h5 --rollout-steps 5       (multi-step loss)
  dynid train data.nc --out model.h5 --arch cpl --hidden 32,32,32,32 --cpl-gain scalar
"""


def _params(items) -> dict:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--param {item!r} must look like NAME=VALUE, e.g. --param b=3")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--param {item!r}: value {value!r} is not a number") from None
    return out


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                         "integers, e.g. 32,32") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive widths, e.g. 32,32")
    return sizes


IMPORT_HELP = """\
Import your own experiment logs (CSV, Parquet, netCDF) as a dynid dataset (netCDF4).

One row per sample; name the state columns, the input columns, the time column (or give
--dt) and, for several experiments in one file, the experiment-id column. Experiments may have
different lengths; pairs are never formed across experiments. Every problem (missing column,
name given twice, non-numeric / NaN value, time not increasing or irregular, units) is one
line naming the row and column, exit code 2, and nothing is written.

examples:
  dynid data import log.csv --states th,om --inputs tau --time t --out data.nc
  dynid data import runs.parquet --states x,v --inputs F --time t --experiment run_id \\
        --out data.nc --units x=m,v=m/s,F=N
  dynid data import bench.nc --states theta_meas,omega_meas --inputs torque --time t \\
        --experiment run --out data.nc
"""


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("simulate", help="simulate an ODE system into a dataset file",
                       description=SIMULATE_HELP, formatter_class=fmt)
    p.add_argument("system", help="catalogue name: brusselator, van_der_pol, fitzhugh_nagumo, "
                                  "lotka_volterra, duffing, pendulum, linear; plants with "
                                  "inputs: pendulum_torque, cart_pole, mass_spring_damper, "
                                  "linear_input")
    add_output(p, "--out", required=True, metavar="FILE.nc", help="dataset file to write")
    p.add_argument("--samples", type=positive_int, default=10000, metavar="N",
                   help="number of one-step pairs, or of trajectories with --trajectories "
                        "(default 10000)")
    p.add_argument("--dt", type=positive_float, default=0.1,
                   help="time step of the map (default 0.1)")
    p.add_argument("--map", choices=["flow", "euler", "rk4"], default="flow",
                   help="flow = exact flow of the ODE; euler / rk4 = one explicit step "
                        "(default flow)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="override a system parameter, repeatable (e.g. --param b=3)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--sampling", choices=["uniform", "lhs", "grid"], default="uniform",
                   help="how states are drawn in the box (default uniform)")
    p.add_argument("--lo", type=finite_float, nargs="+", metavar="L",
                   help="lower corner of the sampling box (default: the system's domain)")
    p.add_argument("--hi", type=finite_float, nargs="+", metavar="H",
                   help="upper corner of the sampling box (default: the system's domain)")
    p.add_argument("--trajectories", action="store_true",
                   help="simulate --samples trajectories instead of one-step pairs")
    p.add_argument("--steps", type=positive_int, default=50,
                   help="trajectory length (default 50)")
    p.add_argument("--with-trajectories", type=nonneg_int, default=0, metavar="N",
                   help="pairs mode: also add the consecutive pairs of N trajectories of "
                        "--steps steps from the box (covers where free runs go)")
    p.add_argument("--experiments", type=positive_int, default=None, metavar="N",
                   help="plants: N experiments of --steps steps driven by --signal")
    p.add_argument("--signal", default="random_steps",
                   choices=["random_steps", "prbs", "multisine", "chirp"],
                   help="excitation of the experiments (default random_steps)")
    p.add_argument("--hold", default=None, metavar="MIN[,MAX]",
                   help="random_steps / prbs: steps each level is held (default 5,20 / 1)")
    p.add_argument("--u-lo", type=finite_float, nargs="+", default=None, metavar="L",
                   help="plants: lower corner of the input box (default: the system's)")
    p.add_argument("--u-hi", type=finite_float, nargs="+", default=None, metavar="H",
                   help="plants: upper corner of the input box (default: the system's)")
    p.add_argument("--noise-std", type=nonneg_float, nargs="+", default=[0.0], metavar="S",
                   help="experiments: std of measurement noise on the states (one or per state)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("train", help="train a ReLU surrogate on a dataset",
                       description=TRAIN_HELP, formatter_class=fmt)
    add_input(p, "data", metavar="DATA", help="dataset file (from dynid simulate)")
    add_output(p, "--out", required=True, metavar="MODEL.h5", help="model file to write")
    p.add_argument("--arch", choices=["mlp", "residual", "cpl"], default="residual",
                   help="residual: x + dt*N(x) (default); mlp: x -> x_next; cpl: a stack of "
                        "convex potential blocks (one per --hidden width), invertible by "
                        "construction with an analytic certificate (docs/cpl.md)")
    p.add_argument("--cpl-c", type=positive_float, default=0.9, metavar="C",
                   help="cpl: step factor of every block, 0 < C < 1 (default 0.9)")
    p.add_argument("--cpl-gain", default="none", choices=["none", "scalar", "matrix"],
                   help="cpl: linear part after the stack (default none: Lip <= 1 in "
                        "normalised units)")
    p.add_argument("--hidden", type=_hidden, default=(32, 32), metavar="W1,W2,..",
                   help="hidden layer widths (default 32,32)")
    p.add_argument("--epochs", type=positive_int, default=600,
                   help="maximum epochs (default 600)")
    p.add_argument("--batch-size", type=positive_int, default=128,
                   help="minibatch size (default 128)")
    p.add_argument("--lr", type=positive_float, default=5e-3,
                   help="Adam learning rate (default 5e-3)")
    p.add_argument("--schedule", choices=["cosine", "plateau", "none"], default="cosine",
                   help="learning-rate schedule (default cosine)")
    p.add_argument("--val-fraction", type=fraction_float, default=0.2,
                   help="share of data held out for validation (default 0.2)")
    p.add_argument("--patience", type=positive_int, default=None,
                   help="stop after this many epochs without validation improvement")
    p.add_argument("--target-rmse", type=positive_float, default=None,
                   help="stop once the validation one-step RMSE reaches this value")
    p.add_argument("--max-seconds", type=positive_float, default=None,
                   help="wall-clock limit of training (the best model so far is kept)")
    p.add_argument("--rollout-steps", type=nonneg_int, default=0, metavar="K",
                   help="add a K-step free-run loss (needs trajectory data)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="training precision (the saved model is float64 anyway)")
    p.add_argument("--device", type=torch_device, default="cpu",
                   help="torch device: cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy of a model: one-step and rollout errors",
                       description="One-step RMSE on the dataset and on fresh pairs, and free-run "
                       "rollout RMSE / NRMSE / fit %% from held-out initial states against the "
                       "true system (named in the model file).\n\nexample:\n"
                       "  dynid evaluate model.h5 data.nc --json metrics.json",
                       formatter_class=fmt)
    add_input(p, "model", metavar="MODEL", help="model file (.h5)")
    add_input(p, "data", metavar="DATA", nargs="?", default=None,
                   help="dataset file of the same system (optional)")
    p.add_argument("--steps", type=positive_int, default=50,
                   help="rollout horizon (default 50)")
    p.add_argument("--initial-states", type=positive_int, default=20,
                   help="held-out initial states for the rollouts (default 20)")
    p.add_argument("--seed", type=nonneg_int, default=12345, help="seed of those states")
    add_json_option(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("info", help="show what is in a dataset or model file",
                       description="Print the contents of a dataset (.nc) or model (.h5) file: "
                       "sizes, system, time step, training summary, provenance.\n\nexample:\n"
                       "  dynid info model.h5", formatter_class=fmt)
    add_input(p, "file", metavar="FILE", help="a dataset (.nc) or model (.h5) file")
    add_json_option(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("data", help="measured data: import experiment logs",
                       description="Work with measured data.", formatter_class=fmt)
    actions = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(p))
    q = actions.add_parser("import", help="import a CSV / Parquet / netCDF log as a dataset",
                           description=IMPORT_HELP, formatter_class=fmt)
    add_input(q, "file", metavar="LOG", help="the log file (.csv, .parquet, .nc)")
    q.add_argument("--states", required=True, metavar="A,B,..",
                   help="state columns, comma-separated (in this order)")
    q.add_argument("--inputs", default="", metavar="U,..",
                   help="input columns, comma-separated (none for an autonomous system)")
    q.add_argument("--time", default=None, metavar="T",
                   help="time column (s; ms/min/h when the file's units say so)")
    q.add_argument("--dt", type=positive_float, default=None,
                   help="sampling step in s (needed without --time; checked with it)")
    q.add_argument("--experiment", default=None, metavar="COL",
                   help="experiment-id column (several experiments in one file)")
    q.add_argument("--units", default=None, metavar="NAME=UNIT,..",
                   help="units of the columns, e.g. th=rad,om=rad/s,tau=N m")
    q.add_argument("--format", default=None, choices=["csv", "parquet", "netcdf"],
                   help="file format (default: from the extension)")
    q.add_argument("--dt-tolerance", type=positive_float, default=1e-6, metavar="R",
                   help="relative tolerance of the sampling-step checks (default 1e-6)")
    add_output(q, "--out", required=True, metavar="FILE.nc", help="dataset file to write")
    q.set_defaults(func=cmd_data_import)
    p.set_defaults(func=lambda args: _data_usage(p))


def _hold(text):
    if text is None:
        return {}
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"--hold {text!r} must be an integer or MIN,MAX (steps)") from None
    if len(values) not in (1, 2):
        raise ConfigError(f"--hold {text!r} must be an integer or MIN,MAX (steps)")
    return {"hold": values[0] if len(values) == 1 else tuple(values)}


def cmd_simulate(args) -> int:
    from dynid.datasets import save_dataset
    from dynid.stages.data import simulate_dataset

    if args.experiments is not None and args.trajectories:
        raise ConfigError("give either --experiments N (a plant driven by inputs) or "
                          "--trajectories, not both")
    kind = "experiments" if args.experiments is not None else \
        "trajectories" if args.trajectories else "pairs"
    noise = args.noise_std[0] if len(args.noise_std) == 1 else args.noise_std
    ds = simulate_dataset(args.system, params=_params(args.param), dt=args.dt,
                          method=args.map, kind=kind,
                          samples=args.experiments if kind == "experiments" else args.samples,
                          steps=args.steps, sampling=args.sampling,
                          lo=args.lo, hi=args.hi, seed=args.seed,
                          trajectory_samples=args.with_trajectories,
                          progress=None if args.quiet else True, u_lo=args.u_lo,
                          u_hi=args.u_hi, signal=args.signal,
                          signal_options=_hold(args.hold), noise_std=noise)
    path = save_dataset(ds, args.out)
    inputs = f", inputs {[str(v) for v in ds['input'].values]}" if "u" in ds.variables else ""
    print(f"wrote {path}: {ds.attrs['kind']} of {ds.attrs['system']} {dict(ds.sizes)}, "
          f"dt={ds.attrs['dt']}, map={ds.attrs['map']}{inputs}")
    return 0


def cmd_train(args) -> int:
    from dynid.datasets import load_dataset
    from dynid.modelfile import save_model
    from dynid.train import train

    ds = load_dataset(args.data)
    log = None if args.quiet else (lambda m: print(m, file=sys.stderr))
    net, summary = train(ds, arch=args.arch, hidden=args.hidden, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
                         val_fraction=args.val_fraction, patience=args.patience,
                         target_rmse=args.target_rmse, max_seconds=args.max_seconds,
                         rollout_steps=args.rollout_steps, seed=args.seed, dtype=args.dtype,
                         device=args.device, progress=not args.quiet, log=log,
                         checkpoint=args.out,
                         arch_options={"c": args.cpl_c, "gain": args.cpl_gain}
                         if args.arch == "cpl" else None)
    if summary["interrupted"]:
        print(f"interrupted after {summary['epochs']} epochs; best model so far saved to "
              f"{args.out}", file=sys.stderr)
        return 130
    save_model(args.out, net)
    print(f"wrote {args.out}: {summary['arch']} {net.widths}, {summary['epochs']} epochs in "
          f"{summary['seconds']:.1f} s, validation one-step RMSE {summary['best_val_rmse']:.3g}")
    return 0


def cmd_evaluate(args) -> int:
    from dynid.datasets import load_dataset
    from dynid.metrics import evaluate_model
    from dynid.modelfile import load_model

    net = load_model(args.model)
    ds = load_dataset(args.data) if args.data else None
    res = evaluate_model(net, ds, steps=args.steps, n_initial=args.initial_states,
                         seed=args.seed)
    if args.json != "-":
        for key in ("one_step_rmse_data", "one_step_rmse_test"):
            if res[key] is not None:
                print(f"{key}: {res[key]:.4g}")
        if "heldout" in res:
            _print_plant(res)
        else:
            _print_rollouts(res)
    write_json(res, args.json)
    return 0


def _print_rollouts(res) -> None:
    for key in ("rollout", "rollout_data"):
        r = res[key]
        if r:
            print(f"{key} ({r['n_trajectories']} runs x {r['steps']} steps): rmse "
                  f"{r['rmse']:.4g}, nrmse {100 * r['nrmse']:.3g} %, fit "
                  f"{r['fit_percent']:.2f} %")
    if res["rollout"] is None:
        print("rollout: skipped (the model file names no known system / dt / domain)")


def _print_plant(res) -> None:
    names = res.get("state_names") or []
    for part, what in (("heldout", "held-out experiments"), ("fresh", "fresh experiments")):
        r, a = res[part], res[f"{part}_arx"]
        if r is None:
            continue
        print(f"{part} ({len(r['experiments'])} {what} x {r['steps']} steps, free run under "
              "the recorded inputs):")
        for i, f in enumerate(r["fit_percent_per_state"]):
            name = names[i] if i < len(names) else f"x{i + 1}"
            arx = f", ARX {a['fit_percent_per_state'][i]:.2f} %" if a else ""
            print(f"  {name}: fit {f:.2f} % (median {r['fit_percent_median_per_state'][i]:.2f}"
                  f" %), nrmse {r['nrmse_per_state'][i]:.4g}{arx}")
    if res["heldout"] is None and res["fresh"] is None:
        print("free runs: skipped (no experiments in the dataset and no known system)")


def _data_usage(parser) -> int:
    parser.print_help(sys.stderr)
    return 2


def cmd_data_import(args) -> int:
    from dynid.dataimport import import_table
    from dynid.datasets import dataset_summary, save_dataset

    ds = import_table(args.file, args.states, args.inputs, args.time, args.experiment,
                      fmt=args.format, units=args.units, dt=args.dt,
                      dt_tolerance=args.dt_tolerance)
    path = save_dataset(ds, args.out)
    s = dataset_summary(ds)
    lengths = s.get("length", {})
    print(f"wrote {path}: {s['experiments']} experiment(s) of {lengths.get('min')}.."
          f"{lengths.get('max')} samples, dt={float(ds.attrs['dt']):.6g} s, states "
          f"{s['state_names']}, inputs {s.get('input_names', [])}")
    return 0


def _h5_format(path) -> str | None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
            return fmt.decode() if isinstance(fmt, bytes) else (str(fmt) if fmt else None)
    except OSError:
        return None


def cmd_info(args) -> int:
    from pathlib import Path

    from dynid.results import jsonable

    path = Path(args.file)
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    if _h5_format(path) == "dynid-relunet":
        from dynid.modelfile import load_model

        net = load_model(path)
        info = {"file": str(path), "type": "model", "widths": net.widths,
                "relu_units": net.n_relu, "parameters": net.n_params, "layers": net.n_layers,
                "meta": {k: v for k, v in net.meta.items() if k != "normalisation"}}
        tr = info["meta"].get("training")
        if isinstance(tr, dict):
            info["meta"]["training"] = {k: v for k, v in tr.items() if k != "history"}
    else:
        from dynid.datasets import dataset_kind, load_dataset

        try:
            ds = load_dataset(path)
        except DynidError as exc:
            raise ConfigError(f"{path} is neither a dynid model file nor a dataset: {exc}") \
                from None
        attrs = {}
        for k, v in ds.attrs.items():
            attrs[k] = v
            if k == "params" and isinstance(v, str):
                try:
                    attrs[k] = json.loads(v)
                except ValueError:
                    pass
        info = {"file": str(path), "type": "dataset", "kind": dataset_kind(ds),
                "sizes": dict(ds.sizes),
                "states": [str(s) for s in ds.coords["state"].values] if "state" in ds.coords
                else None,
                "variables": {str(k): list(v.dims) for k, v in ds.data_vars.items()},
                "attributes": attrs}
    info = jsonable(info)
    if args.json != "-":
        _print_tree(info)
    write_json(info, args.json)
    return 0


def _print_tree(obj, indent: int = 0) -> None:
    pad = "  " * indent
    for k, v in obj.items():
        if isinstance(v, dict) and v:
            print(f"{pad}{k}:")
            _print_tree(v, indent + 1)
        else:
            text = json.dumps(v) if not isinstance(v, str) else v
            if len(text) > 110:
                text = text[:107] + "..."
            print(f"{pad}{k}: {text}")
