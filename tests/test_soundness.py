"""Property suite: no engine's bound below a sampled value, no certificate contradicted by a
sampled point or pair, at O(1) and at the 1e-6 / 1e-8 scales (issue 17).

The reference is independent of the code under test: the network evaluated in extended
precision (``np.longdouble``) at random points, the box's corners and points on its faces, and
compared with zero tolerance. Scales: ``output`` multiplies the last layer by the scale (the
bounded values are ~scale), ``box`` makes the box ~scale wide around a random centre (the
degenerate boxes of item 6). The default run checks a few hundred nets per engine; the slow
suite (``-m slow``) checks 10^4 per engine.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynid.relunet import ReLUNet
from tests.conftest import random_relunet

SCALES = (1.0, 1e-6, 1e-8)
KINDS = ("output", "box")
ENGINES = ("ibp", "crown", "lp-highs", "lp-splitting", "mip")
# examples per engine: default run / slow suite
FAST = {"ibp": 300, "crown": 300, "lp-highs": 200, "lp-splitting": 100, "mip": 100}
SLOW = 10_000
# a few ADMM / polishing steps: the bounds must be valid at any iteration count
SPLIT_OPTS = {"max_iter": 20, "polish_steps": 10,
              "intermediate_opts": {"max_iter": 0, "polish_steps": 5}}


def forward_ld(net: ReLUNet, x) -> np.ndarray:
    """The network in extended precision: the reference values (its rounding is ~1e-19
    relative, far below every pad in dynid)."""
    h = np.asarray(x, dtype=np.longdouble)
    for w, b, relu in zip(net.weights, net.biases, net.relu):
        h = h @ np.asarray(w, np.longdouble).T + np.asarray(b, np.longdouble)
        h = np.where(relu, np.maximum(h, 0), h)
    return h


def preacts_ld(net: ReLUNet, x) -> list[np.ndarray]:
    h, out = np.asarray(x, dtype=np.longdouble), []
    for w, b, relu in zip(net.weights, net.biases, net.relu):
        z = h @ np.asarray(w, np.longdouble).T + np.asarray(b, np.longdouble)
        out.append(z)
        h = np.where(relu, np.maximum(z, 0), z)
    return out


def sample_points(rng, lo, hi, n: int = 600) -> np.ndarray:
    """Uniform points, every corner, points on every face, the centre."""
    d = lo.size
    pts = [lo + (hi - lo) * rng.random((n, d))]
    corners = np.array(np.meshgrid(*[[0.0, 1.0]] * d)).reshape(d, -1).T
    pts.append(lo + (hi - lo) * corners)
    for j in range(d):
        for side in (lo[j], hi[j]):
            f = lo + (hi - lo) * rng.random((max(n // 10, 4), d))
            f[:, j] = side
            pts.append(f)
    pts.append(((lo + hi) / 2)[None])
    return np.vstack(pts)


def case(seed: int, scale: float, kind: str, max_width: int = 6):
    """A random small net, box and direction matrix for one example."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(1, 4))
    n_out = int(rng.integers(1, 4))
    hidden = [int(rng.integers(1, max_width + 1)) for _ in range(int(rng.integers(1, 3)))]
    net = random_relunet(rng, [n_in, *hidden, n_out], identity_frac=0.2 * rng.random())
    if rng.random() < 0.3:   # sparse weights and dead (all-zero) rows
        ws = [w * (rng.random(w.shape) < 0.5) for w in net.weights]
        net = ReLUNet(ws, net.biases, net.relu)
    if kind == "output":
        net = ReLUNet(list(net.weights[:-1]) + [net.weights[-1] * scale],
                      list(net.biases[:-1]) + [net.biases[-1] * scale], net.relu)
        c = rng.uniform(-1, 1, n_in)
        lo, hi = c - rng.uniform(0.1, 1.5, n_in), c + rng.uniform(0.1, 1.5, n_in)
    else:
        c = rng.uniform(-1, 1, n_in)
        lo, hi = c - scale * rng.uniform(0.2, 1.0, n_in), c + scale * rng.uniform(0.2, 1.0, n_in)
    C = np.vstack([np.eye(n_out), rng.normal(size=(2, n_out))])
    return rng, net, lo, hi, C


def check_engine(engine: str, seed: int, scale: float, kind: str) -> None:
    from reach.engines import bound

    rng, net, lo, hi, C = case(seed, scale, kind)
    opts = dict(SPLIT_OPTS) if engine == "lp-splitting" else {}
    if engine == "mip":
        C = C[rng.permutation(C.shape[0])[:1]]        # one direction: two MIPs per net
    low, up = bound(net, lo, hi, C, engine=engine, **opts)
    x = sample_points(rng, lo, hi)
    y = forward_ld(net, x) @ np.asarray(C, np.longdouble).T
    below = np.asarray(low, np.longdouble) - y.min(axis=0)
    above = y.max(axis=0) - np.asarray(up, np.longdouble)
    assert np.all(below <= 0) and np.all(above <= 0), (
        f"{engine} seed={seed} scale={scale} kind={kind}: a sampled value lies "
        f"{float(max(below.max(), above.max())):.3g} beyond the bounds {low} .. {up}")


