"""Pipeline stage ``[prune]``: prune the surrogate at several levels, fine-tune each on the
dataset, certify the L-inf deviation from the original on the training box, and plot the
certified deviation and the one-step error against sparsity.

Config keys (all optional): ``levels`` (default [0.1, 0.3, 0.5, 0.7, 0.9]), ``structured``,
``per_layer``, ``epochs`` (fine-tuning, default 20), ``lr``, ``norm`` (default "inf"),
``method`` ("ours" | "naive"), ``solver``, ``time_limit`` (per level; default none, so that
the certified deviations do not depend on the machine's speed; a level it stops is "unknown",
said under ``time_limited`` in prune.json), ``lo``/``hi``
(default: the model's training domain), ``model``, ``data``, ``save_models`` (default true).
Results: ``ctx.summary["prune"]``, ``prune.json``, ``prune_<pct>.h5``, ``prune.png``.
Each level is one job of the run's executor (``dynid run --workers N``), so the levels run in
parallel and an interrupted stage resumes at the first unfinished level.
"""

from __future__ import annotations

import json

import numpy as np

from dynid.errors import ConfigError
from dynid.stages import schema as sc

KEYS = {"levels", "structured", "per_layer", "epochs", "lr", "norm", "method", "solver",
        "time_limit", "lo", "hi", "model", "data", "save_models", "out"}
SCHEMAS = {"prune": sc.Schema({
    "levels": sc.Check("a non-empty list of sparsities in [0, 1)",
                       lambda v, _: isinstance(v, list) and len(v) > 0
                       and all(sc.number(min=0, max=1, max_open=True).accepts(x) is True
                               for x in v)),
    "structured": sc.boolean(), "per_layer": sc.boolean(), "epochs": sc.integer(min=0),
    "lr": sc.number(min=0, min_open=True), "norm": sc.norm(),
    "method": sc.string(("ours", "naive")), "solver": sc.solver(),
    "time_limit": sc.number(min=0, min_open=True), "lo": sc.numbers(), "hi": sc.numbers(),
    "model": sc.existing_file(), "data": sc.existing_file(), "save_models": sc.boolean(),
    "out": sc.file_name()}, sc.same_length)}


def _box(net, section, X):
    from dynid.relunet import check_box, default_box

    if "lo" in section or "hi" in section:
        return check_box(net, section.get("lo"), section.get("hi"), "[prune] box")
    box = default_box(net, required=False)
    return box if box is not None else (X.min(axis=0), X.max(axis=0))


def level_job(net, sparsity, X, Y, lo, hi, *, structured, per_layer, epochs, lr, norm, method,
              solver, time_limit) -> dict:
    """One pruning level (a job of :mod:`dynid.executor`): prune ``net`` to ``sparsity``,
    fine-tune it on (X, Y) and certify its max deviation from ``net`` over [lo, hi]."""
    from dynid.certify.equivalence import equivalence
    from dynid.executor import job_threads
    from dynid.prune import one_step_loss, prune

    pruned = prune(net, sparsity, structured=structured, per_layer=per_layer,
                   finetune_data=(X, Y), epochs=epochs, lr=lr)
    cert = equivalence(net, pruned, lo, hi, norm=norm, method=method, solver=solver,
                       time_limit=time_limit, threads=job_threads())
    return {"pruned": pruned, "certificate": cert, "one_step_rmse": one_step_loss(pruned, X, Y)}


