"""ONNX import (piecewise-affine graphs -> :class:`ReLUNet`) and export (any ReLUNet -> ONNX).

Only the ``onnx`` package is used (no onnxruntime).

Import works by symbolic execution: every tensor is kept as an *affine expression* of a pool
of scalar sources (the input entries and the ReLU units created so far), so any graph built
from affine operators and ReLUs converts exactly, whatever its wiring (skip connections,
concatenations, MATLAB-style 1x1 convolutions, normalisation nodes). At the end the ReLU units
that the output needs are arranged in layers by depth, and values needed later are carried
forward by identity units. A plain Gemm/Relu chain comes back with the same layers and
bit-identical weights.

Supported operators: Gemm (transA, transB, alpha, beta), MatMul, Add, Sub, Mul, Div (by a
constant), Neg, Sum, Relu, LeakyRelu, PRelu (constant slope), Max/Min/Clip with constants,
Where (constant condition), BatchNormalization (inference), Conv with 1x1 kernels (dense layer
on 1x1 spatial inputs, as MATLAB exports write them), Identity, Dropout, Flatten, Reshape,
Squeeze, Unsqueeze, Transpose, Concat, Slice, Gather, Split, Cast, Shape, Constant,
ConstantOfShape; nodes whose inputs are all constants are folded with the onnx reference
evaluator. Any other operator raises :class:`UnsupportedLayerError` naming the node.
The batch dimension (symbolic or not) is taken as 1; ``n_in`` is the number of entries of one
input sample.

Example
-------
>>> import numpy as np
>>> from dynid.relunet import ReLUNet
>>> net = ReLUNet([np.ones((3, 2)), np.ones((1, 3))], [np.zeros(3), np.zeros(1)])
>>> save_onnx(net, "/tmp/example_net.onnx")              # doctest: +ELLIPSIS
PosixPath('/tmp/example_net.onnx')
>>> back = load_onnx("/tmp/example_net.onnx")
>>> back.forward(np.array([1.0, 2.0])).tolist()
[9.0]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dynid.atomic import atomic_path
from dynid.errors import DynidError, ModelFileError, ShapeError, UnsupportedLayerError
from dynid.formats.onnx_ops import run_node
from dynid.formats.onnx_symbolic import Expr, UnitPool
from dynid.modelfile import MAX_PARAMETERS, check_declared
from dynid.relunet import ReLUNet
from dynid.results import jsonable

META_KEY = "dynid_meta"


# ====================================================================== export


def save_onnx(net: ReLUNet, path, dtype="float64", opset: int = 13) -> Path:
    """Write ``net`` as an ONNX graph (atomic write); returns the path.

    Layer i is ``Gemm(h, W_i, b_i, transB=1)`` followed by ``Relu`` when all its units are ReLU,
    by ``Where(mask_i, Relu(z), z)`` when the mask is mixed (exact: the identity units take
    ``z`` itself), and by nothing when all units are identity. Input ``"input"`` and output
    ``"output"`` have shape ``["batch", n]``; ``net.meta`` is stored as JSON in the model's
    metadata (``dynid_meta``) and restored by :func:`load_onnx`.

    Parameters
    ----------
    dtype : "float64" (default, the exact map) or "float32" (weights rounded).

    Example
    -------
    >>> save_onnx(net, "controller.onnx", dtype="float32")   # doctest: +SKIP
    """
    import onnx

    model = to_onnx_model(net, dtype=dtype, opset=opset)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:  # pragma: no cover - a bug here, not user error
        raise RuntimeError(f"exported ONNX model failed the checker: {exc}") from exc
    path = Path(path)
    with atomic_path(path, suffix=".onnx.tmp") as tmp:
        onnx.save_model(model, str(tmp))
    return path


def to_onnx_model(net: ReLUNet, dtype="float64", opset: int = 13):
    """The in-memory ``onnx.ModelProto`` written by :func:`save_onnx`.

    Example
    -------
    >>> from onnx.reference import ReferenceEvaluator
    >>> from dynid.relunet import linear
    >>> model = to_onnx_model(linear([[2.0, 1.0]]))
    >>> ReferenceEvaluator(model).run(None, {"input": np.array([[1.0, 1.0]])})[0].tolist()
    [[3.0]]
    """
    from onnx import TensorProto, helper, numpy_helper

    if int(opset) < 9:
        raise ShapeError(f"ONNX export needs opset 9 or later (Where), got {opset}")
    np_dtype = {"float64": np.float64, "float32": np.float32}.get(str(np.dtype(dtype)))
    if np_dtype is None:
        raise ShapeError(f"ONNX export dtype {dtype!r} is not supported: use float64 or float32")
    elem = TensorProto.DOUBLE if np_dtype is np.float64 else TensorProto.FLOAT
    nodes, inits = [], []
    h = "input"
    for i, (w, b, m) in enumerate(zip(net.weights, net.biases, net.relu)):
        last = i == net.n_layers - 1
        inits.append(numpy_helper.from_array(np.ascontiguousarray(w, np_dtype), f"W{i}"))
        inits.append(numpy_helper.from_array(np.ascontiguousarray(b, np_dtype), f"b{i}"))
        z = "output" if last and not m.any() else f"z{i}"
        nodes.append(helper.make_node("Gemm", [h, f"W{i}", f"b{i}"], [z], name=f"dense{i}",
                                      transB=1))
        if m.all():
            h = "output" if last else f"h{i}"
            nodes.append(helper.make_node("Relu", [z], [h], name=f"relu{i}"))
        elif m.any():
            inits.append(numpy_helper.from_array(m.copy(), f"mask{i}"))
            nodes.append(helper.make_node("Relu", [z], [f"r{i}"], name=f"relu{i}"))
            h = "output" if last else f"h{i}"
            nodes.append(helper.make_node("Where", [f"mask{i}", f"r{i}", z], [h],
                                          name=f"select{i}"))
        else:
            h = z
    graph = helper.make_graph(
        nodes, "dynid_relunet",
        [helper.make_tensor_value_info("input", elem, ["batch", net.n_in])],
        [helper.make_tensor_value_info("output", elem, ["batch", net.n_out])],
        initializer=inits)
    from dynid import __version__

    model = helper.make_model(graph, producer_name="dynid", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", int(opset))])
    model.ir_version = min(model.ir_version, 8)  # readable by older runtimes
    helper.set_model_props(model, {META_KEY: json.dumps(jsonable(net.meta))})
    return model


# ====================================================================== import


# the symbolic conversion keeps an (inputs x inputs) matrix per value: cap the input size
MAX_INPUTS = 4096


def _check_initializer(init, source, budget) -> None:
    """Declared dims of a constant against a limit and against the data the file holds,
    before numpy materialises it."""
    from onnx import TensorProto, helper

    dims = [int(d) for d in init.dims]
    if any(d < 0 for d in dims):
        raise ModelFileError(f"{source}: constant '{init.name}' has negative dims {dims}")
    n = check_declared(int(np.prod(dims, dtype=object)) if dims else 1, source,
                       f"constant '{init.name}'", budget)
    if init.data_location == TensorProto.EXTERNAL:
        raise ModelFileError(f"{source}: constant '{init.name}' keeps its data in an external "
                             "file; save the model with its data inside (onnx.save with "
                             "save_as_external_data=False)")
    if init.HasField("raw_data") or init.raw_data:
        try:
            size = helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        except Exception:
            return
        if len(init.raw_data) != n * size:
            raise ModelFileError(f"{source}: constant '{init.name}' declares {n} values but "
                                 f"holds {len(init.raw_data) // max(size, 1)}; the file is "
                                 "corrupt")
        return
    held = max(len(init.float_data), len(init.double_data), len(init.int32_data),
               len(init.int64_data), len(init.uint64_data), len(init.string_data))
    if held != n and not (n == 0 and held == 0):
        raise ModelFileError(f"{source}: constant '{init.name}' declares {n} values but holds "
                             f"{held}; the file is corrupt")


def load_onnx(path, input_shape=None, keep_layers: bool = True) -> ReLUNet:
    """Convert an ONNX model of affine operators and ReLUs into a :class:`ReLUNet`.

    Parameters
    ----------
    path : file path, or an ``onnx.ModelProto``.
    input_shape : shape of the single input to assume when the file does not give it fully
        (unknown and symbolic dimensions otherwise count as 1).
    keep_layers : for a file written by :func:`save_onnx`, rebuild its layers and ReLU masks
        exactly (identity units stay identity units). ``False`` always uses the general
        conversion, which folds identity units into the next layer and carries the values
        needed later instead (same map, possibly different layer widths).

    Example
    -------
    >>> net = load_onnx("controller.onnx")   # doctest: +SKIP
    >>> net.widths                           # doctest: +SKIP
    [2, 10, 5, 1]
    """
    import onnx

    if isinstance(path, onnx.ModelProto):
        model, source = path, "<model>"
    else:
        source = str(path)
        if not Path(path).exists():
            raise ModelFileError(f"ONNX file {path} does not exist")
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # onnx raises DecodeError and others for corrupt files
            raise ModelFileError(f"{path} is not a readable ONNX model ({exc})") from None
    graph = model.graph
    consts: dict[str, np.ndarray] = {}
    from onnx import numpy_helper

    budget = [MAX_PARAMETERS]
    for init in graph.initializer:
        _check_initializer(init, source, budget)
        consts[init.name] = numpy_helper.to_array(init)
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise UnsupportedLayerError(f"{source}: the graph has {len(inputs)} non-constant inputs "
                                    f"({[i.name for i in inputs]}); dynid imports one input")
    if len(graph.output) != 1:
        raise UnsupportedLayerError(f"{source}: the graph has {len(graph.output)} outputs; "
                                    "dynid imports graphs with one output")
    inp = inputs[0]
    if input_shape is None:
        dims = inp.type.tensor_type.shape.dim
        input_shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
                            for d in dims)
        if not dims:
            raise ModelFileError(f"{source}: input '{inp.name}' has no shape; pass input_shape=")
    input_shape = tuple(int(s) for s in input_shape)
    n_in = int(np.prod(input_shape))
    if n_in > MAX_INPUTS or min(input_shape, default=1) < 1:
        raise ModelFileError(f"{source}: input '{inp.name}' declares shape {input_shape} "
                             f"({n_in} values); dynid imports networks of 1..{MAX_INPUTS} "
                             "inputs")
    builder = UnitPool(n_in)
    arr = np.zeros((n_in, 1 + n_in))
    arr[:, 1:] = np.eye(n_in)
    values: dict[str, object] = dict(consts)
    values[inp.name] = Expr(arr.reshape(input_shape + (1 + n_in,)))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                default=13)
    for node in graph.node:
        try:
            outs = run_node(node, values, builder, opset)
        except DynidError:
            raise
        except Exception as exc:
            raise UnsupportedLayerError(f"{source}: node '{node.name}' (op_type {node.op_type}) "
                                        f"could not be converted: {exc}") from None
        for name, val in zip(node.output, outs):
            if name:
                values[name] = val
    out_name = graph.output[0].name
    if out_name not in values:
        raise ModelFileError(f"{source}: output '{out_name}' is not produced by any node")
    out = values[out_name]
    if not isinstance(out, Expr):
        out = Expr(builder.lift(out))
    meta = {"source": "onnx", "onnx_file": source, "producer": model.producer_name,
            "input_name": inp.name, "output_name": out_name, "input_shape": list(input_shape)}
    for prop in model.metadata_props:
        if prop.key == META_KEY:
            try:
                meta = {**json.loads(prop.value), **meta}
            except json.JSONDecodeError:
                pass
    if keep_layers:
        own = _read_own_layers(model, consts, meta)
        if own is not None:
            return own
    return builder.to_relunet(out, meta)


def _read_own_layers(model, consts, meta) -> ReLUNet | None:
    """Layers and masks of a graph written by :func:`save_onnx` exactly as they were, or None
    when the graph is not in that pattern (then the general conversion's result is used)."""
    if model.producer_name != "dynid":
        return None
    ws, bs, ms = [], [], []
    nodes = list(model.graph.node)
    k, h = 0, "input"
    try:
        while k < len(nodes):
            g = nodes[k]
            i = len(ws)
            if g.op_type != "Gemm" or list(g.input) != [h, f"W{i}", f"b{i}"] or \
                    any(a.name != "transB" for a in g.attribute):
                return None
            w, bias = consts[f"W{i}"], consts[f"b{i}"]
            z, k = g.output[0], k + 1
            mask = np.zeros(w.shape[0], bool)
            if k < len(nodes) and nodes[k].op_type == "Relu" and list(nodes[k].input) == [z]:
                r, k = nodes[k].output[0], k + 1
                mask[:] = True
                if k < len(nodes) and nodes[k].op_type == "Where" and \
                        list(nodes[k].input) == [f"mask{i}", r, z]:
                    mask = np.asarray(consts[f"mask{i}"], bool).reshape(-1)
                    r, k = nodes[k].output[0], k + 1
                h = r
            else:
                h = z
            ws.append(w)
            bs.append(bias)
            ms.append(mask)
        if h != model.graph.output[0].name:
            return None
        return ReLUNet(ws, bs, ms, meta)
    except (KeyError, IndexError, DynidError):
        return None


__all__ = ["load_onnx", "save_onnx", "to_onnx_model"]
