"""Largest certified boxes (dynid.certify.maxbox): analytic optima, MIP and sampling checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynid.certify import keep_label, max_box, output_range, safe_set
from dynid.certify.maxbox import OutputSpec, max_box_job, mip_check
from dynid.certify.maxbox_relax import RELAXATIONS, BoxRelaxation
from dynid.errors import DynidError
from dynid.relunet import ReLUNet, linear, residual
from tests.conftest import random_relunet

REPO = Path(__file__).resolve().parents[1]
VORONOI = REPO / "examples" / "voronoi_mlp.h5"
DOM2 = (np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


def _voronoi():
    from dynid.modelfile import load_model

    return load_model(VORONOI)


def _samples_hold(net_k, spec: OutputSpec, lo, hi, n, seed=0) -> bool:
    """Uniform samples, every corner and face centres of the box all satisfy the spec."""
    rng = np.random.default_rng(seed)
    d = lo.size
    corners = np.array(np.meshgrid(*[[a, b] for a, b in zip(lo, hi)])).reshape(d, -1).T
    mid = (lo + hi) / 2
    faces = np.concatenate([np.where(np.eye(d, dtype=bool), lo, mid),
                            np.where(np.eye(d, dtype=bool), hi, mid)])
    X = np.concatenate([rng.uniform(lo, hi, size=(n, d)), corners, faces])
    return bool(spec.holds(net_k.forward(X)).all())


def _mip_holds(net_k, spec: OutputSpec, lo, hi) -> bool:
    """Independent exact check through the MIP layer's output_range (sound best bounds)."""
    _, upper = output_range(net_k, lo, hi, spec.H)
    return bool(np.all(upper < spec.c) if spec.strict else np.all(upper <= spec.c))


def _resolved(net_k, cert) -> OutputSpec:
    s = cert.info["spec"]
    return OutputSpec(np.array(s["H"]), np.array(s["c"]), s["kind"], s["strict"], s["label"])


def _tube(net, x0, steps, tol):
    """Safe set: each state after ``steps`` steps within ``tol`` of that of x0."""
    y = (net if steps == 1 else net.unroll(steps)).forward(x0)
    n = y.size
    return safe_set(np.vstack([np.eye(n), -np.eye(n)]), np.r_[y + tol, -(y - tol)])


# ---------------------------------------------------------------------- the relaxation
@settings(max_examples=12)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1.0, 1e-6, 1e-8]))
def test_relaxation_bounds_every_sampled_point(seed, scale):
    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [3, 6, 5, 2], identity_frac=0.2)
    C = rng.normal(size=(3, 2))
    center = rng.normal(size=3)
    rad = scale * rng.uniform(0.1, 2.0, size=3)
    lo, hi = center - rad, center + rad
    X = np.concatenate([rng.uniform(lo, hi, size=(4000, 3)),
                        np.array(np.meshgrid(*zip(lo, hi))).reshape(3, -1).T])
    top = (net.forward(X) @ C.T).max(0)
    import torch

    for method in RELAXATIONS:
        rel_t = BoxRelaxation(net, C, method, backend="torch")
        t_lo, t_hi = torch.as_tensor(lo[None]), torch.as_tensor(hi[None])
        if method == "crown-opt":
            rel_t.init_alphas(t_lo, t_hi)
        up_t = rel_t.upper(t_lo, t_hi).detach().numpy()[0]
        assert np.all(up_t >= top - 1e-12 * (1 + np.abs(top))), method
        if method != "crown-opt":
            up_n = BoxRelaxation(net, C, method).upper(lo[None], hi[None])[0]
            np.testing.assert_allclose(up_n, up_t, rtol=1e-12, atol=1e-15)


def test_relaxation_is_at_least_as_tight_as_sound_crown():
    from dynid.bounds import crown_output

    rng = np.random.default_rng(3)
    for _ in range(10):
        net = random_relunet(rng, [2, 8, 8, 3])
        C = rng.normal(size=(4, 3))
        lo = rng.uniform(-1, 0, 2)
        hi = lo + rng.uniform(0.1, 1, 2)
        _, sound = crown_output(net, lo, hi, C)
        ours = BoxRelaxation(net, C, "crown").upper(lo[None], hi[None])[0]
        assert np.all(ours <= sound + 1e-9)


