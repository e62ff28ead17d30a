"""Largest certified boxes with a radius per dimension (after Liu, Tomioka, Cevher, ICML 2019).

:func:`max_box` finds the box ``B(center, eps) = [center - eps, center + eps]`` (optionally
intersected with a domain) of largest weighted log-volume ``sum_i w_i log eps_i`` such that
``F^K(B)`` satisfies a specification:

- :func:`safe_set` ``(H, c)``: every state after K steps lies in the polytope ``H y <= c``
  (safety of a dynamical surrogate or a closed loop, unrolled with :meth:`ReLUNet.unroll`);
- :func:`keep_label`: the classifier's argmax (for one output: its sign) stays that of the
  center (strictly).

The search follows the paper: linear bounds of ``H F^K`` over the box, differentiable in eps
(:mod:`dynid.certify.maxbox_relax`: CROWN with adaptive or optimised lower slopes, or Fast-Lin's
chord slopes), eps = v^2, an augmented Lagrangian (penalty from 1, x5 every 80 of 400 iterations,
multipliers every 5, 400 iterations), then shrink by 0.99 until the relaxation certifies.
The uniform box (one radius for every dimension) comes from the same relaxation, margin and
checks, and starts the non-uniform search, so the non-uniform box is never smaller.

The status is ``certified`` only when a **sound** check proves the spec on the returned box:
the float64, padded CROWN bounds of :mod:`dynid.bounds`, or else the MIP best bounds (exact
range over the box, :func:`dynid.certify.encode_relunet`). The differentiable relaxation only
steers the search. ``grow=True`` then enlarges the box along its shape by bisection with the MIP.

Example
-------
>>> import numpy as np
>>> from dynid.relunet import linear
>>> net = linear(np.diag([1.0, 4.0]))                 # y = (x1, 4 x2)
>>> cert = max_box(net, [0.0, 0.0], safe_set([[1.0, 1.0]], [1.0]))   # y1 + y2 <= 1
>>> cert.status.value, np.round(np.array(cert.info["eps"]), 2).tolist()   # eps = (1/2, 1/8)
('certified', [0.5, 0.12])
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from dynid.certify.maxbox_relax import RELAXATIONS, BoxRelaxation
from dynid.errors import ConfigError, ShapeError
from dynid.options import check_number
from dynid.relunet import ReLUNet, check_box
from dynid.results import Certificate, Status

MODES = ("nonuniform", "uniform")
CONFIRM = ("auto", "mip", "none")
# sizes beyond these are refused (a typo, not a request)
MAX_STEPS, MAX_ITERATIONS = 1000, 100_000
SHRINK = 0.99          # the paper's shrink factor
MAX_SHRINKS = 1000     # ... and its limit


# ---------------------------------------------------------------------- specifications
@dataclass(frozen=True, eq=False)
class OutputSpec:
    """``H y <= c`` (or ``< c`` when ``strict``) for the output y = F^K(x).

    ``kind`` is "polytope" (:func:`safe_set`) or "label" (:func:`keep_label`, resolved at the
    center: rows ``y_j - y_label < 0``, or the sign for one output; ``label`` is then set).
    """

    H: np.ndarray | None
    c: np.ndarray | None
    kind: str = "polytope"
    strict: bool = False
    label: int | None = None

    def holds(self, y) -> np.ndarray:
        """Whether each output (rows of ``y``) satisfies the spec (float64)."""
        v = np.atleast_2d(y) @ self.H.T - self.c
        return np.all(v < 0, axis=-1) if self.strict else np.all(v <= 0, axis=-1)

    def proves(self, upper) -> np.ndarray:
        """Which rows an upper bound of ``H y`` proves."""
        upper = np.asarray(upper, dtype=np.float64)
        return upper < self.c if self.strict else upper <= self.c

    def to_dict(self) -> dict:
        return {"kind": self.kind, "strict": self.strict, "label": self.label,
                "H": None if self.H is None else self.H.tolist(),
                "c": None if self.c is None else self.c.tolist()}


def safe_set(H, c) -> OutputSpec:
    """The polytope ``{y : H y <= c}`` (rows of H, one entry of c per row)."""
    H = np.atleast_2d(np.asarray(H, dtype=np.float64))
    c = np.asarray(c, dtype=np.float64).reshape(-1)
    if H.ndim != 2 or H.shape[0] != c.size or H.shape[0] == 0:
        raise ShapeError(f"a safe set needs H with one row per entry of c: H is {H.shape}, c "
                         f"has {c.size} entries")
    if not (np.all(np.isfinite(H)) and np.all(np.isfinite(c))):
        raise ShapeError("a safe set needs finite H and c")
    if np.any(np.all(H == 0, axis=1)):
        raise ShapeError("a safe set row of H is all zero: drop it (it constrains nothing)")
    return OutputSpec(H, c, "polytope")


def keep_label() -> OutputSpec:
    """Keep the argmax of the output (for one output: its sign) as it is at the center."""
    return OutputSpec(None, None, "label", strict=True)


def _resolve(net: ReLUNet, center: np.ndarray, spec) -> OutputSpec:
    if isinstance(spec, str):
        if spec not in ("label", "argmax", "sign"):
            raise ConfigError(f"spec {spec!r} is unknown: use 'label' (keep the argmax / sign), "
                              "safe_set(H, c) or a tuple (H, c)")
        spec = keep_label()
    elif isinstance(spec, (tuple, list)) and len(spec) == 2:
        spec = safe_set(*spec)
    elif not isinstance(spec, OutputSpec):
        raise ConfigError("spec must be safe_set(H, c), keep_label(), 'label' or a tuple (H, c)")
    if spec.kind == "polytope":
        if spec.H.shape[1] != net.n_out:
            raise ShapeError(f"the safe set's H has {spec.H.shape[1]} columns but the "
                             f"(unrolled) network has {net.n_out} outputs")
        return spec
    y = net.forward(center)
    if net.n_out == 1:
        sign = 1.0 if y[0] >= 0 else -1.0
        return OutputSpec(np.array([[-sign]]), np.zeros(1), "label", True, int(sign > 0))
    lab = int(np.argmax(y))
    others = [j for j in range(net.n_out) if j != lab]
    H = np.zeros((len(others), net.n_out))
    H[np.arange(len(others)), others] = 1.0
    H[:, lab] = -1.0
    return OutputSpec(H, np.zeros(len(others)), "label", True, lab)


# ---------------------------------------------------------------------- sound checks
def crown_check(net: ReLUNet, lo, hi, spec: OutputSpec):
    """Sound float64 CROWN upper bounds of ``H F(x)`` over [lo, hi] and the rows they prove."""
    from dynid.bounds import crown_output

    _, upper = crown_output(net, lo, hi, spec.H)
    return upper, spec.proves(upper)


def mip_check(net: ReLUNet, lo, hi, spec: OutputSpec, rows=None, *, solver="auto",
              time_limit=None, threads=None) -> dict:
    """Exact check of the spec rows ``rows`` (default all) over [lo, hi] by MIP.

    One MIP per row maximises ``H_j F(x)`` (solved with tight tolerances, the objective
    scaled as in :func:`dynid.certify.optimize.output_range`); a row is proven when the
    solver's best bound, padded for what the tolerances can move it
    (:func:`dynid.milp.padded_bound`), is at most ``c_j``. An incumbent that violates the row in a float64 forward
    pass is a witness. Returns ``{"proven", "row_proven", "witness", "bounds", "solver",
    "status", "seconds", "size"}``; it stops at the first witness.
    """
    from dynid.bounds import crown_bounds
    from dynid.certify.encode import encode_relunet, encoding_sensitivity, objective_scale
    from dynid.milp import SparseModel, padded_bound, solve, stop_if_interrupted

    t0 = time.perf_counter()
    lo, hi = check_box(net, lo, hi)
    rows = range(spec.H.shape[0]) if rows is None else list(rows)
    model = SparseModel()
    b = crown_bounds(net, lo, hi)
    enc = encode_relunet(model, net, b)
    out = {"proven": True, "witness": None, "bounds": {}, "row_proven": {}, "solver": "",
           "status": "optimal", "seconds": 0.0, "size": model.size()}
    per = None if time_limit is None else max(time_limit / max(len(rows), 1), 1e-3)
    for j in rows:
        s = objective_scale(net, spec.H[j])
        model.set_objective(enc.out, spec.H[j] / s, sense="max")
        res = solve(model, solver=solver, time_limit=per, threads=threads, mip_gap=1e-6,
                    tolerances="tight")
        stop_if_interrupted(res)
        out["solver"] = res.solver
        bound = s * padded_bound(model, res, encoding_sensitivity(net, b, spec.H[j] / s))
        out["bounds"][int(j)] = float(bound)
        if res.x is not None:
            x = np.clip(np.asarray(res.x)[enc.x], lo, hi)
            if not spec.holds(net.forward(x))[0]:
                out.update(proven=False, witness=x)
                break
        out["row_proven"][int(j)] = bool(bound <= spec.c[j])
        if not out["row_proven"][int(j)]:
            out["proven"] = False
            if res.status != "optimal":
                out["status"] = res.status
    out["seconds"] = time.perf_counter() - t0
    return out


# ---------------------------------------------------------------------- the search
class _Problem:
    """The box search at one point: relaxations, normalised constraints, domain clipping.

    Constraints ``g_j(eps) = (c_j - U_j(box(eps))) / slack_j - margin >= 0`` where U is the
    relaxation's upper bound of ``H_j F^K`` and slack_j the value of ``c_j - H_j F^K`` at the
    center (so every row is on the same scale); the objective is the weighted log-volume of
    the (clipped) box.
    """

    def __init__(self, net, center, spec, relaxation, weights, dlo, dhi, margin):
        self.net, self.spec, self.center = net, spec, center
        self.weights, self.dlo, self.dhi, self.margin = weights, dlo, dhi, margin
        self.method = relaxation
        self.fast = None if relaxation == "crown-opt" else BoxRelaxation(net, spec.H, relaxation)
        self._torch = None
        self.slack = spec.c - spec.H @ net.forward(center)     # > 0 at a valid center

    @property
    def torch_relax(self) -> BoxRelaxation:
        if self._torch is None:
            self._torch = BoxRelaxation(self.net, self.spec.H, self.method, backend="torch")
        return self._torch

    @property
    def alphas(self):
        return None if self._torch is None else self._torch.alphas

    def box(self, eps):
        """Clipped box (lo, hi) of radii eps ((n,) or (B, n))."""
        return np.maximum(self.center - eps, self.dlo), np.minimum(self.center + eps, self.dhi)

    def upper(self, eps_batch) -> np.ndarray:
        """The relaxation's upper bounds (B, m) of the spec rows over the boxes of eps_batch."""
        lo, hi = self.box(np.atleast_2d(eps_batch))
        if self.fast is not None:
            return self.fast.upper(lo, hi)
        import torch

        with torch.no_grad():
            return self.torch_relax.upper(torch.as_tensor(lo), torch.as_tensor(hi)).numpy()

    def g(self, eps_batch) -> np.ndarray:
        return (self.spec.c - self.upper(eps_batch)) / self.slack - self.margin

    def feasible(self, eps_batch) -> np.ndarray:
        return np.all(self.g(eps_batch) >= 0, axis=-1)

    def log_volume(self, eps) -> float:
        lo, hi = self.box(eps)
        hw = (hi - lo) / 2
        with np.errstate(divide="ignore"):
            return float(np.where(self.weights > 0, np.log(hw), 0.0) @ self.weights)

    def log_volume_grad(self, eps) -> np.ndarray:
        """d(log-volume)/d(eps): each side of the box that is not clipped moves with eps."""
        lo, hi = self.box(eps)
        free = (self.center - eps > self.dlo).astype(float) + (self.center + eps < self.dhi)
        return self.weights * free / np.maximum(hi - lo, 1e-300)

    def g_vjp(self, eps):
        """g(eps) (m,) and a function w -> d(w . g)/d(eps) (n,): the exact gradient of the
        relaxation (numpy reverse mode for crown / fastlin; torch autograd for crown-opt,
        whose free slopes take an optimiser step at each call)."""
        lo, hi = self.box(eps)
        side_lo = (self.center - eps > self.dlo).astype(float)      # d lo / d eps = -side_lo
        side_hi = (self.center + eps < self.dhi).astype(float)
        if self.fast is not None:
            up, up_vjp = self.fast.upper_vjp(lo, hi)
            g = (self.spec.c - up) / self.slack - self.margin

            def vjp(w):
                b_lo, b_hi = up_vjp(-w / self.slack)
                return -b_lo * side_lo + b_hi * side_hi

            return g, vjp
        import torch

        rel = self.torch_relax
        t_lo = torch.as_tensor(lo[None]).requires_grad_()
        t_hi = torch.as_tensor(hi[None]).requires_grad_()
        if self.method == "crown-opt" and rel.alphas is None:
            rel.init_alphas(t_lo.detach(), t_hi.detach())
        up = rel.upper(t_lo, t_hi)[0]
        g_t = (torch.as_tensor(self.spec.c) - up) / torch.as_tensor(self.slack) - self.margin

        def vjp(w):
            g_t.backward(torch.as_tensor(w))
            d = -t_lo.grad[0].numpy() * side_lo + t_hi.grad[0].numpy() * side_hi
            if rel.alphas:
                self._alpha_step()
            return d

        return g_t.detach().numpy(), vjp

    def _alpha_step(self) -> None:
        import torch

        if getattr(self, "_alpha_opt", None) is None:
            self._alpha_opt = torch.optim.Adam(list(self._torch.alphas.values()), lr=0.05)
        self._alpha_opt.step()
        self._alpha_opt.zero_grad()
        self._torch.clamp_alphas()


