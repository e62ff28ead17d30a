"""Rigorous interval evaluation of CasADi SX functions, batched over many boxes.

A CasADi ``SX`` :class:`casadi.Function` is a flat list of scalar instructions (``+ - * /``,
``sin``, ``exp``, constants, input reads, output writes). :class:`IntervalFunction` walks that
list once per call with every value an interval ``[lo, hi]`` held as two numpy arrays of shape
(B,): B boxes are evaluated together. Each result is rounded outward (by more than one ulp for
the correctly rounded IEEE operations ``+ - * / sqrt``, four ulps for the library functions
``exp`` ``log`` ``sin`` ``cos`` ``tan`` ``tanh`` ``atan`` ``sinh`` ``cosh`` and ``pow``; an
``np.nextafter`` step per operation would be as sound and four times slower), so the returned
interval contains the exact real value of the expression at every point of the input box.
An operation outside its domain somewhere in the box (a division by an interval containing
0, ``sqrt`` or ``log`` of a negative value) yields ``[-inf, inf]``: unbounded, never a silent
wrong number. An instruction this module does not know raises :class:`ConfigError` naming it.

:class:`Program` is the parsed instruction list; :func:`taylor_coefficients` walks it with
truncated Taylor series (of symbolic SX coefficients) instead of intervals, which gives the
Taylor coefficients of the solution of an ODE as CasADi expressions (used by
:mod:`dynid.validated` for the exact flow map).

Example
-------
>>> import casadi as ca
>>> x = ca.SX.sym("x", 2)
>>> f = IntervalFunction(ca.Function("f", [x], [x[0] ** 2 - ca.sin(x[1])]))
>>> (lo,), (hi,) = f([np.array([[-1.0, 0.0]])], [np.array([[2.0, np.pi / 2]])])
>>> bool(lo[0, 0, 0] <= -1.0 and hi[0, 0, 0] >= 4.0)       # x^2 in [0, 4], sin in [0, 1]
True
"""

from __future__ import annotations

import math

import numpy as np

from dynid.errors import ConfigError, ShapeError

INF = np.inf
TWO_PI = 2.0 * math.pi
LIB_ULPS = 4          # outward rounding of library functions, in ulps (glibc: < 1 ulp for these)


def _opnames() -> dict:
    import casadi as ca

    return {getattr(ca, k): k[3:].lower() for k in dir(ca) if k.startswith("OP_")}


class Program:
    """The instruction list of an SX Function, parsed once.

    ``steps`` is a list of ``(op_name, out_slot, in_slots, extra)`` in execution order; ``extra``
    is the constant of a ``const`` step, ``(input, nonzero)`` of an ``input`` step and
    ``(output, nonzero)`` of an ``output`` step. ``ssa`` gives, for each step, the indices of
    the steps that produced its operands (the work slots are reused by CasADi).
    """

    def __init__(self, fn):
        import casadi as ca

        if not isinstance(fn, ca.Function) or not fn.is_a("SXFunction"):
            raise ConfigError("interval evaluation needs a CasADi SX Function (build the "
                              "expression with casadi.SX symbols, not MX)")
        names = _opnames()
        self.fn = fn
        self.n_work = fn.sz_w()
        self.in_sizes = [fn.nnz_in(i) for i in range(fn.n_in())]
        self.out_sparsity = [fn.sparsity_out(i) for i in range(fn.n_out())]
        self.steps = []
        self.ssa = []
        last = {}                          # work slot -> step that wrote it last
        for k in range(fn.n_instructions()):
            op = names.get(fn.instruction_id(k), str(fn.instruction_id(k)))
            ins = list(fn.instruction_input(k))
            outs = list(fn.instruction_output(k))
            if op == "const":
                self.steps.append((op, outs[0], (), float(fn.instruction_constant(k))))
                self.ssa.append(())
            elif op == "input":
                self.steps.append((op, outs[0], (), (ins[0], ins[1])))
                self.ssa.append(())
            elif op == "output":
                self.steps.append((op, None, (ins[0],), (outs[0], outs[1])))
                self.ssa.append((last[ins[0]],))
                continue
            else:
                if op not in _INTERVAL_OPS:
                    raise ConfigError(f"interval evaluation: the CasADi operation {op!r} is not "
                                      f"supported (supported: {', '.join(sorted(_INTERVAL_OPS))}"
                                      "); rewrite the system's right-hand side with those")
                self.steps.append((op, outs[0], tuple(ins), None))
                self.ssa.append(tuple(last[i] for i in ins))
            last[outs[0]] = k


