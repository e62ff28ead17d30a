"""Pruning: counts against brute-force recounts, structured pruning against hand-computed
scores, fine-tuning keeps the zero pattern and lowers the loss, simplify keeps the map."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynid import ReLUNet, load_model, save_model
from dynid.errors import ConfigError, DynidError
from dynid.prune import (finetune, magnitude_prune, one_step_loss, prune, sparsity_report,
                         structured_prune)
from tests.conftest import random_relunet


@given(seed=st.integers(0, 10_000), s=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.9]),
       per_layer=st.booleans())
def test_magnitude_prune_counts_and_threshold(seed, s, per_layer):
    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [3, 7, 5, 2])
    out = magnitude_prune(net, s, per_layer=per_layer)
    total = sum(w.size for w in net.weights)
    if per_layer:
        for w0, w in zip(net.weights, out.weights):
            assert (w == 0).sum() == round(s * w0.size)
            # every kept weight is at least as large as every pruned weight of the layer
            kept, gone = np.abs(w0[w != 0]), np.abs(w0[w == 0])
            if kept.size and gone.size:
                assert kept.min() >= gone.max()
    else:
        assert sum((w == 0).sum() for w in out.weights) == round(s * total)
        kept = np.concatenate([np.abs(w0[w != 0]) for w0, w in zip(net.weights, out.weights)])
        gone = np.concatenate([np.abs(w0[w == 0]) for w0, w in zip(net.weights, out.weights)])
        if kept.size and gone.size:
            assert kept.min() >= gone.max()
    # surviving weights are untouched, biases untouched
    for w0, w in zip(net.weights, out.weights):
        assert np.array_equal(w[w != 0], w0[w != 0])
    for b0, b in zip(net.biases, out.biases):
        assert np.array_equal(b0, b)


def test_structured_prune_by_hand():
    # three hidden units, scores by hand: ||(w_in, b)|| * ||w_out||
    w1 = np.array([[1.0, 0.0], [0.1, 0.1], [0.0, 2.0]])
    b1 = np.array([0.0, 0.0, 1.0])
    w2 = np.array([[1.0, 1.0, 0.5], [0.0, 1.0, 0.5]])
    net = ReLUNet([w1, w2], [b1, np.zeros(2)])
    scores = [1.0 * 1.0, np.sqrt(0.02) * np.sqrt(2.0), np.sqrt(5.0) * np.sqrt(0.5)]
    worst = int(np.argmin(scores))
    out = structured_prune(net, 1 / 3)
    assert np.all(out.weights[0][worst] == 0) and out.biases[0][worst] == 0
    assert np.all(out.weights[1][:, worst] == 0)
    small = out.simplify()
    assert small.widths == [2, 2, 2]
    x = np.random.default_rng(0).normal(size=(100, 2))
    # the map equals the original without the removed unit, computed by hand
    h = np.maximum(x @ w1.T + b1, 0)
    h[:, worst] = 0
    assert np.allclose(small.forward(x), h @ w2.T)


def test_structured_keeps_identity_units_and_simplify_keeps_map():
    rng = np.random.default_rng(3)
    net = random_relunet(rng, [2, 10, 10, 2], identity_frac=0.3)
    out = structured_prune(net, 0.6)
    for i in range(net.n_layers - 1):
        ident = ~net.relu[i]
        # identity units keep their bias and still reach the next layer
        assert np.array_equal(out.biases[i][ident], net.biases[i][ident])
        assert np.all(np.abs(out.weights[i + 1][:, ident]).max(axis=0) > 0)
    rep = sparsity_report(out)
    n_relu = sum(int(m.sum()) for m in net.relu[:-1])
    alive_hidden = sum(r["units_alive"] for r in rep[:-2])
    assert alive_hidden == sum(w.shape[0] for w in net.weights[:-1]) - round(0.6 * n_relu)
    small = out.simplify()
    x = rng.normal(size=(200, 2)) * 3
    assert np.allclose(small.forward(x), out.forward(x))
    assert small.n_relu < net.n_relu


def test_sparsity_report_recount():
    rng = np.random.default_rng(4)
    net = magnitude_prune(random_relunet(rng, [2, 6, 6, 2]), 0.7)
    rep = sparsity_report(net)
    for r, w in zip(rep[:-1], net.weights):
        assert r["zeros"] == sum(1 for v in w.reshape(-1) if v == 0.0)
        assert r["weights"] == w.size
    assert rep[-1]["zeros"] == sum(r["zeros"] for r in rep[:-1])


def test_finetune_keeps_mask_and_lowers_loss(tmp_path):
    rng = np.random.default_rng(5)
    teacher = random_relunet(rng, [2, 16, 16, 2])
    x = rng.uniform(-2, 2, size=(512, 2))
    y = teacher.forward(x)
    pruned = prune(teacher, 0.6)
    tuned = prune(teacher, 0.6, finetune_data=(x, y), epochs=30, lr=3e-3)
    for w0, w in zip(pruned.weights, tuned.weights):
        assert np.all(w[w0 == 0] == 0)
    assert one_step_loss(tuned, x, y) < one_step_loss(pruned, x, y)
    info = tuned.meta["pruned"]
    assert info["loss_after_finetune"] < info["loss_before_finetune"]
    # saved as a normal model file with the metadata
    path = save_model(tmp_path / "p.h5", tuned)
    back = load_model(path)
    assert back.meta["pruned"]["sparsity"] == 0.6
    assert np.array_equal(back.forward(x), tuned.forward(x))


def test_structured_finetune_keeps_removed_units_dead():
    rng = np.random.default_rng(6)
    net = random_relunet(rng, [2, 12, 2])
    x = rng.uniform(-1, 1, size=(256, 2))
    tuned = prune(net, 0.5, structured=True, finetune_data=(x, net.forward(x)), epochs=5)
    assert tuned.simplify().widths[1] == 6


def test_bad_input():
    net = random_relunet(np.random.default_rng(0), [2, 4, 2])
    with pytest.raises(ConfigError, match="sparsity"):
        prune(net, 1.5)
    with pytest.raises(DynidError, match="fine-tuning data"):
        finetune(net, (np.zeros((5, 3)), np.zeros((5, 2))))
    with pytest.raises(DynidError, match="NaN"):
        finetune(net, (np.full((5, 2), np.nan), np.zeros((5, 2))))


def test_cli_prune_roundtrip(tmp_path):
    from dynid.cli import main

    rng = np.random.default_rng(9)
    net = random_relunet(rng, [2, 8, 8, 2])
    save_model(tmp_path / "a.h5", net)
    rc = main(["prune", str(tmp_path / "a.h5"), "--sparsity", "0.5", "--structured",
               "--out", str(tmp_path / "b.h5"), "--json", str(tmp_path / "b.json")])
    assert rc == 0
    out = load_model(tmp_path / "b.h5")
    assert out.meta["pruned"]["method"] == "structured"
    assert sum(int(r["units_alive"]) for r in sparsity_report(out)[:-2]) == 8
    with pytest.raises(SystemExit) as exc:   # refused by the option's type, before any work
        main(["prune", str(tmp_path / "a.h5"), "--sparsity", "2", "--out", str(tmp_path / "c.h5")])
    assert exc.value.code == 2
    assert not (tmp_path / "c.h5").exists()


@pytest.mark.slow
def test_prune_stage_small(tmp_path):
    pytest.importorskip("dynid.pipeline")
    milp = pytest.importorskip("dynid.milp")
    if not hasattr(milp, "solve"):
        pytest.skip("dynid.milp.solve is not available yet")
    import json

    from dynid.datasets import save_dataset
    from dynid.pipeline import RunContext
    from dynid.stages.prune import run

    rng = np.random.default_rng(11)
    net = random_relunet(rng, [2, 6, 2]).with_meta(domain={"lo": [-1, -1], "hi": [1, 1]})
    from dynid.simulate import one_step_pairs

    ds = one_step_pairs("brusselator", 200, 0.1, method="euler", lo=[-1, -1], hi=[1, 1])
    data = save_dataset(ds, tmp_path / "d.nc")
    save_model(tmp_path / "m.h5", net)
    ctx = RunContext(run_dir=tmp_path, config={}, artifacts={"model": tmp_path / "m.h5",
                                                             "dataset": data},
                     logger=lambda m: None)
    run({"levels": [0.3, 0.7], "epochs": 2, "solver": "highs", "time_limit": 60}, ctx)
    res = json.loads((tmp_path / "prune.json").read_text())
    assert [r["sparsity"] for r in res["levels"]] == [0.3, 0.7]
    for r in res["levels"]:
        pruned = load_model(tmp_path / r["model"])
        pts = rng.uniform(-1, 1, size=(5000, 2))
        dev = np.abs(net.forward(pts) - pruned.forward(pts)).max()
        assert dev <= r["certified_deviation"] + 1e-9
    assert (tmp_path / "prune.png").exists() and "prune" in ctx.summary
