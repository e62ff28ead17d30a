"""CLI ``dynid certify`` and the pipeline stage ``certify``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dynid.cli import main
from dynid.modelfile import save_model
from dynid.relunet import ReLUNet, linear


@pytest.fixture
def neg_abs_file(tmp_path):
    net = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[-1.0, -1.0]])],
                  [np.zeros(2), np.zeros(1)], meta={"domain": {"lo": [-1.0], "hi": [1.0]}})
    return save_model(tmp_path / "negabs.h5", net)


def test_invertibility_json(neg_abs_file, tmp_path, capsys):
    out = tmp_path / "cert.json"
    rc = main(["certify", "invertibility", str(neg_abs_file), "--lo", "-1", "--hi", "1",
               "--norm", "1", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["status"] == "counterexample" and abs(data["value"] - 2.0) < 1e-6
    # the witness re-checks with an independent forward pass of -|x|
    x, y = data["witness"]["x"][0], data["witness"]["y"][0]
    assert abs(-abs(x) + abs(y)) < 1e-9 and abs(x - y) > 1.99
    assert "counterexample" in capsys.readouterr().out


def test_invertibility_uses_domain_and_certifies_linear(tmp_path, capsys):
    path = save_model(tmp_path / "lin.h5", linear(np.array([[2.0, 1.0], [0.0, 1.0]])),
                      domain={"lo": [0, 0], "hi": [1, 1]})
    rc = main(["certify", "invertibility", str(path), "--json", "-"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "certified"


def test_radius_cli(neg_abs_file, capsys):
    rc = main(["certify", "radius", str(neg_abs_file), "--at", "0.5", "--mode", "preimage",
               "--r-max", "3", "--json", "-"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert abs(data["value"] - 1.0) < 1.1e-3 and data["status"] == "certified"


def test_bad_input_exit_2(neg_abs_file, tmp_path, capsys):
    assert main(["certify", "invertibility", str(neg_abs_file), "--lo", "-1", "0",
                 "--hi", "1", "1"]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["certify", "invertibility", str(tmp_path / "missing.h5")]) == 2
    with pytest.raises(SystemExit) as exc:   # refused by argparse, before any work
        main(["certify", "radius", str(neg_abs_file), "--at", "0.1", "0.2", "0.3",
              "--mode", "ball", "--r-max", "-1"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["certify", "invertibility", str(neg_abs_file), "--norm", "3"])
    assert exc.value.code == 2


def test_stage_euler_brusselator(tmp_path):
    from dynid.pipeline import RunContext
    from dynid.report import HtmlReport
    from dynid.stages.certify import fold_curve, run
    from tests.test_invertibility import det_jacobian, fit_surrogate

    # the analytic fold curve is where the exact Euler map's det J vanishes
    xs = np.linspace(2.5, 4.0, 7)
    pts = np.stack([xs, fold_curve(0.15, 2.0, xs)], 1)
    assert np.abs(det_jacobian(pts)).max() < 1e-12

    lo, hi = [2.0, 0.0], [4.0, 2.0]
    net = fit_surrogate(np.array(lo), np.array(hi)).with_meta(
        system="brusselator", map="euler", dt=0.15, params={"a": 1.0, "b": 2.0},
        domain={"lo": lo, "hi": hi}, state_names=["u", "v"])
    path = save_model(tmp_path / "model.h5", net)
    ctx = RunContext(run_dir=tmp_path, config={}, artifacts={"model": path},
                     report=HtmlReport("t"), logger=lambda m: None)
    run({"cells": 1, "grid": 12, "time_limit": 60}, ctx)
    s = ctx.summary["certify"]
    assert s["invertibility"]["status"] == "counterexample"
    assert (tmp_path / "certify_witnesses.png").stat().st_size > 1000
    assert json.loads((tmp_path / "certify.json").read_text())["verdict"].startswith("NOT")


def test_invertibility_cells_cli(neg_abs_file, capsys):
    """Per cell -|x| is injective; the cross pair of the two cells holds the witness."""
    rc = main(["certify", "invertibility", str(neg_abs_file), "--cells", "2", "--json", "-"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "counterexample" and abs(data["value"] - 2.0) < 1e-6
    assert data["info"]["cells"] == 2 and data["info"]["pairs_solved"] == 3
    assert main(["certify", "invertibility", str(neg_abs_file), "--cells", "1"]) == 2


def test_stage_cell_pairs_certify_injective_net(tmp_path):
    from dynid.pipeline import RunContext
    from dynid.report import HtmlReport
    from dynid.stages.certify import run
    from tests.test_invertibility import iresnet

    net = iresnet(2, 6, seed=1).with_meta(domain={"lo": [-1.0, -1.0], "hi": [1.0, 1.0]})
    path = save_model(tmp_path / "model.h5", net)
    ctx = RunContext(run_dir=tmp_path, config={}, artifacts={"model": path},
                     report=HtmlReport("t"), logger=lambda m: None)
    run({"cells": 2, "pairs": True, "grid": 10, "time_limit": 60}, ctx)
    s = ctx.summary["certify"]
    assert s["invertibility"]["status"] == "certified"
    assert s["invertibility"]["info"]["pairs_total"] == 10 and "global_query" not in s
    assert "cell pairs" in ctx.report.to_html()
    with pytest.raises(Exception, match="pairs must be"):
        run({"pairs": "yes"}, ctx)
