"""Controllers for identified plants: LQR on the surrogate's linearisation, distilled into a
ReLU network, and the pipeline stage ``controller``.

- :func:`linearise`: ``A = dF/dx``, ``B = dF/du`` of a plant surrogate ``F([x; u])`` at an
  operating point (the exact Jacobian of the ReLU network's linear piece there);
- :func:`dlqr`: the discrete-time LQR gain ``K`` (``u = u_eq - K (x - x_eq)``) from the Riccati
  equation;
- :func:`fit_relu_controller`: a small ReLU MLP fitted (full-batch Adam, seeded, float64) to
  the saturated law ``clip(u_eq - K (x - x_eq), u_lo, u_hi)`` on a box: saturation is piecewise
  linear, so a ReLU network can represent it, and the result is a genuine nonlinear ReLU
  controller that every reach engine handles;
- :func:`closed_loop_check`: free runs of the closed loop (surrogate, and the true ODE with
  zero-order hold when the system is known) from a box, with the distance to the equilibrium.

Stage ``[controller]`` keys (defaults): model (the run's), file (load this controller instead
of designing one), equilibrium (required unless file), u_eq (zeros), q (ones, diagonal state
weights), r (ones), u_lo / u_hi (the plant's input box), hidden = [16, 16] (``[]``: the linear
gain itself), fit_lo / fit_hi (equilibrium -/+ 1 in every state), samples = 4000, iterations =
2000, seed = 0, check_lo / check_hi (the fit box), check_steps = 100, out = "controller.h5".

Example
-------
>>> import numpy as np
>>> from dynid.relunet import linear
>>> plant = linear([[1.0, 0.1, 0.0], [0.0, 1.0, 0.1]])      # double integrator, dt = 0.1
>>> A, B = linearise(plant, [0.0, 0.0], [0.0])
>>> K = dlqr(A, B, np.eye(2), np.eye(1))
>>> bool(np.all(np.abs(np.linalg.eigvals(A - B @ K)) < 1))  # the loop is stable
True
"""

from __future__ import annotations

import time

import numpy as np

from dynid.errors import ConfigError, ShapeError
from dynid.relunet import ReLUNet, linear
from dynid.stages import schema as sc

KEYS = {"model", "file", "equilibrium", "u_eq", "q", "r", "u_lo", "u_hi", "hidden", "fit_lo",
        "fit_hi", "samples", "iterations", "seed", "check_lo", "check_hi", "check_steps",
        "out"}


_VEC = sc.any_of(sc.number(), sc.numbers())


def _check_boxes(section: dict, where: str) -> None:
    for a, b in (("u_lo", "u_hi"), ("fit_lo", "fit_hi"), ("check_lo", "check_hi")):
        if isinstance(section.get(a), list) and isinstance(section.get(b), list):
            sc.same_length(section, where, a, b)


#: up-front checks of the ``[controller]`` table (see :mod:`dynid.stages.schema`)
SCHEMAS = {"controller": sc.Schema({
    "model": sc.existing_file(), "file": sc.existing_file(), "equilibrium": _VEC, "u_eq": _VEC,
    "q": _VEC, "r": _VEC, "u_lo": _VEC, "u_hi": _VEC, "hidden": sc.integers(min=1, min_len=0),
    "fit_lo": _VEC, "fit_hi": _VEC, "samples": sc.integer(min=1),
    "iterations": sc.integer(min=1), "seed": sc.integer(min=0), "check_lo": _VEC,
    "check_hi": _VEC, "check_steps": sc.integer(min=1), "out": sc.file_name()}, _check_boxes)}


def plant_sizes(plant: ReLUNet) -> tuple[int, int]:
    """(n_state, n_input) of a plant surrogate ``[x; u] -> x_next`` (from its metadata)."""
    inputs = plant.meta.get("input_names") or []
    n, m = plant.n_out, plant.n_in - plant.n_out
    if not inputs or m != len(inputs):
        raise ConfigError(f"the model maps R^{plant.n_in} -> R^{plant.n_out} and names inputs "
                          f"{list(inputs)}: a plant surrogate has input_names in its metadata "
                          "and takes [x; u] (train it on data with inputs)")
    return n, m


