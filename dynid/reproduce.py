"""Did a run reproduce? Compare the files of two run folders, wall-clock fields aside.

:func:`compare_runs` reads both folders and lists every difference: a file in one folder only,
model weights or masks that differ in a single bit, JSON numbers, netCDF variables and
attributes, figure bytes. Fields that measure time (``seconds``, ``created``, ``started``,
...) are left out, and so is the folder name itself where it appears in a path: two runs of
the same config on the same machine must agree in everything else.

Command line: ``python -m dynid.reproduce RUN_A RUN_B`` (exit 0 when identical, 1 otherwise).

Example
-------
>>> import tempfile, pathlib
>>> a, b = (pathlib.Path(tempfile.mkdtemp()) for _ in range(2))
>>> for d, t in ((a, 1.5), (b, 9.0)):
...     _ = (d / "r.json").write_text('{"value": 2.0, "seconds": %s}' % t)
>>> compare_runs(a, b)
[]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

#: keys (in JSON, model metadata and netCDF attributes / variables) that measure wall-clock
#: (and every key ending in "seconds", e.g. ``tighten_seconds``)
VOLATILE = frozenset({"seconds", "seconds_total", "seconds_to_target", "stage_seconds",
                      "started", "created", "finished", "secs", "load", "executor",
                      "journaled_jobs", "skipped"})
#: files that render the others with their timings (compared through them)
SKIP = frozenset({"report.html"})


def volatile(key) -> bool:
    """Whether ``key`` names a wall-clock measurement."""
    return key in VOLATILE or (isinstance(key, str) and key.endswith("seconds"))


def _normal(obj, roots: tuple):
    """``obj`` without volatile keys, the run folders' names replaced by ``<run>``."""
    if isinstance(obj, dict):
        return {k: _normal(v, roots) for k, v in obj.items() if not volatile(k)}
    if isinstance(obj, list):
        return [_normal(v, roots) for v in obj]
    if isinstance(obj, str):
        for r in roots:
            obj = obj.replace(r, "<run>")
        return obj
    return obj


def _roots(d: Path) -> tuple:
    out = {str(d), str(d.absolute()), str(d.resolve())}
    return tuple(sorted(out, key=len, reverse=True))


def _files(d: Path) -> set:
    return {p.relative_to(d).as_posix() for p in d.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(d).parts)
            and p.name not in SKIP}


def _json_diff(a, b, where: str) -> list[str]:
    if type(a) is not type(b):
        return [f"{where}: {a!r} != {b!r}"]
    if isinstance(a, dict):
        out = [f"{where}: key {k!r} only in one run" for k in sorted(set(a) ^ set(b))]
        for k in a:
            if k in b:
                out += _json_diff(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} entries"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _json_diff(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and np.isnan(a) and np.isnan(b):
        return []
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def _model_diff(pa: Path, pb: Path, roots_a, roots_b, name: str) -> list[str]:
    from dynid.modelfile import load_model

    na, nb = load_model(pa), load_model(pb)
    out = []
    if na.widths != nb.widths:
        return [f"{name}: widths {na.widths} != {nb.widths}"]
    for i in range(na.n_layers):
        for what, x, y in (("weight", na.weights[i], nb.weights[i]),
                           ("bias", na.biases[i], nb.biases[i]),
                           ("relu", na.relu[i], nb.relu[i])):
            if x.tobytes() != y.tobytes():
                out.append(f"{name}: layer {i} {what} differs (max |diff| "
                           f"{np.max(np.abs(x.astype(float) - y.astype(float))):.3g})")
    meta_a = json.loads(json.dumps(_normal(na.meta, roots_a), default=str))
    meta_b = json.loads(json.dumps(_normal(nb.meta, roots_b), default=str))
    return out + _json_diff(meta_a, meta_b, f"{name} meta")


