"""Keras ``Sequential`` models (JSON architecture + HDF5 weights) -> :class:`ReLUNet`.

Reads the format of the published closed-loop controllers (Keras 2.x ``model.to_json()`` plus
``model.save_weights('*.h5')``) with ``json`` and ``h5py`` only; TensorFlow is not needed.
Supported layers: ``InputLayer``, ``Dense`` (activation ``relu`` or ``linear``, with or without
bias), ``Activation`` (``relu`` / ``linear``, applied to the preceding ``Dense``) and
``Dropout`` (a no-op at inference). Anything else raises :class:`UnsupportedLayerError`
naming the layer.

Weight files that are understood:

- ``save_weights`` files: ``/<layer>/<...>/kernel:0`` and ``bias:0`` (found by walking the
  layer's group; the ``weight_names`` attribute is used when present);
- full-model files (``model.save``): the same under ``/model_weights``; their architecture in
  the ``model_config`` attribute is used when no JSON file is given;
- Keras 3 ``*.weights.h5``: ``/layers/<layer>/vars/0`` (kernel) and ``/1`` (bias).

Example
-------
>>> from dynid.formats.keras import load_keras
>>> net = load_keras("../shared/benchmarks/double_integrator/controller.json")  # doctest: +SKIP
>>> net.widths                                                                    # doctest: +SKIP
[2, 10, 5, 1]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dynid.errors import DynidError, ModelFileError, UnsupportedLayerError
from dynid.relunet import ReLUNet

_ACTIVATIONS = {"relu": True, "linear": False, None: False}
_NOOP_LAYERS = {"Dropout", "InputLayer"}


def load_keras(json_path=None, h5_path=None) -> ReLUNet:
    """Read a Keras ``Sequential`` model of Dense/ReLU layers into a :class:`ReLUNet`.

    Parameters
    ----------
    json_path : path of the architecture (``model.to_json()``). ``None``: use the file with
        the HDF5 file's stem and suffix ``.json``, or the ``model_config`` attribute of a
        full-model HDF5 file.
    h5_path : path of the weights. ``None``: the JSON file's stem with suffix ``.h5``.

    Returns
    -------
    ReLUNet
        float64 copy of the (usually float32) weights; ``meta["source"] == "keras"``.

    Example
    -------
    >>> net = load_keras("controller.json", "controller.h5")  # doctest: +SKIP
    >>> net.forward([[2.7, 0.1]])                              # doctest: +SKIP
    """
    import h5py

    if json_path is None and h5_path is None:
        raise ModelFileError("load_keras needs the architecture JSON or the weights HDF5 path")
    json_path = None if json_path is None else Path(json_path)
    h5_path = Path(h5_path) if h5_path is not None else json_path.with_suffix(".h5")
    if not h5_path.exists():
        raise ModelFileError(f"Keras weights file {h5_path} does not exist; pass h5_path= "
                             "(the file written by model.save_weights)")
    try:
        f = h5py.File(h5_path, "r")
    except OSError as exc:
        raise ModelFileError(f"{h5_path} is not a readable HDF5 file ({exc})") from None
    with f:
        config, config_source = _read_config(json_path, h5_path, f)
        layers = _dense_layers(config, config_source)
        root = f["model_weights"] if "model_weights" in f else f
        ws, bs, ms = [], [], []
        for spec in layers:
            kernel, bias = _find_weights(root, spec["name"], h5_path)
            if spec["use_bias"] and bias is None:
                raise ModelFileError(f"{h5_path}: layer '{spec['name']}' uses a bias but no "
                                     "bias dataset was found under its group")
            if kernel.ndim != 2 or kernel.shape[1] != spec["units"]:
                raise ModelFileError(f"{h5_path}: kernel of layer '{spec['name']}' has shape "
                                     f"{kernel.shape}, expected (inputs, {spec['units']})")
            if ws and kernel.shape[0] != ws[-1].shape[0]:
                raise ModelFileError(f"{h5_path}: layer '{spec['name']}' takes "
                                     f"{kernel.shape[0]} inputs but the previous layer has "
                                     f"{ws[-1].shape[0]} units")
            b = np.zeros(spec["units"]) if bias is None or not spec["use_bias"] else bias
            ws.append(kernel.T.astype(np.float64))   # Keras stores (in, out); ReLUNet (out, in)
            bs.append(np.asarray(b, dtype=np.float64).reshape(-1))
            ms.append(np.full(spec["units"], spec["relu"], dtype=bool))
        keras_version = f.attrs.get("keras_version", "")
    if isinstance(keras_version, bytes):
        keras_version = keras_version.decode()
    first = config["declared_input"]
    if first is not None and first != ws[0].shape[1]:
        raise ModelFileError(f"{config_source} declares {first} inputs but the first kernel in "
                             f"{h5_path} has {ws[0].shape[1]} rows")
    meta = {"source": "keras", "keras_file": str(h5_path), "keras_version": str(keras_version),
            "layer_names": [s["name"] for s in layers]}
    try:
        return ReLUNet(ws, bs, ms, meta)
    except DynidError as exc:
        raise ModelFileError(f"{h5_path} holds an inconsistent network: {exc}") from None


# ---------------------------------------------------------------------- architecture


def _read_config(json_path, h5_path, f) -> tuple[dict, str]:
    if json_path is None:
        beside = h5_path.with_suffix(".json")
        if beside.exists():
            json_path = beside
    if json_path is not None:
        if not json_path.exists():
            raise ModelFileError(f"Keras architecture file {json_path} does not exist")
        try:
            return _parse_config(json.loads(json_path.read_text()), str(json_path)), str(json_path)
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{json_path} is not valid JSON ({exc})") from None
    text = f.attrs.get("model_config")
    if text is None:
        raise ModelFileError(f"{h5_path} holds weights only and no architecture JSON was found "
                             f"beside it ({h5_path.with_suffix('.json').name}); pass json_path=")
    if isinstance(text, bytes):
        text = text.decode()
    return _parse_config(json.loads(text), f"{h5_path}:model_config"), f"{h5_path}:model_config"


def _parse_config(cfg, source: str) -> dict:
    """Return {"layers": [layer dicts], "declared_input": int | None}."""
    if not isinstance(cfg, dict) or "config" not in cfg:
        raise ModelFileError(f"{source} is not a Keras model config (no 'config' key)")
    cls = cfg.get("class_name")
    if cls not in ("Sequential", "Functional", "Model"):
        raise UnsupportedLayerError(f"{source}: model class {cls!r} is not supported; save a "
                                    "Keras Sequential model of Dense layers")
    inner = cfg["config"]
    layers = inner if isinstance(inner, list) else inner.get("layers")  # Keras < 2.2: a list
    if not isinstance(layers, list) or not layers:
        raise ModelFileError(f"{source} has no layers")
    declared = None
    for layer in layers:
        c = layer.get("config", {})
        shape = c.get("batch_input_shape") or c.get("batch_shape")
        if shape:
            if len(shape) != 2:
                raise UnsupportedLayerError(f"{source}: layer '{c.get('name')}' declares input "
                                            f"shape {shape}; only flat vector inputs are supported")
            declared = int(shape[1])
            break
    return {"layers": layers, "declared_input": declared}


def _dense_layers(config: dict, source: str) -> list[dict]:
    """The Dense layers in order, with their activation folded in; rejects anything else."""
    out: list[dict] = []
    for layer in config["layers"]:
        cls = layer.get("class_name")
        c = layer.get("config", {})
        name = c.get("name", "?")
        if cls in _NOOP_LAYERS:
            continue
        if cls == "Dense":
            act = _activation(c.get("activation"), name, source)
            out.append({"name": name, "units": int(c["units"]), "relu": act,
                        "use_bias": bool(c.get("use_bias", True))})
        elif cls == "Activation":
            act = _activation(c.get("activation"), name, source)
            if not out:
                raise UnsupportedLayerError(f"{source}: Activation layer '{name}' before any "
                                            "Dense layer is not supported")
            if act:
                if out[-1]["relu"]:
                    continue  # relu(relu(z)) = relu(z)
                out[-1]["relu"] = True
        elif cls == "ReLU" and not any(c.get(k) for k in ("max_value", "negative_slope",
                                                            "threshold")):
            if not out:
                raise UnsupportedLayerError(f"{source}: ReLU layer '{name}' before any Dense "
                                            "layer is not supported")
            out[-1]["relu"] = True
        else:
            raise UnsupportedLayerError(f"{source}: layer '{name}' of class {cls} is not "
                                        "supported; only Dense (relu/linear), Activation "
                                        "(relu/linear), ReLU, Dropout and InputLayer convert "
                                        "to a ReLU network")
    if not out:
        raise ModelFileError(f"{source} has no Dense layer")
    return out


def _activation(act, name: str, source: str) -> bool:
    if isinstance(act, dict):  # Keras 3 may serialise activations as objects
        act = act.get("config", {}).get("name", act.get("class_name"))
    if act not in _ACTIVATIONS:
        raise UnsupportedLayerError(f"{source}: layer '{name}' has activation {act!r}; only "
                                    "'relu' and 'linear' convert to a ReLU network")
    return _ACTIVATIONS[act]


# ---------------------------------------------------------------------- weights


def _find_weights(root, name: str, h5_path) -> tuple[np.ndarray, np.ndarray | None]:
    """Kernel and bias of layer ``name``: by ``weight_names``, then by walking the group
    (every dataset's declared size is checked before it is read)."""
    import h5py

    from dynid.modelfile import read_dataset

    if name in root:
        grp = root[name]
    elif "layers" in root and name in root["layers"]:  # Keras 3 .weights.h5
        grp = root["layers"][name]
    else:
        raise ModelFileError(f"{h5_path} has no weights for layer '{name}' (groups: "
                             f"{sorted(root.keys())}); is it the file saved with this JSON?")
    if "vars" in grp and isinstance(grp["vars"], h5py.Group):
        v = grp["vars"]
        kernel = read_dataset(v["0"], h5_path, f"layer '{name}' kernel") if "0" in v else None
        bias = read_dataset(v["1"], h5_path, f"layer '{name}' bias") if "1" in v else None
        if kernel is None:
            raise ModelFileError(f"{h5_path}: layer '{name}' has no kernel under vars/0")
        return kernel, bias
    kernel = bias = None
    names = grp.attrs.get("weight_names")
    if names is not None:
        for wn in names:
            wn = wn.decode() if isinstance(wn, bytes) else str(wn)
            if wn in grp:
                arr = read_dataset(grp[wn], h5_path, f"layer '{name}' {wn}")
                leaf = wn.rsplit("/", 1)[-1]
                if leaf.startswith("kernel"):
                    kernel = arr
                elif leaf.startswith("bias"):
                    bias = arr
    if kernel is None:
        found: dict[str, list] = {"kernel": [], "bias": []}

        def visit(path, obj):
            if isinstance(obj, h5py.Dataset):
                leaf = path.rsplit("/", 1)[-1]
                for key in found:
                    if leaf.startswith(key):
                        found[key].append(read_dataset(obj, h5_path, f"layer '{name}' {path}"))

        grp.visititems(visit)
        if len(found["kernel"]) != 1 or len(found["bias"]) > 1:
            raise ModelFileError(f"{h5_path}: expected one kernel and at most one bias under "
                                 f"group '{name}', found {len(found['kernel'])} and "
                                 f"{len(found['bias'])}")
        kernel = found["kernel"][0]
        bias = found["bias"][0] if found["bias"] else None
    return kernel, bias


__all__ = ["load_keras"]
