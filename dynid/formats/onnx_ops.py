"""ONNX operators for the symbolic converter of :mod:`dynid.formats.onnx_io`.

Each handler takes the node, its input values (numpy constants or :class:`Expr`), its
attributes, the unit pool, all values so far and the opset, and returns the output values.
"""

from __future__ import annotations

import numpy as np

from dynid.errors import ModelFileError, UnsupportedLayerError
from dynid.formats.onnx_symbolic import Expr, UnitPool


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _unsupported(node, why: str):
    return UnsupportedLayerError(f"ONNX node '{node.name}' (op_type {node.op_type}) is not "
                                 f"supported: {why}")


def _const(values, name, node, what="input"):
    v = values[name]
    if isinstance(v, Expr):
        raise _unsupported(node, f"its {what} '{name}' must be a constant (it depends on the "
                                 "network input, which would make the map non-piecewise-affine)")
    return np.asarray(v)


def run_node(node, values, b: UnitPool, opset: int) -> list:
    op = node.op_type
    a = _attrs(node)
    for n in node.input:
        if n and n not in values:
            raise ModelFileError(f"ONNX node '{node.name}' (op_type {op}) reads '{n}', which no "
                                 "earlier node produces (is the graph topologically sorted?)")
    ins = [values[n] if n else None for n in node.input]
    if op == "Constant":
        return [_constant_value(node, a)]
    if op == "Shape":
        v = ins[0]
        return [np.asarray(v.shape if isinstance(v, Expr) else np.shape(v), dtype=np.int64)]
    if not any(isinstance(v, Expr) for v in ins):
        return _fold_constant(node, ins, opset)
    handler = _HANDLERS.get(op)
    if handler is None:
        raise _unsupported(node, "dynid converts only affine operators and ReLUs (see "
                                 "dynid.formats.onnx_io); export the network without it")
    return handler(node, ins, a, b, values, opset)


def _constant_value(node, a):
    from onnx import numpy_helper

    if "value" in a:
        return numpy_helper.to_array(a["value"])
    for key, dt in (("value_float", np.float32), ("value_floats", np.float32),
                    ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype=dt)
    raise _unsupported(node, "Constant without a dense value")


def _fold_constant(node, ins, opset) -> list:
    """Evaluate a node whose inputs are all constants with the onnx reference evaluator."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    names = [f"i{k}" if n else "" for k, n in enumerate(node.input)]
    outs = [f"o{k}" for k in range(len(node.output))]
    inits = [numpy_helper.from_array(np.asarray(v), n) for v, n in zip(ins, names) if n]
    new = helper.make_node(node.op_type, names, outs, domain=node.domain)
    new.attribute.extend(node.attribute)
    graph = helper.make_graph([new], "fold", [], [helper.make_empty_tensor_value_info(o)
                                                  for o in outs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(node.domain or "",
                                                                        opset)])
    try:
        res = ReferenceEvaluator(model).run(None, {})
    except Exception as exc:
        raise _unsupported(node, f"constant folding failed ({exc})") from None
    return [np.asarray(r) for r in res]


def _axis(ax: int, rank: int) -> int:
    return ax + rank if ax < 0 else ax


def _matmul(x, y, b: UnitPool, node):
    """numpy matmul semantics with one side constant; the coefficient axis is moved to the
    front so numpy's batching rules apply unchanged."""
    if isinstance(x, Expr) and isinstance(y, Expr):
        raise _unsupported(node, "product of two input-dependent tensors is not piecewise affine")
    if isinstance(x, Expr):
        c = np.asarray(y, dtype=np.float64)
        m = np.moveaxis(b.pad(x.arr), -1, 0)        # (P, ..., k)
        if m.ndim == 2 and c.ndim > 2:
            raise _unsupported(node, "a vector times a batched constant is not supported")
        res = np.matmul(m, c)        # a vector x gives m (P, k): rows are the coefficients
        return Expr(np.moveaxis(res, 0, -1))
    c = np.asarray(x, dtype=np.float64)
    m = np.moveaxis(b.pad(y.arr), -1, 0)             # (P, ..., k, n)
    if m.ndim == 2:                                  # y is a vector: (..., k) @ (k,)
        res = np.matmul(c, m[..., None])[..., 0]
    else:
        res = np.matmul(c, m)
    return Expr(np.moveaxis(res, 0, -1))


def _add(x, y, b, sign=1.0):
    if not isinstance(x, Expr) and not isinstance(y, Expr):
        return np.asarray(x) + sign * np.asarray(y)
    xa, ya = b.lift(x), b.lift(y)
    return Expr(xa + sign * ya)


