"""System-identification evaluation of a plant model x[k+1] = F(x[k], u[k]) on experiments.

What a control engineer checks before trusting an identified model, in the conventions of the
identification toolboxes:

- :func:`free_run`: the model simulated on its own output from a measured initial state,
  driven by the recorded inputs (MATLAB ``compare`` / ``sim`` with infinite horizon);
- :func:`evaluate_experiments`: free runs of held-out experiments against the measured states:
  fit % per state ``100 (1 - ||y - yhat|| / ||y - mean(y)||)`` (the ``compare`` convention;
  norms over all scored experiments and steps, and also per experiment), NRMSE (RMSE / std of
  the measured state) and RMSE, over a horizon of ``steps`` steps (the initial state is not
  scored);
- :func:`arx_fit`: the baseline an engineer tries first, a linear model
  ``x[k+1] = A x[k] + B u[k] + c`` fitted by least squares on the same pairs, returned as a
  (linear) :class:`~dynid.relunet.ReLUNet` so every evaluation treats both models alike;
- :func:`compare_figure`: measured vs simulated per state, with the inputs, per experiment;
- :func:`evaluate_plant`: all of it for a trained plant model (what ``dynid evaluate`` and the
  pipeline's evaluate stage report): one-step RMSE, free runs on the dataset's held-out
  (validation) experiments and on fresh experiments of the true system when it is known, each
  side by side with the ARX baseline fitted on the training experiments.

Example
-------
>>> import numpy as np
>>> from dynid.simulate import experiments
>>> ds = experiments("linear_input", 4, 40, 0.1, method="flow", seed=0)
>>> arx = arx_fit(ds)                     # exact for a linear plant with ZOH inputs
>>> r = evaluate_experiments(arx, ds, steps=30)
>>> bool(min(r["fit_percent_per_state"]) > 99.99)
True
"""

from __future__ import annotations

import numpy as np

from dynid.errors import ConfigError, DataValidationError, ShapeError
from dynid.relunet import ReLUNet, linear


def _check_plant(net: ReLUNet, n: int, m: int) -> None:
    if net.n_out != n or net.n_in != n + m:
        raise ShapeError(f"the model maps R^{net.n_in} -> R^{net.n_out} but the data have {n} "
                         f"states and {m} inputs: a plant model takes [x; u] in R^{n + m} and "
                         f"returns x_next in R^{n}")


def free_run(net: ReLUNet, x0, u) -> np.ndarray:
    """Simulate ``x[k+1] = F([x[k]; u[k]])`` from ``x0`` (n_runs, n) under the inputs ``u``
    (n_runs, K, m) (for an autonomous model give ``u`` of shape (n_runs, K, 0)).

    Returns (n_runs, K + 1, n); a diverging run gives inf/NaN entries, not an error.

    Example
    -------
    >>> free_run(linear([[0.5, 1.0]]), [[1.0]], np.ones((1, 2, 1)))[0, :, 0].tolist()
    [1.0, 1.5, 1.75]
    """
    x = np.atleast_2d(np.asarray(x0, dtype=np.float64))
    U = np.asarray(u, dtype=np.float64)
    if U.ndim != 3 or U.shape[0] != x.shape[0]:
        raise ShapeError(f"inputs must have shape (n_runs, K, n_input) with n_runs = "
                         f"{x.shape[0]}, got {U.shape}")
    _check_plant(net, x.shape[1], U.shape[2])
    out = np.empty((x.shape[0], U.shape[1] + 1, x.shape[1]))
    out[:, 0] = x
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(U.shape[1]):
            out[:, k + 1] = net.forward(np.hstack([out[:, k], U[:, k]]))
    return out


def _select(ds, experiments):
    """The trajectory arrays of the chosen experiments (all when None)."""
    from dynid.datasets import trajectory_arrays

    t = trajectory_arrays(ds)
    if experiments is None:
        idx = np.arange(len(t["experiment"]))
    else:
        wanted = [str(e) for e in experiments]
        missing = [e for e in wanted if e not in t["experiment"]]
        if missing:
            raise DataValidationError(f"experiment(s) {missing[:5]} are not in the dataset "
                                      f"(it has {t['experiment'][:8]}...)")
        idx = np.array([t["experiment"].index(e) for e in wanted])
    if idx.size == 0:
        raise DataValidationError("no experiments to evaluate")
    return t, idx


