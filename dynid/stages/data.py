"""Pipeline stages ``simulate``, ``train`` and ``evaluate``.

Each is ``stage(section, ctx)`` (see :mod:`dynid.pipeline`). Keys of each table, with defaults:

``[simulate]`` system (required), params = {}, dt = 0.1, map = "flow", kind = "pairs"
(or "trajectories", or "experiments" for a plant with inputs), samples = 10000 (pairs, or
trajectories), steps = 50 (trajectory length), sampling = "uniform" | "lhs" | "grid", lo / hi
(default: the system's domain; initial states for trajectories and experiments), seed = 0,
trajectory_samples = 0 (pairs of that many trajectories of ``steps`` steps are added, see
:func:`simulate_dataset`), out = "data.nc". Plants with inputs: u_lo / u_hi (default: the
system's input box), and for experiments experiments = 100 (their number), signal =
"random_steps" | "prbs" | "multisine" | "chirp", signal_options = {hold = [5, 20], ...} (see
:mod:`dynid.excitation`), noise_std = 0 (measurement noise on the recorded states).

``[train]`` data (default: the dataset of the simulate stage), arch = "residual", hidden =
[32, 32], and every option of :func:`dynid.train.train` (epochs, batch_size, lr, schedule,
weight_decay, val_fraction, patience, target_rmse, max_seconds, rollout_steps, rollout_weight,
seed, dtype, device, arch_options: a table, e.g. ``{c = 0.9, gain = "scalar"}`` for
arch = "cpl"), out = "model.h5".

``[evaluate]`` model / data (default: the run's), steps = 50, initial_states = 20,
seed = 12345, test_samples = 2000, grid = 60 (heat-map resolution per axis), figures = true,
out = "metrics.json". Writes metrics.json, trajectories.png and one_step_error.png; for a plant
model: free-run fit % / NRMSE per state on held-out and fresh experiments beside the ARX
baseline, and compare.png (measured vs simulated per state and input).
"""

from __future__ import annotations

import json
import time

import numpy as np

from dynid.atomic import write_text_atomic
from dynid.errors import ConfigError
from dynid.pipeline import RunContext, check_keys
from dynid.results import jsonable

SIMULATE_KEYS = {"system", "params", "dt", "map", "kind", "samples", "steps", "sampling",
                 "lo", "hi", "seed", "out", "trajectory_samples", "u_lo", "u_hi",
                 "experiments", "signal", "signal_options", "noise_std"}
TRAIN_OPTIONS = {"epochs", "batch_size", "lr", "schedule", "weight_decay", "val_fraction",
                 "patience", "target_rmse", "max_seconds", "rollout_steps", "rollout_weight",
                 "seed", "dtype", "device", "arch_options"}
TRAIN_KEYS = TRAIN_OPTIONS | {"data", "arch", "hidden", "out"}
EVALUATE_KEYS = {"model", "data", "steps", "initial_states", "seed", "test_samples", "grid",
                 "figures", "out"}


