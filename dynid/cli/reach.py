"""``dynid reach``: certified reachable sets of a closed loop or a surrogate over K steps.

    dynid reach config.toml
    dynid reach model.h5 --lo L1 L2 --hi H1 H2 --steps K [--method one-shot|recursive|hybrid]
                [--engine ibp|crown|lp-highs|lp-splitting|mip] [--template box|octagon]
                [--partitions N ..] [--refine S] [--out reach.nc] [--report report.html]
                [--json PATH]

    dynid reach plant.h5 --controller ctrl.onnx [--u-lo L .. --u-hi H ..] --lo .. --hi ..
    dynid reach plant.h5 --gain K11 K12 .. [--offset O ..] --u-lo .. --u-hi .. --lo .. --hi ..

MODEL may also be ``benchmark:double_integrator`` or ``benchmark:quadrotor6d``. A plant
surrogate with inputs (``[x; u] -> x_next``) is closed with a controller file (ONNX, Keras,
.nnet, dynid .h5) or a linear gain ``u = K x + offset`` (K row-major, inputs x states) and
saturated at ``--u-lo/--u-hi`` (default: the controller's recorded limits, else the plant's
input box). The reach package is imported inside the handler so that ``dynid --help`` stays
fast.
"""

from __future__ import annotations

from dynid.cli.common import (add_box_options, add_input, add_json_option, add_output,
                              finite_float, nonneg_float, nonneg_int, positive_int, torch_device, write_json)

HELP = "reachable sets of a step map / closed loop over K steps (sound boxes, verdicts, report)"


def register(subparsers) -> None:
    p = subparsers.add_parser("reach", help=HELP, description=HELP)
    add_input(p, "target", metavar="MODEL_OR_CONFIG",
                   help="a config .toml, a network file whose map is one step R^n -> R^n, or "
                        "benchmark:NAME (double_integrator, quadrotor6d)")
    add_box_options(p, required=False, what="initial box")
    p.add_argument("--steps", type=positive_int, default=None, help="horizon K")
    p.add_argument("--method", default=None, choices=["one-shot", "recursive", "hybrid"],
                   help="one-shot (unrolled, tight), recursive (step by step, cheap) or hybrid "
                        "(default: one-shot)")
    p.add_argument("--engine", default=None,
                   choices=["ibp", "crown", "lp-highs", "lp-splitting", "mip"],
                   help="bounding engine (default: crown)")
    p.add_argument("--template", default=None, choices=["box", "octagon"],
                   help="template directions (default: box)")
    p.add_argument("--window", type=positive_int, default=None, help="hybrid window in steps")
    p.add_argument("--partitions", type=positive_int, nargs="+", default=None, metavar="N",
                   help="split X0 into N cells per coordinate (or one count per coordinate)")
    p.add_argument("--refine", type=nonneg_float, default=None, metavar="S",
                   help="seconds of greedy refinement of the partition (default: 0, off)")
    p.add_argument("--samples", type=nonneg_int, default=None,
                   help="simulated trajectories for the inner boxes (default: 20000)")
    p.add_argument("--device", type=torch_device, default=None, metavar="cpu|cuda",
                   help="torch device of the crown and lp-splitting engines (default cpu)")
    p.add_argument("--intermediate", default=None, choices=["ibp", "crown", "splitting", "lp"],
                   help="intermediate bounds of the LP engines (lp-splitting default: "
                        "splitting, by the polished layer dual)")
    p.add_argument("--max-iter", type=nonneg_int, default=None, metavar="N",
                   help="lp-splitting: ADMM iterations of the output LPs (default 3000)")
    p.add_argument("--polish-steps", type=nonneg_int, default=None, metavar="N",
                   help="lp-splitting: slope-polishing steps of the output LPs and of each "
                        "intermediate layer (default 500)")
    add_input(p, "--controller", default=None, metavar="FILE",
                   help="controller u = pi(x) of a plant surrogate (.onnx, Keras .h5/.json, "
                        ".nnet, dynid .h5)")
    p.add_argument("--gain", type=finite_float, nargs="+", default=None, metavar="K",
                   help="linear controller u = K x + offset instead of a file (K row-major: "
                        "inputs x states)")
    p.add_argument("--offset", type=finite_float, nargs="+", default=None, metavar="O",
                   help="offset of the linear controller (default 0)")
    p.add_argument("--u-lo", type=finite_float, nargs="+", default=None, metavar="L",
                   help="lower saturation limit of each input")
    p.add_argument("--u-hi", type=finite_float, nargs="+", default=None, metavar="H",
                   help="upper saturation limit of each input")
    add_output(p, "--out", default=None, help="write the reachable sets to this netCDF file")
    add_output(p, "--report", default=None, help="write a self-contained HTML report")
    p.add_argument("--for", dest="about", default="surrogate", choices=["surrogate", "plant"],
                   help="sets of the surrogate (default) or of the plant: the true system of "
                        "the model, through a certified model error (reach/plant.py)")
    p.add_argument("--error-lo", type=finite_float, nargs="+", default=None, metavar="L",
                   help="with --for plant: box where the model error is certified (default: "
                        "the surrogate's sets, grown)")
    p.add_argument("--error-hi", type=finite_float, nargs="+", default=None, metavar="H")
    add_json_option(p)
    p.set_defaults(func=handle)