def evaluate_experiments(net: ReLUNet, ds, *, steps: int | None = None, experiments=None,
                         return_trajectories: bool = False) -> dict:
    """Free-run accuracy of a plant model on the experiments of a trajectories dataset.

    Each chosen experiment (default: all) is simulated from its measured first state, driven
    by its recorded inputs, for ``steps`` steps (default: its whole length; experiments shorter
    than ``steps`` are scored over their length) and compared with the measured states.

    Returns
    -------
    dict with ``fit_percent_per_state`` (pooled over the experiments), ``fit_percent`` (their
    mean), ``fit_percent_per_experiment`` (n_exp lists), ``fit_percent_median_per_state``,
    ``nrmse_per_state``, ``nrmse``, ``rmse_per_state``, ``rmse``, ``steps``, ``experiments``
    (labels), ``state_names``; with ``return_trajectories`` also ``measured``, ``simulated``
    (n_exp, steps + 1, n), ``inputs`` (n_exp, steps, m) and ``mask`` (n_exp, steps + 1).
    """
    from dynid.metrics import trajectory_errors

    t, idx = _select(ds, experiments)
    n = t["x"].shape[2]
    length = t["length"][idx]
    horizon = int(length.max()) - 1 if steps is None else int(steps)
    if horizon < 1:
        raise ConfigError(f"steps={steps} must be >= 1")
    x = t["x"][idx]
    u = t["u"][idx] if t["u"] is not None else np.zeros(x.shape[:2] + (0,))
    T = min(horizon + 1, x.shape[1])
    x, u = x[:, :T], u[:, :T - 1]
    mask = np.arange(T)[None, :] < np.minimum(length, T)[:, None]
    u = np.where(mask[:, :-1, None], u, 0.0)          # padding drives nothing we score
    pred = free_run(net, x[:, 0], u)
    x_scored = np.where(mask[..., None], x, 0.0)
    pooled = trajectory_errors(x_scored, np.where(mask[..., None], pred, 0.0), mask)
    per_exp = [trajectory_errors(x_scored[i:i + 1], pred[i:i + 1], mask[i:i + 1])
               ["fit_percent_per_state"] for i in range(len(idx))]
    names = [str(s) for s in ds["state"].values.tolist()]
    out = {"fit_percent_per_state": pooled["fit_percent_per_state"],
           "fit_percent": pooled["fit_percent"],
           "fit_percent_per_experiment": per_exp,
           "fit_percent_median_per_state": np.median(np.asarray(per_exp), axis=0).tolist(),
           "nrmse_per_state": pooled["nrmse_per_state"], "nrmse": pooled["nrmse"],
           "rmse_per_state": pooled["rmse_per_state"], "rmse": pooled["rmse"],
           "steps": int(T - 1), "experiments": [t["experiment"][i] for i in idx],
           "state_names": names, "n_state": n}
    if return_trajectories:
        out.update(measured=x, simulated=pred, inputs=u, mask=mask,
                   time=t["time"][:T], input_names=[str(s) for s in ds["input"].values]
                   if "input" in ds.coords else [])
    return out


def arx_fit(ds, *, ridge: float = 1e-9, affine: bool = True) -> ReLUNet:
    """Least-squares linear model ``x[k+1] = A x[k] + B u[k] + c`` on the pairs of ``ds``
    (a dataset, or a tuple ``(X, Y)`` with ``X = [x, u]``), as a one-layer ReLUNet on
    ``[x; u]``. This is ARX of order one in every state (the states are measured), the
    baseline an engineer fits first; ``ridge`` is a tiny Tikhonov term for ill-conditioned
    data, scaled by the data's second moments.

    Example
    -------
    >>> X = np.random.default_rng(0).normal(size=(50, 3))
    >>> Y = X[:, :2] @ np.array([[0.9, 0.1], [0.0, 0.8]]).T + 0.5 * X[:, 2:]
    >>> net = arx_fit((X, Y))
    >>> bool(np.allclose(net.weights[0], [[0.9, 0.1, 0.5], [0.0, 0.8, 0.5]], atol=1e-6))
    True
    """
    from dynid.datasets import pairs_from

    if isinstance(ds, (tuple, list)):
        X, Y = (np.asarray(a, dtype=np.float64) for a in ds)
    else:
        X, Y = pairs_from(ds)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0] or X.shape[1] < Y.shape[1]:
        raise ShapeError(f"pairs X (N, n + m) and Y (N, n) expected, got {X.shape}, {Y.shape}")
    Phi = np.hstack([X, np.ones((X.shape[0], 1))]) if affine else X
    if Phi.shape[0] < Phi.shape[1]:
        raise DataValidationError(f"{Phi.shape[0]} pairs cannot determine a linear model with "
                                  f"{Phi.shape[1]} coefficients per state: use more data")
    G = Phi.T @ Phi
    G += float(ridge) * np.trace(G) / G.shape[0] * np.eye(G.shape[0])
    theta = np.linalg.solve(G, Phi.T @ Y)          # (n + m [+ 1], n)
    W = theta[:X.shape[1]].T
    c = theta[X.shape[1]] if affine else np.zeros(Y.shape[1])
    return linear(W, c, meta={"architecture": {"kind": "arx", "affine": bool(affine)}})


