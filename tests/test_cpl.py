"""CPL stacks: the analytic certificate against the MIP, sampled Lipschitz ratios and Jacobians,
the inverse against the forward pass, refusal of files the certificate must not trust, and the
train / CLI / pipeline hooks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dynid import load_model, save_model
from dynid.certify import invertible_analytic, noninvertibility
from dynid.cpl import (CPLStructureError, CPLSurrogate, cpl_net, cpl_structure, export_step,
                       inverse, spectral_norm)
from dynid.errors import ConfigError, DynidError
from dynid.relunet import ReLUNet


def random_stack(rng, n=2, widths=(4, 4), c=0.9, scale=1.0, affine=False):
    """A random CPL stack; with ``affine`` random (invertible) input and output maps too."""
    ws = [rng.normal(size=(m, n)) * scale for m in widths]
    bs = [rng.normal(size=m) * scale for m in widths]
    pre = post = None
    if affine:
        pre = (np.diag(rng.uniform(0.3, 3.0, n)), rng.normal(size=n))
        q = rng.normal(size=(n, n))
        post = (q + 2.0 * np.eye(n), rng.normal(size=n))
    return cpl_net(ws, bs, c, pre=pre, post=post)


def _forward_ld(net, x):
    """Hand-written forward pass in extended precision (x86 long double, eps 1e-19), so that
    ratios at the 1e-8 scale measure the map with the stored weights, not float64 rounding."""
    h = np.asarray(x, dtype=np.longdouble)
    for w, b, m in zip(net.weights, net.biases, net.relu):
        z = h @ w.T.astype(np.longdouble) + b.astype(np.longdouble)
        h = np.where(m, np.maximum(z, 0), z)
    return h


def _rounding_ld(net, x):
    """A bound on |_forward_ld(net, x) - F(x)| per output (F in exact arithmetic with the
    stored weights): each layer adds at most (fan_in + 2) eps |W| |h| + |b| of rounding, and
    later layers carry it on through |W|. It matters when a large constant (a bias times a large
    step 1 / ||W||^2) sits on top of a tiny difference."""
    eps = np.finfo(np.longdouble).eps
    h = np.abs(np.asarray(x, dtype=np.longdouble))
    e = np.zeros_like(h)
    for w, b in zip(net.weights, net.biases):
        aw = np.abs(w).astype(np.longdouble)
        h_abs = h @ aw.T + np.abs(b).astype(np.longdouble)
        e = e @ aw.T + (w.shape[1] + 2) * eps * h_abs
        h = h_abs
    return e


def _ratios(net, x, y, slack=False):
    num = np.linalg.norm(_forward_ld(net, x) - _forward_ld(net, y), axis=1)
    den = np.linalg.norm(np.asarray(x, np.longdouble) - y, axis=1)
    if not slack:
        return num / den
    err = np.linalg.norm(_rounding_ld(net, x) + _rounding_ld(net, y), axis=1)
    return num / den, err / den


# ---------------------------------------------------------------------- the maths


@given(seed=st.integers(0, 2**31 - 1), c=st.sampled_from([0.3, 0.5, 0.9, 0.99]),
       n=st.integers(1, 4), k=st.integers(1, 3), scale=st.sampled_from([1e-8, 1e-6, 1.0, 30.0]),
       gap=st.sampled_from([1e-8, 1e-6, 1e-2, 1.0, 10.0]))
def test_sampled_lipschitz_ratios(seed, c, n, k, scale, gap):
    """Lip <= 1 and Lip(inverse) <= prod 1 / (1 - c) on pairs at every distance scale (gap
    relative to |x|); the weights' scale (1e-8 .. 30) does not matter (h = c / ||W||^2)."""
    rng = np.random.default_rng(seed)
    net = random_stack(rng, n, tuple(rng.integers(1, 8, k)), c, scale)
    x = rng.normal(size=(400, n)) * 3 * max(scale, 1e-3)
    u = rng.normal(size=(400, n))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    y = x + u * gap * (1 + np.linalg.norm(x, axis=1, keepdims=True))
    r, slack = _ratios(net, x, y, slack=True)   # slack: the extended-precision rounding
    assert np.all(r - slack <= 1 + 1e-9)
    assert np.all(r + slack >= (1 - c) ** k * (1 - 1e-9))
    assert np.median(slack) < 1e-6   # the check is not vacuous


