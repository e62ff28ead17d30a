"""Reproducible and resumable pipelines: same config -> same files, skipped stages, resumed
stages, and the up-front check of the whole config.

The reference of every comparison is an uninterrupted run of the same config in its own
folder (files compared bit for bit, timings aside, by dynid.reproduce.compare_runs, which is
itself checked to see a one-ulp change), plus direct reads of the model weights and the
certificate.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dynid.cli import main
from dynid.errors import ConfigError
from dynid.pipeline import load_config, run_pipeline
from dynid.reproduce import compare_runs

REPO = Path(__file__).resolve().parents[1]

TINY = """
[run]
name = "tiny"
stages = ["simulate", "train", "evaluate", "certify", "prune", "reach"]

[simulate]
system = "brusselator"
map = "euler"
dt = 0.05
samples = 300
seed = 1

[train]
hidden = [6, 6]
epochs = 4
batch_size = 64

[evaluate]
steps = 5
initial_states = 2
grid = 8
test_samples = 50
figures = false

[certify]
lo = [0.5, 0.5]
hi = [2.0, 2.5]
cells = CELLS
pairs = true
grid = 10

[prune]
levels = [0.5]
epochs = 1
save_models = false

[reach]
steps = 2
refine_cells = 6
samples = 200
"""


def _config(folder: Path, text: str = TINY, cells: int = 2) -> Path:
    p = folder / "tiny.toml"
    p.write_text(text.replace("CELLS", str(cells)))
    return p


def _quiet(msg):
    return None


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run of the tiny pipeline (every stage, a 2 x 2 cell-pair verdict)."""
    d = tmp_path_factory.mktemp("ref")
    cfg = _config(d)
    ctx = run_pipeline(cfg, out_dir=d / "run", log=_quiet)
    return cfg, d / "run", ctx


def _weights(path):
    from dynid.modelfile import load_model

    net = load_model(path)
    return [a.tobytes() for a in (*net.weights, *net.biases)]


def _certificate(run_dir):
    cert = json.loads((run_dir / "certify.json").read_text())["invertibility"]
    cert.pop("seconds")
    return cert


def test_rerun_skips_up_to_date_stages(reference, tmp_path):
    cfg, ref, _ = reference
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    stamp = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()}
    lines = []
    ctx = run_pipeline(cfg, out_dir=run, log=lines.append)
    assert ctx.summary["run"]["skipped"] == ctx.summary["run"]["stages"]
    assert sum("up to date, skipped" in ln for ln in lines) == 6
    for name in ("model.h5", "certify.json", "prune.json", "reach.nc", "data.nc"):
        assert (run / name).stat().st_mtime_ns == stamp[name]        # untouched
    assert ctx.summary["certify"] == reference[2].summary["certify"]
    assert "Invertibility certificate" in (run / "report.html").read_text()
    # a changed table reruns that stage only; a deleted output reruns its stage
    text = cfg.read_text().replace("steps = 2\nrefine_cells", "steps = 3\nrefine_cells")
    (run / "prune.json").unlink()
    cfg2 = _config(tmp_path, text)
    lines.clear()
    ctx = run_pipeline(cfg2, out_dir=run, log=lines.append)
    assert ctx.summary["run"]["skipped"] == ["simulate", "train", "evaluate", "certify"]
    assert ctx.summary["reach"]["steps"] == 3 and (run / "prune.json").is_file()
    # --force reruns a stage; its outputs come out the same, so nothing after it reruns
    ctx = run_pipeline(cfg2, out_dir=run, log=_quiet, force=["train"])
    assert ctx.summary["run"]["skipped"] == ["simulate", "evaluate", "certify", "prune",
                                             "reach"]
    assert _weights(run / "model.h5") == _weights(ref / "model.h5")


