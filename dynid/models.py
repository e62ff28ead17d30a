"""Torch surrogates of a discrete-time map x_{k+1} = F(x_k) or, for a plant with inputs,
x_{k+1} = F(x_k, u_k), exportable as a :class:`ReLUNet`.

Two kinds:

- :class:`MLPSurrogate` learns the map directly: ``F(x) = denorm_y(N(norm_x(x)))``.
- :class:`ResidualSurrogate` learns the increment: ``F(x) = x + h * denorm_d(N(norm_x(x)))``
  where the normalised target is ``d = (x_next - x) / h``. For small time steps the increment
  is small against x, so the residual form reaches a given one-step accuracy much sooner.

With ``n_input = m > 0`` the network's input is ``[x; u]`` (states first, then inputs) and its
output the next state: ``F(x, u) = x + h N([x; u])`` for the residual form. ``N`` is a plain
ReLU MLP (``n + m -> hidden... -> n``). The normalisation statistics are buffers
(saved with the module, not trained). :meth:`to_relunet` folds them into the first and last
affine layers, so the exported network is the map in physical units and every certificate is
about that map.

Example
-------
>>> import numpy as np, torch
>>> X = np.random.default_rng(0).uniform(size=(100, 2)); Y = X + 0.1 * np.sin(X)
>>> model = ResidualSurrogate.from_data(X, Y, hidden=(16, 16), h=0.1)
>>> net = model.to_relunet()
>>> net.widths
[2, 18, 18, 2]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from dynid.errors import ConfigError, ShapeError
from dynid.relunet import ReLUNet, compose, linear, residual, stack

ARCHITECTURES = ("mlp", "residual", "cpl")


def _stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per column; a (near) constant column gets std 1 so nothing blows up."""
    a = np.asarray(a, dtype=np.float64)
    mean = a.mean(axis=0)
    std = a.std(axis=0)
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return mean, std


def norm_vector(v, default: float, n: int, *, dtype, device) -> torch.Tensor:
    """A normalisation vector of n entries as a tensor (``default`` everywhere when None)."""
    v = np.full(n, default) if v is None else np.asarray(v, dtype=np.float64).reshape(-1)
    if v.shape != (n,):
        raise ShapeError(f"normalisation vector has {v.size} entries, need {n}")
    return torch.tensor(v, dtype=dtype, device=device)


def _check_hidden(hidden) -> tuple[int, ...]:
    try:
        hidden = tuple(int(h) for h in hidden)
    except (TypeError, ValueError):
        raise ConfigError(f"hidden sizes must be integers, got {hidden!r}") from None
    if not hidden or any(h < 1 for h in hidden):
        raise ConfigError(f"hidden sizes must be one or more positive integers, got {hidden!r}")
    return hidden


def check_sizes(n_state, hidden, n_input=0) -> tuple[int, int, tuple[int, ...]]:
    """The number of states (>= 1), of inputs (>= 0) and the hidden widths of a surrogate,
    checked."""
    n, m = int(n_state), int(n_input)
    if n < 1 or m < 0:
        raise ShapeError(f"a surrogate needs at least one state and n_input >= 0, got "
                         f"n_state={n_state}, n_input={n_input}")
    return n, m, _check_hidden(hidden)


