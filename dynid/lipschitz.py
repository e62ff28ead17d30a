"""Certified Jacobian enclosures and Lipschitz bounds of a ReLUNet over boxes.

Over a box, interval bounds of every pre-activation say which derivative each ReLU unit can
have: 1 where the unit is provably active, 0 where provably inactive, anything in [0, 1]
where its sign is undecided (the Clarke derivative of relu at 0 is [0, 1]). Propagating
interval Jacobians through the layers with those derivative intervals,

    J_0 = I,   J_i = D_i (W_i J_{i-1}),   D_i = diag(d_i), d_i in {0}, {1} or [0, 1],

gives an interval matrix [J] that contains the (generalised) Jacobian of the net at every
point of the box. Row i then bounds output i's Lipschitz constant in the inf-norm,
``L_i = sum_j max |[J]_ij|``, usually far below the product of the layer norms because the
signs of the weights are kept and stable units contribute exactly. Everything is batched over
B boxes (``LO``, ``HI`` of shape (B, n_in)) and padded outward for float64 rounding.

Example
-------
>>> from dynid.relunet import ReLUNet
>>> net = ReLUNet([[[1.0], [-1.0]], [[1.0, 1.0]]], [[0.0, 0.0], [0.0]])   # |x|
>>> L = lipschitz_bound(net, [-1.0], [1.0])[0]           # slopes -1 and 1: L = 1, padded
>>> bool(1.0 <= L < 1.0 + 1e-8)
True
>>> round(float(lipschitz_bound(net, [0.5], [1.0])[0]), 6)    # only slope 1
1.0
"""

from __future__ import annotations

import numpy as np

from dynid.bounds.core import pad_interval
from dynid.errors import ShapeError
from dynid.relunet import ReLUNet, check_box


def _boxes(net: ReLUNet, LO, HI):
    LO = np.atleast_2d(np.asarray(LO, dtype=np.float64))
    HI = np.atleast_2d(np.asarray(HI, dtype=np.float64))
    if LO.shape != HI.shape or LO.shape[1] != net.n_in:
        raise ShapeError(f"boxes need shape (B, {net.n_in}) for lo and hi, got {LO.shape} and "
                         f"{HI.shape}")
    if not (np.all(np.isfinite(LO)) and np.all(np.isfinite(HI))) or np.any(LO > HI):
        raise ShapeError("every box needs finite bounds with lo <= hi")
    return LO, HI


def interval_image(W, b, lo, hi):
    """Padded interval image of ``h -> h @ W.T + b`` over boxes ``lo``, ``hi`` of shape
    (B, in): the elementwise range, valid in floating point."""
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    z_mid = mid @ W.T + b
    z_rad = rad @ np.abs(W).T
    mag = np.maximum(np.abs(lo), np.abs(hi)) @ np.abs(W).T + np.abs(b)
    # the midpoint/radius split itself rounds: widen by the radius' relative error too
    return pad_interval(z_mid - z_rad, z_mid + z_rad, mag + z_rad)


def preactivation_bounds(net: ReLUNet, LO, HI) -> list[tuple[np.ndarray, np.ndarray]]:
    """Interval bounds ``(lo, hi)`` of shape (B, m_i) of every layer's pre-activations over
    the boxes (rows of ``LO``/``HI``), by interval arithmetic."""
    h_lo, h_hi = _boxes(net, LO, HI)
    out = []
    for w, b, m in zip(net.weights, net.biases, net.relu):
        z_lo, z_hi = interval_image(w, b, h_lo, h_hi)
        out.append((z_lo, z_hi))
        h_lo = np.where(m, np.maximum(z_lo, 0.0), z_lo)
        h_hi = np.where(m, np.maximum(z_hi, 0.0), z_hi)
    return out


