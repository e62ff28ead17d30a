"""Pipeline stage ``reach``: reachable sets of the run's surrogate from a box of initial states.

Keys of the ``[reach]`` table, with defaults: model (default: the run's model), lo / hi
(default: the central 10 % of the model's training domain in every coordinate), steps = 5,
method = "one-shot", engine = "crown", template = "box", window, partitions, refine = 0
(seconds of greedy refinement), refine_cells (refine until this many cells: reproducible,
unlike a time budget), samples = 20000, seed = 0, projections = [[0, 1]],
spec = [ {type = "box", lo = .., hi = ..}, ... ], out = "reach.nc", controller = {file = ..,
gain = .., offset = .., u_lo = .., u_hi = ..} (for a plant surrogate with inputs; default: the
controller of the run's ``controller`` stage, saturated at its recorded limits), for = "both"
(sets of the surrogate and, when the model's system has equations, of the plant through a
certified model error: "surrogate" | "plant" | "both"), model_error = {rtol, time_limit,
max_cells, lo, hi, margin, samples, slopes} (see reach.plant.stage_plant; no time_limit by
default: the refinement stops on its target or on max_cells, the same on every run).

Writes reach.nc, adds a section (per-step table, figures, verdicts) to the run's report and
puts the summary under ``ctx.summary["reach"]``.

Example
-------
>>> # in a pipeline TOML:  [reach]  steps = 5  engine = "lp-highs"
"""

from __future__ import annotations

from pathlib import Path

from dynid.errors import ConfigError
from dynid.stages import schema as sc

KEYS = {"model", "lo", "hi", "steps", "method", "engine", "template", "window", "partitions",
        "refine", "refine_cells", "samples", "seed", "projections", "spec", "out", "engine_opts",
        "plant", "benchmark", "title", "controller", "for", "model_error"}


def _engines():
    from reach.engines import list_engines

    return list_engines()


def _benchmarks():
    from reach.benchmarks import BENCHMARKS

    return sorted(BENCHMARKS)


_PAIR = sc.integers(min=0)
SCHEMAS = {"reach": sc.Schema({
    "model": sc.existing_file(), "lo": sc.numbers(), "hi": sc.numbers(),
    "steps": sc.integer(min=1), "method": sc.string(("one-shot", "recursive", "hybrid")),
    "engine": sc.string(_engines),
    "template": sc.any_of(sc.string(("box", "octagon")),
                          sc.Check("a list of direction rows", lambda v, _: isinstance(v, list)
                                   and len(v) > 0
                                   and all(sc.numbers().accepts(r) is True for r in v))),
    "window": sc.integer(min=1), "partitions": sc.any_of(sc.integer(min=1), sc.integers(min=1)),
    "refine": sc.number(min=0), "refine_cells": sc.integer(min=1, max=100_000),
    "samples": sc.integer(min=0), "seed": sc.integer(min=0),
    "projections": sc.Check("a list of [i, j] index pairs", lambda v, _: isinstance(v, list)
                            and all(_PAIR.accepts(p) is True and len(p) == 2 for p in v)),
    "spec": sc.tables(), "out": sc.file_name(), "engine_opts": sc.table(),
    "plant": sc.table(), "benchmark": sc.string(_benchmarks), "title": sc.string(),
    "controller": sc.table(), "for": sc.string(("surrogate", "plant", "both")),
    "model_error": sc.table()},
    sc.same_length)}


def run(section: dict, ctx) -> None:
    """Compute the reachable sets, write reach.nc and add the report section."""
    from dynid.pipeline import check_keys
    from reach.config import build_step_net, config_from_dict, run_config
    from reach.report import add_reach_section
    from reach.specs import spec_from_dict

    check_keys(section, KEYS, "[reach]")
    from reach.plant import plant_stage_options

    plant_stage_options(section)            # for / [reach.model_error], before any work
    model = ctx.resolve(section["model"]) if "model" in section else ctx.artifacts.get("model")
    if model is None and "benchmark" not in section:
        raise ConfigError("[reach] needs a model: add a [train] stage or set model = PATH")
    if model is not None:   # artifacts are relative to the working directory, not the config
        model = Path(model).absolute()
    controller = section.get("controller")
    if isinstance(controller, dict) and "file" in controller:
        controller = {**controller, "file": str(ctx.resolve(controller["file"]))}
    elif controller is None and "controller" in ctx.artifacts and "plant" not in section:
        controller = {"file": str(Path(ctx.artifacts["controller"]).absolute())}
    net, defaults = build_step_net(model, section.get("benchmark"), section.get("plant"),
                                   ctx.base_dir, controller)
    cfg = dict(section)
    if ("lo" not in cfg or "hi" not in cfg) and "lo" not in defaults:
        raise ConfigError("[reach] needs lo = [...] and hi = [...]: the model has no training "
                          "domain to default to")
    cfg.setdefault("steps", defaults.get("steps", 5))
    cfg.setdefault("engine", "crown")
    cfg.pop("out", None)
    rc = config_from_dict(cfg, net, defaults, ctx.base_dir, source="pipeline [reach]",
                          specs=[spec_from_dict(s) for s in section.get("spec", [])])
    rc.out = ctx.run_dir / section.get("out", "reach.nc")
    ctx.log(f"reachable sets over {rc.steps} steps from [{rc.lo.tolist()}, {rc.hi.tolist()}] "
            f"({rc.options.get('method', 'one-shot')}, {rc.options['engine']})")
    projections = rc.options.get("projections")
    result = run_config(rc, progress=lambda msg: None,
                        executor=getattr(ctx, "executor", None))
    summary = result.summary()
    ctx.log(f"done in {summary['seconds']:.2f} s; final-step error ratio "
            f"{summary.get('error', float('nan')):.4g}, sound: {summary.get('sound')}")
    ctx.artifacts["reach"] = rc.out
    ctx.summary["reach"] = {**summary, "file": rc.out.name}
    n = result.dataset.sizes["state"]
    proj = projections if projections is not None else ([(0, 1)] if n >= 2 else [])
    title = "Reachable sets of the surrogate"
    if net.meta.get("closed_loop") == "surrogate":
        title = "Reachable sets of the closed loop (plant surrogate + controller + saturation)"
        ctx.summary["reach"]["closed_loop"] = {k: net.meta.get(k) for k in
                                               ("saturation", "controller",
                                                "saturation_outside_input_box")}
    add_reach_section(ctx.report, result.dataset, result.falsification, result.verdicts,
                      [tuple(p) for p in proj], title)
    from reach.plant import stage_plant   # the plant's sets through a certified model error

    stage_plant(section, ctx, rc, result, [tuple(p) for p in proj], model, controller)
