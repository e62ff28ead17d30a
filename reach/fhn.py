"""The FitzHugh–Nagumo surrogate of the DeepSplit reachability study (shared by benchmarks).

Euler map (dt = 0.2): ``x1+ = x1 + 0.2 (x1 - x1^3 / 3 - x2 + 0.875)``,
``x2+ = x2 + 0.2 * 0.08 (x1 + 0.7 - 0.8 x2)``; a 2-w-w-2 ReLU network is fitted by torch on a
50 x 50 grid of [-5, 5]^2 and cached as a dynid model file.

Example
-------
>>> import numpy as np
>>> y = fhn_euler(np.zeros((1, 2)))
>>> [round(float(v), 4) for v in y[0]]
[0.175, 0.0112]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dynid.relunet import ReLUNet

DT = 0.2


def fhn_euler(x: np.ndarray) -> np.ndarray:
    """One forward-Euler step of FitzHugh–Nagumo (batched on the leading dimension)."""
    x = np.asarray(x, dtype=np.float64)
    x1, x2 = x[..., 0], x[..., 1]
    return np.stack([x1 + DT * (x1 - x1 ** 3 / 3 - x2 + 0.875),
                     x2 + DT * 0.08 * (x1 + 0.7 - 0.8 * x2)], axis=-1)


def train_fhn_surrogate(width: int, *, epochs: int = 2000, seed: int = 0,
                        log=None) -> ReLUNet:
    """Fit the 2-w-w-2 surrogate (full-batch Adam, cosine schedule, scaled MSE)."""
    import torch

    g = np.linspace(-5.0, 5.0, 50)
    X = np.array(np.meshgrid(g, g)).reshape(2, -1).T
    Y = fhn_euler(X)
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.ReLU(),
                                torch.nn.Linear(width, width), torch.nn.ReLU(),
                                torch.nn.Linear(width, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) / np.sqrt(p.shape[-1]))
    xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32)
    scale = yt.abs().max(dim=0).values
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for epoch in range(epochs):
        opt.zero_grad()
        loss = (((model(xt) - yt) / scale) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (epoch + 1) % 500 == 0:
            log(f"fhn w={width}: epoch {epoch + 1}/{epochs}, scaled mse {loss.item():.3g}")
    return ReLUNet.from_torch(model).with_meta(
        system="fitzhugh_nagumo", map="euler", dt=DT, state_names=["x1", "x2"],
        domain={"lo": [-5.0, -5.0], "hi": [5.0, 5.0]},
        training={"epochs": epochs, "seed": seed, "final_scaled_mse": float(loss.item())})


def fhn_surrogate(width: int, cache_dir=None, *, epochs: int | None = None, log=None) -> ReLUNet:
    """The cached surrogate ``cache_dir/fhn_w{width}.h5`` (trained and saved when missing).

    ``cache_dir`` defaults to ``benchmarks/results/cache`` of this checkout.
    """
    from dynid.modelfile import load_model, save_model

    cache_dir = Path(cache_dir) if cache_dir is not None else \
        Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cache"
    path = cache_dir / f"fhn_w{int(width)}.h5"
    if path.exists():
        return load_model(path)
    # few epochs for wide nets: the benchmark is about the LPs, not the fit, and the machine
    # is shared (a surrogate error of ~1e-3 on the scaled outputs is enough)
    net = train_fhn_surrogate(int(width), epochs=epochs or (800 if width <= 100 else 400),
                              log=log)
    save_model(path, net)
    return net


__all__ = ["fhn_euler", "train_fhn_surrogate", "fhn_surrogate", "DT"]