def compare_figure(result: dict, *, max_experiments: int = 3, dt: float | None = None):
    """Measured (solid) vs simulated (dashed) states and the inputs of the first experiments
    of :func:`evaluate_experiments` (called with ``return_trajectories=True``): one row per
    state and per input, one column per experiment.

    Example
    -------
    >>> from dynid.simulate import experiments
    >>> ds = experiments("mass_spring_damper", 2, 20, 0.1, seed=0)
    >>> r = evaluate_experiments(arx_fit(ds), ds, return_trajectories=True)
    >>> len(compare_figure(r).axes)           # (2 states + 1 input) x 2 experiments
    6
    """
    from matplotlib.figure import Figure

    if "measured" not in result:
        raise ConfigError("compare_figure needs evaluate_experiments(..., "
                          "return_trajectories=True)")
    meas, sim, u, mask = (result[k] for k in ("measured", "simulated", "inputs", "mask"))
    names, inputs = result["state_names"], result.get("input_names", [])
    k = min(max_experiments, meas.shape[0])
    rows = meas.shape[2] + u.shape[2]
    fig = Figure(figsize=(3.8 * k + 1, 1.9 * rows + 0.6), layout="constrained")
    axes = np.asarray(fig.subplots(rows, k, squeeze=False, sharex="col"))
    t = result.get("time")
    if t is None:
        t = (dt or 1.0) * np.arange(meas.shape[1])
    for j in range(k):
        L = int(mask[j].sum())
        fits = result["fit_percent_per_experiment"][j]
        for s in range(meas.shape[2]):
            ax = axes[s, j]
            ax.plot(t[:L], meas[j, :L, s], color="k", lw=1.2, label="measured")
            ax.plot(t[:L], sim[j, :L, s], color="tab:red", lw=1.0, ls="--", label="simulated")
            ax.set_title(f"{result['experiments'][j]}: {names[s]} (fit {fits[s]:.1f} %)",
                         fontsize=9)
            if j == 0:
                ax.set_ylabel(names[s])
        for q in range(u.shape[2]):
            ax = axes[meas.shape[2] + q, j]
            ax.step(t[:max(L - 1, 1)], u[j, :max(L - 1, 1), q], where="post",
                    color="tab:blue", lw=1.0)
            if j == 0:
                ax.set_ylabel(inputs[q] if q < len(inputs) else f"u{q + 1}")
        axes[-1, j].set_xlabel("time (s)")
    axes[0, 0].legend(loc="best", fontsize=8)
    return fig


def _fresh_experiments(net: ReLUNet, system, ds, n: int, steps: int, seed: int):
    """New experiments of the true system: initial states in the model's domain, the
    excitation the dataset records (else random steps in the model's input box)."""
    import json

    from dynid.simulate import experiments

    dom, box = net.meta.get("domain") or {}, net.meta.get("input_box") or {}
    exc = {}
    if ds is not None and isinstance(ds.attrs.get("excitation"), str):
        exc = json.loads(ds.attrs["excitation"])
    u_lo = exc.get("u_lo", box.get("lo"))
    u_hi = exc.get("u_hi", box.get("hi"))
    opts = {k: tuple(v) if isinstance(v, list) else v
            for k, v in (exc.get("options") or {}).items()}
    noise = 0.0
    if ds is not None and "noise_std" in ds.attrs:
        noise = np.asarray(ds.attrs["noise_std"], float)
    return experiments(system, n, steps, float(net.meta["dt"]),
                       method=str(net.meta.get("map", "flow")),
                       signal=exc.get("signal", "random_steps"), signal_options=opts,
                       u_lo=u_lo, u_hi=u_hi, lo=dom.get("lo"), hi=dom.get("hi"), seed=seed,
                       noise_std=noise)


