"""Excitation signals for identification experiments: arrays ``(n_steps, n_input)``.

Every signal lies in the box ``[lo, hi]`` (one entry per input channel) and sample ``k`` is the
input held over ``[k dt, (k + 1) dt)`` (zero-order hold). Channels are independent. Seeds make
every random signal reproducible.

- :func:`random_steps`: uniform random levels, each held for a random number of steps in
  ``hold = (min, max)`` (or a fixed ``hold``) - covers the input box and lets the state move;
- :func:`prbs`: a pseudo-random binary sequence (maximal-length linear feedback shift
  register, period ``2**order - 1`` clock periods of ``hold`` steps) switching between lo and hi;
- :func:`multisine`: a sum of sines on the frequency grid of the record (``k / (n_steps dt)``)
  in a band, random (seeded) or Schroeder phases, scaled to span ``[lo, hi]``;
- :func:`chirp`: a linear or logarithmic frequency sweep from ``f0`` to ``f1``.

:func:`excitation` picks one by name (``SIGNALS``), for configs and the command line.

Example
-------
>>> u = random_steps(12, [-1.0], [1.0], hold=4, seed=0)
>>> u.shape, len(np.unique(u))            # three levels, each held 4 steps
((12, 1), 3)
>>> int((prbs(7, [0.0], [2.0], order=3, seed=1) == 2.0).sum())   # one period: 4 ones, 3 zeros
4
"""

from __future__ import annotations

import numpy as np

from dynid.errors import ConfigError, ShapeError
from dynid.systems import _check_count, _check_positive

SIGNALS = ("random_steps", "prbs", "multisine", "chirp")

# feedback taps (1-based register positions) of maximal-length Fibonacci LFSRs, from the
# primitive polynomials of Xilinx XAPP 052 (orders 2..24)
_TAPS = {2: (2, 1), 3: (3, 2), 4: (4, 3), 5: (5, 3), 6: (6, 5), 7: (7, 6), 8: (8, 6, 5, 4),
         9: (9, 5), 10: (10, 7), 11: (11, 9), 12: (12, 6, 4, 1), 13: (13, 4, 3, 1),
         14: (14, 5, 3, 1), 15: (15, 14), 16: (16, 15, 13, 4), 17: (17, 14), 18: (18, 11),
         19: (19, 6, 2, 1), 20: (20, 17), 21: (21, 19), 22: (22, 21), 23: (23, 18),
         24: (24, 23, 22, 17)}