def _scale(x, c, b, node, divide=False):
    if isinstance(x, Expr) and isinstance(c, Expr):
        raise _unsupported(node, "product of two input-dependent tensors is not piecewise affine")
    if isinstance(c, Expr):
        x, c = c, x
    c = np.asarray(c, dtype=np.float64)
    if divide:
        c = 1.0 / c
    return Expr(b.pad(x.arr) * c[..., None])


def _h_gemm(node, ins, a, b, values, opset):
    x, y = ins[0], ins[1]
    if a.get("transA", 0):
        x = _transpose(x, (1, 0))
    if a.get("transB", 0):
        y = _transpose(y, (1, 0))
    out = _matmul(x, y, b, node)
    alpha = float(a.get("alpha", 1.0))
    if alpha != 1.0:
        out = Expr(out.arr * alpha)
    if len(ins) > 2 and ins[2] is not None:
        beta = float(a.get("beta", 1.0))
        c = ins[2]
        out = _add(out, _scale(c, beta, b, node) if isinstance(c, Expr)
                   else beta * np.asarray(c, np.float64), b)
    return [out]


def _transpose(v, perm):
    if isinstance(v, Expr):
        return Expr(np.transpose(v.arr, tuple(perm) + (len(perm),)))
    return np.transpose(np.asarray(v), perm)


def _h_relu(node, ins, a, b, values, opset):
    return [b.relu(ins[0])]


def _h_leaky(node, ins, a, b, values, opset):
    # leaky(z) = s z + (1 - s) relu(z): one ReLU unit per entry, exact in exact arithmetic
    x = ins[0]
    s = float(a.get("alpha", 0.01)) if node.op_type == "LeakyRelu" else \
        _const(values, node.input[1], node, "slope")
    s = np.asarray(s, dtype=np.float64)
    r = b.relu(x)
    return [Expr(b.pad(x.arr) * s[..., None] + b.pad(r.arr) * (1.0 - s)[..., None])]


def _h_max_min(node, ins, a, b, values, opset):
    exprs = [v for v in ins if isinstance(v, Expr)]
    consts = [np.asarray(v, np.float64) for v in ins if v is not None and not isinstance(v, Expr)]
    if len(exprs) != 1:
        raise _unsupported(node, "only the max/min of one input-dependent tensor and constants "
                                 "is supported")
    x = exprs[0]
    for c in consts:
        x = _clip_one(x, c, b, upper=node.op_type == "Min")
    return [x]


def _clip_one(x, c, b, upper: bool):
    """max(x, c) = c + relu(x - c); min(x, c) = c - relu(c - x)."""
    c = np.asarray(c, dtype=np.float64)
    if not np.all(np.isfinite(c)):
        raise ValueError("infinite clipping limits are not supported")
    if upper:
        return _add(c, b.relu(_add(c, x, b, -1.0)), b, -1.0)
    r = b.relu(_add(x, c, b, -1.0))
    return _add(r, c, b)


def _h_clip(node, ins, a, b, values, opset):
    x = ins[0]
    if opset < 11:
        lo, hi = a.get("min"), a.get("max")
    else:
        lo = _const(values, node.input[1], node, "min") if len(ins) > 1 and ins[1] is not None \
            else None
        hi = _const(values, node.input[2], node, "max") if len(ins) > 2 and ins[2] is not None \
            else None
    finite = lambda v: v is not None and np.all(np.isfinite(v))  # noqa: E731
    lo, hi = (lo if finite(lo) else None), (hi if finite(hi) else None)
    if lo is not None:
        x = _clip_one(x, lo, b, upper=False)
    if hi is not None:
        x = _clip_one(x, hi, b, upper=True)
    return [x]


def _h_where(node, ins, a, b, values, opset):
    cond = _const(values, node.input[0], node, "condition").astype(bool)
    xa, ya = b.lift(ins[1]), b.lift(ins[2])
    return [b.materialise(Expr(np.where(cond[..., None], xa, ya)))]


def _h_batchnorm(node, ins, a, b, values, opset):
    x = ins[0]
    scale, bias, mean, var = (np.asarray(v, np.float64) for v in ins[1:5])
    eps = float(a.get("epsilon", 1e-5))
    rank = len(x.shape)
    shape = (-1,) + (1,) * (rank - 2)
    g = (scale / np.sqrt(var + eps)).reshape(shape)
    off = (bias - mean * scale / np.sqrt(var + eps)).reshape(shape)
    return [_add(Expr(b.pad(x.arr) * g[..., None]), off, b)]


