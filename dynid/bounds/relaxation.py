"""The relaxation core every certificate and reachability engine builds on.

- :func:`affine_image` - the padded interval image of ``x -> W x + b`` over a box (the one
  interval step of IBP, the output-through-directions map of the engines, the anchor boxes of
  reach, the difference propagation of the pair queries).
- :func:`prefix_net` / :func:`prefix_bounds` - layers ``0..i`` of a network with the last one's
  pre-activations as output, and its bounds.
- :func:`unit_kinds`, :func:`check_bounds` - what each unit is under given bounds.
- :func:`add_triangle_layers` - the triangle relaxation of a network into a
  :class:`~dynid.milp.SparseModel` (every affine layer exact, identity and stable units exact,
  each unstable ReLU by its triangle); :func:`dynid.certify.encode.encode_relunet` adds the
  binaries to exactly these rows, and the LP engines, OBBT and the pair tightening solve them.
- :func:`triangle_lp` - that relaxation as a :class:`~dynid.milp.lp.WarmLP`, whose every
  answer is a rigorous float64 dual bound.

Example
-------
>>> import numpy as np
>>> from dynid.relunet import ReLUNet
>>> from dynid.bounds import interval_bounds
>>> net = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[1.0, 1.0]])],
...               [np.zeros(2), np.zeros(1)])          # x -> |x|
>>> lp, out = triangle_lp(net, interval_bounds(net, [-1.0], [1.0]))
>>> c = np.zeros(lp.n_vars); c[out] = 1.0
>>> round(float(lp.maximize(c[None])[0]), 6)         # max |x| over the relaxation
1.0
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from dynid.bounds.core import Bounds, pad_interval
from dynid.errors import ShapeError


def affine_image(w, b, lo, hi):
    """Interval image ``[l, u]`` of ``W x + b`` over the box ``lo <= x <= hi``, padded
    outward for float64 rounding (by the magnitude of the summed terms, not of the result).

    ``b`` may be None (no offset). Works for (m, n) ``W`` and (n,) boxes, or batches of boxes
    (K, n) giving (K, m) bounds.

    Example
    -------
    >>> l, u = affine_image(np.array([[1.0, -2.0]]), None, np.zeros(2), np.ones(2))
    >>> bool(l[0] <= -2.0 and u[0] >= 1.0 and u[0] - l[0] < 3.0 + 1e-9)
    True
    """
    w = np.asarray(w, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    aw = np.abs(w)
    c = mid @ w.T
    r = rad @ aw.T
    mag = np.maximum(np.abs(lo), np.abs(hi)) @ aw.T
    if b is not None:
        b = np.asarray(b, dtype=np.float64)
        c = c + b
        mag = mag + np.abs(b)
    return pad_interval(c - r, c + r, mag)


def prefix_net(net, i: int):
    """Layers 0..i of ``net`` with the last one's units made identity: its output is z_i.

    Example
    -------
    >>> from dynid.relunet import ReLUNet
    >>> net = ReLUNet([np.eye(2), np.ones((1, 2))], [np.zeros(2), np.zeros(1)])
    >>> bool(prefix_net(net, 0).relu[-1].any())
    False
    """
    from dynid.relunet import ReLUNet

    relu = list(net.relu[:i]) + [np.zeros(net.weights[i].shape[0], bool)]
    return ReLUNet(net.weights[:i + 1], net.biases[:i + 1], relu)


def prefix_bounds(bounds: Bounds, i: int, net=None) -> Bounds:
    """The bounds of :func:`prefix_net` ``(net, i)`` (the same numbers for layers 0..i)."""
    relu = list(bounds.relu[:i]) + [np.zeros(np.size(bounds.lower[i]), bool)]
    return Bounds(list(bounds.lower[:i + 1]), list(bounds.upper[:i + 1]), bounds.input_lo,
                  bounds.input_hi, relu, bounds.method + "/prefix", {})


def unit_kinds(bounds, i: int, relu) -> dict:
    """Boolean masks of the units of layer ``i``: identity, active, inactive, unstable.

    Identity units and stable-active ReLU units both satisfy ``h = z``; inactive ones ``h = 0``.
    """
    lo, up = np.asarray(bounds.lower[i]), np.asarray(bounds.upper[i])
    relu = np.asarray(relu, dtype=bool)
    inactive = relu & (up <= 0)
    active = relu & (lo >= 0) & ~inactive
    unstable = relu & ~inactive & ~active
    return {"identity": ~relu, "active": active, "inactive": inactive, "unstable": unstable}


def check_bounds(net, bounds) -> None:
    """Raise ShapeError unless ``bounds`` has one (lower, upper) pair per layer of ``net``."""
    if len(bounds.lower) != net.n_layers or len(bounds.upper) != net.n_layers:
        raise ShapeError(f"bounds have {len(bounds.lower)} layers but the network has "
                         f"{net.n_layers}: compute them for this network")
    for i, (l, u) in enumerate(zip(bounds.lower, bounds.upper)):
        n = net.weights[i].shape[0]
        if np.shape(l) != (n,) or np.shape(u) != (n,):
            raise ShapeError(f"bounds of layer {i} have shape {np.shape(l)}, the layer has {n} "
                             "units: compute the bounds for this network")
        if np.any(np.asarray(l) > np.asarray(u)):
            raise ShapeError(f"bounds of layer {i} are empty (lower > upper): the box or the "
                             "bounds are inconsistent")


class Layers:
    """Variable indices of an encoded network: inputs ``x``, pre-activations ``z[i]``,
    post-activations ``h[i]`` (the same index as ``z[i]`` for identity and active units),
    and the unstable units of each layer with their ``(z, h)`` columns and bounds."""

    def __init__(self, x):
        self.x = np.asarray(x)
        self.z, self.h, self.unstable = [], [], []

    @property
    def out(self):
        return self.h[-1]

    def __iter__(self):   # ``x, hs = layers`` (the shape older callers unpack)
        return iter((self.x, self.h))


def add_triangle_layers(model, net, bounds, n_layers: int | None = None, x_idx=None) -> Layers:
    """Add the triangle relaxation of layers ``0..n_layers-1`` of ``net`` to ``model`` (a
    SparseModel, or anything with ``add_vars(n, lb, ub)`` and ``add_rows(cols, A, lo, hi)``).

    Rows: ``z_i - W_i h_{i-1} = b_i`` with ``l_i <= z_i <= u_i``; inactive ReLU units
    ``h = 0``; active and identity units share the z variable; each unstable unit gets
    ``0 <= h <= u``, ``h >= z`` and the chord ``h <= u (z - l) / (u - l)``.

    Returns :class:`Layers`; ``layers.unstable[i]`` is ``(units, z cols, h cols, l, u)``.
    """
    n_layers = net.n_layers if n_layers is None else int(n_layers)
    if x_idx is None:
        x_idx = model.add_vars(net.n_in, bounds.input_lo,
                               np.maximum(bounds.input_hi, bounds.input_lo))
    out = Layers(x_idx)
    prev = np.asarray(x_idx)
    for i in range(n_layers):
        w, b, relu = net.weights[i], net.biases[i], np.asarray(net.relu[i], bool)
        lo = np.minimum(bounds.lower[i], bounds.upper[i])
        hi = np.maximum(bounds.upper[i], bounds.lower[i])
        n = w.shape[0]
        z = model.add_vars(n, lo, hi)
        a = sp.hstack([sp.identity(n, format="csr"), sp.csr_matrix(-w)], format="csr")
        a.eliminate_zeros()
        model.add_rows(np.concatenate([z, prev]), a, b, b)
        h = z.copy()
        dead = relu & (hi <= 0)
        if dead.any():
            h[dead] = model.add_vars(int(dead.sum()), 0.0, 0.0)
        uns = relu & (lo < 0) & (hi > 0)
        entry = None
        if uns.any():
            k = int(uns.sum())
            l, u = lo[uns], hi[uns]
            hv = model.add_vars(k, 0.0, u)
            zv = z[uns]
            eye = sp.identity(k, format="csr")
            model.add_rows(np.concatenate([hv, zv]), sp.hstack([eye, -eye], format="csr"),
                           np.zeros(k), np.full(k, np.inf))
            s = u / (u - l)
            model.add_rows(np.concatenate([hv, zv]), sp.hstack([eye, sp.diags(-s)], format="csr"),
                           np.full(k, -np.inf), -s * l)
            h[uns] = hv
            entry = (np.flatnonzero(uns), zv, hv, l, u)
        out.z.append(z)
        out.h.append(h)
        out.unstable.append(entry)
        prev = h
    return out


def triangle_lp(net, bounds, n_layers: int | None = None, time_limit: float | None = None):
    """The triangle relaxation of ``net`` (layers ``0..n_layers-1``) as a
    :class:`~dynid.milp.lp.WarmLP`; returns ``(lp, out)`` with ``out`` the column of each
    output unit (so an objective ``c`` on the outputs is ``lp.maximize`` of ``c`` placed at
    ``out``)."""
    from dynid.milp import SparseModel
    from dynid.milp.lp import WarmLP

    if n_layers is None:
        check_bounds(net, bounds)
    m = SparseModel("triangle")
    layers = add_triangle_layers(m, net, bounds, n_layers)
    lp = WarmLP(m, time_limit=time_limit)
    lp.layers = layers
    return lp, layers.out


def objective_rows(C, cols, n_vars: int) -> sp.csr_matrix:
    """Sparse objective rows placing each row of ``C`` on the columns ``cols``."""
    C = np.atleast_2d(np.asarray(C, dtype=np.float64))
    cols = np.asarray(cols)
    r, k = np.nonzero(C)
    return sp.csr_matrix((C[r, k], (r, cols[k])), shape=(C.shape[0], n_vars))


__all__ = ["affine_image", "prefix_net", "prefix_bounds", "unit_kinds", "check_bounds",
           "Layers", "add_triangle_layers", "triangle_lp", "objective_rows"]
