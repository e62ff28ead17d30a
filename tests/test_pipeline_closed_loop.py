"""The closed-loop pipeline (simulate experiments -> train a plant -> evaluate -> controller ->
reach): a small copy of examples/pendulum_closed_loop.toml end to end, its files and verdicts;
the full example as a slow test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dynid.errors import ConfigError
from dynid.formats import load_network
from dynid.modelfile import load_model
from dynid.pipeline import run_pipeline

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pendulum_closed_loop.toml"


def _small_config(tmp_path, extra=""):
    text = EXAMPLE.read_text()
    for old, new in (("experiments = 300", "experiments = 60"), ("steps = 60", "steps = 40"),
                     ("epochs = 150", "epochs = 25"), ("initial_states = 20",
                                                        "initial_states = 4"),
                     ("hidden = [16, 16]", "hidden = [8]"), ("steps = 20\n", "steps = 4\n"),
                     ("partitions = 8", "partitions = 2"), ("samples = 100000",
                                                             "samples = 2000"),
                     ("steps = [20]", "steps = [4]"), ("check_steps = 100", "check_steps = 20")):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "p.toml"
    path.write_text(text + extra)
    return path


def test_small_closed_loop_pipeline(tmp_path):
    ctx = run_pipeline(_small_config(tmp_path), out_dir=tmp_path / "run", log=lambda m: None)
    run = ctx.run_dir
    for name in ("data.nc", "model.h5", "metrics.json", "compare.png", "controller.h5",
                 "reach.nc", "summary.json", "report.html"):
        assert (run / name).exists(), name
    plant = load_model(run / "model.h5")
    assert plant.meta["input_names"] == ["tau"] and plant.n_in == 3 and plant.n_out == 2
    ctrl = load_network(run / "controller.h5")
    assert ctrl.n_in == 2 and ctrl.n_out == 1
    assert ctrl.meta["saturation"] == {"lo": [-2.0], "hi": [2.0]}
    s = json.loads((run / "summary.json").read_text())
    assert s["run"]["status"] == "done"
    ev = s["evaluate"]
    assert len(ev["heldout"]["experiments"]) == 12 and ev["fresh"]["steps"] == 50
    assert ev["heldout_arx"] is not None
    assert s["controller"]["kind"] == "relu-lqr" and s["controller"]["spectral_radius"] < 1
    r = s["reach"]
    assert r["sound"] and r["closed_loop"]["saturation"] == {"lo": [-2.0], "hi": [2.0]}
    assert [v["spec"] for v in r["verdicts"]] == ["stay upright", "settle by step 20"]
    # the reach set holds the run's own closed loop: re-simulate from the sampled box corner
    x = np.array([3.04, -0.2])
    for k in range(1, 5):
        u = np.clip(ctrl.forward(x), -2.0, 2.0)
        x = plant.forward(np.concatenate([x, u]))
        assert np.all(x >= np.array(r["boxes"]["lo"][k]) - 1e-12)
        assert np.all(x <= np.array(r["boxes"]["hi"][k]) + 1e-12)


def test_controller_stage_needs_a_plant(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text('[run]\nname = "x"\nstages = ["simulate", "train", "controller"]\n'
                   '[simulate]\nsystem = "duffing"\nsamples = 200\nmap = "euler"\n'
                   '[train]\nepochs = 1\n[controller]\nequilibrium = [0.0, 0.0]\n')
    with pytest.raises(ConfigError, match="input_names"):
        run_pipeline(cfg, out_dir=tmp_path / "run", log=lambda m: None)


@pytest.mark.slow
def test_pendulum_closed_loop_example(tmp_path):
    ctx = run_pipeline(EXAMPLE, out_dir=tmp_path / "run", log=lambda m: None)
    s = json.loads((ctx.run_dir / "summary.json").read_text())
    assert min(s["evaluate"]["heldout"]["fit_percent_per_state"]) > 95
    assert s["controller"]["check"]["true_final_distance_max"] < 0.01
    assert s["reach"]["sound"] and s["reach"]["samples"] >= 100000
    assert {v["spec"]: v["status"] for v in s["reach"]["verdicts"]} == {
        "stay upright": "safe", "settle by step 20": "safe"}
