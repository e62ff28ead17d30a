"""Content hashes and a journal of finished jobs, so that interrupted work resumes exactly.

- :func:`content_hash` is a sha256 of a value's *content* (arrays by dtype, shape and bytes;
  floats by their bits; dicts by sorted key; a :class:`~dynid.relunet.ReLUNet` by its
  weights, masks and metadata; functions by module and name). Equal content, equal hash, on
  every machine and in every process. A :class:`Volatile` wrapper marks an argument that must
  not enter the hash (a wall-clock deadline).
- :func:`encode` / :func:`decode` turn job results (numbers, arrays, tuples, dicts,
  :class:`~dynid.results.Certificate`, :class:`~dynid.relunet.ReLUNet`) into JSON and back
  *bit for bit*: a float is written as the shortest text that reads back to the same double
  (NaN and infinities by their bits), an array as its dtype, shape and bytes (base64). No
  pickle: a journal is plain JSON.
- :class:`Journal` is a folder with one JSON file per finished job, named by the job's content
  hash and written atomically (temp file + rename), so a ``kill -9`` leaves either the whole
  entry or none.

Example
-------
>>> import tempfile, numpy as np
>>> j = Journal(tempfile.mkdtemp())
>>> key = content_hash(("cell", np.array([0.5, 1.0])))
>>> j.put(key, (np.array([1e-300, -0.0]), 3))
>>> got = j.get(key)
>>> got[0].tobytes() == np.array([1e-300, -0.0]).tobytes(), got[1]
(True, 3)
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import shutil
import struct
from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path

import numpy as np

_MISSING = object()


class Volatile:
    """An argument that is passed to a job but left out of its content hash (for example a
    wall-clock deadline: the job is the same job whatever time it is).

    Example
    -------
    >>> content_hash((1, Volatile(2.0))) == content_hash((1, Volatile(99.0)))
    True
    """

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self) -> str:
        return f"Volatile({self.value!r})"


def content_hash(obj, _memo: dict | None = None) -> str:
    """Hex sha256 of the content of ``obj`` (see the module docstring for what counts).

    Raises TypeError for a value whose content it cannot see (an open file, a lambda's
    closure, an arbitrary object): a job key must never depend on an object's address.

    Example
    -------
    >>> import numpy as np
    >>> content_hash({"a": np.arange(3.0), "b": 1}) == content_hash({"b": 1, "a": np.arange(3.)})
    True
    >>> content_hash(np.arange(3.0)) == content_hash(np.arange(3.0).astype(np.float32))
    False
    """
    h = hashlib.sha256()
    _feed(h, obj, {} if _memo is None else _memo)
    return h.hexdigest()


def _feed(h, obj, memo) -> None:   # noqa: C901 - one branch per type, flat on purpose
    from dynid.relunet import ReLUNet

    if isinstance(obj, Volatile):
        h.update(b"V")
    elif obj is None or isinstance(obj, bool):
        h.update(b"N" if obj is None else (b"T" if obj else b"F"))
    elif isinstance(obj, Enum):
        h.update(b"E" + repr(obj.value).encode())
    elif isinstance(obj, int):
        h.update(b"i" + str(obj).encode() + b";")
    elif isinstance(obj, float):
        h.update(b"f" + struct.pack("<d", obj))
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        h.update(b"s" + str(len(b)).encode() + b":" + b)
    elif isinstance(obj, bytes):
        h.update(b"b" + str(len(obj)).encode() + b":" + obj)
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(b"a" + a.dtype.str.encode() + repr(a.shape).encode() + a.tobytes())
    elif isinstance(obj, np.generic):
        h.update(b"g" + obj.dtype.str.encode() + obj.tobytes())
    elif isinstance(obj, (list, tuple)):
        h.update((b"l" if isinstance(obj, list) else b"t") + str(len(obj)).encode() + b"[")
        for v in obj:
            _feed(h, v, memo)
        h.update(b"]")
    elif isinstance(obj, dict):
        h.update(b"d" + str(len(obj)).encode() + b"{")
        for k in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            _feed(h, k, memo)
            _feed(h, obj[k], memo)
        h.update(b"}")
    elif isinstance(obj, ReLUNet):
        digest = memo.get(id(obj))
        if digest is None:   # a net is immutable: hash it once per call
            digest = content_hash((list(obj.weights), list(obj.biases), list(obj.relu),
                                   _jsonable_meta(obj.meta)))
            memo[id(obj)] = digest
        h.update(b"R" + digest.encode())
    elif isinstance(obj, Path):
        h.update(b"p")
        _feed(h, str(obj), memo)
    elif callable(obj) and hasattr(obj, "__module__") and hasattr(obj, "__qualname__"):
        if "<lambda>" in obj.__qualname__ or "<locals>" in obj.__qualname__:
            raise TypeError(f"cannot hash the local function {obj.__qualname__}: pass a "
                            "module-level function")
        h.update(b"c" + f"{obj.__module__}:{obj.__qualname__}".encode())
    elif is_dataclass(obj) and not isinstance(obj, type):
        h.update(b"D" + type(obj).__qualname__.encode())
        _feed(h, {f.name: getattr(obj, f.name) for f in fields(obj)}, memo)
    else:
        raise TypeError(f"cannot hash a {type(obj).__name__} by content")


def _jsonable_meta(meta):
    from dynid.results import jsonable

    return jsonable(meta)


# ---------------------------------------------------------------------- JSON codec


def encode(obj):
    """A JSON-able structure that :func:`decode` turns back into an equal ``obj``, floats and
    arrays bit for bit (NaN, infinities and -0.0 included).

    Example
    -------
    >>> import numpy as np
    >>> decode(encode({"x": (1, np.float32(0.1)), 2: [np.inf]}))
    {'x': (1, np.float32(0.1)), 2: [inf]}
    """
    from dynid.relunet import ReLUNet
    from dynid.results import Certificate

    if isinstance(obj, np.generic):   # before float: np.float64 is a float subclass
        return {"__np__": obj.dtype.str, "b64": base64.b64encode(obj.tobytes()).decode()}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int) and not isinstance(obj, Enum):
        return obj
    if isinstance(obj, float):   # NaN payloads and infinities by their bits
        return obj if math.isfinite(obj) else {"__float__": struct.pack("<d", obj).hex()}
    if isinstance(obj, Enum):
        return {"__enum__": type(obj).__name__, "v": obj.value}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biufc":   # numbers: their bytes, exactly
            return {"__nd__": obj.dtype.str, "shape": list(obj.shape),
                    "b64": base64.b64encode(np.ascontiguousarray(obj).tobytes()).decode()}
        return {"__nd__": obj.dtype.str, "shape": list(obj.shape),
                "data": [encode(v) for v in obj.reshape(-1).tolist()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v) for v in obj]}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v) for k, v in obj.items()}
        return {"__dict__": [[encode(k), encode(v)] for k, v in obj.items()]}
    if isinstance(obj, Certificate):
        return {"__certificate__": {f.name: encode(getattr(obj, f.name)) for f in fields(obj)}}
    if isinstance(obj, ReLUNet):
        return {"__relunet__": {"weights": [encode(w) for w in obj.weights],
                                "biases": [encode(b) for b in obj.biases],
                                "relu": [encode(m) for m in obj.relu],
                                "meta": encode(dict(obj.meta))}}
    raise TypeError(f"cannot journal a {type(obj).__name__}")


def decode(obj):
    """Inverse of :func:`encode`."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__float__" in obj:
        return struct.unpack("<d", bytes.fromhex(obj["__float__"]))[0]
    if "__nd__" in obj:
        dtype = np.dtype(obj["__nd__"])
        if "b64" in obj:
            flat = np.frombuffer(base64.b64decode(obj["b64"]), dtype=dtype).copy()
        else:
            flat = np.array([decode(v) for v in obj["data"]], dtype=dtype)
        return flat.reshape(obj["shape"])
    if "__np__" in obj:
        return np.frombuffer(base64.b64decode(obj["b64"]), dtype=np.dtype(obj["__np__"]))[0]
    if "__tuple__" in obj:
        return tuple(decode(v) for v in obj["__tuple__"])
    if "__dict__" in obj:
        return {_hashable(decode(k)): decode(v) for k, v in obj["__dict__"]}
    if "__enum__" in obj:
        from dynid.results import Status

        if obj["__enum__"] != "Status":
            raise TypeError(f"unknown enum {obj['__enum__']} in a journal entry")
        return Status(obj["v"])
    if "__certificate__" in obj:
        from dynid.results import Certificate

        return Certificate(**{k: decode(v) for k, v in obj["__certificate__"].items()})
    if "__relunet__" in obj:
        from dynid.relunet import ReLUNet

        d = obj["__relunet__"]
        return ReLUNet([decode(w) for w in d["weights"]], [decode(b) for b in d["biases"]],
                       [decode(m) for m in d["relu"]], decode(d["meta"]))
    return {k: decode(v) for k, v in obj.items()}


