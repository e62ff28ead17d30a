"""The :class:`Bounds` value shared by every bounding method."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from dynid.errors import ConfigError, ShapeError

# Outward padding that keeps float64 bounds valid: a relative part for rounding in the
# products and an absolute part for values near zero. Both are far below any tolerance a
# certificate is stated with (1e-6 and up).
REL_PAD = 1e-12
ABS_PAD = 1e-10


def pad_interval(lo, hi, magnitude=None):
    """Widen [lo, hi] outward by ABS_PAD + REL_PAD * magnitude (default: |value|).

    ``magnitude`` should be the size of the terms summed to get the bound (for a dot product
    sum |a_i||x_i|), since rounding errors scale with it, not with the (possibly cancelled) sum.
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    mag_lo = np.abs(lo) if magnitude is None else np.asarray(magnitude, dtype=np.float64)
    mag_hi = np.abs(hi) if magnitude is None else np.asarray(magnitude, dtype=np.float64)
    return lo - (ABS_PAD + REL_PAD * mag_lo), hi + (ABS_PAD + REL_PAD * mag_hi)


@dataclass
class Bounds:
    """Pre-activation bounds ``lower[i] <= z_i <= upper[i]`` of every layer of a ReLUNet.

    ``lower[i]``/``upper[i]`` have one entry per unit of layer i (i = 0..L-1). Since the last
    layer is usually all identity units, ``lower[-1]``/``upper[-1]`` bound the output.
    ``relu`` holds the network's masks so stability can be read off.
    """

    lower: list
    upper: list
    input_lo: np.ndarray
    input_hi: np.ndarray
    relu: list
    method: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if len(self.lower) != len(self.upper) or len(self.lower) != len(self.relu):
            raise ShapeError("bounds need one lower and one upper vector per layer")
        self.lower = [np.asarray(v, dtype=np.float64) for v in self.lower]
        self.upper = [np.asarray(v, dtype=np.float64) for v in self.upper]

    @property
    def n_layers(self) -> int:
        return len(self.lower)

    def active(self, i: int) -> np.ndarray:
        """ReLU units of layer i that are provably active (z >= 0): linear, no binary."""
        return self.relu[i] & (self.lower[i] >= 0)

    def inactive(self, i: int) -> np.ndarray:
        """ReLU units of layer i that are provably inactive (z <= 0): output 0."""
        return self.relu[i] & (self.upper[i] <= 0)

    def unstable(self, i: int) -> np.ndarray:
        """ReLU units of layer i whose sign is not decided by the bounds."""
        return self.relu[i] & (self.lower[i] < 0) & (self.upper[i] > 0)

    @property
    def n_unstable(self) -> int:
        return int(sum(self.unstable(i).sum() for i in range(self.n_layers)))

    def post_bounds(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the post-activation values h_i of layer i."""
        lo, hi = self.lower[i], self.upper[i]
        m = self.relu[i]
        return np.where(m, np.maximum(lo, 0.0), lo), np.where(m, np.maximum(hi, 0.0), hi)

    @property
    def output_lo(self) -> np.ndarray:
        return self.post_bounds(self.n_layers - 1)[0]

    @property
    def output_hi(self) -> np.ndarray:
        return self.post_bounds(self.n_layers - 1)[1]

    def intersect(self, other: "Bounds") -> "Bounds":
        """Elementwise tighter of two valid bounds on the same network and box."""
        if other.n_layers != self.n_layers:
            raise ShapeError("cannot intersect bounds of different networks")
        lower = [np.maximum(a, b) for a, b in zip(self.lower, other.lower)]
        upper = [np.minimum(a, b) for a, b in zip(self.upper, other.upper)]
        # both are valid, so an empty intersection only comes from rounding: keep it valid
        upper = [np.maximum(u, l) for l, u in zip(lower, upper)]
        return Bounds(lower, upper, self.input_lo, self.input_hi, self.relu,
                      f"{self.method}&{other.method}", {**self.info, **other.info})

    def copy(self) -> "Bounds":
        return Bounds([v.copy() for v in self.lower], [v.copy() for v in self.upper],
                      self.input_lo.copy(), self.input_hi.copy(), self.relu, self.method,
                      dict(self.info))

    def contains(self, net, x, tol: float = 0.0) -> bool:
        """True when every pre-activation of ``net`` at the points ``x`` lies in the bounds."""
        zs = net.preactivations(np.atleast_2d(x))
        return all(np.all(z >= l - tol) and np.all(z <= u + tol)
                   for z, l, u in zip(zs, self.lower, self.upper))


def grid_cells(lo, hi, partitions=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Uniform grid of [lo, hi]: ``partitions`` = None (one cell), an int p (p cells per
    coordinate) or a sequence of counts per coordinate. Neighbouring cells share faces, so
    the cells cover the box exactly."""
    lo = np.asarray(lo, float)
    hi = np.asarray(hi, float)
    n = lo.size
    if partitions is None:
        counts = [1] * n
    elif np.isscalar(partitions):
        counts = [int(partitions)] * n
    else:
        counts = [int(p) for p in partitions]
    if len(counts) != n or min(counts) < 1:
        raise ConfigError(f"partitions must be a count >= 1 or {n} counts >= 1, got "
                          f"{partitions!r}")
    if int(np.prod(counts)) > 100_000:
        raise ConfigError(f"{int(np.prod(counts))} cells is too many: use fewer partitions or "
                          "reach.partition.refine")
    edges = [np.linspace(lo[i], hi[i], counts[i] + 1) for i in range(n)]
    for i in range(n):  # exact end points, whatever linspace rounded
        edges[i][0], edges[i][-1] = lo[i], hi[i]
    cells = []
    for idx in itertools.product(*[range(c) for c in counts]):
        c_lo = np.array([edges[i][j] for i, j in enumerate(idx)])
        c_hi = np.array([edges[i][j + 1] for i, j in enumerate(idx)])
        cells.append((c_lo, c_hi))
    return cells
