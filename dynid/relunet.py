"""The one normal form: a feed-forward network of affine layers whose units are ReLU or identity.

Layer ``i`` computes ``z_i = W_i h_{i-1} + b_i`` and ``h_i = relu(z_i)`` on the units where
``relu[i]`` is True and ``h_i = z_i`` elsewhere; ``h_0 = x`` and the output is ``h_L``.
Identity units carry skip connections, so residual maps, closed loops with saturation and k-step
unrollings are all plain ``ReLUNet`` objects built with :func:`compose`, :func:`stack`,
:meth:`ReLUNet.unroll` and friends. Every encoder (CROWN, MIP, LP, ADMM) knows only this form.

Example
-------
>>> import numpy as np
>>> net = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[-1.0, -1.0]])],
...               [np.zeros(2), np.zeros(1)], [np.array([True, True]), np.array([False])])
>>> float(net.forward(np.array([0.5]))[0])   # x -> -|x|
-0.5
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from dynid.errors import ShapeError, UnsupportedLayerError


def _as_f64(a, ndim: int, what: str) -> np.ndarray:
    arr = np.array(a, dtype=np.float64, copy=True)
    if arr.ndim != ndim:
        raise ShapeError(f"{what} must be {ndim}-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ShapeError(f"{what} contains NaN or inf")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class ReLUNet:
    """Affine layers with a ReLU/identity mask per unit; float64 throughout.

    Parameters
    ----------
    weights : list of arrays of shape (out_i, in_i)
    biases : list of arrays of shape (out_i,)
    relu : list of bool arrays of shape (out_i,); True = ReLU unit, False = identity unit.
        ``None`` means "ReLU on every hidden layer, identity on the last".
    meta : free-form metadata (system, dt, state names, ...) carried into model files.
    """

    weights: tuple
    biases: tuple
    relu: tuple
    meta: dict = field(default_factory=dict)

    def __init__(self, weights: Sequence, biases: Sequence, relu: Sequence | None = None,
                 meta: dict | None = None):
        if len(weights) == 0 or len(weights) != len(biases):
            raise ShapeError(f"need as many bias vectors as weight matrices (>= 1), got "
                             f"{len(weights)} weights and {len(biases)} biases")
        ws = tuple(_as_f64(w, 2, f"weight of layer {i}") for i, w in enumerate(weights))
        bs = tuple(_as_f64(b, 1, f"bias of layer {i}") for i, b in enumerate(biases))
        if relu is None:
            relu = [np.ones(w.shape[0], bool) for w in ws[:-1]] + [np.zeros(ws[-1].shape[0], bool)]
        if len(relu) != len(ws):
            raise ShapeError(f"need one ReLU mask per layer: {len(ws)} layers, {len(relu)} masks")
        ms = []
        for i, m in enumerate(relu):
            m = np.array(m, dtype=bool, copy=True).reshape(-1)
            m.setflags(write=False)
            ms.append(m)
        for i, (w, b, m) in enumerate(zip(ws, bs, ms)):
            if b.shape[0] != w.shape[0] or m.shape[0] != w.shape[0]:
                raise ShapeError(f"layer {i}: weight {w.shape}, bias {b.shape}, mask {m.shape} "
                                 "do not agree on the number of units")
            if i > 0 and w.shape[1] != ws[i - 1].shape[0]:
                raise ShapeError(f"layer {i} takes {w.shape[1]} inputs but layer {i - 1} has "
                                 f"{ws[i - 1].shape[0]} units")
        object.__setattr__(self, "weights", ws)
        object.__setattr__(self, "biases", bs)
        object.__setattr__(self, "relu", tuple(ms))
        object.__setattr__(self, "meta", dict(meta or {}))

    # ------------------------------------------------------------------ shape facts
    @property
    def n_in(self) -> int:
        return self.weights[0].shape[1]

    @property
    def n_out(self) -> int:
        return self.weights[-1].shape[0]

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    @property
    def widths(self) -> list[int]:
        """Input width followed by the number of units of every layer."""
        return [self.n_in] + [w.shape[0] for w in self.weights]

    @property
    def n_relu(self) -> int:
        return int(sum(m.sum() for m in self.relu))

    @property
    def n_params(self) -> int:
        return int(sum(w.size + b.size for w, b in zip(self.weights, self.biases)))

    def __repr__(self) -> str:
        return (f"ReLUNet(widths={self.widths}, relu_units={self.n_relu}, "
                f"layers={self.n_layers})")

    def with_meta(self, **meta) -> "ReLUNet":
        """Copy with metadata entries added or replaced."""
        return ReLUNet(self.weights, self.biases, self.relu, {**self.meta, **meta})

    # ------------------------------------------------------------------ forward passes
    def _check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1:] != (self.n_in,):
            raise ShapeError(f"input has trailing dimension {x.shape[-1:] or ()} but the network "
                             f"takes {self.n_in} inputs")
        return x

    def forward(self, x) -> np.ndarray:
        """Float64 forward pass; ``x`` has shape (..., n_in), the result (..., n_out)."""
        return self.activations(x)[-1]

    __call__ = forward

    def activations(self, x) -> list[np.ndarray]:
        """Post-activation values ``[h_0 = x, h_1, ..., h_L]`` (float64)."""
        h = self._check_input(x)
        out = [h]
        for w, b, m in zip(self.weights, self.biases, self.relu):
            z = h @ w.T + b
            h = np.where(m, np.maximum(z, 0.0), z)
            out.append(h)
        return out

    def preactivations(self, x) -> list[np.ndarray]:
        """Pre-activation values ``[z_1, ..., z_L]`` (float64)."""
        hs = self.activations(x)
        return [h @ w.T + b for h, w, b in zip(hs[:-1], self.weights, self.biases)]

    def forward_torch(self, x):
        """Forward pass on a torch tensor, differentiable, in the tensor's dtype and device."""
        import torch

        h = x
        for w, b, m in zip(self.weights, self.biases, self.relu):
            wt = torch.tensor(np.array(w), dtype=x.dtype, device=x.device)
            bt = torch.tensor(np.array(b), dtype=x.dtype, device=x.device)
            z = h @ wt.T + bt
            mt = torch.tensor(np.array(m), device=x.device)
            h = torch.where(mt, torch.relu(z), z)
        return h

    def jacobian(self, x) -> np.ndarray:
        """Jacobian dF/dx at one point (shape (n_out, n_in)); ReLU'(0) is taken as 0."""
        zs = self.preactivations(np.asarray(x, dtype=np.float64).reshape(self.n_in))
        jac = np.eye(self.n_in)
        for w, z, m in zip(self.weights, zs, self.relu):
            d = np.where(m, (z > 0).astype(float), 1.0)
            jac = (d[:, None] * w) @ jac
        return jac

    # ------------------------------------------------------------------ torch conversion
    def to_torch(self, dtype=None, device=None):
        """An ``nn.Module`` computing the same map (masks kept as buffers)."""
        from dynid.torch_convert import relunet_to_module

        return relunet_to_module(self, dtype=dtype, device=device)

    @staticmethod
    def from_torch(module, meta: dict | None = None) -> "ReLUNet":
        """Convert an ``nn.Sequential`` of Linear/ReLU/Identity (or a module made by
        :meth:`to_torch`) into a ReLUNet."""
        from dynid.torch_convert import module_to_relunet

        return module_to_relunet(module, meta=meta)

    # ------------------------------------------------------------------ composition
    def unroll(self, k: int) -> "ReLUNet":
        """The k-fold composition F∘...∘F (needs n_in == n_out)."""
        if self.n_in != self.n_out:
            raise ShapeError(f"unroll needs a map from R^n to R^n, this one is "
                             f"{self.n_in} -> {self.n_out}")
        if int(k) < 1:
            raise ShapeError(f"unroll needs k >= 1, got {k}")
        net = self
        for _ in range(int(k) - 1):
            net = compose(self, net)
        return net.with_meta(**{**self.meta, "unrolled": int(k)})

    def simplify(self, tol: float = 0.0) -> "ReLUNet":
        """Drop dead units (ReLU units whose outgoing weights are all zero, or whose incoming
        row is zero with bias <= 0), and merge all-identity hidden layers into the next layer.

        The map is unchanged (exactly, in exact arithmetic); the MIP gets smaller.
        """
        return _simplify(self, tol)


