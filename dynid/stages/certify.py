"""Pipeline stage ``certify``: is the surrogate invertible on its domain, and where does it fold?

Keys of the ``[certify]`` table, with defaults: model (default: the run's model), lo / hi
(default: the model's training domain), norm = "inf", delta = 0.0, tol = 1e-4,
solver = "auto", time_limit (seconds per MIP, or for all cell pairs; default none: the
verdict then does not depend on the machine's speed; when a limit fires the verdict is
"unknown" and certify.json says so under ``time_limited``), cells = 2 (also search each of the
cells x cells sub-boxes of the domain for a witness pair, to show *where* F folds; 0 = only
the global query), pairs = "auto" (the cell-pair verdict of
:func:`dynid.certify.invertible_on` with ``cells``: "auto" runs it when the global query ends
unknown, true runs only it, false never), grid = 80 (resolution of the det J heat map),
out = "certify.json", method = "auto" ("analytic": the MIP-free certificate of a CPL stack,
:func:`dynid.certify.invertible_analytic`; "mip": the MIP; "auto": analytic when the model is a
CPL stack, the MIP otherwise). The result and the report say which method answered.

Writes certify.json and certify_witnesses.png; adds a report section; puts the results under
``ctx.summary["certify"]``. For a forward-Euler Brusselator surrogate the analytic fold curve
of the true map (det J = 0) is drawn too.

Example
-------
>>> # in a pipeline TOML:  [certify]  norm = "inf"  cells = 2
"""

from __future__ import annotations

import json

import numpy as np

from dynid.atomic import write_text_atomic
from dynid.errors import ConfigError
from dynid.results import jsonable
from dynid.stages import schema as sc

KEYS = {"model", "lo", "hi", "norm", "delta", "tol", "solver", "time_limit", "cells", "grid",
        "out", "pairs", "method"}
SCHEMAS = {"certify": sc.Schema({
    "model": sc.existing_file(), "lo": sc.numbers(), "hi": sc.numbers(), "norm": sc.norm(),
    "delta": sc.number(min=0), "tol": sc.number(min=0), "solver": sc.solver(),
    "time_limit": sc.number(min=0, min_open=True), "cells": sc.integer(min=0, max=64),
    "grid": sc.integer(min=2), "out": sc.file_name(), "pairs": sc.literal("auto", True, False),
    "method": sc.literal("auto", "analytic", "mip")},
    sc.same_length)}


def _box_job(net, lo, hi, **opts):
    """One invertibility MIP on a box (a job of :mod:`dynid.executor`)."""
    from dynid.certify import noninvertibility
    from dynid.executor import job_threads

    return noninvertibility(net, lo, hi, log=None, threads=job_threads(), **opts)


