"""Error types. Every bad-input condition raises a :class:`DynidError` subclass.

The message names the offending thing and what to do about it; the CLI prints it as one line
on stderr and exits with code 2.
"""

from __future__ import annotations


class DynidError(ValueError):
    """Base class of every user-facing error of dynid (bad input, bad file, bad config)."""


class UnknownSystemError(DynidError):
    """A system name that is not in the catalogue."""


class DataValidationError(DynidError):
    """A dataset that is malformed: NaN/inf, wrong shapes, non-monotone time, bad names."""


class ShapeError(DynidError):
    """Arrays or boxes whose shapes do not fit the network or each other."""


class ModelFileError(DynidError):
    """A model file that is missing, truncated, malformed or of an unknown format."""


class ConfigError(DynidError):
    """A malformed TOML config / pipeline file or an invalid option value."""


class UnsupportedLayerError(DynidError):
    """A network layer or ONNX/Keras operator that cannot be converted into a ReLUNet."""


class NormError(DynidError):
    """A norm outside {1, 2, inf}."""


class SolverError(DynidError):
    """A solver that is unavailable, refused the model, or failed in a way the user can fix."""


def parse_norm(norm) -> float:
    """Return the norm as 1.0, 2.0 or ``inf``; accept 1, 2, 'inf', 'linf', 'l1', 'l2', np.inf."""
    import math

    if isinstance(norm, str):
        key = norm.strip().lower().lstrip("l")
        table = {"1": 1.0, "2": 2.0, "inf": math.inf, "infinity": math.inf}
        if key in table:
            return table[key]
    else:
        try:
            value = float(norm)
        except (TypeError, ValueError):
            value = None
        if value in (1.0, 2.0) or (value is not None and math.isinf(value) and value > 0):
            return value
    raise NormError(f"norm {norm!r} is not supported: use 1, 2 or inf")
