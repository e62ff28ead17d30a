"""Bounding engines by name: each bounds the rows of ``C @ F(x)`` over a box, soundly.

An engine is a function ``engine(net, lo, hi, C, **opts) -> (lower, upper)`` where ``lower[j]
<= C[j] @ net(x) <= upper[j]`` for every x in [lo, hi] (valid in floating point: every value
is a solver's dual / best bound, padded outward). Registered names:

========  ==================================================================================
ibp       interval arithmetic, the output box mapped through C (cheapest, loosest)
crown     CROWN backward linear bounds, intersected with the IBP output box
lp-highs  the triangle LP relaxation by HiGHS (one LP per row and sense), float64 dual bounds
lp-splitting  the same LP by the batched operator-splitting solver; its float64 dual bound
mip       exact MIP bounds (the solver's best bound), for small networks
========  ==================================================================================

Common options: ``bounds`` (a :class:`dynid.bounds.Bounds` of the net over the box, reused
instead of recomputed) and ``intermediate`` ("crown" default, or "ibp", or any method of
``reach.intermediate``) for the LP engines. Nestings that hold by construction for the same
intermediate bounds: mip within lp-highs (the MIP's feasible set lies in the LP's) up to the
solver's gap; lp-highs within crown (CROWN's relaxation is a relaxation of the triangle);
lp-splitting is a dual bound of the same LP, so lp-highs <= lp-splitting; crown within ibp
(crown is intersected with the IBP box).

Example
-------
>>> import numpy as np
>>> from dynid.relunet import linear
>>> lo, up = bound(linear([[1.0, 1.0]]), [0, 0], [1, 1], np.eye(1), engine="ibp")
>>> bool(lo[0] <= 0.0 and up[0] >= 2.0)
True
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from dynid.errors import ConfigError, ShapeError
from dynid.relunet import ReLUNet, check_box

ENGINES: dict[str, Callable] = {}

# kept for callers of the old names: LP bounds are float64 dual bounds now, never padded optima
LP_REL_PAD = 1e-7
LP_ABS_PAD = 1e-7


def register_engine(name: str):
    """Decorator adding an engine to :data:`ENGINES` under ``name``."""

    def deco(fn):
        ENGINES[name] = fn
        return fn

    return deco


def list_engines() -> list[str]:
    """Names of the registered engines."""
    return sorted(ENGINES)


def get_engine(name: str) -> Callable:
    """The engine function for ``name`` (raises ConfigError listing the names)."""
    if name not in ENGINES:
        raise ConfigError(f"unknown reachability engine {name!r}: use one of "
                          f"{', '.join(list_engines())}")
    return ENGINES[name]


def _check(net: ReLUNet, lo, hi, C):
    lo, hi = check_box(net, lo, hi)
    C = np.atleast_2d(np.asarray(C, dtype=np.float64))
    if C.shape[1] != net.n_out:
        raise ShapeError(f"direction matrix has {C.shape[1]} columns but the network has "
                         f"{net.n_out} outputs")
    return lo, hi, C


def bound(net: ReLUNet, lo, hi, C, engine: str = "crown", **opts):
    """Sound bounds ``(lower, upper)`` of ``C @ net(x)`` over the box [lo, hi].

    Parameters
    ----------
    net : ReLUNet
    lo, hi : box corners, shape (n_in,)
    C : (m, n_out) directions
    engine : a name of :data:`ENGINES`
    **opts : engine options (``bounds``, ``intermediate``, ``solver``, ``time_limit``, ...)

    Example
    -------
    >>> import numpy as np
    >>> from dynid.relunet import ReLUNet
    >>> net = ReLUNet([[[1.0], [-1.0]], [[1.0, 1.0]]], [[0, 0], [0]])   # |x|
    >>> lo, up = bound(net, [-1.0], [1.0], np.eye(1), engine="crown")
    >>> bool(lo[0] <= 0.0 <= 1.0 <= up[0])
    True
    """
    lo, hi, C = _check(net, lo, hi, C)
    low, up = get_engine(engine)(net, lo, hi, C, **opts)
    low = np.asarray(low, dtype=np.float64).reshape(-1)
    up = np.asarray(up, dtype=np.float64).reshape(-1)
    if low.shape != (C.shape[0],) or up.shape != (C.shape[0],):
        raise RuntimeError(f"engine {engine!r} returned bounds of the wrong shape")
    return low, up


def intermediate(net: ReLUNet, lo, hi, method: str = "crown", **kw):
    """Pre-activation bounds of every layer (``dynid.bounds`` for ibp/crown, else
    ``reach.intermediate.intermediate_bounds``)."""
    from dynid import bounds as B

    if method == "ibp":
        return B.interval_bounds(net, lo, hi)
    if method == "crown":
        return B.crown_bounds(net, lo, hi, **{k: v for k, v in kw.items() if k == "device"})
    try:
        from reach.intermediate import intermediate_bounds
    except ImportError as exc:  # pragma: no cover - depends on a sibling module
        raise ConfigError(f"intermediate bounds {method!r} need reach.intermediate, which is "
                          "not available; use 'ibp' or 'crown'") from exc
    return intermediate_bounds(net, lo, hi, method=method)


def _box_through(C, out_lo, out_hi):
    from dynid.bounds.relaxation import affine_image

    return affine_image(C, None, out_lo, out_hi)


def _bounds_opt(net, lo, hi, opts):
    b = opts.get("bounds")
    if b is None:
        b = intermediate(net, lo, hi, opts.get("intermediate", "crown"),
                         device=opts.get("device", "cpu"))
    return b


@register_engine("ibp")
def ibp_engine(net, lo, hi, C, **opts):
    """Interval bounds of the output, mapped through C."""
    from dynid.bounds import interval_bounds

    b = opts.get("bounds") or interval_bounds(net, lo, hi)
    return _box_through(C, b.output_lo, b.output_hi)


@register_engine("crown")
def crown_engine(net, lo, hi, C, **opts):
    """CROWN bounds of C @ F (intersected with IBP inside ``crown_output``)."""
    from dynid.bounds import crown_output

    b = opts.get("bounds")
    return crown_output(net, lo, hi, C, bounds=b, device=opts.get("device", "cpu"))


@register_engine("lp-highs")
def lp_highs_engine(net, lo, hi, C, **opts):
    """Triangle-LP bounds by HiGHS (upper of C and of -C in one call): the float64 dual
    bounds of :class:`dynid.milp.lp.WarmLP`, exact to ~1e-9 and valid at any tolerance."""
    from reach.relaxation import triangle_lp_highs

    b = _bounds_opt(net, lo, hi, opts)
    m = C.shape[0]
    vals = np.asarray(triangle_lp_highs(net, lo, hi, b, np.vstack([C, -C]), sense="max"),
                      dtype=np.float64)
    low, up = -vals[m:], vals[:m]
    # an LP optimum never beats the box of the same intermediate bounds; intersecting keeps
    # the result inside IBP/CROWN whatever the LP solver's tolerances did
    blo, bhi = _box_through(C, b.output_lo, b.output_hi)
    return np.maximum(low, blo), np.minimum(up, bhi)


@register_engine("lp-splitting")
def lp_splitting_engine(net, lo, hi, C, **opts):
    """Dual bound of the triangle LP from the operator-splitting solver (valid at any
    iterate)."""
    from reach.splitting import SplittingSolver

    b = _bounds_opt(net, lo, hi, opts)
    m = C.shape[0]
    kw = {k: opts[k] for k in ("device", "dtype") if k in opts}
    solver = SplittingSolver(net, lo, hi, b, **kw)
    skw = {k: opts[k] for k in ("max_iter", "tol", "polish_steps", "polish_lr") if k in opts}
    res = solver.solve(np.vstack([C, -C]), sense="max", **skw)
    vals = np.asarray(res.bound, dtype=np.float64)
    low, up = -vals[m:], vals[:m]
    blo, bhi = _box_through(C, b.output_lo, b.output_hi)
    return np.maximum(low, blo), np.minimum(up, bhi)


@register_engine("mip")
def mip_engine(net, lo, hi, C, **opts):
    """Exact MIP bounds of C @ F (the solver's best bound, so valid under a time limit)."""
    from dynid.certify.optimize import output_range

    kw = {k: opts[k] for k in ("solver", "time_limit", "bounds", "obbt") if k in opts}
    low, up = output_range(net, lo, hi, C, **kw)
    return np.asarray(low, dtype=np.float64), np.asarray(up, dtype=np.float64)


__all__ = ["ENGINES", "bound", "get_engine", "list_engines", "register_engine", "intermediate"]
