"""The published closed-loop benchmarks (Reach-LP / Reach-SDP) as ready-made one-step nets.

The controllers are read from ``../shared/benchmarks/<name>/controller.{json,h5}`` (never copied
into the project); plants, saturation, initial sets and horizons follow that folder's README.
``A``, ``B``, ``c`` are the *discrete-time* step matrices: ``x+ = A x + B sat(pi(x)) + c``.

Example
-------
>>> from reach.benchmarks import double_integrator
>>> bench = double_integrator()                       # doctest: +SKIP
>>> bench.step_net.unroll(bench.steps)                # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dynid.errors import DynidError
from dynid.formats.keras import load_keras
from dynid.relunet import ReLUNet
from reach.closed_loop import linear_plant_loop

GRAVITY = 9.8


@dataclass(frozen=True, eq=False)
class ClosedLoopBenchmark:
    """A closed-loop reachability benchmark: plant, controller, saturation, X0, horizon."""

    name: str
    step_net: ReLUNet          # x_k -> x_{k+1}, controller and saturation included
    A: np.ndarray
    B: np.ndarray
    c: np.ndarray
    controller: ReLUNet
    u_lo: np.ndarray
    u_hi: np.ndarray
    x0_lo: np.ndarray
    x0_hi: np.ndarray
    steps: int
    state_names: list = field(default_factory=list)
    dt: float = 1.0

    def sample_initial(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` initial states drawn uniformly from X0 (shape (n, n_state))."""
        rng = np.random.default_rng(seed)
        return self.x0_lo + (self.x0_hi - self.x0_lo) * rng.random((int(n), self.x0_lo.size))

    def simulate(self, x0, steps: int | None = None) -> np.ndarray:
        """Trajectories (n_samples, steps + 1, n_state) by the plant equations and np.clip
        (independent of ``step_net``, for falsification and checks)."""
        x = np.atleast_2d(np.asarray(x0, dtype=np.float64))
        steps = self.steps if steps is None else int(steps)
        out = np.empty((x.shape[0], steps + 1, x.shape[1]))
        out[:, 0] = x
        for k in range(steps):
            u = np.clip(self.controller.forward(x), self.u_lo, self.u_hi)
            x = x @ self.A.T + u @ self.B.T + self.c
            out[:, k + 1] = x
        return out


def default_shared_dir() -> Path:
    """``$DYNID_SHARED_BENCHMARKS`` if set, else ``<repo>/../shared/benchmarks``."""
    env = os.environ.get("DYNID_SHARED_BENCHMARKS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"


def _controller(shared_dir, name: str) -> ReLUNet:
    base = Path(shared_dir) if shared_dir is not None else default_shared_dir()
    folder = base / name
    if not (folder / "controller.json").exists() or not (folder / "controller.h5").exists():
        raise DynidError(f"benchmark controller {folder}/controller.{{json,h5}} not found; "
                         "pass shared_dir= (the folder holding double_integrator/ and "
                         "quadrotor6d/) or set DYNID_SHARED_BENCHMARKS")
    return load_keras(folder / "controller.json", folder / "controller.h5")


def _build(name, controller, A, B, c, u_lo, u_hi, x0_lo, x0_hi, steps, names, dt):
    arr = lambda v: np.asarray(v, dtype=np.float64)  # noqa: E731
    step = linear_plant_loop(A, B, controller, c=c, u_lo=u_lo, u_hi=u_hi)
    step = step.with_meta(system=name, dt=dt, state_names=list(names),
                          domain={"lo": arr(x0_lo).tolist(), "hi": arr(x0_hi).tolist()})
    return ClosedLoopBenchmark(name, step, arr(A), arr(B), arr(c), controller, arr(u_lo),
                               arr(u_hi), arr(x0_lo), arr(x0_hi), int(steps), list(names),
                               float(dt))


def double_integrator(shared_dir=None) -> ClosedLoopBenchmark:
    """Double integrator, dt = 1: ``x+ = [[1, 1], [0, 1]] x + [[0.5], [1]] sat(u)``,
    u in [-1, 1], X0 = [2.5, 3] x [-0.25, 0.25], 5 steps; controller 2-10-5-1."""
    ctrl = _controller(shared_dir, "double_integrator")
    return _build("double_integrator", ctrl, [[1.0, 1.0], [0.0, 1.0]], [[0.5], [1.0]],
                  [0.0, 0.0], [-1.0], [1.0], [2.5, -0.25], [3.0, 0.25], 5, ["x", "v"], 1.0)


def quadrotor6d(shared_dir=None) -> ClosedLoopBenchmark:
    """6-D quadrotor, forward Euler with dt = 0.1 of ``xdot = A x + B u + c``
    (A[0:3, 3:6] = I, B[3,0] = g, B[4,1] = -g, B[5,2] = 1, c[5] = -g, g = 9.8);
    u in [-pi/3, pi/3]^2 x [0, 2g]; 12 steps; controller 6-32-32-3."""
    ctrl = _controller(shared_dir, "quadrotor6d")
    dt, g = 0.1, GRAVITY
    a = np.zeros((6, 6))
    a[0:3, 3:6] = np.eye(3)
    b = np.zeros((6, 3))
    b[3, 0], b[4, 1], b[5, 2] = g, -g, 1.0
    c = np.zeros(6)
    c[5] = -g
    return _build("quadrotor6d", ctrl, np.eye(6) + dt * a, dt * b, dt * c,
                  [-np.pi / 3, -np.pi / 3, 0.0], [np.pi / 3, np.pi / 3, 2 * g],
                  [4.65, 4.65, 2.95, 0.94, -0.01, -0.01], [4.75, 4.75, 3.05, 0.96, 0.01, 0.01],
                  12, ["px", "py", "pz", "vx", "vy", "vz"], dt)


BENCHMARKS = {"double_integrator": double_integrator, "quadrotor6d": quadrotor6d}


def get_benchmark(name: str, shared_dir=None) -> ClosedLoopBenchmark:
    """A benchmark by name (``double_integrator`` or ``quadrotor6d``).

    Example
    -------
    >>> bench = get_benchmark("quadrotor6d")        # doctest: +SKIP
    >>> bench.step_net.widths                       # doctest: +SKIP
    [6, 38, 38, 12, 6]
    """
    if name not in BENCHMARKS:
        raise DynidError(f"unknown closed-loop benchmark {name!r}; choose one of "
                         f"{sorted(BENCHMARKS)}")
    return BENCHMARKS[name](shared_dir)


__all__ = ["ClosedLoopBenchmark", "double_integrator", "quadrotor6d", "get_benchmark",
           "BENCHMARKS", "default_shared_dir"]
