"""Symbolic execution of piecewise-affine graphs: tensors as affine expressions of a pool of
units, arranged into a layered :class:`~dynid.relunet.ReLUNet` at the end.

Used by :mod:`dynid.formats.onnx_io`; independent of ONNX itself.
"""

from __future__ import annotations

import numpy as np

from dynid.relunet import ReLUNet


class Expr:
    """A tensor of affine expressions: ``arr[..., 0]`` constant, ``arr[..., 1 + p]`` the
    coefficient of pool source p. Columns beyond ``arr.shape[-1]`` are zero."""

    __slots__ = ("arr",)

    def __init__(self, arr: np.ndarray):
        self.arr = arr

    @property
    def shape(self):
        return self.arr.shape[:-1]


class UnitPool:
    """Symbolic executor: pool of sources (inputs, then ReLU units defined by expressions)."""

    def __init__(self, n_in: int):
        self.n_in = n_in
        self.defs: list[np.ndarray] = []   # row (const + coefficients) of each unit
        self.is_relu: list[bool] = []      # ReLU unit, or identity unit (see materialise)
        self.depth: list[int] = [0] * n_in

    @property
    def width(self) -> int:
        return 1 + len(self.depth)

    def pad(self, arr: np.ndarray) -> np.ndarray:
        extra = self.width - arr.shape[-1]
        if extra <= 0:
            return arr
        return np.concatenate([arr, np.zeros(arr.shape[:-1] + (extra,))], axis=-1)

    def lift(self, v) -> np.ndarray:
        """Expression array of a value (constants get a constant column only)."""
        if isinstance(v, Expr):
            return self.pad(v.arr)
        c = np.asarray(v, dtype=np.float64)
        arr = np.zeros(c.shape + (self.width,))
        arr[..., 0] = c
        return arr

    def _unit(self, row: np.ndarray, relu: bool) -> int:
        deps = np.nonzero(row[1:])[0]
        self.defs.append(row.copy())
        self.is_relu.append(relu)
        self.depth.append(1 + max(self.depth[d] for d in deps))
        return len(self.depth) - 1

    def relu(self, v: Expr) -> Expr:
        """ReLU of every entry: a new ReLU unit per distinct non-constant expression."""
        arr = self.pad(v.arr)
        flat = arr.reshape(-1, arr.shape[-1])
        units: list = []
        seen: dict[bytes, int] = {}
        for row in flat:
            if not row[1:].any():          # a constant: fold
                units.append(("const", max(row[0], 0.0)))
                continue
            key = np.trim_zeros(row, "b").tobytes()
            if key not in seen:
                seen[key] = self._unit(row, True)
            units.append(("unit", seen[key]))
        return self._select(units, arr.shape[:-1])

    def materialise(self, v: Expr) -> Expr:
        """Turn the non-trivial affine entries of a tensor that also holds fresh ReLU units
        into identity units of the same layer (a mixed ReLU/identity layer, as save_onnx
        writes it with Where), so they are not folded forward and re-carried later."""
        arr = self.pad(v.arr)
        flat = arr.reshape(-1, arr.shape[-1])
        single = (np.count_nonzero(flat[:, 1:], axis=1) == 1) & (flat[:, 0] == 0) & \
            (flat[:, 1:].max(axis=1) == 1)
        src = np.argmax(flat[:, 1:] != 0, axis=1)
        fresh = single & np.array([s >= self.n_in and self.is_relu[s - self.n_in]
                                   for s in src])
        if not fresh.any():
            return v
        units: list = []
        for k, row in enumerate(flat):
            if single[k] or not row[1:].any():
                units.append(("row", row))
            else:
                units.append(("unit", self._unit(row, False)))
        return self._select(units, arr.shape[:-1])

    def _select(self, units, shape) -> Expr:
        out = np.zeros((len(units), self.width))
        for k, (kind, val) in enumerate(units):
            if kind == "const":
                out[k, 0] = val
            elif kind == "row":
                out[k, : val.size] = val
            else:
                out[k, 1 + val] = 1.0
        return Expr(out.reshape(tuple(shape) + (self.width,)))

    def to_relunet(self, out: Expr, meta: dict) -> ReLUNet:
        rows = self.pad(out.arr).reshape(-1, self.width)
        n_pool = len(self.depth)
        # sources the output needs, transitively
        needed = np.zeros(n_pool, bool)
        needed[np.nonzero(rows[:, 1:].any(axis=0))[0]] = True
        for p in range(n_pool - 1, self.n_in - 1, -1):
            if needed[p]:
                row = self.defs[p - self.n_in]
                needed[np.nonzero(row[1:])[0]] = True
        needed[: self.n_in] = True  # inputs always exist (layer 0)
        depth = np.array(self.depth)
        units = [p for p in range(self.n_in, n_pool) if needed[p]]
        big_d = int(depth[units].max()) if units else 0
        # the last depth at which each source is consumed (output counts as big_d + 1)
        last_use = np.full(n_pool, -1)
        for p in units:
            row = self.defs[p - self.n_in]
            deps = np.nonzero(row[1:])[0]
            last_use[deps] = np.maximum(last_use[deps], depth[p])
        last_use[np.nonzero(rows[:, 1:].any(axis=0))[0]] = big_d + 1
        # position[p]: index of source p among the current layer's units (-1: not there)
        position = np.full(n_pool, -1)
        position[: self.n_in] = np.arange(self.n_in)
        ws, bs, ms = [], [], []
        for d in range(1, big_d + 1):
            layer = [p for p in units if depth[p] == d]
            carry = [p for p in range(n_pool) if needed[p] and depth[p] < d and last_use[p] > d]
            w = np.zeros((len(layer) + len(carry), int((position >= 0).sum())))
            b = np.zeros(len(layer) + len(carry))
            for k, p in enumerate(layer):
                row = self.defs[p - self.n_in]
                b[k] = row[0]
                deps = np.nonzero(row[1:])[0]
                w[k, position[deps]] = row[1 + deps]
            for k, p in enumerate(carry, start=len(layer)):
                w[k, position[p]] = 1.0
            ws.append(w)
            bs.append(b)
            ms.append(np.r_[[self.is_relu[p - self.n_in] for p in layer],
                            np.zeros(len(carry), bool)].astype(bool))
            position = np.full(n_pool, -1)
            position[layer + carry] = np.arange(len(layer) + len(carry))
        w = np.zeros((rows.shape[0], int((position >= 0).sum())))
        used = np.nonzero(rows[:, 1:].any(axis=0))[0]
        w[:, position[used]] = rows[:, 1 + used]
        b = rows[:, 0].copy()
        if ws and w.shape[0] == w.shape[1] and not b.any() and np.all((w == 0) | (w == 1)) \
                and np.all(w.sum(axis=0) == 1) and np.all(w.sum(axis=1) == 1):
            # the graph ends with the last layer itself (up to an order): reorder its units
            order = np.argmax(w, axis=1)
            ws[-1], bs[-1], ms[-1] = ws[-1][order], bs[-1][order], ms[-1][order]
            return ReLUNet(ws, bs, ms, meta)
        return ReLUNet(ws + [w], bs + [b], ms + [np.zeros(w.shape[0], bool)], meta)
