"""Issue 17, items 3-8 from the front door: every bad input is exit 2 (Ctrl-C 130), one line on
stderr, no traceback, and nothing written.

Each case runs ``dynid.cli.main`` in-process (argparse refusals exit through SystemExit(2))
and compares the files under the test folder before and after. Unwritable folders are made
with a path under ``/proc`` (read-only even for root, where ``chmod`` would not stop a write).
A ``dynid run`` whose config fails validation *inside a stage* is issue 16's (validating the
whole pipeline before its run folder is created); here only the run folder's path is checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dynid.relunet import ReLUNet
from tests.conftest import random_relunet

RO = "/proc/dynid-no-such-dir"        # the folder /proc exists and refuses new files


def run_cli(argv, capsys):
    from dynid.cli import main

    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:     # argparse: one usage line, exit 2
        rc = exc.code
    cap = capsys.readouterr()
    return rc, cap.err.strip()


def files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with a small dataset, a 2-8-2 model, a copy of it, and a reach config."""
    from dynid.cli import main
    from dynid.modelfile import save_model

    d = tmp_path_factory.mktemp("cli")
    assert main(["simulate", "brusselator", "--out", str(d / "data.nc"), "--samples", "200",
                 "--map", "euler", "--quiet"]) == 0
    net = random_relunet(np.random.default_rng(0), [2, 8, 2])
    save_model(d / "model.h5", net, domain={"lo": [0.0, 0.0], "hi": [1.0, 1.0]})
    save_model(d / "model2.h5", net, domain={"lo": [0.0, 0.0], "hi": [1.0, 1.0]})
    (d / "sub").mkdir()
    return d


def assert_refused(work, capsys, argv, code=2, words=()):
    before = files(work)
    rc, err = run_cli(argv, capsys)
    assert rc == code, (argv, rc, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, (argv, err)
    for w in words:
        assert w in err, (argv, err)
    assert files(work) == before, (argv, "files changed")
    return err


# --------------------------------------------------------- item 3: unwritable / directory outputs
OUTPUT_CASES = {
    "simulate": lambda d, o: ["simulate", "brusselator", "--samples", "10", "--quiet",
                              "--out", o],
    "train": lambda d, o: ["train", d / "data.nc", "--epochs", "1", "--quiet", "--out", o],
    "evaluate --json": lambda d, o: ["evaluate", d / "model.h5", d / "data.nc", "--json", o],
    "certify --json": lambda d, o: ["certify", "invertibility", d / "model.h5", "--json", o],
    "prune": lambda d, o: ["prune", d / "model.h5", "--sparsity", "0.5", "--out", o],
    "reach --out": lambda d, o: ["reach", d / "model.h5", "--lo", "0", "0", "--hi", "1", "1",
                                 "--steps", "1", "--out", o],
    "reach --report": lambda d, o: ["reach", d / "model.h5", "--lo", "0", "0", "--hi", "1",
                                    "1", "--steps", "1", "--report", o],
    "match --json": lambda d, o: ["match", d / "model.h5", d / "model2.h5", "--lo", "0", "0",
                                  "--hi", "1", "1", "--json", o],
    "info --json": lambda d, o: ["info", d / "model.h5", "--json", o],
}


@pytest.mark.parametrize("where", ["readonly", "directory"])
@pytest.mark.parametrize("command", sorted(OUTPUT_CASES))
def test_unwritable_output_is_one_line(work, capsys, command, where):
    out = f"{RO}/x.out" if where == "readonly" else work / "sub"
    assert_refused(work, capsys, OUTPUT_CASES[command](work, out))


def test_run_out_dir_clashing_with_a_file(work, capsys, tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text('[run]\nname = "t"\nstages = ["simulate"]\n[simulate]\nsystem = '
                   '"brusselator"\nsamples = 10\n')
    clash = work / "data.nc"
    assert_refused(work, capsys, ["run", cfg, "--out-dir", clash])
    assert_refused(work, capsys, ["run", cfg, "--out-dir", f"{RO}/run"])


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "cuda"])
def test_train_device(work, capsys, device):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        device = f"cuda:{torch.cuda.device_count()}"      # one past the last device
    assert_refused(work, capsys, ["train", work / "data.nc", "--device", device,
                                  "--out", work / "new.h5"])