def _uniform_radius(prob: _Problem, r_max: float, rel_tol: float = 1e-4) -> float:
    """Largest radius r <= r_max with the relaxation proving the box of radius r in every
    dimension: bisection on log r from [1e-20 r_max, r_max] (assumes monotonicity; every
    returned radius was checked). 0 when even the smallest is not proven."""
    n = prob.center.size
    ok = lambda r: bool(prob.feasible(np.full((1, n), r))[0])  # noqa: E731
    if ok(r_max):
        return r_max
    lo_r = r_max * 1e-20
    if not ok(lo_r):
        return 0.0
    hi_r = r_max
    while hi_r / lo_r > 1.0 + rel_tol:
        mid = math.sqrt(lo_r * hi_r)
        lo_r, hi_r = (mid, hi_r) if ok(mid) else (lo_r, mid)
    return lo_r


def _shrink(prob: _Problem, eps: np.ndarray) -> tuple[np.ndarray, int]:
    """The paper's last step: eps *= 0.99 until the relaxation certifies (at most 1000
    times). The first such power is found by doubling and bisection on the exponent
    (assuming monotonicity; the returned radii were checked). Returns (eps, shrinks), or
    (None, -1) when even 0.99^1000 eps is not proven."""
    ok = lambda k: bool(prob.feasible((SHRINK ** k * eps)[None])[0])  # noqa: E731
    if ok(0):
        return eps, 0
    lo_k, hi_k = 0, 1
    while not ok(hi_k):
        if hi_k >= MAX_SHRINKS:
            return None, -1
        lo_k, hi_k = hi_k, min(2 * hi_k, MAX_SHRINKS)
    while hi_k - lo_k > 1:
        mid = (lo_k + hi_k) // 2
        lo_k, hi_k = (lo_k, mid) if ok(mid) else (mid, hi_k)
    return SHRINK ** hi_k * eps, hi_k