def output_bounds(net: ReLUNet, LO, HI) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds of the outputs over each box; at a degenerate box ``lo = hi`` this is a
    rigorous enclosure of the exact output, i.e. the float64 forward pass with its rounding
    error accounted for."""
    z_lo, z_hi = preactivation_bounds(net, LO, HI)[-1]
    m = net.relu[-1]
    return np.where(m, np.maximum(z_lo, 0.0), z_lo), np.where(m, np.maximum(z_hi, 0.0), z_hi)


def interval_jacobian(net: ReLUNet, LO, HI, preact=None) -> tuple[np.ndarray, np.ndarray]:
    """Interval enclosure ``(J_lo, J_hi)``, shape (B, n_out, n_in), of the Jacobian of the net
    at every point of each box (at a kink: every element of the Clarke Jacobian).

    ``preact`` may pass pre-activation bounds already computed for these boxes (e.g. tighter
    CROWN bounds, as a list of (lo, hi) per layer).
    """
    LO, HI = _boxes(net, LO, HI)
    B = LO.shape[0]
    if preact is None:
        preact = preactivation_bounds(net, LO, HI)
    j_lo = np.broadcast_to(np.eye(net.n_in), (B, net.n_in, net.n_in))
    j_hi = j_lo
    for w, m, (z_lo, z_hi) in zip(net.weights, net.relu, preact):
        wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)
        # (B, m_i, n_in) = W (m_i, m_{i-1}) @ J (B, m_{i-1}, n_in), interval in J
        a_lo = np.matmul(wp, j_lo) + np.matmul(wn, j_hi)
        a_hi = np.matmul(wp, j_hi) + np.matmul(wn, j_lo)
        mag = np.matmul(np.abs(w), np.maximum(np.abs(j_lo), np.abs(j_hi)))
        a_lo, a_hi = pad_interval(a_lo, a_hi, mag)
        active = (~m) | (z_lo >= 0)             # derivative 1 (identity units too)
        inactive = m & (z_hi <= 0)              # derivative 0
        unstable = ~active & ~inactive          # derivative in [0, 1]: hull of 0 and a
        act, ina, uns = active[..., None], inactive[..., None], unstable[..., None]
        j_lo = np.where(act, a_lo, np.where(uns, np.minimum(a_lo, 0.0), 0.0))
        j_hi = np.where(act, a_hi, np.where(uns, np.maximum(a_hi, 0.0), 0.0))
        j_lo = np.where(ina, 0.0, j_lo)
        j_hi = np.where(ina, 0.0, j_hi)
    return j_lo, j_hi


def abs_max(lo, hi):
    """Elementwise max |v| over an interval [lo, hi]."""
    return np.maximum(np.abs(lo), np.abs(hi))


def lipschitz_bound(net: ReLUNet, lo, hi, cells: int | None = None) -> np.ndarray:
    """Certified per-output Lipschitz constants of the net over the box in the inf-norm:
    ``|F_i(x) - F_i(y)| <= L_i ||x - y||_inf`` for all x, y in [lo, hi].

    With ``cells = k`` the box is split into k cells per coordinate and L is the max over the
    cells (a Lipschitz bound on each cell of a convex cover bounds it on the union, since the
    segment between two points crosses the cells in pieces); tighter for boxes with many
    undecided units.
    """
    from dynid.bounds.core import grid_cells

    lo, hi = check_box(net, lo, hi)
    parts = grid_cells(lo, hi, cells)
    LO = np.array([c[0] for c in parts])
    HI = np.array([c[1] for c in parts])
    j_lo, j_hi = interval_jacobian(net, LO, HI)
    return abs_max(j_lo, j_hi).sum(axis=2).max(axis=0)


def norm_product_bound(net: ReLUNet) -> float:
    """The naive bound: product of the layers' inf-norms (for comparison; valid for any box)."""
    return float(np.prod([np.abs(w).sum(axis=1).max() for w in net.weights]))


__all__ = ["preactivation_bounds", "output_bounds", "interval_jacobian", "interval_image",
           "lipschitz_bound", "norm_product_bound", "abs_max"]
