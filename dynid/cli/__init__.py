"""The ``dynid`` command line: one entry point, one sub-command per task.

Each sub-command lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func`` (a handler taking the parsed args and returning an exit code).
Exit codes: 0 done (whatever the verdict), 2 bad input (a DynidError, printed as one line),
1 internal error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from dynid.errors import DynidError

# modules that provide sub-commands, in the order they appear in --help
COMMAND_MODULES = [
    "dynid.cli.data",      # simulate, train, evaluate, info
    "dynid.cli.certify",   # certify invertibility | radius
    "dynid.cli.match",     # prune, match
    "dynid.cli.reach",     # reach
    "dynid.cli.run",       # run PIPELINE.toml
]

DESCRIPTION = """\
dynid fits ReLU surrogates x[k+1] = F(x[k]) of ODE systems and proves things about them:
whether F is invertible and where it folds, how far a pruned copy drifts, and where the state
can be after k steps. Every answer is a certificate (a sound bound), a witness anyone can check
by a forward pass, or an honest 'unknown' with the gap.

typical session:
  dynid simulate brusselator --out data.nc
  dynid train data.nc --out model.h5
  dynid evaluate model.h5 data.nc
  dynid certify invertibility model.h5 --lo 0 0 --hi 4 5
  dynid run examples/brusselator.toml          (the whole pipeline, with a report)
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as one line and exit code 2 (as it does by default),
    without the multi-line usage dump."""

    def error(self, message):  # pragma: no cover - exercised through the CLI tests
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dynid", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from dynid import __version__

    parser.add_argument("--version", action="version", version=f"dynid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DynidError as exc:
        print(f"dynid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dynid {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal error: say so plainly, keep the traceback short
        import traceback

        traceback.print_exc(limit=-3)
        print(f"dynid {args.command}: internal error: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1


def entry() -> None:
    sys.exit(main())