@settings(max_examples=10)
@given(seed=st.integers(0, 10_000), method=st.sampled_from(["crown", "fastlin"]))
def test_hand_written_gradient_equals_autograd(seed, method):
    """The numpy reverse mode (through intermediate bounds, slopes and interval bounds)
    against torch autograd on the dense batched passes of the same relaxation."""
    import torch

    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [3, 6, 6, 5, 2], identity_frac=0.2)
    if seed % 3 == 0:
        net = residual(random_relunet(rng, [2, 6, 6, 2]), 0.1).unroll(3)
    C = rng.normal(size=(3, net.n_out))
    n = net.n_in
    c = rng.normal(size=n)
    lo, hi = c - rng.uniform(0.1, 1, n), c + rng.uniform(0.1, 1, n)
    gbar = rng.normal(size=3)
    up, vjp = BoxRelaxation(net, C, method).upper_vjp(lo, hi)
    g_lo, g_hi = vjp(gbar)
    t_lo = torch.tensor(lo[None], requires_grad=True)
    t_hi = torch.tensor(hi[None], requires_grad=True)
    ut = BoxRelaxation(net, C, method, backend="torch").upper(t_lo, t_hi)[0]
    (ut @ torch.as_tensor(gbar)).backward()
    np.testing.assert_allclose(up, ut.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g_lo, t_lo.grad.numpy()[0], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(g_hi, t_hi.grad.numpy()[0], rtol=1e-9, atol=1e-10)


def test_gradient_of_a_linear_map_matches_finite_differences():
    rng = np.random.default_rng(0)
    net = linear(rng.normal(size=(3, 2)), rng.normal(size=3))
    C = rng.normal(size=(2, 3))
    rel = BoxRelaxation(net, C)
    lo, hi = np.array([-1.0, 0.0]), np.array([0.5, 2.0])
    for r in range(2):
        up, vjp = rel.upper_vjp(lo, hi)
        g_lo, g_hi = vjp(np.eye(2)[r])
        for i in range(2):
            e = np.eye(2)[i] * 1e-6
            assert (rel.upper_vjp(lo + e, hi)[0][r] - up[r]) / 1e-6 == pytest.approx(g_lo[i],
                                                                                   abs=1e-6)
            assert (rel.upper_vjp(lo, hi + e)[0][r] - up[r]) / 1e-6 == pytest.approx(g_hi[i],
                                                                                   abs=1e-6)


# ---------------------------------------------------------------------- analytic optima
@pytest.mark.parametrize("k", [[1.0, 4.0], [1.0, 100.0], [3.0, 0.05], [1.0, 3.0, 10.0, 30.0]])
def test_anisotropic_linear_map_matches_the_analytic_box(k):
    """y = diag(k) x, spec sum(y) <= 1 at x0 = 0: max sum log eps s.t. sum k_i eps_i <= 1 has
    eps_i = 1 / (n k_i); the uniform box has radius 1 / sum(k)."""
    k = np.asarray(k)
    n = k.size
    net = linear(np.diag(k))
    cert = max_box(net, np.zeros(n), safe_set([np.ones(n)], [1.0]))
    assert cert.certified
    eps = np.asarray(cert.info["eps"])
    ratios = eps / eps[0]
    np.testing.assert_allclose(ratios, k[0] / k, rtol=0.01)
    np.testing.assert_allclose(eps, 1 / (n * k), rtol=0.01)
    np.testing.assert_allclose(cert.info["uniform"]["eps"], 1 / k.sum(), rtol=1e-3)
    assert cert.value >= cert.info["uniform"]["log_volume"]


def test_weights_set_the_shape():
    """max sum w_i log eps_i s.t. sum k_i eps_i <= 1: eps_i = w_i / (k_i sum w)."""
    k, w = np.array([2.0, 5.0]), np.array([1.0, 3.0])
    cert = max_box(linear(np.diag(k)), [0.0, 0.0], safe_set([[1.0, 1.0]], [1.0]), weights=w)
    np.testing.assert_allclose(cert.info["eps"], w / (k * w.sum()), rtol=0.01)


def test_polytope_of_a_rotation_needs_the_inner_box():
    """|y_1| <= 1, |y_2| <= 1 with y = R x (45 degrees): the largest box has eps = 1/sqrt(2)
    in both coordinates (a symmetric problem: non-uniform = uniform)."""
    r = np.array([[1.0, -1.0], [1.0, 1.0]]) / np.sqrt(2)
    H = np.vstack([np.eye(2), -np.eye(2)])
    cert = max_box(linear(r), [0.0, 0.0], safe_set(H, np.ones(4)))
    np.testing.assert_allclose(cert.info["half_widths"], [2 ** -0.5] * 2, rtol=0.01)


# ---------------------------------------------------------------------- the Voronoi toy
def _voronoi_case(points, n_samples, grid):
    net = _voronoi()
    for x in points:
        cert = max_box(net, x, keep_label(), domain=DOM2)
        assert cert.certified, cert.info
        spec = _resolved(net, cert)
        lo, hi = np.asarray(cert.info["lo"]), np.asarray(cert.info["hi"])
        assert np.all(lo >= -1) and np.all(hi <= 1)
        assert cert.value >= cert.info["uniform"]["log_volume"] - 1e-12
        assert _mip_holds(net, spec, lo, hi)
        assert _samples_hold(net, spec, lo, hi, n_samples)
        xs, ys = np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid)
        G = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
        assert np.all(np.argmax(net.forward(G), 1) == spec.label)
        # the uniform box is certified too
        u = cert.info["uniform"]
        assert _samples_hold(net, spec, np.asarray(u["lo"]), np.asarray(u["hi"]), 2000)