# ---------------------------------------------------------------------- builders


def linear(a, c=None, meta: dict | None = None) -> ReLUNet:
    """The affine map x -> A x + c as a one-layer identity-unit ReLUNet."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    c = np.zeros(a.shape[0]) if c is None else np.asarray(c, dtype=np.float64).reshape(-1)
    return ReLUNet([a], [c], [np.zeros(a.shape[0], bool)], meta)


def identity(n: int, depth: int = 1) -> ReLUNet:
    """Identity map on R^n with ``depth`` identity layers (for padding in :func:`stack`)."""
    return ReLUNet([np.eye(n)] * depth, [np.zeros(n)] * depth, [np.zeros(n, bool)] * depth)


def compose(g: ReLUNet, f: ReLUNet) -> ReLUNet:
    """The map x -> g(f(x)) as one ReLUNet.

    When f's last layer is all identity (the usual case) it is folded into g's first layer,
    so no units are added.
    """
    if f.n_out != g.n_in:
        raise ShapeError(f"cannot compose: inner map has {f.n_out} outputs, outer map takes "
                         f"{g.n_in} inputs")
    meta = {**f.meta, **g.meta}
    if not f.relu[-1].any():
        w = g.weights[0] @ f.weights[-1]
        b = g.weights[0] @ f.biases[-1] + g.biases[0]
        return ReLUNet(list(f.weights[:-1]) + [w] + list(g.weights[1:]),
                       list(f.biases[:-1]) + [b] + list(g.biases[1:]),
                       list(f.relu[:-1]) + [g.relu[0]] + list(g.relu[1:]), meta)
    return ReLUNet(list(f.weights) + list(g.weights), list(f.biases) + list(g.biases),
                   list(f.relu) + list(g.relu), meta)


def _pad_depth(net: ReLUNet, depth: int) -> ReLUNet:
    """Same map with ``depth`` layers: identity layers are inserted before the output layer
    (or after it when the output layer has ReLU units)."""
    extra = depth - net.n_layers
    if extra <= 0:
        return net
    if not net.relu[-1].any():
        # x -> last(identity^extra(h_{L-1})): prepend identity layers on the hidden state
        hidden = net.weights[-1].shape[1]
        ws = list(net.weights[:-1]) + [np.eye(hidden)] * extra + [net.weights[-1]]
        bs = list(net.biases[:-1]) + [np.zeros(hidden)] * extra + [net.biases[-1]]
        ms = list(net.relu[:-1]) + [np.zeros(hidden, bool)] * extra + [net.relu[-1]]
        return ReLUNet(ws, bs, ms, net.meta)
    n = net.n_out
    return ReLUNet(list(net.weights) + [np.eye(n)] * extra,
                   list(net.biases) + [np.zeros(n)] * extra,
                   list(net.relu) + [np.zeros(n, bool)] * extra, net.meta)


def stack(*nets: ReLUNet) -> ReLUNet:
    """Shared input, outputs concatenated: x -> [f1(x); f2(x); ...] as one ReLUNet.

    Shallower networks are padded with identity layers; hidden layers become block diagonal.
    """
    if not nets:
        raise ShapeError("stack needs at least one network")
    n_in = nets[0].n_in
    for net in nets:
        if net.n_in != n_in:
            raise ShapeError(f"stack needs networks with the same input size, got "
                             f"{[n.n_in for n in nets]}")
    depth = max(n.n_layers for n in nets)
    padded = [_pad_depth(n, depth) for n in nets]
    ws, bs, ms = [], [], []
    for i in range(depth):
        if i == 0:
            ws.append(np.vstack([p.weights[0] for p in padded]))
        else:
            ws.append(_block_diag([p.weights[i] for p in padded]))
        bs.append(np.concatenate([p.biases[i] for p in padded]))
        ms.append(np.concatenate([p.relu[i] for p in padded]))
    meta = {}
    for n in nets:
        meta.update(n.meta)
    return ReLUNet(ws, bs, ms, meta)


def _block_diag(blocks: list[np.ndarray]) -> np.ndarray:
    rows = sum(b.shape[0] for b in blocks)
    cols = sum(b.shape[1] for b in blocks)
    out = np.zeros((rows, cols))
    r = c = 0
    for b in blocks:
        out[r:r + b.shape[0], c:c + b.shape[1]] = b
        r += b.shape[0]
        c += b.shape[1]
    return out


def parallel(*nets: ReLUNet) -> ReLUNet:
    """Separate inputs, outputs concatenated: [x1; x2; ...] -> [f1(x1); f2(x2); ...]."""
    offsets = np.cumsum([0] + [n.n_in for n in nets])
    total = int(offsets[-1])
    lifted = []
    for n, o in zip(nets, offsets[:-1]):
        sel = np.zeros((n.n_in, total))
        sel[:, o:o + n.n_in] = np.eye(n.n_in)
        lifted.append(compose(n, linear(sel)))
    return stack(*lifted)


def difference(f: ReLUNet, g: ReLUNet) -> ReLUNet:
    """x -> f(x) - g(x) as one ReLUNet (for equivalence checks and CROWN on the difference)."""
    if f.n_out != g.n_out:
        raise ShapeError(f"difference needs equal output sizes, got {f.n_out} and {g.n_out}")
    n = f.n_out
    return compose(linear(np.hstack([np.eye(n), -np.eye(n)])), stack(f, g))


def residual(inner: ReLUNet, h: float = 1.0) -> ReLUNet:
    """x -> x + h * inner(x) (needs inner to map R^n to R^n)."""
    if inner.n_in != inner.n_out:
        raise ShapeError(f"residual needs an inner map R^n -> R^n, got {inner.n_in} -> "
                         f"{inner.n_out}")
    n = inner.n_in
    return compose(linear(np.hstack([np.eye(n), h * np.eye(n)])), stack(identity(n), inner))


def _simplify(net: ReLUNet, tol: float) -> ReLUNet:
    ws = [w.copy() for w in net.weights]
    bs = [b.copy() for b in net.biases]
    ms = [m.copy() for m in net.relu]
    # 1. remove dead hidden units
    for i in range(len(ws) - 1):
        w_in, b_in, m = ws[i], bs[i], ms[i]
        w_out = ws[i + 1]
        dead_in = m & (np.abs(w_in).max(axis=1) <= tol) & (b_in <= 0)
        no_out = np.abs(w_out).max(axis=0) <= tol
        # a unit with a constant output (zero incoming row): fold its value into the next bias
        const = (np.abs(w_in).max(axis=1) <= tol) & ~dead_in
        if const.any():
            val = np.where(m[const], np.maximum(b_in[const], 0.0), b_in[const])
            bs[i + 1] = bs[i + 1] + w_out[:, const] @ val
        keep = ~(dead_in | no_out | const)
        if not keep.any():
            keep[0] = True  # keep one (harmless) unit so shapes stay valid
            ws[i][0] = 0.0
            bs[i][0] = 0.0
            ws[i + 1][:, 0] = 0.0
        ws[i], bs[i], ms[i] = ws[i][keep], bs[i][keep], ms[i][keep]
        ws[i + 1] = ws[i + 1][:, keep]
    # 2. merge all-identity hidden layers into the next layer
    i = 0
    while i < len(ws) - 1:
        if not ms[i].any():
            ws[i + 1], bs[i + 1] = ws[i + 1] @ ws[i], ws[i + 1] @ bs[i] + bs[i + 1]
            del ws[i], bs[i], ms[i]
        else:
            i += 1
    return ReLUNet(ws, bs, ms, net.meta)


def check_box(net_or_n, lo, hi, what: str = "box") -> tuple[np.ndarray, np.ndarray]:
    """Validate a box [lo, hi] for a network (or a dimension); return float64 arrays."""
    n = net_or_n.n_in if isinstance(net_or_n, ReLUNet) else int(net_or_n)
    lo = np.asarray(lo, dtype=np.float64).reshape(-1)
    hi = np.asarray(hi, dtype=np.float64).reshape(-1)
    if lo.shape != (n,) or hi.shape != (n,):
        raise ShapeError(f"{what} needs {n} lower and {n} upper values, got {lo.size} and "
                         f"{hi.size}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ShapeError(f"{what} bounds must be finite")
    if np.any(lo > hi):
        i = int(np.argmax(lo > hi))
        raise ShapeError(f"{what} is empty: lower bound {lo[i]} > upper bound {hi[i]} in "
                         f"coordinate {i}")
    return lo, hi


#: Fraction of the training domain (per coordinate, about its centre) that ``dynid reach`` and
#: the pipeline's ``[reach]`` stage take as the default box of initial states.
REACH_FRACTION = 0.1


def default_box(net: ReLUNet, what: str = "the box with --lo and --hi", fraction: float = 1.0,
                required: bool = True):
    """The one default-box rule: the model's training domain ``net.meta["domain"]`` or, with
    ``fraction < 1``, its central part (same centre, ``fraction`` of the width in every
    coordinate); ``None`` (or, when ``required``, a ConfigError asking for ``what``) when the
    model has none.

    Every command without an explicit box uses it: certify, prune and the box search with
    ``fraction=1``; ``dynid reach`` and the pipeline's ``[reach]`` stage with
    ``fraction=REACH_FRACTION``, so both start from the same initial box.

    >>> net = linear(np.eye(2), meta={"domain": {"lo": [0, -1], "hi": [2, 1]}})
    >>> lo, hi = default_box(net, fraction=0.1)
    >>> lo.tolist(), hi.tolist()
    ([0.9, -0.1], [1.1, 0.1])
    >>> default_box(linear(np.eye(2)), required=False) is None
    True
    """
    from dynid.errors import ConfigError

    dom = net.meta.get("domain") if isinstance(net.meta, dict) else None
    if not (isinstance(dom, dict) and dom.get("lo") is not None and dom.get("hi") is not None):
        if required:
            raise ConfigError(f"the model has no training domain in its metadata: give {what}")
        return None
    lo, hi = check_box(net, dom["lo"], dom["hi"], "the model's training domain")
    if fraction != 1.0:
        mid, half = (lo + hi) / 2, 0.5 * float(fraction) * (hi - lo)
        lo, hi = mid - half, mid + half
    return lo, hi


__all__ = ["ReLUNet", "linear", "identity", "compose", "stack", "parallel", "difference",
           "residual", "check_box", "default_box", "REACH_FRACTION", "UnsupportedLayerError"]
