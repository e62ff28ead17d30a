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
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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
    """

    run_dir: Path
    config: dict
    artifacts: dict = field(default_factory=dict)
    report: HtmlReport = field(default_factory=lambda: HtmlReport("dynid run"))
    summary: dict = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path.cwd)
    logger: Callable[[str], None] = print
    stage: str = ""

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
    """Read and check a pipeline TOML file (syntax, [run] table, stage names)."""
    path = Path(path)
    config = read_toml(path, "pipeline file")
    run = config.get("run")
    if not isinstance(run, dict):
        raise ConfigError(f"{path} needs a [run] table with name and stages")
    check_keys(run, RUN_KEYS, f"[run] of {path}")
    if not isinstance(run.get("name"), str) or not run["name"].strip():
        raise ConfigError(f"[run] of {path} needs name = \"...\" (a non-empty string)")
    stages = run.get("stages", [])
    if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
        raise ConfigError(f"[run] stages in {path} must be a list of stage names, e.g. "
                          "[\"simulate\", \"train\", \"evaluate\"]")
    for s in stages:
        if s not in STAGES:
            raise ConfigError(f"unknown stage '{s}' in [run] stages of {path}; known stages: "
                              f"{', '.join(STAGES)}")
    for key, value in config.items():
        if key == "run":
            continue
        if key not in STAGES:
            raise ConfigError(f"unknown table or key '{key}' in {path}; tables are [run] and "
                              f"one per stage: {', '.join(STAGES)}")
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' in {path} must be a table ([{key}])")
    return config


def _stage_function(name: str) -> Callable:
    target = STAGES[name]
    module_name, func_name = target.split(":")
    try:
        spec = importlib.util.find_spec(module_name)
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        raise ConfigError(f"stage '{name}' needs module {module_name}, which is not available "
                          "in this installation; remove it from [run] stages")
    module = importlib.import_module(module_name)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"stage '{name}': {module_name} has no function {func_name}")
    return func


def run_pipeline(config_path, *, out_dir=None, log: Callable[[str], None] | None = None,
                 ) -> RunContext:
    """Run the stages of a pipeline file in order; return the :class:`RunContext`.

    Parameters
    ----------
    config_path : the TOML file.
    out_dir : overrides ``[run] out_dir``.
    log : receives one-line progress messages (default: print).

    Every stage's module is resolved before anything runs, so a config naming a stage that is
    not installed fails at once with a ConfigError. ``summary.json`` and ``report.html`` are
    saved after every stage (and when a stage fails, with the failure recorded).
    """
    config_path = Path(config_path)
    config = load_config(config_path)
    run = config["run"]
    name = run["name"]
    stages = list(run.get("stages", []))
    funcs = {s: _stage_function(s) for s in stages}
    run_dir = Path(out_dir or run.get("out_dir") or Path("runs") / name).expanduser()
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = log or (lambda m: print(m, flush=True))
    report = HtmlReport(f"dynid run: {name}")
    if run.get("description"):
        report.add_text(str(run["description"]))
    from dynid import __version__

    ctx = RunContext(run_dir=run_dir, config=config, report=report, logger=logger,
                     base_dir=config_path.resolve().parent)
    ctx.summary["run"] = {"name": name, "config": str(config_path), "run_dir": str(run_dir),
                          "stages": stages, "completed": [], "status": "running",
                          "dynid_version": __version__,
                          "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    t_run = time.perf_counter()
    for i, stage in enumerate(stages, 1):
        ctx.stage = ""
        ctx.log(f"[{i}/{len(stages)}] {stage} ...")
        ctx.stage = stage
        t0 = time.perf_counter()
        try:
            funcs[stage](dict(config.get(stage, {})), ctx)
        except BaseException as exc:
            ctx.summary["run"]["status"] = ("interrupted" if isinstance(exc, KeyboardInterrupt)
                                            else "failed")
            ctx.summary["run"]["failed_stage"] = stage
            ctx.summary["run"]["error"] = f"{type(exc).__name__}: {exc}"
            ctx.summary["run"]["seconds"] = time.perf_counter() - t_run
            ctx.stage = ""
            ctx.save()
            raise
        dt = time.perf_counter() - t0
        ctx.summary["run"]["completed"].append(stage)
        ctx.summary["run"].setdefault("stage_seconds", {})[stage] = dt
        ctx.summary["run"]["seconds"] = time.perf_counter() - t_run
        ctx.save()
        ctx.stage = ""
        ctx.log(f"[{i}/{len(stages)}] {stage} done in {dt:.1f} s")
    ctx.summary["run"]["status"] = "done"
    ctx.summary["run"]["artifacts"] = {k: str(v) for k, v in ctx.artifacts.items()}
    ctx.save()
    ctx.log(f"run '{name}' finished in {time.perf_counter() - t_run:.1f} s: "
            f"{run_dir / 'report.html'}")
    return ctx


__all__ = ["run_pipeline", "load_config", "check_keys", "RunContext", "STAGES"]
