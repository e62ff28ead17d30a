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
    """Run one command; returns the exit code (0 done, 2 bad input, 130 interrupted,
    1 internal error). Every output path is checked before the handler starts
    (:func:`dynid.cli.common.check_paths`)."""
    from dynid.cli.common import check_paths

    parser = build_parser()
    args = parser.parse_args(argv)   # bad usage: one line on stderr and SystemExit(2)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    name = f"dynid {args.command}"
    try:
        check_paths(args)
        return int(args.func(args) or 0)
    except DynidError as exc:
        print(f"{name}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted (finished work was kept where the command saves "
              "progress)", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{name}: error: out of memory; use a smaller problem (fewer samples, cells "
              "or partitions, a smaller network)", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the command cannot read or write: say which, in one line
        what = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        print(f"{name}: error: {what}; check the path and its permissions", file=sys.stderr)
        return 2
    except Exception as exc:  # an internal error: say so plainly, keep the traceback short
        import traceback

        traceback.print_exc(limit=-3)
        print(f"{name}: internal error: {type(exc).__name__}: {_one_line(exc)}",
              file=sys.stderr)
        return 1


def _one_line(exc) -> str:
    return " ".join(str(exc).split())


def entry() -> None:
    sys.exit(main())