class IntervalFunction:
    """Interval extension of an SX Function, evaluated on B boxes at once.

    ``f(lo_list, hi_list)`` takes one (B, n_i) array pair per input of the Function (a
    1-D array is one box; NaN stands for an unbounded end) and returns ``(lo_out, hi_out)``:
    lists with one (B, rows, cols) array per output, dense (structural zeros are exact
    zeros).
    """

    def __init__(self, fn):
        self.program = fn if isinstance(fn, Program) else Program(fn)

    @property
    def n_instructions(self) -> int:
        return len(self.program.steps)

    def __call__(self, lo_list, hi_list):
        prog = self.program
        if len(lo_list) != len(prog.in_sizes) or len(hi_list) != len(prog.in_sizes):
            raise ShapeError(f"the function takes {len(prog.in_sizes)} inputs, got "
                             f"{len(lo_list)} lower and {len(hi_list)} upper arrays")
        los, his = [], []
        B = None
        for i, (a, b) in enumerate(zip(lo_list, hi_list)):
            a = np.atleast_2d(np.asarray(a, dtype=np.float64))
            b = np.atleast_2d(np.asarray(b, dtype=np.float64))
            if a.shape != b.shape or a.shape[1] != prog.in_sizes[i]:
                raise ShapeError(f"input {i} needs shape (B, {prog.in_sizes[i]}), got "
                                 f"{a.shape} and {b.shape}")
            if np.any(a > b):
                raise ShapeError(f"input {i}: every interval needs lo <= hi")
            a, b = _clean(a, b)            # NaN: nothing is known, the unbounded interval
            if B is None or a.shape[0] > 1:
                B = a.shape[0] if B in (None, 1) else B
            if a.shape[0] not in (1, B):
                raise ShapeError("inputs must have the same number of boxes (or one)")
            los.append(a)
            his.append(b)
        B = B or 1
        wlo = [None] * prog.n_work
        whi = [None] * prog.n_work
        out_lo = [np.zeros((B, s.nnz())) for s in prog.out_sparsity]
        out_hi = [np.zeros((B, s.nnz())) for s in prog.out_sparsity]
        with np.errstate(all="ignore"):
            for op, o, ins, extra in prog.steps:
                if op == "const":
                    wlo[o] = whi[o] = np.full(B, extra)
                elif op == "input":
                    i, nz = extra
                    wlo[o] = np.broadcast_to(los[i][:, nz], (B,))
                    whi[o] = np.broadcast_to(his[i][:, nz], (B,))
                elif op == "output":
                    i, nz = extra
                    out_lo[i][:, nz] = wlo[ins[0]]
                    out_hi[i][:, nz] = whi[ins[0]]
                else:
                    args = [(wlo[j], whi[j]) for j in ins]
                    wlo[o], whi[o] = _INTERVAL_OPS[op](*args)
        res_lo, res_hi = [], []
        for s, a, b in zip(prog.out_sparsity, out_lo, out_hi):
            a, b = _clean(a, b)
            res_lo.append(_densify(a, s, B))
            res_hi.append(_densify(b, s, B))
        return res_lo, res_hi


def _densify(vals, sp, B):
    rows, cols = sp.get_triplet()
    out = np.zeros((B, sp.size1(), sp.size2()))
    out[:, rows, cols] = vals
    return out


