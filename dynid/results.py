"""Result values returned by every certification query.

A :class:`Certificate` is a small frozen dataclass: a status in {certified, counterexample,
unknown}, the value found (incumbent / witness value), the solver's valid bound (best bound /
dual bound), the gap, the witness (checked by a float64 forward pass), the solver that answered,
the seconds spent and the model size. ``to_dict()`` gives a JSON-safe dict; ``to_json()`` text.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

import numpy as np


class Status(str, Enum):
    CERTIFIED = "certified"
    COUNTEREXAMPLE = "counterexample"
    UNKNOWN = "unknown"

    def __str__(self) -> str:  # prints as the plain word
        return self.value


def verdict(bound: float, tol: float, counterexample: bool = False) -> Status:
    """The one verdict rule of every certificate: ``certified`` when the proven bound (a
    solver best bound / dual bound, padded) is at most ``tol``; else ``counterexample`` when
    the caller holds a witness re-checked in float64 that violates the property; else
    ``unknown`` (a NaN bound, a time limit, an open gap).

    >>> verdict(1e-7, 1e-6), verdict(0.5, 1e-6, counterexample=True), verdict(float("nan"), 1.0)
    (<Status.CERTIFIED: 'certified'>, <Status.COUNTEREXAMPLE: 'counterexample'>, <Status.UNKNOWN: 'unknown'>)
    """
    if bound <= tol:
        return Status.CERTIFIED
    return Status.COUNTEREXAMPLE if counterexample else Status.UNKNOWN


def jsonable(obj: Any) -> Any:
    """Recursively convert numpy arrays/scalars, enums and non-finite floats for JSON."""
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    return obj


@dataclass(frozen=True)
class Certificate:
    """Outcome of one certification query.

    Attributes
    ----------
    query : what was asked (e.g. "noninvertibility", "certified_radius", "equivalence").
    status : certified | counterexample | unknown.
    value : best value found (objective of the checked witness; for a max problem a lower bound).
    bound : valid bound from the solver (for a max problem an upper bound on the optimum).
    gap : bound - value (>= 0), or inf when no bound is known.
    witness : dict of named float64 arrays (e.g. {"x": ..., "y": ...}), re-checked, or None.
    solver : name of the solver that answered ("gurobi", "highs", "scip", ...).
    seconds : wall-clock time.
    model_size : e.g. {"variables": ..., "binaries": ..., "constraints": ...}.
    info : anything else worth reporting (settings, tolerances, fallback messages).
    """

    query: str
    status: Status
    value: float
    bound: float
    gap: float
    witness: dict | None = None
    solver: str = ""
    seconds: float = 0.0
    model_size: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "status", Status(self.status))

    @property
    def certified(self) -> bool:
        return self.status is Status.CERTIFIED

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status.value
        return jsonable(d)

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def summary(self) -> str:
        """One human line: status, value, bound, gap, solver and time."""
        return (f"{self.query}: {self.status.value}  value={_fmt(self.value)}  "
                f"bound={_fmt(self.bound)}  gap={_fmt(self.gap)}  solver={self.solver}  "
                f"{self.seconds:.2f}s")


def _fmt(v) -> str:
    try:
        return f"{float(v):.6g}"
    except (TypeError, ValueError):
        return str(v)
