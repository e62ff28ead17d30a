"""Options and helpers shared by several sub-commands."""

from __future__ import annotations

import json
import sys

from dynid.atomic import write_text_atomic
from dynid.results import jsonable


def add_box_options(p, required: bool = True, what: str = "input box") -> None:
    p.add_argument("--lo", type=float, nargs="+", required=required, metavar="L",
                   help=f"lower corner of the {what}, one value per state")
    p.add_argument("--hi", type=float, nargs="+", required=required, metavar="H",
                   help=f"upper corner of the {what}, one value per state")


def add_solver_options(p) -> None:
    p.add_argument("--solver", choices=["auto", "gurobi", "highs", "scip"], default="auto",
                   help="MIP/LP solver; auto = Gurobi when the model fits its licence, else "
                        "HiGHS (linear) or SCIP (quadratic) (default: auto)")
    p.add_argument("--time-limit", type=float, default=None, metavar="S",
                   help="wall-clock limit in seconds; a limit hit gives status 'unknown' "
                        "with the gap, never 'certified'")
    p.add_argument("--threads", type=int, default=None, help="solver threads (default: solver's)")


def add_json_option(p) -> None:
    p.add_argument("--json", metavar="PATH", default=None,
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