def _clean(lo, hi):
    """NaN anywhere (0 * inf, inf - inf, a domain error) becomes the unbounded interval."""
    bad = np.isnan(lo) | np.isnan(hi)
    if bad.any():
        lo = np.where(bad, -INF, lo)
        hi = np.where(bad, INF, hi)
    return lo, hi


# ---------------------------------------------------------------------- interval operations
# Outward rounding without nextafter (which is slow): a correctly rounded result v of the exact
# value e has |v - e| <= 2^-53 |v| (plus 2^-1075 below the normal range), so
# fl(v - (|v| 2^-51 + 1e-300)) <= v - 3 2^-53 |v| - ... < e: one subtraction rounds down safely.
_ROUND = 2.0 ** -51
_TINY = 1e-300


def _down(x, ulps: int = 1):
    return x - (np.abs(x) * (_ROUND * ulps) + _TINY)


def _up(x, ulps: int = 1):
    return x + (np.abs(x) * (_ROUND * ulps) + _TINY)


def _add(a, b):
    return _down(a[0] + b[0]), _up(a[1] + b[1])


def _sub(a, b):
    return _down(a[0] - b[1]), _up(a[1] - b[0])


def _neg(a):
    return -a[1], -a[0]


def _twice(a):
    return 2.0 * a[0], 2.0 * a[1]          # exact (or overflow to inf, still outward)


def _assign(a):
    return a


def _products(a, b):
    p = np.stack([a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]])
    # 0 * inf: the exact product of 0 with any real number is 0
    return np.where(np.isnan(p), 0.0, p)


def _mul(a, b):
    if a[0] is a[1] or b[0] is b[1]:       # a point operand (a constant): two products
        p, q = (a[0] * b[0], a[0] * b[1]) if a[0] is a[1] else (a[0] * b[0], a[1] * b[0])
        return _down(np.minimum(p, q)), _up(np.maximum(p, q))
    p1, p2, p3, p4 = a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]
    return (_down(np.minimum(np.minimum(p1, p2), np.minimum(p3, p4))),
            _up(np.maximum(np.maximum(p1, p2), np.maximum(p3, p4))))


def _sq(a):
    lo, hi = a
    l2, h2 = lo * lo, hi * hi
    low = np.where(lo >= 0, l2, np.where(hi <= 0, h2, 0.0))
    high = np.maximum(l2, h2)
    return np.maximum(_down(low), 0.0), _up(high)


def _div(a, b):
    zero = (b[0] <= 0) & (b[1] >= 0)
    q1, q2, q3, q4 = a[0] / b[0], a[0] / b[1], a[1] / b[0], a[1] / b[1]
    lo = _down(np.minimum(np.minimum(q1, q2), np.minimum(q3, q4)))
    hi = _up(np.maximum(np.maximum(q1, q2), np.maximum(q3, q4)))
    return np.where(zero, -INF, lo), np.where(zero, INF, hi)


def _inv(a):
    zero = (a[0] <= 0) & (a[1] >= 0)
    return np.where(zero, -INF, _down(1.0 / a[1])), np.where(zero, INF, _up(1.0 / a[0]))


def _sqrt(a):
    bad = a[0] < 0
    lo = np.where(bad, -INF, _down(np.sqrt(np.maximum(a[0], 0.0))))
    hi = np.where(bad, INF, _up(np.sqrt(np.maximum(a[1], 0.0))))
    return np.maximum(lo, np.where(bad, -INF, 0.0)), hi


def _monotone(fn, lo_clip=-INF, hi_clip=INF):
    def op(a):
        return (np.clip(_down(fn(a[0]), LIB_ULPS), lo_clip, hi_clip),
                np.clip(_up(fn(a[1]), LIB_ULPS), lo_clip, hi_clip))

    return op


def _exp(a):
    lo, hi = _monotone(np.exp, 0.0)(a)
    return lo, hi


