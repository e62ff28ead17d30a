"""Systems with inputs: the zero-order-hold flow against solve_ivp with the same held input
(right-hand sides written out again here, from the textbook equations), the linear plant
against its exact ZOH discretisation (matrix exponential), Euler/RK4 by hand, shapes and
errors, and autonomous systems unchanged."""

from __future__ import annotations

import casadi as ca
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from dynid.errors import ConfigError, ShapeError
from dynid.simulate import trajectories
from dynid.systems import System, get_system, linear_system, list_systems

PLANTS = ["pendulum_torque", "cart_pole", "mass_spring_damper", "linear_input"]


def _reference_rhs(name, p):
    """The plants' equations, written independently of dynid.plants."""
    if name == "pendulum_torque":
        return lambda x, u: [x[1], -p["g"] / p["l"] * np.sin(x[0]) - p["c"] * x[1]
                             + u[0] / (p["m"] * p["l"] ** 2)]
    if name == "mass_spring_damper":
        return lambda x, u: [x[1], (u[0] - p["k"] * x[0] - p["c"] * x[1]) / p["m"]]
    if name == "cart_pole":
        def f(x, u):   # Florian (2007), eqs. (21)-(22) with viscous friction
            _, v, th, om = x
            mc, mp, l, g = p["mc"], p["mp"], p["l"], p["g"]
            M = mc + mp
            num = g * np.sin(th) + np.cos(th) * (-u[0] + p["bc"] * v
                                                 - mp * l * om ** 2 * np.sin(th)) / M \
                - p["bp"] * om / (mp * l)
            thdd = num / (l * (4.0 / 3.0 - mp * np.cos(th) ** 2 / M))
            xdd = (u[0] + mp * l * (om ** 2 * np.sin(th) - thdd * np.cos(th)) - p["bc"] * v) / M
            return [v, xdd, om, thdd]
        return f
    A, B = np.asarray(p["A"]), np.asarray(p["B"])
    return lambda x, u: A @ x + B @ u


def _zoh_step(f, x, u, dt):
    sol = solve_ivp(lambda t, z: f(z, u), (0, dt), x, method="DOP853", rtol=1e-12,
                    atol=1e-13)
    return sol.y[:, -1]


@pytest.mark.parametrize("name", PLANTS)
def test_flow_with_held_input_matches_solve_ivp(name):
    sys = get_system(name)
    assert name in list_systems() and sys.n_input == 1 and len(sys.input_names) == 1
    rng = np.random.default_rng(3)
    lo, hi = sys.domain
    ulo, uhi = sys.input_box
    X = lo + rng.random((12, sys.n_state)) * (hi - lo)
    U = ulo + rng.random((12, 1)) * (uhi - ulo)
    got = sys.step_map(X, 0.05, "flow", u=U)
    f = _reference_rhs(name, sys.params)
    ref = np.array([_zoh_step(f, x, u, 0.05) for x, u in zip(X, U)])
    assert np.abs(got - ref).max() < 1e-8
    # scipy integrator path of dynid agrees too
    np.testing.assert_allclose(sys.step_map(X, 0.05, "flow", u=U, integrator="scipy"), ref,
                               rtol=0, atol=1e-8)
    # the vector field itself
    np.testing.assert_allclose(sys.rhs(X, U), np.array([f(x, u) for x, u in zip(X, U)]),
                               rtol=1e-12, atol=1e-12)


def test_driven_trajectory_is_piecewise_zoh():
    sys = get_system("pendulum_torque")
    rng = np.random.default_rng(0)
    U = rng.uniform(-2, 2, size=(2, 12, 1))
    x0 = np.array([[0.5, 0.0], [-1.0, 1.0]])
    ds = trajectories(sys, x0, 12, 0.05, u=U)
    f = _reference_rhs("pendulum_torque", sys.params)
    for i in range(2):
        x = x0[i]
        for k in range(12):   # segment by segment: the input jumps at every sample
            x = _zoh_step(f, x, U[i, k], 0.05)
            assert np.abs(ds["x"].values[i, k + 1] - x).max() < 1e-8
    assert ds["u"].dims == ("trajectory", "time", "input")
    np.testing.assert_array_equal(ds["u"].values[:, :12], U)
    np.testing.assert_array_equal(ds["u"].values[:, 12], U[:, -1])   # drives nothing


def test_linear_plant_equals_exact_zoh_discretisation():
    A = np.array([[0.0, 1.0], [-2.0, -0.5]])
    B = np.array([[0.0], [1.0]])
    sys = get_system("linear_input", A=A, B=B)
    dt = 0.1
    M = expm(np.block([[A, B], [np.zeros((1, 3))]]) * dt)
    Ad, Bd = M[:2, :2], M[:2, 2:]
    X = np.random.default_rng(1).normal(size=(20, 2))
    U = np.random.default_rng(2).normal(size=(20, 1))
    np.testing.assert_allclose(sys.step_map(X, dt, "flow", u=U), X @ Ad.T + U @ Bd.T,
                               rtol=0, atol=1e-9)
    # Euler and RK4 by hand
    np.testing.assert_allclose(sys.step_map(X, dt, "euler", u=U), X + dt * (X @ A.T + U @ B.T),
                               atol=1e-14)
    f = lambda x: x @ A.T + U @ B.T  # noqa: E731
    k1 = f(X)
    k2 = f(X + dt / 2 * k1)
    k3 = f(X + dt / 2 * k2)
    k4 = f(X + dt * k3)
    np.testing.assert_allclose(sys.step_map(X, dt, "rk4", u=U),
                               X + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), atol=1e-14)
    assert sys.input_names == ("u1",)
    lo, hi = sys.input_box
    assert lo.tolist() == [-1.0] and hi.tolist() == [1.0]
    assert get_system("linear_input", u_lo=-3, u_hi=2).input_box[1].tolist() == [2.0]


