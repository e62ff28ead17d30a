"""Deprecated alias: OBBT lives in :mod:`dynid.certify.obbt` (it solves the encodings'
LPs and MILPs, which sit above :mod:`dynid.bounds`). Importing this module warns once."""

import warnings

from dynid.bounds.relaxation import add_triangle_layers  # noqa: F401  (old home of the name)
from dynid.certify.obbt import _milp_layer, obbt_bounds  # noqa: F401

warnings.warn("dynid.bounds.obbt is deprecated: use dynid.certify.obbt (obbt_bounds) and "
              "dynid.bounds.relaxation (add_triangle_layers)", DeprecationWarning, stacklevel=2)

__all__ = ["obbt_bounds", "add_triangle_layers"]
