"""Convex potential layer (CPL) stacks: surrogates that are invertible by construction.

One block is ``z = x - h W^T relu(W x + b)`` with ``h = c / ||W||_2^2`` and ``0 < c < 1``: the
gradient of the ``(1 - c)``-strongly convex, 1-smooth potential
``|x|^2 / 2 - (h / 2) |relu(W x + b)|^2``, hence a bijection of R^n with Lip <= 1 and
Lip(inverse) <= 1 / (1 - c) (docs/cpl.md has the argument and what such stacks can and cannot
represent). A surrogate is

    F(x) = m + s * (G S((x - m) / s) + beta),      S = block_K o ... o block_1,

with the state statistics m, s (normalisation), an optional linear part G (none, a learnt
scalar gain, a learnt matrix, or a known matrix) and a learnt offset beta.

- :class:`CPLSurrogate`: the torch module. In training ``||W||_2`` comes from one warm-started
  power-iteration step per forward pass; in eval mode from the exact norm.
- :func:`cpl_net`: the exported :class:`~dynid.relunet.ReLUNet` from numpy arrays. Each block
  is two layers (``[x; W x + b]`` with identity and ReLU units, then ``x - h W^T r``), between
  an input layer (normalisation) and an output layer (linear part and de-normalisation); the
  step is recomputed from the exact spectral norm (SVD) and the block structure is recorded in
  ``meta["architecture"]`` so that :func:`dynid.certify.invertible_analytic` can re-derive the
  certificate from the weights alone.
- :func:`cpl_structure`: reads and checks that structure back from a ReLUNet.
- :func:`inverse`: ``F^{-1}(y)`` by fixed-point iteration, vectorised, with its a-priori error
  bound.

Example
-------
>>> import numpy as np
>>> net = cpl_net([np.array([[1.0, 0.5], [0.0, 2.0]])], [np.array([0.1, -0.3])], c=0.9)
>>> x = np.array([[0.3, -1.2], [2.0, 0.5]])
>>> res = inverse(net, net.forward(x))
>>> bool(np.abs(res.x - x).max() < 1e-9), bool(res.error_bound.max() <= 1e-12)
(True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from dynid.errors import ConfigError, DynidError, ShapeError
from dynid.relunet import ReLUNet

DEFAULT_C = 0.9
GAINS = ("none", "scalar", "matrix")
KIND = "cpl"
_EPS = float(np.finfo(np.float64).eps)
_UNIT = _EPS / 2          # unit roundoff of float64


class CPLStructureError(DynidError):
    """A network that is not a CPL stack as written by :func:`cpl_net` (or whose stored steps
    are larger than the exact spectral norms allow)."""


# ---------------------------------------------------------------------- spectral norms


def norm_pad(shape) -> float:
    """Relative padding of an SVD spectral norm: LAPACK's singular values are within a small
    multiple of ``max(shape) * eps * ||W||`` of the exact ones; this is 32 times that."""
    return 32.0 * max(1, *shape) * _EPS


def spectral_norm(w) -> float:
    """Largest singular value of ``w`` by SVD (float64)."""
    w = np.asarray(w, dtype=np.float64)
    return float(np.linalg.svd(w, compute_uv=False)[0]) if w.size else 0.0


def spectral_norm_upper(w) -> float:
    """An upper bound on ``||w||_2``: the SVD value padded by :func:`norm_pad`."""
    w = np.asarray(w, dtype=np.float64)
    return spectral_norm(w) * (1.0 + norm_pad(w.shape))


def export_step(w, c: float) -> float:
    """The exported step ``h = c / ||W||^2`` with the SVD norm padded twice as much as the
    certificate pads it, so that the certificate's check ``h <= c / upper(||W||)^2`` holds on
    any LAPACK. A zero matrix gets ``h = c`` (the block is the identity then)."""
    w = np.asarray(w, dtype=np.float64)
    s = spectral_norm(w) * (1.0 + 2.0 * norm_pad(w.shape))
    return float(c) / s ** 2 if s > 0 else float(c)


# ---------------------------------------------------------------------- the exported network


def _check_c(c, k: int, upper: float = 1.0) -> list[float]:
    cs = [float(c)] * k if np.ndim(c) == 0 else [float(v) for v in c]
    if len(cs) != k:
        raise ConfigError(f"need one c per CPL block: {k} blocks, {len(cs)} values of c")
    for v in cs:
        if not (0.0 < v < upper or (upper > 1.0 and v == upper)):
            rng = "0 < c < 1" if upper <= 1.0 else f"0 < c <= {upper:g}"
            raise ConfigError(f"CPL block parameter c must satisfy {rng} (c < 1 makes the block "
                              f"invertible), got {v}")
    return cs


def _affine(a, c, n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    if a is None:
        return np.eye(n), np.zeros(n)
    a = np.asarray(a, dtype=np.float64)
    c = np.zeros(n) if c is None else np.asarray(c, dtype=np.float64).reshape(-1)
    if a.shape != (n, n) or c.shape != (n,):
        raise ShapeError(f"{what} must be an {n} x {n} matrix and {n} offsets, got {a.shape} "
                         f"and {c.shape}")
    return a, c


def cpl_net(weights: Sequence, biases: Sequence, c=DEFAULT_C, *, pre=None, post=None,
            steps=None, step_fractions=None, meta: dict | None = None,
            extra: dict | None = None) -> ReLUNet:
    """The ReLUNet ``x -> Q S(P x + p) + q`` of a CPL stack ``S`` (blocks ``W_k``, ``b_k``).

    Parameters
    ----------
    weights, biases : per block ``W_k`` of shape (m_k, n) and ``b_k`` of shape (m_k,).
    c : per block (or one for all) ``0 < c <= 2``; ``c < 1`` is invertible. (``c`` in [1, 2]
        is the 1-Lipschitz layer of Meunier et al., not invertible in general: the analytic
        certificate refuses it.)
    pre, post : ``(P, p)`` and ``(Q, q)``, the input and output affine maps (default identity).
    steps : the stored steps ``h_k``; default (always, for real models)
        ``tau_k c_k / ||W_k||^2`` from the exact SVD norm (:func:`export_step`). Pass other
        steps only to reproduce a file whose norm was underestimated (the certificate refuses
        it).
    step_fractions : ``tau_k`` in (0, 1] (default 1): a block may use a fraction of its
        largest step (a learnt one, see :class:`CPLSurrogate`); ``c_k`` stays the bound.
    meta : metadata of the network; ``architecture`` is set here.
    extra : more entries for ``meta["architecture"]`` (e.g. the gain kind).

    Layers: 0 = the input map (identity units), then per block ``2k + 1`` = ``[x; W x + b]``
    (n identity units, m_k ReLU units) and ``2k + 2`` = ``x - h W^T r`` (n identity units),
    last = the output map (identity units).

    Example
    -------
    >>> net = cpl_net([np.array([[1.0]])], [np.zeros(1)], c=2.0, steps=[2.0])   # z = -|x|
    >>> net.forward(np.array([[-1.0], [1.0]])).ravel().tolist()
    [-1.0, -1.0]
    """
    if len(weights) == 0 or len(weights) != len(biases):
        raise ShapeError(f"a CPL stack needs one or more blocks with one bias each, got "
                         f"{len(weights)} weights and {len(biases)} biases")
    ws = [np.atleast_2d(np.asarray(w, dtype=np.float64)) for w in weights]
    bs = [np.asarray(b, dtype=np.float64).reshape(-1) for b in biases]
    n = ws[0].shape[1]
    for k, (w, b) in enumerate(zip(ws, bs)):
        if w.shape[1] != n or b.shape != (w.shape[0],):
            raise ShapeError(f"CPL block {k}: weight {w.shape} and bias {b.shape} do not fit "
                             f"{n} states")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise ShapeError(f"CPL block {k} has NaN or inf weights")
    cs = _check_c(c, len(ws), upper=2.0)
    taus = [1.0] * len(ws) if step_fractions is None else [float(t) for t in step_fractions]
    if len(taus) != len(ws) or not all(0.0 < t <= 1.0 for t in taus):
        raise ConfigError(f"step_fractions must be {len(ws)} numbers in (0, 1], got "
                          f"{step_fractions!r}")
    if steps is None:
        hs = [t * export_step(w, ck) for w, ck, t in zip(ws, cs, taus)]
    else:
        hs = [float(h) for h in steps]
        if len(hs) != len(ws) or not all(math.isfinite(h) and h > 0 for h in hs):
            raise ConfigError(f"steps must be {len(ws)} positive numbers, got {steps!r}")
    pa, pb = _affine(*(pre or (None, None)), n, "the input map")
    qa, qb = _affine(*(post or (None, None)), n, "the output map")
    eye, none = np.eye(n), np.zeros(n, bool)
    lw, lb, lm = [pa], [pb], [none]
    blocks = []
    for k, (w, b, h, ck, t) in enumerate(zip(ws, bs, hs, cs, taus)):
        m = w.shape[0]
        lw += [np.vstack([eye, w]), np.hstack([eye, -h * w.T])]
        lb += [np.concatenate([np.zeros(n), b]), np.zeros(n)]
        lm += [np.concatenate([none, np.ones(m, bool)]), none]
        blocks.append({"hidden": m, "c": ck, "h": h, "step_fraction": t,
                       "layers": [2 * k + 1, 2 * k + 2]})
    lw.append(qa)
    lb.append(qb)
    lm.append(none)
    arch = {**(extra or {}), "kind": KIND, "n_state": n, "hidden": [bl["hidden"] for bl in blocks],
            "c": cs, "blocks": blocks, "input_layer": 0, "output_layer": 2 * len(ws) + 1,
            "step_rule": "h = c / ||W||_2^2, exact (SVD) norm" if steps is None
            else "steps given by the caller"}
    return ReLUNet(lw, lb, lm, {**(meta or {}), "architecture": arch})


@dataclass(frozen=True)
class CPLBlock:
    """One block read back from a ReLUNet: ``x -> x + R relu(W x + b)`` with ``R = -h W^T``
    (bit for bit, as :func:`cpl_net` stores it)."""

    W: np.ndarray
    b: np.ndarray
    R: np.ndarray
    h: float
    c: float
    layers: tuple[int, int]


@dataclass(frozen=True)
class CPLStack:
    """The structure of an exported CPL surrogate: ``x -> Q S(P x + p) + q``."""

    n: int
    pre: tuple[np.ndarray, np.ndarray]
    blocks: tuple[CPLBlock, ...]
    post: tuple[np.ndarray, np.ndarray]
    architecture: dict


def is_cpl(net: ReLUNet) -> bool:
    """True when the network's metadata declares a CPL stack (its structure is checked by
    :func:`cpl_structure`)."""
    arch = net.meta.get("architecture")
    return isinstance(arch, dict) and arch.get("kind") == KIND


def _fail(msg: str):
    raise CPLStructureError(f"not a CPL stack: {msg}; the analytic certificate needs a model "
                            "exported by dynid.cpl (train with arch='cpl'); use the MIP "
                            "(dynid.certify.invertible_on) for other networks")


def cpl_structure(net: ReLUNet) -> CPLStack:
    """Read the blocks of a CPL surrogate back from its layers and check every structural fact
    the certificate relies on: identity parts exactly the identity, zero biases where there
    are none, the ReLU masks, and the second layer of each block exactly ``-h W^T`` for the
    stored step ``h``. Raises :class:`CPLStructureError` otherwise.

    Example
    -------
    >>> s = cpl_structure(cpl_net([np.ones((3, 2))], [np.zeros(3)]))
    >>> len(s.blocks), s.blocks[0].W.shape
    (1, (3, 2))
    """
    if not isinstance(net, ReLUNet):
        raise CPLStructureError(f"expected a ReLUNet, got {type(net).__name__}")
    arch = net.meta.get("architecture")
    if not is_cpl(net):
        kind = arch.get("kind") if isinstance(arch, dict) else None
        _fail(f"the model's architecture is {kind!r}, not 'cpl'")
    try:
        n = int(arch["n_state"])
        blocks_meta = list(arch["blocks"])
        specs = [(int(bm["hidden"]), float(bm["c"]), float(bm["h"]),
                  tuple(int(i) for i in bm["layers"])) for bm in blocks_meta]
    except (KeyError, TypeError, ValueError):
        _fail("meta['architecture'] lacks n_state / blocks (hidden, c, h, layers)")
    k = len(specs)
    if k == 0 or net.n_layers != 2 * k + 2:
        _fail(f"{k} blocks need {2 * k + 2} layers, the network has {net.n_layers}")
    if net.n_in != n or net.n_out != n:
        _fail(f"the network maps {net.n_in} -> {net.n_out} values, the blocks act on {n}")
    eye = np.eye(n)
    for i in (0, net.n_layers - 1):
        if net.weights[i].shape != (n, n) or net.relu[i].any():
            _fail(f"layer {i} must be an affine map on {n} identity units")
    blocks = []
    for j, (m, c, h, layers) in enumerate(specs):
        la, lb_ = 2 * j + 1, 2 * j + 2
        if layers != (la, lb_):
            _fail(f"block {j} is recorded at layers {list(layers)}, expected [{la}, {lb_}]")
        if not (math.isfinite(h) and h > 0 and math.isfinite(c) and c > 0):
            _fail(f"block {j} has step h={h} and c={c}; both must be positive")
        wa, ba, ma = net.weights[la], net.biases[la], net.relu[la]
        wb, bb, mb = net.weights[lb_], net.biases[lb_], net.relu[lb_]
        if wa.shape != (n + m, n) or wb.shape != (n, n + m):
            _fail(f"block {j}: layer shapes {wa.shape}, {wb.shape} do not fit {n} states and "
                  f"{m} hidden units")
        if ma[:n].any() or not ma[n:].all() or mb.any():
            _fail(f"block {j}: ReLU masks are not [identity x {n}, ReLU x {m}] and "
                  f"[identity x {n}]")
        if not (np.array_equal(wa[:n], eye) and np.array_equal(wb[:, :n], eye)
                and not ba[:n].any() and not bb.any()):
            _fail(f"block {j}: the skip connection is not exactly the identity")
        w, b, r = wa[n:], ba[n:], wb[:, n:]
        if not np.array_equal(r, -h * w.T):
            dev = float(np.max(np.abs(r + h * w.T)))
            _fail(f"block {j}: layer {lb_} is not -h W^T for the stored h={h:.17g} (max "
                  f"deviation {dev:.3g}); was the file pruned or edited?")
        blocks.append(CPLBlock(w, b, r, h, c, (la, lb_)))
    last = net.n_layers - 1
    return CPLStack(n, (net.weights[0], net.biases[0]), tuple(blocks),
                    (net.weights[last], net.biases[last]), dict(arch))


# ---------------------------------------------------------------------- certified constants


def block_constants(block: CPLBlock) -> dict:
    """The numbers that prove one block, from its stored weights.

    ``norm_upper`` bounds ``||W||_2`` (SVD, padded); ``c_effective = h norm_upper^2`` must not
    exceed the recorded ``c`` (else the norm used at export was underestimated: refused).
    ``rounding`` = u h ||W||_F ||W||_2 bounds what the float64 rounding of the stored
    ``R = fl(-h W^T)`` can add to the constants. Then (2-norm) the block is a bijection of R^n
    with ``Lip <= 1 + rounding`` and ``Lip(inverse) <= 1 / (1 - contraction)``, where
    ``contraction = c_effective + rounding < 1`` is also the Lipschitz constant of
    ``x -> -R relu(W x + b)``, the map whose fixed point is the inverse.
    """
    sig = spectral_norm_upper(block.W)
    c_eff = round_up(block.h * sig ** 2, 2)
    if c_eff > block.c:
        raise CPLStructureError(
            f"CPL block at layers {list(block.layers)}: stored step h={block.h:.6g} exceeds "
            f"c/||W||^2 = {block.c / sig ** 2:.6g} (c={block.c}, ||W||_2={sig:.6g} by SVD): the "
            "norm used at export was underestimated (a power-iteration estimate?), so the "
            "recorded c does not hold; re-export the model with dynid.cpl (exact SVD norm)")
    w_fro = float(np.linalg.norm(block.W)) * (1.0 + norm_pad(block.W.shape))
    rounding = round_up(_UNIT * block.h * w_fro * sig, 3)
    contraction = round_up(c_eff + rounding, 1)
    if not contraction < 1.0:
        raise CPLStructureError(
            f"CPL block at layers {list(block.layers)}: h ||W||^2 = {c_eff:.6g} is not below "
            "1, so the block need not be invertible (c must be < 1 for the certificate)")
    return {"layers": list(block.layers), "hidden": int(block.W.shape[0]), "c": block.c,
            "h": block.h, "norm_svd": spectral_norm(block.W), "norm_upper": sig,
            "c_effective": c_eff, "rounding": rounding, "contraction": contraction,
            "lipschitz": round_up(1.0 + rounding, 1),
            "inverse_lipschitz": round_up(1.0 / round_down(1.0 - contraction, 1), 1)}


def round_up(x: float, ops: int) -> float:
    """``x`` (>= 0, the float64 result of ``ops`` roundings) moved up past their error."""
    return float(x) * (1.0 + 2.0 * (ops + 1) * _EPS)


def round_down(x: float, ops: int) -> float:
    """``x`` (>= 0, the float64 result of ``ops`` roundings) moved down past their error."""
    return float(x) * (1.0 - 2.0 * (ops + 1) * _EPS)


def affine_constants(a: np.ndarray) -> dict:
    """Largest and smallest singular values of a square matrix, padded outward."""
    s = np.linalg.svd(np.asarray(a, dtype=np.float64), compute_uv=False)
    pad = norm_pad(a.shape) * float(s[0])
    return {"sigma_max": round_up(float(s[0]) + pad, 1),
            "sigma_min": max(0.0, round_down(float(s[-1]) - pad, 1))}


# ---------------------------------------------------------------------- inverse


@dataclass(frozen=True)
class InverseResult:
    """``x`` with ``F(x) = y``; ``error_bound`` bounds ``||x - F^{-1}(y)||_2`` per point for the
    iteration in exact arithmetic (float64 rounding adds about ``1e-16 ||x||`` per block,
    amplified by the inverse-Lipschitz constants); ``iterations`` per block (last block
    first, the order they are inverted in)."""

    x: np.ndarray
    error_bound: np.ndarray
    iterations: tuple[int, ...]


def inverse(net: ReLUNet, y, *, tol: float = 1e-12, max_iter: int = 100000) -> InverseResult:
    """``F^{-1}(y)`` of a CPL surrogate, vectorised over the leading dimensions of ``y``.

    The output map is inverted by a linear solve; each block ``z = x - h W^T relu(W x + b)`` by
    the fixed-point iteration ``x <- z + h W^T relu(W x + b)``, a contraction with constant
    ``q = c_effective < 1`` (:func:`block_constants`), started at ``x_0 = z``. By Banach's
    theorem ``||x_k - x*|| <= q^k ||x_1 - x_0|| / (1 - q)`` (a priori); the iteration count is
    chosen from that bound so that the total error, carried through the later blocks'
    inverse-Lipschitz constants and the input map, is at most ``tol`` (unless ``max_iter``
    stops it first: then ``error_bound`` says how far it got).

    Example
    -------
    >>> net = cpl_net([np.array([[2.0]])], [np.array([0.5])], c=0.5)
    >>> r = inverse(net, net.forward(np.array([[0.7]])))
    >>> round(float(r.x[0, 0]), 10), r.iterations[0] > 1
    (0.7, True)
    """
    stack = cpl_structure(net)
    tol = float(tol)
    if not (tol > 0 and math.isfinite(tol)) or int(max_iter) < 1:
        raise ConfigError(f"tol must be a positive number and max_iter >= 1, got {tol}, "
                          f"{max_iter}")
    y = np.asarray(y, dtype=np.float64)
    if y.shape[-1:] != (stack.n,):
        raise ShapeError(f"y has trailing dimension {y.shape[-1:] or ()}, the map has "
                         f"{stack.n} outputs")
    if not np.all(np.isfinite(y)):
        raise ShapeError("y contains NaN or inf")
    shape = y.shape
    y = y.reshape(-1, stack.n)
    consts = [block_constants(b) for b in stack.blocks]
    pre, post = affine_constants(stack.pre[0]), affine_constants(stack.post[0])
    if pre["sigma_min"] <= 0 or post["sigma_min"] <= 0:
        raise CPLStructureError("the input or output linear map of this CPL stack is "
                                "(numerically) singular: the surrogate has no inverse")
    # tolerance of each block's own iteration: the errors add up through the inverse-Lipschitz
    # constants of the blocks inverted after it and the input map
    k_blocks = len(stack.blocks)
    amp = [1.0 / pre["sigma_min"]] * k_blocks
    for j in range(1, k_blocks):
        amp[j] = amp[j - 1] * consts[j - 1]["inverse_lipschitz"]
    z = np.linalg.solve(stack.post[0], (y - stack.post[1]).T).T
    err = np.zeros(y.shape[0])
    iters = []
    for j in reversed(range(k_blocks)):
        blk, q = stack.blocks[j], consts[j]["contraction"]
        target = tol / (k_blocks * amp[j])

        def step(x):
            return z - np.maximum(x @ blk.W.T + blk.b, 0.0) @ blk.R.T

        x0 = z
        x1 = step(x0)
        d1 = np.linalg.norm(x1 - x0, axis=1)
        worst = float(d1.max()) if d1.size else 0.0
        if worst * q / (1 - q) <= target or q == 0.0:
            k_need = 1
        else:
            k_need = int(math.ceil(math.log(target * (1 - q) / worst) / math.log(q)))
        k_run = max(1, min(k_need, int(max_iter)))
        x = x1
        for _ in range(k_run - 1):
            x = step(x)
        e = q ** k_run * d1 / (1 - q)
        err = err * consts[j]["inverse_lipschitz"] + e
        iters.append(k_run)
        z = x
    x = np.linalg.solve(stack.pre[0], (z - stack.pre[1]).T).T
    err = err / pre["sigma_min"]
    return InverseResult(x.reshape(shape), err.reshape(shape[:-1]), tuple(iters))


# ---------------------------------------------------------------------- the torch module


class CPLSurrogate(nn.Module):
    """CPL-stack surrogate ``F(x) = m + s (G S((x - m) / s) + beta)`` (see the module doc).

    Parameters
    ----------
    n_state : number of states.
    hidden : hidden width of each block (one entry per block).
    c : per block (or one for all), 0 < c < 1 (default 0.9).
    gain : the linear part G: "none" (identity), "scalar" (a learnt positive factor g I),
        "matrix" (a learnt n x n matrix, starting at I), or an (n, n) array L, a known linear
        part in physical units (G = diag(1/s) L diag(s), not trained).
    x_mean, x_std : state normalisation, used for input and output alike (x and x_next live
        in the same space).
    power_iterations : power-iteration steps per training forward pass (warm-started).
    step_init : each block's step is ``tau_k c_k / ||W_k||^2`` with a learnt
        ``tau_k = sigmoid(theta_k)`` in (0, 1) starting at ``step_init`` (default 0.1: blocks
        start near the identity, which trains faster); None fixes ``tau_k = 1``. ``c_k`` stays
        the bound that the certificate checks.

    Example
    -------
    >>> m = CPLSurrogate(2, (8, 8), gain="scalar")
    >>> net = m.to_relunet()
    >>> net.widths, net.meta["architecture"]["gain"]
    ([2, 2, 10, 2, 10, 2, 2], 'scalar')
    """

    kind = KIND

    def __init__(self, n_state: int, hidden: Sequence[int] = (32, 32), *, c=DEFAULT_C,
                 gain="none", x_mean=None, x_std=None, power_iterations: int = 1,
                 step_init: float | None = 0.1, dtype=torch.float64, device=None):
        super().__init__()
        from dynid.models import check_sizes, norm_vector

        n, _, self.hidden = check_sizes(n_state, hidden)
        self.n_state = n
        self.c = _check_c(c, len(self.hidden))
        if int(power_iterations) < 1:
            raise ConfigError(f"power_iterations must be >= 1, got {power_iterations}")
        self.power_iterations = int(power_iterations)
        kw = {"dtype": dtype, "device": device}
        self.step_logit = None
        if step_init is not None:
            t = float(step_init)
            if not 0.0 < t < 1.0:
                raise ConfigError(f"step_init must be in (0, 1), got {step_init}")
            self.step_logit = nn.Parameter(torch.full((len(self.hidden),), math.log(t / (1 - t)),
                                                      **kw))
        self.weight = nn.ParameterList()
        self.bias = nn.ParameterList()
        for k, m in enumerate(self.hidden):
            w = torch.randn(m, n, **kw) / math.sqrt(n)
            self.weight.append(nn.Parameter(w))
            self.bias.append(nn.Parameter(torch.empty(m, **kw).uniform_(-1.0, 1.0)))
            u = torch.randn(n, **kw)
            self.register_buffer(f"u{k}", u / u.norm())

        self.register_buffer("x_mean", norm_vector(x_mean, 0.0, n, **kw))
        self.register_buffer("x_std", norm_vector(x_std, 1.0, n, **kw))
        self.out_bias = nn.Parameter(torch.zeros(n, **kw))
        if isinstance(gain, str):
            if gain not in GAINS:
                raise ConfigError(f"unknown CPL gain {gain!r}: use one of {', '.join(GAINS)} "
                                  "or an n x n matrix")
            self.gain_kind = gain
            if gain == "scalar":
                self.log_gain = nn.Parameter(torch.zeros((), **kw))
            elif gain == "matrix":
                self.gain_matrix = nn.Parameter(torch.eye(n, **kw))
        else:
            a = np.asarray(gain, dtype=np.float64)
            if a.shape != (n, n) or not np.all(np.isfinite(a)):
                raise ShapeError(f"a known linear part must be a finite {n} x {n} matrix, got "
                                 f"shape {a.shape}")
            self.gain_kind = "known"
            s = self.x_std.detach().cpu().double().numpy()
            self.register_buffer("gain_matrix", torch.tensor(a * s[None, :] / s[:, None], **kw))

    # ------------------------------------------------------------------ forward
    def _sigma(self, k: int) -> torch.Tensor:
        """||W_k||_2: warm-started power iteration in training, exact otherwise."""
        w = self.weight[k]
        if not self.training:
            return torch.linalg.matrix_norm(w, ord=2)
        u = getattr(self, f"u{k}")
        with torch.no_grad():
            for _ in range(self.power_iterations):
                v = w.T @ (w @ u)
                nv = v.norm()
                if nv > 0:
                    u = v / nv
            getattr(self, f"u{k}").copy_(u)
        return (w @ u).norm()

    def stack(self, z: torch.Tensor) -> torch.Tensor:
        """The CPL stack S on normalised coordinates."""
        for k, ck in enumerate(self.c):
            w, b = self.weight[k], self.bias[k]
            sig = self._sigma(k)
            h = self.step_fraction(k) * ck / sig.clamp_min(1e-12) ** 2
            z = z - h * (torch.relu(z @ w.T + b) @ w)
        return z

    def step_fraction(self, k: int):
        """tau_k in (0, 1): the block's step is tau_k c_k / ||W_k||^2 (1 unless learnt)."""
        return 1.0 if self.step_logit is None else torch.sigmoid(self.step_logit[k])

    def linear_part(self) -> torch.Tensor | None:
        if self.gain_kind == "scalar":
            return torch.exp(self.log_gain) * torch.eye(self.n_state, dtype=self.x_std.dtype,
                                                        device=self.x_std.device)
        if self.gain_kind in ("matrix", "known"):
            return self.gain_matrix
        return None

    def normalised_output(self, x: torch.Tensor) -> torch.Tensor:
        """G S((x - m) / s) + beta: the normalised x_next (what the loss compares)."""
        z = self.stack((x - self.x_mean) / self.x_std)
        g = self.linear_part()
        if g is not None:
            z = z @ g.T
        return z + self.out_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalised_output(x) * self.x_std + self.x_mean

    def target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Normalised training target for pairs (x, y)."""
        return (y - self.x_mean) / self.x_std

    @classmethod
    def from_data(cls, X, Y, hidden=(32, 32), **kw) -> "CPLSurrogate":
        """A surrogate normalised on the states of the pairs (X, Y)."""
        from dynid.models import _check_pairs, _stats

        unknown = set(kw) - {"c", "gain", "power_iterations", "step_init", "dtype", "device"}
        if unknown:
            raise ConfigError(f"unknown CPL option(s) {sorted(unknown)}: use c, gain, "
                              "power_iterations, step_init")
        X, Y = _check_pairs(X, Y)
        if X.shape[1] != Y.shape[1]:
            raise ConfigError(f"arch 'cpl' is for autonomous maps x -> x_next, but the data has "
                              f"{X.shape[1] - Y.shape[1]} input(s): use arch 'residual' or "
                              "'mlp' for a plant with inputs")
        xm, xs = _stats(X)
        return cls(X.shape[1], hidden, x_mean=xm, x_std=xs, **kw)

    # ------------------------------------------------------------------ export
    def normalisation(self) -> dict:
        return {k: getattr(self, k).detach().cpu().double().numpy().tolist()
                for k in ("x_mean", "x_std")}

    def architecture(self) -> dict:
        return {"kind": self.kind, "n_state": self.n_state, "hidden": list(self.hidden),
                "c": list(self.c), "gain": self.gain_kind}

    def power_norms(self) -> list[float]:
        """The current power-iteration estimates ||W_k u_k|| (lower bounds of ||W_k||_2)."""
        with torch.no_grad():
            return [float((w @ getattr(self, f"u{k}")).norm()) for k, w in enumerate(self.weight)]

    def to_relunet(self, meta: dict | None = None, *, norm: str = "svd") -> ReLUNet:
        """The surrogate in physical units as a CPL-structured ReLUNet (float64).

        ``norm="svd"`` (always, for real use) recomputes every step from the exact spectral
        norm. ``norm="power"`` stores the steps of the training-time power-iteration estimate:
        that is the failure the certificate must catch, kept here to test that it does.
        """
        g = lambda t: t.detach().cpu().double().numpy().copy()  # noqa: E731
        ws, bs = [g(w) for w in self.weight], [g(b) for b in self.bias]
        m, s = g(self.x_mean), g(self.x_std)
        lin = self.linear_part()
        gm = np.eye(self.n_state) if lin is None else g(lin)
        pre = (np.diag(1.0 / s), -m / s)
        post = (s[:, None] * gm, s * g(self.out_bias) + m)
        taus = [float(torch.as_tensor(self.step_fraction(k)).detach())
                for k in range(len(self.c))]
        if norm == "svd":
            steps = None
        elif norm == "power":
            steps = [t * ck / max(p, 1e-300) ** 2
                     for t, ck, p in zip(taus, self.c, self.power_norms())]
        else:
            raise ConfigError(f"norm must be 'svd' or 'power', got {norm!r}")
        extra = {"gain": self.gain_kind, "power_norms": self.power_norms()}
        net = cpl_net(ws, bs, self.c, pre=pre, post=post, steps=steps, step_fractions=taus,
                      meta={**(meta or {}), "normalisation": self.normalisation()}, extra=extra)
        return net


__all__ = ["CPLSurrogate", "CPLStructureError", "CPLBlock", "CPLStack", "InverseResult",
           "cpl_net", "cpl_structure", "is_cpl", "inverse", "block_constants",
           "affine_constants", "round_up", "round_down", "spectral_norm",
           "spectral_norm_upper", "export_step", "norm_pad", "DEFAULT_C", "GAINS"]