def _augmented_lagrangian(prob: _Problem, eps0: np.ndarray, shared: bool, iterations: int,
                          lr: float, log=None):
    """Maximise the weighted log-volume over eps = base * v^2 (v one scalar when ``shared``)
    subject to g(eps) >= 0 by the augmented Lagrangian method: loss = -logvol +
    sum_j [beta/2 max(0, lam_j/beta - g_j)^2 - lam_j^2/(2 beta)], Adam on v (cosine-decayed
    step), multipliers lam <- max(0, lam - beta g) every 5 iterations, beta from 1, x5 every
    iterations / 5 (the paper: 80 of 400); at each penalty increase the base is moved to the current eps and v reset
    to 1 (so a step in v is a relative step in eps). Returns the last iterate and the best
    iterate the relaxation proved (or None)."""
    m = prob.spec.H.shape[0]
    base = eps0.astype(float).copy()
    k = 1 if shared else base.size
    v = np.ones(k)
    m1, m2, t_adam = np.zeros(k), np.zeros(k), 0
    lam, beta = np.zeros(m), 1.0
    best_val, best_eps = -math.inf, None
    stage = max(1, round(iterations / 5))      # the paper: 400 iterations, x5 every 80
    for it in range(iterations):
        if it and it % stage == 0:
            beta *= 5.0
            base, v = base * v ** 2, np.ones(k)
            m1, m2, t_adam = np.zeros(k), np.zeros(k), 0
        eps = base * v ** 2
        g, vjp = prob.g_vjp(eps)
        val = prob.log_volume(eps)
        if np.all(g >= 0) and val > best_val:
            best_val, best_eps = val, eps.copy()
        d_eps = -prob.log_volume_grad(eps) + vjp(-beta * np.clip(lam / beta - g, 0, None))
        d_v = d_eps * 2.0 * base * v
        d_v = np.array([d_v.sum()]) if shared else d_v
        t_adam += 1
        m1 = 0.9 * m1 + 0.1 * d_v
        m2 = 0.999 * m2 + 0.001 * d_v ** 2
        step = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * it / iterations)))
        v = v - step * (m1 / (1 - 0.9 ** t_adam)) / (np.sqrt(m2 / (1 - 0.999 ** t_adam))
                                                      + 1e-12)
        if it % 5 == 4:
            lam = np.clip(lam - beta * g, 0, None)
        if log and (it % 100 == 99 or it == iterations - 1):
            log(f"AL iteration {it + 1}: log-volume {val:.6g}, min constraint "
                f"{float(g.min()):.3g}, penalty {beta:g}")
    return base * v ** 2, best_eps


