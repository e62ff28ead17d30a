"""Largest certified boxes on the 2-D Voronoi toy: 10 classes on [-1, 1]^2, a small MLP.

The classes are the Voronoi cells of 10 random sites (seed 0); a 2-32-32-10 ReLU classifier
is fitted to 20 000 labelled points. ``examples/voronoi_mlp.h5`` ships the fitted model (the
sites and the seed are in its metadata); ``--train`` refits it (about 20 s on one core; the
result can differ in the last digits between machines, so the shipped file is what tests use).

For a few points, the script finds the largest box with a radius per dimension
(non-uniform) and the largest cube (uniform) on which the classifier keeps its label,
certified by sound CROWN bounds (or the MIP), and draws both over the classifier's label
regions and the true Voronoi cells.

Run:  python examples/voronoi_box.py [--train] [--points 6] [--out runs/voronoi]
CLI:  dynid certify box examples/voronoi_mlp.h5 --at 0.1 0.2 --keep-label --figure box.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

MODEL = HERE / "voronoi_mlp.h5"
N_CLASSES, SEED = 10, 0


def sites(seed: int = SEED, n: int = N_CLASSES) -> np.ndarray:
    """The Voronoi sites (uniform on [-0.9, 0.9]^2)."""
    return np.random.default_rng(seed).uniform(-0.9, 0.9, size=(n, 2))


def true_label(x, s) -> np.ndarray:
    """Index of the nearest site for each row of x."""
    x = np.atleast_2d(x)
    return np.argmin(((x[:, None, :] - s[None]) ** 2).sum(-1), axis=1)


def train_classifier(seed: int = SEED, samples: int = 20000, steps: int = 3000):
    """Fit the 2-32-32-10 MLP (full-batch Adam, cross-entropy) and return it as a ReLUNet."""
    import torch

    from dynid.relunet import ReLUNet

    torch.manual_seed(seed)
    s = sites(seed)
    rng = np.random.default_rng(seed + 1)
    X = rng.uniform(-1, 1, size=(samples, 2))
    y = true_label(X, s)
    model = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32),
                                torch.nn.ReLU(), torch.nn.Linear(32, N_CLASSES)).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(Xt), yt)
        loss.backward()
        opt.step()
        sched.step()
    net = ReLUNet.from_torch(model)
    acc = float(np.mean(np.argmax(net.forward(X), 1) == y))
    return net.with_meta(kind="classifier", task="voronoi toy", sites=s.tolist(), seed=seed,
                         domain={"lo": [-1.0, -1.0], "hi": [1.0, 1.0]},
                         training={"samples": samples, "steps": steps, "accuracy": acc})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", action="store_true", help="refit and overwrite the shipped model")
    p.add_argument("--points", type=int, default=6)
    p.add_argument("--out", default="runs/voronoi")
    args = p.parse_args(argv)

    from dynid.certify import keep_label, max_box
    from dynid.certify.maxbox import box_figure
    from dynid.modelfile import load_model, save_model

    if args.train or not MODEL.exists():
        net = train_classifier()
        save_model(MODEL, net)
        print(f"trained: accuracy {net.meta['training']['accuracy']:.4f}, saved {MODEL}")
    net = load_model(MODEL)
    s = np.asarray(net.meta["sites"])
    dom = (np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
    pts = np.random.default_rng(7).uniform(-0.9, 0.9, size=(args.points, 2))
    certs = []
    print("| point | label | non-uniform half-widths | uniform radius | volume ratio | status |")
    print("|---|---|---|---|---|---|")
    for x in pts:
        c = max_box(net, x, keep_label(), domain=dom)
        certs.append(c)
        hw = (np.array(c.info["hi"]) - np.array(c.info["lo"])) / 2
        print(f"| {np.round(x, 3).tolist()} | {c.info['spec']['label']} | "
              f"{np.round(hw, 4).tolist()} | {c.info['uniform']['eps'][0]:.4f} | "
              f"{c.info['volume_ratio']:.3g} | {c.status.value} ({c.info['checked_by']}) |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig = box_figure(net, certs, dom, truth=lambda X: true_label(X, s))
    from dynid.stages.figures import save_png

    save_png(fig, out / "voronoi_boxes.png")
    print(f"figure: {out / 'voronoi_boxes.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
