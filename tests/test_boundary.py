"""Exact distance to the decision boundary, checked against independent references: closed
forms on nets with a hand-computable boundary (a line, the L1 unit sphere, a 1-D kink, a
3-class argmax), a brute-force grid of the other side for random 2-D nets, sampling inside the
certified ball, the float64 re-evaluation of every witness, and homogeneity (a bias-free net
scaled by t has its distances scaled by t)."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dynid.certify.boundary import (Region, boundary_distance, decision, region_bounds,
                                    rounding_bound)
from dynid.errors import ConfigError, NormError, ShapeError
from dynid.random_nets import he_mlp
from dynid.relunet import ReLUNet
from tests.conftest import random_relunet

NORMS = {"1": 1.0, "2": 2.0, "inf": math.inf}
DUAL = {"1": math.inf, "2": 2.0, "inf": 1.0}


def l1_sphere(s: float = 1.0) -> ReLUNet:
    """F(x) = |x0| + |x1| - s: the boundary is the L1 sphere of radius s."""
    w1 = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    return ReLUNet([w1, np.ones((1, 4))], [np.zeros(4), np.array([-s])])


def check_bracket(net, x, cert, p, *, samples: int = 2000, seed: int = 0, domain=None):
    """The bracket is ordered, the witness is on the other side in float64 at the reported
    distance, and no sampled point of the certified ball is on the other side."""
    info = cert.info
    lo, hi = cert.value, cert.bound
    assert info["lower"] <= lo + 1e-12
    assert lo <= hi
    assert hi <= info["upper"] + 1e-12 * (1 + info["upper"])
    label, C = decision(net, x)
    if cert.witness is not None:
        w = np.asarray(cert.witness["x"], float)
        f = net.forward(w)                      # independent float64 re-evaluation
        assert np.min(C @ f) < 0
        new = int(f[0] > 0) if net.n_out == 1 else int(np.argmax(f))
        assert new != label
        assert np.linalg.norm(w - x, ord=p) == pytest.approx(hi, rel=1e-12, abs=1e-300)
    if math.isfinite(lo) and lo > 0:
        pts = _ball_samples(x, lo * (1 - 1e-9), p, samples, seed)
        if domain is not None:      # only points of the domain count
            pts = pts[np.all((pts >= domain[0]) & (pts <= domain[1]), axis=1)]
        g = net.forward(pts) @ C.T
        assert np.all(g.min(axis=1) >= -1e-12 * (1 + np.abs(g).max())), \
            "a point inside the certified ball is on the other side"


def _ball_samples(x, r, p, k, seed):
    """Points of the L_p ball of radius r around x: inside, on the sphere, and (L-inf) corners."""
    rng = np.random.default_rng(seed)
    n = x.size
    d = rng.standard_normal((k, n))
    if math.isinf(p):
        d = rng.uniform(-1, 1, (k, n))
        d[: k // 2] = np.sign(d[: k // 2])          # corners
    elif p == 1.0:
        d = rng.laplace(size=(k, n))
    d /= np.linalg.norm(d, ord=p, axis=1, keepdims=True)
    scale = np.where(np.arange(k) % 2 == 0, 1.0, rng.random(k) ** (1 / n))
    return x + r * scale[:, None] * d


# ------------------------------------------------------------------ hand-computable boundaries
@pytest.mark.parametrize("norm", ["1", "2", "inf"])
def test_line_matches_the_dual_norm_formula(norm):
    # sign of a.x + b: the distance from x is |a.x + b| / ||a||_q
    a, b = np.array([2.0, -1.0, 0.5]), 0.3
    net = ReLUNet([a[None, :]], [np.array([b])])
    x = np.array([0.4, 0.1, -0.2])
    cert = boundary_distance(net, x, norm, gap=1e-6)
    truth = abs(a @ x + b) / np.linalg.norm(a, ord=DUAL[norm])
    assert cert.status.value == "certified"
    assert cert.value == pytest.approx(truth, abs=1e-6)
    assert cert.bound == pytest.approx(truth, abs=1e-6)
    check_bracket(net, x, cert, NORMS[norm])


@pytest.mark.parametrize("norm, truth", [("inf", 0.5), ("2", 2 ** -0.5), ("1", 1.0)])
def test_l1_sphere_from_the_origin(norm, truth):
    cert = boundary_distance(l1_sphere(), [0.0, 0.0], norm, gap=1e-6)
    assert cert.status.value == "certified"
    assert cert.value == pytest.approx(truth, abs=1e-6)
    assert cert.bound == pytest.approx(truth, abs=1e-6)
    check_bracket(l1_sphere(), np.zeros(2), cert, NORMS[norm])


@pytest.mark.parametrize("norm, truth", [("inf", 0.7), ("2", math.sqrt(0.58)), ("1", 1.0)])
def test_domain_moves_the_nearest_point(norm, truth):
    # only |x0| <= 0.3 counts: the nearest sphere point is (0.3, 0.7) for L-inf and L2
    dom = (np.array([-0.3, -2.0]), np.array([0.3, 2.0]))
    cert = boundary_distance(l1_sphere(), [0.0, 0.0], norm, domain=dom, gap=1e-6)
    assert cert.status.value == "certified"
    assert cert.value == pytest.approx(truth, abs=1e-6)
    assert cert.bound == pytest.approx(truth, abs=1e-6)
    w = np.asarray(cert.witness["x"])
    assert np.all(w >= dom[0]) and np.all(w <= dom[1])
    check_bracket(l1_sphere(), np.zeros(2), cert, NORMS[norm], domain=dom)


def test_one_dimensional_kink_and_an_empty_domain():
    net = ReLUNet([np.array([[1.0]]), np.array([[1.0]])], [np.array([-1.0]), np.array([-0.5])])
    for x in (0.0, 3.0):     # F = relu(x - 1) - 0.5: the boundary is x = 1.5
        cert = boundary_distance(net, [x], "inf", gap=1e-6)
        assert cert.status.value == "certified"
        assert cert.value == pytest.approx(1.5, abs=1e-6)
        assert cert.bound == pytest.approx(1.5, abs=1e-6)
    none = boundary_distance(net, [0.0], "2", domain=([-1.0], [1.2]))
    assert none.status.value == "certified" and none.value == math.inf
    assert none.witness is None and none.info["no_boundary_in_domain"]


@pytest.mark.parametrize("norm, truth", [("inf", 0.4), ("2", 0.5), ("1", 0.5)])
def test_argmax_of_three_outputs(norm, truth):
    # outputs (x0, x1, 0.5) at (1, 0.2): class 0 is lost at x1 = x0 or at x0 = 0.5
    net = ReLUNet([np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])], [np.array([0.0, 0.0, 0.5])])
    x = np.array([1.0, 0.2])
    cert = boundary_distance(net, x, norm, gap=1e-6)
    assert cert.info["label"] == 0 and cert.info["n_margins"] == 2
    assert cert.status.value == "certified"
    assert cert.value == pytest.approx(truth, abs=1e-6)
    assert cert.bound == pytest.approx(truth, abs=1e-6)
    check_bracket(net, x, cert, NORMS[norm])


# ------------------------------------------------------------------ random nets: soundness
def _grid_distance(net, x, p, C, half, k=401, dom=None):
    """Brute force: the smallest distance from x of a grid point on the other side."""
    lo, hi = (x - half, x + half) if dom is None else dom
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], k), np.linspace(lo[1], hi[1], k))
    pts = np.stack([g0.ravel(), g1.ravel()], 1)
    other = (net.forward(pts) @ C.T).min(axis=1) < 0
    if not other.any():
        return math.inf
    return float(np.linalg.norm(pts[other] - x, ord=p, axis=1).min())


RANDOM_2D = dict(seed=st.integers(0, 2**31 - 1), norm=st.sampled_from(["1", "2", "inf"]),
                 scale=st.sampled_from([1.0, 1e-6, 1e-8]), n_out=st.sampled_from([1, 2, 3]))


@settings(max_examples=6, deadline=None)
@given(**RANDOM_2D)
def test_random_2d_nets_against_a_brute_force_grid(seed, norm, scale, n_out):
    _random_2d_case(seed, norm, scale, n_out)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(**RANDOM_2D)
def test_random_2d_nets_against_a_brute_force_grid_many(seed, norm, scale, n_out):
    _random_2d_case(seed, norm, scale, n_out)


def _random_2d_case(seed, norm, scale, n_out):
    rng = np.random.default_rng(seed)
    base = random_relunet(rng, [2, 8, 8, n_out])
    # the same net on inputs scaled by `scale`: every distance scales by it
    net = ReLUNet([base.weights[0] / scale] + list(base.weights[1:]), base.biases, base.relu)
    x = rng.uniform(-1, 1, 2) * scale
    p = NORMS[norm]
    cert = boundary_distance(net, x, norm, r_max=4 * scale)
    check_bracket(net, x, cert, p, seed=seed)
    if cert.witness is None:
        return
    _, C = decision(net, x)
    half = 1.05 * cert.info["upper"]
    grid = _grid_distance(net, x, p, C, np.full(2, half))
    assert grid >= cert.value - 1e-12 * scale       # no grid point beats the certified bound
    if cert.status.value == "certified":             # nor the witness (up to the gap)
        assert cert.bound <= grid + 1e-4 * cert.bound + 1e-9 + 1e-12 * scale


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), norm=st.sampled_from(["1", "2", "inf"]),
       where=st.sampled_from(["corner", "face"]))
def test_points_on_the_domain_boundary(seed, norm, where):
    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [2, 6, 6, 2])
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    x = np.array([1.0, -1.0]) if where == "corner" else np.array([1.0, rng.uniform(-1, 1)])
    p = NORMS[norm]
    cert = boundary_distance(net, x, norm, domain=(lo, hi))
    check_bracket(net, x, cert, p, seed=seed, domain=(lo, hi))
    _, C = decision(net, x)
    grid = _grid_distance(net, x, p, C, None, dom=(lo, hi))
    if grid == math.inf:      # no grid point of the domain on the other side
        assert cert.witness is None or cert.bound <= _grid_far(x, p, lo, hi)
        return
    assert grid >= cert.value - 1e-12
    if cert.witness is not None:
        w = np.asarray(cert.witness["x"])
        assert np.all(w >= lo) and np.all(w <= hi)
    if cert.status.value == "certified":
        assert cert.bound <= grid + 1e-4 * cert.bound + 1e-9


def _grid_far(x, p, lo, hi):
    return float(np.linalg.norm(np.maximum(x - lo, hi - x), ord=p))


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), norm=st.sampled_from(["1", "2", "inf"]))
@example(seed=3269480, norm="1")
def test_bias_free_nets_are_homogeneous(seed, norm):
    # F(t x) = t F(x) without biases, so the distance from t x is t times that from x
    net = he_mlp(6, [12, 12], seed=seed % 1000)
    x = np.random.default_rng(seed).random(6) + 0.1
    a = boundary_distance(net, x, norm)
    b = boundary_distance(net, 3.0 * x, norm)
    # the brackets scale in every status (both are valid: lower <= distance <= upper)
    assert 3.0 * a.value <= b.bound * (1 + 1e-9) and b.value <= 3.0 * a.bound * (1 + 1e-9)
    assert a.status.value == b.status.value
    if a.status.value != "certified":
        # a tie plateau (two logits equal on a whole cone, e.g. seed 3269480, L1): the
        # distance is not decidable there, and both points must say so
        assert a.info.get("tie_plateau") and b.info.get("tie_plateau")
        return
    assert b.bound == pytest.approx(3.0 * a.bound, rel=2e-4)


@pytest.mark.parametrize("norm", ["1", "inf"])
def test_obbt_tightening_gives_the_same_distance(norm):
    rng = np.random.default_rng(5)
    net = random_relunet(rng, [4, 10, 10, 2])
    x = rng.random(4)
    a = boundary_distance(net, x, norm, gap=1e-6)
    b = boundary_distance(net, x, norm, gap=1e-6, tighten="obbt")
    assert a.status.value == b.status.value == "certified"
    assert b.bound == pytest.approx(a.bound, rel=1e-5)
    assert b.info["n_unstable"] <= a.info["n_unstable"]


# ------------------------------------------------------------------ solvers and limits
def test_l2_falls_back_to_scip_when_gurobi_refuses():
    # 16 inputs, 2 x 64 ReLUs: over the ~200 variables the size-limited Gurobi licence allows
    # once a model is quadratic (a point of the study with few unstable units: fast in SCIP)
    from dynid.random_nets import study_grid

    spec = study_grid(ns=[16], n_nets=1, n_inputs=1, norms=["2"])[0]
    net = he_mlp(16, spec["widths"], seed=spec["net_seed"])
    x = np.random.default_rng(spec["input_seed"]).random(16)
    cert = boundary_distance(net, x, "2")
    assert cert.solver == "scip" and cert.info["mip_solver"] == "scip"
    if importlib.util.find_spec("gurobipy") is not None:
        assert "gurobi refused" in cert.info["mip_message"]
    assert cert.status.value == "certified"
    check_bracket(net, x, cert, 2.0)


def test_time_limit_gives_unknown_with_a_sound_bracket():
    from dynid.random_nets import study_grid

    spec = study_grid(ns=[32], n_nets=1, n_inputs=1, norms=["2"])[0]
    net = he_mlp(32, spec["widths"], seed=spec["net_seed"])
    x = np.random.default_rng(spec["input_seed"]).random(32)
    cert = boundary_distance(net, x, "2", time_limit=1.0)
    assert cert.status.value == "unknown"
    assert cert.gap > 0 and cert.value < cert.bound
    check_bracket(net, x, cert, 2.0)


def test_certificate_is_json():
    cert = boundary_distance(l1_sphere(), [0.1, 0.0], "inf")
    d = json.loads(json.dumps(cert.to_dict()))
    assert d["query"] == "boundary_distance" and d["status"] == "certified"
    for key in ("lower", "upper", "exact_lo", "exact_hi", "seconds_mip"):
        assert key in d["info"]


# ------------------------------------------------------------------ pieces
def test_region_bounds_hold_on_samples_of_the_ball():
    rng = np.random.default_rng(3)
    net = random_relunet(rng, [5, 12, 12, 2])
    x = rng.uniform(-1, 1, 5)
    for p in (1.0, 2.0, math.inf):
        region = Region.make(x, 0.4, p, np.full(5, -np.inf), np.full(5, np.inf))
        b = region_bounds(net, region)
        pts = _ball_samples(x, 0.4, p, 3000, 0)
        for z, l, u in zip(net.preactivations(pts), b.lower, b.upper):
            assert np.all(z >= l - 1e-12) and np.all(z <= u + 1e-12)


def test_rounding_bound_covers_the_float64_error():
    # exact arithmetic by fractions on a small net with awkward values
    from fractions import Fraction

    rng = np.random.default_rng(0)
    net = random_relunet(rng, [3, 5, 2])
    y = rng.uniform(-1, 1, 3)
    h = [Fraction(v) for v in y]
    for w, b, relu in zip(net.weights, net.biases, net.relu):
        z = [sum(Fraction(wij) * hj for wij, hj in zip(row, h)) + Fraction(bi)
             for row, bi in zip(w, b)]
        h = [max(v, Fraction(0)) if r else v for v, r in zip(z, relu)]
    err = np.abs(np.array([float(Fraction(v) - hv) for v, hv in zip(net.forward(y), h)]))
    assert np.all(err <= rounding_bound(net, y))


def test_bad_input_is_refused_with_one_clear_line():
    net = l1_sphere()
    with pytest.raises(ShapeError, match="x needs 2 values"):
        boundary_distance(net, [0.0, 0.0, 0.0])
    with pytest.raises(ShapeError, match="finite"):
        boundary_distance(net, [np.nan, 0.0])
    with pytest.raises(ShapeError, match="outside the domain"):
        boundary_distance(net, [2.0, 0.0], domain=([-1, -1], [1, 1]))
    with pytest.raises(NormError):
        boundary_distance(net, [0.0, 0.0], norm="3")
    for kw in ({"time_limit": -1.0}, {"time_limit": 0}, {"gap": float("nan")},
               {"abs_gap": -1.0}, {"tighten": "lp"}, {"tau": -1.0}, {"r_max": 0.0},
               {"r_max": float("inf")}):
        with pytest.raises(ConfigError):
            boundary_distance(net, [0.0, 0.0], **kw)
    with pytest.raises(ShapeError):
        boundary_distance("net", [0.0, 0.0])


# ------------------------------------------------------------------ CLI
def test_cli_boundary_json_and_bad_input(tmp_path, capsys):
    from dynid.cli import main
    from dynid.modelfile import save_model

    # sign of x0 + x1 - 1 on [-2, 2]^2: from the origin the line is 1/2 away in L-inf, 1 in L1
    net = ReLUNet([np.array([[1.0, 1.0]])], [np.array([-1.0])],
                  meta={"domain": {"lo": [-2.0, -2.0], "hi": [2.0, 2.0]}})
    model = save_model(tmp_path / "line.h5", net)
    out = tmp_path / "d.json"
    for norm, truth in (("inf", 0.5), ("1", 1.0), ("2", 1 / math.sqrt(2))):
        rc = main(["certify", "boundary", str(model), "--at", "0", "0", "--norm", norm,
                   "--json", str(out), "--overwrite"])
        assert rc == 0
        d = json.loads(out.read_text())
        assert d["status"] == "certified"
        assert d["value"] <= truth + 1e-9 and d["bound"] == pytest.approx(truth, abs=1e-6)
        w = np.asarray(d["witness"]["x"])
        assert w.sum() - 1 > 0                      # independent re-check: other side
    assert "certified" in capsys.readouterr().out
    bad = tmp_path / "never.json"
    for args in (["--at", "0"], ["--at", "0", "0", "--time-limit", "-1"],
                 ["--at", "0", "0", "--json", str(tmp_path)],
                 ["--at", "9", "9", "--json", str(bad)]):   # outside the domain
        try:
            rc = main(["certify", "boundary", str(model), *args])
        except SystemExit as exc:       # argparse's own refusal (a bad number)
            rc = exc.code
        assert rc == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not bad.exists()
