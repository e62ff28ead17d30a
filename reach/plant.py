"""Reachable sets of the plant (the true system) from a surrogate and its certified model error.

:func:`plant_reach` does what an engineer's review needs in one call:

1. the box B where the model error is certified: given, or the hull of the surrogate's
   reachable sets grown by a margin, within the model's training domain (if the plant's sets
   then leave B, B grows to cover them and e is certified again, at most ``tries`` times);
2. ``e`` on B by :func:`dynid.certify.model_error.model_error` (the true flow / Euler / RK4
   map of the model's system);
3. the plant's sets: the surrogate plus a disturbance in [-e, e] per step
   (:mod:`reach.disturbance`), unknown from the step after a set leaves B;
4. simulated runs of the true system from X0 (its own integrator), which must lie inside the
   plant's sets: the count outside is reported (0 for a sound result) together with their
   inner boxes.

A closed loop (``controller=``): ``net`` is the plant surrogate ``F([x; u])`` and the loop is
``x -> F(x, clip(pi(x), u_lo, u_hi))`` (:func:`reach.closed_loop.surrogate_loop`). The model
error is certified on B x U, where U is the saturated controller's image of B (CROWN bounds,
within the saturation box), so for every x in B the true plant under the same controller and
saturation steps to within e of the surrogate loop: the disturbance enters the plant state
after the controller and the saturation, and the true runs are those of the true plant with
the controller in the loop (zero-order hold).

Example
-------
>>> from dynid.relunet import linear
>>> from dynid.systems import linear_system
>>> net = linear([[0.89]]).with_meta(system="linear", dt=0.1, map="euler")
>>> run = plant_reach(net, [0.5], [1.0], 3, system=linear_system([[-1.0]]), samples=200)
>>> run.dataset.attrs["about"], run.falsification.outside
('plant', 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dynid.errors import ConfigError


class NoPlantSets(ConfigError):
    """The plant's sets cannot be computed here: no finite model-error bound on the box, or
    an initial box outside the model's training domain."""


@dataclass
class PlantRun:
    """A plant analysis: the sets (``dataset``, attrs ``about = "plant"``), the model-error
    bound they rest on, the true system's runs (a :class:`reach.falsify.Falsification`: inner
    boxes and the count outside), the box B and the surrogate's sets for comparison."""

    dataset: object
    model_error: object
    falsification: object
    error_box: tuple
    surrogate: object = None
    tries: int = 1
    seconds: float = 0.0

    def summary(self) -> dict:
        from reach.falsify import error_ratio

        ds, f = self.dataset, self.falsification
        K = int(ds.step.values[-1])
        lo, hi = ds.box_lo.sel(step=K).values, ds.box_hi.sel(step=K).values
        out = {"about": "plant", "steps": K, "seconds": self.seconds,
               "model_error": self.model_error.to_dict(),
               "error_box": {"lo": self.error_box[0].tolist(), "hi": self.error_box[1].tolist()},
               "unknown_from_step": int(ds.attrs.get("plant_unknown_from", -1)),
               "final_box": {"lo": lo.tolist(), "hi": hi.tolist()},
               "boxes": {"lo": ds.box_lo.values.tolist(), "hi": ds.box_hi.values.tolist()},
               "true_runs": f.n_samples, "true_runs_outside": f.outside, "sound": f.sound,
               "samples": f.n_samples,
               "tries": self.tries}
        if np.all(np.isfinite(lo)):
            out["error"] = error_ratio(lo, hi, f.inner_lo[K], f.inner_hi[K])
        return out


