"""Falsification: simulated trajectories give *inner* boxes, so every report states how tight
its certified (outer) boxes are.

Samples are uniform in X0 plus the corners of X0 (when there are few) plus gradient-guided
points: projected signed-gradient ascent of ``d . F^k(x)`` over X0 for every box direction d and
step k, which finds the extreme states a uniform sample misses. Every state is computed by the
float64 forward pass :meth:`ReLUNet.forward`, so any trajectory here is a genuine trajectory.

The error ratio of an outer box against the inner (sampled) box is
``(area(outer) - area(inner)) / area(inner)`` (area = product of the widths).

Example
-------
>>> import numpy as np
>>> from dynid.relunet import linear
>>> f = sampled_boxes(linear([[0.5, 0.0], [0.0, 0.5]]), [0, 0], [1, 1], 2, n=1000)
>>> np.allclose(f.inner_hi[2], [0.25, 0.25])
True
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from dynid.relunet import ReLUNet, check_box


class _TorchMap:
    """The step map as float64 torch tensors built once (fast batched forward passes)."""

    def __init__(self, net: ReLUNet):
        import torch

        self.torch = torch
        self.layers = [(torch.tensor(np.array(w)), torch.tensor(np.array(b)),
                        torch.tensor(np.array(m))) for w, b, m in
                       zip(net.weights, net.biases, net.relu)]

    def __call__(self, h):
        for w, b, m in self.layers:
            z = h @ w.T + b
            h = self.torch.where(m, self.torch.relu(z), z)
        return h


def simulate(step_net: ReLUNet, x0, steps: int) -> np.ndarray:
    """Trajectories (N, steps + 1, n) from the initial states x0 (N, n), in float64.

    Uses torch float64 with the same operations as :meth:`ReLUNet.forward` (witnesses are
    re-checked with ``ReLUNet.forward`` where they are reported).
    """
    import torch

    x = torch.as_tensor(np.atleast_2d(np.asarray(x0, dtype=np.float64)))
    f = _TorchMap(step_net)
    out = torch.empty((x.shape[0], steps + 1, x.shape[1]), dtype=torch.float64)
    out[:, 0] = x
    with torch.no_grad():
        for k in range(steps):
            x = f(x)
            out[:, k + 1] = x
    return out.numpy()


def corners(lo, hi, max_corners: int = 4096) -> np.ndarray:
    """The 2^n corners of the box (none when there are more than ``max_corners``)."""
    n = len(lo)
    if 2 ** n > max_corners:
        return np.empty((0, n))
    return np.array([[hi[i] if b else lo[i] for i, b in enumerate(bits)]
                     for bits in itertools.product((0, 1), repeat=n)], dtype=float)


def gradient_points(step_net: ReLUNet, lo, hi, steps: int, directions=None, restarts: int = 2,
                    iters: int = 40, seed: int = 0) -> np.ndarray:
    """Initial states that (locally) maximise ``d . x_k`` for every direction d (default: the
    2n box directions) and step k, by projected signed-gradient ascent in torch.

    Returns the found initial states, shape (steps * len(directions) * restarts, n).
    """
    import torch

    lo = np.asarray(lo, float)
    hi = np.asarray(hi, float)
    n = lo.size
    if directions is None:
        directions = np.vstack([np.eye(n), -np.eye(n)])
    directions = np.atleast_2d(np.asarray(directions, float))
    rng = np.random.default_rng(seed)
    m = directions.shape[0]
    B = m * restarts
    x0 = lo + (hi - lo) * rng.random((steps, B, n))
    x0[:, :m] = 0.5 * (lo + hi)  # one start from the centre for every direction
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    d = torch.tensor(np.tile(directions, (restarts, 1)), dtype=torch.float64)
    tlo = torch.tensor(lo)
    thi = torch.tensor(hi)
    step = torch.tensor((hi - lo) / 8.0)
    fmap = _TorchMap(step_net)
    for it in range(iters):
        h = x
        obj = 0.0
        for k in range(steps):
            h = fmap(h)
            obj = obj + (d * h[k]).sum()
        (grad,) = torch.autograd.grad(obj, x)
        with torch.no_grad():
            x += step * torch.sign(grad)
            x.copy_(torch.maximum(torch.minimum(x, thi), tlo))
        if it % 10 == 9:
            step = step / 2
    return x.detach().numpy().reshape(-1, n)


@dataclass
class Falsification:
    """Inner boxes from simulated trajectories.

    Attributes
    ----------
    inner_lo, inner_hi : (steps + 1, n) box of the sampled states at each step
    n_samples : number of trajectories simulated
    trajectories : (N_keep, steps + 1, n) a subset kept for figures and as witnesses (the
        extreme ones included)
    outside : number of sampled states outside a checked reach Dataset (None if not checked)
    """

    inner_lo: np.ndarray
    inner_hi: np.ndarray
    n_samples: int
    trajectories: np.ndarray
    outside: int | None = None
    info: dict = field(default_factory=dict)

    @property
    def sound(self) -> bool | None:
        return None if self.outside is None else self.outside == 0


def sampled_boxes(step_net: ReLUNet, lo, hi, steps: int, n: int = 100_000, seed: int = 0,
                  use_corners: bool = True, gradient: bool = True, chunk: int = 200_000,
                  keep: int = 300, check=None, progress=None) -> Falsification:
    """Simulate ``n`` uniform trajectories (plus corners and gradient-guided ones) in chunks
    and return the inner boxes; with ``check`` (a reach Dataset) also count sampled states
    outside its bounds (a sound Dataset gives 0).

    Example
    -------
    >>> from dynid.relunet import linear
    >>> f = sampled_boxes(linear([[1.0, 1.0], [0.0, 1.0]]), [0, 0], [1, 1], 1, n=500)
    >>> float(f.inner_hi[1][0]) <= 2.0
    True
    """
    lo, hi = check_box(step_net, lo, hi, "initial box")
    dim = lo.size
    rng = np.random.default_rng(seed)
    special = [corners(lo, hi)]
    if gradient:
        special.append(gradient_points(step_net, lo, hi, steps, seed=seed))
    special = np.vstack(special)
    inner_lo = np.full((steps + 1, dim), np.inf)
    inner_hi = np.full((steps + 1, dim), -np.inf)
    kept = []
    # the trajectory attaining each extreme (per step and coordinate) is kept as a witness
    ext_val = np.full((steps + 1, 2 * dim), -np.inf)
    ext_traj = np.zeros((steps + 1, 2 * dim, steps + 1, dim))
    outside = 0 if check is not None else None
    done = 0
    batches = [special]
    total = special.shape[0] + n
    while done < total:
        if batches:
            x0 = batches.pop()
        else:
            size = min(chunk, total - done)
            x0 = lo + (hi - lo) * rng.random((size, dim))
        traj = simulate(step_net, x0, steps)
        done += x0.shape[0]
        inner_lo = np.minimum(inner_lo, traj.min(axis=0))
        inner_hi = np.maximum(inner_hi, traj.max(axis=0))
        vals = np.concatenate([traj, -traj], axis=2)  # (N, steps+1, 2 dim)
        arg = vals.argmax(axis=0)
        best = np.take_along_axis(vals, arg[None], axis=0)[0]
        better = best > ext_val
        for k, j in zip(*np.nonzero(better)):
            ext_val[k, j] = best[k, j]
            ext_traj[k, j] = traj[arg[k, j]]
        if len(kept) < keep:
            kept.extend(traj[: keep - len(kept)])
        if check is not None:
            outside += count_outside(check, traj)
        if progress is not None:
            progress(f"{done}/{total} trajectories")
    keep_arr = np.concatenate([np.array(kept).reshape(-1, steps + 1, dim),
                               ext_traj.reshape(-1, steps + 1, dim)])
    return Falsification(inner_lo, inner_hi, int(done), keep_arr, outside,
                         info={"uniform": int(n), "special": int(special.shape[0])})


def count_outside(ds, traj: np.ndarray, tol: float = 1e-9) -> int:
    """Number of trajectories of ``traj`` (N, K + 1, n) not contained in the reach Dataset.

    A trajectory is contained when, for some cell containing its initial state, every state
    satisfies that cell's template bounds at its step (NaN bounds contain nothing).
    """
    D = ds.directions.values
    c_lo, c_hi = ds.cell_lo.values, ds.cell_hi.values
    lower, upper = ds.lower.values, ds.upper.values  # (K+1, m, P)
    traj = traj[:, :lower.shape[0]]
    x0 = traj[:, 0]
    in_cell = np.all((x0[:, None] >= c_lo[None] - tol) & (x0[:, None] <= c_hi[None] + tol),
                     axis=2)  # (N, P)
    proj = traj @ D.T  # (N, K+1, m)
    ok = np.zeros(traj.shape[0], bool)
    for p in np.nonzero(in_cell.any(axis=0))[0]:
        sel = np.nonzero(in_cell[:, p] & ~ok)[0]
        if sel.size == 0:
            continue
        lo_p, up_p = lower[None, :, :, p], upper[None, :, :, p]
        inside = ((proj[sel] >= lo_p - tol * (1 + np.abs(lo_p)))
                  & (proj[sel] <= up_p + tol * (1 + np.abs(up_p))))
        ok[sel[inside.all(axis=(1, 2))]] = True
    return int((~ok).sum())


def box_area(lo, hi) -> float:
    """Product of the widths (volume of the box)."""
    return float(np.prod(np.asarray(hi, float) - np.asarray(lo, float)))


def error_ratio(outer_lo, outer_hi, inner_lo, inner_hi) -> float:
    """(area(outer) - area(inner)) / area(inner); inf when the inner box is flat.

    Example
    -------
    >>> error_ratio([0, 0], [2, 2], [0, 0], [1, 1])
    3.0
    """
    a_in = box_area(inner_lo, inner_hi)
    a_out = box_area(outer_lo, outer_hi)
    if a_in <= 0:
        return float("inf") if a_out > 0 else 0.0
    return (a_out - a_in) / a_in


__all__ = ["simulate", "corners", "gradient_points", "sampled_boxes", "Falsification",
           "count_outside", "error_ratio", "box_area"]