def handle(args) -> int:
    import sys
    from pathlib import Path

    from dynid.errors import ConfigError
    from reach.config import ReachConfig, build_step_net, load_config, run_config

    target = str(args.target)
    controller = _controller_options(args)
    if target.endswith(".toml"):
        if controller is not None:
            raise ConfigError("give the controller in the config file's [controller] table, "
                              "not on the command line")
        cfg = load_config(target)
    else:
        if target.startswith("benchmark:"):
            if controller is not None:
                raise ConfigError("a benchmark brings its own controller: drop --controller / "
                                  "--gain")
            net, defaults = build_step_net(benchmark=target.split(":", 1)[1])
        else:
            net, defaults = build_step_net(model=target, controller=controller)
        lo = args.lo if args.lo is not None else defaults.get("lo")
        hi = args.hi if args.hi is not None else defaults.get("hi")
        if lo is None or hi is None:
            raise ConfigError("give the initial box with --lo ... --hi ...")
        steps = args.steps if args.steps is not None else defaults.get("steps")
        if steps is None:
            raise ConfigError("give the horizon with --steps K")
        cfg = ReachConfig(net, lo, hi, int(steps), {}, [], None, None,
                          source=target)
    import numpy as np

    cfg.lo = np.asarray(args.lo if args.lo is not None else cfg.lo, float)
    cfg.hi = np.asarray(args.hi if args.hi is not None else cfg.hi, float)
    if args.steps is not None:
        cfg.steps = int(args.steps)
    for key in ("method", "engine", "template", "window", "refine", "samples"):
        v = getattr(args, key)
        if v is not None:
            cfg.options[key] = v
    if args.partitions is not None:
        cfg.options["partitions"] = (args.partitions[0] if len(args.partitions) == 1
                                     else list(args.partitions))
    cfg.options.setdefault("engine", "crown")
    if args.device is not None:   # checked by its argparse type (torch_device)
        cfg.options["engine_opts"] = {**(cfg.options.get("engine_opts") or {}),
                                      "device": args.device}
    extra = {}
    if args.intermediate is not None:
        extra["intermediate"] = args.intermediate
    if args.max_iter is not None:
        extra["max_iter"] = args.max_iter
    if args.polish_steps is not None:
        extra["polish_steps"] = args.polish_steps
        extra["intermediate_opts"] = {**(cfg.options.get("engine_opts") or {}).get(
            "intermediate_opts", {}), "polish_steps": args.polish_steps}
    if extra:
        cfg.options["engine_opts"] = {**(cfg.options.get("engine_opts") or {}), **extra}
    if args.out is not None:
        cfg.out = Path(args.out)
    if args.report is not None:
        cfg.report = Path(args.report)
    from dynid.options import check_output

    # the config file's own out / report follow the same rule as --out / --report
    for what, path in (("out", cfg.out), ("report", cfg.report)):
        check_output(path, inputs=[target], overwrite=args.overwrite, name=what)
    if cfg.out is not None and cfg.report is not None and Path(cfg.out) == Path(cfg.report):
        raise ConfigError(f"out and report name the same file {cfg.out}")
    if args.about == "plant":
        from reach.plant import closed_loop_of, run_plant_config

        if (args.error_lo is None) != (args.error_hi is None):
            raise ConfigError("give both --error-lo and --error-hi (or neither)")
        if args.error_lo is not None:
            cfg.options["error_box"] = (args.error_lo, args.error_hi)
        model, base = target, Path(".")       # the parts of a closed loop, from where they came
        if target.endswith(".toml"):
            from dynid.pipeline import read_toml

            raw = read_toml(Path(target), "reach config")
            raw = raw["reach"] if isinstance(raw.get("reach"), dict) else raw
            model, controller, base = raw.get("model"), raw.get("controller"), Path(target).parent
        loop = closed_loop_of(cfg.step_net, model, controller, base)
        run = run_plant_config(cfg, progress=lambda m: print(f"  {m}", file=sys.stderr),
                               loop=loop)
        summary = run.summary()
        if args.json != "-":
            _print(run, {**summary, "method": run.dataset.attrs.get("method"),
                         "engine": run.dataset.attrs.get("engine"),
                         "cells": int(run.dataset.sizes["cell"])})
        write_json(summary, args.json)
        return 0
    run = run_config(cfg, progress=sys.stderr.isatty() or None)
    summary = run.summary()
    if args.json != "-":  # keep stdout pure JSON when it carries the JSON
        _print(run, summary)
    write_json(summary, args.json)
    if not int(run.dataset.attrs.get("complete", 1)):
        # Ctrl-C during the bounds: the finished cells were kept (and written); say so, 130
        raise KeyboardInterrupt
    return 0