class _Surrogate(nn.Module):
    """Shared parts: the inner ReLU MLP on normalised coordinates, and its export."""

    kind = "base"

    def __init__(self, n_state: int, hidden: Sequence[int] = (32, 32), *, n_input: int = 0,
                 x_mean=None, x_std=None, out_mean=None, out_std=None, dtype=torch.float64,
                 device=None):
        super().__init__()
        n, m, self.hidden = check_sizes(n_state, hidden, n_input)
        self.n_state = n
        self.n_input = m
        sizes = [n + m, *self.hidden, n]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b, dtype=dtype, device=device))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

        kw = {"dtype": dtype, "device": device}
        # x_mean / x_std normalise the whole network input [x; u]
        self.register_buffer("x_mean", norm_vector(x_mean, 0.0, n + m, **kw))
        self.register_buffer("x_std", norm_vector(x_std, 1.0, n + m, **kw))
        self.register_buffer("out_mean", norm_vector(out_mean, 0.0, n, **kw))
        self.register_buffer("out_std", norm_vector(out_std, 1.0, n, **kw))

    def inner(self, x: torch.Tensor) -> torch.Tensor:
        """The inner map in physical units of the learnt quantity (x_next or increment)."""
        return self.net((x - self.x_mean) / self.x_std) * self.out_std + self.out_mean

    def normalised_output(self, x: torch.Tensor) -> torch.Tensor:
        """The raw network output on normalised coordinates (what the loss compares)."""
        return self.net((x - self.x_mean) / self.x_std)

    def _inner_relunet(self) -> ReLUNet:
        """The inner MLP with the normalisation folded into its first and last layers."""
        lins = [m for m in self.net if isinstance(m, nn.Linear)]
        ws = [lin.weight.detach().cpu().double().numpy().copy() for lin in lins]
        bs = [lin.bias.detach().cpu().double().numpy().copy() for lin in lins]
        xm, xs = (self.x_mean.detach().cpu().double().numpy(),
                  self.x_std.detach().cpu().double().numpy())
        om, os_ = (self.out_mean.detach().cpu().double().numpy(),
                   self.out_std.detach().cpu().double().numpy())
        # W (x - m) / s + b  =  (W / s) x + (b - W (m / s))
        bs[0] = bs[0] - ws[0] @ (xm / xs)
        ws[0] = ws[0] / xs[None, :]
        # s * (W h + b) + m  =  (s W) h + (s b + m)
        ws[-1] = os_[:, None] * ws[-1]
        bs[-1] = os_ * bs[-1] + om
        return ReLUNet(ws, bs)

    def normalisation(self) -> dict:
        """The statistics as plain lists (stored in model-file metadata, informative only)."""
        return {k: getattr(self, k).detach().cpu().double().numpy().tolist()
                for k in ("x_mean", "x_std", "out_mean", "out_std")}

    def architecture(self) -> dict:
        out = {"kind": self.kind, "n_state": self.n_state, "hidden": list(self.hidden)}
        if self.n_input:
            out["n_input"] = self.n_input
        return out