# ---------------------------------------------------------------------- the query
def max_box(net: ReLUNet, center, spec, steps: int = 1, mode: str = "nonuniform",
            weights=None, *, domain=None, relaxation: str = "crown", iterations: int = 400,
            lr: float = 0.1, margin: float = 1e-4,
            confirm: str = "auto", grow: bool = False, grow_steps: int = 10,
            solver: str = "auto", time_limit: float | None = None, threads: int | None = None,
            log=None) -> Certificate:
    """Largest certified box around ``center`` (a radius per dimension) on which ``F^K``
    satisfies ``spec``.

    Parameters
    ----------
    net : the map F (a surrogate, a closed loop, a classifier).
    center : the point (n_in values); it must satisfy the spec.
    spec : :func:`safe_set` ``(H, c)`` (or the tuple), or :func:`keep_label` / ``"label"``.
    steps : K; the spec is about ``F^K`` (``net.unroll(K)``; needs n_in == n_out for K > 1).
    mode : "nonuniform" (a radius per dimension) or "uniform" (one radius).
    weights : w_i >= 0 of the objective ``sum_i w_i log eps_i`` (default all 1).
    domain : (lo, hi) box the search stays in (the box is intersected with it; volumes are of
        the intersection); ``None`` = unbounded. Give one when F ignores some input, else
        that radius only stops growing with the iterations.
    relaxation : "crown" (adaptive slopes), "crown-opt" (optimised slopes, slower, tighter)
        or "fastlin" (the paper's chord slopes).
    iterations, lr : augmented-Lagrangian iterations (the paper: 400) and Adam step on v.
    margin : the relaxation must prove each row with slack ``margin * (slack at center)``.
    confirm : "auto" (sound CROWN, then the MIP for the rows it leaves open), "mip" (the MIP
        on every row as well) or "none" (sound CROWN only; status unknown if it fails).
    grow : enlarge the final box along its shape by bisection with the MIP (``grow_steps``
        bisection steps after doubling); the status then rests on the MIP.
    solver, time_limit, threads : MIP settings; ``time_limit`` is per MIP check (a check
        stopped by it proves nothing).
    log : callable receiving progress lines.

    Returns
    -------
    Certificate with ``query="max_box"``; ``status`` certified (the box is proven), unknown
    (no box could be proven) or counterexample (the center itself violates the spec;
    ``witness={"x": center}``). ``value`` = the weighted log-volume ``sum w_i log eps_i`` of
    the returned box (eps = half-widths), ``bound`` = inf (no upper bound on the optimum is
    claimed). ``info`` holds ``lo``, ``hi``, ``eps``, ``log_volume``, the ``uniform`` box of
    the same code path, ``volume_ratio`` (non-uniform / uniform, weighted), ``checked_by``
    (crown | mip), ``tightness`` (the spec rows' bounds on the box under each relaxation) and
    timings.
    """
    t0 = time.perf_counter()
    opts = _validate(net, center, steps, mode, weights, domain, relaxation, iterations, lr,
                     margin, confirm, grow_steps, time_limit)
    center, weights, dlo, dhi = opts
    steps, iterations, grow_steps = int(steps), int(iterations), int(grow_steps)
    lr, margin = float(lr), float(margin)
    time_limit = None if time_limit is None else float(time_limit)
    net_k = net if int(steps) == 1 else net.unroll(int(steps))
    spec = _resolve(net_k, center, spec)
    y0 = net_k.forward(center)
    size = {"relu_units": net_k.n_relu, "layers": net_k.n_layers, "steps": int(steps)}
    base_info = {"center": center, "spec": spec.to_dict(), "steps": int(steps), "mode": mode,
                 "relaxation": relaxation, "weights": weights, "output_at_center": y0,
                 "domain": None if domain is None else {"lo": dlo, "hi": dhi}}
    slack = spec.c - spec.H @ y0
    if np.any(slack <= 0):   # violated, or on the boundary: no box with a margin exists
        what = "violates the spec" if (slack < 0).any() else "lies on the spec's boundary"
        status = Status.COUNTEREXAMPLE if (slack < 0).any() else Status.UNKNOWN
        return Certificate("max_box", status, -math.inf, math.inf, math.inf,
                           {"x": center} if status is Status.COUNTEREXAMPLE else None, "",
                           time.perf_counter() - t0, size,
                           {**base_info, "message": f"the center {what}: no box exists"})
    prob = _Problem(net_k, center, spec, relaxation, weights, dlo, dhi, margin)
    timings = {}

    # 1. the uniform radius: bisection with the relaxation (exact for one variable), refined
    #    by the augmented Lagrangian when the slopes are free
    ts = time.perf_counter()
    span = np.where(np.isfinite(dhi - dlo), dhi - dlo, 0.0)
    r_max = float(span.max()) if np.isfinite(dlo).all() and np.isfinite(dhi).all() else \
        1e6 * (1.0 + float(np.abs(center).max()))
    r_u = _uniform_radius(prob, r_max)
    if r_u == 0.0:
        return Certificate("max_box", Status.UNKNOWN, -math.inf, math.inf, math.inf, None,
                           "", time.perf_counter() - t0, size,
                           {**base_info, "message": "the relaxation proves no box, even of "
                                                    f"radius {r_max * 1e-20:.3g}"})
    eps_u = np.full(center.size, r_u)
    if relaxation == "crown-opt":
        last, best = _augmented_lagrangian(prob, eps_u, True, iterations, lr, log)
        eps_u = _pick(prob, [eps_u, best, _shrink(prob, last)[0]])
    timings["uniform_search"] = time.perf_counter() - ts

    # 2. the non-uniform box: augmented Lagrangian from the uniform box, then shrink
    eps_n, shrinks = None, 0
    if mode == "nonuniform":
        ts = time.perf_counter()
        last, best = _augmented_lagrangian(prob, eps_u, False, iterations, lr, log)
        shrunk, shrinks = _shrink(prob, last)
        eps_n = _pick(prob, [eps_u, best, shrunk])
        timings["nonuniform_search"] = time.perf_counter() - ts

    # 3. sound checks (and growth) of each box
    ts = time.perf_counter()
    check = dict(confirm=confirm, grow=grow, grow_steps=grow_steps, solver=solver,
                 time_limit=time_limit, threads=threads, log=log)
    res_u = _confirm(prob, eps_u, **check)
    res_n = _confirm(prob, eps_n, **check) if eps_n is not None else None
    timings["checks"] = time.perf_counter() - ts
    main = res_n if res_n is not None else res_u
    if res_n is not None and res_u["status"] is Status.CERTIFIED and (
            res_n["status"] is not Status.CERTIFIED
            or res_n["log_volume"] < res_u["log_volume"]):
        main = {**res_u, "fallback": "the uniform box (the non-uniform one was smaller or not "
                                     "proven)"}
    info = {**base_info, **_public(main), "uniform": _public(res_u),
            "volume_ratio": math.exp(main["log_volume"] - res_u["log_volume"])
            if res_u["status"] is Status.CERTIFIED and main["status"] is Status.CERTIFIED
            else None,
            "shrinks": shrinks, "timings": timings,
            "tightness": _tightness(prob, main["lo"], main["hi"])}
    return Certificate("max_box", main["status"], main["log_volume"], math.inf, math.inf,
                       main.get("witness"), main["solver"], time.perf_counter() - t0,
                       {**size, **main.get("mip_size", {})}, info)