@given(seed=st.integers(0, 2**31 - 1), c=st.sampled_from([0.5, 0.9]))
def test_jacobian_pieces_and_certificate_bounds(seed, c):
    """Every affine piece's Jacobian has singular values in [prod (1 - c), 1] (stack) and
    within the certificate's Lipschitz bounds (with input and output maps); its determinant
    has the sign of det(P) det(Q) everywhere."""
    rng = np.random.default_rng(seed)
    bare = random_stack(rng, 3, (5, 5, 5), c)
    full = random_stack(rng, 3, (5, 5, 5), c, affine=True)
    cert = invertible_analytic(full)
    sign = np.sign(np.linalg.det(full.weights[0]) * np.linalg.det(full.weights[-1]))
    for x in rng.normal(size=(60, 3)) * 2:
        s = np.linalg.svd(bare.jacobian(x), compute_uv=False)
        assert s.max() <= 1 + 1e-12 and s.min() >= (1 - c) ** 3 * (1 - 1e-12)
        jf = full.jacobian(x)
        s = np.linalg.svd(jf, compute_uv=False)
        assert s.max() <= cert.info["lipschitz"] * (1 + 1e-12)
        assert 1 / s.min() <= cert.info["inverse_lipschitz"] * (1 + 1e-12)
        assert np.sign(np.linalg.det(jf)) == sign


def test_one_block_is_symmetric_and_the_potential_gradient():
    """One block's Jacobian is symmetric (eigenvalues in [1 - c, 1]) and equals the gradient of
    phi(x) = |x|^2 / 2 - h / 2 |relu(W x + b)|^2 (finite differences)."""
    rng = np.random.default_rng(3)
    w, b, c = rng.normal(size=(6, 3)), rng.normal(size=6), 0.8
    net = cpl_net([w], [b], c)
    h = export_step(w, c)
    phi = lambda x: 0.5 * x @ x - 0.5 * h * np.sum(np.maximum(w @ x + b, 0) ** 2)  # noqa
    for x in rng.normal(size=(20, 3)):
        j = net.jacobian(x)
        assert np.allclose(j, j.T, atol=1e-14)
        ev = np.linalg.eigvalsh(j)
        assert ev.min() >= 1 - c - 1e-12 and ev.max() <= 1 + 1e-12
        e = 1e-6
        grad = np.array([(phi(x + e * d) - phi(x - e * d)) / (2 * e) for d in np.eye(3)])
        assert np.allclose(grad, net.forward(x), atol=1e-7)


def test_inverse_reconstructs_to_1e8():
    rng = np.random.default_rng(7)
    for c in (0.5, 0.9, 0.99):
        net = random_stack(rng, 3, (8, 8, 8, 8), c, affine=True)
        x = rng.normal(size=(500, 3)) * 5
        res = inverse(net, net.forward(x), tol=1e-10)
        err = np.linalg.norm(res.x - x, axis=1)
        assert err.max() <= 1e-8
        # the a-priori bound holds (float64 rounding on top: a few ulps of |x|)
        assert np.all(err <= res.error_bound + 1e-12 * (1 + np.abs(x).max()))
        assert res.error_bound.max() <= 1e-10
    # vectorised over leading dimensions; a coarse tolerance stops early, honestly
    y = net.forward(x.reshape(5, 100, 3))
    res = inverse(net, y, tol=1e-2, max_iter=3)
    assert res.x.shape == (5, 100, 3) and res.error_bound.shape == (5, 100)
    err = np.linalg.norm(res.x - x.reshape(5, 100, 3), axis=-1)
    assert np.all(err <= res.error_bound * (1 + 1e-9) + 1e-12)


# ---------------------------------------------------------------------- the MIP agrees


def _mip_agrees(seed, c, n=2, widths=(4, 4)):
    rng = np.random.default_rng(seed)
    net = random_stack(rng, n, widths, c, affine=bool(seed % 2))
    assert invertible_analytic(net).certified
    cert = noninvertibility(net, -2.0 * np.ones(n), 2.0 * np.ones(n), norm="inf", threads=1,
                            time_limit=120)
    assert cert.status.value == "certified" and cert.bound <= 1e-4 and cert.witness is None


