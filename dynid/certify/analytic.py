"""The analytic invertibility certificate of a CPL stack: no MIP, from the stored weights alone.

For ``F(x) = Q S(P x + p) + q`` with ``S`` a stack of convex potential blocks
``z = x - h W^T relu(W x + b)`` (see :mod:`dynid.cpl` and docs/cpl.md):

- each block's ``||W||_2`` is recomputed by SVD from the stored weights (padded upward), and the
  stored step must satisfy ``h <= c / ||W||_2^2`` for the recorded ``c < 1``; a file whose step
  was computed from an underestimated norm is refused (:class:`~dynid.cpl.CPLStructureError`);
- then each block is a bijection of R^n, 1-Lipschitz (plus the float64 rounding of the stored
  product ``h W^T``, bounded and reported), with ``Lip(inverse) <= 1 / (1 - h ||W||^2)``;
- P and Q are square; their smallest singular values (SVD, padded down) must be positive.

The certificate: F is injective (indeed a bijection) on all of R^n, so on every box, with
``Lip_2(F) <= ||Q|| prod_k Lip_k ||P||`` and
``Lip_2(F^{-1}) <= prod_k 1 / (1 - c_k) / (sigma_min(Q) sigma_min(P))``, every number in
``info``. A network that is not a CPL stack raises :class:`~dynid.cpl.CPLStructureError`: use the
MIP (:func:`dynid.certify.invertible_on`) for it.

Example
-------
>>> import numpy as np
>>> from dynid.cpl import cpl_net
>>> net = cpl_net([np.array([[1.0, 2.0], [0.5, -1.0]])], [np.zeros(2)], c=0.5)
>>> cert = invertible_analytic(net)
>>> cert.status.value, cert.solver, round(cert.info["inverse_lipschitz"], 6)
('certified', 'analytic', 2.0)
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from dynid.cpl import affine_constants, block_constants, cpl_structure, round_down, round_up
from dynid.relunet import ReLUNet
from dynid.results import Certificate, Status

QUERY = "invertible_analytic"


def invertible_analytic(model) -> Certificate:
    """Certify that a CPL-stack surrogate is a bijection of R^n, with Lipschitz bounds of the
    map and of its inverse (Euclidean norm), re-derived from the stored weights.

    Parameters
    ----------
    model : a :class:`~dynid.relunet.ReLUNet` exported by :mod:`dynid.cpl`, or the path of its
        model file.

    Returns
    -------
    Certificate (query "invertible_analytic", solver "analytic"): ``certified`` with value =
    bound = gap = 0 (no two distinct points of R^n share an image) and, in ``info``: ``domain``
    ("R^n"), ``norm`` ("2"), ``lipschitz`` and ``inverse_lipschitz`` of F in physical units,
    ``stack_lipschitz`` / ``stack_inverse_lipschitz`` of S, the per-block numbers (``blocks``:
    c, stored h, SVD norm and its padded upper bound, effective c = h ||W||^2, rounding term)
    and the singular values of the input and output maps. ``unknown`` only when the input or
    output linear map is numerically singular (then F need not be injective).

    Raises
    ------
    CPLStructureError (a DynidError) : the network is not a CPL stack, or a stored step exceeds
        c / ||W||_2^2 (an underestimated norm at export), or c >= 1.
    """
    t0 = time.perf_counter()
    if isinstance(model, (str, Path)):
        from dynid.modelfile import load_model

        model = load_model(model)
    stack = cpl_structure(model)
    blocks = [block_constants(b) for b in stack.blocks]
    pre, post = affine_constants(stack.pre[0]), affine_constants(stack.post[0])
    k = len(blocks)
    lip_s = round_up(math.prod(b["lipschitz"] for b in blocks), k)
    inv_s = round_up(math.prod(b["inverse_lipschitz"] for b in blocks), k)
    info = {"domain": "R^n", "norm": "2", "n_blocks": k, "blocks": blocks,
            "stack_lipschitz": lip_s, "stack_inverse_lipschitz": inv_s,
            "input_map": pre, "output_map": post,
            "lipschitz": round_up(post["sigma_max"] * lip_s * pre["sigma_max"], 2),
            "gain": stack.architecture.get("gain", "none"),
            "argument": "each block is the gradient of a (1 - c)-strongly convex, 1-smooth "
                        "potential (docs/cpl.md); h <= c / ||W||^2 checked with the SVD norm"}
    size = {"blocks": k, "relu_units": model.n_relu, "parameters": model.n_params}
    if pre["sigma_min"] > 0 and post["sigma_min"] > 0:
        info["inverse_lipschitz"] = round_up(
            inv_s / round_down(post["sigma_min"] * pre["sigma_min"], 1), 1)
        return Certificate(QUERY, Status.CERTIFIED, 0.0, 0.0, 0.0, None, "analytic",
                           time.perf_counter() - t0, size, info)
    info["inverse_lipschitz"] = math.inf
    info["note"] = ("the input or output linear map is numerically singular: the stack is "
                    "invertible but F need not be; use the MIP on a box")
    return Certificate(QUERY, Status.UNKNOWN, 0.0, math.inf, math.inf, None, "analytic",
                       time.perf_counter() - t0, size, info)


__all__ = ["invertible_analytic", "QUERY"]