def check_intermediate(method: str, seed: int, scale: float, kind: str) -> None:
    from reach.engines import intermediate

    rng, net, lo, hi, _ = case(seed, scale, kind)
    kw = {"max_iter": 0, "polish_steps": 5} if method == "splitting" else {}
    b = intermediate(net, lo, hi, method, **kw)
    zs = preacts_ld(net, sample_points(rng, lo, hi))
    for i, z in enumerate(zs):
        assert np.all(np.asarray(b.lower[i], np.longdouble) <= z.min(axis=0)), (method, seed, i)
        assert np.all(z.max(axis=0) <= np.asarray(b.upper[i], np.longdouble)), (method, seed, i)


_seeds = st.integers(0, 2 ** 32 - 1)
_scales = st.sampled_from(SCALES)
_kinds = st.sampled_from(KINDS)


def _prop(check, name: str, n: int):
    @settings(max_examples=n, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(seed=_seeds, scale=_scales, kind=_kinds)
    def run(seed, scale, kind):
        check(name, seed, scale, kind)

    run()


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_bounds_contain_samples(engine):
    _prop(check_engine, engine, FAST[engine])


@pytest.mark.parametrize("method", ["ibp", "crown", "lp", "splitting"])
def test_intermediate_bounds_contain_samples(method):
    _prop(check_intermediate, method, 40 if method in ("lp", "splitting") else 200)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_engine_bounds_contain_samples_slow(engine):
    _prop(check_engine, engine, SLOW)


# ------------------------------------------------------------------ certificates vs samples
def check_equivalence(norm, seed: int, scale: float, kind: str) -> None:
    """f against a copy with weight noise of size ``scale``: the certified deviation bound is
    at least every sampled deviation; with eps, certified means no sample exceeds eps."""
    from dynid.certify.equivalence import equivalence

    rng, f, lo, hi, _ = case(seed, 1.0, "output", max_width=5)
    if kind == "box":   # noise in the weights of a 1e-6-wide box, or an O(1) box
        lo, hi = (lo + hi) / 2 - 1e-6, (lo + hi) / 2 + 1e-6
    noise = scale if scale < 1 else 1e-2
    g = ReLUNet([w + noise * rng.normal(size=w.shape) for w in f.weights],
                [b + noise * rng.normal(size=b.shape) for b in f.biases], f.relu)
    eps = float(noise * rng.uniform(0.5, 3.0))
    cert = equivalence(f, g, lo, hi, norm=norm, eps=eps, samples=50, seed=int(seed % 1000))
    x = sample_points(rng, lo, hi, 2000)
    d = forward_ld(f, x) - forward_ld(g, x)
    p = math.inf if norm == "inf" else float(norm)
    dev = np.abs(d).max(axis=1) if p == math.inf else (np.abs(d) ** p).sum(axis=1) ** (1 / p)
    top = float(dev.max())
    assert cert.bound >= top, (norm, seed, scale, kind, cert.bound, top)
    if cert.status.value == "certified":
        assert top <= eps, (norm, seed, scale, kind, eps, top)
    if cert.status.value == "counterexample":   # its witness is real
        xw = np.asarray(cert.witness["x"])
        dw = np.abs(forward_ld(f, xw[None]) - forward_ld(g, xw[None]))
        assert float(dw.max() if p == math.inf else (dw ** p).sum() ** (1 / p)) > eps


@pytest.mark.parametrize("norm", ["inf", "1", "2"])
def test_equivalence_bound_not_below_a_sample(norm):
    _prop(check_equivalence, norm, 40)


def test_equivalence_l2_found_by_the_slow_suite():
    """Seed 993 (O(1) box, noise 1e-2): the nonconvex MIQP's 'optimal' bound of ||d||_2^2 was
    below the deviation at a box corner (0.02846265 vs 0.02846276); the L2 bound now comes
    from the padded L-inf and L1 MILPs."""
    check_equivalence("2", 993, 1.0, "output")


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["inf", "1", "2"])
def test_equivalence_bound_not_below_a_sample_slow(norm):
    _prop(check_equivalence, norm, SLOW)


