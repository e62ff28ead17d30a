"""Training of ReLU surrogates on one-step pairs or trajectories (autonomous maps, or plants
``x_{k+1} = F(x_k, u_k)`` trained under the recorded inputs).

:func:`train` fits a :class:`~dynid.models.MLPSurrogate` or
:class:`~dynid.models.ResidualSurrogate` with Adam on minibatches, a one-step loss (on the
normalised target) plus an optional K-step rollout loss when the data are trajectories,
validation-based early stopping, a learning-rate schedule, a ``target_rmse`` stop and a
wall-clock limit. It returns the exported :class:`~dynid.relunet.ReLUNet` (the map in physical
units, float64) and a summary dict, which is also stored in the network's metadata together
with the system, dt, state names, domain, architecture and normalisation; a plant's model also
records ``input_names`` and ``input_box`` (the ``domain`` stays the state box).

Ctrl-C stops training cleanly: the best model so far is returned (and written to
``checkpoint`` when given), with ``summary["interrupted"] = True``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dynid.errors import ConfigError, DataValidationError, ShapeError
from dynid.models import ARCHITECTURES, make_surrogate
from dynid.relunet import ReLUNet

SCHEDULES = ("cosine", "plateau", "none")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ---------------------------------------------------------------------- data plumbing


def _dataset_arrays(ds) -> dict:
    """Pairs (X = [x, u], Y), trajectories (or None) and provenance from a dataset or an
    (X, Y) tuple."""
    if isinstance(ds, (tuple, list)):
        if len(ds) != 2:
            raise ShapeError("pass a dataset or a pair (X, Y) of arrays")
        X = np.asarray(ds[0], dtype=np.float64)
        Y = np.asarray(ds[1], dtype=np.float64)
        if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0] or X.shape[1] < Y.shape[1]:
            raise ShapeError(f"X and Y must have shapes (n_samples, n_state [+ n_input]) and "
                             f"(n_samples, n_state), got {X.shape} and {Y.shape}")
        if not (np.isfinite(X).all() and np.isfinite(Y).all()):
            raise DataValidationError("training pairs contain NaN or inf: clean the data")
        return {"X": X, "Y": Y, "traj": None, "utraj": None, "length": None,
                "experiments": None, "attrs": {}, "state_names": None,
                "input_names": [f"u{j + 1}" for j in range(X.shape[1] - Y.shape[1])]}
    from dynid import datasets

    datasets.validate(ds)
    X, Y = datasets.pairs_from(ds)
    traj = utraj = length = experiments = None
    if datasets.dataset_kind(ds) == "trajectories":
        t = datasets.trajectory_arrays(ds)
        traj, utraj, length, experiments = t["x"], t["u"], t["length"], t["experiment"]
    names = None
    if "state" in ds.coords:
        names = [str(s) for s in ds.coords["state"].values]
    return {"X": X, "Y": Y, "traj": traj, "utraj": utraj, "length": length,
            "experiments": experiments, "attrs": dict(ds.attrs), "state_names": names,
            "input_names": datasets.input_names(ds)}


def _provenance(data: dict) -> dict:
    """Model-file metadata taken from the dataset attributes (whatever is present)."""
    a = data["attrs"]
    n = data["Y"].shape[1]
    meta: dict = {}
    if "system" in a:
        meta["system"] = str(a["system"])
    if "params" in a:
        p = a["params"]
        try:
            meta["params"] = json.loads(p) if isinstance(p, str) else dict(p)
        except (ValueError, TypeError):
            meta["params"] = str(p)
    if "dt" in a:
        meta["dt"] = float(a["dt"])
    if "map" in a:
        meta["map"] = str(a["map"])
    if data["state_names"] is not None:
        meta["state_names"] = data["state_names"]
    if "domain_lo" in a and "domain_hi" in a:
        lo = np.asarray(a["domain_lo"], dtype=np.float64).reshape(-1)
        hi = np.asarray(a["domain_hi"], dtype=np.float64).reshape(-1)
    else:  # no recorded sampling box: the data's bounding box is the training domain
        lo, hi = data["X"][:, :n].min(axis=0), data["X"][:, :n].max(axis=0)
    meta["domain"] = {"lo": lo.tolist(), "hi": hi.tolist()}
    if data["X"].shape[1] > n:   # a plant with inputs: X = [x, u]
        meta["input_names"] = list(data["input_names"])
        if "input_lo" in a and "input_hi" in a:
            ulo = np.asarray(a["input_lo"], dtype=np.float64).reshape(-1)
            uhi = np.asarray(a["input_hi"], dtype=np.float64).reshape(-1)
        else:
            ulo, uhi = data["X"][:, n:].min(axis=0), data["X"][:, n:].max(axis=0)
        meta["input_box"] = {"lo": ulo.tolist(), "hi": uhi.tolist()}
        for key in ("state_units", "input_units", "source"):
            if key in a:
                meta[key] = json.loads(a[key]) if key.endswith("units") else str(a[key])
    else:
        meta["input_names"] = []
    return meta


def _split(n: int, val_fraction: float, rng: np.random.Generator):
    idx = rng.permutation(n)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0:
        n_val = min(max(n_val, 1), n - 1)
    return idx[n_val:], idx[:n_val]


def _windows(traj: np.ndarray, k: int, length=None, utraj=None):
    """All length-(k+1) windows inside the trajectories (n_traj, T, n), each within its
    trajectory's ``length``: states (n_windows, k+1, n) and, for a plant, the inputs that drive
    them (n_windows, k, m) (else None)."""
    n_traj, t_len, n = traj.shape
    length = np.full(n_traj, t_len) if length is None else np.asarray(length)
    if length.max() < k + 1:
        raise ConfigError(f"rollout_steps={k} needs trajectories with at least {k + 1} time "
                          f"points, these have {int(length.max())}")
    xs, us = [], []
    for i in range(n_traj):
        for s0 in range(int(length[i]) - k):
            xs.append(traj[i, s0:s0 + k + 1])
            if utraj is not None:
                us.append(utraj[i, s0:s0 + k])
    return np.stack(xs), (np.stack(us) if utraj is not None else None)


def _pair_index(length: np.ndarray, trajectories: np.ndarray) -> np.ndarray:
    """Indices (into pairs_from's trajectory-major order) of the pairs of some trajectories."""
    offsets = np.concatenate([[0], np.cumsum(length - 1)])
    return np.concatenate([np.arange(offsets[t], offsets[t + 1]) for t in trajectories])


# ---------------------------------------------------------------------- training


def train(ds, arch: str = "residual", hidden=(32, 32), *, epochs: int = 600,
          batch_size: int = 128, lr: float = 5e-3, schedule: str = "cosine",
          weight_decay: float = 0.0, val_fraction: float = 0.2, patience: int | None = None,
          target_rmse: float | None = None, max_seconds: float | None = None,
          rollout_steps: int = 0, rollout_weight: float = 1.0, h: float | None = None,
          seed: int = 0, dtype: str = "float32", device: str = "cpu",
          progress: bool = True, log: Callable[[str], None] | None = None,
          checkpoint=None, arch_options: dict | None = None) -> tuple[ReLUNet, dict]:
    """Fit a ReLU surrogate x_next = F(x) and export it as a ReLUNet in physical units.

    Parameters
    ----------
    ds : xarray.Dataset of kind "pairs" or "trajectories" (see :mod:`dynid.simulate`; with an
        input variable ``u`` the surrogate is a plant ``F(x, u)`` on ``[x; u]``), or a tuple
        ``(X, Y)`` of arrays of shape (n_samples, n_state [+ n_input]) and (n_samples,
        n_state).
    arch : 'residual' (x + h N(x), the default), 'mlp' (x -> x_next) or 'cpl' (a stack of
        convex potential blocks, invertible by construction, autonomous maps only:
        :mod:`dynid.cpl`).
    hidden : hidden layer widths of N (for 'cpl': the hidden width of each block).
    epochs : maximum number of passes over the training pairs.
    batch_size, lr, weight_decay : Adam settings.
    schedule : 'cosine' (anneal lr from ``lr`` to ``lr / 1000`` along a half cosine of the
        progress, the larger of epochs done / ``epochs`` and seconds spent / ``max_seconds``,
        so a time budget still ends with a small learning rate), 'plateau' (halve lr when the
        validation RMSE stalls for 20 epochs) or 'none'.
    val_fraction : share of the data held out for validation (whole trajectories, i.e. whole
        experiments, when the data are trajectories; their labels are in
        ``summary["val_experiments"]``). Validation RMSE is the one-step RMSE in physical units.
    patience : stop when the validation RMSE has not improved for this many epochs
        (None = never stop early for that reason).
    target_rmse : stop as soon as the validation one-step RMSE is at or below this value.
    max_seconds : wall-clock limit of the training loop.
    rollout_steps : K > 0 adds a K-step free-run loss on windows of the trajectories
        (needs trajectory data; a plant is driven by the recorded inputs of the window);
        ``rollout_weight`` scales it.
    h : step of the residual form (default: the dataset's dt, else 1).
    seed : seeds the initialisation, the split and the minibatch order.
    dtype : 'float32' (fast, default) or 'float64' training precision; the export is float64.
    device : torch device, e.g. 'cpu' or 'cuda'.
    progress : show a tqdm progress bar over epochs.
    log : callable receiving one-line progress messages (every ~10 % of epochs and at the end).
    checkpoint : path; on Ctrl-C the best model so far is saved there before returning.
    arch_options : options of the 'cpl' kind: ``c`` (per block, default 0.9), ``gain``
        ("none" | "scalar" | "matrix" | an n x n matrix), ``power_iterations``.

    Returns
    -------
    (net, summary) : the ReLUNet (metadata: system, params, dt, map, state_names, domain,
        architecture, normalisation, training=summary) and the summary dict with keys
        ``epochs``, ``best_epoch``, ``best_val_rmse``, ``best_val_loss``, ``one_step_rmse``
        (validation, physical units), ``train_rmse``, ``seconds``, ``seconds_to_target``,
        ``stopped`` (why), ``interrupted``, the settings used and ``history`` (the
        validation RMSE curve, at most 100 points).

    Example
    -------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).uniform(-1, 1, size=(400, 2))
    >>> Y = X + 0.1 * np.stack([X[:, 1], -X[:, 0]], axis=1)
    >>> net, s = train((X, Y), hidden=(16,), epochs=30, progress=False, h=0.1)
    >>> s["one_step_rmse"] < 0.05
    True
    """
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}: use one of {', '.join(ARCHITECTURES)}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {schedule!r}: use one of {', '.join(SCHEDULES)}")
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}: use float32 or float64")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if int(epochs) < 1 or int(batch_size) < 1 or not float(lr) > 0:
        raise ConfigError("epochs and batch_size must be >= 1 and lr > 0")
    tdt = DTYPES[dtype]
    data = _dataset_arrays(ds)
    meta = _provenance(data)
    X, Y = data["X"], data["Y"]
    if h is None:
        h = float(meta.get("dt", 1.0))
    rng = np.random.default_rng(seed)

    # split: whole trajectories (experiments) when there are several, else single pairs
    traj, utraj, length = data["traj"], data["utraj"], data["length"]
    win_tr = uwin_tr = None
    val_experiments = None
    if traj is not None and traj.shape[0] >= 2 and val_fraction > 0:
        tr_t, va_t = _split(traj.shape[0], val_fraction, rng)
        tr_t, va_t = np.sort(tr_t), np.sort(va_t)
        tr, va = _pair_index(length, tr_t), _pair_index(length, va_t)
        val_experiments = [data["experiments"][i] for i in va_t]
        if rollout_steps > 0:
            win_tr, uwin_tr = _windows(traj[tr_t], int(rollout_steps), length[tr_t],
                                       None if utraj is None else utraj[tr_t])
    else:
        tr, va = _split(X.shape[0], val_fraction, rng)
        if rollout_steps > 0:
            if traj is None:
                raise ConfigError("rollout_steps > 0 needs trajectory data: simulate with "
                                  "trajectories (dynid simulate --trajectories N --steps T, "
                                  "or --experiments N for a plant with inputs)")
            win_tr, uwin_tr = _windows(traj, int(rollout_steps), length, utraj)
    if len(va) == 0:
        va = tr  # no validation split requested: monitor the training fit

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_surrogate(arch, X[tr], Y[tr], hidden, h=h, dtype=tdt, device=device,
                               options=arch_options)
    as_t = lambda a: torch.as_tensor(a, dtype=tdt, device=device)  # noqa: E731
    xt, yt = as_t(X[tr]), as_t(Y[tr])
    target = model.target(xt, yt).detach()
    xv, yv = as_t(X[va]), as_t(Y[va])
    wins = as_t(win_tr) if win_tr is not None else None
    uwins = as_t(uwin_tr) if uwin_tr is not None else None
    x_scale = model.x_std[:Y.shape[1]]

    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if schedule == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=20)
    else:
        sched = None  # cosine is set by hand per step (it follows time as well as epochs)
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def val_rmse() -> float:
        with torch.no_grad():
            return float(((model(xv) - yv) ** 2).mean().sqrt())

    settings = {"arch": arch, "hidden": list(model.hidden), "epochs_max": int(epochs),
                "batch_size": int(batch_size), "lr": float(lr), "schedule": schedule,
                "weight_decay": float(weight_decay), "val_fraction": float(val_fraction),
                "patience": patience, "target_rmse": target_rmse, "max_seconds": max_seconds,
                "rollout_steps": int(rollout_steps), "rollout_weight": float(rollout_weight),
                "seed": int(seed), "dtype": dtype, "device": str(device),
                "arch_options": dict(arch_options or {}),
                "n_train": int(len(tr)), "n_val": int(len(va)),
                "val_experiments": val_experiments}
    best = {"rmse": math.inf, "epoch": -1, "state": copy.deepcopy(model.state_dict())}
    stopped, interrupted, seconds_to_target = "epochs", False, None
    n_tr = xt.shape[0]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(epochs), desc=f"train {arch}", unit="epoch", leave=False)
    history: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    epoch = 0
    try:
        for epoch in range(1, int(epochs) + 1):
            model.train()
            perm = torch.randperm(n_tr, generator=gen).to(device)
            for i in range(0, n_tr, int(batch_size)):
                idx = perm[i:i + int(batch_size)]
                if schedule == "cosine":
                    _set_cosine_lr(opt, lr, _progress(epoch - 1 + i / n_tr, int(epochs),
                                                      time.perf_counter() - t0, max_seconds))
                loss = ((model.normalised_output(xt[idx]) - target[idx]) ** 2).mean()
                if wins is not None:
                    loss = loss + rollout_weight * _rollout_loss(model, wins, uwins,
                                                                 idx.numel(), gen, x_scale)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            r = val_rmse()
            history.append((epoch, r))
            if not math.isfinite(r):
                stopped = "diverged"
                break
            if r < best["rmse"]:
                best = {"rmse": r, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
            if sched is not None:
                sched.step(r)
            elapsed = time.perf_counter() - t0
            if bar is not None:
                bar.update(1)
                bar.set_postfix(val_rmse=f"{r:.3g}", best=f"{best['rmse']:.3g}")
            if log and (epoch % max(1, int(epochs) // 10) == 0):
                log(f"epoch {epoch}/{epochs}: val rmse {r:.3g} (best {best['rmse']:.3g}), "
                    f"{elapsed:.1f} s")
            if target_rmse is not None and r <= target_rmse:
                stopped, seconds_to_target = "target_rmse", elapsed
                break
            if max_seconds is not None and elapsed >= max_seconds:
                stopped = "max_seconds"
                break
            if patience is not None and epoch - best["epoch"] >= int(patience):
                stopped = "early_stopping"
                break
    except KeyboardInterrupt:
        stopped, interrupted = "interrupted", True
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    model.load_state_dict(best["state"])
    with torch.no_grad():
        train_rmse = float(((model(xt) - yt) ** 2).mean().sqrt())
    summary = {"epochs": int(epoch), "best_epoch": int(best["epoch"]),
               "best_val_rmse": best["rmse"], "best_val_loss": best["rmse"] ** 2,
               "one_step_rmse": best["rmse"], "train_rmse": train_rmse,
               "seconds": seconds, "seconds_to_target": seconds_to_target, "stopped": stopped,
               "interrupted": interrupted, **settings,
               "history": _thin(history, 100)}
    net = model.to_relunet({**meta, "training": summary})
    if log:
        why = {"epochs": "all epochs run", "max_seconds": "time limit",
               "early_stopping": "early stopping", "target_rmse": "target reached"}.get(stopped,
                                                                                    stopped)
        log(f"trained {arch} {net.widths} in {seconds:.1f} s ({epoch} epochs, {why}): "
            f"val one-step rmse {best['rmse']:.3g}")
    if interrupted and checkpoint is not None:
        from dynid.modelfile import save_model

        save_model(checkpoint, net)
        if log:
            log(f"interrupted: best model so far saved to {Path(checkpoint)}")
    return net, summary


def _progress(epochs_done: float, epochs: int, elapsed: float, max_seconds) -> float:
    """Fraction of the training budget used: epochs or wall-clock, whichever is further."""
    frac = epochs_done / epochs
    if max_seconds:
        frac = max(frac, elapsed / float(max_seconds))
    return min(max(frac, 0.0), 1.0)


def _set_cosine_lr(opt, lr: float, frac: float, floor: float = 1e-3) -> None:
    value = lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac)))
    for group in opt.param_groups:
        group["lr"] = value


def _thin(history: list, n: int) -> dict:
    """At most ``n`` (epoch, val_rmse) points of the validation curve, ends kept."""
    if len(history) > n:
        keep = np.unique(np.linspace(0, len(history) - 1, n).round().astype(int))
        history = [history[i] for i in keep]
    return {"epoch": [int(e) for e, _ in history], "val_rmse": [float(r) for _, r in history]}


def _rollout_loss(model, wins: torch.Tensor, uwins: torch.Tensor | None, n: int,
                  gen: torch.Generator, x_scale: torch.Tensor) -> torch.Tensor:
    """Mean squared K-step free-run error on a random batch of windows, in normalised units;
    a plant is driven by the recorded inputs of each window."""
    pick = torch.randint(0, wins.shape[0], (n,), generator=gen).to(wins.device)
    w = wins[pick]
    u = uwins[pick] if uwins is not None else None
    x = w[:, 0]
    err = 0.0
    k = w.shape[1] - 1
    for j in range(1, k + 1):
        x = model(x if u is None else torch.cat([x, u[:, j - 1]], dim=1))
        err = err + (((x - w[:, j]) / x_scale) ** 2).mean()
    return err / k


__all__ = ["train", "SCHEDULES", "DTYPES"]
