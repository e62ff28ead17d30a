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
            ws, bs, ms = [], [], []
            for i in range(n_layers):
                g = f["layers"][str(i)]
                ws.append(np.asarray(g["weight"][...], dtype=np.float64))
                bs.append(np.asarray(g["bias"][...], dtype=np.float64))
                ms.append(np.asarray(g["relu"][...]).astype(bool))
            meta = json.loads(f.attrs.get("meta", "{}"))
    except DynidError:
        raise
    except (KeyError, OSError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path} is a malformed or truncated dynid model file: {exc}") from None
    try:
        return ReLUNet(ws, bs, ms, meta)
    except DynidError as exc:
        raise ModelFileError(f"{path} holds an inconsistent network: {exc}") from None
