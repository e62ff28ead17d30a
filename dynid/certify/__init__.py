"""Certificates built on the MIP layer: encodings, (non)invertibility, radii, output ranges.

- :func:`noninvertibility` - max ||x - y||_p with F(x) = F(y) (or within delta) on a box.
- :func:`invertible_on` - the global verdict on a box, with a witness pair if not injective.
- :func:`certified_radius` - preimage / ball radius of local invertibility at a point.
- :func:`output_range` - exact MIP bounds of C @ F(x) over a box.
- :func:`model_error` - a certified bound of |F_true - F_net| per state over a box.
- :func:`encode_relunet` - the big-M encoding of one copy of a network.
- :func:`max_box` - the largest certified box (a radius per dimension) keeping a spec.
- :func:`invertible_analytic` - the MIP-free certificate of a CPL stack (docs/cpl.md).
- :func:`boundary_distance` - exact L_p distance to the decision boundary, bracketed by CROWN
  and an attack.
"""

from dynid.certify.analytic import invertible_analytic
from dynid.certify.boundary import boundary_distance
from dynid.certify.encode import Encoding, encode_relunet
from dynid.certify.invertibility import invertible_on, noninvertibility
from dynid.certify.maxbox import keep_label, max_box, safe_set
from dynid.certify.model_error import ModelErrorBound, model_error
from dynid.certify.optimize import output_range
from dynid.certify.radius import certified_radius

__all__ = ["Encoding", "encode_relunet", "noninvertibility", "invertible_on",
           "certified_radius", "output_range", "model_error", "ModelErrorBound",
           "max_box", "safe_set", "keep_label", "invertible_analytic", "boundary_distance"]