def check_preimage_radius(_, seed: int, scale: float, kind: str) -> None:
    """1-D maps: a sign change of F(y) - F(c) between two grid points is (by the intermediate
    value theorem) another preimage of F(c); none may lie inside the certified radius."""
    from dynid.certify.radius import certified_radius

    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [1, int(rng.integers(2, 7)), 1])
    if kind == "output":
        net = ReLUNet(list(net.weights[:-1]) + [net.weights[-1] * scale],
                      list(net.biases[:-1]) + [net.biases[-1] * scale], net.relu)
    c = rng.uniform(-1, 1, 1)
    tol = 1e-4
    cert = certified_radius(net, c, mode="preimage", r_max=2.0, tol=tol)
    r = cert.value
    ys = np.linspace(c[0] - r, c[0] + r, 20001)
    g = (forward_ld(net, ys[:, None])[:, 0] - forward_ld(net, c[None])[0, 0])
    far = np.abs(ys - c[0]) > tol
    s = np.sign(g)
    pair = far[:-1] & far[1:] & (s[:-1] * s[1:] < 0) & (np.sign(ys[:-1] - c[0]) == np.sign(
        ys[1:] - c[0]))
    if pair.any():
        i = int(np.flatnonzero(pair)[0])
        nearest = max(abs(ys[i] - c[0]), abs(ys[i + 1] - c[0]))
        assert nearest >= r, (seed, scale, kind, r, ys[i], ys[i + 1])
    if cert.witness is not None:
        y = np.asarray(cert.witness["x"])
        assert abs(float(y[0] - c[0])) >= cert.bound - 1e-12


def test_preimage_radius_not_contradicted():
    _prop(check_preimage_radius, "preimage", 30)


def test_preimage_radius_at_the_1e6_output_scale():
    """Found by the slow suite: with outputs of size 1e-7 the MIP called the preimage query
    infeasible (certified radius r_max = 2) although another preimage lies 0.874 away; the
    outputs are now scaled to size 1 (a power of two) before encoding."""
    check_preimage_radius("preimage", 3413874, 1e-6, "output")


@pytest.mark.slow
def test_preimage_radius_not_contradicted_slow():
    _prop(check_preimage_radius, "preimage", SLOW)


def check_jacobian_injective(_, seed: int, scale: float, kind: str) -> None:
    """1-D maps: a box the interval-Jacobian test calls injective must carry a strictly
    monotone map (brute-force grid in extended precision), since a continuous map of an
    interval is injective only if strictly monotone."""
    from dynid.certify.radius import jacobian_injective

    rng = np.random.default_rng(seed)
    net = random_relunet(rng, [1, int(rng.integers(2, 7)), int(rng.integers(1, 5)), 1])
    if kind == "output":
        net = ReLUNet(list(net.weights[:-1]) + [net.weights[-1] * scale],
                      list(net.biases[:-1]) + [net.biases[-1] * scale], net.relu)
    c, r = rng.uniform(-1, 1), rng.uniform(0.01, 1.0) * (scale if kind == "box" else 1.0)
    if not jacobian_injective(net, [c - r], [c + r]):
        return
    g = np.diff(forward_ld(net, np.linspace(c - r, c + r, 4001)[:, None])[:, 0])
    assert np.all(g > 0) or np.all(g < 0), (seed, scale, kind)


def test_jacobian_injective_not_contradicted():
    _prop(check_jacobian_injective, "jacobian", 200)


@pytest.mark.slow
def test_jacobian_injective_not_contradicted_slow():
    _prop(check_jacobian_injective, "jacobian", SLOW)


# ------------------------------------------------------------------ the issue's failing cases
def test_issue_case_equivalence_at_the_tolerance_scale():
    """Issue 17 item 1: a 2-6-2 net against a copy with 1e-6 weight noise (seed 102 of this
    construction): before the pad, Gurobi certified a bound 1.9e-8 below a sampled deviation."""
    from dynid.certify.equivalence import equivalence, deviation

    rng = np.random.default_rng(102)
    f = random_relunet(rng, [2, 6, 2])
    g = ReLUNet([w + 1e-6 * rng.normal(size=w.shape) for w in f.weights],
                [b + 1e-6 * rng.normal(size=b.shape) for b in f.biases], f.relu)
    lo, hi = -np.ones(2), np.ones(2)
    cert = equivalence(f, g, lo, hi)
    x = lo + (hi - lo) * rng.random((200_000, 2))
    top = float(deviation(f, g, x).max())
    assert cert.bound >= top
    assert cert.bound - top < 1e-6          # still a useful bound, not a huge pad