@settings(max_examples=3)
@given(seed=st.integers(0, 2**31 - 1), c=st.sampled_from([0.5, 0.9]))
def test_mip_agrees_with_analytic_certificate(seed, c):
    """No two distinct inputs with equal images: the MIP's optimum is 0 on a box."""
    _mip_agrees(seed, c)


@pytest.mark.slow
@settings(max_examples=30)
@given(seed=st.integers(0, 2**31 - 1), c=st.sampled_from([0.5, 0.9]),
       n=st.integers(1, 3), widths=st.lists(st.integers(2, 6), min_size=1, max_size=3))
def test_mip_agrees_with_analytic_certificate_more(seed, c, n, widths):
    _mip_agrees(seed, c, n, tuple(widths))


def test_c_2_folds_and_the_mip_finds_the_witness():
    """W = [[1]], b = 0, h = 2 / ||W||^2: z = -|x|. The MIP witness is (-1, 1); the analytic
    certificate refuses c >= 1."""
    net = cpl_net([np.array([[1.0]])], [np.zeros(1)], c=2.0, steps=[2.0])
    assert np.allclose(net.forward(np.array([[-0.7], [0.7]])).ravel(), [-0.7, -0.7])
    cert = noninvertibility(net, [-1.0], [1.0], norm="inf", threads=1)
    assert cert.status.value == "counterexample"
    pair = sorted([float(cert.witness["x"][0]), float(cert.witness["y"][0])])
    assert pair == pytest.approx([-1.0, 1.0], abs=1e-6)
    with pytest.raises(CPLStructureError, match="not below 1|exceeds"):
        invertible_analytic(net)


# ---------------------------------------------------------------------- what is refused


def test_underestimated_norm_is_refused(tmp_path):
    """A file whose steps come from one power-iteration step (norm too small) is refused; the
    same weights exported with the SVD norm are certified."""
    torch.manual_seed(0)
    m = CPLSurrogate(3, (16, 16), c=0.9, gain="matrix", step_init=None)
    good, bad = m.to_relunet(), m.to_relunet(norm="power")
    for (w, p) in zip(m.weight, m.power_norms()):
        assert p < spectral_norm(w.detach().numpy()) * (1 - 1e-6)   # a real underestimate
    save_model(tmp_path / "good.h5", good)
    save_model(tmp_path / "bad.h5", bad)
    assert invertible_analytic(tmp_path / "good.h5").certified
    with pytest.raises(CPLStructureError, match="underestimated"):
        invertible_analytic(tmp_path / "bad.h5")
    # an underestimate by 1e-9 of the norm is caught too (the SVD check is exact enough)
    s = cpl_structure(good)
    w, b = s.blocks[0].W, s.blocks[0].b
    h = 0.9 / (spectral_norm(w) * (1 - 1e-9)) ** 2
    with pytest.raises(CPLStructureError, match="underestimated"):
        invertible_analytic(cpl_net([w], [b], 0.9, steps=[h]))


def test_non_cpl_networks_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    from tests.conftest import random_relunet

    plain = random_relunet(rng, [2, 6, 2])
    with pytest.raises(DynidError, match="not a CPL stack"):
        invertible_analytic(plain)
    net = random_stack(rng, 2, (4, 4), 0.9)
    # metadata that lies about the structure
    forged = plain.with_meta(architecture=net.meta["architecture"])
    with pytest.raises(CPLStructureError):
        invertible_analytic(forged)
    # a pruned / edited second layer no longer equals -h W^T
    ws = [np.array(w) for w in net.weights]
    ws[2][0, 2] *= 0.5
    with pytest.raises(CPLStructureError, match="not -h W"):
        invertible_analytic(ReLUNet(ws, net.biases, net.relu, net.meta))
    # simplify() merges identity layers: the block structure is gone
    with pytest.raises(CPLStructureError):
        invertible_analytic(net.simplify())
    # a singular output map: the stack is invertible, F is not
    sing = cpl_net([np.ones((2, 2))], [np.zeros(2)], 0.5,
                   post=(np.array([[1.0, 1.0], [1.0, 1.0]]), np.zeros(2)))
    c = invertible_analytic(sing)
    assert c.status.value == "unknown"
    with pytest.raises(CPLStructureError, match="singular"):
        inverse(sing, np.zeros(2))


