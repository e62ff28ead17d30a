"""Linear bounds of ``C @ F(x)`` over boxes, as functions of the box, for max_box.

This is the relaxation *inside* the optimisation of :func:`dynid.certify.max_box`: it is
evaluated hundreds of times per point and differentiated with respect to the box, so it skips
the padding and bookkeeping of :mod:`dynid.bounds`. It is **not** the certificate: every box it
accepts is re-checked by the sound float64 CROWN of :mod:`dynid.bounds` or by the MIP.

Three relaxations of an unstable ReLU ``h = relu(z)``, ``l < 0 < u``, all with the chord
``h <= u (z - l) / (u - l)`` as the upper line:

- ``"crown"``: lower line ``h >= a z`` with the adaptive slope a = 1 if u >= -l else 0;
- ``"crown-opt"``: lower slopes a in [0, 1] are free parameters (one per bounded row and
  unit, as in alpha-CROWN), optimised together with the box (torch backend only);
- ``"fastlin"``: the lower line parallel to the chord, ``h >= u z / (u - l)`` (Fast-Lin, the
  relaxation of Liu et al.).

Pre-activation bounds of every layer with ReLU units come from a backward pass through the
earlier layers, intersected with interval arithmetic; the output rows are bounded directly and
through CROWN bounds of each output unit, and the tighter is kept.

The same code runs on numpy arrays (``backend="numpy"``: fast for the many small evaluations;
:meth:`BoxRelaxation.upper_grad` gives the gradient with the relaxation of the box held fixed)
or torch tensors (``backend="torch"``: autograd through everything, and free slopes).

Example
-------
>>> import numpy as np
>>> from dynid.relunet import ReLUNet
>>> net = ReLUNet([[[1.0], [-1.0]], [[1.0, 1.0]]], [[0, 0], [0]])   # x -> |x|
>>> rel = BoxRelaxation(net, np.eye(1), "crown")
>>> round(float(rel.upper(np.array([[-1.0]]), np.array([[1.0]]))[0, 0]), 6)   # |x| <= 1
1.0
"""

from __future__ import annotations

import numpy as np

from dynid.errors import ConfigError, ShapeError
from dynid.relunet import ReLUNet

RELAXATIONS = ("crown", "crown-opt", "fastlin")
BACKENDS = ("numpy", "torch")