def test_issue_case_mip_reach_octagon():
    """Issue 17 item 1: reach with the MIP engine, IBP intermediate bounds, octagon template,
    2 partitions, 2 steps, a sparse 2-8-8-8-2 net (seed 12 of this construction): a sampled
    state lay 3.7e-7 beyond a certified facet before the pad."""
    from reach.reachability import reach

    rng = np.random.default_rng(12)
    f = random_relunet(rng, [2, 8, 8, 8, 2])
    f = ReLUNet([w * (rng.random(w.shape) < 0.4) for w in f.weights], f.biases, f.relu)
    lo, hi = -np.ones(2), np.ones(2)
    ds = reach(f, lo, hi, 2, engine="mip", template="octagon", partitions=2,
               engine_opts={"intermediate": "ibp"})
    D = np.asarray(ds.directions.values, np.longdouble)
    x = np.vstack([lo + (hi - lo) * rng.random((100_000, 2)),
                   np.array([[a, b] for a in (-1, 0, 1) for b in (-1, 0, 1)], float)])
    for k in (1, 2):
        x = forward_ld(f, x)
        v = x @ D.T
        assert np.all(v <= np.asarray(ds.hull_upper.sel(step=k).values, np.longdouble))
        assert np.all(v >= np.asarray(ds.hull_lower.sel(step=k).values, np.longdouble))


# ------------------------------------------------------------------ issue 17 items 6 and 8
@pytest.mark.parametrize("engine", ["lp-splitting", "lp-highs", "crown", "mip"])
def test_issue_case_degenerate_nets_and_boxes(engine):
    """Item 6: a net with all-zero weight rows (the splitting solver's Cholesky factor was not
    positive definite) and a box 1e-6 wide (HiGHS called the triangle LP infeasible): bounds
    come back and contain every sampled value."""
    from reach.engines import bound

    rng = np.random.default_rng(7)
    net = random_relunet(rng, [2, 6, 6, 2])
    w = [x.copy() for x in net.weights]
    w[0][[1, 4]] = 0.0          # dead first-layer units
    w[1][2] = 0.0               # an all-zero row in the second layer
    net = ReLUNet(w, net.biases, net.relu)
    opts = dict(SPLIT_OPTS) if engine == "lp-splitting" else {}
    for lo, hi in ((-np.ones(2), np.ones(2)),
                   (np.array([0.3, -0.2]) - 5e-7, np.array([0.3, -0.2]) + 5e-7)):
        low, up = bound(net, lo, hi, np.eye(2), engine=engine, **opts)
        y = forward_ld(net, sample_points(rng, lo, hi))
        assert np.all(np.isfinite(low)) and np.all(np.isfinite(up))
        assert np.all(np.asarray(low, np.longdouble) <= y.min(axis=0))
        assert np.all(y.max(axis=0) <= np.asarray(up, np.longdouble))


def test_issue_case_splitting_engine_defaults_to_polish():
    """Item 8: the splitting engine's front door runs splitting+polish (outputs and intermediate
    bounds), not 2000 plain ADMM iterations per layer; its bound on a small net is then within
    1e-2 of the exact LP's (HiGHS, rigorous dual) and never below it."""
    from reach.engines import bound, engine_options

    o = engine_options("lp-splitting")
    assert o["polish_steps"] > 0 and o["intermediate_opts"]["polish_steps"] > 0
    rng = np.random.default_rng(3)
    net = random_relunet(rng, [2, 8, 8, 2])
    lo, hi = -np.ones(2), np.ones(2)
    C = np.vstack([np.eye(2), -np.eye(2)])
    _, up_s = bound(net, lo, hi, C, engine="lp-splitting")
    _, up_h = bound(net, lo, hi, C, engine="lp-highs")
    y = forward_ld(net, sample_points(rng, lo, hi)) @ np.asarray(C, np.longdouble).T
    assert np.all(np.asarray(up_s, np.longdouble) >= y.max(axis=0))
    width = np.asarray(up_h) - np.asarray(y.max(axis=0), float)
    assert np.all(np.asarray(up_s) - np.asarray(up_h) <= 1e-2 * (1 + np.abs(up_h)) + width)


def test_issue_case_reference_radius_reports_its_witness():
    """Item 8: the reference bisection's upper bound is the distance of its witness (not the
    last bisection radius) and the witness is a real second preimage."""
    from dynid.certify.radius import certified_radius

    net = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[-1.0, -1.0]])],
                  [np.zeros(2), np.zeros(1)])                       # x -> -|x|
    c = np.array([0.3])
    r = certified_radius(net, c, mode="preimage", method="reference", r_max=2.0)
    assert r.status.value == "certified"
    x = np.asarray(r.witness["x"], float)
    assert abs(float(forward_ld(net, x[None])[0, 0] - forward_ld(net, c[None])[0, 0])) < 1e-6
    assert r.bound == pytest.approx(abs(float(x[0] - c[0])), abs=1e-12)
    # the other preimage of -0.3 is -0.3: distance 0.6 (analytic)
    assert r.value <= 0.6 <= r.bound + 1e-6 and r.bound - r.value <= 1e-3 * (1 + 1e-9) + 1e-9
