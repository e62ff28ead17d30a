"""Matching / calibration against known answers: planted affine maps, compositions, a
noninvertible f1 with the identity as f2, and an LP on a dense grid as reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dynid import ReLUNet
from dynid.relunet import compose, linear
from tests.conftest import random_relunet

import dynid.milp as milp  # noqa: E402,F401  (the package's own modules: never skipped)

from dynid.certify.matching import (_fit_affine_linf, calibrate, is_function_of,  # noqa: E402
                                    preservation_report, transformation_invertible)
from dynid.errors import DynidError  # noqa: E402


@settings(max_examples=3)
@given(seed=st.integers(0, 10_000))
def test_calibrate_recovers_planted_affine_map(seed):
    rng = np.random.default_rng(seed)
    f1 = random_relunet(rng, [2, 6, 3])
    A = rng.normal(size=(2, 3))
    b = rng.normal(size=2)
    f2 = compose(linear(A, b), f1)
    res = calibrate(f1, f2, [-1, -1], [1, 1], solver="highs")
    assert res.status.value == "certified"
    assert res.residual < 1e-4
    # A is identifiable when f1's outputs span R^3 affinely on the box: compare the maps
    x = rng.uniform(-1, 1, size=(500, 2))
    assert np.abs(f1.forward(x) @ res.A.T + res.b - f2.forward(x)).max() < 1e-5
    assert np.allclose(res.A, A, atol=1e-5) and np.allclose(res.b, b, atol=1e-5)


def test_calibrate_general_pair_against_dense_grid_lp():
    rng = np.random.default_rng(3)
    f1 = random_relunet(rng, [1, 5, 2])
    f2 = random_relunet(rng, [1, 4, 1])
    res = calibrate(f1, f2, [-1.0], [1.0], solver="highs", tol=1e-4)
    assert res.status.value == "certified"
    xs = np.linspace(-1, 1, 20001)[:, None]
    # soundness: the certified residual of the returned T covers every grid point
    grid_res = np.abs(f1.forward(xs) @ res.A.T + res.b - f2.forward(xs)).max()
    assert grid_res <= res.residual + 1e-9
    # optimality: the best affine map on the dense grid (independent LP) is not much better
    _, _, t_grid, _ = _fit_affine_linf(f1.forward(xs), f2.forward(xs))
    # a grid point is within h/2 of any point of the box, so the LP on the box points used by
    # calibrate exceeds the grid LP by at most Lip(residual) * h / 2
    lip = np.abs(res.A).sum() * np.prod([np.linalg.norm(w, 2) for w in f1.weights]) + \
        np.prod([np.linalg.norm(w, 2) for w in f2.weights])
    assert res.lower_bound <= t_grid + lip * 1e-4 + 1e-9
    assert res.residual <= t_grid + 1e-4 * max(1, res.residual) + 1e-5
    d = res.to_dict()
    assert d["status"] == "certified" and len(d["A"]) == 1


def test_is_function_of_true_for_composition():
    rng = np.random.default_rng(4)
    f1 = random_relunet(rng, [2, 6, 2])
    g = random_relunet(rng, [2, 5, 2])
    f2 = compose(g, f1)
    cert = is_function_of(f1, f2, [-1, -1], [1, 1], solver="highs")
    assert cert.status.value == "certified"
    assert cert.bound <= 1e-5


def _fold_net():
    """(x1, x2) -> (|x1|, x2): noninvertible, pairs (t, s) and (-t, s) collide."""
    w1 = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    w2 = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return ReLUNet([w1, w2], [np.zeros(3), np.zeros(2)], [np.array([1, 1, 0], bool),
                                                          np.zeros(2, bool)])


@pytest.mark.parametrize("method", ["ours", "naive"])
def test_is_function_of_false_with_checked_witness(method):
    f1 = _fold_net()
    f2 = linear(np.eye(2))
    lo, hi = np.array([-1.0, -0.5]), np.array([0.8, 0.5])
    cert = is_function_of(f1, f2, lo, hi, solver="highs", method=method)
    assert cert.status.value == "counterexample"
    x, y = cert.witness["x"], cert.witness["y"]
    # check by hand: same image under f1, different points; the best pair is (0.8, s), (-0.8, s)
    assert np.abs(f1.forward(x) - f1.forward(y)).max() <= 1e-9
    assert np.abs(x - y).max() == pytest.approx(cert.value)
    assert cert.value == pytest.approx(1.6, abs=1e-6)
    assert cert.bound == pytest.approx(1.6, abs=1e-5)
    # the other way round: f1 is a function of the identity, always
    assert is_function_of(f2, f1, lo, hi, solver="highs").status.value == "certified"


def test_transformation_invertible():
    rng = np.random.default_rng(6)
    f1 = random_relunet(rng, [2, 6, 2])
    good = compose(linear([[1.0, 2.0], [0.0, 1.0]], [0.3, 0.0]), f1)   # invertible A
    bad = compose(linear([[1.0, 2.0], [0.5, 1.0]]), f1)                  # rank 1
    assert transformation_invertible(f1, good, [-1, -1], [1, 1], solver="highs").certified
    c = transformation_invertible(f1, bad, [-1, -1], [1, 1], solver="highs")
    if c.status.value == "counterexample":
        x, y = c.witness["x"], c.witness["y"]
        assert np.abs(bad.forward(x) - bad.forward(y)).max() <= 1e-6
        assert np.abs(f1.forward(x) - f1.forward(y)).max() == pytest.approx(c.value)
    else:  # f1 itself collapses the direction only if it is constant along it: not here
        pytest.fail(f"expected a counterexample, got {c.summary()}")


def test_preservation_report_small():
    pytest.importorskip("dynid.certify.radius")
    from dynid.prune import prune

    rng = np.random.default_rng(7)
    inner = random_relunet(rng, [2, 6, 2], scale=0.2)
    from dynid.relunet import residual

    f = residual(inner, 0.5)           # x + 0.5 g(x) with small g: invertible
    p = prune(f, 0.3)
    rep = preservation_report(f, p, [-1, -1], [1, 1], points=[[0.1, 0.2]], solver="highs",
                              time_limit=60)
    assert rep["invertibility"]["original"]["status"] in ("certified", "counterexample",
                                                          "unknown")
    assert isinstance(rep["preserved"], bool)
    assert rep["deviation"]["bound"] >= rep["deviation"]["value"] >= 0
    assert len(rep["radii"]) == 1


def test_bad_input():
    rng = np.random.default_rng(8)
    f1 = random_relunet(rng, [2, 4, 2])
    with pytest.raises(DynidError, match="kind"):
        calibrate(f1, f1, [-1, -1], [1, 1], kind="spline")
    with pytest.raises(DynidError, match="same input"):
        is_function_of(f1, random_relunet(rng, [3, 4, 2]), [-1, -1], [1, 1])


def test_cli_match(tmp_path):
    import json

    from dynid import save_model
    from dynid.cli import main

    rng = np.random.default_rng(10)
    f1 = random_relunet(rng, [2, 5, 2])
    w = [np.array(x) for x in f1.weights]
    w[1][0, 0] += 0.25
    f2 = ReLUNet(w, f1.biases)
    save_model(tmp_path / "a.h5", f1)
    save_model(tmp_path / "b.h5", f2)
    rc = main(["match", str(tmp_path / "a.h5"), str(tmp_path / "b.h5"), "--lo", "-1", "-1",
               "--hi", "1", "1", "--solver", "highs", "--json", str(tmp_path / "m.json")])
    assert rc == 0
    d = json.loads((tmp_path / "m.json").read_text())
    # independent check: the deviation is 0.25 * relu(z_0(x)), maximised over a dense grid
    g = np.stack(np.meshgrid(np.linspace(-1, 1, 401), np.linspace(-1, 1, 401)), -1).reshape(-1, 2)
    ref = 0.25 * np.maximum(g @ f1.weights[0][0] + f1.biases[0][0], 0).max()
    assert d["status"] == "certified"
    assert d["bound"] >= ref - 1e-9 and d["value"] == pytest.approx(ref, abs=1e-6)
    assert main(["match", str(tmp_path / "a.h5"), str(tmp_path / "b.h5"), "--lo", "-1",
                 "--hi", "1"]) == 2
