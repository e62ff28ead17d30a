"""Interval bound propagation."""

from __future__ import annotations

import numpy as np

from dynid.bounds.core import Bounds
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
    from dynid.bounds.relaxation import affine_image

    for w, b, m in zip(net.weights, net.biases, net.relu):
        z_lo, z_hi = affine_image(w, b, h_lo, h_hi)
        lowers.append(z_lo)
        uppers.append(z_hi)
        h_lo = np.where(m, np.maximum(z_lo, 0.0), z_lo)
        h_hi = np.where(m, np.maximum(z_hi, 0.0), z_hi)
    return Bounds(lowers, uppers, lo, hi, list(net.relu), "ibp")
