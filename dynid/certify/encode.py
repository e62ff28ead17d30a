"""Mixed-integer encodings of a ReLUNet into a solver-neutral :class:`~dynid.milp.SparseModel`.

Two encodings of the ReLU ``h = max(z, 0)`` with pre-activation bounds ``l <= z <= u``:

- ``"bigm"`` (ours): units proven stable by the bounds get no binary (active: ``h = z``,
  inactive: ``h = 0``); unstable units get the big-M rows ``h >= z``, ``h >= 0``,
  ``h <= z - l (1 - t)``, ``h <= u t``. Identity units are plain continuous variables.
- ``"naive"``: the baseline of the paper's code: a binary for *every* ReLU unit, with M taken
  from whatever bounds are passed (the caller passes interval-arithmetic bounds).

Each call encodes one copy of the network; two copies (as in the invertibility queries) share
nothing but the coupling rows the caller adds.

Example
-------
>>> import numpy as np
>>> from dynid.relunet import ReLUNet
>>> from dynid.milp import SparseModel, solve
>>> from dynid.bounds import interval_bounds
>>> net = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[-1.0, -1.0]])],
...               [np.zeros(2), np.zeros(1)])
>>> m = SparseModel()
>>> enc = encode_relunet(m, net, interval_bounds(net, [-1.0], [1.0]))
>>> m.set_objective(enc.out, [1.0], sense="min")
>>> round(solve(m).objective, 6)      # min of -|x| on [-1, 1]
-1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from dynid.errors import ConfigError, ShapeError
from dynid.milp.solve import SOLVERS
from dynid.milp.tolerances import tight_options
from dynid.relunet import ReLUNet

METHODS = ("bigm", "naive")


@dataclass
class Encoding:
    """Variable indices of one encoded copy of a network.

    ``x``: inputs; ``z[i]``: pre-activations of layer i; ``h[i]``: post-activations of layer i
    (the same index as ``z[i]`` for identity and stably-active units); ``out`` = ``h[-1]``;
    ``binaries``: the indices of the ReLU indicator variables (``t[i]`` per layer, -1 where a
    unit has none).
    """

    x: np.ndarray
    z: list
    h: list
    out: np.ndarray
    binaries: np.ndarray
    t: list = field(default_factory=list)

    @property
    def n_binaries(self) -> int:
        return int(self.binaries.size)


def encode_relunet(model, net: ReLUNet, bounds, x_idx=None, *, method: str = "bigm") -> Encoding:
    """Add the variables and rows of ``net`` over the box of ``bounds`` to ``model``.

    Parameters
    ----------
    model : dynid.milp.SparseModel
    net : the network.
    bounds : :class:`dynid.bounds.Bounds` valid on the input box (``input_lo``/``input_hi``).
    x_idx : existing input variable indices (length ``net.n_in``), or None to create them with
        the box of ``bounds`` as variable bounds.
    method : ``"bigm"`` (stable units linear) or ``"naive"`` (a binary per ReLU unit).

    Returns
    -------
    Encoding with the variable indices.
    """
    if method not in METHODS:
        raise ConfigError(f"encoding method {method!r} is unknown: use one of {METHODS}")
    if bounds.n_layers != net.n_layers:
        raise ShapeError(f"bounds have {bounds.n_layers} layers but the network has "
                         f"{net.n_layers}: compute them for this network")
    if x_idx is None:
        x_idx = model.add_vars(net.n_in, bounds.input_lo, bounds.input_hi, "C")
    x_idx = np.asarray(x_idx, dtype=np.int64)
    if x_idx.shape != (net.n_in,):
        raise ShapeError(f"x_idx needs {net.n_in} indices, got {x_idx.size}")
    prev = x_idx
    zs, hs, ts, bins = [], [], [], []
    for i, (w, b, relu) in enumerate(zip(net.weights, net.biases, net.relu)):
        lo = np.minimum(bounds.lower[i], bounds.upper[i])
        hi = np.maximum(bounds.lower[i], bounds.upper[i])
        n = w.shape[0]
        z = model.add_vars(n, lo, hi, "C")
        # z - W h_prev = b
        a = sp.hstack([sp.identity(n, format="csr"), sp.csr_matrix(-w)], format="csr")
        a.eliminate_zeros()
        model.add_rows(np.concatenate([z, prev]), a, b, b)
        h = z.copy()
        t = np.full(n, -1, dtype=np.int64)
        if method == "naive":
            need = relu.copy()
        else:
            need = relu & (lo < 0) & (hi > 0)
            dead = relu & (hi <= 0)
            if dead.any():
                h[dead] = model.add_vars(int(dead.sum()), 0.0, 0.0, "C")
        if need.any():
            k = int(need.sum())
            l, u = lo[need], hi[need]
            hv = model.add_vars(k, 0.0, np.maximum(u, 0.0), "C")
            tv = model.add_vars(k, 0.0, 1.0, "B")
            zv = z[need]
            _add_relu_rows(model, zv, hv, tv, l, u)
            h[need] = hv
            t[need] = tv
            bins.append(tv)
        zs.append(z)
        hs.append(h)
        ts.append(t)
        prev = h
    binaries = np.concatenate(bins) if bins else np.zeros(0, dtype=np.int64)
    return Encoding(x=x_idx, z=zs, h=hs, out=hs[-1], binaries=binaries, t=ts)


def _add_relu_rows(model, z, h, t, l, u) -> None:
    """Big-M rows of h = relu(z) for vectors of units; l may be >= 0 or u <= 0 (naive)."""
    k = z.size
    eye = sp.identity(k, format="csr")
    # h - z >= 0
    model.add_rows(np.concatenate([h, z]), sp.hstack([eye, -eye], format="csr"),
                   np.zeros(k), np.full(k, np.inf))
    # h - z - l t <= -l   (h <= z - l (1 - t)); with l >= 0 use M = 0 side: h <= z when t = 1
    lneg = np.minimum(l, 0.0)
    model.add_rows(np.concatenate([h, z, t]),
                   sp.hstack([eye, -eye, sp.diags(-lneg)], format="csr"),
                   np.full(k, -np.inf), -lneg)
    # h - u t <= 0
    upos = np.maximum(u, 0.0)
    model.add_rows(np.concatenate([h, t]), sp.hstack([eye, sp.diags(-upos)], format="csr"),
                   np.full(k, -np.inf), np.zeros(k))


def encoding_sensitivity(net: ReLUNet, bounds, c, *, method: str = "bigm") -> float:
    """``sum_i |y_i| (1 + scale_i)`` over the rows of one :func:`encode_relunet` copy, for
    the objective ``c @ out``: the ``sensitivity`` that :func:`dynid.milp.bound_pad` needs.

    A row of unit k (its definition ``z_k = W_k h + b_k`` and, when it has a binary, its three
    big-M rows) shifted by ``r`` moves ``h_k`` by at most ``|r|`` (relu is 1-Lipschitz), hence
    the objective by at most ``S_k |r|`` with the path sensitivity ``S = |c| |W_L| ... |W_{i+1}|``;
    so ``S_k`` bounds the multiplier of each of those rows. Input bounds weigh ``S_in``.

    Example
    -------
    >>> from dynid.relunet import linear
    >>> from dynid.bounds import interval_bounds
    >>> net = linear([[2.0, 0.0]])
    >>> encoding_sensitivity(net, interval_bounds(net, [0, 0], [1, 1]), [1.0]) > 3.0
    True
    """
    v = np.abs(np.asarray(c, dtype=np.float64).reshape(-1))
    total = 0.0
    for i in range(net.n_layers - 1, -1, -1):
        w, b, relu = net.weights[i], net.biases[i], net.relu[i]
        lo, hi = np.asarray(bounds.lower[i]), np.asarray(bounds.upper[i])
        if i == 0:
            plo, phi = np.asarray(bounds.input_lo), np.asarray(bounds.input_hi)
        else:
            plo, phi = bounds.post_bounds(i - 1)
        big = np.maximum(np.abs(lo), np.abs(hi))
        scale_z = np.abs(w) @ np.maximum(np.abs(plo), np.abs(phi)) + np.abs(b) + big
        rows = 1.0 + scale_z
        binary = relu if method == "naive" else relu & (lo < 0) & (hi > 0)
        rows = rows + np.where(binary, 3.0 + 5.0 * big, 0.0) + np.where(relu, 1.0 + big, 0.0)
        total += float(v @ rows)
        v = np.abs(w).T @ v
    x_mag = np.maximum(np.abs(bounds.input_lo), np.abs(bounds.input_hi))
    return total + float(v @ (1.0 + x_mag))


def objective_scale(net: ReLUNet, c) -> float:
    """The largest path sensitivity ``|c| |W_L| ... |W_{i+1}|`` of the objective ``c @ out``
    to any unit (a power of two, 1 when there is none). Dividing the objective by it gives the
    rows' multipliers size about 1, so the solver's absolute optimality tolerance stays
    relative to them (it matters for outputs at the 1e-6 .. 1e-8 scale).

    Example
    -------
    >>> from dynid.relunet import linear
    >>> objective_scale(linear([[1e-8, 0.0]]), [1.0])
    1.0
    """
    v = np.abs(np.asarray(c, dtype=np.float64).reshape(-1))
    top = 0.0
    for i in range(net.n_layers - 1, 0, -1):
        v = np.abs(net.weights[i]).T @ v
        top = max(top, float(v.max()) if v.size else 0.0)
    if not (top > 0 and np.isfinite(top)):
        return 1.0
    # never above 1: the optimality-tolerance term of the pad (tolerance x the variables'
    # widths, dynid.milp.tolerances.bound_pad) does not shrink with the objective, so scaling
    # a large objective down would multiply that term by the scale when it is scaled back
    return float(min(1.0, 2.0 ** np.round(np.log2(top))))


def fixed_input_check(net: ReLUNet, x, *, method: str = "bigm", solver: str = "auto"):
    """Encode ``net`` on the degenerate box {x} and return the solver's output values.

    A self-test of the encoding (used by the tests): the result must equal ``net.forward(x)``.
    """
    from dynid.bounds import interval_bounds
    from dynid.milp import SparseModel, solve

    x = np.asarray(x, dtype=np.float64).reshape(-1)
    m = SparseModel()
    enc = encode_relunet(m, net, interval_bounds(net, x, x), method=method)
    m.set_objective(enc.out, np.zeros(enc.out.size), sense="min")
    res = solve(m, solver=solver)
    return np.asarray(res.x)[enc.out]


# Tight feasibility tolerances per backend: with exact output equality, a default integrality
# tolerance (1e-5) times a big-M of tens lets a ReLU be off by ~1e-4, enough to fake a pair of
# points 1e-4 apart with "equal" outputs. The float64 re-check catches such pairs; tighter
# tolerances keep the solver from returning them in the first place. (Kept for callers of the
# old name: the table now lives in dynid.milp.tolerances.)
TIGHT_OPTIONS = {name: tight_options(name) for name in SOLVERS}


def solve_tight(model, solver: str = "auto", **kw):
    """:func:`dynid.milp.solve` with tight tolerances for whichever backend answers
    (``solve(..., tolerances="tight")``)."""
    from dynid.milp import solve

    return solve(model, solver, tolerances="tight", **kw)
