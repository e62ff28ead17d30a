"""Pre-activation bounds of every unit of a ReLUNet over an input box.

- :func:`interval_bounds` - interval arithmetic (IBP), cheap and loose.
- :func:`crown_bounds` - CROWN backward linear bounds, batched in torch, intersected with IBP.
- :func:`crown_output` - CROWN bounds of ``C @ F(x)`` for many objective rows at once.
- :func:`dynid.certify.obbt.obbt_bounds` - optimisation-based tightening (LP / MILP; it
  solves the encodings, so it lives in certify).

Every bound is padded outward so that it stays valid under float64 rounding.
"""

from dynid.bounds.core import Bounds, grid_cells, pad_interval
from dynid.bounds.crown import crown_bounds, crown_bounds_many, crown_output, crown_output_many
from dynid.bounds.ibp import interval_bounds

__all__ = ["Bounds", "pad_interval", "interval_bounds", "crown_bounds", "crown_output",
           "crown_bounds_many", "crown_output_many", "grid_cells"]
