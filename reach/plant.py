"""Reachable sets of the plant (the true system) from a surrogate and its certified model error.

:func:`plant_reach` does what an engineer's review needs in one call:

1. the box B where the model error is certified: given, or the hull of the surrogate's
   reachable sets grown by a margin (if the plant's sets then leave B, B grows to cover them
   and e is certified again, at most ``tries`` times);
2. ``e`` on B by :func:`dynid.certify.model_error.model_error` (the true flow / Euler / RK4
   map of the model's system);
3. the plant's sets: the surrogate plus a disturbance in [-e, e] per step
   (:mod:`reach.disturbance`), unknown from the step after a set leaves B;
4. simulated runs of the true system from X0 (its own integrator), which must lie inside the
   plant's sets: the count outside is reported (0 for a sound result) together with their
   inner boxes.

Example
-------
>>> from dynid.relunet import linear
>>> from dynid.systems import linear_system
>>> net = linear([[0.89]]).with_meta(system="linear", dt=0.1, map="euler")
>>> run = plant_reach(net, [0.5], [1.0], 3, system=linear_system([[-1.0]]), samples=200)
>>> run.dataset.attrs["about"], run.falsification.outside
('plant', 0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynid.errors import ConfigError


@dataclass
class PlantRun:
    """A plant analysis: the sets (``dataset``, attrs ``about = "plant"``), the model-error
    bound they rest on, the true system's runs (a :class:`reach.falsify.Falsification`: inner
    boxes and the count outside), the box B and the surrogate's sets for comparison."""

    dataset: object
    model_error: object
    falsification: object
    error_box: tuple
    surrogate: object = None
    tries: int = 1
    seconds: float = 0.0

    def summary(self) -> dict:
        from reach.falsify import error_ratio

        ds, f = self.dataset, self.falsification
        K = int(ds.step.values[-1])
        lo, hi = ds.box_lo.sel(step=K).values, ds.box_hi.sel(step=K).values
        out = {"about": "plant", "steps": K, "seconds": self.seconds,
               "model_error": self.model_error.to_dict(),
               "error_box": {"lo": self.error_box[0].tolist(), "hi": self.error_box[1].tolist()},
               "unknown_from_step": int(ds.attrs.get("plant_unknown_from", -1)),
               "final_box": {"lo": lo.tolist(), "hi": hi.tolist()},
               "boxes": {"lo": ds.box_lo.values.tolist(), "hi": ds.box_hi.values.tolist()},
               "true_runs": f.n_samples, "true_runs_outside": f.outside, "sound": f.sound,
               "tries": self.tries}
        if np.all(np.isfinite(lo)):
            out["error"] = error_ratio(lo, hi, f.inner_lo[K], f.inner_hi[K])
        return out


def true_runs(system, dt, method, x0, steps, keep: int = 300, check=None, chunk=20_000):
    """Simulate the true system from the initial states ``x0`` (N, n) with its own step map;
    a :class:`reach.falsify.Falsification` with the inner boxes, a kept subset of the runs,
    and (with ``check``, a reach Dataset) the number of runs outside its sets."""
    from reach.falsify import Falsification, count_outside

    x0 = np.atleast_2d(np.asarray(x0, dtype=np.float64))
    n = x0.shape[1]
    inner_lo = np.full((steps + 1, n), np.inf)
    inner_hi = np.full((steps + 1, n), -np.inf)
    kept, outside = [], (0 if check is not None else None)
    for start in range(0, len(x0), chunk):
        traj = [x0[start:start + chunk]]
        for _ in range(steps):
            traj.append(system.step_map(traj[-1], dt, method))
        traj = np.stack(traj, axis=1)
        inner_lo = np.minimum(inner_lo, traj.min(axis=0))
        inner_hi = np.maximum(inner_hi, traj.max(axis=0))
        if len(kept) < keep:
            kept.extend(traj[:keep - len(kept)])
        if check is not None:
            # only the steps the plant's sets speak for (up to the first unknown one)
            k = int(check.attrs.get("plant_unknown_from", -1))
            k = traj.shape[1] if k < 0 else k
            outside += count_outside(check.isel(step=slice(0, k)), traj[:, :k])
    return Falsification(inner_lo, inner_hi, int(len(x0)), np.array(kept), outside,
                         info={"true_system": system.name, "map": method, "dt": dt})


