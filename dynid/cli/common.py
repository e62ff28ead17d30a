"""Options and helpers shared by several sub-commands, and the CLI's one validation rule.

**Numbers.** Every numeric option declares its domain with one of the argparse ``type=``
functions below (``positive_float``, ``nonneg_float``, ``finite_float``, ``fraction_float``,
``positive_int``, ``nonneg_int``); argparse rejects a bad value before the handler runs, as
one line with exit code 2 (the rules live in :mod:`dynid.options`)::

    p.add_argument("--time-limit", type=positive_float)

**Files.** Options that name a file the command writes are added with :func:`add_output`
(inputs with :func:`add_input`); :func:`dynid.cli.main` checks them all with
:func:`check_paths` *before* the handler starts: an output must not be an input or a
directory, its folder must be writable, and an existing file is replaced only with
``--overwrite`` (added automatically to every command that writes). ``-`` means stdout.
"""

from __future__ import annotations

import argparse
import json
import sys

from dynid.atomic import write_text_atomic
from dynid.errors import ConfigError
from dynid.options import check_number, check_output
from dynid.results import jsonable


def number_type(rule: str, kind=float, maximum=None, label: str | None = None):
    """An argparse ``type=`` converting the text to ``kind`` under ``rule`` (and at most
    ``maximum``) of :func:`dynid.options.check_number`; the ready-made ones below cover the
    common cases, e.g. ``type=number_type("positive", int, maximum=1000)`` for ``--steps``."""
    def convert(text):
        try:
            return check_number(text, "value", rule=rule, kind=kind, maximum=maximum)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace("value must be", "must be")) \
                from None

    convert.__name__ = label or f"{rule}_{kind.__name__}"
    return convert


positive_float = number_type("positive", float, label="positive_float")
nonneg_float = number_type("nonneg", float, label="nonneg_float")
finite_float = number_type("finite", float, label="finite_float")
fraction_float = number_type("fraction", float, label="fraction_float")
positive_int = number_type("positive", int, label="positive_int")
nonneg_int = number_type("nonneg", int, label="nonneg_int")

_OUT, _IN = "_dynid_outputs", "_dynid_inputs"


def _register(p, key: str, dest: str) -> None:
    have = tuple(p.get_default(key) or ())
    p.set_defaults(**{key: have + (dest,)})


def add_output(p, *flags, directory: bool = False, **kw):
    """``p.add_argument(*flags, **kw)`` for a path the command writes, checked up front by
    :func:`check_paths`; adds ``--overwrite`` to ``p`` once."""
    action = p.add_argument(*flags, **kw)
    _register(p, _OUT, action.dest + (":dir" if directory else ""))
    if not directory and p.get_default("overwrite") is None:
        p.add_argument("--overwrite", action="store_true", default=False,
                       help="replace output files that already exist (default: refuse)")
    return action


def add_input(p, *flags, **kw):
    """``p.add_argument(*flags, **kw)`` for a file the command reads (an output may not be
    the same file)."""
    action = p.add_argument(*flags, **kw)
    _register(p, _IN, action.dest)
    return action


def _values(args, dest):
    v = getattr(args, dest, None)
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def check_paths(args) -> None:
    """Check every output path of the parsed command (see the module docstring); raise
    ConfigError on the first problem. Called by :func:`dynid.cli.main` before the handler."""
    inputs = [v for d in (getattr(args, _IN, None) or ()) for v in _values(args, d)]
    seen = {}
    for entry in getattr(args, _OUT, None) or ():
        dest, _, kind = entry.partition(":")
        for value in _values(args, dest):
            flag = "--" + dest.replace("_", "-")
            check_output(value, inputs=inputs, overwrite=bool(getattr(args, "overwrite", False)),
                         name=flag, directory=kind == "dir")
            if str(value) != "-":
                key = str(value)
                if key in seen:
                    raise ConfigError(f"{flag} and {seen[key]} name the same file {value}; "
                                      "give different names")
                seen[key] = flag


