"""dynid.systems against hand-written formulas, scipy's solve_ivp and matrix exponentials."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from dynid.errors import ConfigError, DynidError, ShapeError, UnknownSystemError
from dynid.systems import (System, get_system, linear_system, list_systems, register_system)

CATALOGUE = ["brusselator", "van_der_pol", "fitzhugh_nagumo", "lotka_volterra", "duffing",
             "pendulum", "linear"]

# independent, hand-written right-hand sides with the catalogue defaults
HAND_RHS = {
    "brusselator": lambda x, y: (1 - 4 * x + x * x * y, 3 * x - x * x * y),
    "van_der_pol": lambda x, y: (y, (1 - x * x) * y - x),
    "fitzhugh_nagumo": lambda v, w: (v - v ** 3 / 3 - w + 0.875, 0.08 * (v + 0.7 - 0.8 * w)),
    "lotka_volterra": lambda u, v: (1.5 * u - u * v, u * v - 3.0 * v),
    "duffing": lambda x, v: (v, -0.3 * v + x - x ** 3),
    "pendulum": lambda th, om: (om, -9.81 * np.sin(th) - 0.5 * om),
    "linear": lambda x1, x2: (x2, -2 * x1 - 0.5 * x2),
}


def hand_f(name):
    return lambda z: np.array(HAND_RHS[name](*z), dtype=float)


def points_in_domain(system, n, seed=0):
    lo, hi = system.domain
    return lo + np.random.default_rng(seed).random((n, system.n_state)) * (hi - lo)


def reference_flow(f, x0, dt):
    """DOP853 at rtol 1e-12 on the hand-written RHS: the independent reference."""
    sol = solve_ivp(lambda t, z: f(z), (0, dt), x0, method="DOP853", rtol=1e-12, atol=1e-13)
    return sol.y[:, -1]


def test_catalogue_is_complete():
    assert set(CATALOGUE) <= set(list_systems())
    for name in CATALOGUE:
        sys = get_system(name)
        assert sys.n_state == 2 and len(sys.state_names) == 2
        lo, hi = sys.domain
        assert np.all(lo < hi)


@pytest.mark.parametrize("name", CATALOGUE)
def test_rhs_matches_hand_formula(name):
    sys = get_system(name)
    X = points_in_domain(sys, 50, seed=1)
    expected = np.array([hand_f(name)(x) for x in X])
    np.testing.assert_allclose(sys.rhs(X), expected, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(sys.rhs(X[3]), expected[3], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", CATALOGUE)
def test_casadi_expression_matches_hand_formula(name):
    import casadi as ca

    sys = get_system(name)
    x, p, expr = sys.casadi_rhs()
    f = ca.Function("f", [x, p], [expr])
    for z in points_in_domain(sys, 5, seed=2):
        got = np.asarray(f(z, sys.param_vector())).ravel()
        np.testing.assert_allclose(got, hand_f(name)(z), rtol=1e-13, atol=1e-13)


@given(st.floats(0.05, 4.0), st.floats(0.0, 5.0))
def test_euler_brusselator_hand_formula(x, y):
    tau, a, b = 0.15, 1.0, 2.0
    sys = get_system("brusselator", a=a, b=b)
    got = sys.step_map(np.array([x, y]), tau, "euler")
    expected = [x + tau * (a - (b + 1) * x + x * x * y), y + tau * (b * x - x * x * y)]
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-14)


def hand_rk4(f, z, h):
    k1 = f(z)
    k2 = f(z + h / 2 * k1)
    k3 = f(z + h / 2 * k2)
    k4 = f(z + h * k3)
    return z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


@pytest.mark.parametrize("name", ["brusselator", "van_der_pol"])
def test_rk4_hand_formula(name):
    sys = get_system(name)
    X = points_in_domain(sys, 40, seed=3)
    expected = np.array([hand_rk4(hand_f(name), x, 0.07) for x in X])
    np.testing.assert_allclose(sys.step_map(X, 0.07, "rk4"), expected, rtol=1e-13, atol=1e-13)


def test_van_der_pol_euler_with_mu():
    sys = get_system("van_der_pol", mu=2.5)
    X = points_in_domain(sys, 20, seed=4)
    x, y = X[:, 0], X[:, 1]
    expected = np.stack([x + 0.1 * y, y + 0.1 * (2.5 * (1 - x * x) * y - x)], axis=1)
    np.testing.assert_allclose(sys.step_map(X, 0.1, "euler"), expected, rtol=1e-14)


@pytest.mark.parametrize("name", ["brusselator", "van_der_pol", "fitzhugh_nagumo",
                                  "lotka_volterra", "duffing", "pendulum"])
def test_casadi_flow_matches_solve_ivp(name):
    sys = get_system(name)
    X = points_in_domain(sys, 12, seed=5)
    got = sys.step_map(X, 0.1, "flow")
    ref = np.array([reference_flow(hand_f(name), x, 0.1) for x in X])
    assert np.abs(got - ref).max() < 1e-8


def test_library_scipy_path_matches_casadi():
    sys = get_system("duffing")
    X = points_in_domain(sys, 6, seed=6)
    a = sys.step_map(X, 0.2, "flow", integrator="casadi")
    b = sys.step_map(X, 0.2, "flow", integrator="scipy")
    assert np.abs(a - b).max() < 1e-8


def test_linear_flow_is_matrix_exponential_with_input():
    A = np.array([[0.0, 1.0, 0.0], [-2.0, -0.3, 1.0], [0.5, 0.0, -1.0]])
    B = np.array([[0.0], [1.0], [0.5]])
    u = np.array([0.7])
    sys = get_system("linear", A=A.tolist(), B=B.tolist(), u=u.tolist())
    dt = 0.3
    # x(dt) = e^{A dt} x0 + int_0^dt e^{A s} ds B u, via the augmented matrix [[A, Bu], [0, 0]]
    M = np.zeros((4, 4))
    M[:3, :3] = A
    M[:3, 3] = B @ u
    E = expm(M * dt)
    X = np.random.default_rng(7).normal(size=(10, 3))
    expected = X @ E[:3, :3].T + E[:3, 3]
    np.testing.assert_allclose(sys.step_map(X, dt, "flow"), expected, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(sys.step_map(X, dt, "euler"), X + dt * (X @ A.T + B @ u),
                               rtol=1e-14)


def test_linear_input_can_be_changed():
    sys = linear_system([[-1.0]], B=[[1.0]], u=[2.0])
    # x' = -x + 2: x(t) = 2 + (x0 - 2) e^{-t}
    got = sys.with_params(u=[4.0]).step_map(np.array([[0.0]]), 1.0)[0, 0]
    assert abs(got - (4 - 4 * np.exp(-1))) < 1e-9
    assert sys.params["u"] == [2.0]


def test_euler_brusselator_folds_on_the_analytic_curve():
    """det(I + tau J_f) = 0 on y = (tau (1 - tau) x^2 + tau (b + 1) - 1) / (2 tau x), with the
    Jacobian taken symbolically from casadi_rhs()."""
    import casadi as ca

    tau, b = 0.15, 2.0
    sys = get_system("brusselator", a=1.0, b=b)
    x, p, expr = sys.casadi_rhs()
    J = ca.Function("J", [x, p], [ca.jacobian(expr, x)])
    for xv in (0.5, 1.0, 2.0, 3.0):
        yv = (tau * (1 - tau) * xv ** 2 + tau * (b + 1) - 1) / (2 * tau * xv)
        Jm = np.eye(2) + tau * np.asarray(J([xv, yv], sys.param_vector()))
        assert abs(np.linalg.det(Jm)) < 1e-12
        # and away from the curve it is not zero
        Jm2 = np.eye(2) + tau * np.asarray(J([xv, yv + 1.0], sys.param_vector()))
        assert abs(np.linalg.det(Jm2)) > 1e-3


def test_unknown_system_lists_names():
    with pytest.raises(UnknownSystemError) as err:
        get_system("lorenz63")
    msg = str(err.value)
    assert "lorenz63" in msg and "brusselator" in msg and "van_der_pol" in msg
    assert isinstance(err.value, DynidError)


def test_unknown_parameter_names_valid_ones():
    with pytest.raises(ConfigError, match="valid parameters: a, b"):
        get_system("brusselator", c=1.0)
    with pytest.raises(ConfigError, match="must be a number"):
        get_system("van_der_pol", mu="fast")
    with pytest.raises(ShapeError):
        get_system("linear", A=[[1.0, 2.0]])


def test_parameters_change_dynamics():
    a = get_system("brusselator").rhs(np.array([1.0, 1.0]))
    b = get_system("brusselator", b=2.0).rhs(np.array([1.0, 1.0]))
    np.testing.assert_allclose(a, [1 - 4 + 1, 3 - 1])
    np.testing.assert_allclose(b, [1 - 3 + 1, 2 - 1])


def test_bad_step_inputs():
    sys = get_system("brusselator")
    with pytest.raises(ShapeError, match="2 states"):
        sys.step_map(np.ones((4, 3)), 0.1)
    with pytest.raises(ConfigError, match="dt"):
        sys.step_map(np.ones(2), -0.1)
    with pytest.raises(ConfigError, match="dt"):
        sys.step_map(np.ones(2), float("nan"))
    with pytest.raises(ConfigError, match="method"):
        sys.step_map(np.ones(2), 0.1, "heun")
    with pytest.raises(ConfigError, match="integrator"):
        sys.step_map(np.ones(2), 0.1, "flow", integrator="odeint")


def test_from_casadi_and_register():
    import casadi as ca

    x = ca.SX.sym("x", 2)
    k = ca.SX.sym("k")
    rot = System.from_casadi("test_rotation", x, ca.vertcat(-k * x[1], k * x[0]), p=k,
                             params={"k": 1.0}, state_names=["c", "s"],
                             domain=([-1, -1], [1, 1]))
    name = register_system(rot, overwrite=True)
    sys = get_system(name, k=2.0)
    t = 0.4
    got = sys.step_map(np.array([1.0, 0.0]), t)
    np.testing.assert_allclose(got, [np.cos(2 * t), np.sin(2 * t)], atol=1e-9)
    assert sys.state_names == ("c", "s")
    with pytest.raises(ConfigError, match="valid parameters: k"):
        get_system(name, q=1.0)
    with pytest.raises(ConfigError, match="catalogue"):
        register_system(rot, name="brusselator")
    with pytest.raises(ConfigError, match="already registered"):
        register_system(rot)
    with pytest.raises(ShapeError):
        System.from_casadi("bad", x, x[0])


def test_from_python_system():
    # logistic growth x' = r x (1 - x): x(t) = 1 / (1 + (1/x0 - 1) e^{-r t})
    logistic = System.from_python("logistic", lambda X, p: p["r"] * X * (1 - X), ["x"],
                                  {"r": 1.5}, domain=([0.1], [0.9]))
    x0 = np.array([[0.2], [0.5], [0.8]])
    t = 0.5
    exact = 1 / (1 + (1 / x0 - 1) * np.exp(-1.5 * t))
    np.testing.assert_allclose(logistic.step_map(x0, t, "flow"), exact, atol=1e-9)
    np.testing.assert_allclose(logistic.step_map(x0, t, "euler"),
                               x0 + t * 1.5 * x0 * (1 - x0), rtol=1e-14)
    f = lambda z: 1.5 * z * (1 - z)  # noqa: E731
    np.testing.assert_allclose(logistic.step_map(x0, t, "rk4"),
                               np.array([hand_rk4(f, z, t) for z in x0]), rtol=1e-14)
    np.testing.assert_allclose(logistic.with_params(r=0.0).step_map(x0, t), x0)
    with pytest.raises(ConfigError, match="no CasADi form"):
        logistic.casadi_rhs()
    broken = System.from_python("broken", lambda X, p: X[:, :1].ravel(), ["a", "b"])
    with pytest.raises(ShapeError, match="batched"):
        broken.rhs(np.ones((3, 2)))


def test_system_construction_checks():
    with pytest.raises(ConfigError, match="below hi"):
        System.from_python("s", lambda X, p: X, ["a"], domain=([1.0], [0.0]))
    with pytest.raises(ConfigError, match="distinct"):
        System.from_python("s", lambda X, p: X, ["a", "a"])
    with pytest.raises(ShapeError, match="domain"):
        System.from_python("s", lambda X, p: X, ["a", "b"], domain=([0.0], [1.0]))


@given(st.integers(1, 3), st.integers(0, 2 ** 31 - 1), st.floats(0.01, 0.5))
def test_random_linear_flow_matches_expm(n, seed, dt):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n))
    sys = linear_system(A)
    X = rng.normal(size=(5, n))
    expected = X @ expm(A * dt).T
    np.testing.assert_allclose(sys.step_map(X, dt, "flow"), expected, rtol=1e-8, atol=1e-9)


def test_user_casadi_system_many_samples_and_mx():
    """Covers the CasADi-evaluated RHS (no numpy twin) over several blocks, SX and MX."""
    import casadi as ca

    rng = np.random.default_rng(8)
    X = rng.uniform(-1, 1, size=(4100, 2))  # more than one RHS block of 4096
    for kind in (ca.SX, ca.MX):
        x = kind.sym("x", 2)
        c = kind.sym("c")
        sys = System.from_casadi(f"quad_{kind.__name__}", x,
                                 ca.vertcat(x[1], -c * x[0] - x[1] ** 3), p=c,
                                 params={"c": 2.0})
        expected = np.stack([X[:, 1], -2.0 * X[:, 0] - X[:, 1] ** 3], axis=1)
        np.testing.assert_allclose(sys.rhs(X), expected, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(sys.step_map(X, 0.05, "euler"), X + 0.05 * expected,
                                   rtol=1e-14, atol=1e-14)
        Z = X[:300]  # two flow blocks: 256 + 44
        ref = np.array([reference_flow(lambda z: np.array([z[1], -2 * z[0] - z[1] ** 3]),
                                       z, 0.2) for z in Z[:: 30]])
        assert np.abs(sys.step_map(Z, 0.2, "flow")[:: 30] - ref).max() < 1e-8