def _controller_options(args):
    """The [controller] table the command-line options describe (None without any)."""
    from dynid.errors import ConfigError

    if args.controller is None and args.gain is None:
        if args.offset is not None or args.u_lo is not None or args.u_hi is not None:
            raise ConfigError("--offset / --u-lo / --u-hi need a controller: give --controller "
                              "FILE or --gain K ..")
        return None
    spec = {"file": args.controller} if args.controller is not None else {"gain": args.gain}
    if args.controller is not None and args.gain is not None:
        raise ConfigError("give either --controller FILE or --gain K .., not both")
    if args.offset is not None:
        spec["offset"] = args.offset
    if args.u_lo is not None:
        spec["u_lo"] = args.u_lo
    if args.u_hi is not None:
        spec["u_hi"] = args.u_hi
    return spec


def _print(run, summary) -> None:
    from reach.disturbance import describe

    ds = run.dataset
    names = [str(s) for s in ds.state.values]
    print(f"reach: {summary['method']} / {summary['engine']}, {summary['steps']} steps, "
          f"{summary['cells']} cell(s), {summary['seconds']:.3f} s")
    print(f"  {describe(ds)}")
    for s in ds.step.values:
        lo, hi = ds.box_lo.sel(step=s).values, ds.box_hi.sel(step=s).values
        box = "  ".join(f"{n} in [{a:.6g}, {b:.6g}]" for n, a, b in zip(names, lo, hi))
        print(f"  step {int(s)}: {box}")
    if "error" in summary:
        print(f"error ratio at step {summary['steps']}: {summary['error']:.4g} against "
              f"{summary['samples']} sampled trajectories; sound: {summary['sound']}")
    if "true_runs" in summary:
        print(f"{summary['true_runs']} runs of the true system, outside the plant's sets: "
              f"{summary['true_runs_outside']}")
    for v in getattr(run, "verdicts", ()):
        line = f"spec '{v.spec}': {v.status}"
        if v.witness is not None:   # a falsifying run, re-checked by a float64 forward pass
            line += f" (falsifying run from x0 = {[round(float(a), 6) for a in v.witness[0]]})"
        print(line)
