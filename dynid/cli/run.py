"""Sub-command ``run``: execute a pipeline file (see :mod:`dynid.pipeline`)."""

from __future__ import annotations

import argparse

from dynid.cli.common import add_input, add_output

RUN_HELP = """\
Run a pipeline: the stages listed in the [run] table of a TOML file, in order (simulate,
train, evaluate, and later certify, prune, reach), each configured by its own table.
Everything lands in one folder (default runs/<name>): the dataset, the model, metrics,
figures, summary.json and a self-contained report.html (both saved after every stage).

example:
  dynid run examples/brusselator.toml
  dynid run examples/brusselator.toml --out-dir /tmp/myrun
"""


def register(sub) -> None:
    p = sub.add_parser("run", help="run a pipeline file (TOML) end to end, with a report",
                       description=RUN_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input(p, "config", metavar="PIPELINE.toml", help="pipeline file")
    add_output(p, "--out-dir", directory=True, default=None, metavar="DIR",
                   help="run folder (overrides [run] out_dir)")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from dynid.pipeline import run_pipeline

    run_pipeline(args.config, out_dir=args.out_dir)
    return 0
