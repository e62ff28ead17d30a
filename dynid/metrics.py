"""Accuracy metrics of a surrogate map: one-step error and free-run rollouts.

Definitions (all in physical units, float64):

- one-step RMSE: ``sqrt(mean((F(x) - x_next)^2))`` over every sample and state.
- rollout: the surrogate iterated on its own output from held-out initial states,
  ``xhat_{k+1} = F(xhat_k)``, ``xhat_0 = x_0``, compared with the true trajectory
  ``x_1..x_K`` (the initial state is excluded: it is exact by construction).
- rollout RMSE: ``sqrt(mean((xhat - x)^2))`` over trajectories, steps and states.
- NRMSE: per state, the RMSE of that state divided by the standard deviation of the true
  trajectories of that state (over all trajectories and steps); the mean over states.
- fit %: per state ``100 (1 - ||x - xhat|| / ||x - mean(x)||)`` (norms over all trajectories and
  steps, mean over all of them), averaged over states; 100 % is a perfect fit, 0 % is no better
  than the mean, and it can be negative.

Example
-------
>>> import numpy as np
>>> from dynid.relunet import linear
>>> net = linear(np.eye(2))
>>> one_step_rmse(net, np.ones((3, 2)), np.ones((3, 2)))
0.0
"""

from __future__ import annotations

import numpy as np

from dynid.errors import ShapeError
from dynid.relunet import ReLUNet


