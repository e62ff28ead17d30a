"""Interval bound propagation."""

from __future__ import annotations

import numpy as np

from dynid.bounds.core import Bounds, pad_interval
from dynid.relunet import ReLUNet, check_box


def interval_bounds(net: ReLUNet, lo, hi) -> Bounds:
    """Interval arithmetic bounds of every pre-activation over the box [lo, hi].

    Example
    -------
    >>> from dynid.relunet import linear
    >>> b = interval_bounds(linear([[1.0, -2.0]]), [0, 0], [1, 1])
    >>> float(b.lower[0][0]) < -2 + 1e-9 and float(b.upper[0][0]) > 1 - 1e-9
    True
    """
    lo, hi = check_box(net, lo, hi)
    h_lo, h_hi = lo, hi
    lowers, uppers = [], []
    for w, b, m in zip(net.weights, net.biases, net.relu):
        mid = (h_lo + h_hi) / 2
        rad = (h_hi - h_lo) / 2
        z_mid = w @ mid + b
        z_rad = np.abs(w) @ rad
        mag = np.abs(w) @ np.maximum(np.abs(h_lo), np.abs(h_hi)) + np.abs(b)
        z_lo, z_hi = pad_interval(z_mid - z_rad, z_mid + z_rad, mag)
        lowers.append(z_lo)
        uppers.append(z_hi)
        h_lo = np.where(m, np.maximum(z_lo, 0.0), z_lo)
        h_hi = np.where(m, np.maximum(z_hi, 0.0), z_hi)
    return Bounds(lowers, uppers, lo, hi, list(net.relu), "ibp")
