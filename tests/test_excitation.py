"""Excitation signals: properties checked from the definitions (hold lengths, box, the LFSR's
maximal period by brute force, the multisine's spectrum by FFT, the chirp against
scipy.signal.chirp), seeds, and bad options."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy.signal import chirp as scipy_chirp

from dynid.errors import ConfigError, ShapeError
from dynid.excitation import (SIGNALS, chirp, excitation, lfsr_bits, multisine, prbs,
                              random_steps)


def _runs(v):
    """Lengths of the runs of equal consecutive values."""
    edges = np.flatnonzero(np.diff(v) != 0) + 1
    return np.diff(np.concatenate([[0], edges, [len(v)]]))


@given(st.integers(1, 6), st.integers(0, 8), st.integers(0, 10 ** 6))
def test_random_steps_hold_and_box(a, extra, seed):
    b = a + extra
    u = random_steps(300, [-2.0, 0.0], [1.0, 5.0], hold=(a, b), seed=seed)
    assert u.shape == (300, 2)
    assert np.all(u[:, 0] >= -2) and np.all(u[:, 0] <= 1) and np.all(u[:, 1] >= 0)
    for j in range(2):
        runs = _runs(u[:, j])
        # every run but the last (cut at the record's end) lasts within the hold range; two
        # equal consecutive levels have probability 0
        assert np.all(runs[:-1] >= a) and np.all(runs[:-1] <= b) and runs[-1] <= b


def test_random_steps_levels_are_uniform_and_seeded():
    u = random_steps(20000, [0.0], [1.0], hold=1, seed=5)
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    np.testing.assert_array_equal(u, random_steps(20000, [0.0], [1.0], hold=1, seed=5))
    assert not np.array_equal(u, random_steps(20000, [0.0], [1.0], hold=1, seed=6))


@pytest.mark.parametrize("order", range(2, 15))
def test_lfsr_has_maximal_period(order):
    n = 2 ** order - 1
    bits = lfsr_bits(order, 2 * n, 1)
    np.testing.assert_array_equal(bits[:n], bits[n:])          # period n ...
    for p in range(1, n):                                       # ... and no shorter one
        if n % p == 0:
            assert not np.array_equal(bits[:n - p], bits[p:n])
    assert bits[:n].sum() == 2 ** (order - 1)                   # one more 1 than 0s


def test_prbs_levels_hold_and_channels():
    u = prbs(155, [-1.0, 0.0], [1.0, 3.0], hold=5, order=5, seed=2)
    assert set(np.unique(u[:, 0])) == {-1.0, 1.0} and set(np.unique(u[:, 1])) == {0.0, 3.0}
    for j in range(2):
        assert np.all(_runs(u[:, j]) % 5 == 0)                 # whole clock periods
    assert not np.array_equal(u[:, 0] > 0, u[:, 1] > 0)        # channels differ


def test_multisine_spectrum_and_range():
    n, dt = 400, 0.05
    u = multisine(n, dt, [-1.0], [2.0], f_min=0.2, f_max=2.0, n_freq=6, seed=0)
    assert u.min() == pytest.approx(-1.0) and u.max() == pytest.approx(2.0)
    spec = np.abs(np.fft.rfft(u[:, 0] - u[:, 0].mean()))
    freqs = np.fft.rfftfreq(n, dt)
    lines = freqs[spec > 1e-6 * spec.max()]
    assert lines.size == 6                                      # exactly the chosen lines,
    assert lines.min() >= 0.2 - 1e-9 and lines.max() <= 2.0 + 1e-9   # in the band, no leakage
    s = multisine(n, dt, [0.0], [1.0], n_freq=8, phases="schroeder")
    np.testing.assert_array_equal(s, multisine(n, dt, [0.0], [1.0], n_freq=8,
                                               phases="schroeder", seed=9))


@pytest.mark.parametrize("method", ["linear", "logarithmic"])
def test_chirp_matches_scipy(method):
    n, dt = 501, 0.01
    u = chirp(n, dt, [1.0], [3.0], f0=0.5, f1=4.0, method=method)
    t = np.arange(n) * dt
    ref = 2.0 + scipy_chirp(t, f0=0.5, t1=t[-1], f1=4.0, method=method)
    np.testing.assert_allclose(u[:, 0], ref, atol=1e-9)


def test_dispatcher_and_errors():
    for name in SIGNALS:
        u = excitation(name, 64, 0.1, [-1.0], [1.0], seed=1)
        assert u.shape == (64, 1) and u.min() >= -1 - 1e-12 and u.max() <= 1 + 1e-12
    with pytest.raises(ConfigError, match="unknown excitation"):
        excitation("noise", 10, 0.1, [0.0], [1.0])
    with pytest.raises(ConfigError, match="no option"):
        excitation("chirp", 10, 0.1, [0.0], [1.0], hold=3)
    with pytest.raises(ConfigError, match="lo < hi"):
        random_steps(10, [1.0], [0.0])
    with pytest.raises(ShapeError):
        random_steps(10, [0.0, 0.0], [1.0])
    with pytest.raises(ConfigError, match="positive integer"):
        random_steps(0, [0.0], [1.0])
    with pytest.raises(ConfigError, match="min <= max"):
        random_steps(10, [0.0], [1.0], hold=(5, 2))
    with pytest.raises(ConfigError, match="band"):
        multisine(20, 0.1, [0.0], [1.0], f_min=100.0, f_max=200.0)
