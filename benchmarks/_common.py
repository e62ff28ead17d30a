"""Shared helpers for the benchmarks: machine facts, JSON output, markdown tables.

Every benchmark writes ``benchmarks/results/NAME.json`` as ``{"machine": {...}, "rows": [...]}``
and prints a markdown table for the README.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
LOAD_AT_START = os.getloadavg() if hasattr(os, "getloadavg") else None   # when first imported


def machine_info() -> dict:
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg_start": LOAD_AT_START,
        "loadavg_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    for mod in ("numpy", "scipy", "torch", "casadi", "gurobipy", "highspy", "pyscipopt"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", None) or getattr(m, "gurobi", lambda: None)()
        except Exception:  # optional dependency missing
            info[mod] = None
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        pass
    return info


def write_results(name: str, rows: list[dict], extra: dict | None = None) -> Path:
    from dynid.atomic import write_text_atomic
    from dynid.results import jsonable

    RESULTS.mkdir(parents=True, exist_ok=True)
    if "--quick" in sys.argv[1:] and not name.endswith("_quick"):   # never replaces a full run
        name = f"{name}_quick"
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine_info(), **(extra or {}), "rows": rows}
    write_text_atomic(path, json.dumps(jsonable(payload), indent=2) + "\n")
    return path


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def markdown_table(rows: list[dict], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


class Timer:
    """``with Timer() as t: ...; t.seconds``"""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False
