"""CROWN: backward linear bounds, batched over many bounded rows, in torch.

For a row ``a`` over the pre-activations ``z_k`` of layer k, the upper bound of ``a^T z_k`` is
found by walking back through the layers: ``a^T z_k = (a^T W_k) h_{k-1} + a^T b_k`` and each
ReLU unit of layer k-1 is replaced by its linear upper relaxation where its coefficient is
positive (the chord ``u (z - l) / (u - l)``) and its lower relaxation where negative
(``alpha z`` with alpha in {0, 1}, the adaptive choice). Identity and stable units are exact.
At the input, the linear function is maximised over the box in closed form.
Lower bounds are upper bounds of ``-a``, so one pass over the stacked rows ``[A; -A]`` gives both.
"""

from __future__ import annotations

import numpy as np

from dynid.bounds.core import Bounds, pad_interval
from dynid.bounds.ibp import interval_bounds
from dynid.errors import ShapeError
from dynid.relunet import ReLUNet, check_box


def _relaxation(lo, hi, relu):
    """Per-unit (upper slope, upper offset, lower slope) of the relaxation of h = sigma(z)."""
    import torch

    one = torch.ones_like(lo)
    unstable = relu & (lo < 0) & (hi > 0)
    inactive = relu & (hi <= 0)
    denom = torch.where(unstable, hi - lo, one)
    su = torch.where(unstable, hi / denom, torch.where(inactive, 0 * one, one))
    tu = torch.where(unstable, -hi * lo / denom, 0 * one)
    # adaptive lower slope: 1 when the unit is "more active than not", else 0
    sl_unstable = (hi >= -lo).to(lo.dtype)
    sl = torch.where(unstable, sl_unstable, torch.where(inactive, 0 * one, one))
    return su, tu, sl


class _Crown:
    """Backward passes over a batch of B boxes at once: ``lo``/``hi`` are (B, n_in); layer
    bounds and relaxations are (B, m_k); the bounded rows start shared, (R, m), and become
    per-box, (B, R, m), at the first relaxation."""

    def __init__(self, net: ReLUNet, lo, hi, device, dtype):
        import torch

        self.torch = torch
        self.net = net
        self.device = device
        self.dtype = dtype
        t = lambda a: torch.as_tensor(np.array(a), dtype=dtype, device=device)  # noqa: E731
        self.W = [t(w) for w in net.weights]
        self.b = [t(b) for b in net.biases]
        self.relu = [torch.as_tensor(np.array(m), device=device) for m in net.relu]
        self.lo, self.hi = t(np.atleast_2d(lo)), t(np.atleast_2d(hi))
        self.lower: list = []
        self.upper: list = []
        self.relax: list = []

    def set_layer_bounds(self, k: int, lo, hi) -> None:
        """Record the bounds (B, m_k) of layer k (0-based) and its relaxation."""
        self.lower.append(lo)
        self.upper.append(hi)
        self.relax.append(_relaxation(lo, hi, self.relu[k]))

    def upper_bound(self, A, k: int):
        """Upper bounds (B, R) (and the magnitude of the summed terms) of the rows of
        ``A @ z_k`` for 0-based layer k, using the recorded bounds of layers 0..k-1."""
        torch = self.torch
        B = self.lo.shape[0]
        A = A.expand(B, *A.shape[-2:]) if A.dim() == 2 else A
        const = torch.zeros(A.shape[:2], dtype=self.dtype, device=self.device)
        mag = torch.zeros_like(const)
        for j in range(k, -1, -1):
            const = const + A @ self.b[j]
            mag = mag + A.abs() @ self.b[j].abs()
            A = A @ self.W[j]
            if j == 0:
                break
            su, tu, sl = self.relax[j - 1]
            pos = A.clamp(min=0)
            neg = A.clamp(max=0)
            const = const + (pos * tu[:, None, :]).sum(-1)
            mag = mag + (pos * tu.abs()[:, None, :]).sum(-1)
            A = pos * su[:, None, :] + neg * sl[:, None, :]
        box_mid = ((self.lo + self.hi) / 2)[:, None, :]
        box_rad = ((self.hi - self.lo) / 2)[:, None, :]
        value = const + (A * box_mid).sum(-1) + (A.abs() * box_rad).sum(-1)
        mag = mag + (A.abs() * torch.maximum(self.lo.abs(), self.hi.abs())[:, None, :]).sum(-1)
        return value, mag


