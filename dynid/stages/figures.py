"""Figures of the data stages (matplotlib object API: no pyplot, no global backend change).

Example
-------
>>> import numpy as np
>>> t = np.zeros((2, 5, 2)); fig = trajectories_figure(t, t, ["x", "y"], 0.1)
>>> len(fig.axes) >= 2
True
"""

from __future__ import annotations

import numpy as np


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def trajectories_figure(true, pred, state_names, dt: float, max_series: int = 4):
    """Phase portrait (first two states) and time series of true vs surrogate free runs."""
    true, pred = np.asarray(true), np.asarray(pred)
    n = true.shape[-1]
    names = list(state_names or [f"x{i}" for i in range(n)])
    fig = _figure(11, 4.2)
    ncols = 2 if n >= 2 else 1
    axes = fig.subplots(1, ncols)
    axes = np.atleast_1d(axes)
    t = dt * np.arange(true.shape[1])
    if n >= 2:
        ax = axes[0]
        for i in range(true.shape[0]):
            ax.plot(true[i, :, 0], true[i, :, 1], color="k", lw=1.2,
                    label="true" if i == 0 else None)
            ax.plot(pred[i, :, 0], pred[i, :, 1], color="tab:red", lw=1, ls="--",
                    label="surrogate" if i == 0 else None)
            ax.plot(true[i, 0, 0], true[i, 0, 1], "o", color="tab:blue", ms=3)
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_title("phase portrait (dots: initial states)")
        ax.legend(loc="best", fontsize=8)
    ax = axes[-1]
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
    for s in range(min(n, 4)):
        for i in range(min(true.shape[0], max_series)):
            ax.plot(t, true[i, :, s], color=colors[s], lw=1.2,
                    label=f"{names[s]} true" if i == 0 else None)
            ax.plot(t, pred[i, :, s], color=colors[s], lw=1, ls="--",
                    label=f"{names[s]} surrogate" if i == 0 else None)
    ax.set_xlabel("time")
    ax.set_title(f"time series ({min(true.shape[0], max_series)} runs)")
    ax.legend(loc="best", fontsize=8)
    return fig


def error_heatmap_figure(grid_x, grid_y, err, state_names, lo, hi):
    """log10 of the one-step error norm over a 2-D grid of the domain."""
    fig = _figure(6, 4.8)
    ax = fig.subplots()
    with np.errstate(divide="ignore"):
        z = np.log10(np.maximum(err, 1e-16))
    mesh = ax.pcolormesh(grid_x, grid_y, z, shading="auto", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="log10 ||F(x) - x_next||_2")
    names = list(state_names or ["x0", "x1"])
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_title("one-step error of the surrogate over the domain")
    return fig


def history_figure(history: dict):
    """Validation one-step RMSE per epoch (log scale)."""
    fig = _figure(6, 3.4)
    ax = fig.subplots()
    ax.semilogy(history.get("epoch", []), history.get("val_rmse", []), color="tab:blue")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation one-step RMSE")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def save_png(fig, path, dpi: int = 110):
    """Save a figure as PNG atomically."""
    from dynid.atomic import atomic_path

    with atomic_path(path, suffix=".png.tmp") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path