def simulate_dataset(system_name: str, *, params=None, dt=0.1, method="flow", kind="pairs",
                     samples=10000, steps=50, sampling="uniform", lo=None, hi=None, seed=0,
                     trajectory_samples=0, progress=None, u_lo=None, u_hi=None,
                     signal="random_steps", signal_options=None, noise_std=0.0):
    """Simulate a pairs, trajectories or experiments dataset of a catalogue system (used by
    the stage and by ``dynid simulate``).

    ``kind="experiments"`` (plants with inputs): ``samples`` experiments of ``steps`` steps
    from initial states sampled in ``[lo, hi]``, each driven by its own ``signal``
    (:func:`dynid.simulate.experiments`); pairs of a plant sample ``[x; u]`` in the state box
    times the input box ``[u_lo, u_hi]``.

    With ``kind="pairs"`` and ``trajectory_samples=N > 0``, the consecutive pairs of N
    trajectories of ``steps`` steps (initial states sampled in the box with ``seed + 1``) are
    appended to the box samples. Free runs leave the sampling box (the Brusselator's limit
    cycle reaches x = 7 from [0, 4] x [0, 5]); these pairs teach the surrogate the region its
    own rollouts visit. The recorded domain stays the sampling box.

    Example
    -------
    >>> ds = simulate_dataset("brusselator", method="euler", samples=10)
    >>> ds.sizes["sample"]
    10
    """
    from dynid.simulate import one_step_pairs, sample_box, trajectories
    from dynid.systems import get_system

    if not isinstance(params or {}, dict):
        raise ConfigError(f"params must be a table of NAME = VALUE, got {params!r}")
    system = get_system(system_name, **(params or {}))
    if kind == "pairs":
        ds = one_step_pairs(system, samples, dt, method=method, sampling=sampling, lo=lo,
                            hi=hi, seed=seed, progress=progress, u_lo=u_lo, u_hi=u_hi)
        if int(trajectory_samples) > 0:
            if system.n_input:
                raise ConfigError(f"{system.name!r} has inputs: add driven runs with kind = "
                                  "\"experiments\" instead of trajectory_samples")
            ds = _append_trajectory_pairs(ds, system, int(trajectory_samples), steps, dt,
                                          method, seed + 1)
        return ds
    if kind == "experiments":
        from dynid.simulate import experiments

        return experiments(system, samples, steps, dt, method=method, signal=signal,
                           signal_options=_signal_options(signal_options), u_lo=u_lo,
                           u_hi=u_hi, lo=lo, hi=hi, sampling=sampling, seed=seed,
                           noise_std=noise_std, progress=progress)
    if kind != "trajectories":
        raise ConfigError(f"kind must be 'pairs', 'trajectories' or 'experiments', got "
                          f"{kind!r}")
    if system.n_input:
        raise ConfigError(f"{system.name!r} has inputs {list(system.input_names)}: simulate "
                          "experiments driven by an excitation signal (dynid simulate "
                          "--experiments N, or kind = \"experiments\" in a pipeline)")
    box_lo, box_hi = system.domain
    lo = box_lo if lo is None else np.asarray(lo, dtype=float)
    hi = box_hi if hi is None else np.asarray(hi, dtype=float)
    x0 = sample_box(lo, hi, samples, sampling, seed)
    ds = trajectories(system, x0, steps, dt, method=method, progress=progress)
    ds.attrs.update(seed=int(seed), sampling=f"initial states: {sampling}",
                    domain_lo=np.asarray(lo, float), domain_hi=np.asarray(hi, float))
    return ds