def one_step_rmse(net: ReLUNet, X, Y) -> float:
    """Root mean square of ``F(X) - Y`` over all samples and states (float64 forward pass).

    Example
    -------
    >>> from dynid.relunet import linear
    >>> one_step_rmse(linear([[2.0]]), [[1.0], [2.0]], [[2.0], [3.0]])   # errors 0 and 1
    0.7071067811865476
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != net.n_in or Y.shape != (X.shape[0], net.n_out):
        raise ShapeError(f"pairs of shape {X.shape} -> {Y.shape} do not fit a network "
                         f"{net.n_in} -> {net.n_out}: use data of the system the model was "
                         "trained on")
    return float(np.sqrt(np.mean((net.forward(X) - Y) ** 2)))


def rollout(net: ReLUNet, x0, steps: int) -> np.ndarray:
    """Free run of the surrogate: array (n_traj, steps + 1, n) starting at ``x0``.

    Diverging runs give inf/NaN entries instead of an error (the metrics report them).

    Example
    -------
    >>> from dynid.relunet import linear
    >>> rollout(linear([[0.5]]), [[1.0]], 2)[0, :, 0].tolist()
    [1.0, 0.5, 0.25]
    """
    x = np.atleast_2d(np.asarray(x0, dtype=np.float64))
    if x.shape[1] != net.n_in or net.n_in != net.n_out:
        raise ShapeError(f"initial states of shape {x.shape} do not fit a map "
                         f"{net.n_in} -> {net.n_out}")
    out = np.empty((x.shape[0], int(steps) + 1, x.shape[1]))
    out[:, 0] = x
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(int(steps)):
            out[:, k + 1] = net.forward(out[:, k])
    return out


def trajectory_errors(true, pred, mask=None) -> dict:
    """RMSE, NRMSE and fit % of predicted against true trajectories (n_traj, T, n).

    The first time point is skipped (shared initial state). ``mask`` (n_traj, T) marks the
    time points to score (experiments of uneven length: False after a run's end). See the
    module docstring for the definitions; per-state values are under ``*_per_state``.

    Example
    -------
    >>> t = np.arange(6.0).reshape(1, 6, 1)
    >>> trajectory_errors(t, t)["fit_percent"]
    100.0
    """
    true = np.asarray(true, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if true.shape != pred.shape or true.ndim != 3:
        raise ShapeError(f"true and predicted trajectories differ in shape: {true.shape} vs "
                         f"{pred.shape}")
    n = true.shape[-1]
    keep = np.ones(true.shape[:2], bool) if mask is None else np.asarray(mask, bool)
    if keep.shape != true.shape[:2]:
        raise ShapeError(f"mask of shape {keep.shape} does not fit trajectories {true.shape}")
    keep = keep.copy()
    keep[:, 0] = False
    t = true[keep].reshape(-1, n)
    p = pred[keep].reshape(-1, n)
    with np.errstate(over="ignore", invalid="ignore"):
        err = p - t
        rmse_s = np.sqrt(np.mean(err ** 2, axis=0))
        std_s = t.std(axis=0)
        # a state that stays constant has no scale of its own: fall back to 1 (absolute error)
        scale = np.where(std_s > 1e-12, std_s, 1.0)
        nrmse_s = rmse_s / scale
        dev = np.linalg.norm(t - t.mean(axis=0), axis=0)
        fit_s = 100.0 * (1.0 - np.linalg.norm(err, axis=0) / np.where(dev > 1e-12, dev, 1.0))
        rmse = float(np.sqrt(np.mean(err ** 2)))
    clean = lambda v: float(v) if np.isfinite(v) else float("inf")  # noqa: E731
    return {"rmse": clean(rmse), "nrmse": clean(np.mean(nrmse_s)),
            "fit_percent": float(np.mean(fit_s)) if np.all(np.isfinite(fit_s)) else
            float("-inf"),
            "rmse_per_state": [clean(v) for v in rmse_s],
            "nrmse_per_state": [clean(v) for v in nrmse_s],
            "fit_percent_per_state": [float(v) if np.isfinite(v) else float("-inf")
                                      for v in fit_s],
            "n_trajectories": int(true.shape[0]), "steps": int(true.shape[1] - 1)}


def rollout_metrics(net: ReLUNet, system, x0, steps: int, dt: float, method: str = "flow",
                    *, return_trajectories: bool = False) -> dict:
    """Free-run accuracy of ``net`` against the true system from initial states ``x0``.

    Parameters
    ----------
    net : the surrogate map (physical units).
    system : a :class:`dynid.systems.System` or catalogue name; the true trajectories come
        from :func:`dynid.simulate.trajectories` with the same ``dt`` and ``method``.
    x0 : array (n_traj, n_state) of held-out initial states.
    steps : horizon K.
    dt, method : time step and map ('flow' | 'euler' | 'rk4') the surrogate was trained on.
    return_trajectories : also return ``true`` and ``pred`` arrays (n_traj, K + 1, n).

    Returns
    -------
    dict with ``rmse``, ``nrmse`` (mean over states of RMSE / std of the true trajectory of
    that state), ``fit_percent`` and their per-state lists, ``n_trajectories``, ``steps``.

    Example
    -------
    >>> from dynid.relunet import linear
    >>> m = rollout_metrics(linear(np.eye(2)), "linear", [[1.0, 0.0]], 3, 0.1, method="euler")
    >>> m["rmse"] > 0, m["steps"]          # the identity map is not the linear system's flow
    (True, 3)
    """
    from dynid.simulate import trajectories

    x0 = np.atleast_2d(np.asarray(x0, dtype=np.float64))
    true = np.asarray(trajectories(system, x0, int(steps), dt, method=method)["x"].values)
    pred = rollout(net, x0, int(steps))
    out = trajectory_errors(true, pred)
    if return_trajectories:
        out["true"], out["pred"] = true, pred
    return out


def heldout_initial_states(lo, hi, n: int = 20, seed: int = 12345) -> np.ndarray:
    """``n`` initial states uniform in the box [lo, hi] from a seed distinct from the usual
    data seeds (held out in the sense that they are fresh draws, not training samples)."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    return np.random.default_rng(seed).uniform(lo, hi, size=(int(n), lo.size))


def _model_system(net: ReLUNet):
    """The true system behind a model (from its metadata), or None when unknown."""
    from dynid.errors import DynidError
    from dynid.systems import get_system

    name = net.meta.get("system")
    if not name:
        return None
    params = net.meta.get("params") or {}
    try:
        return get_system(name, **(params if isinstance(params, dict) else {}))
    except DynidError:  # a user-registered system not present in this process
        return None


def check_same_dt(ds, net: ReLUNet) -> None:
    """Raise DataValidationError when the dataset's and the model's time steps differ."""
    from dynid.errors import DataValidationError

    ddt, mdt = ds.attrs.get("dt"), net.meta.get("dt")
    if ddt is not None and mdt is not None and not np.isclose(float(ddt), float(mdt)):
        raise DataValidationError(f"dataset time step dt={float(ddt)} differs from the "
                                  f"model's dt={float(mdt)}: use data with the same dt")


def evaluate_model(net: ReLUNet, ds=None, *, steps: int = 50, n_initial: int = 20,
                   seed: int = 12345, n_test: int = 2000,
                   return_trajectories: bool = False) -> dict:
    """All accuracy figures of a surrogate: on a dataset, on fresh pairs, and in free run.

    Parameters
    ----------
    net : a surrogate whose metadata names ``system``, ``params``, ``dt``, ``map`` and
        ``domain`` (as written by :func:`dynid.train.train`); without them only the dataset
        figures are computed. A plant model (metadata ``input_names``) is evaluated by
        :func:`dynid.sysid.evaluate_plant` (free runs driven by recorded inputs, with
        ``n_initial`` fresh experiments).
    ds : optional dataset (pairs or trajectories) of the same system.
    steps, n_initial : rollout horizon and number of held-out initial states (uniform in the
        model's training domain, drawn with ``seed``).
    n_test : fresh one-step pairs (uniform in the domain, seed ``seed + 1``) for the test RMSE.

    Returns
    -------
    dict with ``one_step_rmse`` (test pairs when the system is known, else the dataset),
    ``one_step_rmse_data``, ``one_step_rmse_test``, ``rollout`` (see :func:`rollout_metrics`,
    against the true system), ``rollout_data`` (against the dataset's own trajectories) and
    the settings. Missing parts are None.

    Example
    -------
    >>> from dynid.relunet import linear
    >>> r = evaluate_model(linear(np.eye(2)).with_meta(system="linear", dt=0.1, map="euler",
    ...                    domain={"lo": [-1, -1], "hi": [1, 1]}), steps=5, n_initial=3)
    >>> sorted(k for k in r if r[k] is not None)[:3]
    ['dt', 'map', 'n_initial']
    """
    from dynid.errors import DataValidationError

    if net.meta.get("input_names"):   # a plant [x; u] -> x_next: identification figures
        from dynid.sysid import evaluate_plant

        return evaluate_plant(net, ds, steps=steps, n_experiments=n_initial, seed=seed,
                              n_test=n_test, return_trajectories=return_trajectories)
    out: dict = {"system": net.meta.get("system"), "dt": net.meta.get("dt"),
                 "map": net.meta.get("map", "flow"), "steps": int(steps),
                 "n_initial": int(n_initial), "seed": int(seed), "one_step_rmse": None,
                 "one_step_rmse_data": None, "one_step_rmse_test": None, "rollout": None,
                 "rollout_data": None}
    if ds is not None:
        from dynid.datasets import dataset_kind, pairs_from, validate

        validate(ds)
        X, Y = pairs_from(ds)
        names = net.meta.get("state_names")
        if X.shape[1] != net.n_in:
            raise ShapeError(f"dataset has {X.shape[1]} states but the model takes {net.n_in} "
                             "inputs: evaluate with data of the system the model was trained on")
        if names and "state" in ds.coords and \
                [str(s) for s in ds.coords["state"].values] != list(names):
            raise DataValidationError(f"dataset states {list(map(str, ds.coords['state'].values))}"
                                      f" differ from the model's {list(names)}")
        check_same_dt(ds, net)
        out["one_step_rmse_data"] = one_step_rmse(net, X, Y)
        if dataset_kind(ds) == "trajectories":
            traj = np.asarray(ds["x"].transpose("trajectory", "time", "state").values)
            pred = rollout(net, traj[:, 0], traj.shape[1] - 1)
            out["rollout_data"] = trajectory_errors(traj, pred)
    system = _model_system(net)
    domain = net.meta.get("domain") or {}
    if system is not None and net.meta.get("dt") and domain.get("lo") is not None:
        from dynid.simulate import one_step_pairs

        lo, hi = np.asarray(domain["lo"], float), np.asarray(domain["hi"], float)
        dt, method = float(net.meta["dt"]), str(net.meta.get("map", "flow"))
        test = one_step_pairs(system, int(n_test), dt, method=method, lo=lo, hi=hi,
                              seed=int(seed) + 1)
        out["one_step_rmse_test"] = one_step_rmse(net, test["x"].values, test["x_next"].values)
        x0 = heldout_initial_states(lo, hi, n_initial, seed)
        out["rollout"] = rollout_metrics(net, system, x0, steps, dt, method,
                                         return_trajectories=return_trajectories)
    out["one_step_rmse"] = (out["one_step_rmse_test"] if out["one_step_rmse_test"] is not None
                            else out["one_step_rmse_data"])
    return out


__all__ = ["one_step_rmse", "evaluate_model", "rollout", "trajectory_errors", "rollout_metrics",
           "heldout_initial_states"]