def test_voronoi_boxes_are_certified_by_the_mip_samples_and_a_grid():
    _voronoi_case([[0.2, 0.7], [-0.3, -0.4]], n_samples=20_000, grid=200)


@pytest.mark.slow
def test_voronoi_boxes_acceptance():
    pts = np.random.default_rng(11).uniform(-0.9, 0.9, size=(8, 2))
    _voronoi_case(pts, n_samples=100_000, grid=1000)


def test_voronoi_model_matches_its_sites():
    """The shipped toy classifier agrees with the true Voronoi labels almost everywhere."""
    net = _voronoi()
    s = np.asarray(net.meta["sites"])
    assert s.shape == (10, 2)
    X = np.random.default_rng(5).uniform(-1, 1, size=(20000, 2))
    truth = np.argmin(((X[:, None] - s[None]) ** 2).sum(-1), 1)
    assert np.mean(np.argmax(net.forward(X), 1) == truth) > 0.99


# ---------------------------------------------------------------------- dynamical maps
def _residual_map(seed=0, widths=(2, 16, 16, 2)):
    """x + 0.1 N(x) with a random N (a surrogate-like residual map)."""
    return residual(random_relunet(np.random.default_rng(seed), list(widths)), 0.1)


@pytest.mark.parametrize("steps", [1, 5])
def test_multi_step_safety_box_is_certified(steps):
    net = _residual_map(0, (2, 8, 8, 2))
    x0 = np.array([0.3, -0.2])
    cert = max_box(net, x0, _tube(net, x0, steps, 0.1), steps=steps, iterations=150)
    assert cert.certified
    net_k = net.unroll(steps) if steps > 1 else net
    spec = _resolved(net_k, cert)
    lo, hi = np.asarray(cert.info["lo"]), np.asarray(cert.info["hi"])
    assert _mip_holds(net_k, spec, lo, hi)
    assert _samples_hold(net_k, spec, lo, hi, 20_000)
    assert cert.value >= cert.info["uniform"]["log_volume"] - 1e-12
    assert cert.info["volume_ratio"] >= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("steps", [1, 5])
def test_multi_step_acceptance(steps):
    net = _residual_map(1, (2, 32, 32, 2))
    net_k = net.unroll(steps) if steps > 1 else net
    for x0 in np.random.default_rng(2).uniform(-1, 1, size=(5, 2)):
        cert = max_box(net, x0, _tube(net, x0, steps, 0.05), steps=steps)
        assert cert.certified
        spec = _resolved(net_k, cert)
        lo, hi = np.asarray(cert.info["lo"]), np.asarray(cert.info["hi"])
        assert _mip_holds(net_k, spec, lo, hi)
        assert _samples_hold(net_k, spec, lo, hi, 100_000)
        assert cert.value >= cert.info["uniform"]["log_volume"] - 1e-12


@settings(max_examples=15)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1.0, 1e-6, 1e-8]),
       kind=st.sampled_from(["polytope", "label"]))