@dataclass
class ClosedLoop:
    """A plant surrogate ``F([x; u])`` closed by ``u = clip(controller(x), u_lo, u_hi)``."""

    plant: object
    controller: object
    u_lo: np.ndarray
    u_hi: np.ndarray

    def __post_init__(self):
        from dynid.relunet import ReLUNet, check_box

        for what, net in (("plant", self.plant), ("controller", self.controller)):
            if not isinstance(net, ReLUNet):
                raise ConfigError(f"the {what} must be a ReLUNet (dynid.formats.load_network)")
        n, m = self.controller.n_in, self.controller.n_out
        if self.plant.n_out != n or self.plant.n_in != n + m:
            raise ConfigError(f"the plant maps R^{self.plant.n_in} -> R^{self.plant.n_out} but "
                              f"the controller R^{n} -> R^{m}: the plant must take [x; u] "
                              f"(R^{n + m}) to the next state (R^{n})")
        if self.u_lo is None or self.u_hi is None:
            raise ConfigError("a closed loop needs the saturation limits u_lo and u_hi (the "
                              "model error is certified on a bounded input box)")
        self.u_lo, self.u_hi = check_box(m, self.u_lo, self.u_hi, "saturation box")

    @property
    def n_input(self) -> int:
        return self.controller.n_out

    def step(self):
        """One closed-loop step ``x -> F(x, clip(pi(x)))`` as a ReLUNet (the plant's metadata)."""
        from reach.closed_loop import surrogate_loop

        meta = {k: v for k, v in self.plant.meta.items() if k != "saturation"}
        step = surrogate_loop(self.plant, self.controller, self.u_lo, self.u_hi)
        return step.with_meta(**meta, closed_loop="surrogate",
                              saturation={"lo": self.u_lo.tolist(), "hi": self.u_hi.tolist()})

    def inputs(self, x):
        """The inputs the controller applies at the states ``x`` (N, n), saturated."""
        return np.clip(self.controller.forward(x), self.u_lo, self.u_hi)

    def input_box(self, lo, hi):
        """A box U that contains ``clip(pi(x), u_lo, u_hi)`` for every x in [lo, hi]: CROWN
        bounds of the controller over the box (padded), clipped to the saturation box (clip
        is monotone, so the clipped bounds bound the clipped values)."""
        from dynid.bounds.core import pad_interval
        from reach.engines import bound

        low, up = bound(self.controller, np.asarray(lo, float), np.asarray(hi, float),
                        np.eye(self.n_input), engine="crown")
        low, up = pad_interval(low, up)
        return (np.clip(low, self.u_lo, self.u_hi), np.clip(up, self.u_lo, self.u_hi))


def true_runs(system, dt, method, x0, steps, keep: int = 300, check=None, chunk=20_000,
              inputs=None):
    """Simulate the true system from the initial states ``x0`` (N, n) with its own step map;
    a :class:`reach.falsify.Falsification` with the inner boxes, a kept subset of the runs,
    and (with ``check``, a reach Dataset) the number of runs outside its sets. ``inputs``
    (a callable x -> u, e.g. :meth:`ClosedLoop.inputs`) closes the loop: u is held over each
    step (zero-order hold)."""
    from reach.falsify import Falsification, count_outside

    x0 = np.atleast_2d(np.asarray(x0, dtype=np.float64))
    n = x0.shape[1]
    inner_lo = np.full((steps + 1, n), np.inf)
    inner_hi = np.full((steps + 1, n), -np.inf)
    kept, outside = [], (0 if check is not None else None)
    for start in range(0, len(x0), chunk):
        traj = [x0[start:start + chunk]]
        for _ in range(steps):
            u = None if inputs is None else inputs(traj[-1])
            traj.append(system.step_map(traj[-1], dt, method, **({} if u is None else {"u": u})))
        traj = np.stack(traj, axis=1)
        inner_lo = np.minimum(inner_lo, traj.min(axis=0))
        inner_hi = np.maximum(inner_hi, traj.max(axis=0))
        if len(kept) < keep:
            kept.extend(traj[:keep - len(kept)])
        if check is not None:
            # only the steps the plant's sets speak for (up to the first unknown one)
            k = int(check.attrs.get("plant_unknown_from", -1))
            k = traj.shape[1] if k < 0 else k
            outside += count_outside(check.isel(step=slice(0, k)), traj[:, :k])
    return Falsification(inner_lo, inner_hi, int(len(x0)), np.array(kept), outside,
                         info={"true_system": system.name, "map": method, "dt": dt})


def _system_of(net, system):
    from dynid.certify.model_error import _params
    from dynid.systems import System, get_system

    if isinstance(system, System):
        return system
    meta = net.meta if isinstance(net.meta, dict) else {}
    name = system or meta.get("system")
    if not name:
        raise ConfigError("a plant analysis needs the true system: the model file records "
                          "none; give the system")
    params = _params(meta) if name == meta.get("system") else {}
    return get_system(name, **params)