def max_box_job(net: ReLUNet, point, options: dict) -> Certificate:
    """One point of a study grid: ``max_box(net, point, **options)`` (a pure, picklable
    function of its arguments, for an executor that runs many points)."""
    return max_box(net, point, **options)


def _pick(prob: _Problem, candidates) -> np.ndarray:
    """The candidate radii of largest log-volume (all candidates are relaxation-feasible)."""
    cands = [c for c in candidates if c is not None and np.all(c > 0)]
    return max(cands, key=prob.log_volume)


def _confirm(prob: _Problem, eps, *, confirm, grow, grow_steps, solver, time_limit, threads,
             log) -> dict:
    """Sound status of the box of radii eps (CROWN, else MIP), grown by the MIP if asked."""
    net, spec = prob.net, prob.spec
    lo, hi = prob.box(eps)
    upper, ok = crown_check(net, lo, hi, spec)
    res = {"eps": eps, "lo": lo, "hi": hi, "half_widths": (hi - lo) / 2,
           "log_volume": prob.log_volume(eps),
           "crown_upper": upper, "solver": "crown", "checked_by": "crown", "witness": None}
    if ok.all() and confirm != "mip":
        res["status"] = Status.CERTIFIED
    elif confirm == "none":
        res.update(status=Status.UNKNOWN, checked_by="", solver="crown")
    else:
        rows = range(spec.H.shape[0]) if confirm == "mip" else np.flatnonzero(~ok)
        mip = mip_check(net, lo, hi, spec, rows, solver=solver, time_limit=time_limit,
                        threads=threads)
        # a row holds when either sound check proves it
        proven = ok | np.array([mip["row_proven"].get(j, False) for j in range(ok.size)])
        res.update(solver=f"crown+{mip['solver']}", checked_by="mip" if not ok.all() else
                   "crown+mip", mip_seconds=mip["seconds"], mip_size=mip["size"],
                   status=Status.CERTIFIED if proven.all() and mip["witness"] is None
                   else Status.UNKNOWN)
        if mip["witness"] is not None:
            # cannot happen for a sound relaxation; report the point, do not claim the box
            res["witness"] = {"x": mip["witness"], "in_box": True}
    if grow and res["status"] is Status.CERTIFIED:
        res.update(_grow(prob, eps, grow_steps, solver, time_limit, threads, log))
    return res