def _log(a):
    bad = a[0] <= 0
    lo = np.where(bad, -INF, _down(np.log(np.where(bad, 1.0, a[0])), LIB_ULPS))
    hi = np.where(a[1] <= 0, INF, _up(np.log(np.maximum(a[1], 1e-300)), LIB_ULPS))
    return lo, hi


def _contains(lo, hi, phase):
    """Whether [lo, hi] (widened a little for the rounding of phase + 2 k pi) contains a point
    phase + 2 k pi for an integer k. Saying yes when in doubt only loosens the bound."""
    slack = 1e-12 * (1.0 + np.maximum(np.abs(lo), np.abs(hi)))
    k = np.ceil((lo - slack - phase) / TWO_PI)
    return phase + k * TWO_PI <= hi + slack


def _periodic(fn, max_phase, min_phase):
    def op(a):
        lo, hi = a
        v = np.stack([fn(lo), fn(hi)])
        low = _down(v.min(axis=0), LIB_ULPS)
        high = _up(v.max(axis=0), LIB_ULPS)
        wide = ~np.isfinite(lo) | ~np.isfinite(hi) | (hi - lo >= TWO_PI)
        high = np.where(wide | _contains(lo, hi, max_phase), 1.0, high)
        low = np.where(wide | _contains(lo, hi, min_phase), -1.0, low)
        return np.clip(low, -1.0, 1.0), np.clip(high, -1.0, 1.0)

    return op


def _tan(a):
    lo, hi = a
    # a pole pi/2 + k pi inside the interval: unbounded
    pole = _contains(lo, hi, math.pi / 2) | _contains(lo, hi, -math.pi / 2)
    pole |= ~np.isfinite(lo) | ~np.isfinite(hi) | (hi - lo >= math.pi)
    return (np.where(pole, -INF, _down(np.tan(lo), LIB_ULPS)),
            np.where(pole, INF, _up(np.tan(hi), LIB_ULPS)))


def _cosh(a):
    lo, hi = a
    v = np.maximum(np.cosh(lo), np.cosh(hi))
    low = np.where((lo <= 0) & (hi >= 0), 1.0, np.minimum(np.cosh(lo), np.cosh(hi)))
    return np.maximum(_down(low, LIB_ULPS), 1.0), _up(v, LIB_ULPS)


def _fabs(a):
    lo, hi = a
    low = np.where(lo >= 0, lo, np.where(hi <= 0, -hi, 0.0))
    return low, np.maximum(np.abs(lo), np.abs(hi))


def _fmin(a, b):
    return np.minimum(a[0], b[0]), np.minimum(a[1], b[1])


def _fmax(a, b):
    return np.maximum(a[0], b[0]), np.maximum(a[1], b[1])


def int_power(a, n: int):
    """[a]^n for an integer n (even powers are >= 0; negative n through 1 / [a]^|n|)."""
    if n == 0:
        return np.ones_like(a[0]), np.ones_like(a[1])
    if n < 0:
        return _inv(int_power(a, -n))
    lo, hi = a
    pl, ph = np.power(lo, n), np.power(hi, n)
    if n % 2:
        return _down(pl, LIB_ULPS), _up(ph, LIB_ULPS)
    low = np.where(lo >= 0, pl, np.where(hi <= 0, ph, 0.0))
    return np.maximum(_down(low, LIB_ULPS), 0.0), _up(np.maximum(pl, ph), LIB_ULPS)


def _pow(a, b):
    """[a]^[b]: an integer point exponent by :func:`int_power`, otherwise exp(b log a)
    (defined for a > 0; a zero or negative base gives the unbounded interval)."""
    point = (b[0] == b[1]) & (np.round(b[0]) == b[0]) & (np.abs(b[0]) <= 64)
    out_lo = np.full_like(a[0], -INF)
    out_hi = np.full_like(a[0], INF)
    if point.any():
        for n in np.unique(b[0][point]):
            sel = point & (b[0] == n)
            lo, hi = int_power((a[0][sel], a[1][sel]), int(n))
            out_lo[sel], out_hi[sel] = lo, hi
    rest = ~point
    if rest.any():
        # x^y = exp(y log x) for x > 0, plus a few ulps for pow's own rounding
        lg = _log((a[0][rest], a[1][rest]))
        lo, hi = _exp(_mul((b[0][rest], b[1][rest]), lg))
        out_lo[rest], out_hi[rest] = _down(lo, LIB_ULPS), _up(hi, LIB_ULPS)
    return _clean(out_lo, out_hi)