def default_error_box(ds, margin: float):
    """The hull of every step's set, grown by ``margin`` times its width on each side."""
    lo = np.nanmin(ds.box_lo.values, axis=0)
    hi = np.nanmax(ds.box_hi.values, axis=0)
    pad = margin * (hi - lo) + 1e-9 * (1 + np.abs(hi) + np.abs(lo))
    return lo - pad, hi + pad


def plant_reach(net, x0_lo, x0_hi, steps: int, *, controller=None, u_lo=None, u_hi=None,
                system=None, dt=None, map=None,
                error_box=None, margin: float = 0.25, tries: int = 3, model_error_opts=None,
                samples: int = 2000, seed: int = 0, surrogate=None, progress=None,
                **reach_opts) -> PlantRun:
    """Certified reachable sets of the true system (see the module docstring).

    Parameters
    ----------
    net : the surrogate step map (its metadata names the system, dt and map unless given),
        or with ``controller`` the plant surrogate ``[x; u] -> x_next``
    controller, u_lo, u_hi : a closed loop: the controller ``u = pi(x)`` (a ReLUNet) and its
        saturation limits (or a :class:`ClosedLoop` as ``controller``)
    x0_lo, x0_hi, steps : initial box and horizon
    error_box : (lo, hi) where e is certified (default: from the surrogate's sets)
    margin, tries : growth of the automatic box, and how often it may grow
    model_error_opts : options of :func:`dynid.certify.model_error.model_error`
    samples : true-system runs simulated from X0 (uniform, plus the corners)
    surrogate : the surrogate's reach Dataset if already computed
    **reach_opts : options of :func:`reach.reachability.reach` (method, engine, ...)
    """
    import time

    from dynid.certify.model_error import model_error
    from reach.falsify import corners
    from reach.reachability import reach

    from dynid.options import check_number

    t0 = time.perf_counter()
    margin = check_number(margin, "margin", rule="nonneg", text_ok=False)
    tries = check_number(tries, "tries", kind=int, text_ok=False)
    samples = check_number(samples, "samples", kind=int, rule="nonneg", text_ok=False)
    loop = controller if isinstance(controller, ClosedLoop) else (
        None if controller is None else ClosedLoop(net, controller, u_lo, u_hi))
    step_net = net if loop is None else loop.step()
    if loop is None and net.n_in != net.n_out:
        raise ConfigError(f"the model maps R^{net.n_in} -> R^{net.n_out}: a plant surrogate with "
                          "inputs needs the controller that closes the loop (controller=)")
    system = _system_of(net, system)
    meta = net.meta if isinstance(net.meta, dict) else {}
    dt = float(dt if dt is not None else meta.get("dt") or 0) or None
    map_ = map or meta.get("map") or "flow"
    if dt is None:
        raise ConfigError("a plant analysis needs dt: the model file records none")
    opts = dict(model_error_opts or {})
    x0_lo, x0_hi = np.asarray(x0_lo, float), np.asarray(x0_hi, float)
    if surrogate is None:
        surrogate = reach(step_net, x0_lo, x0_hi, steps, **reach_opts)
    dom = meta.get("domain") if isinstance(meta.get("domain"), dict) else None
    clip = lambda b: b if dom is None else (np.maximum(b[0], dom["lo"]),   # noqa: E731
                                            np.minimum(b[1], dom["hi"]))
    if error_box is None:
        # the automatic box stays inside the training domain: beyond it the surrogate is not
        # a model of anything (give error_box to certify elsewhere)
        box = default_error_box(surrogate, margin)
        box = clip((np.minimum(box[0], x0_lo), np.maximum(box[1], x0_hi)))
        if np.any(box[0] > box[1]):
            raise NoPlantSets("the initial box lies outside the model's training domain: give "
                              "the model-error box explicitly")
        grow = True
    else:
        box = (np.asarray(error_box[0], float), np.asarray(error_box[1], float))
        grow = False
    tries = max(1, int(tries))
    for attempt in range(1, tries + 1):
        if progress:
            progress(f"certifying the model error on lo={np.round(box[0], 4).tolist()}, "
                     f"hi={np.round(box[1], 4).tolist()}")
        u_box = (None, None) if loop is None else loop.input_box(*box)
        me = model_error(net, system, box[0], box[1], *u_box, dt=dt, map=map_, **opts)
        if not np.all(np.isfinite(me.e)):
            raise NoPlantSets("no finite model-error bound on the box (the flow enclosure "
                              "failed): give a smaller box or more cells/time")
        ds = reach(step_net, x0_lo, x0_hi, steps, model_error=me, **reach_opts)
        if int(ds.attrs.get("plant_unknown_from", -1)) < 0 or not grow or attempt == tries:
            break
        # the plant's sets left B: grow B over what is known of them and certify again
        k = int(ds.attrs["plant_unknown_from"])
        lo = np.minimum(box[0], np.nanmin(ds.box_lo.values[:k], axis=0))
        hi = np.maximum(box[1], np.nanmax(ds.box_hi.values[:k], axis=0))
        w = hi - lo
        new = clip((lo - margin * w, hi + margin * w))
        if np.allclose(new[0], box[0]) and np.allclose(new[1], box[1]):
            break                          # the box cannot grow further
        box = new
    rng = np.random.default_rng(seed)
    x0 = np.vstack([corners(x0_lo, x0_hi),
                    x0_lo + (x0_hi - x0_lo) * rng.random((int(samples), x0_lo.size))])
    fals = true_runs(system, dt, map_, x0, steps, check=ds,
                     inputs=None if loop is None else loop.inputs)
    return PlantRun(ds, me, fals, box, surrogate, attempt, time.perf_counter() - t0)


