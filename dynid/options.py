"""What a user may pass: the rules for numeric options and for output paths, in one place.

Every front door (the CLI through :mod:`dynid.cli.common`, TOML configs, the pipeline) checks
its values with these functions *before* any work starts, so a bad value is one clear line
(a :class:`~dynid.errors.ConfigError`) and nothing is written.

Numeric rules (``rule=``):

=========  ==========================================
positive   finite and > 0
nonneg     finite and >= 0
finite     any finite number
fraction   finite, 0 <= v < 1
unit       finite, 0 <= v <= 1
=========  ==========================================

Output paths (:func:`check_output`), one rule for every command: an output must not be one of
the command's inputs, must not be a directory, its folder must exist (or be creatable) and be
writable, and an existing file is replaced only when ``overwrite`` is true (the CLI's
``--overwrite``). ``-`` (stdout) is always allowed.

Example
-------
>>> check_number(0.5, "--time-limit")
0.5
>>> check_number("3", "--epochs", kind=int, rule="nonneg")
3
>>> check_number(-1, "--time-limit")
Traceback (most recent call last):
...
dynid.errors.ConfigError: --time-limit must be a number > 0, got -1
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from dynid.errors import ConfigError

RULES = {
    "positive": ("a number > 0", lambda v: v > 0),
    "nonneg": ("a number >= 0", lambda v: v >= 0),
    "finite": ("a finite number", lambda v: True),
    "fraction": ("a number in [0, 1)", lambda v: 0 <= v < 1),
    "unit": ("a number in [0, 1]", lambda v: 0 <= v <= 1),
}
# sizes beyond this are refused as absurd (a typo, not a request)
MAX_COUNT = 10 ** 9


def check_number(value, name: str, *, rule: str = "positive", kind=float,
                 none_ok: bool = False, maximum=None, text_ok: bool = True):
    """Return ``value`` converted to ``kind`` (int or float) if it obeys ``rule``; else raise
    ConfigError naming the option, the rule and the value.

    ``kind=int`` refuses non-integral values (``2.5``) and booleans; ``none_ok`` lets None
    through (an option left unset); ``maximum`` caps the value (inclusive); ``text_ok=False``
    refuses strings (API arguments, where ``"3"`` is a mistake rather than command-line text).

    Example
    -------
    >>> check_number(None, "threads", kind=int, none_ok=True) is None
    True
    >>> check_number(2.5, "steps", kind=int)
    Traceback (most recent call last):
    ...
    dynid.errors.ConfigError: steps must be an integer > 0, got 2.5
    >>> check_number("3", "steps", kind=int, text_ok=False)
    Traceback (most recent call last):
    ...
    dynid.errors.ConfigError: steps must be an integer > 0, got '3'
    """
    if value is None and none_ok:
        return None
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}")
    text, ok = RULES[rule]
    what = text.replace("a number", "an integer") if kind is int else text
    bad = ConfigError(f"{name} must be {what}, got {value!r}")
    if isinstance(value, bool) or value is None:
        raise bad
    if isinstance(value, str):
        if not text_ok:
            raise bad
        value = value.strip()
        try:
            value = int(value) if kind is int else float(value)
        except ValueError:
            raise bad from None
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise bad from None
    if not math.isfinite(num) or not ok(num):
        raise bad
    if kind is int:
        if num != int(num):
            raise bad
        out = int(num)
        if out > MAX_COUNT and maximum is None:
            raise ConfigError(f"{name} = {out} is absurdly large (limit {MAX_COUNT})")
    else:
        out = num
    if maximum is not None and out > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value!r}")
    return out


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output(path, *, inputs=(), overwrite: bool = False, name: str = "output",
                 directory: bool = False) -> Path | None:
    """Check that ``path`` may be written, before any work: not an input, not a directory
    (unless ``directory``), a writable folder, and not an existing file unless ``overwrite``.

    Returns the Path (None for None or ``-``, which means stdout). Raises ConfigError.

    Example
    -------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> check_output(d / "new.json").name
    'new.json'
    >>> check_output(d, name="--json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dynid.errors.ConfigError: --json: ... is a directory; give a file name
    """
    if path is None or str(path) == "-":
        return None
    p = Path(path)
    for item in inputs:
        if item is not None and str(item) != "-" and _same(p, Path(item)):
            raise ConfigError(f"{name}: {p} is also an input of this command; write to "
                              "another file")
    if directory:
        if p.exists() and not p.is_dir():
            raise ConfigError(f"{name}: {p} exists and is not a directory; choose another "
                              "folder")
        parent = p if p.exists() else _existing_parent(p)
    else:
        if p.is_dir():
            raise ConfigError(f"{name}: {p} is a directory; give a file name")
        if p.exists() and not overwrite:
            raise ConfigError(f"{name}: {p} exists; pass --overwrite to replace it, or choose "
                              "another name")
        parent = _existing_parent(p)
    if parent is None or not parent.is_dir():
        raise ConfigError(f"{name}: cannot create {p}: {parent} is not a directory")
    if not _writable(parent):
        raise ConfigError(f"{name}: cannot write {p}: the folder {parent} is not writable")
    return p


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: try it (os.access says yes to root even
    on a read-only mount)."""
    import tempfile

    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dynid-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:
        pass
    return True


def _existing_parent(p: Path) -> Path | None:
    """The nearest existing ancestor folder of ``p`` (folders below it can be created)."""
    q = p.absolute().parent
    while not q.exists():
        if q.parent == q:
            return None
        q = q.parent
    return q


__all__ = ["check_number", "check_output", "RULES", "MAX_COUNT"]
