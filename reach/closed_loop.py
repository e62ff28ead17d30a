"""Closed loops as one ReLU network per step.

A linear plant with a ReLU controller and input saturation, a learned ReLU plant surrogate
driven by a ReLU controller, or an autonomous surrogate: each becomes one
:class:`~dynid.relunet.ReLUNet` ``x_k -> x_{k+1}``, so every bounding engine (IBP, CROWN, LP,
splitting, MIP) and :meth:`ReLUNet.unroll` apply to it unchanged.

Saturation is exact with ReLUs: ``clip(u, lo, hi) = lo + relu(u - lo) - relu(u - hi)``.
The state is carried through the controller's layers by identity units (``stack`` with
``identity``), so the network stays a plain layered feed-forward map.

Example
-------
>>> import numpy as np
>>> from dynid.relunet import linear
>>> ctrl = linear([[-1.0, -2.0]])                      # u = -x - 2 v
>>> step = linear_plant_loop([[1, 1], [0, 1]], [[0.5], [1.0]], ctrl, u_lo=-1, u_hi=1)
>>> step.forward(np.array([2.0, 0.0])).round(3)        # u = clip(-2) = -1
array([ 1.5, -1. ])
"""

from __future__ import annotations

import numpy as np

from dynid.errors import ShapeError
from dynid.relunet import ReLUNet, compose, identity, linear, stack