__all__ = ["PlantRun", "ClosedLoop", "NoPlantSets", "plant_reach", "true_runs",
           "default_error_box", "closed_loop_of"]


# ---------------------------------------------------------------------- CLI, stage and report
def plant_options(options: dict) -> tuple[dict, dict]:
    """Split reach config options into (reach options, plant options) for :func:`plant_reach`
    (``refine`` is not available for the plant: give ``partitions``)."""
    opts = dict(options)
    if float(opts.pop("refine", 0) or 0) > 0:
        raise ConfigError("partition refinement (refine) is not available for the plant's "
                          "sets: use partitions = N")
    plant = {k: opts.pop(k) for k in ("samples", "seed") if k in opts}
    opts.pop("projections", None)
    return opts, plant


def comparison_rows(run: PlantRun) -> list[dict]:
    """Per step: widths of the plant's set, the surrogate's set and the true runs."""
    ds, sur, f = run.dataset, run.surrogate, run.falsification
    names = [str(s) for s in ds.state.values]
    rows = []
    for k in ds.step.values:
        k = int(k)
        row = {"step": k}
        for i, nm in enumerate(names):
            row[f"{nm} plant"] = float(ds.box_hi.values[k, i] - ds.box_lo.values[k, i])
            if sur is not None:
                row[f"{nm} surrogate"] = float(sur.box_hi.values[k, i] - sur.box_lo.values[k, i])
            row[f"{nm} true runs"] = float(f.inner_hi[k, i] - f.inner_lo[k, i])
        rows.append(row)
    return rows


def add_plant_section(report, run: PlantRun, projections=((0, 1),)) -> None:
    """The plant's sets in an HtmlReport: what they rest on (the model error and its box),
    the per-step sets with the true system's runs, and widths against the surrogate's."""
    from reach.disturbance import describe
    from reach.report import add_reach_section

    me = run.model_error
    add_reach_section(report, run.dataset, run.falsification, (), projections,
                      "Reachable sets of the plant (the true system)",
                      setup={"model error": me.summary(),
                             "model error box lo": np.asarray(run.error_box[0]).tolist(),
                             "model error box hi": np.asarray(run.error_box[1]).tolist(),
                             **({"model error input box (the saturated controller's "
                                 "image)": [np.asarray(me.u_lo).tolist(),
                                            np.asarray(me.u_hi).tolist()]}
                                if np.size(me.u_lo) else {}),
                             "true-system runs outside the plant's sets":
                                 run.falsification.outside})
    report.add_text(describe(run.dataset) + ". The points are runs of the true system "
                    "(its own integrator), not of the surrogate.")
    report.add_table(comparison_rows(run), caption="set widths per step: plant (surrogate + "
                     "certified model error) vs surrogate vs sampled true runs")


