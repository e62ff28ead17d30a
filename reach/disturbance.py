"""Reachable sets of the *plant*: the surrogate step plus a bounded disturbance per step.

If ``|F_true(x) - F(x)| <= e`` (per state) holds for every x in a box B (a certified model
error, :func:`dynid.certify.model_error`), every true trajectory that stays in B is a
trajectory of the disturbed surrogate ``x_{k+1} = F(x_k) + w_k`` with ``w_k`` in [-e, e].
So the reachable sets of the disturbed surrogate contain the true system's states, as long
as the sets of the earlier steps lie in B; from the first step whose set leaves B the result
is unknown for the plant (NaN here), and it says so.

The disturbance enters every engine (ibp, crown, lp-highs, lp-splitting, mip) as plain
network inputs free in a box: the window's unrolling takes ``[x; w_1; ...; w_W]`` and carries
the later disturbances through the earlier steps by identity units,

    A_k : [x; w_k; ...; w_W] -> [F(x) + w_k; w_(k+1); ...; w_W],
    D_j = (A_j o ... o A_1) followed by "keep x" (the first n outputs),

so ``D_j`` computes ``x_j`` from the window's anchor state, and every ``D_j`` of a window has
the same hidden layers as the deepest one (intermediate bounds are shared as for the
undisturbed unrolling). One-shot reach is one window over the whole horizon (a fresh w per
step); recursive and hybrid restart with fresh disturbances in every window.

Example
-------
>>> import numpy as np
>>> from dynid.relunet import linear
>>> from reach.reachability import reach
>>> ds = reach(linear([[0.5]]), [1.0], [2.0], 2, engine="ibp", model_error=[0.1])
>>> ds.attrs["about"], round(float(ds.box_hi.sel(step=2)[0]), 6)    # (2 * .5 + .1) * .5 + .1
('plant', 0.65)
"""

from __future__ import annotations

import numpy as np

from dynid.errors import ConfigError, ShapeError
from dynid.relunet import ReLUNet, compose, identity, linear, parallel

SURROGATE = "surrogate"
PLANT = "plant"


class DisturbedUnrolled:
    """``j -> D_j``, the j-step unrolling of ``x -> F(x) + w`` on ``[x; w_1; ...; w_W]``
    (cached; the drop-in for the undisturbed unrolling cache of :func:`reach.reach_cell`)."""

    def __init__(self, step_net: ReLUNet, window: int):
        self.net = step_net
        self.window = int(window)
        self.n = step_net.n_in
        self._chain = {}
        self.cache = {}

    def _step(self, k: int) -> ReLUNet:
        """A_k: [x; w_k..w_W] -> [F(x) + w_k; w_(k+1)..w_W]."""
        n, rest = self.n, (self.window - k) * self.n
        carried = parallel(self.net, identity(n + rest))      # [F(x); w_k; w_(k+1)..w_W]
        top = np.hstack([np.eye(n), np.eye(n), np.zeros((n, rest))])
        bottom = np.hstack([np.zeros((rest, 2 * n)), np.eye(rest)])
        return compose(linear(np.vstack([top, bottom])), carried)

    def chain(self, j: int) -> ReLUNet:
        """A_j o ... o A_1 (outputs [x_j; w_(j+1)..w_W])."""
        if j not in self._chain:
            self._chain[j] = self._step(1) if j == 1 else compose(self._step(j), self.chain(j - 1))
        return self._chain[j]

    def __call__(self, j: int) -> ReLUNet:
        j = int(j)
        if not 1 <= j <= self.window:
            raise ShapeError(f"disturbed unrolling has {self.window} steps, asked for {j}")
        if j not in self.cache:
            net = self.chain(j)
            if j < self.window:
                keep = np.hstack([np.eye(self.n), np.zeros((self.n, net.n_out - self.n))])
                net = compose(linear(keep), net)
            self.cache[j] = net.with_meta(**{**self.net.meta, "disturbed_steps": j})
        return self.cache[j]


