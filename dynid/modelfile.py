"""HDF5 model files (h5py). No pickle anywhere.

Layout (format ``dynid-relunet``, version 1)::

    /                    attrs: format, format_version, dynid_version, n_layers, widths,
                                meta (JSON text: system, dt, state_names, architecture,
                                training summary, normalisation, anything else)
    /layers/<i>/weight   float64 (out_i, in_i)
    /layers/<i>/bias     float64 (out_i,)
    /layers/<i>/relu     uint8   (out_i,)   1 = ReLU unit, 0 = identity unit

The weights are the map in physical units (normalisation folded in); the statistics used for
normalisation are kept in ``meta["normalisation"]`` for information only.
Writes are atomic; reading validates everything and raises :class:`ModelFileError`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dynid.atomic import atomic_path
from dynid.errors import DynidError, ModelFileError
from dynid.relunet import ReLUNet
from dynid.results import jsonable

FORMAT = "dynid-relunet"
FORMAT_VERSION = 1
# sizes a file may declare before anything is read: far beyond any network dynid can
# certify, far below what would exhaust memory (a typo or a hostile file, not a model)
MAX_PARAMETERS = 50_000_000      # 400 MB of float64 over the whole file
MAX_LAYERS = 10_000
MAX_WIDTH = 1_000_000


def check_declared(n_values, path, what: str, budget: list | None = None) -> int:
    """Refuse a declared size before reading it: negative, absurd, or (with ``budget``, a
    one-element list of values still allowed for the file) more than the file may hold.
    Returns the size. Used by every loader (HDF5 model files, Keras HDF5, ONNX, .nnet).

    Example
    -------
    >>> check_declared(10, "m.h5", "layer 0 weight")
    10
    >>> check_declared(10 ** 12, "m.h5", "layer 0 weight")
    Traceback (most recent call last):
    ...
    dynid.errors.ModelFileError: m.h5: layer 0 weight declares 1000000000000 values, more than a model file may hold (50000000); the file is corrupt or not a model
    """
    n = int(n_values)
    limit = MAX_PARAMETERS if budget is None else budget[0]
    if n < 0 or n > limit:
        raise ModelFileError(f"{path}: {what} declares {n} values, more than a model file may "
                             f"hold ({limit}); the file is corrupt or not a model")
    if budget is not None:
        budget[0] -= n
    return n


def read_dataset(dset, path, what: str, budget: list | None = None, shape=None) -> np.ndarray:
    """Read an h5py dataset after checking its declared shape (against ``shape`` when given,
    None entries free), its size (:func:`check_declared`) and that the file really stores it
    (a dataset declared huge but never written would be materialised from its fill value)."""
    import h5py

    if not isinstance(dset, h5py.Dataset):
        raise ModelFileError(f"{path}: {what} is not a dataset")
    if shape is not None and (len(dset.shape) != len(shape) or any(
            want is not None and have != want for have, want in zip(dset.shape, shape))):
        raise ModelFileError(f"{path}: {what} has shape {dset.shape}, expected "
                             f"{tuple('?' if v is None else v for v in shape)}")
    n = check_declared(dset.size, path, what, budget)
    if n and dset.compression is None and dset.chunks is None:
        stored = dset.id.get_storage_size()
        if stored < n * dset.dtype.itemsize:
            raise ModelFileError(f"{path}: {what} declares {n} values but the file stores "
                                 f"{stored} bytes of them; the file is truncated or corrupt")
    return np.asarray(dset[...])


def save_model(path, net: ReLUNet, **meta) -> Path:
    """Write ``net`` (and ``net.meta`` updated with ``meta``) to an HDF5 file atomically."""
    import h5py

    from dynid import __version__

    path = Path(path)
    all_meta = jsonable({**net.meta, **meta})
    with atomic_path(path, suffix=".h5.tmp") as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["dynid_version"] = __version__
            f.attrs["n_layers"] = net.n_layers
            f.attrs["widths"] = np.asarray(net.widths, dtype=np.int64)
            f.attrs["meta"] = json.dumps(all_meta)
            grp = f.create_group("layers")
            for i, (w, b, m) in enumerate(zip(net.weights, net.biases, net.relu)):
                g = grp.create_group(str(i))
                g.create_dataset("weight", data=w)
                g.create_dataset("bias", data=b)
                g.create_dataset("relu", data=m.astype(np.uint8))
    return path


def load_model(path) -> ReLUNet:
    """Read a model file written by :func:`save_model`; metadata is in ``net.meta``."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ModelFileError(f"{path} is not a readable HDF5 model file ({exc}); it may be "
                             "truncated or of another format") from None
    try:
        with f:
            if f.attrs.get("format") != FORMAT:
                raise ModelFileError(f"{path} is HDF5 but not a dynid model file (attribute "
                                     f"'format' is {f.attrs.get('format')!r}); import other "
                                     "formats with dynid.formats")
            version = int(f.attrs.get("format_version", -1))
            if version > FORMAT_VERSION:
                raise ModelFileError(f"{path} has model format version {version}; this dynid "
                                     f"reads up to {FORMAT_VERSION}: upgrade dynid")
            n_layers = int(f.attrs["n_layers"])
            if not 1 <= n_layers <= MAX_LAYERS:
                raise ModelFileError(f"{path} declares {n_layers} layers; a model file has "
                                     f"1..{MAX_LAYERS}")
            ws, bs, ms = [], [], []
            budget = [MAX_PARAMETERS]
            prev = None
            for i in range(n_layers):
                g = f["layers"][str(i)]
                # shapes are checked against each other and a limit before anything is read
                wd = g["weight"]
                if len(wd.shape) != 2 or (prev is not None and wd.shape[1] != prev) \
                        or max(wd.shape) > MAX_WIDTH:
                    raise ModelFileError(f"{path}: layer {i} weight has shape {wd.shape}, "
                                         f"expected (units, {prev if prev is not None else 'inputs'})")
                out = wd.shape[0]
                ws.append(np.asarray(read_dataset(wd, path, f"layer {i} weight", budget),
                                     dtype=np.float64))
                bs.append(np.asarray(read_dataset(g["bias"], path, f"layer {i} bias", budget,
                                                  (out,)), dtype=np.float64))
                ms.append(read_dataset(g["relu"], path, f"layer {i} relu mask", budget,
                                       (out,)).astype(bool))
                prev = out
            meta = json.loads(f.attrs.get("meta", "{}"))
    except DynidError:
        raise
    except (KeyError, OSError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path} is a malformed or truncated dynid model file: {exc}") from None
    try:
        return ReLUNet(ws, bs, ms, meta)
    except DynidError as exc:
        raise ModelFileError(f"{path} holds an inconsistent network: {exc}") from None
