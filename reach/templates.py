"""Template directions of reachable-set over-approximations.

A template is a matrix D (m x n): the set at a step is described by lower_j <= D_j x <= upper_j.
The box directions (the unit vectors) always come first, so the bounding box of a template set
is read off its first n rows; ``octagon`` adds x_i + x_j and x_i - x_j for every pair.

Example
-------
>>> template_matrix("octagon", 2).shape
(4, 2)
"""

from __future__ import annotations

import itertools

import numpy as np

from dynid.errors import ConfigError, ShapeError


def template_matrix(template, n: int) -> np.ndarray:
    """Directions for ``template`` = "box" | "octagon" | an (m, n) matrix, box rows first.

    A user matrix gets the unit vectors prepended (rows equal to a unit vector up to a positive
    scale are dropped), so every template bounds the box.
    """
    eye = np.eye(n)
    if isinstance(template, str):
        key = template.strip().lower()
        if key == "box":
            return eye
        if key == "octagon":
            rows = [eye]
            for i, j in itertools.combinations(range(n), 2):
                for s in (1.0, -1.0):
                    r = np.zeros(n)
                    r[i], r[j] = 1.0, s
                    rows.append(r[None])
            return np.vstack(rows)
        raise ConfigError(f"unknown template {template!r}: use 'box', 'octagon' or a matrix of "
                          f"directions with {n} columns")
    D = np.atleast_2d(np.asarray(template, dtype=np.float64))
    if D.ndim != 2 or D.shape[1] != n:
        raise ShapeError(f"template matrix must have {n} columns (one per state), got shape "
                         f"{D.shape}")
    if not np.all(np.isfinite(D)) or np.any(np.abs(D).sum(axis=1) == 0):
        raise ShapeError("template directions must be finite and non-zero")
    extra = []
    for r in D:
        unit = r / np.linalg.norm(r)
        if not np.any(np.all(np.isclose(unit[None], eye), axis=1)):
            extra.append(r)
    return np.vstack([eye] + [e[None] for e in extra]) if extra else eye


def direction_labels(D: np.ndarray, names) -> list[str]:
    """Readable labels such as 'x1', 'x1+x2', '0.5*x1-x2' for the rows of D."""
    labels = []
    for r in D:
        parts = []
        for c, name in zip(r, names):
            if c == 0:
                continue
            sign = "-" if c < 0 else ("+" if parts else "")
            mag = abs(c)
            parts.append(f"{sign}{'' if mag == 1 else f'{mag:g}*'}{name}")
        labels.append("".join(parts) or "0")
    return labels