def test_bad_options():
    for bad in (0.0, 1.0, -0.5, float("nan")):
        with pytest.raises(ConfigError, match="0 < c < 1"):
            CPLSurrogate(2, (4,), c=bad)
    with pytest.raises(ConfigError, match="gain"):
        CPLSurrogate(2, (4,), gain="huge")
    with pytest.raises(ConfigError, match="one c per"):
        CPLSurrogate(2, (4, 4), c=[0.5])
    from dynid.models import make_surrogate

    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ConfigError, match="unknown CPL option"):
        make_surrogate("cpl", X, X, (4,), options={"cc": 0.5})
    with pytest.raises(ConfigError, match="takes no options"):
        make_surrogate("mlp", X, X, (4,), options={"c": 0.5})
    with pytest.raises(DynidError, match="trailing"):
        inverse(random_stack(np.random.default_rng(0)), np.zeros(3))
    # CPL is for autonomous maps: pairs with an input column are refused, before training
    from dynid.train import train

    XU = np.random.default_rng(1).normal(size=(20, 3))
    with pytest.raises(ConfigError, match="autonomous"):
        make_surrogate("cpl", XU, XU[:, :2], (4,))
    with pytest.raises(ConfigError, match="autonomous"):
        train((XU, XU[:, :2]), arch="cpl", hidden=(4,), epochs=1, progress=False)


# ---------------------------------------------------------------------- the torch module


@pytest.mark.parametrize("gain", ["none", "scalar", "matrix", "known"])
def test_export_matches_module(gain, tmp_path):
    rng = np.random.default_rng(1)
    n = 3
    g = rng.normal(size=(n, n)) + 2 * np.eye(n) if gain == "known" else gain
    m = CPLSurrogate(n, (7, 5, 6), c=[0.9, 0.5, 0.7], gain=g, x_mean=rng.normal(size=n),
                     x_std=rng.uniform(0.2, 4, n))
    with torch.no_grad():
        m.out_bias.copy_(torch.as_tensor(rng.normal(size=n)))
        if gain == "scalar":
            m.log_gain.fill_(0.4)
        if gain == "matrix":
            m.gain_matrix.add_(torch.as_tensor(rng.normal(size=(n, n)) * 0.3))
    m.eval()                      # exact norm in the module; the export pads it by ~1e-13
    x = rng.normal(size=(200, n)) * 3
    with torch.no_grad():
        ref = m(torch.as_tensor(x)).numpy()
    save_model(tmp_path / "m.h5", m.to_relunet({"system": "test"}))
    net = load_model(tmp_path / "m.h5")
    assert np.allclose(net.forward(x), ref, rtol=1e-10, atol=1e-10)
    cert = invertible_analytic(net)
    assert cert.certified and net.meta["architecture"]["gain"] == m.gain_kind
    assert [b["c"] for b in cert.info["blocks"]] == [0.9, 0.5, 0.7]
    assert all(b["c_effective"] <= b["c"] for b in cert.info["blocks"])
    if gain == "known":           # the known linear part acts in physical units
        s, mu = m.x_std.numpy(), m.x_mean.numpy()
        beta = m.out_bias.detach().numpy()
        with torch.no_grad():
            stack = m.stack((torch.as_tensor(x) - m.x_mean) / m.x_std).numpy()
        assert np.allclose(ref, mu + (g @ (s * stack).T).T + s * beta, atol=1e-10)


def test_power_iteration_is_warm_started_and_a_lower_bound():
    torch.manual_seed(1)
    m = CPLSurrogate(4, (20,))
    m.train()
    x = torch.randn(8, 4, dtype=torch.float64)
    exact = spectral_norm(m.weight[0].detach().numpy())
    est = []
    for _ in range(30):
        m(x)
        est.append(m.power_norms()[0])
    assert all(e <= exact * (1 + 1e-12) for e in est)
    assert est[-1] == pytest.approx(exact, rel=1e-6) and est[0] < est[-1]