class BoxRelaxation:
    """Upper bounds of the rows of ``C @ F(x)`` for x in boxes ``[lo, hi]`` (batched).

    Parameters
    ----------
    net : the network F.
    C : (R, n_out) rows to bound from above.
    method : one of :data:`RELAXATIONS`.
    backend : "numpy" or "torch" (float64; "crown-opt" needs torch).

    ``upper(lo, hi)`` takes arrays/tensors of shape (B, n_in) and returns (B, R); with torch
    it is differentiable in ``lo``, ``hi`` and the free slopes (:meth:`init_alphas`).
    """

    def __init__(self, net: ReLUNet, C, method: str = "crown", *, backend: str = "numpy"):
        if method not in RELAXATIONS:
            raise ConfigError(f"relaxation {method!r} is unknown: use one of {RELAXATIONS}")
        if backend not in BACKENDS:
            raise ConfigError(f"backend {backend!r} is unknown: use one of {BACKENDS}")
        if method == "crown-opt" and backend != "torch":
            raise ConfigError("the crown-opt relaxation needs backend='torch'")
        C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        if C.shape[1] != net.n_out:
            raise ShapeError(f"spec rows need {net.n_out} columns, got {C.shape[1]}")
        if backend == "torch":
            import torch

            self.xp = torch
            t = lambda a: torch.as_tensor(np.array(a), dtype=torch.float64)  # noqa: E731
            self.cat = torch.cat
        else:
            self.xp = np
            t = lambda a: np.array(a, dtype=np.float64)  # noqa: E731
            self.cat = np.concatenate
        self.method, self.backend, self.net = method, backend, net
        self.W = [t(w) for w in net.weights]
        self.Wabs = [abs(w) for w in self.W]
        self.b = [t(b) for b in net.biases]
        self.relu = [self._mask(m) for m in net.relu]
        self.W2 = [self.cat([w, -w]) for w in self.W]        # rows bounding z_k up and down
        self.b2 = [self.cat([b, -b]) for b in self.b]
        eye = np.eye(net.n_out)
        self.C = t(C)
        self.C_ext = t(np.vstack([C, eye, -eye]))   # the rows, then each output unit up/down
        self.C_pos, self.C_neg = t(np.maximum(C, 0)), t(np.minimum(C, 0))
        self.alphas: dict | None = None

    def _mask(self, m):
        if self.backend == "torch":
            return self.xp.as_tensor(np.array(m, dtype=bool))
        return np.array(m, dtype=bool)

    # ------------------------------------------------------------------ slopes
    def _slopes(self, lo, hi, j: int):
        """(upper slope, upper offset, lower slope, unstable mask) of layer j, each (B, m_j)."""
        xp = self.xp
        relu = self.relu[j]
        unstable = relu & (lo < 0) & (hi > 0)
        inactive = relu & (hi <= 0)
        one, zero = xp.ones_like(lo), xp.zeros_like(lo)
        denom = xp.where(unstable, hi - lo, one)
        chord = xp.where(unstable, hi / denom, xp.where(inactive, zero, one))
        offset = xp.where(unstable, -hi * lo / denom, zero)
        if self.method == "fastlin":
            lower = chord
        else:
            lower = xp.where(unstable, xp.where(hi >= -lo, one, zero),
                             xp.where(inactive, zero, one))
        return chord, offset, lower, unstable

    def init_alphas(self, lo, hi) -> list:
        """Create the free lower slopes of ``"crown-opt"`` at the box [lo, hi] (B = 1),
        starting from the adaptive choice; returns the tensors to optimise."""
        import torch

        with torch.no_grad():
            _, relax = self._layer_bounds(lo, hi)
        self.alphas = {}
        for k, rows in self._starts():
            for j in range(k):
                if self.net.relu[j].any():
                    base = relax[j][2][0]
                    self.alphas[(k, j)] = base.expand(rows, base.shape[0]).clone() \
                        .requires_grad_()
        return list(self.alphas.values())

    def clamp_alphas(self) -> None:
        """Project the free slopes back onto [0, 1] (after an optimiser step)."""
        if self.alphas:
            import torch

            with torch.no_grad():
                for a in self.alphas.values():
                    a.clamp_(0.0, 1.0)

    def _starts(self):
        """(start layer, number of rows) of every backward pass: the layers with ReLU units
        (two rows per unit), then the output pass (start = n_layers)."""
        L = self.net.n_layers
        out = [(k, 2 * self.W[k].shape[0]) for k in range(1, L) if self.net.relu[k].any()]
        return out + [(L, self.C_ext.shape[0])]

    # ------------------------------------------------------------------ passes
    def _back(self, A, const, top: int, lo, hi, relax, start: int):
        """Upper bounds (B, R) of ``A @ h_top + const`` over the boxes, where ``A`` is (R, m)
        over the post-activations of layer ``top`` (-1: the input), and the input coefficients
        (B, R, n_in) of the final linear bound. One box (B = 1) runs on 2-D arrays."""
        xp = self.xp
        one = lo.shape[0] == 1
        per_box = (lambda s: s[0]) if one else (lambda s: s[:, None, :])  # noqa: E731
        for j in range(top, -1, -1):
            chord, offset, lower, unstable = relax[j]
            key = (start, j)
            if self.alphas is not None and key in self.alphas:
                alpha = self.alphas[key] if one else self.alphas[key][None]
                lower = xp.where(per_box(unstable), alpha, per_box(lower))
            else:
                lower = per_box(lower)
            pos, neg = A.clip(min=0), A.clip(max=0)
            const = const + pos @ offset[0] if one else \
                const + (pos * offset[:, None, :]).sum(-1)
            A = pos * per_box(chord) + neg * lower
            const = const + A @ self.b[j]
            A = A @ self.W[j]
        mid, rad = per_box((lo + hi) / 2), per_box((hi - lo) / 2)
        if one:
            return (const + A @ mid + abs(A) @ rad)[None], A[None]
        return const + (A * mid).sum(-1) + (abs(A) * rad).sum(-1), A

    def _layer_bounds(self, lo, hi):
        """Pre-activation bounds (l, u) of every layer and their relaxations. The output
        layer, when it has no ReLU units, gets interval bounds only (the output pass bounds
        its units)."""
        xp = self.xp
        bounds, relax = [], []
        h_lo, h_hi = lo, hi
        for k in range(self.net.n_layers):
            mid, rad = (h_lo + h_hi) / 2, (h_hi - h_lo) / 2
            z_mid = mid @ self.W[k].T + self.b[k]
            z_rad = rad @ self.Wabs[k].T
            l, u = z_mid - z_rad, z_mid + z_rad
            if k > 0 and self.net.relu[k].any():
                n = self.W[k].shape[0]
                vals, _ = self._back(self.W2[k], self.b2[k], k - 1, lo, hi, relax, k)
                l, u = xp.maximum(l, -vals[:, n:]), xp.minimum(u, vals[:, :n])
            bounds.append((l, u))
            relax.append(self._slopes(l, u, k))
            relu = self.relu[k]
            h_lo = xp.where(relu, l.clip(min=0), l)
            h_hi = xp.where(relu, u.clip(min=0), u)
        return bounds, relax

    def _output(self, lo, hi):
        """Everything of the output pass: direct row bounds, output-unit bounds (lower,
        upper) from the pass and from interval arithmetic, and the pass's input coefficients."""
        xp = self.xp
        bounds, relax = self._layer_bounds(lo, hi)
        L = self.net.n_layers
        R, n = self.C.shape
        vals, A = self._back(self.C_ext, 0.0, L - 1, lo, hi, relax, L)
        l, u = bounds[-1]
        relu = self.relu[-1]
        i_lo = xp.where(relu, l.clip(min=0), l)
        i_hi = xp.where(relu, u.clip(min=0), u)
        return vals[:, :R], -vals[:, R + n:], vals[:, R:R + n], i_lo, i_hi, A

    def upper(self, lo, hi):
        """Upper bounds (B, R) of ``C @ F(x)`` over each box (rows of lo, hi)."""
        xp = self.xp
        direct, c_lo, c_hi, i_lo, i_hi, _ = self._output(lo, hi)
        o_lo, o_hi = xp.maximum(c_lo, i_lo), xp.minimum(c_hi, i_hi)
        return xp.minimum(direct, o_hi @ self.C_pos.T + o_lo @ self.C_neg.T)

    def upper_grad(self, lo, hi):
        """Upper bounds (B, R) and their gradients with respect to lo and hi (each
        (B, R, n_in)) with the relaxation of the box held fixed (slopes, intermediate bounds
        and interval bounds are treated as constants: the gradient of each chosen linear
        bound). numpy backend."""
        direct, c_lo, c_hi, i_lo, i_hi, A = self._output(lo, hi)
        R, n = self.C.shape
        g_lo, g_hi = (A - abs(A)) / 2, (A + abs(A)) / 2            # d(bound)/d(lo), /d(hi)
        use_hi = (c_hi <= i_hi)[..., None]                           # unit bounds from the pass
        use_lo = (-c_lo <= -i_lo)[..., None]
        uh_lo, uh_hi = g_lo[:, R:R + n] * use_hi, g_hi[:, R:R + n] * use_hi
        ul_lo, ul_hi = -g_lo[:, R + n:] * use_lo, -g_hi[:, R + n:] * use_lo
        o_lo, o_hi = np.maximum(c_lo, i_lo), np.minimum(c_hi, i_hi)
        via = o_hi @ self.C_pos.T + o_lo @ self.C_neg.T
        via_lo = np.einsum("rk,bkn->brn", self.C_pos, uh_lo) + \
            np.einsum("rk,bkn->brn", self.C_neg, ul_lo)
        via_hi = np.einsum("rk,bkn->brn", self.C_pos, uh_hi) + \
            np.einsum("rk,bkn->brn", self.C_neg, ul_hi)
        take = (direct <= via)[..., None]
        return (np.minimum(direct, via), np.where(take, g_lo[:, :R], via_lo),
                np.where(take, g_hi[:, :R], via_hi))

    def layer_bounds(self, lo, hi):
        """Pre-activation bounds [(l_k, u_k)] of every layer over the boxes."""
        return self._layer_bounds(lo, hi)[0]