def _grow(prob: _Problem, eps, steps, solver, time_limit, threads, log) -> dict:
    """Largest t >= 1 (doubling, then ``steps`` bisection steps) such that the MIP proves the
    box of radii t * eps; a violating point found on the way is returned as a witness."""
    net, spec = prob.net, prob.spec
    t_lo, t_hi, witness, mips = 1.0, None, None, 0

    def proven(t):
        nonlocal witness, mips
        lo, hi = prob.box(t * eps)
        mips += 1
        r = mip_check(net, lo, hi, spec, solver=solver, time_limit=time_limit,
                      threads=threads)
        if r["witness"] is not None:
            witness = {"x": r["witness"], "scale": t}
        if log:
            log(f"grow: scale {t:.6g} {'proven' if r['proven'] else 'not proven'}")
        return r["proven"], r

    last = None
    for _ in range(30):
        t = 2.0 * t_lo
        lo, hi = prob.box(t * eps)
        ok, r = proven(t)
        if not ok:
            t_hi = t
            break
        t_lo, last = t, r
        if np.all(lo <= prob.dlo) and np.all(hi >= prob.dhi):
            break
    if t_hi is not None:
        for _ in range(int(steps)):
            t = 0.5 * (t_lo + t_hi)
            ok, r = proven(t)
            if ok:
                t_lo, last = t, r
            else:
                t_hi = t
    out = {"grow": {"scale": t_lo, "upper_scale": t_hi, "mips": mips}}
    if t_lo > 1.0:
        e = t_lo * eps
        lo, hi = prob.box(e)
        out.update(eps=e, lo=lo, hi=hi, half_widths=(hi - lo) / 2,
                   log_volume=prob.log_volume(e), checked_by="mip",
                   solver=f"mip:{last['solver']}", mip_size=last["size"])
    if witness is not None:
        out["witness"] = witness
    return out


