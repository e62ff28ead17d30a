"""``dynid reach config.toml``: a reachability analysis described in one TOML file, and the
runner shared by the CLI and the pipeline stage.

A config file (every key but the model and the box is optional)::

    model = "controller.h5"            # any file dynid.formats.load_network reads, or
    # benchmark = "double_integrator"  # a shipped closed-loop benchmark (its X0 and horizon)
    lo = [2.5, -0.25]
    hi = [3.0, 0.25]
    steps = 5
    method = "one-shot"                # one-shot | recursive | hybrid
    engine = "lp-highs"                # ibp | crown | lp-highs | lp-splitting | mip
    template = "box"                   # box | octagon
    window = 2                         # hybrid only
    partitions = 2                     # cells per coordinate (or a list)
    refine = 0.0                       # seconds of greedy refinement (0 = off)
    refine_cells = 64                  # or: refine until this many cells (reproducible)
    samples = 100000                   # simulated trajectories for the inner boxes
    out = "reach.nc"
    report = "report.html"
    projections = [[0, 1]]

    [plant]                            # when given, model is a controller u = pi(x)
    A = [[1, 1], [0, 1]]
    B = [[0.5], [1]]
    c = [0, 0]
    u_lo = [-1]
    u_hi = [1]

    # [controller]                     # when given, model is a plant surrogate F([x; u])
    # file = "controller.onnx"         # .onnx | Keras .h5/.json | .nnet | dynid .h5, or
    # gain = [[-3.0, -1.2]]            # u = gain x + offset (a linear controller)
    # offset = [0.0]
    # u_lo = [-2.0]                    # saturation (default: the plant's input box)
    # u_hi = [2.0]

    [[spec]]
    type = "box"                       # box | halfspace | reach-avoid (see reach.specs)
    lo = [-1, -1]
    hi = [4, 1]

Example
-------
>>> # cfg = load_config("reach.toml"); result = analyse(**cfg.analysis_kwargs())
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dynid.errors import ConfigError
from dynid.relunet import REACH_FRACTION, default_box

KEYS = {"model", "benchmark", "lo", "hi", "steps", "method", "engine", "template", "window",
        "partitions", "refine", "refine_cells", "samples", "seed", "out", "report",
        "projections", "plant", "spec", "engine_opts", "title", "controller"}
PLANT_KEYS = {"A", "B", "c", "u_lo", "u_hi"}
CONTROLLER_KEYS = {"file", "gain", "offset", "u_lo", "u_hi"}


@dataclass
class ReachConfig:
    """A parsed config: the step network, the initial box and the options of :func:`analyse`."""

    step_net: object
    lo: np.ndarray
    hi: np.ndarray
    steps: int
    options: dict = field(default_factory=dict)
    specs: list = field(default_factory=list)
    out: Path | None = None
    report: Path | None = None
    title: str = "Reachability report"
    source: str = ""


def build_step_net(model=None, benchmark=None, plant=None, base_dir=Path("."),
                   controller=None):
    """The closed-loop step network from a model file (+ optional linear plant, or + a
    controller when the model is a plant surrogate with inputs) or a named benchmark; returns
    ``(step_net, defaults)`` where defaults may hold lo, hi, steps."""
    if benchmark is not None:
        from reach.benchmarks import get_benchmark

        b = get_benchmark(str(benchmark))
        return b.step_net, {"lo": b.x0_lo, "hi": b.x0_hi, "steps": b.steps}
    if model is None:
        raise ConfigError("the reach config needs model = PATH or benchmark = NAME")
    from dynid.formats import load_network

    path = Path(model)
    if not path.is_absolute():
        path = Path(base_dir) / path
    net = load_network(path)
    inputs = (net.meta.get("input_names") or []) if isinstance(net.meta, dict) else []
    if controller is not None and plant:
        raise ConfigError("give either [plant] (the model is a controller of a linear plant) "
                          "or [controller] (the model is a plant surrogate), not both")
    if controller is not None:
        net = surrogate_closed_loop(net, controller, base_dir, source=path)
    elif plant:
        from reach.closed_loop import linear_plant_loop

        bad = set(plant) - PLANT_KEYS
        if bad:
            raise ConfigError(f"unknown key(s) {sorted(bad)} in [plant]; allowed: "
                              f"{', '.join(sorted(PLANT_KEYS))}")
        if "A" not in plant or "B" not in plant:
            raise ConfigError("[plant] needs A and B (x+ = A x + B sat(u) + c)")
        net = linear_plant_loop(plant["A"], plant["B"], net, c=plant.get("c"),
                                u_lo=plant.get("u_lo"), u_hi=plant.get("u_hi"))
    elif inputs:
        raise ConfigError(f"{path} is a plant surrogate with inputs {list(inputs)}: close the "
                          "loop with a controller ([controller] file = PATH or gain = [[...]] "
                          "in a config; --controller FILE or --gain ... on the command line)")
    elif net.n_in != net.n_out:
        raise ConfigError(f"{path} maps R^{net.n_in} to R^{net.n_out}; reach needs a step map "
                          "R^n -> R^n (for a controller add a [plant] table to a config file)")
    box = default_box(net, fraction=REACH_FRACTION, required=False)
    return net, ({} if box is None else {"lo": box[0], "hi": box[1]})


def controller_net(spec: dict, n: int, m: int, base_dir=Path(".")):
    """The controller ``u = pi(x)`` of a ``[controller]`` table: a network file (ONNX,
    Keras, .nnet, dynid .h5) or a linear gain ``u = gain x + offset``."""
    from dynid.relunet import linear

    bad = set(spec) - CONTROLLER_KEYS
    if bad:
        raise ConfigError(f"unknown key(s) {sorted(bad)} in [controller]; allowed: "
                          f"{', '.join(sorted(CONTROLLER_KEYS))}")
    if ("file" in spec) == ("gain" in spec):
        raise ConfigError("[controller] needs exactly one of file = PATH (a network) or "
                          "gain = [[...]] (u = gain x + offset)")
    if "file" in spec:
        from dynid.formats import load_network

        path = Path(spec["file"])
        ctrl = load_network(path if path.is_absolute() else Path(base_dir) / path)
        if "offset" in spec:
            raise ConfigError("[controller] offset applies to a gain, not to a file")
    else:
        try:
            K = np.asarray(spec["gain"], dtype=float)
            K = K.reshape(m, n) if K.size == m * n else K
        except (TypeError, ValueError):
            raise ConfigError(f"[controller] gain must be an {m} x {n} matrix of numbers, got "
                              f"{spec['gain']!r}") from None
        if K.shape != (m, n) or not np.all(np.isfinite(K)):
            raise ConfigError(f"[controller] gain must be a finite {m} x {n} matrix (inputs x "
                              f"states), got shape {K.shape}")
        off = np.zeros(m) if spec.get("offset") is None else \
            np.asarray(spec["offset"], dtype=float).reshape(-1)
        if off.shape != (m,) or not np.all(np.isfinite(off)):
            raise ConfigError(f"[controller] offset must be {m} finite number(s)")
        ctrl = linear(K, off, meta={"controller": {"kind": "linear", "gain": K.tolist(),
                                                   "offset": off.tolist()}})
    if ctrl.n_in != n or ctrl.n_out != m:
        raise ConfigError(f"the controller maps R^{ctrl.n_in} -> R^{ctrl.n_out}; the plant "
                          f"needs u = pi(x) from R^{n} (states) to R^{m} (inputs)")
    return ctrl


def surrogate_closed_loop(plant, controller: dict, base_dir=Path("."), source=""):
    """Plant surrogate ``F([x; u])`` + the controller of a ``[controller]`` table + saturation
    (the table's u_lo / u_hi, else the controller file's recorded saturation, else the plant's
    input box) as one step network ``x -> F(x, sat(pi(x)))``."""
    from reach.closed_loop import surrogate_loop
    from reach.control import plant_sizes

    if not isinstance(controller, dict):
        raise ConfigError("[controller] must be a table (file = PATH or gain = [[...]])")
    n, m = plant_sizes(plant)
    ctrl = controller_net(controller, n, m, base_dir)
    sat = ctrl.meta.get("saturation") if isinstance(ctrl.meta.get("saturation"), dict) else {}
    box = plant.meta.get("input_box") or {}
    u_lo = controller.get("u_lo", sat.get("lo", box.get("lo")))
    u_hi = controller.get("u_hi", sat.get("hi", box.get("hi")))
    if u_lo is None or u_hi is None:
        raise ConfigError(f"{source}: give the saturation limits u_lo and u_hi of the "
                          "controller (the plant records no input box)")
    try:
        lo = np.broadcast_to(np.asarray(u_lo, float).reshape(-1), (m,))
        hi = np.broadcast_to(np.asarray(u_hi, float).reshape(-1), (m,))
    except (TypeError, ValueError):
        raise ConfigError(f"saturation limits must be {m} number(s) each") from None
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo <= hi)):
        raise ConfigError(f"saturation limits lo {lo.tolist()} / hi {hi.tolist()} must be "
                          "finite with lo <= hi")
    box_lo, box_hi = box.get("lo"), box.get("hi")
    outside = box_lo is not None and (np.any(lo < np.asarray(box_lo) - 1e-12) or
                                      np.any(hi > np.asarray(box_hi) + 1e-12))
    plant_meta = {k: v for k, v in plant.meta.items() if k != "saturation"}
    ctrl = ctrl.with_meta(**{k: v for k, v in ctrl.meta.items() if k != "saturation"})
    step = surrogate_loop(plant.with_meta(**plant_meta), ctrl, lo, hi)
    meta = {**plant_meta, "closed_loop": "surrogate", "n_state": n, "n_control": m,
            "saturation": {"lo": lo.tolist(), "hi": hi.tolist()},
            "controller": ctrl.meta.get("controller", {"source": str(controller.get("file"))}),
            "saturation_outside_input_box": bool(outside)}
    from dynid.relunet import ReLUNet

    return ReLUNet(step.weights, step.biases, step.relu, meta)


def load_config(path) -> ReachConfig:
    """Read and check a reach TOML file (raises ConfigError naming the problem)."""
    from reach.specs import spec_from_dict

    from dynid.pipeline import read_toml

    path = Path(path)
    cfg = read_toml(path, "reach config")
    # a pipeline-style file with a [reach] table works too
    if "reach" in cfg and isinstance(cfg["reach"], dict):
        cfg = cfg["reach"]
    bad = set(cfg) - KEYS
    if bad:
        raise ConfigError(f"unknown key(s) {sorted(bad)} in {path}; allowed: "
                          f"{', '.join(sorted(KEYS))}")
    base = path.parent
    net, defaults = build_step_net(cfg.get("model"), cfg.get("benchmark"), cfg.get("plant"),
                                   base, cfg.get("controller"))
    return config_from_dict(cfg, net, defaults, base, source=str(path),
                            specs=[spec_from_dict(s) for s in cfg.get("spec", [])])


def config_from_dict(cfg: dict, net, defaults: dict, base: Path, source: str = "",
                     specs=()) -> ReachConfig:
    """A ReachConfig from a dict of the config keys (shared with the pipeline stage)."""
    lo = cfg.get("lo", defaults.get("lo"))
    hi = cfg.get("hi", defaults.get("hi"))
    if lo is None or hi is None:
        raise ConfigError("the initial box is missing: give lo = [...] and hi = [...]")
    steps = cfg.get("steps", defaults.get("steps"))
    if steps is None:
        raise ConfigError("the horizon is missing: give steps = K")
    opts = {k: cfg[k] for k in ("method", "engine", "template", "window", "partitions",
                                "refine", "refine_cells", "samples", "seed", "projections",
                                "engine_opts")
            if k in cfg}
    _check_values(opts, steps, lo, hi, net, specs)
    res = lambda p: None if p is None else (Path(p) if Path(p).is_absolute() else base / p)  # noqa
    return ReachConfig(net, np.asarray(lo, float), np.asarray(hi, float), int(steps), opts,
                       list(specs), res(cfg.get("out")), res(cfg.get("report")),
                       cfg.get("title", "Reachability report"), source)


# the numeric keys of a reach config and their rule (dynid.options)
_NUMBERS = {"window": ("positive", int), "refine": ("nonneg", float),
            "samples": ("nonneg", int), "seed": ("nonneg", int)}
_CHOICES = {"method": ("one-shot", "recursive", "hybrid"),
            "engine": ("ibp", "crown", "lp-highs", "lp-splitting", "mip"),
            "template": ("box", "octagon")}


def _check_values(opts: dict, steps, lo, hi, net, specs) -> None:
    """Types and ranges of the config values, before any work (one ConfigError line)."""
    from dynid.options import check_number
    from reach.specs import check_spec

    check_number(steps, "steps", kind=int)
    for key, (rule, kind) in _NUMBERS.items():
        if key in opts:
            opts[key] = check_number(opts[key], key, rule=rule, kind=kind)
    for key, allowed in _CHOICES.items():
        if key in opts and opts[key] not in allowed:
            raise ConfigError(f"{key} = {opts[key]!r} is not one of {', '.join(allowed)}")
    if "partitions" in opts:
        p = opts["partitions"]
        opts["partitions"] = ([check_number(v, "partitions", kind=int) for v in p]
                              if isinstance(p, (list, tuple)) else
                              check_number(p, "partitions", kind=int))
    if "engine_opts" in opts and not isinstance(opts["engine_opts"], dict):
        raise ConfigError("engine_opts must be a table of engine options")
    for what, v in (("lo", lo), ("hi", hi)):
        if not isinstance(v, (list, tuple, np.ndarray)) or not all(
                isinstance(t, (int, float)) and not isinstance(t, bool) for t in np.ravel(v)):
            raise ConfigError(f"{what} must be a list of numbers, one per state")
    for spec in specs:
        check_spec(spec, net.n_in)


@dataclass
class ReachRun:
    """Everything an analysis produced."""

    dataset: object
    falsification: object
    verdicts: list
    seconds: float

    def summary(self) -> dict:
        from reach.falsify import error_ratio

        ds, f = self.dataset, self.falsification
        K = int(ds.step.values[-1])
        lo, hi = ds.box_lo.sel(step=K).values, ds.box_hi.sel(step=K).values
        out = {"method": ds.attrs.get("method"), "engine": ds.attrs.get("engine"),
               "steps": K, "cells": int(ds.sizes["cell"]), "seconds": self.seconds,
               "final_box": {"lo": lo.tolist(), "hi": hi.tolist()},
               "boxes": {"lo": ds.box_lo.values.tolist(), "hi": ds.box_hi.values.tolist()},
               "verdicts": [v.to_dict() for v in self.verdicts]}
        if f is not None:
            out["sampled_final_box"] = {"lo": f.inner_lo[K].tolist(),
                                        "hi": f.inner_hi[K].tolist()}
            out["error"] = error_ratio(lo, hi, f.inner_lo[K], f.inner_hi[K])
            out["samples"] = f.n_samples
            out["sound"] = f.sound
        return out


def analyse(step_net, lo, hi, steps, *, method="one-shot", engine="crown", template="box",
            window=None, partitions=None, refine=0.0, refine_cells=None, samples=20_000,
            seed=0, specs=(), engine_opts=None, projections=None, progress=None,
            executor=None) -> ReachRun:
    """Reachable sets, falsification (inner boxes and a soundness check) and spec verdicts.

    ``refine`` (seconds) and/or ``refine_cells`` (a cell count: reproducible) switch on the
    greedy partition refinement; ``executor`` runs the cells (:mod:`dynid.executor`).

    Example
    -------
    >>> from dynid.relunet import linear
    >>> run = analyse(linear([[0.5]]), [0.0], [1.0], 2, samples=100)
    >>> run.falsification.outside
    0
    """
    from reach.falsify import sampled_boxes
    from reach.partition import refine as refine_partition
    from reach.reachability import reach
    from reach.specs import verdict

    t0 = time.perf_counter()
    if (refine and float(refine) > 0) or refine_cells:
        ds = refine_partition(step_net, lo, hi, steps, method=method, engine=engine,
                              budget_s=float(refine) if refine else None,
                              max_cells=int(refine_cells) if refine_cells else 4096,
                              initial=partitions, template=template, engine_opts=engine_opts,
                              seed=seed, progress=progress, executor=executor)
    else:
        ds = reach(step_net, lo, hi, steps, method=method, engine=engine, template=template,
                   window=window, partitions=partitions, engine_opts=engine_opts,
                   progress=progress, executor=executor)
    seconds = time.perf_counter() - t0
    fals = None
    if samples and int(samples) > 0:
        fals = sampled_boxes(step_net, lo, hi, steps, n=int(samples), seed=seed, check=ds)
    verdicts = [verdict(s, ds, step_net=step_net,
                        trajectories=None if fals is None else fals.trajectories)
                for s in specs]
    return ReachRun(ds, fals, verdicts, seconds)


def run_config(cfg: ReachConfig, progress=None, executor=None) -> ReachRun:
    """Run a parsed config; write the netCDF and the HTML report it names."""
    opts = dict(cfg.options)
    projections = opts.pop("projections", None)
    run = analyse(cfg.step_net, cfg.lo, cfg.hi, cfg.steps, specs=cfg.specs, progress=progress,
                  executor=executor, **opts)
    write_outputs(run, cfg.out, cfg.report, projections, cfg.title,
                  setup={"source": cfg.source} if cfg.source else None)
    return run


def write_outputs(run: ReachRun, out=None, report=None, projections=None,
                  title="Reachability report", setup=None) -> None:
    """Save the Dataset (netCDF) and the HTML report where asked."""
    from reach.reachability import save_reach
    from reach.report import write_report

    if out is not None:
        save_reach(run.dataset, out)
    if report is not None:
        n = run.dataset.sizes["state"]
        proj = projections if projections is not None else ([(0, 1)] if n >= 2 else [])
        write_report(report, run.dataset, run.falsification, run.verdicts,
                     [tuple(p) for p in proj], title, setup)


__all__ = ["ReachConfig", "ReachRun", "load_config", "config_from_dict", "build_step_net",
           "controller_net", "surrogate_closed_loop", "analyse", "run_config", "write_outputs"]