def error_vector(model_error, n: int):
    """``(e, box, label)`` from a :class:`~dynid.certify.model_error.ModelErrorBound` or a
    per-state array (a scalar is used for every state; then the box is None = unstated)."""
    box, label = None, "given"
    if hasattr(model_error, "e") and hasattr(model_error, "label"):
        e = np.asarray(model_error.e, dtype=np.float64)
        box = (np.asarray(model_error.lo, float), np.asarray(model_error.hi, float))
        label = model_error.label
        if getattr(model_error, "status", None) is not None and \
                str(model_error.status) == "unknown" and not model_error.empirical:
            raise ConfigError("the model error has no finite bound (status unknown): plant "
                              "reachable sets need a bound")
    else:
        e = np.asarray(model_error, dtype=np.float64).reshape(-1)
        if e.size == 1:
            e = np.full(n, float(e[0]))
    if e.shape != (n,):
        raise ShapeError(f"the model error needs {n} values (one per state), got {e.size}")
    if not np.all(np.isfinite(e)) or np.any(e < 0):
        raise ConfigError(f"the model error must be finite and >= 0 in every state, got "
                          f"{e.tolist()}")
    return e, box, label


class PlantSetup:
    """What :func:`reach.reachability.reach` needs for a plant analysis: the disturbed
    unrolling, the disturbance box per window, and the check of the validity box."""

    def __init__(self, step_net: ReLUNet, model_error, window: int, error_box=None):
        n = step_net.n_in
        self.e, box, self.label = error_vector(model_error, n)
        if error_box is not None:
            from dynid.relunet import check_box

            box = check_box(n, error_box[0], error_box[1], "model-error box")
        if box is not None and (box[0].size != n or box[1].size != n):
            raise ShapeError(f"the model-error box needs {n} values per corner (the states)")
        self.box = box
        self.window = int(window)
        self.unrolled = DisturbedUnrolled(step_net, self.window)
        self.extra = (np.tile(-self.e, self.window), np.tile(self.e, self.window))

    def mark(self, lower, upper, D, x0_inside: np.ndarray | None = None):
        """NaN the steps of every cell after its first set outside the validity box (those
        are unknown for the plant); returns (lower, upper, attrs)."""
        steps1, m, P = lower.shape
        n = D.shape[1]
        first_out = np.full(P, steps1)           # first step whose set is outside B
        if self.box is not None:
            lo_b, hi_b = self.box
            # the box rows come first in every template
            inside = (lower[:, :n, :] >= lo_b[None, :, None]) & \
                     (upper[:, :n, :] <= hi_b[None, :, None])
            inside = inside.all(axis=1)                       # (steps + 1, P)
            inside |= np.isnan(lower[:, :n, :]).any(axis=1)   # unfinished: stays NaN anyway
            out = ~inside
            first_out = np.where(out.any(axis=0), out.argmax(axis=0), steps1)
            for c in range(P):
                if first_out[c] + 1 < steps1:
                    lower[first_out[c] + 1:, :, c] = np.nan
                    upper[first_out[c] + 1:, :, c] = np.nan
        unknown_from = int(first_out.min()) + 1
        attrs = {"about": PLANT, "model_error": self.e, "model_error_label": self.label,
                 "plant_unknown_from": unknown_from if unknown_from < steps1 else -1}
        if self.box is not None:
            attrs["model_error_lo"] = self.box[0]
            attrs["model_error_hi"] = self.box[1]
        return lower, upper, attrs


def about(ds) -> str:
    """"plant" or "surrogate": what a reach Dataset is about (old files: surrogate)."""
    return str(ds.attrs.get("about", SURROGATE))


def describe(ds) -> str:
    """One line: what the sets are about and, for the plant, the model error behind them."""
    if about(ds) != PLANT:
        return "about: the surrogate (its own trajectories; not the true system)"
    e = np.atleast_1d(np.asarray(ds.attrs.get("model_error"), float))
    text = (f"about: the plant (true system), model error e = "
            f"[{', '.join(f'{v:.4g}' for v in e)}] ({ds.attrs.get('model_error_label')})")
    if "model_error_lo" in ds.attrs:
        lo = np.atleast_1d(ds.attrs["model_error_lo"])
        hi = np.atleast_1d(ds.attrs["model_error_hi"])
        text += (f" valid on lo = [{', '.join(f'{a:.4g}' for a in lo)}], hi = ["
                 f"{', '.join(f'{b:.4g}' for b in hi)}]")
    k = int(ds.attrs.get("plant_unknown_from", -1))
    if k >= 0:
        text += f"; the set leaves that box: unknown for the plant from step {k}"
    return text


__all__ = ["DisturbedUnrolled", "PlantSetup", "error_vector", "about", "describe", "PLANT",
           "SURROGATE"]