def _h_conv(node, ins, a, b, values, opset):
    x = ins[0]
    w = _const(values, node.input[1], node, "weight").astype(np.float64)
    if int(a.get("group", 1)) != 1:
        raise _unsupported(node, "grouped convolutions are not supported")
    if any(int(k) != 1 for k in w.shape[2:]):
        raise _unsupported(node, f"kernel {list(w.shape[2:])}: only 1x1 convolutions (dense "
                                 "layers in MATLAB exports) are supported")
    if any(int(p) != 0 for p in a.get("pads", [])) or a.get("auto_pad", b"NOTSET") not in (
            b"NOTSET", "NOTSET", b"VALID", "VALID"):
        raise _unsupported(node, "padded convolutions are not supported")
    arr = b.pad(x.arr)
    strides = a.get("strides")
    if strides and any(int(s) != 1 for s in strides):
        arr = arr[(slice(None), slice(None)) + tuple(slice(None, None, int(s)) for s in strides)]
    wm = w.reshape(w.shape[0], w.shape[1])
    res = np.einsum("mc,nc...p->nm...p", wm, arr)
    if len(ins) > 2 and ins[2] is not None:
        bias = np.asarray(ins[2], np.float64).reshape((1, -1) + (1,) * (len(x.shape) - 2))
        res = res.copy()
        res[..., 0] += bias
    return [Expr(res)]


def _reshape_target(shape, new):
    new = [int(s) for s in new]
    out = [shape[i] if s == 0 else s for i, s in enumerate(new)]
    return tuple(out)


def _data_op(fn):
    """Apply a pure data-movement function to constants, or to expressions (keeping the
    trailing coefficient axis last)."""

    def apply(v, *args):
        if isinstance(v, Expr):
            return Expr(fn(v.arr, True, *args))
        return fn(np.asarray(v), False, *args)

    return apply


@_data_op
def _reshape(arr, is_expr, new):
    shape = arr.shape[:-1] if is_expr else arr.shape
    target = _reshape_target(shape, new)
    return arr.reshape(target + ((arr.shape[-1],) if is_expr else ()))


def _h_reshape(node, ins, a, b, values, opset):
    new = a["shape"] if opset < 5 and "shape" in a else _const(values, node.input[1], node,
                                                               "shape")
    return [_reshape(ins[0], new)]


def _h_flatten(node, ins, a, b, values, opset):
    x = ins[0]
    shape = x.shape if isinstance(x, Expr) else np.shape(x)
    ax = _axis(int(a.get("axis", 1)), len(shape))
    new = (int(np.prod(shape[:ax])), int(np.prod(shape[ax:])))
    return [_reshape(x, new)]


def _axes_of(node, ins, a, values, opset, k=1):
    if "axes" in a:
        return [int(v) for v in a["axes"]]
    if len(ins) > k and ins[k] is not None:
        return [int(v) for v in _const(values, node.input[k], node, "axes").reshape(-1)]
    return None


def _h_squeeze(node, ins, a, b, values, opset):
    x = ins[0]
    shape = x.shape if isinstance(x, Expr) else np.shape(x)
    axes = _axes_of(node, ins, a, values, opset)
    axes = [i for i, s in enumerate(shape) if s == 1] if axes is None else \
        [_axis(i, len(shape)) for i in axes]
    new = [s for i, s in enumerate(shape) if i not in axes]
    return [_reshape(x, new)]


def _h_unsqueeze(node, ins, a, b, values, opset):
    x = ins[0]
    shape = list(x.shape if isinstance(x, Expr) else np.shape(x))
    axes = _axes_of(node, ins, a, values, opset)
    rank = len(shape) + len(axes)
    for ax in sorted(_axis(i, rank) for i in axes):
        shape.insert(ax, 1)
    return [_reshape(x, shape)]


def _h_transpose(node, ins, a, b, values, opset):
    x = ins[0]
    rank = len(x.shape if isinstance(x, Expr) else np.shape(x))
    perm = a.get("perm", list(range(rank))[::-1])
    return [_transpose(x, [int(p) for p in perm])]


def _h_concat(node, ins, a, b, values, opset):
    parts = [v for v in ins if v is not None]
    rank = len(parts[0].shape if isinstance(parts[0], Expr) else np.shape(parts[0]))
    ax = _axis(int(a["axis"]), rank)
    if not any(isinstance(v, Expr) for v in parts):
        return [np.concatenate([np.asarray(v) for v in parts], axis=ax)]
    return [b.materialise(Expr(np.concatenate([b.lift(v) for v in parts], axis=ax)))]


