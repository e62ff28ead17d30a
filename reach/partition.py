"""Initial-set partitioning: uniform grids and greedy refinement under a time budget.

The reachable set from X0 is the union of the reachable sets from the cells of any cover of X0,
so bounding every cell on its own and taking the hull stays sound and is tighter: the
relaxation error shrinks with the cell size. :func:`refine` spends a time budget where it pays:
it repeatedly bisects the cells whose final-step bounds stick out furthest beyond the sampled
(inner) box, i.e. the cells that decide the final-step volume.

Example
-------
>>> cells = grid_cells([0, 0], [1, 2], 2)
>>> len(cells), cells[-1][0].tolist()
(4, [0.5, 1.0])
"""

from __future__ import annotations

import time

import numpy as np

from dynid.bounds.core import grid_cells
from dynid.errors import ConfigError
from dynid.relunet import ReLUNet, check_box


def bisect(lo, hi, dim: int):
    """Split a box in two halves along coordinate ``dim``."""
    mid = 0.5 * (lo[dim] + hi[dim])
    hi1 = hi.copy()
    hi1[dim] = mid
    lo2 = lo.copy()
    lo2[dim] = mid
    return (lo.copy(), hi1), (lo2, hi.copy())


def _excess(c_lo, c_hi, s_lo, s_hi):
    """How far a cell's final box sticks out of the sampled box, in sampled-width units."""
    w = np.maximum(s_hi - s_lo, 1e-12)
    return float(np.sum((np.maximum(c_hi - s_hi, 0) + np.maximum(s_lo - c_lo, 0)) / w))