def run(section: dict, ctx) -> None:
    from dynid.certify import invertible_on
    from dynid.executor import resolve
    from dynid.modelfile import load_model
    from dynid.pipeline import check_keys

    check_keys(section, KEYS, "[certify]")
    method = section.get("method", "auto")
    if method not in ("auto", "analytic", "mip"):
        raise ConfigError(f"[certify] method must be \"auto\", \"analytic\" or \"mip\", got "
                          f"{method!r}")
    path = ctx.resolve(section["model"]) if "model" in section else ctx.artifacts.get("model")
    if path is None:
        raise ConfigError("[certify] needs a model: add a [train] stage or set model = PATH")
    net = load_model(path)
    lo, hi = _domain(net, section)
    if _analytic_stage(net, lo, hi, method, section, ctx):
        return
    opts = dict(norm=section.get("norm", "inf"), delta=float(section.get("delta", 0.0)),
                tol=float(section.get("tol", 1e-4)), solver=section.get("solver", "auto"),
                time_limit=(float(section["time_limit"]) if "time_limit" in section
                            else None))
    cells = int(section.get("cells", 2))
    if cells < 0:
        raise ConfigError(f"[certify] cells must be >= 0, got {cells}")
    pairs = section.get("pairs", "auto")
    if pairs not in ("auto", True, False):
        raise ConfigError(f"[certify] pairs must be \"auto\", true or false, got {pairs!r}")
    ctx.log(f"invertibility of the surrogate on [{lo.tolist()}, {hi.tolist()}] "
            f"({opts['norm']}-norm)")
    executor = resolve(getattr(ctx, "executor", None))
    global_cert = None
    if pairs is not True or cells < 2:   # one job, so that a resumed run need not redo it
        cert = global_cert = executor.map(_box_job, [(net, lo, hi)], kwargs=opts,
                                          desc="global query")[0]
        ctx.log(cert.summary())
    if cells >= 2 and (pairs is True or (pairs == "auto" and not cert.certified
                                         and cert.status.value != "counterexample")):
        ctx.log(f"cell-pair verdict on a {cells} x {cells} grid")
        pc = invertible_on(net, lo, hi, cells=cells, progress=lambda m: ctx.log(m),
                           executor=executor, **opts)
        ctx.log(pc.summary())
        if global_cert is None or pc.status.value != "unknown":
            cert = pc
    cell_certs, found_certs = [], []
    if cells > 0 and net.n_in >= 2 and not cert.certified:
        edges = [np.linspace(lo[k], hi[k], cells + 1) for k in range(2)]
        sub = []
        for i in range(cells):
            for j in range(cells):
                clo, chi = lo.copy(), hi.copy()
                clo[:2] = edges[0][i], edges[1][j]
                chi[:2] = edges[0][i + 1], edges[1][j + 1]
                sub.append((net, clo, chi))
        found = executor.map(_box_job, sub, kwargs=opts, desc="cells",
                             on_result=lambda n, c: ctx.log(
                                 f"cell {n // cells},{n % cells}: {c.status.value} "
                                 f"value={c.value:.4g}"))
        found_certs = list(found)
        cell_certs = [{"lo": clo, "hi": chi, **c.to_dict()}
                      for (_, clo, chi), c in zip(sub, found)]
    result = {"method": "mip", "domain": {"lo": lo, "hi": hi}, "invertibility": cert.to_dict(),
              "cells": cell_certs, "verdict": _verdict(cert),
              "time_limited": time_limited(cert, *found_certs)}
    if global_cert is not None and global_cert is not cert:
        result["global_query"] = global_cert.to_dict()
    fold = _euler_brusselator_fold(net)
    fig = _save_outputs(net, lo, hi, cert, cell_certs, fold, result, section, ctx)
    _report(ctx, cert, cell_certs, fig, fold is not None)


def _save_outputs(net, lo, hi, cert, cell_certs, fold, result, section, ctx):
    """Write certify_witnesses.png (2-D and up) and certify.json, record them in the run's
    artifacts and summary; return the figure (None in 1-D)."""
    files, fig = {}, None
    if net.n_in >= 2:
        fig = _figure(net, lo, hi, cert, cell_certs, fold, int(section.get("grid", 80)))
        png = ctx.run_dir / "certify_witnesses.png"
        from dynid.atomic import atomic_path

        with atomic_path(png, suffix=".png.tmp") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        files["figure"] = png.name
        ctx.artifacts["certify_figure"] = png
    out = ctx.run_dir / section.get("out", "certify.json")
    write_text_atomic(out, json.dumps(jsonable(result), indent=2) + "\n")
    ctx.artifacts["certify"] = out
    ctx.summary["certify"] = jsonable({**result, "files": {**files, "json": out.name}})
    return fig


def _domain(net, section):
    from dynid.relunet import check_box, default_box

    if "lo" in section or "hi" in section:
        return check_box(net, section.get("lo"), section.get("hi"), "[certify] box")
    return default_box(net, "[certify] lo = [...] and hi = [...]")


def time_limited(*certs) -> bool:
    """Whether a wall-clock limit stopped any of these certificates (then the result depends
    on the machine's speed: the pipelines run without one by default)."""
    return any(c.info.get("solver_status") == "time_limit" or c.info.get("tighten_time_limit_hit")
               or c.info.get("pairs_time_limited", 0) > 0 for c in certs)