def torch_device(text: str) -> str:
    """argparse type of ``--device``: ``cpu``, ``cuda`` or ``cuda:N``, and CUDA only when
    torch sees a CUDA device."""
    t = str(text).strip().lower()
    if t == "cpu":
        return t
    head, _, idx = t.partition(":")
    if head != "cuda" or (idx and not idx.isdigit()):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use cpu, cuda or cuda:N")
    import torch

    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: torch sees no CUDA device here; use "
                                         "--device cpu")
    if idx and int(idx) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: only {torch.cuda.device_count()} CUDA "
                                         "device(s) here")
    return t


def add_box_options(p, required: bool = True, what: str = "input box") -> None:
    p.add_argument("--lo", type=finite_float, nargs="+", required=required, metavar="L",
                   help=f"lower corner of the {what}, one value per state")
    p.add_argument("--hi", type=finite_float, nargs="+", required=required, metavar="H",
                   help=f"upper corner of the {what}, one value per state")


def add_solver_options(p) -> None:
    from dynid.milp.solve import SOLVERS

    p.add_argument("--solver", choices=["auto", *SOLVERS], default="auto",
                   help="MIP/LP solver; auto = Gurobi when the model fits its licence, else "
                        "HiGHS (linear) or SCIP (quadratic) (default: auto)")
    p.add_argument("--time-limit", type=positive_float, default=None, metavar="S",
                   help="wall-clock limit in seconds (> 0); a limit hit gives status "
                        "'unknown' with the gap, never 'certified'")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="solver threads (default: solver's)")


def add_json_option(p) -> None:
    add_output(p, "--json", metavar="PATH", default=None,
               help="also write the result as JSON to PATH ('-' for stdout)")


def add_norm_option(p) -> None:
    p.add_argument("--norm", default="inf", choices=["inf", "1", "2"],
                   help="norm of the distance (default: inf)")


def write_json(obj, path) -> None:
    """Write ``obj`` (anything with to_dict(), or plain data) as JSON to ``path`` or stdout."""
    if path is None:
        return
    data = obj.to_dict() if hasattr(obj, "to_dict") else jsonable(obj)
    text = json.dumps(data, indent=2)
    if path == "-":
        sys.stdout.write(text + "\n")
    else:
        write_text_atomic(path, text + "\n")


__all__ = ["number_type", "positive_float", "nonneg_float", "finite_float", "fraction_float", "positive_int",
           "nonneg_int", "torch_device", "add_output", "add_input", "check_paths", "add_box_options",
           "add_solver_options", "add_json_option", "add_norm_option", "write_json"]


def points_arg(net, at, flag: str = "--at"):
    """The points of a ``--at`` list (n_in values each) as an (m, n_in) array."""
    import numpy as np

    from dynid.errors import ShapeError

    at = np.asarray(at, float)
    if at.size % net.n_in:
        raise ShapeError(f"{flag} needs a multiple of {net.n_in} values (one point is "
                         f"{net.n_in} values), got {at.size}")
    return at.reshape(-1, net.n_in)


def run_points(points, certify, line, json_path) -> list:
    """``certify(pt)`` for each point, a line each (stderr when the JSON goes to stdout);
    Ctrl-C keeps the finished ones. Writes the JSON (one certificate, or a list) and returns
    the certificates; fewer than ``points`` means interrupted (exit 130)."""
    out = sys.stderr if json_path == "-" else sys.stdout
    certs = []
    try:
        for pt in points:
            c = certify(pt)
            certs.append(c)
            print(line(pt, c), file=out)
    except KeyboardInterrupt:
        print(f"interrupted after {len(certs)} of {len(points)} points", file=sys.stderr)
        if not certs:
            raise
    write_json(certs[0] if len(certs) == 1 else [c.to_dict() for c in certs], json_path)
    return certs