def _truth(true, false):
    """{0, 1}-valued comparison: [1, 1] where it surely holds, [0, 0] where it surely fails,
    [0, 1] where the boxes leave it open."""
    return np.where(false, 0.0, np.where(true, 1.0, 0.0)), np.where(true, 1.0,
                                                                    np.where(false, 0.0, 1.0))


def _le(a, b):
    return _truth(a[1] <= b[0], a[0] > b[1])


def _lt(a, b):
    return _truth(a[1] < b[0], a[0] >= b[1])


def _eq(a, b):
    point = (a[0] == a[1]) & (b[0] == b[1]) & (a[0] == b[0])
    return _truth(point, (a[1] < b[0]) | (a[0] > b[1]))


def _ne(a, b):
    lo, hi = _eq(a, b)
    return 1.0 - hi, 1.0 - lo


def _not(a):
    return _truth((a[0] == 0) & (a[1] == 0), (a[0] > 0) | (a[1] < 0))


def _if_else_zero(c, x):
    """c ? x : 0 with c in {0, 1} intervals: x, 0, or the hull of both."""
    sure, never = c[0] > 0, c[1] <= 0
    lo = np.where(never, 0.0, np.where(sure, x[0], np.minimum(x[0], 0.0)))
    hi = np.where(never, 0.0, np.where(sure, x[1], np.maximum(x[1], 0.0)))
    return lo, hi


def _sign(a):
    return np.sign(a[0]), np.sign(a[1])


_INTERVAL_OPS = {
    "le": _le, "lt": _lt, "eq": _eq, "ne": _ne, "not": _not, "if_else_zero": _if_else_zero,
    "sign": _sign,
    "assign": _assign, "add": _add, "sub": _sub, "mul": _mul, "div": _div, "neg": _neg,
    "twice": _twice, "sq": _sq, "inv": _inv, "sqrt": _sqrt, "exp": _exp, "log": _log,
    "sin": _periodic(np.sin, math.pi / 2, -math.pi / 2),
    "cos": _periodic(np.cos, 0.0, math.pi),
    "tan": _tan, "tanh": _monotone(np.tanh, -1.0, 1.0), "atan": _monotone(np.arctan),
    "sinh": _monotone(np.sinh), "cosh": _cosh, "fabs": _fabs, "fmin": _fmin, "fmax": _fmax,
    "pow": _pow, "constpow": _pow,
}


def iadd(a, b):
    """[a] + [b] for intervals given as (lo, hi) array pairs, rounded outward."""
    return _add(a, b)


def isub(a, b):
    """[a] - [b], rounded outward."""
    return _sub(a, b)


def imul(a, b):
    """[a] * [b] (elementwise, broadcasting), rounded outward."""
    return _mul(a, b)


def _sum_out(lo, hi, axis):
    """Outward-rounded sums along ``axis``: recursive summation of k terms errs by at most
    (k - 1) u sum |terms| (u = 2^-53), so widening by 2 k eps sum |terms| is safe."""
    k = lo.shape[axis]
    eps = np.finfo(np.float64).eps
    s_lo, s_hi = lo.sum(axis=axis), hi.sum(axis=axis)
    pad_lo = 2 * k * eps * np.abs(lo).sum(axis=axis) + 1e-300
    pad_hi = 2 * k * eps * np.abs(hi).sum(axis=axis) + 1e-300
    return _clean(s_lo - pad_lo, s_hi + pad_hi)