def run(section: dict, ctx) -> None:
    from dynid.atomic import write_text_atomic
    from dynid.datasets import load_dataset, pairs_from
    from dynid.executor import resolve
    from dynid.modelfile import load_model, save_model
    from dynid.pipeline import check_keys
    from dynid.prune import one_step_loss
    from dynid.results import jsonable
    from dynid.stages.certify import time_limited
    from dynid.stages.figures import save_png

    check_keys(section, KEYS, "[prune]")
    mpath = ctx.resolve(section["model"]) if "model" in section else ctx.artifacts.get("model")
    dpath = ctx.resolve(section["data"]) if "data" in section else ctx.artifacts.get("dataset")
    if mpath is None or dpath is None:
        raise ConfigError("[prune] needs a model and a dataset: add [simulate] and [train] "
                          "stages or set model = PATH and data = PATH")
    net = load_model(mpath)
    X, Y = pairs_from(load_dataset(dpath))
    lo, hi = _box(net, section, X)
    levels = [float(s) for s in section.get("levels", [0.1, 0.3, 0.5, 0.7, 0.9])]
    opts = {"structured": bool(section.get("structured", False)),
            "per_layer": bool(section.get("per_layer", False)),
            "epochs": int(section.get("epochs", 20)), "lr": float(section.get("lr", 1e-3)),
            "norm": section.get("norm", "inf"), "method": section.get("method", "ours"),
            "solver": section.get("solver", "auto"),
            "time_limit": (float(section["time_limit"]) if "time_limit" in section
                           else None)}
    base = one_step_loss(net, X, Y)
    executor = resolve(getattr(ctx, "executor", None))

    def report(i, res):
        ctx.log(f"sparsity {levels[i]:.0%}: {res['certificate'].summary()}")

    # one job per level (prune, fine-tune, certify), in order whichever executor runs them
    done = executor.map(level_job, [(net, s, X, Y, lo, hi) for s in levels], kwargs=opts,
                        desc="pruning levels", on_result=report)
    rows = []
    for s, res in zip(levels, done):
        pruned, cert = res["pruned"], res["certificate"]
        row = {"sparsity": s, "one_step_rmse": res["one_step_rmse"],
               "certified_deviation": cert.bound, "worst_deviation": cert.value,
               "status": cert.status.value, "seconds": cert.seconds, "solver": cert.solver,
               "alive_units": pruned.meta["pruned"]["report"][-1]["units_alive"],
               "relu_units_after_simplify": pruned.simplify().n_relu,
               "time_limited": time_limited(cert), "witness": cert.witness["x"]}
        if section.get("save_models", True):
            path = save_model(ctx.run_dir / f"prune_{int(round(100 * s)):02d}.h5", pruned)
            row["model"] = path.name
        rows.append(row)
    out = ctx.run_dir / section.get("out", "prune.json")
    result = {"box": {"lo": lo, "hi": hi}, "original_one_step_rmse": base, "levels": rows}
    write_text_atomic(out, json.dumps(jsonable(result), indent=2) + "\n")
    ctx.artifacts["prune"] = out
    fig = _figure(rows, base)
    png = save_png(fig, ctx.run_dir / "prune.png", dpi=120)
    ctx.report.add_heading("Pruning and certified deviation")
    ctx.report.add_text(f"The surrogate was pruned (magnitude, "
                        f"{'structured' if section.get('structured') else 'unstructured'}) and "
                        "fine-tuned with the zero pattern fixed; the maximum L-inf deviation "
                        "from the original over the box is certified by MIP (best bound).")
    ctx.report.add_table([{k: v for k, v in r.items() if k != "witness"} for r in rows])
    ctx.report.add_figure(fig, "certified deviation and one-step error against sparsity")
    import matplotlib.pyplot as plt

    plt.close(fig)
    ctx.summary["prune"] = jsonable({**result, "files": {"json": out.name, "figure": png.name}})


def _figure(rows, base):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = np.array([r["sparsity"] for r in rows]) * 100
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.semilogy(s, [max(r["certified_deviation"], 1e-12) for r in rows], "o-",
                label="certified max deviation (L-inf)")
    ax.semilogy(s, [r["one_step_rmse"] for r in rows], "s--", label="one-step RMSE (pruned)")
    ax.axhline(base, color="gray", lw=0.8, ls=":", label="one-step RMSE (original)")
    ax.set_xlabel("sparsity (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