class MLPSurrogate(_Surrogate):
    """Plain ReLU MLP surrogate ``x -> x_next`` with input/output normalisation.

    Parameters
    ----------
    n_state : number of states.
    hidden : hidden layer widths.
    n_input : number of plant inputs (the network takes ``[x; u]``; default 0).
    x_mean, x_std : normalisation of the network input ``[x; u]`` (default 0 and 1).
    out_mean, out_std : output (x_next) normalisation (default 0 and 1).
    dtype, device : torch dtype and device of the parameters.

    Example
    -------
    >>> m = MLPSurrogate(2, (8,))
    >>> m(torch.zeros(3, 2, dtype=torch.float64)).shape
    torch.Size([3, 2])
    """

    kind = "mlp"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    def target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Normalised training target for pairs (x, y)."""
        return (y - self.out_mean) / self.out_std

    @classmethod
    def from_data(cls, X, Y, hidden=(32, 32), **kw) -> "MLPSurrogate":
        """A surrogate whose normalisation comes from the pairs (X, Y); ``X = [x, u]`` has
        ``n_input`` more columns than ``Y``."""
        X, Y = _check_pairs(X, Y)
        xm, xs = _stats(X)
        ym, ys = _stats(Y)
        return cls(Y.shape[1], hidden, n_input=X.shape[1] - Y.shape[1], x_mean=xm, x_std=xs,
                   out_mean=ym, out_std=ys, **kw)

    def to_relunet(self, meta: dict | None = None) -> ReLUNet:
        """The map in physical units as a ReLUNet (float64, normalisation folded in)."""
        net = self._inner_relunet()
        return net.with_meta(**(meta or {}), architecture=self.architecture(),
                             normalisation=self.normalisation())


class ResidualSurrogate(_Surrogate):
    """Residual ReLU surrogate ``x -> x + h * N(x)`` (``[x; u] -> x + h * N(x, u)`` for a plant
    with inputs) with normalisation.

    ``N`` is trained on the increment ``(x_next - x) / h``; ``out_mean``/``out_std`` are that
    increment's statistics. ``h`` is usually the time step dt.

    Example
    -------
    >>> m = ResidualSurrogate(2, (8,), h=0.1)
    >>> x = torch.ones(1, 2, dtype=torch.float64)
    >>> bool(torch.allclose(m(x), x + 0.1 * m.inner(x)))
    True
    """

    kind = "residual"

    def __init__(self, n_state: int, hidden: Sequence[int] = (32, 32), *, h: float = 1.0, **kw):
        super().__init__(n_state, hidden, **kw)
        h = float(h)
        if not np.isfinite(h) or h <= 0:
            raise ConfigError(f"residual step h must be a positive number, got {h}")
        self.h = h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :self.n_state] + self.h * self.inner(x)

    def target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((y - x[..., :self.n_state]) / self.h - self.out_mean) / self.out_std

    @classmethod
    def from_data(cls, X, Y, hidden=(32, 32), h: float = 1.0, **kw) -> "ResidualSurrogate":
        X, Y = _check_pairs(X, Y)
        n = Y.shape[1]
        xm, xs = _stats(X)
        dm, ds = _stats((Y - X[:, :n]) / float(h))
        return cls(n, hidden, n_input=X.shape[1] - n, h=h, x_mean=xm, x_std=xs, out_mean=dm,
                   out_std=ds, **kw)

    def architecture(self) -> dict:
        return {**super().architecture(), "h": self.h}

    def to_relunet(self, meta: dict | None = None) -> ReLUNet:
        """``x + h * N(x)`` (``[x; u] -> x + h N(x, u)``) in physical units as one ReLUNet
        (skip connection as identity units)."""
        inner = self._inner_relunet()
        if self.n_input == 0:
            net = residual(inner, self.h)
        else:
            n, m = self.n_state, self.n_input
            # [x; u] -> x carried by n identity units (not n + m) through N's hidden layers
            states = ReLUNet([np.hstack([np.eye(n), np.zeros((n, m))]), np.eye(n)],
                             [np.zeros(n), np.zeros(n)], [np.zeros(n, bool), np.zeros(n, bool)])
            net = compose(linear(np.hstack([np.eye(n), self.h * np.eye(n)])),
                          stack(states, inner))
        return net.with_meta(**(meta or {}), architecture=self.architecture(),
                             normalisation=self.normalisation())


def _check_pairs(X, Y) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0] or X.shape[1] < Y.shape[1]:
        raise ShapeError(f"pairs must be arrays X (n_samples, n_state + n_input) and Y "
                         f"(n_samples, n_state), got {X.shape} and {Y.shape}")
    if X.shape[0] < 2:
        raise ShapeError(f"need at least 2 pairs to fit a surrogate, got {X.shape[0]}")
    return X, Y


def make_surrogate(arch: str, X, Y, hidden=(32, 32), *, h: float = 1.0, dtype=torch.float64,
                   device=None, options: dict | None = None) -> _Surrogate:
    """Build a surrogate of kind ``arch`` ('mlp' | 'residual' | 'cpl') normalised on the pairs
    (X, Y); ``X = [x, u]`` may have more columns than ``Y`` (the plant's inputs; not for
    'cpl', which is for autonomous maps). ``options``: keyword arguments of the 'cpl' kind
    (c, gain, power_iterations, step_init; see :class:`dynid.cpl.CPLSurrogate`).

    Example
    -------
    >>> X = np.random.default_rng(0).uniform(size=(50, 2))
    >>> make_surrogate("mlp", X, X ** 2, hidden=(4,)).kind
    'mlp'
    """
    if options and arch != "cpl":
        raise ConfigError(f"architecture {arch!r} takes no options, got {sorted(options)}")
    if arch == "mlp":
        return MLPSurrogate.from_data(X, Y, hidden, dtype=dtype, device=device)
    if arch == "residual":
        return ResidualSurrogate.from_data(X, Y, hidden, h=h, dtype=dtype, device=device)
    if arch == "cpl":
        from dynid.cpl import CPLSurrogate

        return CPLSurrogate.from_data(X, Y, hidden, dtype=dtype, device=device, **(options or {}))
    raise ConfigError(f"unknown architecture {arch!r}: use one of {', '.join(ARCHITECTURES)}")


__all__ = ["MLPSurrogate", "ResidualSurrogate", "make_surrogate", "ARCHITECTURES"]