def linearise(plant: ReLUNet, x_eq, u_eq) -> tuple[np.ndarray, np.ndarray]:
    """``(A, B)`` with ``F([x; u]) ~ F([x_eq; u_eq]) + A (x - x_eq) + B (u - u_eq)``.

    The Jacobian of a ReLU network is that of its linear piece at the point (a point on a
    kink takes one side's piece).
    """
    x_eq = np.asarray(x_eq, dtype=np.float64).reshape(-1)
    u_eq = np.asarray(u_eq, dtype=np.float64).reshape(-1)
    n = x_eq.size
    if plant.n_in != n + u_eq.size or plant.n_out != n:
        raise ShapeError(f"operating point ({n} states, {u_eq.size} inputs) does not fit a "
                         f"plant R^{plant.n_in} -> R^{plant.n_out}")
    J = np.asarray(plant.jacobian(np.concatenate([x_eq, u_eq])), dtype=np.float64)
    J = J.reshape(plant.n_out, plant.n_in)
    return J[:, :n], J[:, n:]


def dlqr(A, B, Q, R) -> np.ndarray:
    """The discrete-time LQR gain ``K = (R + B' P B)^-1 B' P A`` (``u = -K x``), P from the
    discrete algebraic Riccati equation; raises ConfigError when (A, B) is not stabilisable."""
    from scipy.linalg import solve_discrete_are

    A, B = np.atleast_2d(A).astype(float), np.atleast_2d(B).astype(float)
    Q, R = np.atleast_2d(Q).astype(float), np.atleast_2d(R).astype(float)
    try:
        P = solve_discrete_are(A, B, Q, R)
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise ConfigError(f"no LQR gain for this linearisation ({exc}); the surrogate may not be "
                          "stabilisable at the operating point: check the equilibrium") from None
    return np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)


def saturated_law(K, x_eq, u_eq, u_lo, u_hi):
    """``x -> clip(u_eq - K (x - x_eq), u_lo, u_hi)`` on batches (numpy)."""
    K = np.atleast_2d(K)

    def law(x):
        return np.clip(u_eq - (np.asarray(x) - x_eq) @ K.T, u_lo, u_hi)

    return law


