"""dynid: ReLU surrogates of dynamical systems, and certificates about them.

Public API (small on purpose; see the README):

- :class:`dynid.ReLUNet` - the one normal form of every network reasoned about.
- :func:`dynid.save_model` / :func:`dynid.load_model` - HDF5 model files.
- :class:`dynid.DynidError` - base of every user-facing error.
- :class:`dynid.Certificate` - the result value of every certification query.
"""

from __future__ import annotations

__version__ = "0.1.0"

from dynid.errors import DynidError  # noqa: E402
from dynid.relunet import ReLUNet  # noqa: E402
from dynid.results import Certificate, Status  # noqa: E402
from dynid.modelfile import load_model, save_model  # noqa: E402

__all__ = ["DynidError", "ReLUNet", "Certificate", "Status", "load_model", "save_model", "__version__"]
