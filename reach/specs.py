"""Safety specifications and verdicts against reachable sets.

Three kinds of specification, each checked at the steps it names (default: every step >= 1):

- :class:`BoxSpec` - the state stays inside a box,
- :class:`HalfSpaceSpec` - ``a . x <= b``,
- :class:`ReachAvoidSpec` - the state never enters any of the ``avoid`` boxes, and at
  ``goal_step`` (default: the last) it lies in the ``goal`` box.

:func:`verdict` answers ``safe`` (certified by the sound bounds of every cell), ``unsafe``
(a simulated trajectory violates the spec; it is re-checked with the float64 forward pass and
returned), or ``unknown`` (neither).

Example
-------
>>> import numpy as np
>>> from dynid.relunet import linear
>>> from reach.reachability import reach
>>> net = linear(0.5 * np.eye(2))
>>> ds = reach(net, [0, 0], [1, 1], 3, engine="ibp")
>>> verdict(BoxSpec([-1, -1], [1.5, 1.5]), ds, step_net=net).status
'safe'
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dynid.errors import ConfigError, ShapeError

SAFE, UNSAFE, UNKNOWN = "safe", "unsafe", "unknown"


def _arr(v, what):
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(a)):
        raise ShapeError(f"{what} must be finite numbers")
    return a


def _steps_of(spec_steps, ds):
    all_steps = [int(s) for s in ds.step.values if int(s) >= 1]
    if spec_steps is None:
        return all_steps
    steps = [int(s) for s in np.atleast_1d(spec_steps)]
    bad = [s for s in steps if s not in all_steps]
    if bad:
        raise ConfigError(f"spec refers to steps {bad} but the reachable sets cover steps "
                          f"1..{max(all_steps)}")
    return steps


def _upper_of(a, ds, step):
    """Sound upper bound of a . x over each cell's template set at ``step`` (shape (P,))."""
    D = ds.directions.values
    n = D.shape[1]
    lower = ds.lower.sel(step=step).values  # (m, P)
    upper = ds.upper.sel(step=step).values
    # the box part: a+ . hi + a- . lo  (rounding: pad)
    best = (np.clip(a, 0, None) @ upper[:n] + np.clip(a, None, 0) @ lower[:n])
    best = best + 1e-12 * (np.abs(a) @ np.maximum(np.abs(upper[:n]), np.abs(lower[:n]))) + 1e-12
    # a template direction parallel to a gives the exact template bound
    for j, d in enumerate(D):
        na, nd = np.linalg.norm(a), np.linalg.norm(d)
        if na > 0 and nd > 0 and np.allclose(a / na, d / nd, atol=1e-12):
            best = np.minimum(best, (na / nd) * upper[j] * (1 + 1e-12 * np.sign(upper[j]))
                              + 1e-12)
        elif na > 0 and nd > 0 and np.allclose(a / na, -d / nd, atol=1e-12):
            best = np.minimum(best, -(na / nd) * lower[j] * (1 - 1e-12 * np.sign(lower[j]))
                              + 1e-12)
    return best


@dataclass(frozen=True)
class BoxSpec:
    """The state stays inside [lo, hi] at ``steps`` (default: every step)."""

    lo: np.ndarray
    hi: np.ndarray
    steps: tuple | None = None
    name: str = "stay in box"

    def __post_init__(self):
        lo, hi = _arr(self.lo, "box spec lo"), _arr(self.hi, "box spec hi")
        if lo.shape != hi.shape or np.any(lo > hi):
            raise ShapeError("box spec needs lo <= hi with one value per state")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    def halfspaces(self):
        n = self.lo.size
        eye = np.eye(n)
        return [(eye[i], self.hi[i]) for i in range(n)] + [(-eye[i], -self.lo[i])
                                                           for i in range(n)]

    def certified(self, ds) -> tuple[bool, dict]:
        margins = {}
        ok = True
        for s in _steps_of(self.steps, ds):
            m = min(float(np.min(b - _upper_of(a, ds, s))) for a, b in self.halfspaces())
            margins[s] = m
            ok &= m >= 0
        return ok, margins

    def violated(self, traj, steps) -> np.ndarray:
        """(N,) bool: which trajectories leave the box at one of the spec's steps."""
        x = traj[:, steps]
        return np.any((x < self.lo) | (x > self.hi), axis=(1, 2))

    def search_directions(self):
        return np.array([a for a, _ in self.halfspaces()])


