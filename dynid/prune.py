"""Pruning of ReLUNets: magnitude (global or per layer), structured (whole units), fine-tuning
with fixed masks, and a sparsity report.

Pruning keeps the network's shape (pruned weights are zeros, pruned units have zero incoming
row, zero bias and zero outgoing column) so the unit-by-unit correspondence with the original
stays visible, which :func:`dynid.certify.equivalence.equivalence` uses to couple the two
copies. Call :meth:`ReLUNet.simplify` afterwards to drop dead units for a smaller MIP.

Example
-------
>>> import numpy as np
>>> from dynid.relunet import ReLUNet
>>> rng = np.random.default_rng(0)
>>> net = ReLUNet([rng.normal(size=(8, 2)), rng.normal(size=(2, 8))], [np.zeros(8), np.zeros(2)])
>>> small = prune(net, 0.5)
>>> round(sparsity_report(small)[-1]["sparsity"], 2)     # the "total" row
0.5
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from dynid.errors import ConfigError, DataValidationError, ShapeError
from dynid.relunet import ReLUNet


def _check_sparsity(sparsity: float) -> float:
    s = float(sparsity)
    if not 0.0 <= s < 1.0:
        raise ConfigError(f"sparsity {sparsity!r} must lie in [0, 1) (0.5 prunes half)")
    return s


def _n_smallest_mask(values: np.ndarray, n_prune: int) -> np.ndarray:
    """Boolean keep-mask that removes the ``n_prune`` smallest entries of ``values``
    (ties broken by position, so exactly ``n_prune`` are removed)."""
    keep = np.ones(values.size, bool)
    if n_prune > 0:
        order = np.argsort(values.reshape(-1), kind="stable")
        keep[order[:n_prune]] = False
    return keep.reshape(values.shape)


def magnitude_prune(net: ReLUNet, sparsity: float, *, per_layer: bool = False) -> ReLUNet:
    """Unstructured magnitude pruning: zero the smallest-|w| fraction ``sparsity`` of weights.

    Parameters
    ----------
    net : the network (weights of every layer are candidates; biases are kept).
    sparsity : fraction of the nonzero weights to zero, in [0, 1).
    per_layer : False (default) ranks all weights together (global pruning); True prunes the
        same fraction in every layer.

    Example
    -------
    >>> import numpy as np
    >>> net = ReLUNet([np.array([[1.0, -0.1], [0.2, 3.0]])], [np.zeros(2)], [np.zeros(2, bool)])
    >>> (magnitude_prune(net, 0.5).weights[0] != 0).tolist()
    [[True, False], [False, True]]
    """
    s = _check_sparsity(sparsity)
    ws = [np.array(w) for w in net.weights]
    # rank the nonzero weights only: structural zeros (e.g. the block structure of a residual
    # net's skip units) are not "weights" and must not count towards the sparsity
    if per_layer:
        keeps = [_n_smallest_mask(np.where(w != 0, np.abs(w), -1.0),
                                  (w == 0).sum() + int(round(s * (w != 0).sum()))) for w in ws]
    else:
        flat = np.concatenate([np.where(w != 0, np.abs(w), -1.0).reshape(-1) for w in ws])
        n_nz = int((flat >= 0).sum())
        keep = _n_smallest_mask(flat, int((flat < 0).sum()) + int(round(s * n_nz)))
        keeps, start = [], 0
        for w in ws:
            keeps.append(keep[start:start + w.size].reshape(w.shape))
            start += w.size
    ws = [w * k for w, k in zip(ws, keeps)]
    return ReLUNet(ws, net.biases, net.relu, net.meta)


def unit_scores(net: ReLUNet) -> list[np.ndarray]:
    """Importance of every hidden unit: ||incoming row, bias||_2 * ||outgoing column||_2.

    Returns one array per hidden layer (layers 0..L-2); identity units get +inf (they carry
    skip connections and are never pruned).
    """
    scores = []
    for i in range(net.n_layers - 1):
        w_in = np.hstack([net.weights[i], net.biases[i][:, None]])
        w_out = net.weights[i + 1]
        sc = np.linalg.norm(w_in, axis=1) * np.linalg.norm(w_out, axis=0)
        scores.append(np.where(net.relu[i], sc, np.inf))
    return scores


def structured_prune(net: ReLUNet, sparsity: float, *, per_layer: bool = False) -> ReLUNet:
    """Structured pruning: remove the fraction ``sparsity`` of hidden ReLU units with the
    smallest ``||w_in|| * ||w_out||`` (see :func:`unit_scores`).

    A removed unit gets zero incoming row, zero bias and zero outgoing column, so its
    contribution vanishes and :meth:`ReLUNet.simplify` drops it. Identity units and output
    units are kept.

    Example
    -------
    >>> import numpy as np
    >>> net = ReLUNet([np.array([[1.0], [0.01], [2.0]]), np.ones((1, 3))],
    ...               [np.zeros(3), np.zeros(1)])
    >>> structured_prune(net, 1 / 3).simplify().widths
    [1, 2, 1]
    """
    s = _check_sparsity(sparsity)
    scores = unit_scores(net)
    if not scores:
        return net
    if per_layer:
        keeps = []
        for sc, m in zip(scores, net.relu[:-1]):
            k = np.ones(sc.size, bool)
            k[m] = _n_smallest_mask(sc[m], int(round(s * m.sum())))
            keeps.append(k)
    else:
        flat = np.concatenate(scores)
        n_relu = int(sum(m.sum() for m in net.relu[:-1]))
        keep = _n_smallest_mask(flat, int(round(s * n_relu)))
        keeps, start = [], 0
        for sc in scores:
            keeps.append(keep[start:start + sc.size])
            start += sc.size
    ws = [np.array(w) for w in net.weights]
    bs = [np.array(b) for b in net.biases]
    for i, k in enumerate(keeps):
        ws[i][~k] = 0.0
        bs[i][~k] = 0.0
        ws[i + 1][:, ~k] = 0.0
    return ReLUNet(ws, bs, net.relu, net.meta)


def weight_masks(net: ReLUNet) -> list[np.ndarray]:
    """Boolean masks of the nonzero weights (the entries fine-tuning may change)."""
    return [np.asarray(w) != 0.0 for w in net.weights]


def _dead_units(net: ReLUNet) -> list[np.ndarray]:
    """Per layer: units whose value cannot reach the output (ReLU units with a zero incoming
    row and bias <= 0, or hidden units with a zero outgoing column). Output units are alive."""
    dead = []
    for i in range(net.n_layers):
        w, b, m = net.weights[i], net.biases[i], net.relu[i]
        off = m & (np.abs(w).max(axis=1) == 0.0) & (b <= 0.0)
        if i < net.n_layers - 1:
            off = off | (np.abs(net.weights[i + 1]).max(axis=0) == 0.0)
        else:
            off = np.zeros_like(off)
        dead.append(off)
    return dead


def sparsity_report(net: ReLUNet) -> list[dict]:
    """Per layer: weights, zeros, sparsity, units and units alive; a final ``"total"`` row.

    Example
    -------
    >>> import numpy as np
    >>> net = ReLUNet([np.array([[1.0, 0.0]]), np.array([[2.0]])], [np.zeros(1), np.zeros(1)])
    >>> sparsity_report(net)[0]["zeros"]
    1
    """
    rows = []
    dead = _dead_units(net)
    for i, (w, m) in enumerate(zip(net.weights, net.relu)):
        zeros = int((w == 0.0).sum())
        rows.append({"layer": i, "shape": list(w.shape), "weights": int(w.size), "zeros": zeros,
                     "sparsity": zeros / w.size, "units": int(w.shape[0]),
                     "relu_units": int(m.sum()), "units_alive": int((~dead[i]).sum())})
    total_w = sum(r["weights"] for r in rows)
    total_z = sum(r["zeros"] for r in rows)
    rows.append({"layer": "total", "shape": None, "weights": total_w, "zeros": total_z,
                 "sparsity": total_z / total_w, "units": sum(r["units"] for r in rows),
                 "relu_units": sum(r["relu_units"] for r in rows),
                 "units_alive": sum(r["units_alive"] for r in rows)})
    return rows


def _pairs(data) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y) from an (X, Y) tuple, an xarray Dataset or a dataset file path."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (np.asarray(a, dtype=np.float64) for a in data)
    else:
        from dynid import datasets  # written by the foundation issue

        if not hasattr(data, "data_vars"):
            data = datasets.load_dataset(data)
        x, y = datasets.pairs_from(data)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise DataValidationError(f"fine-tuning data needs X (n, d) and Y (n, m) with the same "
                                  f"n > 0, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise DataValidationError("fine-tuning data contains NaN or inf: clean the dataset")
    return x, y


def finetune(net: ReLUNet, data, *, epochs: int = 20, lr: float = 1e-3, batch_size: int = 256,
             seed: int = 0, log: Callable[[str], None] | None = None) -> ReLUNet:
    """A few epochs of Adam on the one-step loss with the zero pattern of ``net`` fixed.

    The loss is the mean squared error of F(X) against Y, each output scaled by its standard
    deviation. Zero weights stay exactly zero (their gradients are masked, and the weights are
    re-masked after every step); biases of units removed by structured pruning stay zero.
    Ctrl-C stops early and returns the network as trained so far.

    Parameters
    ----------
    net : pruned network (shape and masks as returned by :func:`prune`).
    data : (X, Y) arrays, an xarray pairs/trajectories dataset, or a dataset file path.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> net = ReLUNet([rng.normal(size=(8, 2)), rng.normal(size=(2, 8))],
    ...               [np.zeros(8), np.zeros(2)])
    >>> X = rng.normal(size=(64, 2)); Y = X * 0.9
    >>> tuned = finetune(prune(net, 0.5), (X, Y), epochs=2)
    >>> bool(np.all((tuned.weights[0] == 0) >= (prune(net, 0.5).weights[0] == 0)))
    True
    """
    import torch

    x, y = _pairs(data)
    if x.shape[1] != net.n_in or y.shape[1] != net.n_out:
        raise ShapeError(f"fine-tuning data is {x.shape[1]} -> {y.shape[1]} but the network "
                         f"maps {net.n_in} -> {net.n_out}")
    gen = torch.Generator().manual_seed(int(seed))
    mod = net.to_torch(dtype=torch.float64)
    wmasks = [torch.as_tensor(m) for m in weight_masks(net)]
    dead = _dead_units(net)
    bmasks = [torch.as_tensor(~d) for d in dead]
    xt = torch.as_tensor(x)
    yt = torch.as_tensor(y)
    scale = yt.std(dim=0).clamp_min(1e-8)
    opt = torch.optim.Adam(mod.parameters(), lr=lr)
    n = xt.shape[0]

    def remask():
        with torch.no_grad():
            for lin, wm, bm in zip(mod.linears, wmasks, bmasks):
                lin.weight.mul_(wm)
                lin.bias.mul_(bm)

    interrupted = False
    try:
        for epoch in range(int(epochs)):
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = perm[start:start + batch_size]
                opt.zero_grad()
                loss = (((mod(xt[idx]) - yt[idx]) / scale) ** 2).mean()
                loss.backward()
                for lin, wm, bm in zip(mod.linears, wmasks, bmasks):
                    lin.weight.grad.mul_(wm)
                    lin.bias.grad.mul_(bm)
                opt.step()
                remask()
                total += float(loss.detach()) * idx.numel()
            if log:
                log(f"fine-tune epoch {epoch + 1}/{epochs}: loss {total / n:.4g}")
    except KeyboardInterrupt:
        interrupted = True
        if log:
            log("fine-tuning interrupted: keeping the weights trained so far")
    remask()
    out = ReLUNet.from_torch(mod, meta=net.meta)
    # exact zeros of the input net stay exact zeros (torch -> numpy keeps them; enforce anyway)
    ws = [w * m for w, m in zip(out.weights, weight_masks(net))]
    bs = [np.where(d, b0, b) for b, b0, d in zip(out.biases, net.biases, dead)]
    meta = dict(net.meta)
    if interrupted:
        meta["finetune_interrupted"] = True
    return ReLUNet(ws, bs, net.relu, meta)


def prune(net: ReLUNet, sparsity: float, *, structured: bool = False, per_layer: bool = False,
          finetune_data=None, epochs: int = 20, lr: float = 1e-3, seed: int = 0,
          log: Callable[[str], None] | None = None) -> ReLUNet:
    """Prune ``net`` and optionally fine-tune it; the result keeps the shape of ``net`` and has
    metadata ``"pruned"`` (method, sparsity, report, one-step losses when fine-tuned).

    Parameters
    ----------
    sparsity : fraction of weights (unstructured) or of hidden ReLU units (structured).
    structured : prune whole units (see :func:`structured_prune`).
    per_layer : the same fraction in every layer instead of one global ranking.
    finetune_data : (X, Y), a dataset or a dataset path; None skips fine-tuning.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> net = ReLUNet([rng.normal(size=(8, 2)), rng.normal(size=(2, 8))],
    ...               [np.zeros(8), np.zeros(2)])
    >>> prune(net, 0.25, structured=True).meta["pruned"]["method"]
    'structured'
    """
    t0 = time.perf_counter()
    if structured:
        out = structured_prune(net, sparsity, per_layer=per_layer)
    else:
        out = magnitude_prune(net, sparsity, per_layer=per_layer)
    info = {"method": "structured" if structured else "magnitude",
            "scope": "per_layer" if per_layer else "global", "sparsity": float(sparsity),
            "finetuned": finetune_data is not None}
    if finetune_data is not None:
        x, y = _pairs(finetune_data)
        info["loss_before_finetune"] = one_step_loss(out, x, y)
        out = finetune(out, (x, y), epochs=epochs, lr=lr, seed=seed, log=log)
        info["loss_after_finetune"] = one_step_loss(out, x, y)
        info.update(epochs=int(epochs), lr=float(lr), seed=int(seed))
    info["report"] = sparsity_report(out)
    info["seconds"] = time.perf_counter() - t0
    meta = {k: v for k, v in net.meta.items() if k != "pruned"}
    meta["pruned"] = info
    return ReLUNet(out.weights, out.biases, out.relu, meta)


def one_step_loss(net: ReLUNet, x, y) -> float:
    """Root-mean-square one-step error ``sqrt(mean((F(x) - y)^2))`` over all outputs."""
    return float(np.sqrt(np.mean((net.forward(np.asarray(x)) - np.asarray(y)) ** 2)))


__all__ = ["prune", "magnitude_prune", "structured_prune", "finetune", "sparsity_report",
           "unit_scores", "weight_masks", "one_step_loss"]
