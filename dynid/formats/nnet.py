"""The ``.nnet`` text format (ACAS Xu / Reluplex / Marabou) <-> :class:`ReLUNet`.

Layout: ``//`` comment lines; then ``numLayers, inputSize, outputSize, maxLayerSize``; the
``numLayers + 1`` layer sizes; an unused flag; input minimums; input maximums; means and
ranges (``inputSize + 1`` each, the last for the outputs); then for every layer its weight
rows (one row per line) followed by its biases (one per line). Hidden layers are ReLU, the
output layer is linear. The file's map is::

    y = range_out * N((clip(x, min, max) - mean_in) / range_in) + mean_out

What is folded into the ReLUNet: the input normalisation ``(x - mean) / range`` into the first
layer and the output scaling ``range_out * y + mean_out`` into the last layer, so the network
maps physical inputs to physical outputs. The input clipping is *not* folded by default (it is
not affine): the box ``[min, max]`` is kept as ``meta["domain"]``, on which the two maps agree;
``clip_inputs=True`` prepends it exactly as a ReLU layer (``lo + relu(x - lo) - relu(x - hi)``).

Example
-------
>>> import numpy as np
>>> from dynid.relunet import ReLUNet
>>> net = ReLUNet([np.ones((2, 1)), np.ones((1, 2))], [np.zeros(2), np.zeros(1)])
>>> _ = save_nnet(net, "/tmp/example.nnet", input_lo=[-1], input_hi=[1])
>>> load_nnet("/tmp/example.nnet").forward(np.array([0.5])).tolist()
[1.0]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dynid.atomic import write_text_atomic
from dynid.errors import DynidError, ModelFileError, ShapeError
from dynid.relunet import ReLUNet, compose

UNBOUNDED = 1e30  # |min/max| at or above this is read as "no limit"


def load_nnet(path, clip_inputs: bool = False) -> ReLUNet:
    """Read an ``.nnet`` file; normalisation folded in (see the module docstring).

    Parameters
    ----------
    clip_inputs : prepend the file's input clipping to [min, max] as an exact ReLU layer.
        Default False: the network is the file's map on ``meta["domain"]`` only.

    Example
    -------
    >>> net = load_nnet("ACASXU_run2a_1_1_batch_2000.nnet")   # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f".nnet file {path} does not exist")
    text = path.read_text()
    tokens: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("//"):
            continue
        tokens.extend(t for t in line.replace(",", " ").split())
    try:
        nums = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError as exc:
        raise ModelFileError(f"{path} is not a valid .nnet file: {exc}") from None
    pos = 0

    def take(k: int, what: str) -> np.ndarray:
        nonlocal pos
        if pos + k > nums.size:
            raise ModelFileError(f"{path} ends early while reading {what} (needs {k} more "
                                 f"numbers, has {nums.size - pos}); the file is truncated")
        out = nums[pos:pos + k]
        pos += k
        return out

    head = take(4, "the header (numLayers, inputSize, outputSize, maxLayerSize)")
    if np.any(head != np.round(head)) or np.any(head < 1):
        raise ModelFileError(f"{path}: header {head.tolist()} must be four positive integers")
    n_layers, n_in, n_out = (int(v) for v in head[:3])
    from dynid.modelfile import MAX_LAYERS, check_declared

    if n_layers > MAX_LAYERS:
        raise ModelFileError(f"{path}: header declares {n_layers} layers (at most {MAX_LAYERS})")
    sizes = take(n_layers + 1, "the layer sizes").astype(int)
    budget = [nums.size]   # a text file holds what it holds: no size beyond its numbers
    for i in range(n_layers):
        check_declared(int(sizes[i + 1]) * int(sizes[i]) + int(sizes[i + 1]), path,
                       f"layer {i + 1}", budget)
    if sizes[0] != n_in or sizes[-1] != n_out:
        raise ModelFileError(f"{path}: layer sizes {sizes.tolist()} disagree with inputSize "
                             f"{n_in} / outputSize {n_out}")
    take(1, "the unused flag")
    lo, hi = take(n_in, "input minimums"), take(n_in, "input maximums")
    means, ranges = take(n_in + 1, "means"), take(n_in + 1, "ranges")
    if np.any(ranges == 0):
        raise ModelFileError(f"{path}: a normalisation range is zero")
    ws, bs = [], []
    for i in range(n_layers):
        ws.append(take(sizes[i + 1] * sizes[i], f"weights of layer {i + 1}")
                  .reshape(sizes[i + 1], sizes[i]))
        bs.append(take(sizes[i + 1], f"biases of layer {i + 1}"))
    if pos != nums.size:
        raise ModelFileError(f"{path} has {nums.size - pos} numbers after the last layer; the "
                             "sizes in the header do not match the weights")
    # fold (x - mean) / range into layer 1 and range_out * y + mean_out into the last layer
    ws[0], bs[0] = ws[0] / ranges[:n_in], bs[0] - ws[0] @ (means[:n_in] / ranges[:n_in])
    ws[-1], bs[-1] = ws[-1] * ranges[n_in], bs[-1] * ranges[n_in] + means[n_in]
    relu = [np.ones(s, bool) for s in sizes[1:-1]] + [np.zeros(n_out, bool)]
    meta = {"source": "nnet", "nnet_file": str(path),
            "normalisation": {"input_mean": means[:n_in].tolist(),
                              "input_range": ranges[:n_in].tolist(),
                              "output_mean": float(means[n_in]),
                              "output_range": float(ranges[n_in]),
                              "folded": True}}
    bounded = bool(np.all(np.abs(lo) < UNBOUNDED) and np.all(np.abs(hi) < UNBOUNDED))
    if bounded:
        meta["domain"] = {"lo": lo.tolist(), "hi": hi.tolist()}
    try:
        net = ReLUNet(ws, bs, relu, meta)
        if clip_inputs:
            if np.any(lo > hi):
                raise ModelFileError(f"{path}: an input minimum exceeds its maximum")
            net = compose(net, _clip(np.where(np.abs(lo) < UNBOUNDED, lo, -np.inf),
                                     np.where(np.abs(hi) < UNBOUNDED, hi, np.inf)))
            net = net.with_meta(input_clipping="folded")
    except ModelFileError:
        raise
    except DynidError as exc:
        raise ModelFileError(f"{path} holds an inconsistent network: {exc}") from None
    return net