def test_certified_boxes_hold_on_random_nets(seed, scale, kind):
    """Sound or silent: a certified box never contains a sampled violation (corners and
    faces included), at O(1) and at the 1e-6 / 1e-8 scales of the spec's slack."""
    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [2, 6, 6, 3], identity_frac=0.2)
    x0 = rng.normal(size=2)
    if kind == "polytope":
        H = rng.normal(size=(4, 3))
        spec = safe_set(H, H @ net.forward(x0) + scale * rng.uniform(0.1, 1.0, 4))
    else:
        spec = keep_label()
    cert = max_box(net, x0, spec, iterations=60, confirm="none")
    if not cert.certified:
        return
    resolved = _resolved(net, cert)
    lo, hi = np.asarray(cert.info["lo"]), np.asarray(cert.info["hi"])
    assert _samples_hold(net, resolved, lo, hi, 3000, seed)
    assert cert.value >= cert.info["uniform"]["log_volume"] - 1e-12


# ---------------------------------------------------------------------- options
def test_grow_enlarges_along_the_shape_and_the_mip_confirms():
    net = _voronoi()
    x = np.array([0.5, -0.45])
    base = max_box(net, x, keep_label(), domain=DOM2, relaxation="fastlin")
    cert = max_box(net, x, keep_label(), domain=DOM2, relaxation="fastlin", grow=True,
                   grow_steps=4)
    assert cert.certified and cert.value >= base.value - 1e-12
    g = cert.info["grow"]
    assert g["scale"] >= 1.0
    spec = _resolved(net, cert)
    lo, hi = np.asarray(cert.info["lo"]), np.asarray(cert.info["hi"])
    assert _mip_holds(net, spec, lo, hi)
    if cert.witness is not None:       # a checked point just outside, on the grown shape
        w = np.asarray(cert.witness["x"])
        assert not spec.holds(net.forward(w))[0]


def test_crown_opt_and_fastlin_are_certified_and_compared():
    net = random_relunet(np.random.default_rng(4), [2, 6, 6, 3])
    x0 = np.array([0.2, 0.1])
    for rel in ("crown-opt", "fastlin"):
        cert = max_box(net, x0, keep_label(), relaxation=rel, iterations=40)
        assert cert.certified
        tight = cert.info["tightness"]
        assert tight["tightest"] in tight["upper"]
        assert rel in tight["upper"] and "crown" in tight["upper"]
        spec = _resolved(net, cert)
        assert _samples_hold(net, spec, np.asarray(cert.info["lo"]),
                             np.asarray(cert.info["hi"]), 5000)


def test_uniform_mode_and_the_job_function():
    net = _residual_map()
    x0 = np.array([0.1, 0.4])
    spec = _tube(net, x0, 1, 0.1)
    u = max_box(net, x0, spec, mode="uniform")
    hw = np.asarray(u.info["half_widths"])
    assert u.certified and np.allclose(hw, hw[0])
    assert u.value == pytest.approx(u.info["uniform"]["log_volume"])
    a = max_box_job(net, x0, {"spec": spec, "iterations": 50})
    b = max_box(net, x0, spec, iterations=50)
    assert a.value == b.value and np.array_equal(a.info["lo"], b.info["lo"])


def test_confirm_mip_checks_every_row_with_the_mip_too():
    net = _voronoi()
    cert = max_box(net, [-0.3, -0.4], keep_label(), domain=DOM2, iterations=60,
                   confirm="mip")
    assert cert.certified and cert.info["checked_by"] in ("crown+mip", "mip")
    assert cert.solver.startswith("crown+")


def test_a_violating_center_gives_a_counterexample():
    net = linear(np.eye(2))
    cert = max_box(net, [2.0, 0.0], safe_set([[1.0, 0.0]], [1.0]))
    assert cert.status.value == "counterexample"
    np.testing.assert_array_equal(cert.witness["x"], [2.0, 0.0])
    edge = max_box(net, [1.0, 0.0], safe_set([[1.0, 0.0]], [1.0]))
    assert edge.status.value == "unknown"


def test_mip_check_finds_a_violation_in_a_too_large_box():
    net = linear(np.eye(2))
    spec = safe_set([[1.0, 1.0]], [1.0])
    r = mip_check(net, [-1.0, -1.0], [1.0, 1.0], spec)
    assert not r["proven"] and r["witness"] is not None
    assert not spec.holds(net.forward(r["witness"]))[0]
    assert mip_check(net, [-0.4, -0.4], [0.4, 0.4], spec)["proven"]