@pytest.mark.parametrize("argv", [
    ["prune", "{d}/model.h5", "--sparsity", "0.5", "--lr", "-1", "--out", "{d}/p.h5"],
    ["prune", "{d}/model.h5", "--sparsity", "0.5", "--epochs", "-1", "--out", "{d}/p.h5"],
    ["prune", "{d}/model.h5", "--sparsity", "1.5", "--out", "{d}/p.h5"],
    ["certify", "invertibility", "{d}/model.h5", "--tol", "-1"],
    ["certify", "invertibility", "{d}/model.h5", "--delta", "-1"],
    ["certify", "invertibility", "{d}/model.h5", "--delta", "nan"],
])
def test_negative_values_are_refused(work, capsys, argv):
    assert_refused(work, capsys, [a.format(d=work) for a in argv])


def write_reach_toml(d: Path, body: str) -> Path:
    p = d / "reach.toml"
    p.write_text(f'model = "{d / "model.h5"}"\nlo = [0.0, 0.0]\nhi = [1.0, 1.0]\n' + body)
    return p


@pytest.mark.parametrize("body", [
    'steps = "two"\n',
    'steps = 2\npartitions = "x"\n',
    'steps = 2\nsamples = -5\n',
    'steps = 2\n[[spec]]\ntype = "box"\nlo = [0.0, 0.0, 0.0]\nhi = [1.0, 1.0, 1.0]\n',
    'steps = 2\n[[spec]]\ntype = "halfspace"\nnormal = [1.0, 0.0, 1.0]\noffset = 1.0\n',
])
def test_reach_toml_wrong_type_or_dimension(work, capsys, tmp_path, body):
    cfg = write_reach_toml(tmp_path, body)
    before = files(tmp_path)
    rc, err = run_cli(["reach", cfg], capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, (body, err)
    assert files(tmp_path) == before


# --------------------------------------------------------- item 4: declared sizes
def test_model_declaring_a_huge_weight_is_refused_before_reading(work, capsys, tmp_path):
    import h5py

    bad = tmp_path / "huge.h5"
    from dynid.modelfile import save_model

    save_model(bad, ReLUNet([np.ones((3, 2)), np.ones((2, 3))], [np.zeros(3), np.zeros(2)]))
    with h5py.File(bad, "r+") as f:      # a 1e6 x 1e6 weight that is declared, never stored
        g = f["layers"]["0"]
        del g["weight"]
        g.create_dataset("weight", shape=(10 ** 6, 10 ** 6), dtype="f8", chunks=(1, 1))
    for argv in (["info", bad], ["evaluate", bad, work / "data.nc"],
                 ["certify", "invertibility", bad, "--lo", "0", "0", "--hi", "1", "1"],
                 ["reach", bad, "--lo", "0", "0", "--hi", "1", "1", "--steps", "1"]):
        err = assert_refused(work, capsys, argv)
        assert "huge.h5" in err


# --------------------------------------------------------- item 5: impossible numbers
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "x"])
@pytest.mark.parametrize("command", [
    ["certify", "invertibility", "{d}/model.h5", "--time-limit"],
    ["certify", "radius", "{d}/model.h5", "--at", "0.5", "0.5", "--time-limit"],
    ["match", "{d}/model.h5", "{d}/model2.h5", "--lo", "0", "0", "--hi", "1", "1",
     "--time-limit"],
])
def test_time_limits(work, capsys, command, value):
    assert_refused(work, capsys, [a.format(d=work) for a in command] + [value])