def _clip(lo: np.ndarray, hi: np.ndarray) -> ReLUNet:
    """clip(x, lo, hi) per component with ReLUs (infinite limits leave that side open)."""
    n = lo.size
    rows, bias, relu, out = [], [], [], []
    b_out = np.zeros(n)
    for j in range(n):
        e = np.eye(n)[j]
        if np.isfinite(lo[j]):
            rows.append(e); bias.append(-lo[j]); relu.append(True); out.append((j, 1.0))
            b_out[j] = lo[j]
        else:
            rows.append(e); bias.append(0.0); relu.append(False); out.append((j, 1.0))
        if np.isfinite(hi[j]):
            rows.append(e); bias.append(-hi[j]); relu.append(True); out.append((j, -1.0))
    w2 = np.zeros((n, len(rows)))
    for k, (j, s) in enumerate(out):
        w2[j, k] = s
    return ReLUNet([np.array(rows), w2], [np.array(bias), b_out],
                   [np.array(relu), np.zeros(n, bool)])


def to_nnet_layers(net: ReLUNet) -> tuple[list, list]:
    """Weights and biases of an equivalent network with ReLU on every hidden unit and a linear
    output layer (the only structure ``.nnet`` can express).

    A hidden identity unit z is split into two ReLU units, ``z = relu(z) - relu(-z)`` (exact);
    a ReLU on an output unit gets one extra linear layer.

    Example
    -------
    >>> from dynid.relunet import linear
    >>> ws, bs = to_nnet_layers(linear([[2.0]]))
    >>> [w.tolist() for w in ws]
    [[[2.0]]]
    """
    ws = [np.array(w) for w in net.weights]
    bs = [np.array(b) for b in net.biases]
    ms = [np.array(m) for m in net.relu]
    if ms[-1].any():
        n = net.n_out
        ws.append(np.eye(n)); bs.append(np.zeros(n)); ms.append(np.zeros(n, bool))
    for i in range(len(ws) - 1):
        ident = ~ms[i]
        if not ident.any():
            continue
        # rows of identity units appear twice: +row (relu(z)) and -row (relu(-z))
        ws[i] = np.vstack([ws[i], -ws[i][ident]])
        bs[i] = np.concatenate([bs[i], -bs[i][ident]])
        ws[i + 1] = np.hstack([ws[i + 1], -ws[i + 1][:, ident]])
        ms[i] = np.ones(ws[i].shape[0], bool)
    return ws, bs


def save_nnet(net: ReLUNet, path, input_lo=None, input_hi=None, comment: str = "") -> Path:
    """Write ``net`` as ``.nnet`` (means 0, ranges 1; the box from ``input_lo``/``input_hi``,
    else ``net.meta["domain"]``, else +-1e30, which readers treat as no clipping).

    Hidden identity units are split into ReLU pairs (see :func:`to_nnet_layers`), so the file
    holds the same map. Numbers are written with 17 significant digits (exact round trip).

    Example
    -------
    >>> save_nnet(net, "controller.nnet", input_lo=[-5, -5], input_hi=[5, 5])  # doctest: +SKIP
    """
    n = net.n_in
    dom = net.meta.get("domain") or {}
    lo = input_lo if input_lo is not None else dom.get("lo")
    hi = input_hi if input_hi is not None else dom.get("hi")
    lo = np.full(n, -UNBOUNDED) if lo is None else np.asarray(lo, np.float64).reshape(-1)
    hi = np.full(n, UNBOUNDED) if hi is None else np.asarray(hi, np.float64).reshape(-1)
    if lo.shape != (n,) or hi.shape != (n,):
        raise ShapeError(f"the input box needs {n} lower and {n} upper values, got {lo.size} "
                         f"and {hi.size}")
    ws, bs = to_nnet_layers(net)
    sizes = [n] + [w.shape[0] for w in ws]
    fmt = lambda v: ",".join(f"{float(x):.17g}" for x in np.ravel(v)) + ","  # noqa: E731
    lines = [f"// {line}" for line in (comment or "written by dynid").splitlines()]
    lines += [f"{len(ws)},{n},{net.n_out},{max(sizes)},",
              ",".join(str(int(s)) for s in sizes) + ",", "0,",
              fmt(lo), fmt(hi), fmt(np.zeros(n + 1)), fmt(np.ones(n + 1))]
    for w, b in zip(ws, bs):
        lines.extend(fmt(row) for row in w)
        lines.extend(f"{float(v):.17g}," for v in b)
    path = Path(path)
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


__all__ = ["load_nnet", "save_nnet", "to_nnet_layers"]
