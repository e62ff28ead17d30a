"""Pipeline runner, stage registry, config errors and the HTML report."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from dynid import pipeline
from dynid.errors import ConfigError
from dynid.pipeline import check_keys, load_config, run_pipeline
from dynid.report import HtmlReport

REPO = Path(__file__).resolve().parents[1]

SMALL = """
[run]
name = "small"
stages = ["simulate", "train", "evaluate"]

[simulate]
system = "brusselator"
map = "euler"
dt = 0.05
samples = 300
seed = 1

[train]
hidden = [8, 8]
epochs = 3

[evaluate]
steps = 8
initial_states = 3
grid = 12
test_samples = 100
"""


def _write(tmp_path, text, name="p.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_small_pipeline_end_to_end(tmp_path):
    pytest.importorskip("dynid.simulate")
    from dynid.modelfile import load_model

    out = tmp_path / "run"
    lines = []
    ctx = run_pipeline(_write(tmp_path, SMALL), out_dir=out, log=lines.append)
    names = {p.name for p in out.iterdir()}
    assert {"data.nc", "model.h5", "metrics.json", "summary.json", "report.html",
            "trajectories.png", "one_step_error.png"} <= names
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["status"] == "done"
    assert summary["run"]["completed"] == ["simulate", "train", "evaluate"]
    metrics = json.loads((out / "metrics.json").read_text())
    # the evaluate stage's number is the float64 forward pass of the saved model on the data
    from dynid.datasets import load_dataset

    ds = load_dataset(out / "data.nc")
    net = load_model(out / "model.h5")
    err = net.forward(ds["x"].values) - ds["x_next"].values
    assert metrics["one_step_rmse_data"] == pytest.approx(float((err ** 2).mean() ** 0.5))
    assert ctx.artifacts["model"] == out / "model.h5"
    assert any(ln.startswith("[1/3] simulate") for ln in lines)
    assert any(ln.startswith("[evaluate]") for ln in lines)
    html = (out / "report.html").read_text()
    assert "<img" in html and "http" not in re.sub(r'lang="en"', "", html).split("<body>")[1]
    png = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html).group(1)
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_keys_and_tables(tmp_path):
    bad_key = SMALL.replace("epochs = 3", "epochs = 3\nlearning_rate = 0.1")
    with pytest.raises(ConfigError, match="learning_rate"):
        run_pipeline(_write(tmp_path, bad_key), out_dir=tmp_path / "r1", log=lambda m: None)
    with pytest.raises(ConfigError, match="plot"):
        load_config(_write(tmp_path, SMALL + "\n[plot]\nx = 1\n"))
    with pytest.raises(ConfigError, match="colour"):
        load_config(_write(tmp_path, SMALL.replace('name = "small"',
                                                   'name = "small"\ncolour = 1')))
    with pytest.raises(ConfigError, match="fly"):
        load_config(_write(tmp_path, SMALL.replace('"evaluate"]', '"evaluate", "fly"]')))


def test_bad_toml_and_missing_run(tmp_path):
    with pytest.raises(ConfigError, match="TOML"):
        load_config(_write(tmp_path, "[run\nname = 1"))
    with pytest.raises(ConfigError, match=r"\[run\]"):
        load_config(_write(tmp_path, "[simulate]\nsystem = 'brusselator'\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_missing_stage_module_is_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(pipeline.STAGES, "certify", "dynid.stages.no_such_module:run")
    cfg = _write(tmp_path, SMALL.replace('"evaluate"]', '"evaluate", "certify"]'))
    out = tmp_path / "r"
    with pytest.raises(ConfigError, match="certify"):
        run_pipeline(cfg, out_dir=out, log=lambda m: None)
    assert not (out / "data.nc").exists()   # checked before anything ran


def test_failed_stage_keeps_summary(tmp_path, monkeypatch):
    pytest.importorskip("dynid.simulate")
    # a bad value is refused before anything is written ...
    cfg = _write(tmp_path, SMALL.replace('system = "brusselator"', 'system = "nosuch"'))
    out = tmp_path / "r"
    with pytest.raises(ConfigError, match="system"):
        run_pipeline(cfg, out_dir=out, log=lambda m: None)
    assert not out.exists()
    # ... a stage that fails while running leaves the summary of what finished
    monkeypatch.setitem(pipeline.STAGES, "evaluate", "tests.test_pipeline:_failing_stage")
    with pytest.raises(RuntimeError, match="boom"):
        run_pipeline(_write(tmp_path, SMALL), out_dir=out, log=lambda m: None)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["status"] == "failed" and summary["run"]["failed_stage"] == "evaluate"
    assert summary["run"]["completed"] == ["simulate", "train"]


def _failing_stage(section, ctx):
    raise RuntimeError("boom")


def test_registry_names_later_stages():
    assert pipeline.STAGES["certify"] == "dynid.stages.certify:run"
    assert pipeline.STAGES["prune"] == "dynid.stages.prune:run"
    assert pipeline.STAGES["reach"] == "reach.stage:run"


def test_example_config_is_valid():
    from dynid.stages import data

    from dynid.stages import certify, prune
    from reach import stage as reach_stage

    cfg = load_config(REPO / "examples" / "brusselator.toml")
    assert cfg["run"]["stages"] == ["simulate", "train", "evaluate", "certify", "prune", "reach"]
    check_keys(cfg["simulate"], data.SIMULATE_KEYS, "simulate")
    check_keys(cfg["train"], data.TRAIN_KEYS, "train")
    check_keys(cfg["evaluate"], data.EVALUATE_KEYS, "evaluate")
    check_keys(cfg["certify"], certify.KEYS, "certify")
    check_keys(cfg["prune"], prune.KEYS, "prune")
    check_keys(cfg["reach"], reach_stage.KEYS, "reach")
    assert cfg["simulate"]["params"] == {"a": 1.0, "b": 3.0}
    assert (cfg["simulate"]["lo"], cfg["simulate"]["hi"]) == ([0.0, 0.0], [4.0, 5.0])


def test_html_report_escapes_and_saves_atomically(tmp_path):
    from matplotlib.figure import Figure

    rep = HtmlReport("<script>alert(1)</script>")
    rep.add_heading("a & b")
    rep.add_text("x < y")
    rep.add_table([{"name": "<b>", "value": 0.5}, {"name": "c", "extra": [1, 2]}])
    rep.add_json({"k": float("inf")})
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    rep.add_figure(fig, "cap <1>")
    path = rep.save(tmp_path / "r.html")
    html = path.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "a &amp; b" in html and "x &lt; y" in html and "&lt;b&gt;" in html
    assert "cap &lt;1&gt;" in html and "&quot;inf&quot;" in html
    assert html.count("<tr>") == 3      # header + 2 rows; columns = union of keys
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_trajectory_pairs_are_appended_and_exact():
    pytest.importorskip("dynid.simulate")
    import numpy as np

    from dynid.stages.data import simulate_dataset

    ds = simulate_dataset("brusselator", method="euler", dt=0.05, samples=20,
                          trajectory_samples=3, steps=6, seed=2)
    assert ds.sizes["sample"] == 20 + 3 * 6
    x, y = ds["x"].values[:, 0], ds["x"].values[:, 1]
    a, b, dt = 1.0, 3.0, 0.05   # catalogue defaults; hand-written Euler map
    ref = np.stack([x + dt * (a - (b + 1) * x + x * x * y), y + dt * (b * x - x * x * y)], 1)
    assert np.abs(ds["x_next"].values - ref).max() < 1e-12
    # consecutive appended pairs chain: x_next of one is x of the next within a trajectory
    X, Y = ds["x"].values[20:].reshape(3, 6, 2), ds["x_next"].values[20:].reshape(3, 6, 2)
    assert np.array_equal(Y[:, :-1], X[:, 1:])
    assert list(ds.attrs["domain_hi"]) == [4.0, 5.0]
