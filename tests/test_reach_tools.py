"""Falsification, partitioning/refinement, specifications, reports, config, CLI.

References: analytic reachable sets of linear maps, hand-made boxes, explicit trajectories.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from dynid.errors import DynidError
from dynid.relunet import ReLUNet, linear
from reach.falsify import error_ratio, gradient_points, sampled_boxes
from reach.partition import grid_cells, refine
from reach.reachability import reach
from reach.specs import BoxSpec, HalfSpaceSpec, ReachAvoidSpec, spec_from_dict, verdict

A = np.array([[0.9, 0.4], [-0.3, 0.8]])
LO, HI = np.array([1.0, -1.0]), np.array([2.0, 0.5])


def exact_box(k):
    Ak = np.linalg.matrix_power(A, k)
    mid, rad = (LO + HI) / 2, (HI - LO) / 2
    return Ak @ mid - np.abs(Ak) @ rad, Ak @ mid + np.abs(Ak) @ rad


def abs_net():
    """x -> (|x1|, x2): a ReLU map whose image box is known exactly."""
    return ReLUNet([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]],
                   [[0.0, 0.0, 0.0], [0.0, 0.0]],
                   [[True, True, False], [False, False]])


def test_error_ratio_analytic():
    assert error_ratio([0, 0], [2, 3], [0, 0], [1, 1]) == pytest.approx(5.0)
    assert error_ratio([0], [1], [0], [1]) == 0.0
    assert error_ratio([0, 0], [1, 1], [0, 0], [1, 0]) == float("inf")


def test_sampled_boxes_inside_exact_and_corners_hit_it():
    """The inner box of a linear map is inside the exact box and, with the corners sampled,
    equal to it (the extremes of a linear map are at corners)."""
    f = sampled_boxes(linear(A), LO, HI, 3, n=200, gradient=False)
    for k in range(4):
        lo, hi = exact_box(k)
        assert np.all(f.inner_lo[k] >= lo - 1e-12) and np.all(f.inner_hi[k] <= hi + 1e-12)
        assert np.allclose(f.inner_lo[k], lo) and np.allclose(f.inner_hi[k], hi)
    assert f.n_samples == 204


def test_gradient_points_find_extremes_without_corners():
    """Signed-gradient ascent reaches the maximising corner of d . A^k x for each direction."""
    x0 = gradient_points(linear(A), LO, HI, 2, directions=np.array([[1.0, 0.0]]), restarts=1,
                         iters=40)
    # first row optimises step 1 (x0[0]), second row step 2
    best1 = np.where(A[0] > 0, HI, LO)
    best2 = np.where((A @ A)[0] > 0, HI, LO)
    assert np.allclose(x0[0], best1) and np.allclose(x0[1], best2)


def test_count_outside_detects_unsound_dataset():
    ds = reach(linear(A), LO, HI, 2, engine="crown")
    f = sampled_boxes(linear(A), LO, HI, 2, n=500, check=ds)
    assert f.outside == 0 and f.sound
    bad = ds.copy(deep=True)
    bad["upper"][2, 0, 0] = bad["upper"][2, 0, 0] - 0.2  # shrink the x1 bound: now unsound
    f2 = sampled_boxes(linear(A), LO, HI, 2, n=500, check=bad)
    assert f2.outside > 0 and f2.sound is False


def test_grid_cells_cover_exactly():
    cells = grid_cells([0, -1, 2], [1, 1, 3], [2, 3, 1])
    assert len(cells) == 6
    vol = sum(np.prod(h - l) for l, h in cells)
    assert vol == pytest.approx(2.0)
    with pytest.raises(DynidError):
        grid_cells([0, 0], [1, 1], [2])


def test_refine_shrinks_and_stays_sound():
    """Refinement on x -> |x| across 0: one cell's IBP box is [0, 2] (loose), refined cells
    reach the exact box [0, 1] x [0, 1]."""
    net = abs_net().unroll(1)
    lo, hi = np.array([-1.0, 0.0]), np.array([1.0, 1.0])
    one = reach(net, lo, hi, 1, engine="ibp")
    ds = refine(net, lo, hi, 1, engine="ibp", budget_s=2.0, max_cells=16,
                inner=([0.0, 0.0], [1.0, 1.0]))
    w1 = one.box_hi.values[1] - one.box_lo.values[1]
    wr = ds.box_hi.values[1] - ds.box_lo.values[1]
    assert np.all(wr <= w1 + 1e-12) and wr[0] < w1[0]
    assert w1[0] == pytest.approx(2.0, abs=1e-6) and wr[0] == pytest.approx(1.0, abs=1e-6)
    assert np.all(ds.box_lo.values[1] <= [0.0, 0.0]) and np.all(ds.box_hi.values[1] >= [1, 1])
    x = lo + (hi - lo) * np.random.default_rng(0).random((2000, 2))
    y = net.forward(x)
    assert np.all(y >= ds.box_lo.values[1] - 1e-12) and np.all(y <= ds.box_hi.values[1] + 1e-12)


def test_specs_safe_unsafe_unknown():
    net = linear(A)
    ds = reach(net, LO, HI, 3, engine="crown")
    hull_lo = np.min([exact_box(k)[0] for k in range(1, 4)], axis=0)
    hull_hi = np.max([exact_box(k)[1] for k in range(1, 4)], axis=0)
    assert verdict(BoxSpec(hull_lo - 0.01, hull_hi + 0.01), ds, step_net=net).status == "safe"
    v = verdict(BoxSpec(hull_lo + 0.05, hull_hi), ds, step_net=net)
    assert v.status == "unsafe"
    # the witness is a genuine trajectory that leaves the box
    w = v.witness
    assert np.allclose(w[1], A @ w[0]) and np.any(w[1:] < hull_lo + 0.05)
    # half-space a.x <= b at step 2: exact max is attained at a corner
    a = np.array([1.0, 1.0])
    corners = np.array([[x, y] for x in LO[:1].tolist() + HI[:1].tolist()
                        for y in LO[1:].tolist() + HI[1:].tolist()])
    top = np.max(corners @ np.linalg.matrix_power(A, 2).T @ a)
    octo = reach(net, LO, HI, 3, engine="crown", template="octagon")  # has the x1 + x2 row
    assert verdict(HalfSpaceSpec(a, top + 0.01, steps=(2,)), octo, step_net=net).status == "safe"
    # the box template alone cannot certify it (its corner overshoots): unknown, not safe
    assert verdict(HalfSpaceSpec(a, top + 0.01, steps=(2,)), ds, step_net=net).status == "unknown"
    assert verdict(HalfSpaceSpec(a, top - 0.01, steps=(2,)), octo,
                   step_net=net).status == "unsafe"
    # loose bounds (recursive IBP) and no violation: unknown
    loose = reach(net, LO, HI, 3, method="recursive", engine="ibp")
    lo3, hi3 = exact_box(3)
    w3 = loose.box_hi.values[3] - loose.box_lo.values[3]
    assert np.any(w3 > (hi3 - lo3) + 0.05)
    spec = BoxSpec(lo3 - 0.01, hi3 + 0.01, steps=(3,))
    assert verdict(spec, ds, step_net=net).status == "safe"
    assert verdict(spec, loose, step_net=net).status == "unknown"


def test_reach_avoid():
    net = linear(A)
    ds = reach(net, LO, HI, 3, engine="crown", template="octagon")
    lo3, hi3 = exact_box(3)
    far = (np.array([10.0, 10.0]), np.array([11.0, 11.0]))
    ok = ReachAvoidSpec(avoid=(far,), goal=(lo3 - 0.01, hi3 + 0.01))
    assert verdict(ok, ds, step_net=net).status == "safe"
    lo1, hi1 = exact_box(1)
    hit = ReachAvoidSpec(avoid=(((lo1 + hi1) / 2, hi1 + 1.0),))
    v = verdict(hit, ds, step_net=net)
    assert v.status == "unsafe" and v.witness is not None


def test_spec_from_dict_and_errors():
    s = spec_from_dict({"type": "halfspace", "a": [1, 0], "b": 2.0})
    assert isinstance(s, HalfSpaceSpec) and s.b == 2.0
    s = spec_from_dict({"type": "reach-avoid", "avoid": [[[0, 0], [1, 1]]], "goal": [[0, 0],
                                                                                     [2, 2]]})
    assert isinstance(s, ReachAvoidSpec)
    with pytest.raises(DynidError, match="type"):
        spec_from_dict({"lo": [0]})
    with pytest.raises(DynidError, match="missing"):
        spec_from_dict({"type": "box", "lo": [0]})


def test_report_and_config_roundtrip(tmp_path):
    from dynid.modelfile import save_model
    from reach.config import load_config, run_config
    from reach.reachability import load_reach

    save_model(tmp_path / "step.h5", linear(A))
    (tmp_path / "r.toml").write_text(
        'model = "step.h5"\nlo = [1.0, -1.0]\nhi = [2.0, 0.5]\nsteps = 3\nengine = "lp-highs"\n'
        'samples = 500\nout = "r.nc"\nreport = "r.html"\n'
        '[[spec]]\ntype = "box"\nlo = [-5, -5]\nhi = [5, 5]\n')
    cfg = load_config(tmp_path / "r.toml")
    run = run_config(cfg)
    assert run.verdicts[0].status == "safe"
    ds = load_reach(tmp_path / "r.nc")
    lo3, hi3 = exact_box(3)
    assert np.allclose(ds.box_lo.sel(step=3).values, lo3, atol=1e-6)
    html = (tmp_path / "r.html").read_text()
    assert "data:image/png;base64" in html and "Per-step bounds" in html and "safe" in html
    (tmp_path / "bad.toml").write_text('model = "step.h5"\nlo = [0, 0]\nhi = [1, 1]\nstep = 3\n')
    with pytest.raises(DynidError, match="unknown key"):
        load_config(tmp_path / "bad.toml")


def test_cli_reach(tmp_path, capsys):
    from dynid.cli import main
    from dynid.modelfile import save_model

    save_model(tmp_path / "step.h5", linear(A))
    out = tmp_path / "out.json"
    rc = main(["reach", str(tmp_path / "step.h5"), "--lo", "1", "-1", "--hi", "2", "0.5",
               "--steps", "2", "--engine", "crown", "--samples", "300", "--json", str(out),
               "--out", str(tmp_path / "r.nc")])
    assert rc == 0
    data = json.loads(out.read_text())
    lo2, hi2 = exact_box(2)
    assert np.allclose(data["final_box"]["lo"], lo2, atol=1e-6)
    assert data["sound"] is True and (tmp_path / "r.nc").exists()
    # bad input: a box of the wrong size is exit code 2 with one line
    rc = main(["reach", str(tmp_path / "step.h5"), "--lo", "1", "--hi", "2", "--steps", "2"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "initial box" in err[0]
    # a controller (R^2 -> R^1) is not a step map
    save_model(tmp_path / "ctrl.h5", linear([[1.0, 0.0]]))
    assert main(["reach", str(tmp_path / "ctrl.h5"), "--lo", "0", "0", "--hi", "1", "1",
                 "--steps", "2"]) == 2
    # --device cpu gives the same boxes; an unknown device is bad input
    out_cpu = tmp_path / "cpu.json"
    assert main(["reach", str(tmp_path / "step.h5"), "--lo", "1", "-1", "--hi", "2", "0.5",
                 "--steps", "2", "--engine", "crown", "--samples", "300", "--device", "cpu",
                 "--partitions", "2", "--json", str(out_cpu)]) == 0
    assert np.allclose(json.loads(out_cpu.read_text())["final_box"]["lo"], lo2, atol=1e-6)
    with pytest.raises(SystemExit) as exc:   # refused by the option's type, before any work
        main(["reach", str(tmp_path / "step.h5"), "--lo", "1", "-1", "--hi", "2", "0.5",
              "--steps", "2", "--device", "tpu"])
    assert exc.value.code == 2


def test_pipeline_stage(tmp_path):
    """The stage reads the run's model, writes reach.nc, fills the summary and the report."""
    from dynid.modelfile import save_model
    from dynid.pipeline import RunContext
    from reach.stage import run

    path = save_model(tmp_path / "m.h5", linear(A).with_meta(domain={"lo": [0, -2],
                                                                     "hi": [2, 2]}))
    ctx = RunContext(run_dir=tmp_path, config={}, artifacts={"model": path},
                     base_dir=tmp_path, logger=lambda m: None)
    run({"steps": 2, "engine": "crown", "samples": 200}, ctx)
    s = ctx.summary["reach"]
    assert s["sound"] is True and (tmp_path / "reach.nc").exists()
    # default box: the central 10 % of the training domain
    assert np.allclose(s["boxes"]["lo"][0], [0.9, -0.2]) and np.allclose(s["boxes"]["hi"][0],
                                                                          [1.1, 0.2])
    # one default-box rule: dynid reach on the same model starts from the same box
    from dynid.cli import main

    assert main(["reach", str(path), "--steps", "2", "--engine", "crown", "--samples", "200",
                 "--out", str(tmp_path / "cli.nc"), "--json", str(tmp_path / "cli.json")]) == 0
    cli = json.loads((tmp_path / "cli.json").read_text())["boxes"]
    assert cli["lo"][0] == s["boxes"]["lo"][0] and cli["hi"][0] == s["boxes"]["hi"][0]
    assert "Reachable sets of the surrogate" in ctx.report.to_html()
    with pytest.raises(DynidError, match="unknown key"):
        run({"stepz": 2}, ctx)