def _pad_low_precision(lo, hi, mag, net: ReLUNet, dtype):
    """Extra outward padding for a computation in a dtype coarser than float64: the rounding
    error of a sum of N products is at most about N * eps * (sum of |terms|)."""
    import torch

    eps = torch.finfo(dtype).eps
    n_terms = sum(net.widths) + 1
    pad = 2.0 * n_terms * eps * (1.0 + mag)
    return lo - pad, hi + pad


def crown_bounds(net: ReLUNet, lo, hi, *, device="cpu", dtype=None) -> Bounds:
    """CROWN bounds of every pre-activation over [lo, hi], intersected with IBP.

    Parameters
    ----------
    net : ReLUNet
    lo, hi : box corners (n_in,)
    device, dtype : torch device and dtype of the computation (default float64; the result
        is float64 numpy and padded outward, so float32 stays sound only up to its rounding —
        use float64 for certificates).

    Example
    -------
    >>> import numpy as np
    >>> from dynid.relunet import ReLUNet
    >>> net = ReLUNet([[[1.0], [-1.0]], [[1.0, 1.0]]], [[0, 0], [0]])   # |x|
    >>> b = crown_bounds(net, [-1.0], [1.0])
    >>> bool(b.upper[-1][0] >= 1.0)
    True
    """
    lo, hi = check_box(net, lo, hi)
    return crown_bounds_many(net, lo[None], hi[None], device=device, dtype=dtype)[0]


def _check_boxes(net: ReLUNet, LO, HI):
    LO = np.atleast_2d(np.asarray(LO, dtype=np.float64))
    HI = np.atleast_2d(np.asarray(HI, dtype=np.float64))
    if LO.shape != HI.shape or LO.ndim != 2 or LO.shape[1] != net.n_in or LO.shape[0] == 0:
        raise ShapeError(f"boxes need lo and hi of shape (B, {net.n_in}); got {LO.shape} and "
                         f"{HI.shape}")
    for a, b in zip(LO, HI):
        check_box(net, a, b)
    return LO, HI


def crown_bounds_many(net: ReLUNet, LO, HI, *, device="cpu", dtype=None) -> list[Bounds]:
    """:func:`crown_bounds` for B boxes at once (rows of ``LO``/``HI``, shape (B, n_in)), in
    one batched backward pass per layer: the same bounds, box by box, for far fewer Python
    steps when the boxes are many (cells of a partition, children of a split).

    Example
    -------
    >>> import numpy as np
    >>> from dynid.relunet import ReLUNet
    >>> net = ReLUNet([[[1.0], [-1.0]], [[1.0, 1.0]]], [[0, 0], [0]])   # |x|
    >>> bs = crown_bounds_many(net, [[-1.0], [0.0]], [[0.0], [1.0]])
    >>> [round(float(b.upper[-1][0]), 6) for b in bs]
    [1.0, 1.0]
    """
    import torch

    LO, HI = _check_boxes(net, LO, HI)
    dtype = dtype or torch.float64
    ibps = [interval_bounds(net, a, b) for a, b in zip(LO, HI)]
    cr = _Crown(net, LO, HI, device, dtype)
    lowers, uppers = [], []
    for k in range(net.n_layers):
        n = net.weights[k].shape[0]
        i_lo = np.stack([ib.lower[k] for ib in ibps])
        i_hi = np.stack([ib.upper[k] for ib in ibps])
        if k == 0:
            # the first layer is affine in x: IBP is exact per unit
            l_k, u_k = i_lo, i_hi
        else:
            eye = torch.eye(n, dtype=dtype, device=device)
            vals, mag = cr.upper_bound(torch.cat([eye, -eye]), k)
            vals = vals.cpu().double().numpy()
            mag = mag.cpu().double().numpy()
            m_k = np.maximum(mag[:, n:], mag[:, :n])
            l_k, u_k = pad_interval(-vals[:, n:], vals[:, :n], m_k)
            if dtype != torch.float64:
                l_k, u_k = _pad_low_precision(l_k, u_k, m_k, net, dtype)
            l_k = np.maximum(l_k, i_lo)
            u_k = np.minimum(u_k, i_hi)
        lowers.append(l_k)
        uppers.append(u_k)
        cr.set_layer_bounds(k, torch.as_tensor(l_k, dtype=dtype, device=device),
                            torch.as_tensor(u_k, dtype=dtype, device=device))
    return [Bounds([lw[i] for lw in lowers], [up[i] for up in uppers], LO[i], HI[i],
                   list(net.relu), "crown") for i in range(LO.shape[0])]


