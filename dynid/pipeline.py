"""Pipelines: a TOML file names the stages to run and configures each one.

Layout of a pipeline file::

    [run]
    name = "brusselator"              # required
    out_dir = "runs/brusselator"      # optional, default runs/<name> (relative to the cwd)
    stages = ["simulate", "train", "evaluate"]

    [simulate]                        # one table per stage, keys checked by the stage
    system = "brusselator"
    ...

Stages are looked up by name in :data:`STAGES` (``"module:function"`` strings, imported only
when needed), so later stages (certify, prune, reach) plug in without this module changing.
A stage is ``run(section: dict, ctx: RunContext) -> None``: it reads its table, puts files in
``ctx.run_dir``, records them in ``ctx.artifacts``, writes its results under its own key of
``ctx.summary`` and adds sections to ``ctx.report``. After every stage the pipeline saves
``summary.json`` and ``report.html`` in the run folder, so an interrupted or failed run keeps
what finished.

Checked up front, before any file is written: the TOML syntax, the ``[run]`` table, every
stage table against its stage's schema (:mod:`dynid.stages.schema`: unknown key, wrong type,
impossible value -- one line naming the key) and that each stage's inputs come from an
earlier stage or from the table (``[certify]`` without a ``[train]`` stage needs ``model``).

Reproducible and resumable: training stops on epochs, not on the clock, so a run gives the
same files on the same machine every time. Each stage's outputs are recorded under a content
hash of its table and input files (:mod:`dynid.stagecache`); a stage whose hash matches is
skipped (``force=`` redoes it), and an interrupted stage resumes at its first unfinished job
(cell pair, pruning level, reach cell), through the run's :class:`~dynid.executor.Executor`
(``ctx.executor``: in-process, worker processes or Dask).

Example
-------
>>> import tempfile, pathlib
>>> cfg = pathlib.Path(tempfile.mkdtemp()) / "p.toml"
>>> _ = cfg.write_text('[run]\\nname = "x"\\nstages = []\\nout_dir = "' +
...                    str(cfg.parent / "out") + '"\\n')
>>> ctx = run_pipeline(cfg, log=lambda m: None)
>>> sorted(p.name for p in ctx.run_dir.iterdir())
['report.html', 'summary.json']
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from dynid.atomic import write_text_atomic
from dynid.errors import ConfigError
from dynid.report import HtmlReport
from dynid.results import jsonable

#: stage name -> "module:function"; a stage whose module is missing is a ConfigError
STAGES: dict[str, str] = {
    "simulate": "dynid.stages.data:simulate",
    "train": "dynid.stages.data:train",
    "evaluate": "dynid.stages.data:evaluate",
    "certify": "dynid.stages.certify:run",
    "prune": "dynid.stages.prune:run",
    "controller": "reach.control:run",
    "reach": "reach.stage:run",
}

RUN_KEYS = {"name", "out_dir", "stages", "description"}

#: artefacts each stage reads: (artefact, table keys that name a file instead, required);
#: a stage not listed here reads every artefact made before it
STAGE_INPUTS: dict[str, list] = {
    "simulate": [],
    "train": [("dataset", ("data",), True)],
    "evaluate": [("model", ("model",), True), ("dataset", ("data",), False)],
    "certify": [("model", ("model",), True)],
    "prune": [("model", ("model",), True), ("dataset", ("data",), True)],
    "controller": [("model", ("model",), True)],
    "reach": [("model", ("model", "benchmark"), True),
              ("controller", ("controller", "plant"), False)],
}
#: artefacts a stage provides to later ones (for the up-front check of the inputs)
STAGE_OUTPUTS: dict[str, tuple] = {"simulate": ("dataset",), "train": ("model",),
                                   "controller": ("controller",)}


@dataclass
class RunContext:
    """What the stages of one run share.

    Attributes
    ----------
    run_dir : folder of the run's files.
    config : the whole parsed config (dict).
    artifacts : name -> Path of files made so far (``dataset``, ``model``, ``metrics``, ...).
    report : the run's :class:`~dynid.report.HtmlReport`.
    summary : JSON-able dict; each stage writes under its own key.
    base_dir : folder of the config file (for resolving paths the config names).
    logger : callable taking one line of text.
    executor : the :class:`~dynid.executor.Executor` that stages give their jobs to (with
        the stage's journal attached while it runs); None means in-process.
    """

    run_dir: Path
    config: dict
    artifacts: dict = field(default_factory=dict)
    report: HtmlReport = field(default_factory=lambda: HtmlReport("dynid run"))
    summary: dict = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path.cwd)
    logger: Callable[[str], None] = print
    stage: str = ""
    executor: object = None

    def log(self, msg: str) -> None:
        """One progress line, prefixed with the current stage."""
        self.logger(f"[{self.stage}] {msg}" if self.stage else str(msg))

    def resolve(self, path) -> Path:
        """A path named in the config: absolute as is, else relative to the config's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def save(self) -> None:
        """Write summary.json and report.html (atomically)."""
        write_text_atomic(self.run_dir / "summary.json",
                          json.dumps(jsonable(self.summary), indent=2) + "\n")
        self.report.save(self.run_dir / "report.html")


def check_keys(section: dict, allowed, where: str) -> None:
    """Raise ConfigError naming the first key of ``section`` that is not in ``allowed``.

    Example
    -------
    >>> check_keys({"dt": 0.1}, {"dt", "system"}, "[simulate]")
    """
    for key in section:
        if key not in allowed:
            raise ConfigError(f"unknown key '{key}' in {where}; allowed keys: "
                              f"{', '.join(sorted(allowed))}")


def read_toml(path, what: str = "TOML file") -> dict:
    """Parse a TOML file; a missing file, bad syntax or non-UTF-8 bytes raise ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text (UTF-8) TOML file") from None


def load_config(path) -> dict:
    """Read and check a pipeline TOML file: syntax, the [run] table, stage names, every stage
    table against its schema, and that each stage's inputs exist (ConfigError otherwise)."""
    path = Path(path)
    config = read_toml(path, "pipeline file")
    run = config.get("run")
    if not isinstance(run, dict):
        raise ConfigError(f"{path} needs a [run] table with name and stages")
    check_keys(run, RUN_KEYS, f"[run] of {path}")
    if not isinstance(run.get("name"), str) or not run["name"].strip():
        raise ConfigError(f"[run] of {path} needs name = \"...\" (a non-empty string)")
    for key in ("out_dir", "description"):
        if key in run and not isinstance(run[key], str):
            raise ConfigError(f"[run] {key} in {path} must be a string, got {run[key]!r}")
    stages = run.get("stages", [])
    if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
        raise ConfigError(f"[run] stages in {path} must be a list of stage names, e.g. "
                          "[\"simulate\", \"train\", \"evaluate\"]")
    for s in stages:
        if s not in STAGES:
            raise ConfigError(f"unknown stage '{s}' in [run] stages of {path}; known stages: "
                              f"{', '.join(STAGES)}")
    if len(set(stages)) != len(stages):
        raise ConfigError(f"[run] stages in {path} names a stage twice: {stages}")
    for key, value in config.items():
        if key == "run":
            continue
        if key not in STAGES:
            raise ConfigError(f"unknown table or key '{key}' in {path}; tables are [run] and "
                              f"one per stage: {', '.join(STAGES)}")
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' in {path} must be a table ([{key}])")
        validate_table(key, value, path.parent)
    _check_inputs(stages, config)
    return config


def validate_table(stage: str, section: dict, base_dir=None) -> None:
    """Check one stage table against the schema its module declares (``SCHEMAS[stage]``, see
    :mod:`dynid.stages.schema`), else against its ``KEYS``. Raises ConfigError."""
    module = _stage_module(stage)
    if module is None:   # reported by _stage_function when the stage is run
        return
    keys = getattr(module, f"{stage.upper()}_KEYS", None) or getattr(module, "KEYS", None)
    schema = getattr(module, "SCHEMAS", {}).get(stage)
    if schema is not None:
        schema.validate(section, f"[{stage}]", base_dir, allowed=keys)
    elif keys is not None:
        check_keys(section, keys, f"[{stage}]")


def _check_inputs(stages, config) -> None:
    """Each stage's required inputs come from an earlier stage or from its table."""
    made: set = set()
    for s in stages:
        section = config.get(s, {})
        for artefact, keys, needed in STAGE_INPUTS.get(s, []):
            if needed and artefact not in made and not any(k in section for k in keys):
                earlier = [t for t, outs in STAGE_OUTPUTS.items() if artefact in outs]
                raise ConfigError(f"[{s}] needs a {artefact}: run a {' or '.join(earlier)} "
                                  f"stage before it or set {' or '.join(keys)} = ... in [{s}]")
        made.update(STAGE_OUTPUTS.get(s, ()))


def _stage_module(name: str):
    module_name = STAGES[name].split(":")[0]
    try:
        spec = importlib.util.find_spec(module_name)
    except ModuleNotFoundError:
        spec = None
    return None if spec is None else importlib.import_module(module_name)


def _stage_function(name: str) -> Callable:
    module = _stage_module(name)
    module_name, func_name = STAGES[name].split(":")
    if module is None:
        raise ConfigError(f"stage '{name}' needs module {module_name}, which is not available "
                          "in this installation; remove it from [run] stages")
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"stage '{name}': {module_name} has no function {func_name}")
    return func