def evaluate_plant(net: ReLUNet, ds=None, *, steps: int = 100, n_experiments: int = 20,
                   seed: int = 12345, n_test: int = 2000,
                   return_trajectories: bool = False) -> dict:
    """Accuracy of a plant model ``[x; u] -> x_next`` (as written by :func:`dynid.train.train`)
    like an identification toolbox reports it.

    - ``one_step_rmse_data``: on the pairs of ``ds``; ``one_step_rmse_test``: on fresh pairs
      of the true system (when the model names a known system), uniform in the model's state
      and input boxes;
    - ``heldout``: free runs (``steps`` steps) of the dataset's validation experiments (their
      labels are in the model's training summary), ``heldout_arx`` the same for the ARX
      baseline fitted on the dataset's other experiments;
    - ``fresh`` / ``fresh_arx``: the same on ``n_experiments`` new experiments of the true
      system (when known), excited like the dataset.

    Missing parts are None. See :func:`evaluate_experiments` for the figures in each part.
    """
    from dynid.datasets import dataset_kind, pairs_from, validate
    from dynid.metrics import _model_system, check_same_dt, one_step_rmse

    inputs = list(net.meta.get("input_names") or [])
    n, m = net.n_out, net.n_in - net.n_out
    if not inputs or m != len(inputs):
        raise ShapeError(f"evaluate_plant needs a plant model [x; u] -> x_next with "
                         f"input_names in its metadata, got R^{net.n_in} -> R^{net.n_out}")
    out: dict = {"system": net.meta.get("system"), "dt": net.meta.get("dt"),
                 "map": net.meta.get("map"), "steps": int(steps), "seed": int(seed),
                 "state_names": net.meta.get("state_names"), "input_names": inputs,
                 "one_step_rmse": None, "one_step_rmse_data": None, "one_step_rmse_test": None,
                 "heldout": None, "heldout_arx": None, "fresh": None, "fresh_arx": None,
                 "n_experiments": int(n_experiments)}
    arx = None
    if ds is not None:
        validate(ds)
        X, Y = pairs_from(ds)
        if X.shape[1] != net.n_in or Y.shape[1] != n:
            raise ShapeError(f"the dataset has {Y.shape[1]} states and {X.shape[1] - Y.shape[1]}"
                             f" inputs but the model takes {n} states and {m} inputs")
        check_same_dt(ds, net)
        out["one_step_rmse_data"] = one_step_rmse(net, X, Y)
        training = net.meta.get("training") or {}
        held = [e for e in (training.get("val_experiments") or [])]
        if dataset_kind(ds) == "trajectories" and "experiment" in ds.coords:
            labels = [str(v) for v in ds["experiment"].values]
            held = [e for e in held if e in labels]
            rest = [e for e in labels if e not in held]
            arx = arx_fit(ds.isel(trajectory=[labels.index(e) for e in rest]) if rest else ds)
            if held:
                out["heldout"] = evaluate_experiments(net, ds, steps=steps, experiments=held,
                                                      return_trajectories=return_trajectories)
                out["heldout_arx"] = evaluate_experiments(arx, ds, steps=steps,
                                                          experiments=held)
        else:
            arx = arx_fit(ds)
    system = _model_system(net)
    if system is not None and net.meta.get("dt") and (net.meta.get("domain") or {}).get("lo"):
        from dynid.simulate import one_step_pairs

        dom, box = net.meta["domain"], net.meta.get("input_box") or {}
        test = one_step_pairs(system, int(n_test), float(net.meta["dt"]),
                              method=str(net.meta.get("map", "flow")), lo=dom["lo"],
                              hi=dom["hi"], u_lo=box.get("lo"), u_hi=box.get("hi"),
                              seed=int(seed) + 1)
        Xt = np.hstack([test["x"].values, test["u"].values])
        out["one_step_rmse_test"] = one_step_rmse(net, Xt, test["x_next"].values)
        fresh = _fresh_experiments(net, system, ds, int(n_experiments), int(steps), int(seed))
        out["fresh"] = evaluate_experiments(net, fresh, steps=steps,
                                            return_trajectories=return_trajectories)
        if arx is not None:
            out["fresh_arx"] = evaluate_experiments(arx, fresh, steps=steps)
    out["one_step_rmse"] = (out["one_step_rmse_test"] if out["one_step_rmse_test"] is not None
                            else out["one_step_rmse_data"])
    return out


__all__ = ["free_run", "evaluate_experiments", "arx_fit", "compare_figure", "evaluate_plant"]