def closed_loop_of(step_net, model, controller, base_dir=Path(".")) -> ClosedLoop | None:
    """The parts of a closed-loop step net built by :func:`reach.config.surrogate_closed_loop`
    (the plant surrogate in ``model``, the ``[controller]`` table ``controller`` and the
    saturation the step net records), checked to give the same step; None when ``step_net``
    is not such a loop."""
    from dynid.formats import load_network
    from reach.config import controller_net
    from reach.control import plant_sizes

    meta = step_net.meta if isinstance(step_net.meta, dict) else {}
    if meta.get("closed_loop") != "surrogate":
        return None
    if model is None or not isinstance(controller, dict):
        raise ConfigError("the plant's sets of a closed loop need the plant model file and the "
                          "controller (model = PATH and a [controller] table)")
    path = Path(model) if Path(model).is_absolute() else Path(base_dir) / model
    plant = load_network(path)
    n, m = plant_sizes(plant)
    sat = meta.get("saturation") or {}
    loop = ClosedLoop(plant, controller_net(controller, n, m, base_dir), sat.get("lo"),
                      sat.get("hi"))
    dom = meta.get("domain") if isinstance(meta.get("domain"), dict) else None
    lo, hi = (np.asarray(dom["lo"], float), np.asarray(dom["hi"], float)) if dom else \
        (-np.ones(n), np.ones(n))
    X = lo + (hi - lo) * np.random.default_rng(0).random((64, n))
    if not np.allclose(loop.step().forward(X), step_net.forward(X), rtol=1e-9, atol=1e-9):
        raise ConfigError("the closed loop rebuilt from the model and the controller differs "
                          "from the one analysed (a changed file?): run again")
    return loop


def run_plant_config(cfg, progress=None, loop: ClosedLoop | None = None) -> PlantRun:
    """``dynid reach ... --for plant``: a parsed ReachConfig run for the plant (``loop``: the
    parts of a closed-loop step net, see :func:`closed_loop_of`); writes the plant's sets
    (netCDF) and a report with both sets where the config asks."""
    from reach.reachability import save_reach

    opts, extra = plant_options(cfg.options)
    err = opts.pop("error_box", None)
    if loop is None and (cfg.step_net.meta or {}).get("closed_loop") == "surrogate":
        raise ConfigError("the plant's sets of a closed loop need its parts (closed_loop_of)")
    net = cfg.step_net if loop is None else loop.plant
    run = plant_reach(net, cfg.lo, cfg.hi, cfg.steps, controller=loop, error_box=err,
                      progress=progress, **extra, **opts)
    if cfg.out is not None:
        save_reach(run.dataset, cfg.out)
    if cfg.report is not None:
        from dynid.report import HtmlReport
        from reach.report import add_reach_section

        n = run.dataset.sizes["state"]
        proj = cfg.options.get("projections") or ([(0, 1)] if n >= 2 else [])
        proj = [tuple(p) for p in proj]
        rep = HtmlReport(cfg.title)
        add_reach_section(rep, run.surrogate, None, (), proj, "Reachable sets of the surrogate")
        add_plant_section(rep, run, proj)
        rep.save(cfg.report)
    return run


PLANT_STAGE_KEYS = {"rtol", "time_limit", "max_cells", "lo", "hi", "margin", "samples",
                    "slopes"}


def plant_stage_options(section: dict) -> tuple[str, dict]:
    """``for`` and the ``[reach.model_error]`` options of a reach section, checked (one
    ConfigError naming the option) and with numbers normalised; run before any work."""
    from dynid.options import check_number
    from dynid.pipeline import check_keys

    about = section.get("for", "both")
    if about not in ("both", "plant", "surrogate"):
        raise ConfigError(f"[reach] for = {about!r} must be one of both, plant, surrogate")
    me_opts = dict(section.get("model_error") or {})
    check_keys(me_opts, PLANT_STAGE_KEYS, "[reach.model_error]")
    rules = {"rtol": ("positive", float), "time_limit": ("positive", float),
             "max_cells": ("positive", int), "margin": ("nonneg", float),
             "samples": ("nonneg", int)}
    for key, (rule, kind) in rules.items():
        if key in me_opts:
            me_opts[key] = check_number(me_opts[key], f"[reach.model_error] {key}", rule=rule,
                                        kind=kind, text_ok=False)
    if ("lo" in me_opts) != ("hi" in me_opts):
        raise ConfigError("[reach.model_error] needs both lo and hi (or neither)")
    return about, me_opts


