"""Up-front checks of a pipeline table: every key's type and range, in one line per problem.

A stage module declares, next to its ``KEYS``, a :class:`Schema` per stage it serves (in a
module-level dict ``SCHEMAS = {"stage name": Schema(...)}``). :func:`dynid.pipeline.load_config`
checks every table of a pipeline file against its schema before any stage runs or any file is
written, so a typo in the last stage's table costs no training time. A message names the
table, the key, what it must be and what it got::

    [train] epochs must be an integer >= 1, got -3

Example
-------
>>> s = Schema({"epochs": integer(min=1), "lr": number(min=0, min_open=True)})
>>> s.validate({"epochs": 10, "lr": 1e-3}, "[train]")
>>> s.validate({"epochs": 0}, "[train]")
Traceback (most recent call last):
...
dynid.errors.ConfigError: [train] epochs must be an integer >= 1, got 0
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from dynid.errors import ConfigError


class Check:
    """A validator: ``check(value, name, where, base_dir)`` raises ConfigError or returns.

    ``ok(value, base_dir)`` answers True, False, or a string saying what else is wrong;
    ``what`` (text, or a callable giving it: a registry's names) says what the value must be.
    """

    def __init__(self, what, ok: Callable, required: bool = False):
        self.what, self.ok, self.required = what, ok, required

    def describe(self) -> str:
        return self.what() if callable(self.what) else self.what

    def accepts(self, value, base_dir=None) -> bool | str:
        try:
            return self.ok(value, base_dir)
        except ConfigError:
            raise
        except Exception:   # a check that cannot even look at the value: wrong type
            return False

    def __call__(self, value, name: str, where: str, base_dir=None) -> None:
        good = self.accepts(value, base_dir)
        if good is not True:
            extra = f" ({good})" if isinstance(good, str) else ""
            raise ConfigError(f"{where} {name} must be {self.describe()}, got {value!r}{extra}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _range_text(min, max, min_open, max_open) -> str:
    parts = []
    if min is not None:
        parts.append(f"{'>' if min_open else '>='} {min}")
    if max is not None:
        parts.append(f"{'<' if max_open else '<='} {max}")
    return " and ".join(parts)


def _in_range(v, min, max, min_open, max_open) -> bool:
    if min is not None and (v < min or (min_open and v == min)):
        return False
    return not (max is not None and (v > max or (max_open and v == max)))


def integer(min=None, max=None) -> Check:
    """An integer (not a bool) in [min, max]."""
    rng = _range_text(min, max, False, False)
    return Check(f"an integer{' ' + rng if rng else ''}",
                  lambda v, _: _is_int(v) and _in_range(v, min, max, False, False))


def number(min=None, max=None, *, min_open=False, max_open=False) -> Check:
    """A finite number (an integer is fine) in the given range."""
    rng = _range_text(min, max, min_open, max_open)
    return Check(f"a number{' ' + rng if rng else ''}",
                  lambda v, _: _is_num(v) and _in_range(v, min, max, min_open, max_open))


def boolean() -> Check:
    return Check("true or false", lambda v, _: isinstance(v, bool))


def string(choices=None) -> Check:
    """A non-empty string; ``choices`` (a list, or a callable giving one) restricts it."""
    def ok(v, _):
        if not isinstance(v, str) or not v.strip():
            return False
        return choices is None or v in _choices(choices)
    if choices is None:
        return Check("a non-empty string", ok)
    return Check(lambda: "one of " + ", ".join(repr(c) for c in _choices(choices)), ok)


def _choices(choices):
    return list(choices() if callable(choices) else choices)


def literal(*values) -> Check:
    """Exactly one of the given values (e.g. ``"auto"``, true or false)."""
    text = ", ".join("true" if v is True else "false" if v is False else repr(v)
                     for v in values)
    return Check(f"one of {text}",
                  lambda v, _: any(v is x if isinstance(x, bool) else
                                   (not isinstance(v, bool) and v == x) for x in values))


def numbers(length=None, min_len=1) -> Check:
    """A list of finite numbers (of ``length`` entries when given)."""
    what = f"a list of {length} numbers" if length else "a list of numbers"
    return Check(what, lambda v, _: isinstance(v, list) and len(v) >= min_len
                  and (length is None or len(v) == length) and all(_is_num(x) for x in v))


def integers(min=None, min_len=1) -> Check:
    rng = _range_text(min, None, False, False)
    return Check(f"a {'non-empty ' if min_len else ''}list of integers{' ' + rng if rng else ''}",
                  lambda v, _: isinstance(v, list) and len(v) >= min_len
                  and all(_is_int(x) and _in_range(x, min, None, False, False) for x in v))


def table(values: Check | None = None) -> Check:
    """A TOML table ({...}); ``values`` checks every value in it."""
    def ok(v, base):
        if not isinstance(v, dict):
            return False
        if values is not None:
            for k, x in v.items():
                if values.accepts(x, base) is not True:
                    return f"entry {k} = {x!r} is not {values.describe()}"
        return True
    return Check("a table" + (f" of {values.describe().removeprefix('a ')}s" if values
                               else ""), ok)


def tables() -> Check:
    """A list of tables ([[name]] entries)."""
    return Check("a list of tables", lambda v, _: isinstance(v, list)
                  and all(isinstance(x, dict) for x in v))


def any_of(*checks: Check) -> Check:
    """Whatever one of the ``checks`` accepts."""
    return Check(lambda: " or ".join(c.describe() for c in checks),
                  lambda v, base: any(c.accepts(v, base) is True for c in checks))


def existing_file() -> Check:
    """A path (relative to the config file's folder) of a file that exists."""
    def ok(v, base):
        if not isinstance(v, str) or not v.strip():
            return False
        p = Path(v).expanduser()
        p = p if p.is_absolute() or base is None else Path(base) / p
        return True if p.is_file() else f"no such file: {p}"
    return Check("the path of an existing file", ok)


def file_name() -> Check:
    """An output file name inside the run folder (no folder part needed)."""
    return Check("a file name (a non-empty string)",
                  lambda v, _: isinstance(v, str) and bool(v.strip())
                  and not v.endswith(("/", "\\")))


def anything() -> Check:
    return Check("anything", lambda v, _: True)


def required(check: Check) -> Check:
    """Mark a key the table must have."""
    return Check(check.what, check.ok, required=True)


class Schema:
    """The keys of one stage's table and their checks; ``check(section, where)`` adds
    cross-key checks (lo and hi of the same length, ...)."""

    def __init__(self, keys: dict, check: Callable | None = None):
        self.keys = dict(keys)
        self.check = check

    def validate(self, section: dict, where: str, base_dir=None, allowed=None) -> None:
        """Raise ConfigError naming the first bad key of ``section``. ``allowed`` (the
        stage's KEYS) may name keys this schema does not describe yet: they are accepted as
        they are and checked when the stage runs."""
        from dynid.pipeline import check_keys

        check_keys(section, set(self.keys) | set(allowed or ()), where)
        for key, check in self.keys.items():
            if key in section:
                check(section[key], key, where, base_dir)
            elif check.required:
                raise ConfigError(f"{where} needs {key} = ...")
        if self.check is not None:
            self.check(section, where)


def same_length(section: dict, where: str, a: str = "lo", b: str = "hi") -> None:
    """lo and hi (when both given) have the same length and lo <= hi."""
    if a in section and b in section:
        lo, hi = section[a], section[b]
        if len(lo) != len(hi):
            raise ConfigError(f"{where} {a} and {b} must have the same length, got {len(lo)} "
                              f"and {len(hi)}")
        if any(x > y for x, y in zip(lo, hi)):
            raise ConfigError(f"{where} {a} must be <= {b} in every coordinate, got {a} = "
                              f"{lo} and {b} = {hi}")


NORMS = ("inf", "1", "2", 1, 2)
SOLVERS = ("auto", "gurobi", "highs", "scip")


def norm() -> Check:
    """A norm: "inf", "1", "2" (or 1, 2)."""
    return literal(*NORMS)


def solver() -> Check:
    return string(SOLVERS)


def device() -> Check:
    """A torch device: "cpu", or "cuda"/"cuda:N" when a CUDA device is present."""
    def ok(v, _):
        if not isinstance(v, str):
            return False
        if v == "cpu":
            return True
        if v == "cuda" or (v.startswith("cuda:") and v[5:].isdigit()):
            import torch

            return True if torch.cuda.is_available() else "no CUDA device is available here"
        return False
    return Check('"cpu" or "cuda"', ok)


__all__ = ["Schema", "Check", "integer", "number", "boolean", "string", "literal", "numbers", "integers",
           "table", "tables", "any_of", "existing_file", "file_name", "anything", "required",
           "same_length", "norm", "solver", "device"]
