"""Network file formats at the edge of dynid: everything becomes a :class:`~dynid.ReLUNet`.

- ``.h5`` / ``.hdf5``: a dynid model file (:func:`dynid.load_model`), or a Keras weights file
  with its architecture JSON beside it (same stem, ``.json``) or inside it (full-model files);
- ``.json``: a Keras architecture, weights from the ``.h5`` with the same stem;
- ``.onnx``: ONNX graphs of affine operators and ReLUs (:mod:`dynid.formats.onnx_io`);
- ``.nnet``: the ACAS Xu text format (:mod:`dynid.formats.nnet`).

Example
-------
>>> from dynid.formats import load_network, save_network
>>> net = load_network("../shared/benchmarks/double_integrator/controller.h5")  # doctest: +SKIP
>>> save_network(net, "controller.onnx")                                          # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from dynid.errors import ModelFileError
from dynid.relunet import ReLUNet

LOADABLE = (".h5", ".hdf5", ".json", ".onnx", ".nnet")
SAVABLE = (".h5", ".hdf5", ".onnx", ".nnet")


def load_network(path, **kw) -> ReLUNet:
    """Load any supported network file as a ReLUNet, by extension.

    Keyword arguments go to the format's reader: ``json_path=`` (Keras),
    ``input_shape=`` / ``keep_layers=`` (ONNX), ``clip_inputs=`` (.nnet).

    Example
    -------
    >>> net = load_network("controller.onnx")   # doctest: +SKIP
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LOADABLE:
        raise ModelFileError(f"cannot tell the format of {path} from its extension "
                             f"{suffix or '(none)'}: use one of {', '.join(LOADABLE)}")
    if not path.exists():
        raise ModelFileError(f"network file {path} does not exist")
    if suffix == ".onnx":
        from dynid.formats.onnx_io import load_onnx

        return load_onnx(path, **kw)
    if suffix == ".nnet":
        from dynid.formats.nnet import load_nnet

        return load_nnet(path, **kw)
    from dynid.formats.keras import load_keras

    if suffix == ".json":
        return load_keras(path, kw.pop("h5_path", None), **kw)
    if _is_dynid_model(path):
        if kw:
            raise ModelFileError(f"{path} is a dynid model file; options {sorted(kw)} do not "
                                 "apply to it")
        from dynid.modelfile import load_model

        return load_model(path)
    return load_keras(kw.pop("json_path", None), path, **kw)


def save_network(net: ReLUNet, path, **kw) -> Path:
    """Save a ReLUNet by extension: ``.h5`` dynid model file, ``.onnx``, ``.nnet``.

    Keyword arguments go to the writer (``dtype=`` for ONNX, ``input_lo=``/``input_hi=`` for
    .nnet, metadata entries for ``.h5``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from dynid.formats.onnx_io import save_onnx

        return save_onnx(net, path, **kw)
    if suffix == ".nnet":
        from dynid.formats.nnet import save_nnet

        return save_nnet(net, path, **kw)
    if suffix in (".h5", ".hdf5"):
        from dynid.modelfile import save_model

        return save_model(path, net, **kw)
    raise ModelFileError(f"cannot write {path}: use the extension .h5 (dynid model), .onnx or "
                         ".nnet")


def _is_dynid_model(path: Path) -> bool:
    import h5py

    from dynid.modelfile import FORMAT

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except OSError:
        raise ModelFileError(f"{path} is not a readable HDF5 file; it may be truncated or of "
                             "another format") from None


__all__ = ["load_network", "save_network", "LOADABLE", "SAVABLE"]