def _h_slice(node, ins, a, b, values, opset):
    x = ins[0]
    shape = x.shape if isinstance(x, Expr) else np.shape(x)
    if opset < 10:
        starts, ends = a["starts"], a["ends"]
        axes = a.get("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        get = lambda k: None if len(ins) <= k or ins[k] is None else \
            [int(v) for v in _const(values, node.input[k], node).reshape(-1)]  # noqa: E731
        starts, ends = get(1), get(2)
        axes = get(3) or list(range(len(starts)))
        steps = get(4) or [1] * len(starts)
    idx = [slice(None)] * len(shape)
    for s, e, ax, st in zip(starts, ends, axes, steps):
        idx[_axis(int(ax), len(shape))] = slice(int(s), int(e), int(st))
    if isinstance(x, Expr):
        return [Expr(x.arr[tuple(idx)])]
    return [np.asarray(x)[tuple(idx)]]


def _h_gather(node, ins, a, b, values, opset):
    x = ins[0]
    ind = _const(values, node.input[1], node, "indices").astype(np.int64)
    shape = x.shape if isinstance(x, Expr) else np.shape(x)
    ax = _axis(int(a.get("axis", 0)), len(shape))
    if isinstance(x, Expr):
        return [Expr(np.take(x.arr, ind, axis=ax))]
    return [np.take(np.asarray(x), ind, axis=ax)]


def _h_split(node, ins, a, b, values, opset):
    x = ins[0]
    shape = x.shape if isinstance(x, Expr) else np.shape(x)
    ax = _axis(int(a.get("axis", 0)), len(shape))
    if "split" in a:
        sizes = [int(s) for s in a["split"]]
    elif len(ins) > 1 and ins[1] is not None:
        sizes = [int(s) for s in _const(values, node.input[1], node, "split")]
    else:
        k = len(node.output)
        sizes = [-(-shape[ax] // k)] * k
        sizes[-1] = shape[ax] - sum(sizes[:-1])
    bounds = np.cumsum([0] + sizes)
    outs = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        idx = [slice(None)] * len(shape)
        idx[ax] = slice(int(lo), int(hi))
        outs.append(Expr(x.arr[tuple(idx)]) if isinstance(x, Expr)
                    else np.asarray(x)[tuple(idx)])
    return outs


def _h_identity(node, ins, a, b, values, opset):
    return [ins[0]] + [None] * (len(node.output) - 1)


def _h_cast(node, ins, a, b, values, opset):
    from onnx import TensorProto

    if a.get("to") not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16,
                           TensorProto.BFLOAT16):
        raise _unsupported(node, "casting the network's values to a non-float type")
    return [ins[0]]


def _h_add(node, ins, a, b, values, opset):
    return [_add(ins[0], ins[1], b)]


def _h_sub(node, ins, a, b, values, opset):
    return [_add(ins[0], ins[1], b, -1.0)]


def _h_sum(node, ins, a, b, values, opset):
    out = ins[0]
    for v in ins[1:]:
        out = _add(out, v, b)
    return [out]


def _h_neg(node, ins, a, b, values, opset):
    return [Expr(-b.pad(ins[0].arr))]


def _h_mul(node, ins, a, b, values, opset):
    return [_scale(ins[0], ins[1], b, node)]


def _h_div(node, ins, a, b, values, opset):
    if isinstance(ins[1], Expr):
        raise _unsupported(node, "division by an input-dependent tensor is not piecewise affine")
    return [_scale(ins[0], ins[1], b, node, divide=True)]


def _h_matmul(node, ins, a, b, values, opset):
    return [_matmul(ins[0], ins[1], b, node)]


_HANDLERS = {
    "Gemm": _h_gemm, "MatMul": _h_matmul, "Add": _h_add, "Sub": _h_sub, "Sum": _h_sum,
    "Neg": _h_neg, "Mul": _h_mul, "Div": _h_div, "Relu": _h_relu, "LeakyRelu": _h_leaky,
    "PRelu": _h_leaky, "Max": _h_max_min, "Min": _h_max_min, "Clip": _h_clip,
    "Where": _h_where, "BatchNormalization": _h_batchnorm, "Conv": _h_conv,
    "Identity": _h_identity, "Dropout": _h_identity, "Flatten": _h_flatten,
    "Reshape": _h_reshape, "Squeeze": _h_squeeze, "Unsqueeze": _h_unsqueeze,
    "Transpose": _h_transpose, "Concat": _h_concat, "Slice": _h_slice, "Gather": _h_gather,
    "Split": _h_split, "Cast": _h_cast,
}
