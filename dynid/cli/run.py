"""Sub-command ``run``: execute a pipeline file (see :mod:`dynid.pipeline`)."""

from __future__ import annotations

import argparse
import sys

from dynid.cli.common import add_input, add_output

RUN_HELP = """\
Run a pipeline: the stages listed in the [run] table of a TOML file, in order (simulate,
train, evaluate, certify, prune, controller, reach), each configured by its own table. Everything lands in
one folder (default runs/<name>): the dataset, the model, metrics, figures, summary.json and a
self-contained report.html (both saved after every stage).

The whole file is checked before anything runs. A stage whose table and input files are
unchanged since its last run is skipped (--force redoes it); an interrupted run (Ctrl-C, kill)
resumes at the first unfinished stage, and inside cell-pair, pruning and reach stages at the
first unfinished job. Independent jobs run in this process, in --workers N processes, or on a
Dask cluster (--scheduler ADDRESS); the files are the same whichever runs them.

example:
  dynid run examples/brusselator.toml
  dynid run examples/brusselator.toml --out-dir /tmp/myrun --workers 2
  dynid run examples/brusselator.toml --force certify
"""


def register(sub) -> None:
    p = sub.add_parser("run", help="run a pipeline file (TOML) end to end, with a report",
                       description=RUN_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input(p, "config", metavar="PIPELINE.toml", help="pipeline file")
    add_output(p, "--out-dir", directory=True, default=None, metavar="DIR",
                   help="run folder (overrides [run] out_dir)")
    p.add_argument("--force", nargs="*", default=None, metavar="STAGE",
                   help="run these stages again even when up to date (no name: every stage)")
    add_executor_options(p)
    p.set_defaults(func=cmd_run)


def add_executor_options(p) -> None:
    """--workers, --scheduler, --threads (see :mod:`dynid.executor`)."""
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="run independent jobs in N local worker processes (default 1: "
                        "in this process)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run independent jobs on the Dask cluster at ADDRESS, e.g. "
                        "tcp://127.0.0.1:8786 (pip install 'dynid[dask]')")
    p.add_argument("--threads", type=int, default=1, metavar="T",
                   help="torch / solver threads per job (default 1; workers x threads must "
                        "not exceed the cores)")


def executor_from_args(args):
    from dynid.executor import Executor

    return Executor(workers=args.workers, scheduler=args.scheduler, threads=args.threads,
                    progress=sys.stderr.isatty())


def cmd_run(args) -> int:
    from dynid.pipeline import run_pipeline

    force = False if args.force is None else (args.force or True)
    with executor_from_args(args) as executor:
        run_pipeline(args.config, out_dir=args.out_dir, force=force, executor=executor)
    return 0