def _verdict(cert) -> str:
    if cert.status.value == "certified":
        return f"injective on the domain (max distance of equal-output pairs <= {cert.bound:.3g})"
    if cert.status.value == "counterexample":
        return (f"NOT injective: two states {cert.value:.4g} apart map to the same point "
                "(a modelling artefact if the true map is a flow map)")
    return f"unknown (gap {cert.gap:.3g}; raise time_limit)"


def _euler_brusselator_fold(net):
    """tau, a, b when the model is a forward-Euler Brusselator surrogate, else None."""
    meta = net.meta
    if str(meta.get("system", "")).lower() != "brusselator" or meta.get("map") != "euler":
        return None
    params = meta.get("params") or {}
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            params = {}
    return float(meta.get("dt", 0.1)), float(params.get("a", 1.0)), float(params.get("b", 2.0))


def fold_curve(tau: float, b: float, x):
    """y on det J = 0 of x+ = x + tau f(x) for the Brusselator (ALGORITHMS.md):
    y = (tau (1 - tau) x^2 + tau (b + 1) - 1) / (2 tau x)."""
    x = np.asarray(x, dtype=np.float64)
    return (tau * (1 - tau) * x ** 2 + tau * (b + 1) - 1) / (2 * tau * x)


def _figure(net, lo, hi, cert, cells, fold, grid):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 5.2), layout="constrained")
    ax = fig.subplots()
    gx = np.linspace(lo[0], hi[0], grid)
    gy = np.linspace(lo[1], hi[1], grid)
    base = (lo + hi) / 2
    det = np.empty((grid, grid))
    for i, yv in enumerate(gy):
        for j, xv in enumerate(gx):
            p = base.copy()
            p[0], p[1] = xv, yv
            jac = net.jacobian(p)
            det[i, j] = np.linalg.det(jac[:2, :2])
    # det J of the surrogate, coloured around 0 (red: orientation reversed, past a fold)
    from matplotlib.colors import TwoSlopeNorm

    span = float(np.max(np.abs(det))) or 1.0
    im = ax.imshow(det, origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]), aspect="auto",
                   cmap="coolwarm_r", alpha=0.55,
                   norm=TwoSlopeNorm(0.0, vmin=min(float(det.min()), -1e-3 * span),
                                     vmax=max(float(det.max()), 1e-3 * span)))
    fig.colorbar(im, ax=ax, label="det J of the surrogate")
    if np.any(det < 0) and np.any(det > 0):
        ax.contour(gx, gy, det, levels=[0.0], colors="tab:blue", linewidths=1.0)
        ax.plot([], [], "-", color="tab:blue", label="surrogate det J = 0")
    k = cert.info.get("cells") if isinstance(cert.info, dict) else None
    if k:   # the grid of the cell-pair verdict
        for v in np.linspace(lo[0], hi[0], k + 1)[1:-1]:
            ax.axvline(v, color="0.3", lw=0.8, ls=":")
        for v in np.linspace(lo[1], hi[1], k + 1)[1:-1]:
            ax.axhline(v, color="0.3", lw=0.8, ls=":")
        ax.plot([], [], ":", color="0.3", label=f"cells of the {k} x {k} pair verdict")
    if fold is not None:
        tau, _a, b = fold
        xs = np.linspace(max(lo[0], 1e-6), hi[0], 400)
        ys = fold_curve(tau, b, xs)
        keep = (ys >= lo[1]) & (ys <= hi[1])
        ax.plot(xs[keep], ys[keep], "k--", lw=1.5, label="true fold (det J = 0)")
    pairs = [cert.to_dict()] + list(cells)
    first = True
    for c in pairs:
        w = c.get("witness")
        if not w:
            continue
        x, y = np.asarray(w["x"], float), np.asarray(w["y"], float)
        ax.plot([x[0], y[0]], [x[1], y[1]], "-", color="tab:green", lw=1)
        ax.plot(x[0], x[1], "o", color="tab:green", ms=6, label="witness pair" if first else None)
        ax.plot(y[0], y[1], "o", color="tab:green", ms=6, mfc="none")
        fx = np.asarray(w["Fx"], float)
        ax.plot(fx[0], fx[1], "*", color="tab:red", ms=10, label="common image" if first else None)
        first = False
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    names = net.meta.get("state_names") or ["x0", "x1"]
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1] if len(names) > 1 else "x1")
    title = {"certified": "certified injective on the domain",
             "counterexample": "NOT injective: witness pairs",
             "unknown": "invertibility unknown (limit reached)"}[cert.status.value]
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    return fig


