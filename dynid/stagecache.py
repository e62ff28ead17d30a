"""Which stages of a run are up to date: stage records keyed by content, and job journals.

A stage's *key* is the content hash of its name, its table of the config, the content of
every file it reads (the run's artefacts it consumes and any file its table names; timings
inside model and netCDF files aside, see :func:`dynid.reproduce.fingerprint`) and the package
version. After a stage finishes, its record is written (atomically, last) under the key: the
files it wrote with their sha256, the artefacts it registered, its part of ``summary.json``
and its section of the report. A later run whose key matches and whose files are still there,
unchanged, restores the record instead of running the stage again.

While a stage runs, its jobs (cell pairs, pruning levels, reach cells) are journaled (see
:mod:`dynid.journal`); an interrupted stage has no record, so the next run runs it again and
the executor reads the finished jobs back. Layout in the run folder::

    .dynid/stages/<stage>.json     the record of a finished stage
    .dynid/journal/<stage>/        finished jobs of a stage that has not finished

Example
-------
>>> import tempfile, pathlib
>>> cache = StageCache(pathlib.Path(tempfile.mkdtemp()))
>>> key = cache.stage_key("simulate", {"system": "brusselator"}, {}, None)
>>> cache.lookup("simulate", key) is None      # nothing recorded yet
True
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from dynid.atomic import write_text_atomic
from dynid.journal import Journal, content_hash
from dynid.results import jsonable

#: keys of a stage table that name input files (their bytes enter the stage key)
PATH_KEYS = ("model", "data")
#: files of the run folder that belong to the run, not to a stage
RUN_FILES = {"summary.json", "report.html"}
STATE_DIR = ".dynid"


def _fingerprint(path) -> str:
    from dynid.reproduce import fingerprint

    return fingerprint(path)


def file_digest(path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class StageCache:
    """Stage records and journals of one run folder."""

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.state = self.run_dir / STATE_DIR

    def _record_path(self, stage: str) -> Path:
        return self.state / "stages" / f"{stage}.json"

    def journal(self, stage: str) -> Journal:
        """The journal of finished jobs of ``stage``."""
        return Journal(self.state / "journal" / stage)

    def stage_key(self, stage: str, section: dict, inputs: dict, base_dir) -> str:
        """Content hash of the stage's name, table and input files (``inputs``: artefact
        name -> path; files named by the table's PATH_KEYS are read too)."""
        from dynid import __version__

        files = {name: _fingerprint(p) for name, p in sorted(inputs.items())
                 if p is not None and Path(p).is_file()}
        for k in PATH_KEYS:
            if isinstance(section.get(k), str):
                p = Path(section[k]).expanduser()
                p = p if p.is_absolute() or base_dir is None else Path(base_dir) / p
                if p.is_file():
                    files[f"[{k}]"] = _fingerprint(p)
        return content_hash({"stage": stage, "table": jsonable(section), "files": files,
                             "dynid": __version__})

    def lookup(self, stage: str, key: str) -> dict | None:
        """The stage's record when it was made under ``key`` and every file it lists is still
        there with the same content, else None."""
        try:
            rec = json.loads(self._record_path(stage).read_text())
        except (OSError, ValueError):
            return None
        if rec.get("key") != key:
            return None
        for rel, digest in rec.get("outputs", {}).items():
            p = self._abs(rel)
            if not p.is_file() or _fingerprint(p) != digest:
                return None
        return rec

    def forget(self, stage: str) -> None:
        """Drop the stage's record (it is about to run again)."""
        try:
            self._record_path(stage).unlink()
        except FileNotFoundError:
            pass

    def snapshot(self) -> dict:
        """(mtime, size) of every file of the run folder, to see what a stage writes."""
        out = {}
        for root, dirs, files in os.walk(self.run_dir):
            dirs[:] = [d for d in dirs if d != STATE_DIR]
            for name in files:
                p = Path(root) / name
                try:
                    st = p.stat()
                except FileNotFoundError:   # a temp file renamed meanwhile
                    continue
                out[p] = (st.st_mtime_ns, st.st_size)
        return out

    def record(self, stage: str, key: str, before: dict, artifacts: dict, summary: dict,
               report: list, seconds: float) -> None:
        """Write the record of a finished stage: files new or changed since the snapshot
        ``before`` plus the ``artifacts`` it registered; its ``summary`` entries and
        ``report`` fragments."""
        now = self.snapshot()
        changed = {p for p, st in now.items() if before.get(p) != st
                   and not (p.parent == self.run_dir and p.name in RUN_FILES)
                   and not p.name.startswith(".")}
        changed |= {Path(p) for p in artifacts.values() if Path(p).is_file()}
        rec = {"stage": stage, "key": key,
               "outputs": {self._rel(p): _fingerprint(p) for p in sorted(changed)},
               "artifacts": {k: self._rel(Path(v)) for k, v in artifacts.items()},
               "summary": jsonable(summary), "report": list(report), "seconds": seconds,
               "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_text_atomic(self._record_path(stage), json.dumps(rec) + "\n")

    def restore(self, rec: dict, ctx) -> None:
        """Put a record's artefacts, summary entries and report section back into ``ctx``."""
        ctx.artifacts.update({k: self._abs(v) for k, v in rec.get("artifacts", {}).items()})
        ctx.summary.update(rec.get("summary", {}))
        ctx.report.extend(rec.get("report", []))

    def _rel(self, p: Path) -> str:
        try:
            return Path(os.path.abspath(p)).relative_to(
                Path(os.path.abspath(self.run_dir))).as_posix()
        except ValueError:   # outside the run folder: keep it absolute
            return str(Path(p).absolute())

    def _abs(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.run_dir / p


__all__ = ["StageCache", "file_digest", "PATH_KEYS"]