def _netcdf_diff(pa: Path, pb: Path, roots_a, roots_b, name: str) -> list[str]:
    import xarray as xr

    da, db = (xr.load_dataset(p, engine="h5netcdf") for p in (pa, pb))
    out = []
    if set(da.variables) != set(db.variables):
        out.append(f"{name}: variables {sorted(set(da.variables) ^ set(db.variables))} in one "
                   "run only")
    for v in sorted(v for v in set(da.variables) & set(db.variables) if not volatile(v)):
        x, y = da[v].values, db[v].values
        if x.shape != y.shape or (x.dtype.kind == "f" and not np.array_equal(x, y,
                                                                            equal_nan=True)) \
                or (x.dtype.kind != "f" and not np.array_equal(x, y)):
            out.append(f"{name}: variable {v} differs")
    attrs = [json.loads(json.dumps(_normal({k: _plain(v) for k, v in d.attrs.items()}, r),
                                   default=str)) for d, r in ((da, roots_a), (db, roots_b))]
    return out + _json_diff(attrs[0], attrs[1], f"{name} attrs")


def _plain(v):
    return v.tolist() if isinstance(v, np.ndarray) else (v.item() if isinstance(v, np.generic)
                                                         else v)


def fingerprint(path) -> str:
    """sha256 of what a file *says*, timings aside: for a dynid model file its weights, masks
    and metadata without the wall-clock fields, for a netCDF file its variables and
    attributes likewise, else its bytes. Two files with the same fingerprint agree under
    :func:`compare_runs`."""
    from dynid.journal import content_hash
    from dynid.stagecache import file_digest

    path = Path(path)
    try:
        if path.suffix == ".h5":
            from dynid.modelfile import load_model

            net = load_model(path)
            return content_hash(("model", list(net.weights), list(net.biases),
                                 list(net.relu), json.dumps(_normal(net.meta, ()),
                                                            sort_keys=True, default=str)))
        if path.suffix == ".nc":
            import xarray as xr

            ds = xr.load_dataset(path, engine="h5netcdf")
            data = {v: ds[v].values for v in sorted(ds.variables) if not volatile(v)
                    and ds[v].dtype.kind in "biufc"}
            other = {v: ds[v].values.tolist() for v in sorted(ds.variables)
                     if not volatile(v) and v not in data}
            attrs = _normal({k: _plain(v) for k, v in ds.attrs.items()}, ())
            return content_hash(("netcdf", data, json.dumps([other, attrs], sort_keys=True,
                                                             default=str)))
    except Exception:   # not what the suffix says: compare the bytes
        pass
    return file_digest(path)


def compare_runs(run_a, run_b) -> list[str]:
    """Differences between two run folders (empty when they agree), timings aside."""
    a, b = Path(run_a), Path(run_b)
    ra = rb = tuple(sorted(set(_roots(a) + _roots(b)), key=len, reverse=True))
    fa, fb = _files(a), _files(b)
    out = [f"{f}: only in {a if f in fa else b}" for f in sorted(fa ^ fb)]
    for f in sorted(fa & fb):
        pa, pb = a / f, b / f
        if f.endswith(".json"):
            out += _json_diff(_normal(json.loads(pa.read_text()), ra),
                              _normal(json.loads(pb.read_text()), rb), f)
        elif f.endswith(".h5"):
            out += _model_diff(pa, pb, ra, rb, f)
        elif f.endswith(".nc"):
            out += _netcdf_diff(pa, pb, ra, rb, f)
        elif pa.read_bytes() != pb.read_bytes():
            out.append(f"{f}: bytes differ")
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m dynid.reproduce RUN_A RUN_B", file=sys.stderr)
        return 2
    for d in argv:
        if not Path(d).is_dir():
            print(f"dynid.reproduce: {d} is not a run folder", file=sys.stderr)
            return 2
    diffs = compare_runs(*argv)
    for d in diffs:
        print(d)
    n = len(_files(Path(argv[0])))
    print(f"{'identical' if not diffs else f'{len(diffs)} differences'}: {n} files compared "
          f"(timings aside) between {argv[0]} and {argv[1]}")
    return 0 if not diffs else 1


if __name__ == "__main__":   # pragma: no cover
    sys.exit(main())


__all__ = ["compare_runs", "fingerprint", "VOLATILE"]