@dataclass(frozen=True)
class HalfSpaceSpec:
    """``a . x <= b`` at ``steps`` (default: every step)."""

    a: np.ndarray
    b: float
    steps: tuple | None = None
    name: str = "half-space"

    def __post_init__(self):
        object.__setattr__(self, "a", _arr(self.a, "half-space normal a"))
        object.__setattr__(self, "b", float(self.b))

    def certified(self, ds):
        margins = {s: float(self.b - np.max(_upper_of(self.a, ds, s)))
                   for s in _steps_of(self.steps, ds)}
        return all(m >= 0 for m in margins.values()), margins

    def violated(self, traj, steps):
        return np.any(traj[:, steps] @ self.a > self.b, axis=1)

    def search_directions(self):
        return self.a[None]


@dataclass(frozen=True)
class ReachAvoidSpec:
    """Never enter any ``avoid`` box (at ``avoid_steps``, default all) and be inside ``goal``
    at ``goal_step`` (default: the last step)."""

    avoid: tuple = ()
    goal: tuple | None = None
    avoid_steps: tuple | None = None
    goal_step: int | None = None
    name: str = "reach-avoid"

    def __post_init__(self):
        avoid = tuple((_arr(lo, "avoid lo"), _arr(hi, "avoid hi")) for lo, hi in self.avoid)
        object.__setattr__(self, "avoid", avoid)
        if self.goal is not None:
            object.__setattr__(self, "goal", BoxSpec(self.goal[0], self.goal[1]))
        if not avoid and self.goal is None:
            raise ConfigError("a reach-avoid spec needs at least one avoid box or a goal box")

    def _goal_step(self, ds):
        return int(ds.step.values[-1]) if self.goal_step is None else int(self.goal_step)

    def certified(self, ds):
        margins = {}
        ok = True
        D = ds.directions.values
        for s in _steps_of(self.avoid_steps, ds):
            lower = ds.lower.sel(step=s).values
            upper = ds.upper.sel(step=s).values
            for lo, hi in self.avoid:
                # a template direction d separates cell set and avoid box when the cell's
                # bound lies strictly beyond the box's range along d; each cell needs one
                mid, rad = (lo + hi) / 2, (hi - lo) / 2
                box_lo = D @ mid - np.abs(D) @ rad
                box_hi = D @ mid + np.abs(D) @ rad
                sep = np.maximum(lower - box_hi[:, None], box_lo[:, None] - upper)  # (m, P)
                m = float(np.min(np.max(sep, axis=0)))
                margins[s] = min(margins.get(s, np.inf), m)
                ok &= m > 0
        if self.goal is not None:
            g_ok, g_m = BoxSpec(self.goal.lo, self.goal.hi,
                                steps=(self._goal_step(ds),)).certified(ds)
            margins[f"goal@{self._goal_step(ds)}"] = list(g_m.values())[0]
            ok &= g_ok
        return bool(ok), margins

    def violated(self, traj, steps):
        bad = np.zeros(traj.shape[0], bool)
        x = traj[:, steps]
        for lo, hi in self.avoid:
            bad |= np.any(np.all((x >= lo) & (x <= hi), axis=2), axis=1)
        return bad

    def violated_goal(self, traj, goal_step):
        if self.goal is None:
            return np.zeros(traj.shape[0], bool)
        return self.goal.violated(traj, [goal_step])

    def search_directions(self):
        dirs = []
        for lo, hi in self.avoid:
            n = lo.size
            dirs += [np.eye(n)[i] for i in range(n)] + [-np.eye(n)[i] for i in range(n)]
        if self.goal is not None:
            dirs += list(self.goal.search_directions())
        return np.array(dirs)


@dataclass
class Verdict:
    """Outcome of checking a spec: status safe | unsafe | unknown, the margins per step
    (>= 0 certified; for avoid sets > 0), and a violating trajectory when unsafe."""

    spec: str
    status: str
    margins: dict = field(default_factory=dict)
    witness: np.ndarray | None = None
    step: int | None = None

    def to_dict(self):
        from dynid.results import jsonable

        return jsonable({"spec": self.spec, "status": self.status, "margins": self.margins,
                         "witness": self.witness, "step": self.step})


def spec_dim(spec) -> int:
    """Number of states a spec talks about."""
    if isinstance(spec, BoxSpec):
        return spec.lo.size
    if isinstance(spec, HalfSpaceSpec):
        return spec.a.size
    boxes = list(spec.avoid) + ([(spec.goal.lo, spec.goal.hi)] if spec.goal is not None else [])
    sizes = {np.asarray(lo).size for lo, _ in boxes} | {np.asarray(hi).size for _, hi in boxes}
    if len(sizes) != 1:
        raise ShapeError(f"spec {spec.name!r} mixes boxes of sizes {sorted(sizes)}")
    return sizes.pop()


