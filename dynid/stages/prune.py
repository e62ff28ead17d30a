"""Pipeline stage ``[prune]``: prune the surrogate at several levels, fine-tune each on the
dataset, certify the L-inf deviation from the original on the training box, and plot the
certified deviation and the one-step error against sparsity.

Config keys (all optional): ``levels`` (default [0.1, 0.3, 0.5, 0.7, 0.9]), ``structured``,
``per_layer``, ``epochs`` (fine-tuning, default 20), ``lr``, ``norm`` (default "inf"),
``method`` ("ours" | "naive"), ``solver``, ``time_limit`` (per level, default 120 s), ``lo``/``hi``
(default: the model's training domain), ``model``, ``data``, ``save_models`` (default true).
Results: ``ctx.summary["prune"]``, ``prune.json``, ``prune_<pct>.h5``, ``prune.png``.
"""

from __future__ import annotations

import json

import numpy as np

from dynid.errors import ConfigError

KEYS = {"levels", "structured", "per_layer", "epochs", "lr", "norm", "method", "solver",
        "time_limit", "lo", "hi", "model", "data", "save_models", "out"}


def _box(net, section, X):
    from dynid.relunet import check_box, default_box

    if "lo" in section or "hi" in section:
        return check_box(net, section.get("lo"), section.get("hi"), "[prune] box")
    box = default_box(net, required=False)
    return box if box is not None else (X.min(axis=0), X.max(axis=0))


def run(section: dict, ctx) -> None:
    from dynid.atomic import write_text_atomic
    from dynid.certify.equivalence import equivalence
    from dynid.datasets import load_dataset, pairs_from
    from dynid.modelfile import load_model, save_model
    from dynid.pipeline import check_keys
    from dynid.prune import one_step_loss, prune
    from dynid.results import jsonable

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
    rows = []
    base = one_step_loss(net, X, Y)
    for s in levels:
        pruned = prune(net, s, structured=bool(section.get("structured", False)),
                       per_layer=bool(section.get("per_layer", False)), finetune_data=(X, Y),
                       epochs=int(section.get("epochs", 20)), lr=float(section.get("lr", 1e-3)))
        cert = equivalence(net, pruned, lo, hi, norm=section.get("norm", "inf"),
                           method=section.get("method", "ours"),
                           solver=section.get("solver", "auto"),
                           time_limit=float(section.get("time_limit", 120.0)))
        ctx.log(f"sparsity {s:.0%}: {cert.summary()}")
        row = {"sparsity": s, "one_step_rmse": one_step_loss(pruned, X, Y),
               "certified_deviation": cert.bound, "worst_deviation": cert.value,
               "status": cert.status.value, "seconds": cert.seconds, "solver": cert.solver,
               "alive_units": pruned.meta["pruned"]["report"][-1]["units_alive"],
               "relu_units_after_simplify": pruned.simplify().n_relu,
               "witness": cert.witness["x"]}
        if section.get("save_models", True):
            path = save_model(ctx.run_dir / f"prune_{int(round(100 * s)):02d}.h5", pruned)
            row["model"] = path.name
        rows.append(row)
    out = ctx.run_dir / section.get("out", "prune.json")
    result = {"box": {"lo": lo, "hi": hi}, "original_one_step_rmse": base, "levels": rows}
    write_text_atomic(out, json.dumps(jsonable(result), indent=2) + "\n")
    ctx.artifacts["prune"] = out
    fig = _figure(rows, base)
    png = ctx.run_dir / "prune.png"
    fig.savefig(png, dpi=120)
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
