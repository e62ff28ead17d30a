"""Catalogue plants with inputs: ``x' = f(x, u; p)``, one formula for CasADi and numpy.

Each entry of :data:`PLANTS` names the states, inputs, units, default parameters, the default
state box and the declared input box; :mod:`dynid.systems` turns it into a catalogue
:class:`~dynid.systems.System` (``get_system("pendulum_torque")``). The formulas take lists of
columns (CasADi symbols or numpy arrays) so the same text gives the symbolic RHS (exact
Jacobians, CVODES flow) and the batched numpy RHS (Euler, RK4, the solve_ivp reference).

| name | states | inputs | x' = f(x, u) |
|---|---|---|---|
| ``pendulum_torque`` | theta (0 = down), omega | tau | omega, -(g/l) sin theta - c omega + tau / (m l^2) |
| ``cart_pole`` | x, v, theta (0 = up), omega | F | Barto et al. (1983) with viscous friction |
| ``mass_spring_damper`` | x, v | F | v, (F - k x - c v) / m |

The linear plant ``linear_input`` (x' = A x + B u) is built by
:func:`dynid.systems.linear_system` with ``inputs=True``.

Example
-------
>>> import numpy as np
>>> pendulum_torque([np.array([0.0]), np.array([1.0])], [np.array([2.0])],
...                 {"g": 9.81, "l": 1.0, "m": 1.0, "c": 0.5})[1].tolist()
[1.5]
"""

from __future__ import annotations

import numpy as np


def _is_symbolic(v) -> bool:
    import casadi as ca

    return isinstance(v, (ca.SX, ca.MX, ca.DM))


def sin(v):
    """sin for CasADi symbols and numpy values alike (the catalogue formulas serve both)."""
    import casadi as ca

    return ca.sin(v) if _is_symbolic(v) else np.sin(v)


def cos(v):
    """cos for CasADi symbols and numpy values alike."""
    import casadi as ca

    return ca.cos(v) if _is_symbolic(v) else np.cos(v)


def pendulum_torque(x, u, p):
    """Damped pendulum driven by a torque: theta = 0 hangs down, theta = pi is upright."""
    th, om = x
    (tau,) = u
    return [om, -(p["g"] / p["l"]) * sin(th) - p["c"] * om + tau / (p["m"] * p["l"] ** 2)]


def cart_pole(x, u, p):
    """Cart-pole (Barto, Sutton & Anderson 1983; Florian 2007), theta = 0 upright, with
    viscous friction ``bc`` on the cart and ``bp`` at the pivot; ``l`` is the half-length."""
    _pos, v, th, om = x
    (force,) = u
    mc, mp, l, g = p["mc"], p["mp"], p["l"], p["g"]
    total = mc + mp
    s, c = sin(th), cos(th)
    temp = (force - p["bc"] * v + mp * l * om ** 2 * s) / total
    th_acc = (g * s - c * temp - p["bp"] * om / (mp * l)) / (l * (4.0 / 3.0 - mp * c ** 2 / total))
    x_acc = temp - mp * l * th_acc * c / total
    return [v, x_acc, om, th_acc]


def mass_spring_damper(x, u, p):
    """Mass on a linear spring and damper, pushed by a force F."""
    pos, v = x
    (force,) = u
    return [v, (force - p["k"] * pos - p["c"] * v) / p["m"]]


#: name -> the catalogue entry (formula, names, units, defaults, boxes, description)
PLANTS = {
    "pendulum_torque": {
        "rhs": pendulum_torque, "states": ("theta", "omega"), "inputs": ("tau",),
        "state_units": ("rad", "rad/s"), "input_units": ("N m",),
        "params": {"g": 9.81, "l": 1.0, "m": 1.0, "c": 0.5},
        "domain": ([-np.pi, -4.0], [np.pi, 4.0]), "input_box": ([-2.0], [2.0]),
        "description": "damped pendulum with torque theta' = omega, omega' = -(g/l) sin(theta) "
                       "- c omega + tau / (m l^2); theta = 0 down, pi upright"},
    "cart_pole": {
        "rhs": cart_pole, "states": ("x", "v", "theta", "omega"), "inputs": ("F",),
        "state_units": ("m", "m/s", "rad", "rad/s"), "input_units": ("N",),
        "params": {"mc": 1.0, "mp": 0.1, "l": 0.5, "g": 9.81, "bc": 0.5, "bp": 0.01},
        "domain": ([-2.0, -3.0, -np.pi, -6.0], [2.0, 3.0, np.pi, 6.0]),
        "input_box": ([-10.0], [10.0]),
        "description": "cart-pole pushed by a force F (theta = 0 upright, half-length l, "
                       "viscous friction bc on the cart and bp at the pivot)"},
    "mass_spring_damper": {
        "rhs": mass_spring_damper, "states": ("x", "v"), "inputs": ("F",),
        "state_units": ("m", "m/s"), "input_units": ("N",),
        "params": {"m": 1.0, "k": 1.0, "c": 0.4},
        "domain": ([-2.0, -2.0], [2.0, 2.0]), "input_box": ([-1.0], [1.0]),
        "description": "mass-spring-damper x' = v, v' = (F - k x - c v) / m"},
}

__all__ = ["PLANTS", "pendulum_torque", "cart_pole", "mass_spring_damper", "sin", "cos"]