def _box(lo, hi) -> tuple[np.ndarray, np.ndarray]:
    try:
        lo = np.asarray(lo, dtype=float).reshape(-1)
        hi = np.asarray(hi, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigError(f"input bounds lo={lo!r}, hi={hi!r} must be numbers") from None
    if lo.shape != hi.shape or lo.size == 0:
        raise ShapeError(f"input bounds lo and hi need one entry per input each, got {lo.size} "
                         f"and {hi.size}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
        raise ConfigError(f"input bounds lo {lo.tolist()} and hi {hi.tolist()} must be finite "
                          "with lo < hi")
    return lo, hi


def _count(n, what: str = "n_steps") -> int:
    return _check_count(n, what)


def _positive(v, what: str) -> float:
    return _check_positive(v, what)


def _hold_range(hold) -> tuple[int, int]:
    lo_hi = (hold, hold) if np.ndim(hold) == 0 else tuple(hold)
    if len(lo_hi) != 2:
        raise ConfigError(f"hold={hold!r} must be a number of steps or a range (min, max)")
    a, b = (_count(v, "hold") for v in lo_hi)
    if a > b:
        raise ConfigError(f"hold range {hold!r} must have min <= max")
    return a, b


def random_steps(n_steps: int, lo, hi, *, hold=(5, 20), seed: int = 0) -> np.ndarray:
    """Uniform random levels in ``[lo, hi]``, each held for ``hold`` steps.

    ``hold`` is a number of steps or an inclusive range ``(min, max)`` from which each hold
    time is drawn uniformly. Choose holds long enough for the state to respond (a fraction of
    the plant's time constant or more); very short holds only excite fast modes.

    Example
    -------
    >>> u = random_steps(100, [-2.0, 0.0], [2.0, 1.0], hold=(3, 8), seed=4)
    >>> u.shape, bool(np.all((u[:, 0] >= -2) & (u[:, 0] <= 2)))
    ((100, 2), True)
    """
    n = _count(n_steps)
    lo, hi = _box(lo, hi)
    a, b = _hold_range(hold)
    rng = np.random.default_rng(seed)
    out = np.empty((n, lo.size))
    for j in range(lo.size):
        k = 0
        while k < n:
            length = int(rng.integers(a, b + 1))
            out[k:k + length, j] = lo[j] + rng.random() * (hi[j] - lo[j])
            k += length
    return out


def lfsr_bits(order: int, n: int, state: int) -> np.ndarray:
    """``n`` output bits (0/1) of the maximal-length Fibonacci LFSR of ``order`` from a
    non-zero initial ``state`` (period ``2**order - 1``).

    Example
    -------
    >>> lfsr_bits(3, 7, 1).tolist()
    [1, 0, 0, 1, 0, 1, 1]
    """
    order = int(order)
    if order not in _TAPS:
        raise ConfigError(f"PRBS order {order} is not supported: use {min(_TAPS)}..{max(_TAPS)}")
    mask = (1 << order) - 1
    state = int(state) & mask
    if state == 0:
        raise ConfigError("the PRBS register must start non-zero")
    taps = _TAPS[order]
    out = np.empty(int(n), dtype=np.int8)
    for k in range(int(n)):
        out[k] = state & 1
        fb = 0
        for t in taps:
            fb ^= (state >> (order - t)) & 1
        state = (state >> 1) | (fb << (order - 1))
    return out


def prbs(n_steps: int, lo, hi, *, hold: int = 1, order: int | None = None,
         seed: int = 0) -> np.ndarray:
    """A pseudo-random binary sequence between ``lo`` and ``hi`` (maximal-length LFSR).

    Each bit is held for ``hold`` steps (the clock period; longer holds put more power at low
    frequencies). ``order`` defaults to the smallest register (>= 5) whose period
    ``(2**order - 1) * hold`` covers ``n_steps``. The seed picks each channel's non-zero start
    state, so channels are shifted copies of one sequence (decorrelated over a period).

    Example
    -------
    >>> u = prbs(62, [-1.0], [1.0], hold=2, order=5, seed=0)
    >>> sorted(np.unique(u).tolist()), bool(np.all(u[0::2] == u[1::2]))
    ([-1.0, 1.0], True)
    """
    n = _count(n_steps)
    lo, hi = _box(lo, hi)
    hold = _count(hold, "hold")
    n_bits = -(-n // hold)
    if order is None:
        order = 5
        while (2 ** order - 1) < n_bits and order < max(_TAPS):
            order += 1
    rng = np.random.default_rng(seed)
    out = np.empty((n, lo.size))
    for j in range(lo.size):
        state = int(rng.integers(1, 2 ** int(order)))
        bits = np.repeat(lfsr_bits(order, n_bits, state), hold)[:n]
        out[:, j] = np.where(bits == 1, hi[j], lo[j])
    return out


def multisine(n_steps: int, dt: float, lo, hi, *, f_min: float | None = None,
              f_max: float | None = None, n_freq: int = 10, phases: str = "random",
              seed: int = 0) -> np.ndarray:
    """A multisine: ``n_freq`` sines of equal amplitude on the record's frequency grid
    ``k / (n_steps dt)`` spread over ``[f_min, f_max]`` (default: the lowest grid frequency to
    a quarter of the Nyquist frequency), then scaled so each channel spans exactly
    ``[lo, hi]``. ``phases`` is ``random`` (seeded, per channel) or ``schroeder`` (low crest
    factor). On the grid the signal is periodic over the record: no leakage in its spectrum.

    Example
    -------
    >>> u = multisine(200, 0.05, [-1.0], [1.0], n_freq=5, seed=0)
    >>> float(u.min()), float(u.max())
    (-1.0, 1.0)
    """
    n = _count(n_steps)
    dt = _positive(dt, "dt")
    lo, hi = _box(lo, hi)
    n_freq = _count(n_freq, "n_freq")
    if phases not in ("random", "schroeder"):
        raise ConfigError(f"phases={phases!r} must be 'random' or 'schroeder'")
    df = 1.0 / (n * dt)
    nyquist_bin = n // 2
    k_lo = 1 if f_min is None else max(1, int(np.ceil(_positive(f_min, "f_min") / df - 1e-9)))
    k_hi = max(k_lo, nyquist_bin // 4) if f_max is None else \
        int(np.floor(_positive(f_max, "f_max") / df + 1e-9))
    k_hi = min(k_hi, nyquist_bin - 1 if n > 2 else 1)
    if k_hi < k_lo:
        raise ConfigError(f"multisine band [{f_min}, {f_max}] Hz holds no frequency of the "
                          f"record's grid (spacing {df:.4g} Hz up to {nyquist_bin * df:.4g} Hz)"
                          ": widen the band or lengthen the record")
    bins = np.unique(np.round(np.linspace(k_lo, k_hi, min(n_freq, k_hi - k_lo + 1))).astype(int))
    t = np.arange(n) * dt
    rng = np.random.default_rng(seed)
    out = np.empty((n, lo.size))
    for j in range(lo.size):
        if phases == "random":
            phi = rng.uniform(0.0, 2 * np.pi, bins.size)
        else:
            i = np.arange(1, bins.size + 1)
            phi = -np.pi * i * (i - 1) / bins.size
        s = np.sum(np.cos(2 * np.pi * np.outer(t, bins * df) + phi), axis=1)
        span = s.max() - s.min()
        s = (s - s.min()) / span if span > 0 else np.full(n, 0.5)
        out[:, j] = lo[j] + s * (hi[j] - lo[j])
    return out


def chirp(n_steps: int, dt: float, lo, hi, *, f0: float = 0.05, f1: float | None = None,
          method: str = "linear") -> np.ndarray:
    """A swept cosine from ``f0`` to ``f1`` Hz over the record (default ``f1``: a quarter of
    the Nyquist frequency), ``linear`` or ``logarithmic`` in frequency, centred in
    ``[lo, hi]`` with the full half-width as amplitude. Deterministic (no seed).

    Example
    -------
    >>> u = chirp(101, 0.1, [0.0], [2.0], f0=0.1, f1=1.0)
    >>> float(u[0, 0])                        # cos(0) = 1 at the top of the box
    2.0
    """
    n = _count(n_steps)
    dt = _positive(dt, "dt")
    lo, hi = _box(lo, hi)
    f0 = _positive(f0, "f0")
    f1 = 0.125 / dt if f1 is None else _positive(f1, "f1")
    t = np.arange(n) * dt
    T = max(t[-1], dt)
    if method == "linear":
        phase = 2 * np.pi * (f0 * t + 0.5 * (f1 - f0) * t ** 2 / T)
    elif method == "logarithmic":
        if np.isclose(f0, f1):
            phase = 2 * np.pi * f0 * t
        else:
            beta = T / np.log(f1 / f0)
            phase = 2 * np.pi * beta * f0 * (np.power(f1 / f0, t / T) - 1.0)
    else:
        raise ConfigError(f"chirp method {method!r} must be 'linear' or 'logarithmic'")
    c = np.cos(phase)
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    return mid[None, :] + half[None, :] * c[:, None]


_OPTIONS = {"random_steps": {"hold", "seed"}, "prbs": {"hold", "order", "seed"},
            "multisine": {"f_min", "f_max", "n_freq", "phases", "seed"},
            "chirp": {"f0", "f1", "method"}}


def excitation(signal: str, n_steps: int, dt: float, lo, hi, *, seed: int = 0,
               **options) -> np.ndarray:
    """The signal named ``signal`` (one of :data:`SIGNALS`) with its options.

    Unknown options raise a :class:`~dynid.errors.ConfigError` that lists the valid ones.

    Example
    -------
    >>> excitation("prbs", 10, 0.1, [0.0], [1.0], hold=5, seed=3).shape
    (10, 1)
    """
    if signal not in SIGNALS:
        raise ConfigError(f"unknown excitation signal {signal!r}: use one of {', '.join(SIGNALS)}")
    bad = sorted(set(options) - _OPTIONS[signal])
    if bad:
        raise ConfigError(f"signal {signal!r} has no option(s) {', '.join(bad)}; valid: "
                          f"{', '.join(sorted(_OPTIONS[signal] - {'seed'})) or '(none)'}")
    if signal == "random_steps":
        return random_steps(n_steps, lo, hi, seed=seed, **options)
    if signal == "prbs":
        return prbs(n_steps, lo, hi, seed=seed, **options)
    if signal == "multisine":
        return multisine(n_steps, dt, lo, hi, seed=seed, **options)
    return chirp(n_steps, dt, lo, hi, **options)


__all__ = ["SIGNALS", "excitation", "random_steps", "prbs", "multisine", "chirp", "lfsr_bits"]
