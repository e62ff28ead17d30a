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


# Defaults per engine, merged under the caller's ``engine_opts`` (:func:`engine_options`).
# lp-splitting: the splitting+polish pipeline of docs/splitting.md -- intermediate bounds by
# the polished layer dual alone (no ADMM: they need no primal point), the output LPs by ADMM
# and polishing; it certifies gaps of ~1e-3 (README, splitting_bench). 300 ADMM iterations:
# the bound comes from the polished dual, ADMM only adds a primal point (the gap estimate),
# which reach does not report; pass max_iter=3000 for the README's certified-gap run.
ENGINE_DEFAULTS = {
    "lp-splitting": {"intermediate": "splitting",
                     "intermediate_opts": {"max_iter": 0, "polish_steps": 500},
                     "max_iter": 300, "polish_steps": 500},
}


def engine_options(engine: str, opts: dict | None = None) -> dict:
    """The options an engine runs with: :data:`ENGINE_DEFAULTS` overridden by ``opts``
    (``intermediate_opts`` merged key by key).

    Example
    -------
    >>> engine_options("lp-splitting", {"polish_steps": 50})["polish_steps"]
    50
    >>> engine_options("lp-splitting")["intermediate"]
    'splitting'
    """
    base = ENGINE_DEFAULTS.get(engine, {})
    out = {**base, **(opts or {})}
    if "intermediate_opts" in base or (opts and "intermediate_opts" in opts):
        out["intermediate_opts"] = {**base.get("intermediate_opts", {}),
                                    **((opts or {}).get("intermediate_opts") or {})}
    return out


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


# numeric engine options and their rule (dynid.options): checked before any work
_NUMERIC = {"max_iter": ("nonneg", int), "polish_steps": ("nonneg", int), "tol": ("positive", float),
            "polish_lr": ("positive", float), "time_limit": ("positive", float)}


def check_engine_options(engine: str, opts: dict) -> None:
    """Raise ConfigError for an engine option of the wrong type or range."""
    from dynid.options import check_number

    get_engine(engine)
    for key, (rule, kind) in _NUMERIC.items():
        if opts.get(key) is not None:
            check_number(opts[key], f"engine option {key}", rule=rule, kind=kind)
    inter = opts.get("intermediate_opts") or {}
    if not isinstance(inter, dict):
        raise ConfigError("engine option intermediate_opts must be a dict of options")
    for key, (rule, kind) in _NUMERIC.items():
        if inter.get(key) is not None:
            check_number(inter[key], f"intermediate option {key}", rule=rule, kind=kind)


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
    check_engine_options(engine, opts)
    low, up = get_engine(engine)(net, lo, hi, C, **opts)
    low = np.asarray(low, dtype=np.float64).reshape(-1)
    up = np.asarray(up, dtype=np.float64).reshape(-1)
    if low.shape != (C.shape[0],) or up.shape != (C.shape[0],):
        raise RuntimeError(f"engine {engine!r} returned bounds of the wrong shape")
    return low, up


def intermediate(net: ReLUNet, lo, hi, method: str = "crown", **kw):
    """Pre-activation bounds of every layer (``dynid.bounds`` for ibp/crown, else
    ``reach.intermediate.intermediate_bounds`` with the options ``kw``: ``device``, and for
    splitting ``max_iter``, ``polish_steps``, ``tol``, ...)."""
    from dynid import bounds as B

    if method == "ibp":
        return B.interval_bounds(net, lo, hi)
    if method == "crown":
        return B.crown_bounds(net, lo, hi, **{k: v for k, v in kw.items() if k == "device"})
    from reach.intermediate import intermediate_bounds

    return intermediate_bounds(net, lo, hi, method=method, **kw)


def intermediate_for(net: ReLUNet, lo, hi, opts: dict):
    """Intermediate bounds as an engine's options ask (``intermediate``,
    ``intermediate_opts``, ``device``)."""
    method = opts.get("intermediate", "crown")
    kw = dict(opts.get("intermediate_opts") or {}) if method not in ("ibp", "crown") else {}
    if "device" in opts:
        kw["device"] = opts["device"]
    return intermediate(net, lo, hi, method, **kw)


def _box_through(C, out_lo, out_hi):
    from dynid.bounds.relaxation import affine_image

    return affine_image(C, None, out_lo, out_hi)


def _bounds_opt(net, lo, hi, opts):
    b = opts.get("bounds")
    if b is None:
        b = intermediate_for(net, lo, hi, opts)
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

    opts = engine_options("lp-splitting", opts)
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


__all__ = ["ENGINES", "ENGINE_DEFAULTS", "bound", "get_engine", "list_engines", "register_engine",
           "intermediate", "intermediate_for", "engine_options", "check_engine_options"]