def _hashable(k):
    return tuple(k) if isinstance(k, list) else k


# ---------------------------------------------------------------------- the journal


class Journal:
    """Finished jobs of one piece of work: ``folder/<content hash>.json``, one per job.

    ``get(key)`` returns the stored result or ``None``; ``put(key, result)`` stores it
    atomically; ``clear()`` removes the folder (done when the work it belongs to finished).
    A damaged entry (not JSON, written by something else) reads as missing, so the job is
    simply run again.
    """

    def __init__(self, folder):
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        if not key or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"journal keys are hex digests, got {key!r}")
        return self.folder / f"{key}.json"

    def get(self, key: str, default=None):
        path = self._path(key)
        try:
            text = path.read_text()
        except (FileNotFoundError, NotADirectoryError):
            return default
        try:
            return decode(json.loads(text)["result"])
        except (ValueError, KeyError, TypeError):
            return default

    def __contains__(self, key: str) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def put(self, key: str, result) -> None:
        from dynid.atomic import write_text_atomic

        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self._path(key), json.dumps({"result": encode(result)}))

    def __len__(self) -> int:
        return len(list(self.folder.glob("*.json"))) if self.folder.is_dir() else 0

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


__all__ = ["content_hash", "encode", "decode", "Journal", "Volatile"]