def _report(ctx, cert, cells, fig, has_fold) -> None:
    rep = ctx.report
    rep.add_heading("Invertibility certificate")
    rep.add_text("Method: mixed-integer program on the domain. " + _verdict(cert) +
                 f". {cert.summary()}")
    label = "domain"
    if "cells" in cert.info:
        i = cert.info
        label = (f"domain, {i['cells']} x {i['cells']} cell pairs ({i['pairs_screened_by_bounds']} "
                 f"of {i['pairs_total']} settled by bounds, {i['pairs_solved']} by MIP)")
    rows = [{"box": label, "status": cert.status.value, "value": cert.value,
             "bound": cert.bound, "seconds": round(cert.seconds, 3), "solver": cert.solver}]
    for c in cells:
        rows.append({"box": f"{np.round(c['lo'], 3).tolist()}..{np.round(c['hi'], 3).tolist()}",
                     "status": c["status"], "value": c["value"], "bound": c["bound"],
                     "seconds": round(c["seconds"], 3), "solver": c["solver"]})
    rep.add_table(rows, caption="max ||x - y|| subject to F(x) = F(y) (value: checked witness; "
                                "bound: solver best bound)")
    if fig is not None:
        cap = ("Witness pairs (filled and open circles) share the image marked by the star; the "
               "shading is the sign of the surrogate's det J")
        if has_fold:
            cap += "; the dashed line is the exact fold of the Euler map"
        rep.add_figure(fig, cap)


def _analytic_stage(net, lo, hi, method, section, ctx) -> bool:
    """The analytic certificate of a CPL stack (no MIP): write certify.json, the figure and the
    report section and return True; return False when the MIP is to answer instead."""
    from dynid.certify import invertible_analytic
    from dynid.cpl import is_cpl

    if method == "mip" or (method == "auto" and not is_cpl(net)):
        return False
    cert = invertible_analytic(net)
    ctx.log(cert.summary())
    if not cert.certified and method == "auto":
        ctx.log(f"analytic certificate inconclusive ({cert.info.get('note')}): using the MIP")
        return False
    i = cert.info
    verdict = (f"bijective on all of R^{net.n_in} (analytic CPL certificate): "
               f"Lip_2(F) <= {i['lipschitz']:.4g}, Lip_2(F^-1) <= {i['inverse_lipschitz']:.4g}"
               if cert.certified else f"unknown: {i.get('note')}")
    result = {"method": "analytic", "domain": {"lo": lo, "hi": hi},
              "invertibility": cert.to_dict(), "cells": [], "verdict": verdict}
    fig = _save_outputs(net, lo, hi, cert, [], None, result, section, ctx)
    rep = ctx.report
    rep.add_heading("Invertibility certificate")
    rep.add_text("Method: analytic certificate of the CPL stack (no MIP; re-derived from the "
                 f"stored weights, exact SVD norms). Verdict: {verdict}. {cert.summary()}")
    rep.add_table([{"block": k, "hidden": b["hidden"], "c": b["c"], "step h": b["h"],
                    "||W||_2 (SVD)": b["norm_svd"], "h ||W||^2": b["c_effective"],
                    "Lip(inverse)": b["inverse_lipschitz"]} for k, b in enumerate(i["blocks"])],
                  caption="per block: h <= c / ||W||^2 makes it a bijection with Lip <= 1 and "
                          "Lip(inverse) <= 1 / (1 - h ||W||^2) (docs/cpl.md)")
    if fig is not None:
        rep.add_figure(fig, "det J of the surrogate (a CPL stack never changes its sign)")
    return True


__all__ = ["run", "fold_curve"]