def _signal_options(options) -> dict:
    """Excitation options from a TOML table (lists become tuples, e.g. hold = [5, 20])."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ConfigError(f"signal_options must be a table, e.g. {{ hold = [5, 20] }}, got "
                          f"{options!r}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def _append_trajectory_pairs(ds, system, n_traj: int, steps: int, dt: float, method: str,
                             seed: int):
    import xarray as xr

    from dynid.simulate import sample_box, trajectories

    lo = np.asarray(ds.attrs["domain_lo"], float)
    hi = np.asarray(ds.attrs["domain_hi"], float)
    tr = trajectories(system, sample_box(lo, hi, n_traj, "uniform", seed), steps, dt,
                      method=method)["x"].values
    n = tr.shape[-1]
    X = np.concatenate([ds["x"].values, tr[:, :-1].reshape(-1, n)])
    Y = np.concatenate([ds["x_next"].values, tr[:, 1:].reshape(-1, n)])
    out = xr.Dataset({"x": (("sample", "state"), X), "x_next": (("sample", "state"), Y)},
                     coords={"state": ds.coords["state"].values}, attrs=dict(ds.attrs))
    out.attrs.update(sampling=f"{ds.attrs['sampling']} + pairs of {n_traj} trajectories of "
                              f"{steps} steps", trajectory_samples=n_traj, trajectory_steps=steps)
    return out


def simulate(section: dict, ctx: RunContext) -> None:
    """Stage: simulate a dataset and save it as ``data.nc`` in the run folder."""
    from dynid.datasets import save_dataset

    check_keys(section, SIMULATE_KEYS, "[simulate]")
    if "system" not in section:
        raise ConfigError("[simulate] needs system = \"NAME\" (e.g. \"brusselator\")")
    t0 = time.perf_counter()
    kind = section.get("kind", "pairs")
    samples = section.get("experiments", section.get("samples", 100)) if kind == "experiments" \
        else section.get("samples", 10000)
    ds = simulate_dataset(section["system"], params=section.get("params"),
                          dt=section.get("dt", 0.1), method=section.get("map", "flow"),
                          kind=kind, samples=samples, steps=section.get("steps", 50),
                          sampling=section.get("sampling", "uniform"), lo=section.get("lo"),
                          hi=section.get("hi"), seed=section.get("seed", 0),
                          trajectory_samples=section.get("trajectory_samples", 0),
                          u_lo=section.get("u_lo"), u_hi=section.get("u_hi"),
                          signal=section.get("signal", "random_steps"),
                          signal_options=section.get("signal_options"),
                          noise_std=section.get("noise_std", 0.0))
    seconds = time.perf_counter() - t0
    path = save_dataset(ds, ctx.run_dir / section.get("out", "data.nc"))
    ctx.artifacts["dataset"] = path
    info = {"path": str(path), "system": ds.attrs["system"],
            "params": json.loads(ds.attrs["params"]), "dt": float(ds.attrs["dt"]),
            "map": ds.attrs["map"], "kind": ds.attrs["kind"], "sizes": dict(ds.sizes),
            "domain_lo": ds.attrs["domain_lo"], "domain_hi": ds.attrs["domain_hi"],
            "seconds": seconds}
    if "u" in ds.variables:
        info.update(inputs=[str(v) for v in ds["input"].values],
                    input_lo=ds.attrs.get("input_lo"), input_hi=ds.attrs.get("input_hi"))
        if "excitation" in ds.attrs:
            info["excitation"] = json.loads(ds.attrs["excitation"])
    ctx.summary["simulate"] = jsonable(info)
    ctx.report.add_heading("Data")
    ctx.report.add_table({k: v for k, v in info.items() if k != "path"})
    ctx.log(f"{ds.attrs['kind']} of {ds.attrs['system']} ({dict(ds.sizes)}) in {seconds:.1f} s "
            f"-> {path}")


def train(section: dict, ctx: RunContext) -> None:
    """Stage: train a surrogate on the run's dataset and save ``model.h5``."""
    from dynid.datasets import load_dataset
    from dynid.modelfile import save_model
    from dynid.stages.figures import history_figure, save_png
    from dynid.train import train as train_fn

    check_keys(section, TRAIN_KEYS, "[train]")
    data_path = ctx.resolve(section["data"]) if "data" in section else ctx.artifacts.get("dataset")
    if data_path is None:
        raise ConfigError("[train] has no data: add the simulate stage before it or set "
                          "data = \"PATH.nc\"")
    ds = load_dataset(data_path)
    out = ctx.run_dir / section.get("out", "model.h5")
    opts = {k: section[k] for k in TRAIN_OPTIONS if k in section}
    net, summary = train_fn(ds, arch=section.get("arch", "residual"),
                            hidden=tuple(section.get("hidden", (32, 32))), progress=False,
                            log=ctx.log, checkpoint=out, **opts)
    save_model(out, net)
    ctx.artifacts["model"] = out
    short = {k: v for k, v in summary.items() if k != "history"}
    ctx.summary["train"] = jsonable({"path": str(out), "widths": net.widths, **short})
    ctx.report.add_heading("Training")
    ctx.report.add_table({"architecture": summary["arch"], "widths": net.widths,
                          "epochs": summary["epochs"], "stopped": summary["stopped"],
                          "validation one-step RMSE": summary["best_val_rmse"],
                          "seconds": summary["seconds"]})
    fig = history_figure(summary["history"])
    save_png(fig, ctx.run_dir / "training.png")
    ctx.report.add_figure(fig, "validation one-step RMSE during training")
    if summary["interrupted"]:
        raise KeyboardInterrupt


def _heatmap(net, system, dt, method, lo, hi, n):
    gx = np.linspace(lo[0], hi[0], n)
    gy = np.linspace(lo[1], hi[1], n)
    mx, my = np.meshgrid(gx, gy)
    pts = np.stack([mx.ravel(), my.ravel()], axis=1)
    err = np.linalg.norm(net.forward(pts) - system.step_map(pts, dt, method), axis=1)
    return mx, my, err.reshape(mx.shape)


