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
:meth:`BoxRelaxation.upper_vjp` gives the exact gradient by reverse mode written out)
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
        self.Wp = [(w + a) / 2 for w, a in zip(self.W, self.Wabs)]   # positive part of W
        self.Wn = [(w - a) / 2 for w, a in zip(self.W, self.Wabs)]
        self.b = [t(b) for b in net.biases]
        self.relu = [self._mask(m) for m in net.relu]
        self.W2 = [self.cat([w, -w]) for w in self.W]        # rows bounding z_k up and down
        self.b2 = [self.cat([b, -b]) for b in self.b]
        # numpy: the same with the constants as a last column
        self.W2aug = [np.hstack([np.vstack([w, -w]), np.r_[b, -b][:, None]])
                      for w, b in zip(net.weights, net.biases)]
        self.Waug = [np.block([[w, b[:, None]], [np.zeros((1, w.shape[1])), np.ones((1, 1))]])
                     for w, b in zip(net.weights, net.biases)]
        eye = np.eye(net.n_out)
        self.C = t(C)
        self.C_ext = t(np.vstack([C, eye, -eye]))   # the rows, then each output unit up/down
        self.C_aug = np.hstack([np.vstack([C, eye, -eye]), np.zeros((C.shape[0] + 2 * net.n_out,
                                                                     1))])
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
        upper) from the pass and from interval arithmetic."""
        xp = self.xp
        bounds, relax = self._layer_bounds(lo, hi)
        L = self.net.n_layers
        R, n = self.C.shape
        vals, _ = self._back(self.C_ext, 0.0, L - 1, lo, hi, relax, L)
        l, u = bounds[-1]
        relu = self.relu[-1]
        i_lo = xp.where(relu, l.clip(min=0), l)
        i_hi = xp.where(relu, u.clip(min=0), u)
        return vals[:, :R], -vals[:, R + n:], vals[:, R:R + n], i_lo, i_hi

    def upper(self, lo, hi):
        """Upper bounds (B, R) of ``C @ F(x)`` over each box (rows of lo, hi)."""
        if self.backend == "numpy":
            return np.stack([self._np_eval(a, b, False)[0] for a, b in zip(lo, hi)])
        xp = self.xp
        direct, c_lo, c_hi, i_lo, i_hi = self._output(lo, hi)
        o_lo, o_hi = xp.maximum(c_lo, i_lo), xp.minimum(c_hi, i_hi)
        return xp.minimum(direct, o_hi @ self.C_pos.T + o_lo @ self.C_neg.T)

    def layer_bounds(self, lo, hi):
        """Pre-activation bounds [(l_k, u_k)] of every layer over the boxes (B, n_in)."""
        if self.backend == "numpy":
            per = [self._np_eval(a, b, False)[1] for a, b in zip(lo, hi)]
            return [(np.stack([p[k]["l"] for p in per]), np.stack([p[k]["u"] for p in per]))
                    for k in range(self.net.n_layers)]
        return self._layer_bounds(lo, hi)[0]

    # ------------------------------------------------------------------ numpy, one box
    # The same relaxation as the batched torch passes above, written for one box: inactive
    # units are zeroed in a per-box copy of their weights and only the unstable units are
    # relaxed elementwise (on surrogates most units are stable on the boxes of interest), and
    # it records what the hand-written reverse mode (upper_vjp) needs. The tests check it
    # against the torch passes and against autograd.
    def _np_eval(self, lo, hi, tape: bool):
        """(upper bounds (R,), per-layer records, output-pass record, combination masks)."""
        layers = []
        h_lo, h_hi = lo, hi
        prev1 = np.arange(self.net.n_in + 1)         # kept units of the layer below, and 1
        for k in range(self.net.n_layers):
            wp, wn = self.Wp[k], self.Wn[k]
            l = wp @ h_lo + wn @ h_hi + self.b[k]
            u = wp @ h_hi + wn @ h_lo + self.b[k]
            rec = {"l_ibp": l, "u_ibp": u, "back": None}
            if k > 0 and self.net.relu[k].any():
                m = l.size
                A0 = self.W2aug[k][:, prev1]
                vals, back = self._np_back(A0, k - 1, layers, lo, hi, tape)
                take_l, take_u = -vals[m:] >= l, vals[:m] <= u
                rec.update(back=back, take_l=take_l, take_u=take_u)
                l, u = np.where(take_l, -vals[m:], l), np.where(take_u, vals[:m], u)
            relu = self.relu[k]
            keep = np.flatnonzero(~(relu & (u <= 0)))     # inactive units carry nothing
            upos = np.flatnonzero((relu & (l < 0) & (u > 0))[keep])
            uidx = keep[upos]
            lu, uu = l[uidx], u[uidx]
            chord = uu / (uu - lu)
            lower = chord if self.method == "fastlin" else (uu >= -lu).astype(float)
            # the kept part of [[W, b], [0, 1]]: the last column carries the constant
            keep1 = np.append(keep, l.size)
            rec.update(l=l, u=u, keep=keep, upos=upos, uidx=uidx, chord=chord, lower=lower,
                       offset=-uu * lu / (uu - lu), Waug=self.Waug[k][keep1][:, prev1])
            layers.append(rec)
            prev1 = keep1
            h_lo = np.where(relu, np.maximum(l, 0.0), l)
            h_hi = np.where(relu, np.maximum(u, 0.0), u)
        L = self.net.n_layers
        R, n = self.C.shape
        A0 = self.C_aug[:, prev1]
        vals, out_back = self._np_back(A0, L - 1, layers, lo, hi, tape)
        l, u = layers[-1]["l"], layers[-1]["u"]
        relu = self.relu[-1]
        i_lo, i_hi = np.where(relu, np.maximum(l, 0.0), l), np.where(relu, np.maximum(u, 0.0), u)
        direct, c_lo, c_hi = vals[:R], -vals[R + n:], vals[R:R + n]
        take_clo, take_chi = c_lo >= i_lo, c_hi <= i_hi
        o_lo, o_hi = np.where(take_clo, c_lo, i_lo), np.where(take_chi, c_hi, i_hi)
        via = self.C_pos @ o_hi + self.C_neg @ o_lo
        take_direct = direct <= via
        return np.where(take_direct, direct, via), layers, out_back, \
            (take_direct, take_clo, take_chi)

    def _np_back(self, A, top: int, layers, lo, hi, tape: bool):
        """One backward pass (one box): ``A`` (R, kept units of layer ``top`` + 1) holds the
        rows and, in its last column, their constants. Returns the row bounds and, with
        ``tape``, the records of each relaxed layer and the final input coefficients."""
        rec = [] if tape else None
        for j in range(top, -1, -1):
            lay = layers[j]
            up = lay["upos"]
            if up.size:
                a_u = A[:, up]
                pos = np.maximum(a_u, 0.0)
                neg = a_u - pos
                A[:, -1] += pos @ lay["offset"]
                A[:, up] = pos * lay["chord"] + neg * lay["lower"]     # A is a fresh array
                if tape:
                    rec.append((j, a_u > 0, pos, neg))
            elif tape:
                rec.append((j, None, None, None))
            A = A @ lay["Waug"]
        if tape:
            rec.append(A)
        ax = A[:, :-1]
        return A[:, -1] + ax @ ((lo + hi) / 2) + abs(ax) @ ((hi - lo) / 2), rec

    def upper_vjp(self, lo, hi):
        """Upper bounds (R,) of the rows over one box ``[lo, hi]`` (vectors, numpy backend)
        and a function ``gbar -> (d(gbar . U)/d lo, d(gbar . U)/d hi)``: the exact gradient
        (reverse mode by hand, through the intermediate bounds, the slopes they set, and the
        interval bounds) of the piecewise-smooth bound, at the cost of about one more pass."""
        if self.backend != "numpy":
            raise ConfigError("upper_vjp needs the numpy backend")
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        up, layers, out_back, takes = self._np_eval(lo, hi, True)
        return up, lambda gbar: self._reverse(layers, out_back, takes, lo, hi,
                                              np.asarray(gbar, dtype=np.float64))

    def _reverse(self, layers, out_back, takes, lo, hi, gbar):
        """Adjoint of :meth:`_np_eval` (see :meth:`upper_vjp`)."""
        L = self.net.n_layers
        R, n = self.C.shape
        take_direct, take_clo, take_chi = takes
        lo_bar, hi_bar = np.zeros_like(lo), np.zeros_like(hi)
        bars = [[np.zeros(lay["uidx"].size) for _ in range(3)] for lay in layers]
        # output combination: U = min(direct, C+ o_hi + C- o_lo)
        via_bar = gbar * ~take_direct
        o_hi_bar, o_lo_bar = self.C_pos.T @ via_bar, self.C_neg.T @ via_bar
        vals_bar = np.concatenate([gbar * take_direct, o_hi_bar * take_chi,
                                   -o_lo_bar * take_clo])
        l_bar = [np.zeros(lay["l"].size) for lay in layers]
        u_bar = [np.zeros(lay["l"].size) for lay in layers]
        relu = self.relu[-1]
        l_bar[-1] += o_lo_bar * ~take_clo * np.where(relu, layers[-1]["l"] > 0, True)
        u_bar[-1] += o_hi_bar * ~take_chi * np.where(relu, layers[-1]["u"] > 0, True)
        self._back_vjp(out_back, vals_bar, layers, lo, hi, bars, lo_bar, hi_bar)
        for k in range(L - 1, -1, -1):
            lay = layers[k]
            self._slopes_vjp(lay, bars[k], l_bar[k], u_bar[k])
            lb, ub = l_bar[k], u_bar[k]
            if lay["back"] is not None:
                tl, tu = lay["take_l"], lay["take_u"]
                self._back_vjp(lay["back"], np.concatenate([ub * tu, -lb * tl]), layers, lo,
                               hi, bars, lo_bar, hi_bar)
                lb, ub = lb * ~tl, ub * ~tu
            # interval image: l = W+ h_lo + W- h_hi + b, u = W+ h_hi + W- h_lo + b
            h_lo_bar = lb @ self.Wp[k] + ub @ self.Wn[k]
            h_hi_bar = lb @ self.Wn[k] + ub @ self.Wp[k]
            if k == 0:
                lo_bar += h_lo_bar
                hi_bar += h_hi_bar
            else:
                prev, r = layers[k - 1], self.relu[k - 1]
                l_bar[k - 1] += h_lo_bar * np.where(r, prev["l"] > 0, True)
                u_bar[k - 1] += h_hi_bar * np.where(r, prev["u"] > 0, True)
        return lo_bar, hi_bar

    def _back_vjp(self, rec, gv, layers, lo, hi, bars, lo_bar, hi_bar) -> None:
        """Adjoint of one :meth:`_np_back` pass: accumulates into the slope adjoints
        ``bars[j] = [chord, offset, lower]`` (of the unstable units) and the box adjoints."""
        ax = rec[-1][:, :-1]
        lo_bar += gv @ (ax - abs(ax)) / 2
        hi_bar += gv @ (ax + abs(ax)) / 2
        A_bar = np.empty(rec[-1].shape)
        A_bar[:, :-1] = gv[:, None] * ((lo + hi) / 2 + np.sign(ax) * ((hi - lo) / 2))
        A_bar[:, -1] = gv                       # the constant column adds straight to U
        for j, positive, pos, neg in reversed(rec[:-1]):
            lay = layers[j]
            a2 = A_bar @ lay["Waug"].T
            if positive is not None:
                up = lay["upos"]
                a2_u = a2[:, up]
                bj = bars[j]
                bj[0] += (a2_u * pos).sum(0)
                bj[1] += gv @ pos
                bj[2] += (a2_u * neg).sum(0)
                a2[:, up] = np.where(positive, a2_u * lay["chord"] + gv[:, None] * lay["offset"],
                                     a2_u * lay["lower"])
            A_bar = a2

    def _slopes_vjp(self, lay, bar, l_bar, u_bar) -> None:
        """Adds the adjoints of (chord, offset, lower) of a layer's unstable units to those
        of their bounds (l, u): chord u / (u - l), offset -u l / (u - l)."""
        idx = lay["uidx"]
        if not idx.size:
            return
        l, u = lay["l"][idx], lay["u"][idx]
        d = (u - l) ** 2
        chord_bar = bar[0] + (bar[2] if self.method == "fastlin" else 0.0)
        l_bar[idx] += chord_bar * u / d - bar[1] * u * u / d
        u_bar[idx] += -chord_bar * l / d + bar[1] * l * l / d