def run_pipeline(config_path, *, out_dir=None, log: Callable[[str], None] | None = None,
                 force: bool | Iterable[str] = False, executor=None) -> RunContext:
    """Run the stages of a pipeline file in order; return the :class:`RunContext`.

    Parameters
    ----------
    config_path : the TOML file.
    out_dir : overrides ``[run] out_dir``.
    log : receives one-line progress messages (default: print).
    force : True runs every stage again; a list of stage names runs those again. Otherwise a
        stage whose recorded key (its table and input files) matches is skipped.
    executor : a :class:`~dynid.executor.Executor` for the stages' jobs (default
        in-process); the files do not depend on which.

    Every table is checked and every stage's module resolved before anything runs or any file
    is written. ``summary.json`` and ``report.html`` are saved after every stage (and when a
    stage fails, with the failure recorded).
    """
    from dynid.executor import Executor
    from dynid.stagecache import StageCache

    config_path = Path(config_path)
    config = load_config(config_path)
    run = config["run"]
    name = run["name"]
    stages = list(run.get("stages", []))
    funcs = {s: _stage_function(s) for s in stages}
    forced = _forced(force, stages)
    run_dir = Path(out_dir or run.get("out_dir") or Path("runs") / name).expanduser()
    _make_run_dir(run_dir)
    logger = log or (lambda m: print(m, flush=True))
    report = HtmlReport(f"dynid run: {name}")
    if run.get("description"):
        report.add_text(str(run["description"]))
    from dynid import __version__

    own_executor = executor is None
    executor = Executor() if executor is None else executor
    cache = StageCache(run_dir)
    ctx = RunContext(run_dir=run_dir, config=config, report=report, logger=logger,
                     base_dir=config_path.resolve().parent, executor=executor)
    ctx.summary["run"] = {"name": name, "config": str(config_path), "run_dir": str(run_dir),
                          "stages": stages, "completed": [], "skipped": [],
                          "status": "running", "executor": executor.describe(),
                          "dynid_version": __version__,
                          "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    t_run = time.perf_counter()
    try:
        for i, stage in enumerate(stages, 1):
            _run_stage(ctx, cache, stage, funcs[stage], i, len(stages), stage in forced,
                       executor, t_run)
    finally:
        ctx.executor = executor
        if own_executor:
            executor.close()
    ctx.summary["run"]["status"] = "done"
    ctx.summary["run"]["artifacts"] = {k: str(v) for k, v in ctx.artifacts.items()}
    ctx.save()
    ctx.log(f"run '{name}' finished in {time.perf_counter() - t_run:.1f} s: "
            f"{run_dir / 'report.html'}")
    return ctx


def _run_stage(ctx, cache, stage, func, i, n, forced, executor, t_run) -> None:
    """Skip ``stage`` when its record matches, else run it with its journal and record it."""
    section = dict(ctx.config.get(stage, {}))
    key = cache.stage_key(stage, section, _stage_inputs(stage, section, ctx), ctx.base_dir)
    run_info = ctx.summary["run"]
    ctx.stage = ""
    rec = None if forced else cache.lookup(stage, key)
    if rec is not None:
        cache.restore(rec, ctx)
        run_info["completed"].append(stage)
        run_info["skipped"].append(stage)
        ctx.save()
        ctx.log(f"[{i}/{n}] {stage}: up to date, skipped (key {key[:12]}; --force redoes it)")
        return
    journal = cache.journal(stage)
    if forced:
        journal.clear()
    cache.forget(stage)
    resumed = len(journal)
    ctx.log(f"[{i}/{n}] {stage} ..." + (f" (resuming: {resumed} finished jobs journaled)"
                                         if resumed else ""))
    ctx.stage = stage
    ctx.executor = executor.with_journal(journal)
    before = cache.snapshot()
    artifacts_before, summary_before = dict(ctx.artifacts), dict(ctx.summary)
    report_start = len(ctx.report)
    t0 = time.perf_counter()
    try:
        func(section, ctx)
    except BaseException as exc:
        run_info["status"] = ("interrupted" if isinstance(exc, KeyboardInterrupt)
                              else "failed")
        run_info["failed_stage"] = stage
        run_info["error"] = f"{type(exc).__name__}: {exc}"
        run_info["seconds"] = time.perf_counter() - t_run
        run_info["journaled_jobs"] = len(journal)
        ctx.stage = ""
        ctx.save()
        raise
    dt = time.perf_counter() - t0
    new_artifacts = {k: v for k, v in ctx.artifacts.items() if artifacts_before.get(k) != v}
    new_summary = {k: v for k, v in ctx.summary.items()
                   if k != "run" and summary_before.get(k) is not v}
    cache.record(stage, key, before, new_artifacts, new_summary,
                 ctx.report.fragments(report_start), dt)
    journal.clear()
    run_info["completed"].append(stage)
    run_info.setdefault("stage_seconds", {})[stage] = dt
    run_info["seconds"] = time.perf_counter() - t_run
    ctx.save()
    ctx.stage = ""
    ctx.log(f"[{i}/{n}] {stage} done in {dt:.1f} s")


def _stage_inputs(stage: str, section: dict, ctx) -> dict:
    """The artefacts ``stage`` reads (those its table does not replace by a file key)."""
    if stage not in STAGE_INPUTS:
        return dict(ctx.artifacts)
    return {a: ctx.artifacts[a] for a, keys, _ in STAGE_INPUTS[stage]
            if a in ctx.artifacts and not any(k in section for k in keys)}


def _forced(force, stages) -> set:
    if force is True:
        return set(stages)
    if not force:
        return set()
    names = [force] if isinstance(force, str) else list(force)
    for s in names:
        if s not in stages:
            raise ConfigError(f"--force {s}: not a stage of this run; its stages are "
                              f"{', '.join(stages)}")
    return set(names)


def _make_run_dir(run_dir: Path) -> None:
    """Create the run folder; one clear line when that is impossible."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"the run folder {run_dir} exists and is not a folder: choose "
                          "another --out-dir (or [run] out_dir)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the run folder {run_dir}: {exc.strerror or exc}; "
                          "choose another --out-dir (or [run] out_dir)") from None
    if not os.access(run_dir, os.W_OK):
        raise ConfigError(f"the run folder {run_dir} is not writable: choose another "
                          "--out-dir (or [run] out_dir)")


__all__ = ["run_pipeline", "load_config", "validate_table", "check_keys", "RunContext",
           "STAGES", "STAGE_INPUTS"]
