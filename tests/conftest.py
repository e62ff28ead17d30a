"""Shared test fixtures: small random networks, paths to the shared benchmark controllers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dynid", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, max_examples=15, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dynid")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared_benchmarks() -> Path:
    """Folder of published controllers (../shared/benchmarks); tests that need it fail loudly
    when it is missing, because CI always has it."""
    path = SHARED / "benchmarks"
    assert path.is_dir(), f"{path} is missing: CI clones the project with ../shared beside it"
    return path


def random_relunet(rng: np.random.Generator, widths, identity_frac: float = 0.0,
                   scale: float = 1.0):
    """A random ReLUNet with the given widths [n_in, h1, ..., n_out]; a fraction of hidden
    units are identity units; the last layer is identity."""
    from dynid.relunet import ReLUNet

    ws, bs, ms = [], [], []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        ws.append(rng.normal(size=(b, a)) * scale / np.sqrt(a))
        bs.append(rng.normal(size=b) * 0.3 * scale)
        last = i == len(widths) - 2
        ms.append(np.zeros(b, bool) if last else rng.random(b) >= identity_frac)
    return ReLUNet(ws, bs, ms)
