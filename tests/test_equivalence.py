"""epsilon-equivalence against independent references: analytic deviations, dense grids,
sampling, and an exact enumeration of activation patterns with one LP per pattern."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dynid import ReLUNet
from dynid.errors import DynidError, NormError
from tests.conftest import random_relunet

import dynid.milp as milp  # noqa: E402,F401  (the package's own modules: never skipped)

from dynid.bounds import crown_bounds  # noqa: E402
from dynid.certify.equivalence import deviation, difference_bounds, equivalence  # noqa: E402
from dynid.prune import prune  # noqa: E402


@pytest.mark.parametrize("method", ["ours", "naive"])
@pytest.mark.parametrize("norm", ["inf", "1", "2"])
def test_exact_copy_is_zero_certified(method, norm):
    rng = np.random.default_rng(0)
    f = random_relunet(rng, [2, 8, 8, 2])
    g = ReLUNet(f.weights, f.biases, f.relu)
    cert = equivalence(f, g, [-1, -1], [1, 1], norm=norm, method=method, solver="highs"
                       if norm != "2" else "auto")
    assert cert.certified
    assert cert.value == 0.0
    # L2 is solved as max ||d||^2: the solver's absolute gap applies to the square
    assert 0.0 <= (cert.bound ** 2 if norm == "2" else cert.bound) < 1e-4


def _active_unit_net(rng, n_in=2, width=6, n_out=2):
    """One hidden layer; unit 0 has a bias large enough to be active on [-1, 1]^n."""
    w1 = rng.normal(size=(width, n_in))
    b1 = rng.normal(size=width) * 0.3
    b1[0] = np.abs(w1[0]).sum() + 0.5  # z_0 >= 0.5 on the box
    w2 = rng.normal(size=(n_out, width))
    return ReLUNet([w1, w2], [b1, rng.normal(size=n_out)])


@pytest.mark.parametrize("method", ["ours", "naive"])
def test_one_weight_changed_on_active_unit_gives_analytic_deviation(method):
    rng = np.random.default_rng(1)
    f = _active_unit_net(rng)
    d = 0.37
    # (a) an outgoing weight of the active unit: deviation = |d| * max_x z_0(x)
    w2 = np.array(f.weights[1])
    w2[1, 0] += d
    g = ReLUNet([f.weights[0], w2], f.biases)
    z0_max = np.abs(f.weights[0][0]).sum() + f.biases[0][0]
    cert = equivalence(f, g, [-1, -1], [1, 1], method=method, solver="highs")
    assert cert.certified
    assert cert.value == pytest.approx(d * z0_max, rel=1e-6)
    assert cert.bound == pytest.approx(d * z0_max, rel=1e-3)
    # (b) an incoming weight of the active unit (it stays active in both copies):
    # f - g = W2[:, 0] * d * x_1, so the L-inf deviation is max_i |W2[i, 0]| * d * 1
    w1 = np.array(f.weights[0])
    w1[0, 1] += d
    b1 = np.array(f.biases[0])
    b1[0] += d
    g = ReLUNet([w1, f.weights[1]], [b1, f.biases[1]])
    cert = equivalence(f, g, [-1, -1], [1, 1], method=method, solver="highs")
    expected = np.abs(f.weights[1][:, 0]).max() * d * 2  # x_1 = 1 plus the bias change
    assert cert.certified
    assert cert.value == pytest.approx(expected, rel=1e-6)
    assert cert.bound == pytest.approx(expected, rel=1e-3)


def _exact_linf_by_patterns(f1, f2, lo, hi):
    """max ||f1 - f2||_inf by enumerating the activation patterns of both one-hidden-layer
    networks (one LP per pattern and direction, scipy/HiGHS)."""
    from scipy.optimize import linprog

    (w1, v1), (c1, e1) = f1.weights, f1.biases
    (w2, v2), (c2, e2) = f2.weights, f2.biases
    n1, n2 = w1.shape[0], w2.shape[0]
    best = 0.0
    for pat in itertools.product([0, 1], repeat=n1 + n2):
        p1, p2 = np.array(pat[:n1]), np.array(pat[n1:])
        # active: w x + b >= 0  ->  -w x <= b ; inactive: w x + b <= 0
        s1 = np.where(p1 == 1, -1.0, 1.0)
        s2 = np.where(p2 == 1, -1.0, 1.0)
        a_ub = np.vstack([s1[:, None] * w1, s2[:, None] * w2])
        b_ub = np.concatenate([-s1 * c1, -s2 * c2])
        # d(x) = V1 D1 (W1 x + c1) + e1 - V2 D2 (W2 x + c2) - e2
        lin = v1 @ (p1[:, None] * w1) - v2 @ (p2[:, None] * w2)
        const = v1 @ (p1 * c1) + e1 - v2 @ (p2 * c2) - e2
        for j in range(lin.shape[0]):
            for s in (1.0, -1.0):
                r = linprog(-s * lin[j], A_ub=a_ub, b_ub=b_ub, bounds=list(zip(lo, hi)),
                            method="highs")
                if r.status == 0:
                    best = max(best, -r.fun + s * const[j])
    return best


@settings(max_examples=2)
@given(seed=st.integers(0, 10_000))
def test_linf_matches_pattern_enumeration(seed):
    rng = np.random.default_rng(seed)
    f1 = random_relunet(rng, [2, 3, 2])
    f2 = random_relunet(rng, [2, 3, 2])
    lo, hi = np.array([-1.0, -0.5]), np.array([1.0, 1.5])
    exact = _exact_linf_by_patterns(f1, f2, lo, hi)
    for method in ("ours", "naive"):
        cert = equivalence(f1, f2, lo, hi, method=method, solver="highs")
        assert cert.certified
        assert cert.bound >= exact - 1e-7
        assert cert.value <= exact + 1e-7
        assert cert.bound - exact <= 1e-3 * max(1, exact) + 1e-5
        # the witness is a point of the box whose float64 deviation is the value
        x = cert.witness["x"]
        assert np.all(x >= lo) and np.all(x <= hi)
        assert deviation(f1, f2, x) == pytest.approx(cert.value, abs=1e-12)


@pytest.mark.slow
@settings(max_examples=4)
@given(seed=st.integers(0, 10_000), norm=st.sampled_from(["inf", "1", "2"]))
def test_1d_against_dense_grid(seed, norm):
    rng = np.random.default_rng(seed)
    f1 = random_relunet(rng, [1, 5, 4, 2])
    f2 = prune(f1, 0.4)
    xs = np.linspace(-2, 2, 40001)[:, None]
    grid = deviation(f1, f2, xs, norm).max()
    # Lipschitz constant of the difference bounds the error of the grid maximum
    lip = np.prod([np.linalg.norm(w, 2) for w in f1.weights]) + \
        np.prod([np.linalg.norm(w, 2) for w in f2.weights])
    h = 4 / 40000
    cert = equivalence(f1, f2, [-2.0], [2.0], norm=norm, solver="highs" if norm != "2" else "auto")
    assert cert.certified
    assert cert.bound >= grid - 1e-9
    assert cert.bound <= grid + lip * h * 2 + 1e-3 * max(1, grid) + 1e-5


@pytest.mark.slow
@settings(max_examples=3)
@given(seed=st.integers(0, 10_000))
def test_pruned_copies_ours_equals_naive_and_bounds_hold(seed):
    rng = np.random.default_rng(seed)
    f1 = random_relunet(rng, [2, 10, 10, 2])
    f2 = prune(f1, 0.5)
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 2.0])
    ours = equivalence(f1, f2, lo, hi, method="ours", solver="highs")
    naive = equivalence(f1, f2, lo, hi, method="naive", solver="highs")
    assert ours.certified and naive.certified
    tol = 2e-4 * max(1.0, naive.bound) + 1e-5
    assert abs(ours.bound - naive.bound) <= tol
    pts = lo + (hi - lo) * rng.random((20000, 2))
    assert deviation(f1, f2, pts).max() <= ours.bound + 1e-9
    # ours encodes fewer binaries (stable units) than one per ReLU
    assert ours.model_size["binaries"] <= naive.model_size["binaries"]
    # the simplified pruned network (different shape) gives the same certified maximum
    simp = equivalence(f1, f2.simplify(), lo, hi, solver="highs")
    assert abs(simp.bound - naive.bound) <= tol


@settings(max_examples=5)
@given(seed=st.integers(0, 10_000), s=st.sampled_from([0.1, 0.5, 0.9]))
def test_difference_bounds_contain_samples(seed, s):
    rng = np.random.default_rng(seed)
    f1 = random_relunet(rng, [2, 8, 8, 2], identity_frac=0.2)
    f2 = prune(f1, s)
    lo, hi = np.array([-1.0, 0.0]), np.array([0.5, 2.0])
    b1, b2 = crown_bounds(f1, lo, hi), crown_bounds(f2, lo, hi)
    d = difference_bounds(f1, f2, b1, b2, lo, hi)
    x = lo + (hi - lo) * rng.random((5000, 2))
    z1, z2 = f1.preactivations(x), f2.preactivations(x)
    h1, h2 = f1.activations(x)[1:], f2.activations(x)[1:]
    for k in range(f1.n_layers):
        assert np.all(z1[k] - z2[k] >= d.dz_lo[k]) and np.all(z1[k] - z2[k] <= d.dz_hi[k])
        assert np.all(h1[k] - h2[k] >= d.dh_lo[k]) and np.all(h1[k] - h2[k] <= d.dh_hi[k])
    assert b1.contains(f1, x) and b2.contains(f2, x)


def test_eps_verdicts_and_bad_input():
    rng = np.random.default_rng(5)
    f1 = random_relunet(rng, [2, 6, 2])
    f2 = prune(f1, 0.5)
    full = equivalence(f1, f2, [-1, -1], [1, 1], solver="highs")
    yes = equivalence(f1, f2, [-1, -1], [1, 1], eps=full.bound * 1.01 + 1e-6, solver="highs")
    no = equivalence(f1, f2, [-1, -1], [1, 1], eps=full.value * 0.5, solver="highs")
    assert yes.status.value == "certified"
    assert no.status.value == "counterexample"
    assert deviation(f1, f2, no.witness["x"]) > full.value * 0.5
    with pytest.raises(NormError):
        equivalence(f1, f2, [-1, -1], [1, 1], norm=3)
    with pytest.raises(DynidError, match="differ in shape"):
        equivalence(f1, random_relunet(rng, [3, 4, 2]), [-1, -1], [1, 1])
    with pytest.raises(DynidError, match="method"):
        equivalence(f1, f2, [-1, -1], [1, 1], method="magic")