def test_train_and_cli(tmp_path, capsys):
    """arch='cpl' through train and the CLI: certified models, bad c refused before writing."""
    from dynid.cli import main
    from dynid.simulate import one_step_pairs
    from dynid.systems import get_system
    from dynid.train import train

    ds = one_step_pairs(get_system("pendulum"), 400, 0.1, seed=0)
    net, s = train(ds, arch="cpl", hidden=(8, 8, 8), epochs=5, progress=False,
                   arch_options={"gain": "scalar", "c": 0.8})
    assert s["arch"] == "cpl" and invertible_analytic(net).certified
    assert net.meta["system"] == "pendulum" and "domain" in net.meta
    from dynid.datasets import save_dataset

    save_dataset(ds, tmp_path / "d.nc")
    rc = main(["train", str(tmp_path / "d.nc"), "--out", str(tmp_path / "m.h5"), "--arch", "cpl",
               "--hidden", "6,6", "--epochs", "2", "--cpl-c", "0.7", "--quiet"])
    assert rc == 0 and invertible_analytic(tmp_path / "m.h5").info["blocks"][0]["c"] == 0.7
    rc = main(["train", str(tmp_path / "d.nc"), "--out", str(tmp_path / "x.h5"), "--arch", "cpl",
               "--hidden", "6", "--cpl-c", "1.5", "--quiet"])
    assert rc == 2 and not (tmp_path / "x.h5").exists()
    assert "0 < c < 1" in capsys.readouterr().err
    for bad in ("nan", "-0.5", "0"):      # refused by argparse, before any work
        with pytest.raises(SystemExit) as exc:
            main(["train", str(tmp_path / "d.nc"), "--out", str(tmp_path / "x.h5"), "--arch",
                  "cpl", "--hidden", "6", "--cpl-c", bad, "--quiet"])
        assert exc.value.code == 2 and not (tmp_path / "x.h5").exists()
        assert "--cpl-c" in capsys.readouterr().err


def test_pipeline_certify_stage(tmp_path):
    """The certify stage answers a CPL model with the analytic certificate and says so; with
    method = "mip" the MIP answers, and agrees; method = "analytic" refuses other networks."""
    from dynid.pipeline import run_pipeline

    torch.manual_seed(0)
    m = CPLSurrogate(2, (6, 6), c=0.7, gain="scalar", x_mean=[0.1, -0.2], x_std=[1.5, 2.0])
    save_model(tmp_path / "m.h5", m.to_relunet({"domain": {"lo": [-2, -3], "hi": [2, 3]}}))
    cfg = tmp_path / "p.toml"
    cfg.write_text(f"""
[run]
name = "cpl"
stages = ["certify"]
[certify]
model = "{tmp_path / 'm.h5'}"
grid = 10
""")
    ctx = run_pipeline(cfg, out_dir=tmp_path / "run", log=lambda m: None)
    out = json.loads((tmp_path / "run" / "certify.json").read_text())
    assert out["method"] == "analytic" and out["invertibility"]["status"] == "certified"
    assert ctx.summary["certify"]["invertibility"]["solver"] == "analytic"
    assert "analytic certificate of the CPL stack" in (tmp_path / "run" / "report.html").read_text()
    # a bad method: one clear error, nothing written
    cfg.write_text(cfg.read_text() + 'method = "fast"\n')
    with pytest.raises(ConfigError, match="method must be"):
        run_pipeline(cfg, out_dir=tmp_path / "run0", log=lambda m: None)
    assert not (tmp_path / "run0" / "certify.json").exists()
    cfg.write_text(cfg.read_text().replace('method = "fast"\n', ""))
    # method = "analytic" on a network that is not a CPL stack: one clear error
    from tests.conftest import random_relunet

    save_model(tmp_path / "r.h5", random_relunet(np.random.default_rng(0), [2, 4, 2])
               .with_meta(domain={"lo": [0, 0], "hi": [1, 1]}))
    cfg.write_text(cfg.read_text().replace("m.h5", "r.h5") + 'method = "analytic"\n')
    with pytest.raises(DynidError, match="not a CPL stack"):
        run_pipeline(cfg, out_dir=tmp_path / "run2", log=lambda m: None)
    # method = "mip" on the CPL model: the MIP answers, and agrees
    cfg.write_text(cfg.read_text().replace("r.h5", "m.h5").replace('"analytic"', '"mip"')
                   + "cells = 0\ntime_limit = 60\n")
    run_pipeline(cfg, out_dir=tmp_path / "run3", log=lambda m: None)
    out = json.loads((tmp_path / "run3" / "certify.json").read_text())
    assert out["method"] == "mip" and out["invertibility"]["status"] == "certified"