def _tightness(prob: _Problem, lo, hi) -> dict:
    """Upper bounds of the spec rows on the final box under each relaxation (smaller is
    tighter) and which one is tightest (largest worst-row normalised slack)."""
    out = {}
    for name in RELAXATIONS:
        if name == prob.method:
            rel = prob.fast or prob.torch_relax
        elif name == "crown-opt":
            continue            # its slopes exist only when it was the one optimised
        else:
            rel = BoxRelaxation(prob.net, prob.spec.H, name)
        if rel.backend == "torch":
            import torch

            with torch.no_grad():
                up = rel.upper(torch.as_tensor(lo[None]), torch.as_tensor(hi[None]))[0].numpy()
        else:
            up = rel.upper(lo[None], hi[None])[0]
        out[name] = up
    score = {k: float(np.min((prob.spec.c - u) / prob.slack)) for k, u in out.items()}
    return {"upper": out, "tightest": max(score, key=score.get)}


def _public(res: dict) -> dict:
    keep = ("eps", "lo", "hi", "half_widths", "log_volume", "status", "checked_by", "crown_upper", "grow",
            "fallback", "mip_seconds")
    return {k: (v.value if isinstance(v, Status) else v) for k, v in res.items() if k in keep}


def _option(value, name: str, rule: str, kind=float, maximum=None):
    """An API argument under the one numeric rule of :mod:`dynid.options` (no strings)."""
    return check_number(value, name, rule=rule, kind=kind, maximum=maximum, text_ok=False)