def check_spec(spec, n: int) -> None:
    """Raise ShapeError unless ``spec`` is about ``n`` states (checked before any work)."""
    d = spec_dim(spec)
    if d != n:
        raise ShapeError(f"spec {spec.name!r} has {d} values per state vector but the system "
                         f"has {n} states; give one value per state")


def _spec_steps(spec, ds):
    if isinstance(spec, ReachAvoidSpec):
        return _steps_of(spec.avoid_steps, ds)
    return _steps_of(spec.steps, ds)


def _find_violation(spec, ds, traj):
    steps = _spec_steps(spec, ds)
    bad = spec.violated(traj, steps)
    if isinstance(spec, ReachAvoidSpec):
        bad = bad | spec.violated_goal(traj, spec._goal_step(ds))
    idx = np.nonzero(bad)[0]
    return None if idx.size == 0 else traj[idx[0]]


def verdict(spec, ds, *, step_net=None, trajectories=None, search: bool = True,
            seed: int = 0) -> Verdict:
    """Check ``spec`` against the reach Dataset ``ds``.

    ``trajectories`` (N, K + 1, n) are simulated trajectories (e.g. from
    :func:`reach.falsify.sampled_boxes`); with ``step_net`` a targeted gradient search along the
    spec's directions looks for a violation too, and any violation is re-simulated with
    ``ReLUNet.forward`` before being reported. A violation wins over a certificate (it can only
    coexist with one if the bounds were unsound, which the tests rule out).
    """
    from reach.falsify import gradient_points, simulate

    check_spec(spec, int(ds.sizes["state"]))
    K = int(ds.step.values[-1])
    candidates = []
    if trajectories is not None:
        candidates.append(np.asarray(trajectories, float)[:, :K + 1])
    if step_net is not None and search:
        lo, hi = np.asarray(ds.attrs["x0_lo"], float), np.asarray(ds.attrs["x0_hi"], float)
        x0 = gradient_points(step_net, lo, hi, K, directions=spec.search_directions(),
                             restarts=2, iters=40, seed=seed)
        candidates.append(simulate(step_net, x0, K))
    for traj in candidates:
        w = _find_violation(spec, ds, traj)
        if w is None:
            continue
        if step_net is not None:
            # re-check with the reference float64 forward pass
            x = [w[0]]
            for _ in range(K):
                x.append(step_net.forward(x[-1]))
            w = np.array(x)
            if _find_violation(spec, ds, w[None]) is None:
                continue
        return Verdict(spec.name, UNSAFE, {}, w, None)
    ok, margins = spec.certified(ds)
    if ok and int(ds.attrs.get("complete", 1)):
        return Verdict(spec.name, SAFE, margins)
    return Verdict(spec.name, UNKNOWN, margins)


def spec_from_dict(d: dict):
    """Build a spec from a config table: ``{type = "box", lo = [..], hi = [..], steps = [..]}``,
    ``{type = "halfspace", a = [..], b = ..}``, or ``{type = "reach-avoid", avoid = [[lo, hi],
    ...], goal = [lo, hi], goal_step = K}``."""
    if not isinstance(d, dict) or "type" not in d:
        raise ConfigError("a spec needs a 'type' (box, halfspace or reach-avoid)")
    kind = str(d["type"]).lower().replace("_", "-")
    steps = tuple(d["steps"]) if "steps" in d else None
    name = d.get("name")
    try:
        if kind == "box":
            return BoxSpec(d["lo"], d["hi"], steps, name or "stay in box")
        if kind in ("halfspace", "half-space"):
            return HalfSpaceSpec(d["a"], d["b"], steps, name or "half-space")
        if kind == "reach-avoid":
            avoid = tuple(tuple(box) for box in d.get("avoid", []))
            goal = tuple(d["goal"]) if "goal" in d else None
            return ReachAvoidSpec(avoid, goal, steps, d.get("goal_step"), name or "reach-avoid")
    except KeyError as exc:
        raise ConfigError(f"spec of type {kind!r} is missing the key {exc.args[0]!r}") from exc
    raise ConfigError(f"unknown spec type {d['type']!r}: use box, halfspace or reach-avoid")


__all__ = ["BoxSpec", "HalfSpaceSpec", "ReachAvoidSpec", "Verdict", "verdict", "spec_from_dict",
           "check_spec", "spec_dim",
           "SAFE", "UNSAFE", "UNKNOWN"]