def evaluate(section: dict, ctx: RunContext) -> None:
    """Stage: metrics of the run's model (one-step, rollout) plus figures."""
    from dynid.datasets import load_dataset
    from dynid.metrics import _model_system, evaluate_model
    from dynid.modelfile import load_model
    from dynid.stages.figures import error_heatmap_figure, save_png, trajectories_figure

    check_keys(section, EVALUATE_KEYS, "[evaluate]")
    model_path = ctx.resolve(section["model"]) if "model" in section else \
        ctx.artifacts.get("model")
    if model_path is None:
        raise ConfigError("[evaluate] has no model: add the train stage before it or set "
                          "model = \"PATH.h5\"")
    data_path = ctx.resolve(section["data"]) if "data" in section else \
        ctx.artifacts.get("dataset")
    net = load_model(model_path)
    ds = load_dataset(data_path) if data_path is not None else None
    if net.meta.get("input_names"):
        return _evaluate_plant(net, ds, section, ctx)
    t0 = time.perf_counter()
    res = evaluate_model(net, ds, steps=section.get("steps", 50),
                         n_initial=section.get("initial_states", 20),
                         seed=section.get("seed", 12345),
                         n_test=section.get("test_samples", 2000), return_trajectories=True)
    traj = None
    if res["rollout"] is not None:
        traj = (res["rollout"].pop("true"), res["rollout"].pop("pred"))
    res["seconds"] = time.perf_counter() - t0
    out = ctx.run_dir / section.get("out", "metrics.json")
    write_text_atomic(out, json.dumps(jsonable(res), indent=2) + "\n")
    ctx.artifacts["metrics"] = out
    ctx.summary["evaluate"] = jsonable({"path": str(out), **res})
    ctx.report.add_heading("Evaluation")
    rows = [{"metric": "one-step RMSE (fresh test pairs)", "value": res["one_step_rmse_test"]},
            {"metric": "one-step RMSE (dataset)", "value": res["one_step_rmse_data"]}]
    if res["rollout"]:
        r = res["rollout"]
        rows += [{"metric": f"{r['steps']}-step rollout RMSE", "value": r["rmse"]},
                 {"metric": "rollout NRMSE", "value": r["nrmse"]},
                 {"metric": "rollout fit %", "value": r["fit_percent"]}]
    ctx.report.add_table(rows)
    ctx.report.add_text("Rollouts start at held-out initial states drawn uniformly in the "
                        "training domain; NRMSE is the RMSE of each state divided by the std "
                        "of its true trajectory, averaged over states.")
    msg = f"one-step rmse {res['one_step_rmse']:.3g}"
    if res["rollout"]:
        msg += (f", {res['steps']}-step rollout nrmse {100 * res['rollout']['nrmse']:.2f} %, "
                f"fit {res['rollout']['fit_percent']:.1f} %")
    ctx.log(msg)
    if not section.get("figures", True):
        return
    names = net.meta.get("state_names")
    if traj is not None:
        fig = trajectories_figure(traj[0], traj[1], names, float(net.meta["dt"]))
        save_png(fig, ctx.run_dir / "trajectories.png")
        ctx.report.add_figure(fig, "true (solid) vs surrogate (dashed) free runs from held-out "
                                   "initial states")
        ctx.artifacts["trajectories_png"] = ctx.run_dir / "trajectories.png"
    system = _model_system(net)
    dom = net.meta.get("domain") or {}
    if system is not None and net.n_in == 2 and dom.get("lo") is not None:
        lo, hi = np.asarray(dom["lo"], float), np.asarray(dom["hi"], float)
        mx, my, err = _heatmap(net, system, float(net.meta["dt"]),
                               str(net.meta.get("map", "flow")), lo, hi,
                               int(section.get("grid", 60)))
        fig = error_heatmap_figure(mx, my, err, names, lo, hi)
        save_png(fig, ctx.run_dir / "one_step_error.png")
        ctx.report.add_figure(fig, f"one-step error norm on a {err.shape[0]}x{err.shape[1]} "
                                   f"grid (max {err.max():.3g})")
        ctx.artifacts["error_png"] = ctx.run_dir / "one_step_error.png"
        ctx.summary["evaluate"]["max_grid_error"] = float(err.max())