def test_ctrl_c_in_certify_resumes_to_the_same_files(reference, tmp_path, monkeypatch):
    """A fresh run (its own simulation and training) interrupted after 3 of the 10 cell
    pairs, then run again: it resumes at the 4th pair and every file equals the reference."""
    import dynid.certify.cellpairs as cellpairs

    cfg, ref, _ = reference
    run = tmp_path / "run"
    solved = []
    real = cellpairs.noninvertibility
    monkeypatch.setattr(cellpairs, "noninvertibility",
                        lambda *a, **k: solved.append(1) or real(*a, **k))

    def ctrl_c_after_three_pairs(msg):
        if msg.startswith("[certify] cells ") and len(solved) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg, out_dir=run, log=ctrl_c_after_three_pairs)
    summary = json.loads((run / "summary.json").read_text())["run"]
    assert summary["status"] == "interrupted" and summary["failed_stage"] == "certify"
    assert summary["completed"] == ["simulate", "train", "evaluate"]
    assert summary["journaled_jobs"] == 3 and not (run / "certify.json").exists()
    lines = []
    ctx = run_pipeline(cfg, out_dir=run, log=lines.append)
    assert any("certify ... (resuming: 3 finished jobs journaled)" in ln for ln in lines)
    assert len(solved) == 10                     # 3 before Ctrl-C + the 7 left, none twice
    assert ctx.summary["run"]["skipped"] == ["simulate", "train", "evaluate"]
    assert not (run / ".dynid" / "journal" / "certify").exists()     # cleared once done
    assert _certificate(run) == _certificate(ref)
    assert _weights(run / "model.h5") == _weights(ref / "model.h5")
    assert compare_runs(ref, run) == []


def test_compare_runs_sees_one_ulp(reference, tmp_path):
    import numpy as np

    from dynid.modelfile import load_model, save_model
    from dynid.relunet import ReLUNet

    _, ref, _ = reference
    other = tmp_path / "other"
    shutil.copytree(ref, other)
    assert compare_runs(ref, other) == []
    net = load_model(other / "model.h5")
    w = [a.copy() for a in net.weights]
    w[1][0, 0] = np.nextafter(w[1][0, 0], np.inf)
    save_model(other / "model.h5", ReLUNet(w, net.biases, net.relu, net.meta))
    m = json.loads((other / "metrics.json").read_text())
    m["one_step_rmse"] = np.nextafter(m["one_step_rmse"], 1.0)
    m["seconds"] = 1e9                                # timings are not compared
    (other / "metrics.json").write_text(json.dumps(m))
    diffs = compare_runs(ref, other)
    assert len(diffs) == 2 and diffs[0].startswith("metrics.json.one_step_rmse")
    assert diffs[1].startswith("model.h5: layer 1 weight differs")


# ---------------------------------------------------------------------- up-front checks


@pytest.mark.parametrize("old, new, message", [
    ("epochs = 4", 'epochs = "ten"', r"\[train\] epochs must be an integer >= 1, got 'ten'"),
    ("epochs = 4", "epochs = 0", r"\[train\] epochs must be an integer >= 1, got 0"),
    ("epochs = 4", "epochs = 4.5", r"\[train\] epochs must be an integer"),
    ("levels = [0.5]", "levels = [1.5]", r"\[prune\] levels must be a non-empty list"),
    ("pairs = true", "pairs = true\ntime_limit = -1", r"\[certify\] time_limit must be a "
                                                      r"number > 0"),
    ("pairs = true", "pairs = 3", r"\[certify\] pairs must be one of 'auto', true, false"),
    ("refine_cells = 6", 'refine_cells = 6\nengine = "nope"', r"\[reach\] engine must be one "
                                                              r"of .*'crown'"),
    ("seed = 1", "seed = 1\nparams = { q = 2.0 }", r"\[simulate\].*q"),
    ('system = "brusselator"', 'system = "nosuch"', r"\[simulate\] system must be one of"),
    ("hi = [2.0, 2.5]", "hi = [2.0]", r"\[certify\] lo and hi must have the same length"),
    ("grid = 10", "grid = 10\ncolour = 1", r"unknown key 'colour' in \[certify\]"),
    ('stages = ["simulate", "train", ', 'stages = [', r"\[evaluate\] needs a model: run a "
                                                      r"train stage before it or set model"),
])
def test_bad_config_is_refused_before_anything_is_written(tmp_path, old, new, message):
    assert old in TINY
    cfg = _config(tmp_path, TINY.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message):
        load_config(cfg)
    with pytest.raises(ConfigError):
        run_pipeline(cfg, out_dir=tmp_path / "run", log=_quiet)
    assert not (tmp_path / "run").exists()


