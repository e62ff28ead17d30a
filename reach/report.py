"""Figures and the HTML report of a reachability analysis.

- :func:`plot_projection` - the reachable boxes of every step (hull, optionally every cell) over
  sampled trajectories, in a 2-D projection chosen by the user,
- :func:`step_rows` - the per-step table: certified bounds, sampled bounds, error ratio,
- :func:`add_reach_section` - adds setup, table, figures, verdicts, timings and versions to a
  :class:`dynid.report.HtmlReport`; :func:`write_report` saves one self-contained HTML file.

Example
-------
>>> # fig = plot_projection(ds, (0, 1), trajectories=fals.trajectories)
"""

from __future__ import annotations

import json

import numpy as np


def plot_projection(ds, dims=(0, 1), trajectories=None, cells: bool = False, ax=None,
                    max_traj: int = 200):
    """Boxes of every step in the projection on coordinates ``dims`` over sampled trajectories.

    Returns the matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from dynid.errors import ConfigError

    i, j = (int(d) for d in dims)
    n = ds.sizes["state"]
    if not (0 <= i < n and 0 <= j < n) or i == j:
        raise ConfigError(f"projection {dims} needs two different coordinates in 0..{n - 1}")
    names = [str(s) for s in ds.state.values]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4.5))
    else:
        fig = ax.figure
    if trajectories is not None and len(trajectories):
        tr = np.asarray(trajectories)[:max_traj]
        ax.plot(tr[:, :, i].T, tr[:, :, j].T, color="0.6", lw=0.4, alpha=0.5, zorder=1)
        ax.scatter(tr[:, :, i].ravel(), tr[:, :, j].ravel(), s=1.5, color="k", zorder=2)
    cmap = plt.get_cmap("viridis")
    K = int(ds.step.values[-1])
    for s in ds.step.values:
        color = cmap(float(s) / max(K, 1))
        if cells and ds.sizes["cell"] > 1:
            for c in range(ds.sizes["cell"]):
                lo = ds.lower.sel(step=s).values[[i, j], c]
                hi = ds.upper.sel(step=s).values[[i, j], c]
                ax.add_patch(Rectangle(lo, *(hi - lo), fill=False, ec=color, lw=0.5, alpha=0.6))
        lo = ds.box_lo.sel(step=s).values[[i, j]]
        hi = ds.box_hi.sel(step=s).values[[i, j]]
        if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
            ax.add_patch(Rectangle(lo, *(hi - lo), fill=False, ec=color, lw=1.5, zorder=3,
                                   label=f"step {int(s)}"))
    ax.autoscale_view()
    ax.set_xlabel(names[i])
    ax.set_ylabel(names[j])
    ax.set_title(f"reachable boxes ({ds.attrs.get('method')}, {ds.attrs.get('engine')})")
    if K <= 12:
        ax.legend(fontsize=7, loc="best")
    return fig


def step_rows(ds, falsification=None) -> list[dict]:
    """One row per step: certified box per coordinate, the sampled box, and the error ratio."""
    from reach.falsify import error_ratio

    rows = []
    names = [str(s) for s in ds.state.values]
    for s in ds.step.values:
        lo = ds.box_lo.sel(step=s).values
        hi = ds.box_hi.sel(step=s).values
        row = {"step": int(s)}
        for k, nm in enumerate(names):
            row[f"{nm} bound"] = f"[{lo[k]:.6g}, {hi[k]:.6g}]"
        if falsification is not None:
            slo, shi = falsification.inner_lo[int(s)], falsification.inner_hi[int(s)]
            for k, nm in enumerate(names):
                row[f"{nm} sampled"] = f"[{slo[k]:.6g}, {shi[k]:.6g}]"
            row["error"] = error_ratio(lo, hi, slo, shi) if int(s) > 0 else 0.0
        row["seconds"] = float(ds.seconds.sel(step=s))
        rows.append(row)
    return rows


def versions() -> dict:
    """Versions of the software that computed the result."""
    import platform
    import sys

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for mod in ("dynid", "numpy", "torch", "xarray", "highspy", "gurobipy", "matplotlib"):
        try:
            m = __import__(mod)
            v = getattr(m, "__version__", None)
            if v is None and mod == "gurobipy":
                v = ".".join(str(x) for x in m.gurobi.version())
            out[mod] = v
        except Exception:  # an optional dependency that is not installed
            out[mod] = None
    return out


def add_reach_section(report, ds, falsification=None, verdicts=(), projections=((0, 1),),
                      title: str = "Reachable sets", setup: dict | None = None) -> None:
    """Append the reachability section (setup, verdicts, per-step table, figures, timings,
    versions) to an HtmlReport."""
    a = ds.attrs
    report.add_heading(title, 2)
    from reach.disturbance import describe

    info = {"sets": describe(ds),
            "method": a.get("method"), "engine": a.get("engine"), "template": a.get("template"),
            "window": a.get("window"), "steps": a.get("steps"), "cells": a.get("n_cells"),
            "initial box lo": np.asarray(a.get("x0_lo")).tolist(),
            "initial box hi": np.asarray(a.get("x0_hi")).tolist(),
            "directions": ", ".join(json.loads(a.get("direction_labels", "[]")))}
    if falsification is not None:
        info["sampled trajectories"] = falsification.n_samples
        info["sampled states outside the bounds"] = falsification.outside
    info.update(setup or {})
    report.add_table(info, caption="Setup")
    if not int(a.get("complete", 1)):
        report.add_text("The run was interrupted: the missing steps are unknown (NaN).")
    if verdicts:
        report.add_heading("Verdicts", 3)
        report.add_table([{"spec": v.spec, "verdict": v.status,
                           "worst margin": (min(float(m) for m in v.margins.values())
                                            if v.margins else ""),
                           "witness x0": (np.round(v.witness[0], 6).tolist()
                                          if v.witness is not None else "")}
                          for v in verdicts])
        report.add_text("safe = certified by the sound bounds; unsafe = a simulated trajectory "
                        "(re-checked by a float64 forward pass) violates the spec; unknown = "
                        "neither.")
    report.add_heading("Per-step bounds", 3)
    report.add_table(step_rows(ds, falsification),
                     caption="certified box (outer) vs sampled box (inner); error = (area outer "
                             "- area inner) / area inner")
    import matplotlib.pyplot as plt

    for dims in projections or ():
        fig = plot_projection(ds, dims, None if falsification is None
                              else falsification.trajectories, cells=ds.sizes["cell"] <= 64)
        report.add_figure(fig, f"projection on {[str(ds.state.values[d]) for d in dims]}")
        plt.close(fig)
    report.add_table({"total seconds": float(a.get("seconds_total", 0.0)),
                      "created": a.get("created")}, caption="Timing")
    report.add_table(versions(), caption="Software versions")


def write_report(path, ds, falsification=None, verdicts=(), projections=((0, 1),),
                 title: str = "Reachability report", setup: dict | None = None):
    """One self-contained HTML file with the whole analysis (atomic write)."""
    from dynid.report import HtmlReport

    rep = HtmlReport(title)
    add_reach_section(rep, ds, falsification, verdicts, projections, "Reachable sets", setup)
    return rep.save(path)


__all__ = ["plot_projection", "step_rows", "add_reach_section", "write_report", "versions"]