def refine(step_net: ReLUNet, x0_lo, x0_hi, steps: int, *, method: str = "one-shot",
           engine: str = "crown", budget_s: float | None = 10.0, initial=None,
           max_cells: int = 4096, inner=None, final_engine: str | None = None,
           final_cell_width: float | None = None, engine_opts: dict | None = None,
           n_samples: int = 20_000, seed: int = 0, progress=None,
           target_ratio: float | None = None, template="box", expand: int = 8,
           executor=None):
    """Greedy refinement of the partition of X0 under a cell count (and a time budget).

    Starts from the grid ``initial`` (default: one cell), bounds every cell, then repeatedly
    bisects the cell whose final-step box sticks out furthest beyond the sampled box
    (along its longest side relative to X0) until ``max_cells`` is reached, nothing sticks
    out any more, the final box width is within ``target_ratio`` times the sampled width in
    every coordinate, or ``budget_s`` seconds are spent (``None``: no time limit). Every stop
    but the time budget is reproducible: the same call gives the same cells on any machine;
    ``attrs['stopped']`` says which rule ended the refinement.

    ``final_engine`` (e.g. "mip") re-bounds the cells whose width is below ``final_cell_width``
    (relative to X0) with a more exact engine when they are the worst offenders.
    Each round takes the ``expand`` worst cells (default 8), so that with the CROWN engine
    their halves are bounded in one batched pass.

    Returns the reach Dataset of the final partition (``attrs['refinements']`` counts the
    bisections) computed with the same method and engine, every cell bound sound. The cells
    of each round are bounded in jobs of ``executor`` (see :func:`reach.reachability.reach`).

    Example
    -------
    >>> from dynid.relunet import linear
    >>> ds = refine(linear([[0.5, 0.1], [0.0, 0.5]]), [0, 0], [1, 1], 2, budget_s=0.5)
    >>> int(ds.sizes["cell"]) >= 1
    True
    """
    from reach.falsify import sampled_boxes
    from reach.reachability import _dataset, _progress, _support, _window, reach_boxes
    from reach.templates import template_matrix

    lo, hi = check_box(step_net, x0_lo, x0_hi, "initial box")
    n = step_net.n_in
    D = template_matrix(template, n)
    w = _window(method, steps, None)
    if inner is None:
        f = sampled_boxes(step_net, lo, hi, steps, n=n_samples, seed=seed)
        s_lo, s_hi = f.inner_lo[steps], f.inner_hi[steps]
    else:
        s_lo, s_hi = (np.asarray(v, float) for v in inner)
    if budget_s is not None and not float(budget_s) >= 0:
        raise ConfigError(f"refinement budget must be >= 0 seconds (or None), got {budget_s}")
    if int(max_cells) < 1:
        raise ConfigError(f"max_cells must be >= 1, got {max_cells}")
    t0 = time.perf_counter()
    tick = _progress(progress, 10**9, "refine") if progress else None

    def bound_cells(boxes, eng):
        """Bound several cells (one batched CROWN pass per job with the crown engine)."""
        res = reach_boxes(step_net, [c[0] for c in boxes], [c[1] for c in boxes], steps, D=D,
                          window=w, engine=eng, engine_opts=engine_opts, executor=executor,
                          desc="refine")
        return [{"lo": c_lo, "hi": c_hi, "lower": low, "upper": up, "secs": secs, "engine": eng}
                for (c_lo, c_hi), (low, up, secs) in zip(boxes, res)]

    cells = bound_cells(grid_cells(lo, hi, initial), engine)
    n_split = 0
    span = np.maximum(hi - lo, 1e-300)
    stopped = "no gain"
    try:
        while True:
            f_lo = np.min([c["lower"][-1, :n] for c in cells], axis=0)
            f_hi = np.max([c["upper"][-1, :n] for c in cells], axis=0)
            if target_ratio is not None and np.all(
                    f_hi - f_lo <= target_ratio * np.maximum(s_hi - s_lo, 0)):
                stopped = "target_ratio"
                break
            if len(cells) >= max_cells:
                stopped = "max_cells"
                break
            if budget_s is not None and time.perf_counter() - t0 > budget_s:
                stopped = "time budget"
                break
            ex = np.array([_excess(c["lower"][-1, :n], c["upper"][-1, :n], s_lo, s_hi)
                           for c in cells])
            # the worst cells of this round (several at once: their halves share one pass)
            room = max(1, min(expand, max_cells - len(cells)))
            order = [int(i) for i in np.argsort(-ex)[:room] if ex[i] > 1e-6]
            if not order:   # only solver/float padding sticks out: nothing to gain
                break
            replace, halves = {}, []
            for i in order:
                c = cells[i]
                rel = (c["hi"] - c["lo"]) / span
                if (final_engine and c["engine"] != final_engine
                        and final_cell_width is not None and rel.max() <= final_cell_width):
                    replace[i] = bound_cells([(c["lo"], c["hi"])], final_engine)
                    if tick:
                        tick(f"{len(cells)} cells, exact on a small cell")
                    continue
                halves.append((i, bisect(c["lo"], c["hi"], int(np.argmax(rel)))))
            if halves:
                boxes = [b for _, pair in halves for b in pair]
                bounded = bound_cells(boxes, engine)
                for k, (i, _) in enumerate(halves):
                    replace[i] = bounded[2 * k:2 * k + 2]
                n_split += len(halves)
            cells = [new for i, c in enumerate(cells) for new in replace.get(i, [c])]
            if tick:
                tick(f"{len(cells)} cells")
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        if tick:
            tick.close()
    P, m = len(cells), D.shape[0]
    lower = np.empty((steps + 1, m, P))
    upper = np.empty((steps + 1, m, P))
    seconds = np.zeros(steps + 1)
    for j, c in enumerate(cells):
        lower[0, :, j], upper[0, :, j] = _support(D, c["lo"], c["hi"])
        lower[1:, :, j], upper[1:, :, j] = c["lower"], c["upper"]
        seconds[1:] += c["secs"]
    names = list(step_net.meta.get("state_names") or [f"x{i + 1}" for i in range(n)])
    engines = sorted({c["engine"] for c in cells})
    return _dataset(lower, upper, D, [(c["lo"], c["hi"]) for c in cells], names, seconds,
                    attrs=dict(method=method, engine="+".join(engines), window=w,
                               template=template if isinstance(template, str) else "matrix",
                               steps=int(steps), n_cells=P,
                               seconds_total=time.perf_counter() - t0, complete=1,
                               engine_opts="{}", x0_lo=lo, x0_hi=hi, refinements=n_split,
                               stopped=stopped))


__all__ = ["grid_cells", "bisect", "refine"]