def test_casadi_symbols_of_a_plant():
    sys = get_system("pendulum_torque")
    x, u, p, expr = sys.casadi_rhs()
    J = ca.Function("J", [x, u, p], [ca.jacobian(expr, x), ca.jacobian(expr, u)])
    Jx, Ju = (np.asarray(v) for v in J([0.3, 0.1], [0.5], sys.param_vector()))
    g, l, m, c = (sys.params[k] for k in ("g", "l", "m", "c"))
    np.testing.assert_allclose(Jx, [[0, 1], [-g / l * np.cos(0.3), -c]], atol=1e-14)
    np.testing.assert_allclose(Ju, [[0], [1 / (m * l ** 2)]], atol=1e-14)
    f = sys.casadi_function()
    np.testing.assert_allclose(np.asarray(f([0.3, 0.1], [0.5], sys.param_vector())).ravel(),
                               sys.rhs([0.3, 0.1], [0.5]), atol=1e-14)
    assert len(get_system("brusselator").casadi_rhs()) == 3     # autonomous: unchanged
    assert get_system("brusselator").input_names == () and get_system("duffing").n_input == 0


def test_user_plants_from_casadi_and_python():
    x = ca.SX.sym("x", 1)
    u = ca.SX.sym("u", 1)
    k = ca.SX.sym("k")
    tank = System.from_casadi("test_tank", x, -k * x + u, u=u, p=k, params={"k": 2.0},
                              state_names=["h"], input_names=["q"],
                              input_box=([0.0], [1.0]))
    # x' = -k x + u, held u: x(dt) = e^{-k dt} x0 + (1 - e^{-k dt}) u / k
    got = tank.step_map([[1.0], [0.0]], 0.3, u=[[0.5], [1.0]])
    e = np.exp(-0.6)
    np.testing.assert_allclose(got.ravel(), [e + (1 - e) * 0.25, (1 - e) * 0.5], atol=1e-10)
    py = System.from_python("test_tank_py", lambda X, U, p: -p["k"] * X + U, ["h"], {"k": 2.0},
                            input_names=["q"], input_box=([0.0], [1.0]))
    np.testing.assert_allclose(py.step_map([[1.0], [0.0]], 0.3, u=[[0.5], [1.0]]), got,
                               atol=1e-9)
    assert tank.to_dict()["input_box"] == {"lo": [0.0], "hi": [1.0]}


def test_input_errors():
    sys = get_system("pendulum_torque")
    with pytest.raises(ConfigError, match="inputs"):
        sys.step_map([0.0, 0.0], 0.1)                  # a plant needs u
    with pytest.raises(ShapeError, match="u must have shape"):
        sys.step_map(np.zeros((3, 2)), 0.1, u=np.zeros((2, 1)))
    with pytest.raises(ConfigError, match="NaN"):
        sys.rhs([0.0, 0.0], u=[np.nan])
    with pytest.raises(ShapeError, match="no inputs"):
        get_system("duffing").step_map([0.0, 0.0], 0.1, u=[1.0])
    with pytest.raises(ConfigError, match="distinct"):
        System.from_python("bad", lambda X, U, p: X, ["a"], input_names=["a"])
    with pytest.raises(ConfigError, match="input box"):
        System.from_python("bad", lambda X, U, p: X, ["a"], input_names=["b"],
                           input_box=([1.0], [0.0]))
    with pytest.raises(ConfigError, match="inputs=True"):
        linear_system([[0.0]], [[1.0]], u=[1.0], inputs=True)
    with pytest.raises(ConfigError, match="experiments"):
        from dynid.stages.data import simulate_dataset
        simulate_dataset("pendulum_torque", kind="trajectories", samples=2, steps=2)


def test_pairs_of_a_plant_sample_the_input_box():
    from dynid.simulate import one_step_pairs

    sys = get_system("mass_spring_damper")
    ds = one_step_pairs(sys, 200, 0.1, method="rk4", sampling="lhs", u_lo=[-0.5], u_hi=[0.5])
    assert ds["u"].dims == ("sample", "input") and ds["input"].values.tolist() == ["F"]
    U = ds["u"].values
    assert U.min() >= -0.5 and U.max() <= 0.5 and U.std() > 0.2
    np.testing.assert_array_equal(ds["x_next"].values,
                                  sys.step_map(ds["x"].values, 0.1, "rk4", u=U))
    assert ds.attrs["input_lo"].tolist() == [-0.5] and ds.attrs["input_units"] == '["N"]'
    # LHS in the joint box: one sample per stratum of the input too
    strata = np.clip(np.floor((U[:, 0] + 0.5) * 200).astype(int), 0, 199)
    assert sorted(strata.tolist()) == list(range(200))