def crown_output(net: ReLUNet, lo, hi, C, bounds: Bounds | None = None, *, device="cpu",
                 dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of every row of ``C @ F(x)`` for x in [lo, hi].

    ``bounds`` are the pre-activation bounds to relax with (default: :func:`crown_bounds`);
    tighter intermediate bounds (e.g. from OBBT) give tighter output bounds.
    """
    lo, hi = check_box(net, lo, hi)
    lower, upper = crown_output_many(net, lo[None], hi[None], C,
                                     None if bounds is None else [bounds], device=device,
                                     dtype=dtype)
    return lower[0], upper[0]


def crown_output_many(net: ReLUNet, LO, HI, C, bounds: list | None = None, *, device="cpu",
                      dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`crown_output` for B boxes at once: lower and upper bounds, each (B, rows of C)."""
    import torch

    LO, HI = _check_boxes(net, LO, HI)
    dtype = dtype or torch.float64
    C = np.atleast_2d(np.asarray(C, dtype=np.float64))
    if C.shape[1] != net.n_out:
        raise ShapeError(f"objective matrix has {C.shape[1]} columns but the network has "
                         f"{net.n_out} outputs")
    if bounds is None:
        bounds = crown_bounds_many(net, LO, HI, device=device, dtype=dtype)
    if len(bounds) != LO.shape[0]:
        raise ShapeError(f"{len(bounds)} bounds given for {LO.shape[0]} boxes")
    cr = _Crown(net, LO, HI, device, dtype)
    for k in range(net.n_layers):
        cr.set_layer_bounds(k, torch.as_tensor(np.stack([b.lower[k] for b in bounds]),
                                               dtype=dtype, device=device),
                            torch.as_tensor(np.stack([b.upper[k] for b in bounds]),
                                            dtype=dtype, device=device))
    m = C.shape[0]
    B = LO.shape[0]
    A = torch.as_tensor(np.vstack([C, -C]), dtype=dtype, device=device).expand(B, 2 * m,
                                                                                  net.n_out)
    L = net.n_layers - 1
    extra = torch.zeros((B, 2 * m), dtype=dtype, device=device)
    extra_mag = torch.zeros_like(extra)
    if net.relu[L].any():
        # the output is h_L = sigma(z_L): relax the last layer's ReLUs first
        su, tu, sl = cr.relax[L]
        pos, neg = A.clamp(min=0), A.clamp(max=0)
        extra = (pos * tu[:, None, :]).sum(-1)
        extra_mag = (pos * tu.abs()[:, None, :]).sum(-1)
        A = pos * su[:, None, :] + neg * sl[:, None, :]
    vals, mag = cr.upper_bound(A, L)
    vals = (vals + extra).cpu().double().numpy()
    mag = (mag + extra_mag).cpu().double().numpy()
    mag = np.maximum(mag[:, :m], mag[:, m:])
    lower, upper = pad_interval(-vals[:, m:], vals[:, :m], mag)
    if dtype != torch.float64:
        lower, upper = _pad_low_precision(lower, upper, mag, net, dtype)
    # intersect with the interval bounds of the output, mapped through C
    out_lo = np.stack([b.output_lo for b in bounds])
    out_hi = np.stack([b.output_hi for b in bounds])
    mid, rad = (out_lo + out_hi) / 2, (out_hi - out_lo) / 2
    ibp_lo, ibp_hi = pad_interval(mid @ C.T - rad @ np.abs(C).T, mid @ C.T + rad @ np.abs(C).T,
                                  np.maximum(np.abs(out_lo), np.abs(out_hi)) @ np.abs(C).T)
    return np.maximum(lower, ibp_lo), np.minimum(upper, ibp_hi)