@pytest.mark.parametrize("argv", [
    ["match", "{d}/model.h5", "{d}/model2.h5", "--lo", "0", "0", "--hi", "1", "1",
     "--eps", "-1"],
    ["simulate", "brusselator", "--samples", "-5", "--out", "{d}/s.nc"],
    ["simulate", "brusselator", "--samples", "10", "--with-trajectories", "-2",
     "--out", "{d}/s.nc"],
    ["reach", "{d}/model.h5", "--lo", "0", "0", "--hi", "1", "1", "--steps", "1",
     "--refine", "-1"],
    ["reach", "{d}/model.h5", "--lo", "0", "0", "--hi", "1", "1", "--steps", "1",
     "--samples", "-1"],
    ["reach", "{d}/model.h5", "--lo", "0", "0", "--hi", "1", "1", "--steps", "0"],
    ["train", "{d}/data.nc", "--max-seconds", "-1", "--out", "{d}/t.h5"],
    ["train", "{d}/data.nc", "--epochs", "-1", "--out", "{d}/t.h5"],
    ["train", "{d}/data.nc", "--lr", "nan", "--out", "{d}/t.h5"],
    ["evaluate", "{d}/model.h5", "{d}/data.nc", "--steps", "-3"],
    ["certify", "radius", "{d}/model.h5", "--at", "0.5", "0.5", "--r-max", "-1"],
    ["certify", "invertibility", "{d}/model.h5", "--cells", "-1"],
    ["certify", "invertibility", "{d}/model.h5", "--threads", "0"],
])
def test_impossible_values(work, capsys, argv):
    assert_refused(work, capsys, [a.format(d=work) for a in argv])


def test_match_eps_on_identical_models_is_not_a_counterexample(work, capsys, tmp_path):
    """Item 5: ``--eps -1`` used to answer 'counterexample' for two identical models; a valid
    eps gives 'certified' (the deviation of a model from itself is exactly 0)."""
    js = tmp_path / "m.json"
    rc, err = run_cli(["match", work / "model.h5", work / "model2.h5", "--lo", "0", "0",
                       "--hi", "1", "1", "--eps", "1e-9", "--json", js], capsys)
    assert rc == 0, err
    assert json.loads(js.read_text())["status"] == "certified"


# --------------------------------------------------------- item 7: files
def test_output_that_is_an_input_is_refused(work, capsys):
    assert_refused(work, capsys, ["prune", work / "model.h5", "--sparsity", "0.5",
                                  "--out", work / "model.h5", "--overwrite"], words=["input"])
    assert_refused(work, capsys, ["evaluate", work / "model.h5", work / "data.nc",
                                  "--json", work / "data.nc", "--overwrite"], words=["input"])


def test_existing_output_needs_overwrite(work, capsys, tmp_path):
    js = tmp_path / "info.json"
    js.write_text("keep")
    rc, err = run_cli(["info", work / "model.h5", "--json", js], capsys)
    assert rc == 2 and "--overwrite" in err and js.read_text() == "keep"
    rc, err = run_cli(["info", work / "model.h5", "--json", js, "--overwrite"], capsys)
    assert rc == 0, err
    assert json.loads(js.read_text())


def test_two_outputs_naming_one_file(work, capsys):
    o = work / "same.out"
    assert_refused(work, capsys, ["reach", work / "model.h5", "--lo", "0", "0", "--hi", "1",
                                  "1", "--steps", "1", "--out", o, "--report", o])


# --------------------------------------------------------- item 3: Ctrl-C
def test_ctrl_c_during_a_mip_reach_is_130(work, capsys, monkeypatch):
    """A KeyboardInterrupt inside the solver loop ends the command with 130 and one line."""
    import sys

    import dynid.milp as milp

    calls = []

    def interrupted(*a, **k):
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["dynid.milp.solve"], "solve", interrupted)
    monkeypatch.setattr(milp, "solve", interrupted)
    rc, err = run_cli(["reach", work / "model.h5", "--lo", "0", "0", "--hi", "1", "1",
                       "--steps", "1", "--engine", "mip"], capsys)
    assert rc == 130 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert calls == [1]          # the first interrupted solve stops the whole loop