def has_equations(net) -> bool:
    """Whether the model names a catalogue/registered system with CasADi equations whose
    states (and inputs) are the model's inputs and whose states are its outputs (a surrogate
    ``x -> x_next`` or ``[x; u] -> x_next`` of that system)."""
    meta = net.meta if isinstance(net.meta, dict) else {}
    if not meta.get("system") or not meta.get("dt"):
        return False
    try:
        system = _system_of(net, None)
    except Exception:  # an unknown or unbuildable system: no equations to certify with
        return False
    m = len(getattr(system, "input_names", ()) or ())
    return bool(system.has_casadi and net.n_out == system.n_state
                and net.n_in == system.n_state + m)


def stage_plant(section: dict, ctx, rc, surrogate_run, projections, model=None,
                controller=None) -> PlantRun | None:
    """The pipeline reach stage's plant part (``for = "both" | "plant" | "surrogate"``,
    ``[reach.model_error]`` options): certify e, compute the plant's sets on the surrogate's
    cells, simulate the true system, write plant_reach.nc and model_error.json, report.
    ``model`` and ``controller`` (the stage's model file and controller table) give the parts
    of a closed loop."""
    from dynid.results import jsonable
    from reach.reachability import save_reach

    about, me_opts = plant_stage_options(section)
    if about == "surrogate":
        return None
    loop = closed_loop_of(rc.step_net, model, controller, ctx.base_dir)
    if not has_equations(rc.step_net if loop is None else loop.plant):
        if about == "plant":
            raise ConfigError("[reach] for = 'plant' needs a model of a system with equations "
                              "(system, params and dt in the model file)")
        ctx.log("reach: no system equations behind the model: sets of the surrogate only")
        return None
    box = (me_opts.pop("lo"), me_opts.pop("hi")) if "lo" in me_opts else None
    margin = me_opts.pop("margin", 0.25)
    samples = me_opts.pop("samples", 2000)
    opts = {k: v for k, v in rc.options.items()
            if k in ("method", "engine", "template", "window", "engine_opts")}
    sds = surrogate_run.dataset
    opts["cells"] = list(zip(sds.cell_lo.values, sds.cell_hi.values))
    ctx.log(f"reach: certifying the model error and the plant's sets ({samples} true runs)")
    try:
        run = plant_reach(rc.step_net if loop is None else loop.plant, rc.lo, rc.hi, rc.steps,
                          controller=loop, error_box=box, margin=margin,
                          model_error_opts=me_opts, samples=samples, surrogate=sds,
                          seed=int(rc.options.get("seed", 0)), progress=ctx.log, **opts)
    except NoPlantSets as exc:
        if about == "plant":
            raise
        # for = "both": the surrogate's sets stand; say why the plant's are missing
        ctx.log(f"reach: no sets of the plant: {exc}")
        ctx.summary.setdefault("reach", {})["plant"] = {"about": "plant", "error": str(exc)}
        ctx.report.add_heading("Reachable sets of the plant (the true system)", 2)
        ctx.report.add_text(f"Not computed: {exc}")
        return None
    out = ctx.run_dir / "plant_reach.nc"
    save_reach(run.dataset, out)
    from dynid.atomic import write_text_atomic
    import json

    write_text_atomic(ctx.run_dir / "model_error.json",
                      json.dumps(run.model_error.to_dict(), indent=2) + "\n")
    ctx.artifacts["plant_reach"] = out
    ctx.summary.setdefault("reach", {})["plant"] = jsonable({**run.summary(),
                                                             "file": out.name})
    ctx.log(f"reach: {run.model_error.summary()}; true runs outside the plant's sets: "
            f"{run.falsification.outside}")
    add_plant_section(ctx.report, run, projections)
    return run
