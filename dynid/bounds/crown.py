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
        self.lo, self.hi = t(lo), t(hi)
        self.lower: list = []
        self.upper: list = []
        self.relax: list = []

    def set_layer_bounds(self, k: int, lo, hi) -> None:
        """Record the bounds of layer k (0-based) and its relaxation."""
        self.lower.append(lo)
        self.upper.append(hi)
        self.relax.append(_relaxation(lo, hi, self.relu[k]))

    def upper_bound(self, A, k: int):
        """Upper bounds (and the magnitude of the summed terms) of the rows of ``A @ z_k``
        for 0-based layer k, using the recorded bounds of layers 0..k-1."""
        torch = self.torch
        const = torch.zeros(A.shape[0], dtype=self.dtype, device=self.device)
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
            const = const + pos @ tu
            mag = mag + pos @ tu.abs()
            A = pos * su + neg * sl
        box_mid = (self.lo + self.hi) / 2
        box_rad = (self.hi - self.lo) / 2
        value = const + A @ box_mid + A.abs() @ box_rad
        mag = mag + A.abs() @ torch.maximum(self.lo.abs(), self.hi.abs())
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
    import torch

    lo, hi = check_box(net, lo, hi)
    dtype = dtype or torch.float64
    ibp = interval_bounds(net, lo, hi)
    cr = _Crown(net, lo, hi, device, dtype)
    lowers, uppers = [], []
    for k in range(net.n_layers):
        n = net.weights[k].shape[0]
        if k == 0:
            # the first layer is affine in x: IBP is exact per unit
            l_k, u_k = ibp.lower[0], ibp.upper[0]
        else:
            eye = torch.eye(n, dtype=dtype, device=device)
            vals, mag = cr.upper_bound(torch.cat([eye, -eye]), k)
            vals = vals.cpu().double().numpy()
            mag = mag.cpu().double().numpy()
            l_k, u_k = pad_interval(-vals[n:], vals[:n], np.maximum(mag[n:], mag[:n]))
            if dtype != torch.float64:
                l_k, u_k = _pad_low_precision(l_k, u_k, np.maximum(mag[n:], mag[:n]), net, dtype)
            l_k = np.maximum(l_k, ibp.lower[k])
            u_k = np.minimum(u_k, ibp.upper[k])
        lowers.append(l_k)
        uppers.append(u_k)
        cr.set_layer_bounds(k, torch.as_tensor(l_k, dtype=dtype, device=device),
                            torch.as_tensor(u_k, dtype=dtype, device=device))
    return Bounds(lowers, uppers, lo, hi, list(net.relu), "crown")


def crown_output(net: ReLUNet, lo, hi, C, bounds: Bounds | None = None, *, device="cpu",
                 dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of every row of ``C @ F(x)`` for x in [lo, hi].

    ``bounds`` are the pre-activation bounds to relax with (default: :func:`crown_bounds`);
    tighter intermediate bounds (e.g. from OBBT) give tighter output bounds.
    """
    import torch

    lo, hi = check_box(net, lo, hi)
    dtype = dtype or torch.float64
    C = np.atleast_2d(np.asarray(C, dtype=np.float64))
    if C.shape[1] != net.n_out:
        raise ShapeError(f"objective matrix has {C.shape[1]} columns but the network has "
                         f"{net.n_out} outputs")
    if bounds is None:
        bounds = crown_bounds(net, lo, hi, device=device, dtype=dtype)
    cr = _Crown(net, lo, hi, device, dtype)
    for k in range(net.n_layers):
        cr.set_layer_bounds(k, torch.as_tensor(bounds.lower[k], dtype=dtype, device=device),
                            torch.as_tensor(bounds.upper[k], dtype=dtype, device=device))
    m = C.shape[0]
    A = torch.as_tensor(np.vstack([C, -C]), dtype=dtype, device=device)
    L = net.n_layers - 1
    extra = torch.zeros(2 * m, dtype=dtype, device=device)
    extra_mag = torch.zeros_like(extra)
    if net.relu[L].any():
        # the output is h_L = sigma(z_L): relax the last layer's ReLUs first
        su, tu, sl = cr.relax[L]
        pos, neg = A.clamp(min=0), A.clamp(max=0)
        extra = pos @ tu
        extra_mag = pos @ tu.abs()
        A = pos * su + neg * sl
    vals, mag = cr.upper_bound(A, L)
    vals = (vals + extra).cpu().double().numpy()
    mag = (mag + extra_mag).cpu().double().numpy()
    mag = np.maximum(mag[:m], mag[m:])
    lower, upper = pad_interval(-vals[m:], vals[:m], mag)
    if dtype != torch.float64:
        lower, upper = _pad_low_precision(lower, upper, mag, net, dtype)
    # intersect with the interval bounds of the output, mapped through C
    out_lo, out_hi = bounds.output_lo, bounds.output_hi
    mid, rad = (out_lo + out_hi) / 2, (out_hi - out_lo) / 2
    ibp_lo, ibp_hi = pad_interval(C @ mid - np.abs(C) @ rad, C @ mid + np.abs(C) @ rad,
                                  np.abs(C) @ np.maximum(np.abs(out_lo), np.abs(out_hi)))
    return np.maximum(lower, ibp_lo), np.minimum(upper, ibp_hi)