def test_cli_run_refusals_are_one_line_and_exit_2(tmp_path, capsys):
    bad = _config(tmp_path, TINY.replace("epochs = 4", "epochs = -1"))
    assert main(["run", str(bad), "--out-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "[train] epochs" in err[0] and not (tmp_path / "r").exists()
    good = _config(tmp_path)
    clash = tmp_path / "a_file"
    clash.write_text("x")
    assert main(["run", str(good), "--out-dir", str(clash)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert main(["run", str(good), "--out-dir", str(clash / "sub")]) == 2
    assert "--out-dir: cannot create" in capsys.readouterr().err
    assert main(["run", str(good), "--out-dir", str(tmp_path / "r"), "--force", "fly"]) == 2
    assert "--force fly" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert main(["run", str(good), "--out-dir", str(tmp_path / "r"), "--workers", "0"]) == 2
    assert "workers" in capsys.readouterr().err


def test_every_stage_key_has_a_schema():
    """A key a stage accepts must also be checked up front (add it to the stage's SCHEMAS)."""
    from dynid import pipeline

    for stage in pipeline.STAGES:
        module = pipeline._stage_module(stage)
        keys = getattr(module, f"{stage.upper()}_KEYS", None) or module.KEYS
        assert set(module.SCHEMAS[stage].keys) == set(keys), stage


def test_demo_config_is_reproducible_by_construction():
    """The demo stops training on epochs and refines the reach partition to a cell count:
    nothing in it depends on the clock (the wall-clock limits left are MIP time limits,
    which end a query as 'unknown', never with other numbers)."""
    cfg = load_config(REPO / "examples" / "brusselator.toml")
    assert "max_seconds" not in cfg["train"] and cfg["train"]["epochs"] >= 1
    assert "refine" not in cfg["reach"] and cfg["reach"]["refine_cells"] >= 1
    # no MIP or model-error time limit either: a limit that fires on a loaded machine would
    # turn the verdict or a certified deviation into "unknown" on one run and not another
    assert "time_limit" not in cfg["certify"] and "time_limit" not in cfg["prune"]
    assert "time_limit" not in cfg["reach"].get("model_error", {})
    from reach.plant import plant_stage_options

    assert plant_stage_options(cfg["reach"])[1]["time_limit"] is None


def test_no_clock_by_default_and_a_clock_that_fires_is_recorded(reference, tmp_path,
                                                                 monkeypatch):
    """By default certify and prune run without a wall-clock limit (certify.json and
    prune.json say time_limited: false, however loaded the machine); with time_limit set and
    a clock that races (every reading +1000 s), the limit fires and the files say so, and a
    stopped query is never "certified"."""
    from dynid.certify import equivalence, pairs

    cfg, run, _ = reference
    cert = json.loads((run / "certify.json").read_text())
    assert cert["time_limited"] is False
    assert [lv["time_limited"] for lv in json.loads((run / "prune.json").read_text())["levels"]] \
        == [False]
    text = cfg.read_text().replace('stages = ["simulate", "train", "evaluate", "certify", '
                                   '"prune", "reach"]', 'stages = ["certify", "prune"]')
    text = text.replace("grid = 10\n", f"grid = 10\nmodel = '{run / 'model.h5'}'\n"
                        "time_limit = 1000\n")
    text = text.replace("save_models = false\n", f"save_models = false\nmodel = "
                        f"'{run / 'model.h5'}'\ndata = '{run / 'data.nc'}'\ntime_limit = 1000\n")
    p = tmp_path / "clock.toml"
    p.write_text(text)
    monkeypatch.setattr(pairs, "time", _SlowClock())
    monkeypatch.setattr(equivalence, "time", _SlowClock())
    run_pipeline(p, out_dir=tmp_path / "run", log=_quiet)
    cert = json.loads((tmp_path / "run" / "certify.json").read_text())
    assert cert["time_limited"] is True
    assert cert["invertibility"]["info"]["pairs_time_limited"] >= 1
    lv = json.loads((tmp_path / "run" / "prune.json").read_text())["levels"][0]
    assert lv["time_limited"] is True and lv["status"] == "unknown"


# ---------------------------------------------------------------------- slow: processes


def _dynid(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "dynid", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def kill_during(config: Path, run: Path, stage: str, min_jobs: int, timeout: float = 900):
    """Start ``dynid run`` in a subprocess, kill -9 it once ``stage`` has journaled
    ``min_jobs`` finished jobs; return how many it had."""
    journal = run / ".dynid" / "journal" / stage
    proc = _dynid("run", str(config), "--out-dir", str(run))
    t0 = time.time()
    try:
        while time.time() - t0 < timeout:
            n = len(list(journal.glob("*.json"))) if journal.is_dir() else 0
            if n >= min_jobs:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return n
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before it could be killed: "
                                     f"{proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        raise AssertionError("timed out waiting for journaled jobs")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_kill_9_in_certify_then_resume_equals_uninterrupted(tmp_path):
    """Acceptance (small config): kill -9 the `dynid run` process in the middle of the
    cell-pair stage, run it again: it resumes there and the files equal an uninterrupted
    run's, which ran with --workers 2 (so this also compares the executors)."""
    cfg = _config(tmp_path, cells=3)
    ref = tmp_path / "ref"
    assert main(["run", str(cfg), "--out-dir", str(ref), "--workers", "2"]) == 0
    run = tmp_path / "run"
    n = kill_during(cfg, run, "certify", 3)
    assert n >= 3 and not (run / "certify.json").exists()
    proc = _dynid("run", str(cfg), "--out-dir", str(run))
    assert proc.wait() == 0, proc.stderr.read().decode()[-2000:]
    summary = json.loads((run / "summary.json").read_text())["run"]
    assert summary["status"] == "done" and "certify" not in summary["skipped"]
    assert compare_runs(ref, run) == []


#: the demo's verdict on this machine (README, "What make demo does"): the surrogate folds
#: in the top-right cell; the witness pair, rounded
DEMO_WITNESS = {"x": [3.720, 4.865], "y": [3.573, 5.0], "distance": 0.147}


@pytest.mark.slow
def test_demo_reproduces_and_resumes_after_kill_9(tmp_path):
    """Acceptance, the `make demo` pipeline itself (about 2 x 2.5 minutes): run A in this
    process; run C in a subprocess killed -9 during the cell-pair verdict, then run again;
    every file of C equals A's (so: two runs give the same model and numbers, and a killed
    run resumes to them). The certify verdict is the README's."""
    import numpy as np

    from dynid.modelfile import load_model

    demo = REPO / "examples" / "brusselator.toml"
    a = tmp_path / "A"
    ctx = run_pipeline(demo, out_dir=a, log=_quiet)
    c = tmp_path / "C"
    assert kill_during(demo, c, "certify", 1) >= 1
    proc = _dynid("run", str(demo), "--out-dir", str(c))
    assert proc.wait() == 0, proc.stderr.read().decode()[-2000:]
    assert compare_runs(a, c) == []
    assert ctx.summary["certify"]["time_limited"] is False     # no clock decided anything
    assert not any(lv["time_limited"] for lv in ctx.summary["prune"]["levels"])
    cert = ctx.summary["certify"]["invertibility"]
    assert cert["status"] == "counterexample"
    w = cert["witness"]
    assert np.round(w["x"], 3).tolist() == DEMO_WITNESS["x"]
    assert np.round(w["y"], 3).tolist() == DEMO_WITNESS["y"]
    assert round(cert["value"], 3) == DEMO_WITNESS["distance"]
    net = load_model(a / "model.h5")       # the witness is real: one image, two states
    assert np.abs(net.forward(np.array(w["x"])) - net.forward(np.array(w["y"]))).max() < 1e-9
    ev = ctx.summary["evaluate"]
    assert ev["one_step_rmse_test"] < 2e-2 and ev["rollout"]["nrmse"] < 0.2
    x = np.random.default_rng(0).uniform([0, 0], [4, 5], (20000, 2))
    for lv in ctx.summary["prune"]["levels"]:       # certified deviations hold on samples
        pruned = load_model(a / lv["model"])
        assert np.abs(net.forward(x) - pruned.forward(x)).max() <= lv["certified_deviation"]
    assert ctx.summary["reach"]["sound"] is True


def test_refinement_stops_on_a_cell_count_not_the_clock():
    """refine_cells makes the partition reproducible: a cap, no time budget; the dataset
    says which rule stopped it. Reference: the same call again, and the cap itself."""
    import numpy as np

    from reach.partition import refine
    from tests.conftest import random_relunet

    net = random_relunet(np.random.default_rng(7), [2, 12, 12, 2], scale=0.5)
    kw = dict(budget_s=None, max_cells=10, n_samples=500)
    a = refine(net, [-1, -1], [1, 1], 3, **kw)
    b = refine(net, [-1, -1], [1, 1], 3, **kw)
    assert a.attrs["stopped"] in ("max_cells", "no gain") and a.sizes["cell"] <= 10
    assert a.attrs["stopped"] == "max_cells"      # this net's one-cell box sticks out
    for v in ("lower", "upper", "cell_lo", "cell_hi"):
        assert a[v].values.tobytes() == b[v].values.tobytes()
    with pytest.raises(ConfigError, match="max_cells"):
        refine(net, [-1, -1], [1, 1], 3, budget_s=None, max_cells=0)


# ---------------------------------------------------------------------- closed-loop pipelines

PENDULUM = REPO / "examples" / "pendulum_closed_loop.toml"


@pytest.mark.parametrize("old, new, message", [
    ("check_steps = 100", "check_steps = 0", r"\[controller\] check_steps must be an integer"),
    ("hidden = [16, 16]", "hidden = [16, 0]", r"\[controller\] hidden must be a list of "
                                              r"integers >= 1"),
    ("fit_hi = [3.64, 2.0]", "fit_hi = [3.64]", r"\[controller\] fit_lo and fit_hi must have "
                                                r"the same length"),
    ("check_steps = 100", "check_steps = 100\ngain = 1", r"unknown key 'gain' in "
                                                         r"\[controller\]"),
    ('signal = "random_steps"', 'signal = "noise"', r"\[simulate\] signal must be one of"),
    ("experiments = 300", "experiments = 0", r"\[simulate\] experiments must be an integer"),
    ("seed = 0\n\n[train]", "seed = 0\nnoise_std = -1\n\n[train]",
     r"\[simulate\] noise_std must be a number >= 0"),
    ('"train", "evaluate", "controller"', '"controller"', r"\[controller\] needs a model: run "
                                                          r"a train stage"),
    ("partitions = 8", "partitions = 8\ncontroller = 3", r"\[reach\] controller must be a "
                                                         r"table"),
])
def test_bad_closed_loop_config_is_refused_up_front(tmp_path, old, new, message):
    """The [controller] table and the plant keys of [simulate] are checked before anything
    runs, like every other table (the pendulum example, one key broken)."""
    text = PENDULUM.read_text()
    assert old in text
    cfg = tmp_path / "p.toml"
    cfg.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message):
        run_pipeline(cfg, out_dir=tmp_path / "run", log=_quiet)
    assert not (tmp_path / "run").exists()


def test_every_example_pipeline_is_valid():
    pipelines = [p for p in (REPO / "examples").glob("*.toml") if "[run]" in p.read_text()]
    assert len(pipelines) >= 2
    for p in pipelines:
        cfg = load_config(p)
        assert "max_seconds" not in cfg.get("train", {}), p     # reproducible: no clock


def test_reach_stage_key_covers_the_controller_it_uses(tmp_path):
    """The reach stage reads the controller stage's file unless its table names a controller
    or a plant: that file is in its content key, so a new controller redoes reach."""
    from dynid.pipeline import _stage_inputs

    class Ctx:
        artifacts = {"model": tmp_path / "model.h5", "controller": tmp_path / "c.h5",
                     "dataset": tmp_path / "data.nc"}

    assert set(_stage_inputs("reach", {}, Ctx)) == {"model", "controller"}
    assert set(_stage_inputs("reach", {"controller": {"gain": [1, 2]}}, Ctx)) == {"model"}
    assert set(_stage_inputs("reach", {"plant": {"A": [[1]]}}, Ctx)) == {"model"}
    assert set(_stage_inputs("controller", {}, Ctx)) == {"model"}


class _SlowClock:
    """A stand-in for the time module whose clock runs 1000 s per reading: a machine so
    loaded that any wall-clock budget fires at its first check."""

    def __init__(self):
        self.t = 0.0

    def perf_counter(self):
        self.t += 1000.0
        return self.t


def test_cell_pair_bounds_do_not_depend_on_the_clock(monkeypatch):
    """Without a time limit the difference tightening of a cell-pair MIP has no wall clock
    (it once stopped after 30 s, so a loaded machine got other bounds than an idle one, and
    the worker processes of scale_bench other certificates than this process): on a clock
    that races, the certificate is the same; with a time limit the clock may end the
    tightening, and the certificate says so."""
    import numpy as np

    from dynid.certify import pairs
    from dynid.certify.invertibility import noninvertibility
    from tests.conftest import random_relunet

    net = random_relunet(np.random.default_rng(5), [2, 5, 5, 2], scale=0.5)
    box_x, box_y = ([-1.0, -1.0], [0.0, 0.0]), ([-0.2, -0.2], [1.0, 1.0])

    def query(**kw):
        c = noninvertibility(net, *box_x, query="invertible_on", y_box=box_y,
                             solver="highs", threads=1, **kw)
        d = c.to_dict()
        d.pop("seconds")
        d["info"].pop("tighten_seconds")
        return d

    ref = query()
    assert ref["info"]["tighten_rounds"] >= 2 and "tighten_time_limit_hit" not in ref["info"]
    monkeypatch.setattr(pairs, "time", _SlowClock())
    assert query() == ref
    limited = query(time_limit=1000.0)     # 300 s for the tightening: one reading spends it
    assert limited["info"]["tighten_time_limit_hit"] is True
    assert limited["info"]["tighten_rounds"] < ref["info"]["tighten_rounds"]