def fit_relu_controller(law, lo, hi, n_out: int, hidden=(16, 16), *, samples: int = 4000,
                        iterations: int = 2000, seed: int = 0, lr: float = 1e-2) -> ReLUNet:
    """A ReLU MLP ``R^n -> R^m`` fitted to ``law(x)`` on uniform samples of the box (plus its
    corners), full-batch Adam in float64 with a cosine learning rate, seeded; the input
    scaling is folded into the first layer. Returns the network with ``meta["fit_rmse"]``
    and ``meta["fit_max_error"]`` measured on fresh samples of the box."""
    import torch

    from reach.falsify import corners

    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    rng = np.random.default_rng(seed)
    X = np.vstack([lo + rng.random((int(samples), lo.size)) * (hi - lo), corners(lo, hi)])
    Y = np.asarray(law(X), dtype=np.float64).reshape(X.shape[0], n_out)
    c, s = (lo + hi) / 2, np.maximum((hi - lo) / 2, 1e-12)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sizes = [lo.size, *hidden, n_out]
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(torch.nn.Linear(a, b, dtype=torch.float64))
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        mlp = torch.nn.Sequential(*layers)
    z = torch.tensor((X - c) / s)
    y = torch.tensor(Y)
    opt = torch.optim.Adam(mlp.parameters(), lr=lr)
    for it in range(int(iterations)):
        for g in opt.param_groups:
            g["lr"] = lr * (1e-3 + (1 - 1e-3) * 0.5 * (1 + np.cos(np.pi * it / iterations)))
        loss = ((mlp(z) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net = ReLUNet.from_torch(mlp)
    w0 = net.weights[0] / s[None, :]
    b0 = net.biases[0] - net.weights[0] @ (c / s)
    net = ReLUNet([w0] + list(net.weights[1:]), [b0] + list(net.biases[1:]), net.relu)
    Xt = lo + np.random.default_rng(seed + 1).random((2000, lo.size)) * (hi - lo)
    err = net.forward(Xt) - np.asarray(law(Xt)).reshape(-1, n_out)
    return net.with_meta(fit_rmse=float(np.sqrt(np.mean(err ** 2))),
                         fit_max_error=float(np.abs(err).max()))


def closed_loop_check(step_net: ReLUNet, lo, hi, steps: int, x_eq, *, n: int = 200,
                      seed: int = 0, system=None, controller=None, u_lo=None, u_hi=None,
                      dt=None, method: str = "flow") -> dict:
    """Free runs of the closed loop from ``n`` states of the box: the largest distance (inf
    norm) to ``x_eq`` at the last step, for the surrogate loop ``step_net`` and, when
    ``system`` is given (with the controller, saturation and dt), for the true ODE under
    zero-order hold."""
    from reach.closed_loop import rollout
    from reach.falsify import corners

    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    x0 = np.vstack([lo + np.random.default_rng(seed).random((n, lo.size)) * (hi - lo),
                    corners(lo, hi, 64)])
    traj = rollout(step_net, x0, int(steps))
    dist = np.abs(traj[:, -1] - np.asarray(x_eq)).max(axis=1)
    out = {"runs": int(x0.shape[0]), "steps": int(steps),
           "surrogate_final_distance_max": float(dist.max()),
           "surrogate_final_distance_median": float(np.median(dist))}
    if system is not None and controller is not None and dt is not None:
        x = x0.copy()
        for _ in range(int(steps)):
            u = np.clip(controller.forward(x), u_lo, u_hi)
            x = system.step_map(x, float(dt), method, u=u)
        d = np.abs(x - np.asarray(x_eq)).max(axis=1)
        out.update(true_final_distance_max=float(d.max()),
                   true_final_distance_median=float(np.median(d)))
    return out


def _vector(section, key, n, default=None, where="[controller]"):
    v = section.get(key, default)
    if v is None:
        return None
    try:
        arr = np.broadcast_to(np.asarray(v, dtype=float).reshape(-1), (n,)).copy()
    except (TypeError, ValueError):
        raise ConfigError(f"{where} {key} must be a number or a list of {n} numbers, got "
                          f"{v!r}") from None
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{where} {key} must be finite")
    return arr


def run(section: dict, ctx) -> None:
    """Stage: design (or load) the controller of the run's plant surrogate and save it."""
    from dynid.formats import load_network
    from dynid.modelfile import load_model, save_model
    from dynid.pipeline import check_keys
    from reach.closed_loop import surrogate_loop

    check_keys(section, KEYS, "[controller]")
    model = ctx.resolve(section["model"]) if "model" in section else ctx.artifacts.get("model")
    if model is None:
        raise ConfigError("[controller] needs a plant model: add a [train] stage before it or "
                          "set model = PATH")
    plant = load_model(model)
    n, m = plant_sizes(plant)
    box = plant.meta.get("input_box") or {}
    u_lo = _vector(section, "u_lo", m, box.get("lo"))
    u_hi = _vector(section, "u_hi", m, box.get("hi"))
    if u_lo is None or u_hi is None or np.any(u_lo >= u_hi):
        raise ConfigError("[controller] needs saturation limits u_lo < u_hi (the plant model "
                          "records no input box)")
    t0 = time.perf_counter()
    info: dict = {"saturation": {"lo": u_lo.tolist(), "hi": u_hi.tolist()}}
    if "file" in section:
        ctrl = load_network(ctx.resolve(section["file"]))
        if ctrl.n_in != n or ctrl.n_out != m:
            raise ConfigError(f"[controller] file maps R^{ctrl.n_in} -> R^{ctrl.n_out}; the "
                              f"plant needs a controller R^{n} -> R^{m}")
        x_eq = _vector(section, "equilibrium", n, None)
        info["source"] = str(section["file"])
    else:
        if "equilibrium" not in section:
            raise ConfigError("[controller] needs equilibrium = [...] (the state to stabilise)"
                              " or file = PATH (a controller to load)")
        x_eq = _vector(section, "equilibrium", n)
        u_eq = _vector(section, "u_eq", m, 0.0)
        Q = np.diag(_vector(section, "q", n, 1.0))
        R = np.diag(_vector(section, "r", m, 1.0))
        if np.any(np.diag(Q) < 0) or np.any(np.diag(R) <= 0):
            raise ConfigError("[controller] q must be >= 0 and r > 0")
        A, B = linearise(plant, x_eq, u_eq)
        K = dlqr(A, B, Q, R)
        law = saturated_law(K, x_eq, u_eq, u_lo, u_hi)
        fit_lo = _vector(section, "fit_lo", n, x_eq - 1.0)
        fit_hi = _vector(section, "fit_hi", n, x_eq + 1.0)
        hidden = [int(h) for h in section.get("hidden", [16, 16])]
        if hidden:
            ctrl = fit_relu_controller(law, fit_lo, fit_hi, m, hidden,
                                       samples=int(section.get("samples", 4000)),
                                       iterations=int(section.get("iterations", 2000)),
                                       seed=int(section.get("seed", 0)))
        else:
            ctrl = linear(-K, u_eq + K @ x_eq)
        eig = np.abs(np.linalg.eigvals(A - B @ K))
        info.update(kind="relu-lqr" if hidden else "linear-lqr", equilibrium=x_eq.tolist(),
                    u_eq=u_eq.tolist(), K=K.tolist(), A=A.tolist(), B=B.tolist(),
                    q=np.diag(Q).tolist(), r=np.diag(R).tolist(),
                    spectral_radius=float(eig.max()), hidden=hidden,
                    fit_box={"lo": fit_lo.tolist(), "hi": fit_hi.tolist()},
                    fit_rmse=ctrl.meta.get("fit_rmse"),
                    fit_max_error=ctrl.meta.get("fit_max_error"))
    ctrl = ReLUNet(ctrl.weights, ctrl.biases, ctrl.relu,
                   {"controller": {k: v for k, v in info.items()
                                   if k not in ("A", "B")},
                    "saturation": info["saturation"],
                    "state_names": plant.meta.get("state_names"),
                    "input_names": [], "output_names": plant.meta.get("input_names")})
    out = ctx.run_dir / section.get("out", "controller.h5")
    save_model(out, ctrl)
    ctx.artifacts["controller"] = out
    if x_eq is not None:
        step = surrogate_loop(plant, ctrl, u_lo, u_hi)
        c_lo = _vector(section, "check_lo", n, info.get("fit_box", {}).get("lo", x_eq - 0.1))
        c_hi = _vector(section, "check_hi", n, info.get("fit_box", {}).get("hi", x_eq + 0.1))
        system = _system_of(plant)
        info["check"] = closed_loop_check(
            step, c_lo, c_hi, int(section.get("check_steps", 100)), x_eq, system=system,
            controller=ctrl, u_lo=u_lo, u_hi=u_hi, dt=plant.meta.get("dt"),
            method=plant.meta.get("map", "flow") if plant.meta.get("map") in
            ("flow", "euler", "rk4") else "flow")
    info["seconds"] = time.perf_counter() - t0
    info["path"] = str(out)
    from dynid.results import jsonable

    ctx.summary["controller"] = jsonable(info)
    ctx.report.add_heading("Controller")
    rows = {k: info[k] for k in ("kind", "equilibrium", "K", "spectral_radius", "saturation",
                                 "fit_rmse", "fit_max_error") if k in info}
    if "check" in info:
        rows.update({f"check: {k}": v for k, v in info["check"].items()})
    ctx.report.add_table(jsonable(rows))
    msg = f"controller -> {out}"
    if "spectral_radius" in info:
        msg += f" (LQR on the surrogate's linearisation, spectral radius " \
               f"{info['spectral_radius']:.3f}"
        msg += f", ReLU fit max error {info['fit_max_error']:.2g})" if info.get("hidden") \
            else ")"
    if "check" in info:
        c = info["check"]
        msg += f"; after {c['steps']} steps the surrogate loop is within " \
               f"{c['surrogate_final_distance_max']:.2g} of the equilibrium"
        if "true_final_distance_max" in c:
            msg += f", the true plant within {c['true_final_distance_max']:.2g}"
    ctx.log(msg)


def _system_of(plant: ReLUNet):
    from dynid.metrics import _model_system

    try:
        return _model_system(plant)
    except Exception:  # noqa: BLE001 - a user system not registered here: no truth check
        return None


__all__ = ["linearise", "dlqr", "saturated_law", "fit_relu_controller", "closed_loop_check",
           "plant_sizes", "run"]