def imatmul(a, b):
    """Interval matrix product [A] [B] of batched matrices (..., n, k) and (..., k, m), each
    given as (lo, hi); rounded outward."""
    al, ah = a[0][..., :, :, None], a[1][..., :, :, None]
    bl, bh = b[0][..., None, :, :], b[1][..., None, :, :]
    p = _products((al, ah), (bl, bh))
    return _sum_out(_down(p.min(axis=0)), _up(p.max(axis=0)), axis=-2)


def imatvec(a, v):
    """Interval matrix-vector product [A] [v] of (..., n, k) and (..., k), rounded outward."""
    lo, hi = imatmul(a, (v[0][..., None], v[1][..., None]))
    return lo[..., 0], hi[..., 0]


def intersect(a, b):
    """Elementwise intersection of two enclosures of the same quantity."""
    return np.maximum(a[0], b[0]), np.minimum(a[1], b[1])


def supported_operations() -> list[str]:
    """Names of the CasADi operations the interval evaluator handles."""
    return sorted(_INTERVAL_OPS)


# ---------------------------------------------------------------------- Taylor series
_TAYLOR_OPS = {"assign", "add", "sub", "mul", "div", "neg", "twice", "sq", "inv", "sqrt",
               "exp", "log", "sin", "cos", "tanh", "pow", "constpow"}


def taylor_coefficients(f, order: int):
    """Taylor coefficients of the solution of ``x' = f(x, u)`` (``u`` held constant) as
    CasADi expressions of ``(x, u)``.

    ``f`` is an SX Function with inputs ``(x, u)`` (u may have size 0) and one output of the
    size of x. Returns ``(coefficients, x, u)``: the new symbols x and u and the list
    ``[x_0 = x, x_1, ..., x_order]`` of SX column vectors in them, with
    ``x(t) = sum_k x_k t^k + O(t^(order + 1))``; ``x_k = x^(k)(0) / k!``. The coefficients are
    built by the recurrences of automatic Taylor arithmetic over the instruction list, so
    their size grows like order^2 times the size of f (symbolic differentiation would grow
    exponentially).

    Example
    -------
    >>> import casadi as ca
    >>> x = ca.SX.sym("x"); u = ca.SX.sym("u", 0)
    >>> cs, xs, us = taylor_coefficients(ca.Function("f", [x, u], [-x]), 3)  # x(t) = x e^-t
    >>> [float(ca.substitute(c, xs, 1.0)) for c in cs]
    [1.0, -1.0, 0.5, -0.16666666666666666]
    """
    import casadi as ca

    prog = f if isinstance(f, Program) else Program(f)
    fn = prog.fn
    if fn.n_in() != 2 or fn.n_out() != 1 or fn.nnz_out(0) != fn.nnz_in(0):
        raise ShapeError("taylor_coefficients needs f(x, u) -> xdot with xdot the size of x")
    for op, *_ in prog.steps:
        if op not in _TAYLOR_OPS and op not in ("const", "input", "output"):
            raise ConfigError(f"the Taylor bound of the exact flow needs a smooth right-hand "
                              f"side; the CasADi operation {op!r} is not supported there "
                              "(use map 'euler' or 'rk4', or rewrite the right-hand side)")
    x = ca.SX.sym("x", fn.nnz_in(0))
    u = ca.SX.sym("u", fn.nnz_in(1))
    n = x.numel()
    xs = [[x[i] for i in range(n)]]         # xs[k][i]: coefficient k of state i
    series = [[] for _ in prog.steps]       # series[s][k]: coefficient k of step s
    aux = {}                                # partner series (cos of sin, 1 - t^2 of tanh)
    for k in range(order):
        f_k = [None] * n
        for s, (op, _, _, extra) in enumerate(prog.steps):
            args = [series[j] for j in prog.ssa[s]]
            if op == "const":
                val = extra if k == 0 else 0.0
            elif op == "input":
                i, nz = extra
                val = xs[k][nz] if i == 0 else (u[nz] if k == 0 else 0.0)
            elif op == "output":
                f_k[extra[1]] = args[0][k]
                continue
            else:
                val = _taylor_step(op, args, series[s], k, aux, s, ca)
            series[s].append(val)
        xs.append([ca.SX(fi) / (k + 1) for fi in f_k])
    return [ca.vertcat(*c) if n else ca.SX(0, 1) for c in xs], x, u