@pytest.mark.parametrize("kwargs", [
    {"mode": "cube"}, {"relaxation": "ibp"}, {"weights": [1.0, -1.0]}, {"weights": [0, 0]},
    {"steps": 0}, {"steps": 2.5}, {"domain": ([0, 0], [1])}, {"iterations": -1},
    {"lr": 0.0}, {"margin": float("nan")}, {"time_limit": 0}, {"confirm": "maybe"},
    {"steps": float("nan")}, {"steps": "3"}, {"iterations": float("inf")}, {"lr": "a"},
    {"margin": None}, {"time_limit": "x"}, {"time_limit": float("inf")}, {"steps": True},
    {"domain": ([1.0, 1.0], [2.0, 2.0])},
])
def test_bad_options_are_refused(kwargs):
    net = linear(np.eye(2))
    with pytest.raises(DynidError):
        max_box(net, [0.0, 0.0], safe_set([[1.0, 0.0]], [1.0]), **kwargs)


def test_bad_specs_are_refused():
    net = linear(np.eye(2))
    for spec in (([[1.0, 0.0, 0.0]], [1.0]), ([[0.0, 0.0]], [1.0]), ([[1.0, 0.0]], [1, 2]),
                 "maybe", 3):
        with pytest.raises(DynidError):
            max_box(net, [0.0, 0.0], spec)
    with pytest.raises(DynidError):          # unrolling needs a square map
        max_box(ReLUNet([np.ones((1, 2))], [np.zeros(1)]), [0.0, 0.0], "label", steps=3)


# ---------------------------------------------------------------------- the CLI
def test_cli_box_keep_label_with_json_and_figure(tmp_path, capsys):
    from dynid.cli import main

    js, png = tmp_path / "box.json", tmp_path / "box.png"
    rc = main(["certify", "box", str(VORONOI), "--at", "0.2", "0.7", "--keep-label",
               "--json", str(js), "--figure", str(png)])
    assert rc == 0
    d = json.loads(js.read_text())
    assert d["status"] == "certified" and d["info"]["spec"]["kind"] == "label"
    assert png.stat().st_size > 1000
    assert "certified" in capsys.readouterr().out


def test_cli_box_safe_set_forms(tmp_path):
    from dynid.cli import main
    from dynid.modelfile import save_model

    model = tmp_path / "m.h5"
    save_model(model, _residual_map())
    js = tmp_path / "a.json"
    assert main(["certify", "box", str(model), "--at", "0.3", "-0.2", "0.1", "0.1", "--steps",
                 "2", "--safe-box", "-1", "-1", "1", "1", "--json", str(js),
                 "--iterations", "60"]) == 0
    rows = json.loads(js.read_text())
    assert len(rows) == 2 and all(r["status"] == "certified" for r in rows)
    js2 = tmp_path / "b.json"
    assert main(["certify", "box", str(model), "--at", "0.3", "-0.2", "--safe",
                 "[[1, 0], [0, 1]], [1, 1]", "--json", str(js2), "--mode", "uniform",
                 "--iterations", "0"]) == 0
    assert json.loads(js2.read_text())["info"]["mode"] == "uniform"


@pytest.mark.parametrize("extra", [
    ["--safe", "[[1, 0]], ["], ["--safe", "[[1, 0, 0]], [1]"], ["--safe-box", "0", "1"],
    ["--keep-label", "--steps", "0"], ["--keep-label", "--time-limit", "-1"],
    ["--keep-label", "--steps", "1001"], ["--keep-label", "--iterations", "nan"],
    ["--keep-label", "--at", "0.2", "nan"], ["--keep-label", "--figure", "."],
    ["--keep-label", "--json", str(VORONOI)],
    ["--keep-label", "--lo", "0", "0"], ["--keep-label", "--no-domain", "--lo", "0", "0",
                                         "--hi", "1", "1"],
])
def test_cli_box_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra):
    from dynid.cli import main

    js = tmp_path / "out.json"
    try:
        rc = main(["certify", "box", str(VORONOI), "--at", "0.2", "0.7", "--json", str(js),
                   *extra])
    except SystemExit as exc:    # numeric options are refused by argparse (dynid.options)
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not js.exists()


def test_cli_box_refuses_a_figure_of_a_3d_model(tmp_path, capsys):
    from dynid.cli import main
    from dynid.modelfile import save_model

    model = tmp_path / "m3.h5"
    save_model(model, random_relunet(np.random.default_rng(0), [3, 4, 2]))
    rc = main(["certify", "box", str(model), "--at", "0", "0", "0", "--keep-label",
               "--figure", str(tmp_path / "f.png")])
    assert rc == 2 and not (tmp_path / "f.png").exists()