def test_refine_final_engine_on_small_cells():
    """Small worst cells are re-bounded with the exact engine; the result stays sound.

    IBP bounds |x1| on [-1, 1] by [0, 2]; the triangle LP gives the exact [0, 1], so once the
    cell counts as small (width 1.0 relative to X0) the exact engine closes the gap without a split.
    """
    net = abs_net()
    lo, hi = np.array([-1.0, 0.0]), np.array([1.0, 1.0])
    ds = refine(net, lo, hi, 1, engine="ibp", final_engine="lp-highs", final_cell_width=1.0,
                budget_s=3.0, max_cells=8, inner=([0.0, 0.0], [1.0, 1.0]))
    assert ds.attrs["engine"] == "lp-highs" and ds.attrs["n_cells"] == 1
    assert ds.box_hi.values[1][0] == pytest.approx(1.0, abs=1e-6)
    x = lo + (hi - lo) * np.random.default_rng(1).random((2000, 2))
    y = net.forward(x)
    assert np.all(y >= ds.box_lo.values[1] - 1e-12) and np.all(y <= ds.box_hi.values[1] + 1e-12)


def test_double_integrator_example_config():
    """examples/double_integrator.toml parses and names the shipped benchmark."""
    from pathlib import Path

    from reach.config import load_config

    path = Path(__file__).resolve().parents[1] / "examples" / "double_integrator.toml"
    rc = load_config(path)
    assert rc.steps == 5 and rc.options["engine"] == "lp-highs"
    assert np.allclose(rc.lo, [2.5, -0.25]) and np.allclose(rc.hi, [3.0, 0.25])
    assert rc.out.name == "reach.nc" and rc.out.parent.name == "double_integrator"