def _bounds(lo, hi, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast saturation limits to length m; None means unbounded on that side."""

    def expand(v, fill):
        if v is None:
            return np.full(m, fill)
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        if v.size not in (1, m):
            raise ShapeError(f"saturation limits must be scalars or have {m} entries (one per "
                             f"control input), got {v.size}")
        return np.broadcast_to(v, (m,)).copy()

    lo, hi = expand(lo, -np.inf), expand(hi, np.inf)
    if np.any(np.isnan(lo)) or np.any(np.isnan(hi)):
        raise ShapeError("saturation limits contain NaN")
    if np.any(lo > hi):
        i = int(np.argmax(lo > hi))
        raise ShapeError(f"saturation of input {i} is empty: lower {lo[i]} > upper {hi[i]}")
    return lo, hi


def saturation(lo, hi) -> ReLUNet:
    """Componentwise ``clip(u, lo, hi)`` as a two-layer ReLUNet (R^m -> R^m).

    Per component: both limits finite: ``lo + relu(u - lo) - relu(u - hi)``; only ``lo``:
    ``lo + relu(u - lo)``; only ``hi``: ``u - relu(u - hi)`` (u kept by an identity unit);
    neither (``None`` or infinite): ``u``. The number of inputs m is the length of ``lo`` /
    ``hi`` (at least one of them must be an array, or both scalars for m = 1).

    Example
    -------
    >>> saturation([-1.0], [1.0]).forward([[-3.0], [0.25], [2.0]]).ravel().tolist()
    [-1.0, 0.25, 1.0]
    """
    m = max(np.size(lo) if lo is not None else 1, np.size(hi) if hi is not None else 1)
    lo, hi = _bounds(lo, hi, m)
    rows, biases, relu, out_cols = [], [], [], []   # hidden units and their output weights
    out_bias = np.zeros(m)
    for j in range(m):
        e = np.eye(m)[j]
        if np.isfinite(lo[j]):
            rows.append(e); biases.append(-lo[j]); relu.append(True); out_cols.append((j, 1.0))
            out_bias[j] += lo[j]
        else:
            rows.append(e); biases.append(0.0); relu.append(False); out_cols.append((j, 1.0))
        if np.isfinite(hi[j]):
            rows.append(e); biases.append(-hi[j]); relu.append(True); out_cols.append((j, -1.0))
    w2 = np.zeros((m, len(rows)))
    for k, (j, s) in enumerate(out_cols):
        w2[j, k] = s
    return ReLUNet([np.array(rows), w2], [np.array(biases), out_bias],
                   [np.array(relu), np.zeros(m, bool)], {"saturation": {"lo": lo, "hi": hi}})


def _saturated(controller: ReLUNet, u_lo, u_hi) -> ReLUNet:
    if u_lo is None and u_hi is None:
        return controller
    lo, hi = _bounds(u_lo, u_hi, controller.n_out)
    if not (np.isfinite(lo).any() or np.isfinite(hi).any()):
        return controller
    return compose(saturation(lo, hi), controller)


def _check_net(net, what: str) -> ReLUNet:
    if hasattr(net, "to_relunet") and not isinstance(net, ReLUNet):
        net = net.to_relunet()
    if not isinstance(net, ReLUNet):
        raise ShapeError(f"{what} must be a ReLUNet (load it with dynid.formats.load_network "
                         f"or convert it with ReLUNet.from_torch), got {type(net).__name__}")
    return net


def linear_plant_loop(A, B, controller: ReLUNet, c=None, u_lo=None, u_hi=None) -> ReLUNet:
    """One closed-loop step ``x -> A x + B sat(pi(x)) + c`` as a ReLUNet (R^n -> R^n).

    Parameters
    ----------
    A : (n, n) discrete-time state matrix.
    B : (n, m) input matrix.
    controller : ReLUNet pi: R^n -> R^m.
    c : (n,) constant term (default 0).
    u_lo, u_hi : saturation limits of u (scalars or length m; None = no limit on that side).

    Example
    -------
    >>> from dynid.relunet import linear
    >>> step = linear_plant_loop([[1.0]], [[1.0]], linear([[-0.5]]), u_lo=-0.1, u_hi=0.1)
    >>> float(step.forward([1.0])[0])
    0.9
    """
    controller = _check_net(controller, "controller")
    A = np.atleast_2d(np.asarray(A, dtype=np.float64))
    B = np.asarray(B, dtype=np.float64)
    n = A.shape[0]
    if B.ndim == 1:
        B = B.reshape(n, -1) if B.size % max(n, 1) == 0 else B
    if A.shape != (n, n):
        raise ShapeError(f"A must be square, got shape {A.shape}")
    m = controller.n_out
    if B.shape != (n, m):
        raise ShapeError(f"B must have shape ({n}, {m}) (states x controller outputs), got "
                         f"{B.shape}")
    if controller.n_in != n:
        raise ShapeError(f"the controller takes {controller.n_in} inputs but the plant has "
                         f"{n} states")
    c = np.zeros(n) if c is None else np.asarray(c, dtype=np.float64).reshape(-1)
    if c.shape != (n,):
        raise ShapeError(f"c must have {n} entries, got {c.size}")
    policy = _saturated(controller, u_lo, u_hi)
    step = compose(linear(np.hstack([A, B]), c), stack(identity(n), policy))
    meta = {k: v for k, v in controller.meta.items() if k not in ("saturation",)}
    return ReLUNet(step.weights, step.biases, step.relu,
                   {**meta, "closed_loop": "linear_plant", "n_state": n, "n_control": m})


def surrogate_loop(plant: ReLUNet, controller: ReLUNet, u_lo=None, u_hi=None) -> ReLUNet:
    """One step ``x -> F(x, sat(pi(x)))`` of a learned plant ``F: R^(n+m) -> R^n`` whose input
    is the state followed by the control, ``[x; u]``.

    Example
    -------
    >>> from dynid.relunet import linear
    >>> plant = linear([[1.0, 0.5]])                  # F(x, u) = x + u / 2
    >>> step = surrogate_loop(plant, linear([[-1.0]]), u_lo=-1, u_hi=1)
    >>> float(step.forward([4.0])[0])
    3.5
    """
    plant = _check_net(plant, "plant")
    controller = _check_net(controller, "controller")
    n, m = controller.n_in, controller.n_out
    if plant.n_in != n + m or plant.n_out != n:
        raise ShapeError(f"the plant must map [x; u] in R^{n + m} to R^{n} (controller "
                         f"{n} -> {m}), got {plant.n_in} -> {plant.n_out}")
    step = compose(plant, stack(identity(n), _saturated(controller, u_lo, u_hi)))
    return step.with_meta(closed_loop="surrogate", n_state=n, n_control=m)


def autonomous(F) -> ReLUNet:
    """An autonomous surrogate ``x -> F(x)`` checked to map R^n to R^n (returned as is).

    Example
    -------
    >>> from dynid.relunet import linear
    >>> autonomous(linear([[0.5]])).forward([2.0]).tolist()
    [1.0]
    """
    F = _check_net(F, "F")
    if F.n_in != F.n_out:
        raise ShapeError(f"an autonomous step must map R^n to R^n, got {F.n_in} -> {F.n_out}")
    return F.with_meta(closed_loop="autonomous", n_state=F.n_in)


def rollout(step: ReLUNet, x0, steps: int) -> np.ndarray:
    """States ``x_0 .. x_steps`` of the closed loop from each initial state (float64).

    Returns an array of shape (n_samples, steps + 1, n) for ``x0`` of shape (n_samples, n).

    Example
    -------
    >>> from dynid.relunet import linear
    >>> rollout(linear([[0.5]]), [[4.0]], 2)[0, :, 0].tolist()
    [4.0, 2.0, 1.0]
    """
    x = np.atleast_2d(np.asarray(x0, dtype=np.float64))
    out = np.empty((x.shape[0], int(steps) + 1, x.shape[1]))
    out[:, 0] = x
    for k in range(int(steps)):
        x = step.forward(x)
        out[:, k + 1] = x
    return out


__all__ = ["saturation", "linear_plant_loop", "surrogate_loop", "autonomous", "rollout"]