def _evaluate_plant(net, ds, section: dict, ctx: RunContext) -> None:
    """The evaluate stage for a plant model [x; u] -> x_next: free runs under recorded inputs
    (held-out and fresh experiments) beside the ARX baseline, and the compare figure."""
    from dynid.stages.figures import save_png
    from dynid.sysid import compare_figure, evaluate_plant

    t0 = time.perf_counter()
    res = evaluate_plant(net, ds, steps=section.get("steps", 100),
                         n_experiments=section.get("initial_states", 20),
                         seed=section.get("seed", 12345),
                         n_test=section.get("test_samples", 2000), return_trajectories=True)
    shown = None
    for part in ("heldout", "fresh"):
        if res[part] is not None:
            traj = {k: res[part].pop(k) for k in ("measured", "simulated", "inputs", "mask",
                                                  "time", "input_names")}
            if shown is None:
                shown = (part, {**res[part], **traj})
    res["seconds"] = time.perf_counter() - t0
    out = ctx.run_dir / section.get("out", "metrics.json")
    write_text_atomic(out, json.dumps(jsonable(res), indent=2) + "\n")
    ctx.artifacts["metrics"] = out
    ctx.summary["evaluate"] = jsonable({"path": str(out), **res})
    ctx.report.add_heading("Evaluation (identification)")
    names = res["state_names"] or [f"x{i + 1}" for i in range(net.n_out)]
    rows = []
    for part, label in (("heldout", "held-out experiments of the dataset"),
                        ("fresh", "fresh experiments of the true system")):
        r, a = res[part], res[f"{part}_arx"]
        if r is None:
            continue
        for i, name in enumerate(names):
            rows.append({"experiments": f"{label} ({len(r['experiments'])})", "state": name,
                         "fit % (surrogate)": r["fit_percent_per_state"][i],
                         "fit % (ARX)": a["fit_percent_per_state"][i] if a else None,
                         "NRMSE (surrogate)": r["nrmse_per_state"][i],
                         "NRMSE (ARX)": a["nrmse_per_state"][i] if a else None})
    rows.append({"experiments": "one-step RMSE", "state": "all",
                 "fit % (surrogate)": res["one_step_rmse_test"] if
                 res["one_step_rmse_test"] is not None else res["one_step_rmse_data"]})
    ctx.report.add_table(rows)
    ctx.report.add_text(f"Free runs of {res['steps']} steps from each experiment's measured "
                        "initial state, driven by its recorded inputs; fit % = 100 (1 - "
                        "||y - yhat|| / ||y - mean(y)||) per state over all scored "
                        "experiments (the compare convention); ARX = the least-squares linear "
                        "model x+ = A x + B u + c on the same training experiments.")
    msg = f"one-step rmse {res['one_step_rmse']:.3g}"
    for part in ("heldout", "fresh"):
        if res[part] is not None:
            fits = ", ".join(f"{n} {f:.1f} %" for n, f in
                             zip(names, res[part]["fit_percent_per_state"]))
            med = ", ".join(f"{f:.1f}" for f in res[part]["fit_percent_median_per_state"])
            msg += f"; {part} fit {fits} (median over experiments {med})"
            if res[f"{part}_arx"] is not None:
                msg += " (ARX " + ", ".join(f"{f:.1f}" for f in
                                            res[f"{part}_arx"]["fit_percent_per_state"]) + ")"
    ctx.log(msg)
    if shown is not None and section.get("figures", True):
        fig = compare_figure(shown[1], dt=net.meta.get("dt"))
        save_png(fig, ctx.run_dir / "compare.png")
        ctx.report.add_figure(fig, f"measured (solid) vs simulated (dashed) states and the "
                                   f"inputs, {shown[0]} experiments")
        ctx.artifacts["compare_png"] = ctx.run_dir / "compare.png"