def _validate(net, center, steps, mode, weights, domain, relaxation, iterations, lr,
              margin, confirm, grow_steps, time_limit):
    if not isinstance(net, ReLUNet):
        raise ConfigError(f"max_box needs a ReLUNet, got {type(net).__name__}")
    c = np.asarray(center, dtype=np.float64).reshape(-1)
    if c.shape != (net.n_in,) or not np.all(np.isfinite(c)):
        raise ShapeError(f"the center needs {net.n_in} finite values, got {np.size(center)}")
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r} is unknown: use one of {MODES}")
    if relaxation not in RELAXATIONS:
        raise ConfigError(f"relaxation {relaxation!r} is unknown: use one of {RELAXATIONS}")
    if confirm not in CONFIRM:
        raise ConfigError(f"confirm {confirm!r} is unknown: use one of {CONFIRM}")
    _option(steps, "steps", "positive", int, maximum=MAX_STEPS)
    _option(iterations, "iterations", "nonneg", int, maximum=MAX_ITERATIONS)
    _option(grow_steps, "grow_steps", "nonneg", int, maximum=MAX_ITERATIONS)
    _option(lr, "lr", "positive")
    _option(margin, "margin", "nonneg")
    if time_limit is not None:
        _option(time_limit, "time_limit", "positive")
    w = np.ones(net.n_in) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != (net.n_in,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.any():
        raise ConfigError(f"weights need {net.n_in} finite values >= 0, not all zero")
    if domain is None:
        dlo, dhi = np.full(net.n_in, -np.inf), np.full(net.n_in, np.inf)
    else:
        try:
            dlo, dhi = domain
        except (TypeError, ValueError):
            raise ConfigError("domain must be a pair (lo, hi) of corners") from None
        dlo, dhi = check_box(net, dlo, dhi, "domain")
        if np.any(c < dlo) or np.any(c > dhi):
            raise ShapeError("the center lies outside the domain")
        if np.any(dlo == dhi):
            raise ShapeError("the domain is flat in some coordinate: give lo < hi")
    return c, w, dlo, dhi


# ---------------------------------------------------------------------- figure
def box_figure(net: ReLUNet, certs, domain=None, *, truth=None, grid: int = 400):
    """2-D figure of max_box results over the region where the spec truly holds.

    The background is computed on a ``grid x grid`` raster of ``domain`` (default: the boxes
    with a margin of their own size on each side): the label regions
    of the classifier (label specs), or where ``F^K`` lies in the safe set (polytope specs,
    K from the certificate). Each certificate's box is drawn solid (its main box) with its
    uniform box dashed. ``truth``, a function from points (N, 2) to labels, adds the
    boundaries of a reference partition (e.g. the true Voronoi cells) as thin lines.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    certs = [certs] if isinstance(certs, Certificate) else list(certs)
    if net.n_in != 2:
        raise ShapeError(f"box_figure draws 2-D inputs; this network has {net.n_in}")
    if domain is None:
        boxes = [c.info for c in certs if "lo" in c.info]
        if not boxes:
            raise ShapeError("box_figure needs a domain when no certificate has a box")
        lo = np.min([np.minimum(b["lo"], b["uniform"].get("lo", b["lo"])) for b in boxes], 0)
        hi = np.max([np.maximum(b["hi"], b["uniform"].get("hi", b["hi"])) for b in boxes], 0)
        pad = np.maximum(hi - lo, 1e-9)
        domain = (lo - pad, hi + pad)
    lo, hi = check_box(net, *domain, "figure domain")
    xs = np.linspace(lo[0], hi[0], grid)
    ys = np.linspace(lo[1], hi[1], grid)
    XX, YY = np.meshgrid(xs, ys)
    P = np.stack([XX.ravel(), YY.ravel()], 1)
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    ax = fig.subplots()
    info = certs[0].info if certs else {}
    spec = info.get("spec", {})
    if spec.get("kind") == "label":
        out = net.forward(P)
        lab = (out[:, 0] >= 0).astype(int) if net.n_out == 1 else np.argmax(out, 1)
        k = max(int(lab.max()) + 1, 2)
        cmap = ListedColormap([__import__("matplotlib").colormaps["tab20"](i % 20)
                               for i in range(k)])
        ax.pcolormesh(XX, YY, lab.reshape(XX.shape), cmap=cmap, alpha=0.35, shading="auto",
                      vmin=-0.5, vmax=k - 0.5)
        title = "label regions of the classifier"
    else:
        steps = int(info.get("steps", 1))
        net_k = net if steps == 1 else net.unroll(steps)
        H, c = np.asarray(spec["H"]), np.asarray(spec["c"])
        ok = np.all(net_k.forward(P) @ H.T <= c, axis=1)
        ax.pcolormesh(XX, YY, ok.reshape(XX.shape).astype(float), cmap="RdYlGn", alpha=0.35,
                      shading="auto", vmin=0, vmax=1)
        title = f"initial states safe after {steps} step(s) (green)"
    if truth is not None:
        ax.contour(XX, YY, np.asarray(truth(P)).reshape(XX.shape),
                   levels=np.arange(-0.5, 50), colors="k", linewidths=0.5, alpha=0.6)
    for i, cert in enumerate(certs):
        ci = cert.info
        if "lo" not in ci:
            continue
        color = f"C{i % 10}"
        (x0, y0), (x1, y1) = ci["lo"], ci["hi"]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.8, ec=color,
                               label="non-uniform" if i == 0 else None))
        u = ci.get("uniform", {})
        if "lo" in u:
            (u0, v0), (u1, v1) = u["lo"], u["hi"]
            ax.add_patch(Rectangle((u0, v0), u1 - u0, v1 - v0, fill=False, lw=1.2, ec=color,
                                   ls="--", label="uniform" if i == 0 else None))
        ax.plot(*ci["center"], "o", color=color, ms=3)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(f"certified boxes over the {title}", fontsize=9)
    if certs:
        ax.legend(loc="upper right", fontsize=8)
    return fig