def _system_of(net, system):
    from dynid.certify.model_error import _params
    from dynid.systems import System, get_system

    if isinstance(system, System):
        return system
    meta = net.meta if isinstance(net.meta, dict) else {}
    name = system or meta.get("system")
    if not name:
        raise ConfigError("a plant analysis needs the true system: the model file records "
                          "none; give the system")
    params = _params(meta) if name == meta.get("system") else {}
    return get_system(name, **params)


def default_error_box(ds, margin: float):
    """The hull of every step's set, grown by ``margin`` times its width on each side."""
    lo = np.nanmin(ds.box_lo.values, axis=0)
    hi = np.nanmax(ds.box_hi.values, axis=0)
    pad = margin * (hi - lo) + 1e-9 * (1 + np.abs(hi) + np.abs(lo))
    return lo - pad, hi + pad


def plant_reach(net, x0_lo, x0_hi, steps: int, *, system=None, dt=None, map=None,
                error_box=None, margin: float = 0.25, tries: int = 3, model_error_opts=None,
                samples: int = 2000, seed: int = 0, surrogate=None, progress=None,
                **reach_opts) -> PlantRun:
    """Certified reachable sets of the true system (see the module docstring).

    Parameters
    ----------
    net : the surrogate step map (its metadata names the system, dt and map unless given)
    x0_lo, x0_hi, steps : initial box and horizon
    error_box : (lo, hi) where e is certified (default: from the surrogate's sets)
    margin, tries : growth of the automatic box, and how often it may grow
    model_error_opts : options of :func:`dynid.certify.model_error.model_error`
    samples : true-system runs simulated from X0 (uniform, plus the corners)
    surrogate : the surrogate's reach Dataset if already computed
    **reach_opts : options of :func:`reach.reachability.reach` (method, engine, ...)
    """
    import time

    from dynid.certify.model_error import model_error
    from reach.falsify import corners
    from reach.reachability import reach

    t0 = time.perf_counter()
    system = _system_of(net, system)
    meta = net.meta if isinstance(net.meta, dict) else {}
    dt = float(dt if dt is not None else meta.get("dt") or 0) or None
    map_ = map or meta.get("map") or "flow"
    if dt is None:
        raise ConfigError("a plant analysis needs dt: the model file records none")
    opts = dict(model_error_opts or {})
    x0_lo, x0_hi = np.asarray(x0_lo, float), np.asarray(x0_hi, float)
    if surrogate is None:
        surrogate = reach(net, x0_lo, x0_hi, steps, **reach_opts)
    if error_box is None:
        box = default_error_box(surrogate, margin)
        box = (np.minimum(box[0], x0_lo), np.maximum(box[1], x0_hi))
        grow = True
    else:
        box = (np.asarray(error_box[0], float), np.asarray(error_box[1], float))
        grow = False
    tries = max(1, int(tries))
    for attempt in range(1, tries + 1):
        if progress:
            progress(f"certifying the model error on lo={np.round(box[0], 4).tolist()}, "
                     f"hi={np.round(box[1], 4).tolist()}")
        me = model_error(net, system, box[0], box[1], dt=dt, map=map_, **opts)
        if not np.all(np.isfinite(me.e)):
            raise ConfigError("no finite model-error bound on the box (the flow enclosure "
                              "failed): give a smaller box or more cells/time")
        ds = reach(net, x0_lo, x0_hi, steps, model_error=me, **reach_opts)
        if int(ds.attrs.get("plant_unknown_from", -1)) < 0 or not grow or attempt == tries:
            break
        # the plant's sets left B: grow B over what is known of them and certify again
        k = int(ds.attrs["plant_unknown_from"])
        lo = np.minimum(box[0], np.nanmin(ds.box_lo.values[:k], axis=0))
        hi = np.maximum(box[1], np.nanmax(ds.box_hi.values[:k], axis=0))
        w = hi - lo
        box = (lo - margin * w, hi + margin * w)
    rng = np.random.default_rng(seed)
    x0 = np.vstack([corners(x0_lo, x0_hi),
                    x0_lo + (x0_hi - x0_lo) * rng.random((int(samples), x0_lo.size))])
    fals = true_runs(system, dt, map_, x0, steps, check=ds)
    return PlantRun(ds, me, fals, box, surrogate, attempt, time.perf_counter() - t0)


__all__ = ["PlantRun", "plant_reach", "true_runs", "default_error_box"]
