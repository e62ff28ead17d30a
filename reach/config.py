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

KEYS = {"model", "benchmark", "lo", "hi", "steps", "method", "engine", "template", "window",
        "partitions", "refine", "refine_cells", "samples", "seed", "out", "report",
        "projections", "plant", "spec", "engine_opts", "title"}
PLANT_KEYS = {"A", "B", "c", "u_lo", "u_hi"}


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


def build_step_net(model=None, benchmark=None, plant=None, base_dir=Path(".")):
    """The closed-loop step network from a model file (+ optional linear plant) or a named
    benchmark; returns ``(step_net, defaults)`` where defaults may hold lo, hi, steps."""
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
    if plant:
        from reach.closed_loop import linear_plant_loop

        bad = set(plant) - PLANT_KEYS
        if bad:
            raise ConfigError(f"unknown key(s) {sorted(bad)} in [plant]; allowed: "
                              f"{', '.join(sorted(PLANT_KEYS))}")
        if "A" not in plant or "B" not in plant:
            raise ConfigError("[plant] needs A and B (x+ = A x + B sat(u) + c)")
        net = linear_plant_loop(plant["A"], plant["B"], net, c=plant.get("c"),
                                u_lo=plant.get("u_lo"), u_hi=plant.get("u_hi"))
    elif net.n_in != net.n_out:
        raise ConfigError(f"{path} maps R^{net.n_in} to R^{net.n_out}; reach needs a step map "
                          "R^n -> R^n (for a controller add a [plant] table to a config file)")
    defaults = {}
    dom = net.meta.get("domain") if isinstance(net.meta, dict) else None
    if isinstance(dom, dict) and "lo" in dom and "hi" in dom:
        defaults = {"lo": dom["lo"], "hi": dom["hi"]}
    return net, defaults


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
                                   base)
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
    res = lambda p: None if p is None else (Path(p) if Path(p).is_absolute() else base / p)  # noqa
    return ReachConfig(net, np.asarray(lo, float), np.asarray(hi, float), int(steps), opts,
                       list(specs), res(cfg.get("out")), res(cfg.get("report")),
                       cfg.get("title", "Reachability report"), source)


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
           "analyse", "run_config", "write_outputs"]