def _taylor_step(op, args, own, k, aux, s, ca):
    """Coefficient k of an operation's Taylor series from its operands' coefficients 0..k."""
    a = args[0] if args else None
    b = args[1] if len(args) > 1 else None
    conv = lambda p, q, lo=0: sum((p[j] * q[k - j] for j in range(lo, k + 1)), ca.SX(0))  # noqa
    if op == "assign":
        return a[k]
    if op == "add":
        return a[k] + b[k]
    if op == "sub":
        return a[k] - b[k]
    if op == "neg":
        return -a[k]
    if op == "twice":
        return 2 * a[k]
    if op == "mul":
        return conv(a, b)
    if op == "sq":
        return conv(a, a)
    if op in ("div", "inv"):
        num, den = (a, b) if op == "div" else (None, a)
        top = (num[k] if num is not None else (1.0 if k == 0 else 0.0))
        return (top - sum((den[j] * own[k - j] for j in range(1, k + 1)), ca.SX(0))) / den[0]
    if op == "sqrt":
        if k == 0:
            return ca.sqrt(a[0])
        return (a[k] - sum((own[j] * own[k - j] for j in range(1, k)), ca.SX(0))) / (2 * own[0])
    if op == "exp":
        if k == 0:
            return ca.exp(a[0])
        return sum((j * a[j] * own[k - j] for j in range(1, k + 1)), ca.SX(0)) / k
    if op == "log":
        if k == 0:
            return ca.log(a[0])
        acc = sum((j * own[j] * a[k - j] for j in range(1, k)), ca.SX(0)) / k
        return (a[k] - acc) / a[0]
    if op in ("sin", "cos"):
        sin_s, cos_s = aux.setdefault(s, ([], []))
        if k == 0:
            sin_s.append(ca.sin(a[0]))
            cos_s.append(ca.cos(a[0]))
        else:
            sin_s.append(sum((j * a[j] * cos_s[k - j] for j in range(1, k + 1)), ca.SX(0)) / k)
            cos_s.append(-sum((j * a[j] * sin_s[k - j] for j in range(1, k + 1)), ca.SX(0)) / k)
        return sin_s[k] if op == "sin" else cos_s[k]
    if op == "tanh":
        q = aux.setdefault(s, [])          # q = 1 - t^2, t' = q a'
        if k == 0:
            t0 = ca.tanh(a[0])
            q.append(1 - t0 * t0)
            return t0
        t_k = sum((j * a[j] * q[k - j] for j in range(1, k + 1)), ca.SX(0)) / k
        own_k = own + [t_k]
        q.append(-sum((own_k[j] * own_k[k - j] for j in range(0, k + 1)), ca.SX(0)))
        return t_k
    if op in ("pow", "constpow"):
        # p = a^c with c constant: p' a = c a' p  =>  p_k = sum_j (c j - (k - j)) a_j p_{k-j}
        #                                                   / (k a_0)
        c = b[0]
        if any(not (isinstance(v, float) or (hasattr(v, "is_zero") and v.is_zero()))
               for v in b[1:k + 1]) and k > 0:
            raise ConfigError("the Taylor bound supports powers with a constant exponent only")
        if k == 0:
            return a[0] ** c
        acc = sum(((c * j - (k - j)) * a[j] * own[k - j] for j in range(1, k + 1)), ca.SX(0))
        return acc / (k * a[0])
    raise ConfigError(f"Taylor arithmetic: operation {op!r} is not supported")  # pragma: no cover


__all__ = ["Program", "IntervalFunction", "taylor_coefficients", "int_power", "iadd", "isub",
           "imul", "imatmul", "imatvec", "intersect", "supported_operations"]
