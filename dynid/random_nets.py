"""Random ReLU networks (He initialisation) and the distance-to-boundary scaling study on them.

De Palma, Kiani and Lloyd (ICML 2021) prove that for random ReLU networks the L_p distance of an
input x from the decision boundary scales as ``||x||_p / sqrt(n)`` (n the input dimension): for
x uniform on [0, 1]^n the L1 distance grows like sqrt(n), the L2 distance stays flat and the
L-inf distance falls like 1/sqrt(n). They measured it with attacks (upper bounds); the study here
measures the *exact* distance with :func:`dynid.certify.boundary.boundary_distance`.

- :func:`he_mlp` - a seeded He-initialised MLP, with or without random biases.
- :func:`study_grid` - the study's points (n, net, input, norm) as plain dicts.
- :func:`study_point` - one point: a pure function of its dict (JSON in, JSON out), so any
  executor (in-process, a process pool, Dask) can run it.
- :func:`run_study` - runs points, appending each result to a JSON-lines file as it finishes;
  a rerun skips the points already there (resumable, Ctrl-C keeps what finished).
- :func:`summarise` - medians, 45/55 percentiles and log-log slopes with bootstrap intervals;
  :func:`summary_rows`, :func:`slope_rows` flatten it for tables, :func:`plot_scaling` draws it.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np

from dynid.errors import ConfigError, parse_norm
from dynid.options import check_number
from dynid.relunet import ReLUNet

NORMS = ("1", "2", "inf")
# theory: ||x||_p / sqrt(n) for x ~ U[0, 1]^n; the authors' attack-based fit on random ResNet-20
THEORY_SLOPE = {"1": 0.5, "2": 0.0, "inf": -0.5}
AUTHORS_SLOPE = {"1": 0.424, "2": 0.011, "inf": -0.537}


def he_mlp(n_in: int, widths=(64, 64), n_out: int = 2, *, bias_std: float = 0.0,
           seed: int = 0) -> ReLUNet:
    """A ReLU MLP ``n_in -> widths -> n_out`` with He-normal weights ``N(0, 2 / fan_in)`` and
    biases ``N(0, bias_std^2)`` (``bias_std = 0``: no biases), drawn from ``seed``.

    Example
    -------
    >>> net = he_mlp(8, [16, 16], seed=3)
    >>> net.widths, bool(abs(net.weights[0].std() * 8 ** 0.5 / 2 ** 0.5 - 1) < 0.3)
    ([8, 16, 16, 2], True)
    >>> bool(np.all(he_mlp(8, [16], bias_std=0.0).biases[0] == 0))
    True
    >>> he_mlp(8, [16], seed=1).forward(np.ones(8)).tolist() == \\
    ...     he_mlp(8, [16], seed=1).forward(np.ones(8)).tolist()
    True
    """
    widths = [int(w) for w in widths]
    if int(n_in) < 1 or int(n_out) < 1 or any(w < 1 for w in widths):
        raise ConfigError(f"he_mlp needs sizes >= 1, got n_in={n_in}, widths={widths}, "
                          f"n_out={n_out}")
    if sum(widths) + n_in + n_out > 1_000_000:
        raise ConfigError("he_mlp: more than 1e6 units is not a test network; use fewer")
    bias_std = check_number(bias_std, "bias_std", rule="nonneg", text_ok=False)
    rng = np.random.default_rng(seed)
    dims = [int(n_in)] + widths + [int(n_out)]
    ws, bs = [], []
    for a, b in zip(dims[:-1], dims[1:]):
        ws.append(rng.standard_normal((b, a)) * math.sqrt(2.0 / a))
        bs.append(rng.standard_normal(b) * bias_std if bias_std > 0 else np.zeros(b))
    meta = {"architecture": {"kind": "he_mlp", "widths": widths, "bias_std": bias_std,
                             "seed": seed}}
    return ReLUNet(ws, bs, meta=meta)


# ---------------------------------------------------------------------- the study's points
def _seed(*parts) -> int:
    """A 32-bit seed from integers (stable across runs and machines)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def point_key(spec: dict) -> str:
    """The name of a point: ``n{n}-net{i}-in{j}-l{norm}``."""
    return f"n{spec['n']}-net{spec['net']}-in{spec['input']}-l{spec['norm']}"


def point_config(spec: dict) -> str:
    """A short hash of everything else in a point's spec (widths, seeds, time limit, solver,
    ...): a rerun with other settings does not reuse rows computed under these."""
    import hashlib

    rest = {k: v for k, v in spec.items() if k not in ("n", "net", "input", "norm")}
    return hashlib.sha1(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:12]


def study_grid(ns=(8, 16, 32, 64, 128), n_nets: int = 30, n_inputs: int = 5, norms=NORMS,
               widths=(64, 64), *, bias_std: float = 0.0, seed: int = 0,
               time_limit: float | None = 120.0, gap: float = 1e-4, solver: str = "auto",
               threads: int = 1) -> list[dict]:
    """The study's points as JSON-able dicts, ordered n, net, input, norm; each holds all it
    needs (sizes, seeds, solver options), so :func:`study_point` is a pure function of it.

    Example
    -------
    >>> pts = study_grid(ns=[8], n_nets=2, n_inputs=1, norms=["inf"])
    >>> [point_key(p) for p in pts]
    ['n8-net0-in0-linf', 'n8-net1-in0-linf']
    """
    ns = [int(n) for n in ns]
    norms = [_norm_name(p) for p in norms]
    if not ns or min(ns) < 1 or int(n_nets) < 1 or int(n_inputs) < 1:
        raise ConfigError("the study needs dimensions >= 1 and at least one net and one input")
    time_limit = check_number(time_limit, "time_limit", none_ok=True, text_ok=False)
    gap = check_number(gap, "gap", rule="nonneg", text_ok=False)
    bias_std = check_number(bias_std, "bias_std", rule="nonneg", text_ok=False)
    threads = check_number(threads, "threads", kind=int, text_ok=False)
    out = []
    for n in ns:
        for i in range(int(n_nets)):
            for j in range(int(n_inputs)):
                for p in norms:
                    out.append({"n": n, "net": i, "input": j, "norm": p,
                                "widths": [int(w) for w in widths], "bias_std": float(bias_std),
                                "net_seed": _seed(seed, n, i), "input_seed": _seed(seed, n, i, j, 7),
                                "time_limit": time_limit, "gap": float(gap), "solver": solver,
                                "threads": int(threads)})
    return out


def _norm_name(p) -> str:
    v = parse_norm(p)
    return "inf" if math.isinf(v) else str(int(v))


def study_point(spec: dict) -> dict:
    """Run one point of the study: build its net and input, bracket the distance; returns a
    JSON-able row (the spec's key, the three bounds, the status, the seconds per phase).

    Example
    -------
    >>> spec = study_grid(ns=[4], n_nets=1, n_inputs=1, norms=["inf"], widths=[8])[0]
    >>> row = study_point(spec)
    >>> row["key"], row["lower"] <= row["exact_hi"] and row["exact_lo"] <= row["upper"]
    ('n4-net0-in0-linf', True)
    """
    from dynid.certify.boundary import boundary_distance

    n = int(spec["n"])
    net = he_mlp(n, spec["widths"], 2, bias_std=spec.get("bias_std", 0.0),
                 seed=spec["net_seed"])
    x = np.random.default_rng(spec["input_seed"]).random(n)
    p = parse_norm(spec["norm"])
    t0 = time.perf_counter()
    cert = boundary_distance(net, x, p, solver=spec.get("solver", "auto"),
                             time_limit=spec.get("time_limit"), threads=spec.get("threads", 1),
                             gap=spec.get("gap", 1e-4))
    info = cert.info
    keep = ("lower", "upper", "exact_lo", "exact_hi", "mip_status", "mip_solver", "mip_lower",
            "mip_upper", "n_unstable", "n_binaries_relu", "seconds_attack", "seconds_crown",
            "seconds_bounds", "seconds_mip", "mip_message", "note", "strict_mip",
            "strict_mip_status", "seconds_strict_mip", "tie_plateau")
    row = {"key": point_key(spec), "config": point_config(spec), **{k: spec[k] for k in ("n", "net", "input", "norm")},
           "x_norm": float(np.linalg.norm(x, ord=p)), "status": cert.status.value,
           "seconds": time.perf_counter() - t0, "solver": cert.solver,
           **{k: info[k] for k in keep if k in info}}
    row["witness_checked"] = cert.witness is not None
    row["load_average"] = list(os.getloadavg())
    from dynid.results import jsonable

    return jsonable(row)


# ---------------------------------------------------------------------- resumable runs
def load_rows(path) -> list[dict]:
    """The rows of a JSON-lines results file; a torn last line (a run killed mid-write) is
    ignored, and a later row with the same key and config replaces an earlier one."""
    path = Path(path)
    if not path.exists():
        return []
    rows = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "key" in row:
                rows[row["key"], row.get("config")] = row
    return list(rows.values())


def run_study(specs, path, *, map_fn=None, progress=None) -> list[dict]:
    """Run the points of ``specs`` not yet in the JSON-lines file ``path``, appending each
    result as one line when it finishes; return every row (old and new) of the specs. A row
    counts as done when its key and :func:`point_config` match a spec's (rows computed with
    other settings stay in the file but are not reused).

    ``map_fn(fn, specs)`` runs the points (default: the builtin ``map``, in-process); any
    executor that yields results as they finish fits (a process pool's ``imap_unordered``,
    a Dask client's ``map`` + ``as_completed``). ``progress(done, total, row)`` is called
    after each point. Ctrl-C stops the run; every finished point is already on disk, so a
    rerun resumes.
    """
    path = Path(path)
    specs = list(specs)
    keys = {point_key(s): point_config(s) for s in specs}
    if len(keys) != len(specs):
        raise ConfigError("the study has duplicate points (same n, net, input and norm)")
    have = {r["key"]: r for r in load_rows(path) if keys.get(r["key"]) == r.get("config")}
    todo = [s for s in specs if point_key(s) not in have]
    path.parent.mkdir(parents=True, exist_ok=True)
    done = len(have)
    if progress:
        progress(done, len(specs), None)
    with open(path, "a+", encoding="utf-8") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() > 0:   # start on a fresh line after a torn one
            fh.seek(fh.tell() - 1)
            if fh.read(1) != "\n":
                fh.write("\n")
        for row in (map_fn or map)(study_point, todo):
            # one write per line, flushed and synced: a kill leaves at most a torn last line
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            have[row["key"]] = row
            done += 1
            if progress:
                progress(done, len(specs), row)
    return [have[point_key(s)] for s in specs if point_key(s) in have]


# ---------------------------------------------------------------------- statistics
SERIES = {"exact": None, "exact_lo": "exact_lo", "exact_hi": "exact_hi", "attack": "upper",
          "crown": "lower"}


def _value(row, series):
    if series == "exact":
        return 0.5 * (_f(row["exact_lo"]) + _f(row["exact_hi"]))
    return _f(row[SERIES[series]])


def _f(v) -> float:
    return math.inf if v == "inf" else (-math.inf if v == "-inf" else float(v))


def bracket_ok(row) -> bool:
    """Whether a row's bounds are ordered: CROWN <= exact_lo <= exact_hi <= attack.

    Example
    -------
    >>> bracket_ok({"lower": 0.1, "exact_lo": 0.2, "exact_hi": 0.2, "upper": 0.3})
    True
    """
    v = [_f(row[k]) for k in ("lower", "exact_lo", "exact_hi", "upper")]
    return all(a <= b for a, b in zip(v[:-1], v[1:]))


def loglog_slope(ns, values) -> float:
    """Least-squares slope of log(values) against log(ns).

    Example
    -------
    >>> round(loglog_slope([8, 16, 32], [1.0, 2 ** 0.5, 2.0]), 6)
    0.5
    """
    a, b = np.log(np.asarray(ns, float)), np.log(np.asarray(values, float))
    a = a - a.mean()
    return float(a @ (b - b.mean()) / (a @ a))


def summarise(rows, *, n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> dict:
    """Per norm: per-n medians and 45/55 percentiles of each series (``exact`` = the middle of
    the bracket, ``exact_lo``, ``exact_hi``, ``attack``, ``crown``), of the normalised distance
    ``d sqrt(n) / ||x||_p`` and of the seconds; the ratio exact / attack (on the certified
    points; ``ratio_lo_attack`` / ``ratio_hi_attack``: the bracket's ends over all points); and
    the log-log slope of the per-n medians with a bootstrap interval (nets resampled within
    each n). Points where no other side was found (``upper = inf``) are only counted
    (``no_other_side``).

    Example
    -------
    >>> rows = [{"n": n, "net": k, "input": 0, "norm": "2", "x_norm": 1.0, "status": "certified",
    ...          "exact_lo": 1.0, "exact_hi": 1.0, "upper": 1.1, "lower": 0.5, "seconds": 1.0}
    ...         for n in (8, 16) for k in range(3)]
    >>> s = summarise(rows, n_boot=50)
    >>> s["2"]["slope"]["exact"]["value"], s["2"]["per_n"][0]["ratio_exact_attack"]
    (0.0, 0.9090909090909091)
    """
    rng = np.random.default_rng(seed)
    out = {}
    for p in sorted({r["norm"] for r in rows}, key=lambda s: NORMS.index(s)):
        # a point whose attack found no other side (upper = inf) has no finite bracket: it
        # is counted, not averaged in
        rs = [r for r in rows if r["norm"] == p and math.isfinite(_f(r["upper"]))]
        lost = {}
        for r in rows:
            if r["norm"] == p and not math.isfinite(_f(r["upper"])):
                lost[int(r["n"])] = lost.get(int(r["n"]), 0) + 1
        ns = sorted({int(r["n"]) for r in rs})
        per_n, groups = [], {}
        for n in ns:
            rn = [r for r in rs if int(r["n"]) == n]
            nets = sorted({r["net"] for r in rn})
            groups[n] = [[r for r in rn if r["net"] == k] for k in nets]
            e = np.array([_value(r, "exact") for r in rn])
            att = np.array([_value(r, "attack") for r in rn])
            lo = np.array([_value(r, "exact_lo") for r in rn])
            hi = np.array([_value(r, "exact_hi") for r in rn])
            ok = np.array([r["status"] == "certified" for r in rn])
            norm_x = np.array([float(r["x_norm"]) for r in rn])
            row = {"n": n, "points": len(rn), "nets": len(nets), "no_other_side": lost.get(n, 0),
                   "certified": sum(r["status"] == "certified" for r in rn),
                   "bracket_violations": sum(not bracket_ok(r) for r in rn),
                   "seconds_median": float(np.median([r["seconds"] for r in rn])),
                   "seconds_p90": float(np.percentile([r["seconds"] for r in rn], 90)),
                   # exact / attack on the points whose bracket closed (None if none) ...
                   "ratio_exact_attack": float(np.median(e[ok] / att[ok])) if ok.any() else None,
                   "ratio_exact_attack_min": float(np.min(e[ok] / att[ok])) if ok.any()
                   else None,
                   # ... and over every point, from the bracket's ends (the true ratio lies
                   # between these medians' points, point by point)
                   "ratio_lo_attack": float(np.median(lo / att)),
                   "ratio_hi_attack": float(np.median(hi / att)),
                   "ratio_crown_exact": float(np.median(
                       [_value(r, "crown") for r in rn] / e))}
            for name in SERIES:
                v = np.array([_value(r, name) for r in rn])
                row[name] = _quantiles(v)
                row[name + "_normalised"] = _quantiles(v * math.sqrt(n) / norm_x)
            per_n.append(row)
        slopes = {}
        if len(ns) >= 2:
            for name in SERIES:
                est = loglog_slope(ns, [r[name]["median"] for r in per_n])
                vals = {n: [np.array([_value(r, name) for r in g]) for g in groups[n]]
                        for n in ns}
                boot = []
                for _ in range(n_boot):
                    meds = []
                    for n in ns:
                        g = vals[n]
                        pick = rng.integers(0, len(g), len(g))
                        meds.append(np.median(np.concatenate([g[k] for k in pick])))
                    boot.append(loglog_slope(ns, meds))
                lo, hi = np.percentile(boot, [50 * (1 - ci), 50 * (1 + ci)])
                slopes[name] = {"value": est, "ci_lo": float(lo), "ci_hi": float(hi)}
        out[p] = {"per_n": per_n, "slope": slopes, "theory": THEORY_SLOPE[p],
                  "authors": AUTHORS_SLOPE[p]}
    return out


def summary_rows(summary: dict) -> list[dict]:
    """Flat rows of :func:`summarise` per (norm, n), for tables: medians of the exact
    distance (middle of the bracket), its 45-55 % range, the normalised median
    ``d sqrt(n) / ||x||_p``, the medians of the attack and CROWN bounds, exact / attack,
    the certified count and the seconds per distance."""
    out = []
    for p, s in summary.items():
        for r in s["per_n"]:
            out.append({"norm": p, "n": r["n"], "points": r["points"],
                        "certified": r["certified"],
                        "bracket_violations": r["bracket_violations"],
                        "exact": r["exact"]["median"],
                        "exact_p45": r["exact"]["p45"], "exact_p55": r["exact"]["p55"],
                        "normalised": r["exact_normalised"]["median"],
                        "attack": r["attack"]["median"], "crown": r["crown"]["median"],
                        "exact_over_attack": r["ratio_exact_attack"],
                        "exact_over_attack_min": r["ratio_exact_attack_min"],
                        "lo_over_attack": r["ratio_lo_attack"],
                        "hi_over_attack": r["ratio_hi_attack"],
                        "seconds_median": r["seconds_median"], "seconds_p90": r["seconds_p90"]})
    return out


def slope_rows(summary: dict) -> list[dict]:
    """Per norm and series: the log-log slope, its bootstrap interval, theory and the
    authors' attack-based value."""
    out = []
    for p, s in summary.items():
        for name, sl in s["slope"].items():
            out.append({"norm": p, "series": name, "slope": sl["value"], "ci_lo": sl["ci_lo"],
                        "ci_hi": sl["ci_hi"], "theory": s["theory"], "authors": s["authors"]})
    return out


def pool_map(workers: int):
    """A ``map_fn`` for :func:`run_study`: the builtin ``map`` for one worker, else a spawned
    process pool yielding results as they finish (each point single-threaded)."""
    if int(workers) <= 1:
        return map

    def run(fn, specs):
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(int(workers)) as pool:
            yield from pool.imap_unordered(fn, list(specs))

    return run


def _quantiles(v) -> dict:
    q45, q50, q55 = np.percentile(v, [45, 50, 55])
    return {"median": float(q50), "p45": float(q45), "p55": float(q55)}


def plot_scaling(summary: dict, path, title: str = "") -> None:
    """The paper-style figure: ``distance * sqrt(n) / ||x||_p`` against n (flat if the law
    holds): the medians of the MIP bracket's ends (a band; it closes where the MIPs were
    solved) and of its middle, with the attack and CROWN medians.
    Written atomically as PNG/PDF/SVG by the extension of ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dynid.atomic import atomic_path

    norms = [p for p in NORMS if p in summary]
    fig, axes = plt.subplots(1, len(norms), figsize=(4.2 * len(norms), 3.6), squeeze=False)
    for ax, p in zip(axes[0], norms):
        per = summary[p]["per_n"]
        ns = [r["n"] for r in per]
        med = [r["exact_normalised"]["median"] for r in per]
        ax.fill_between(ns, [r["exact_lo_normalised"]["median"] for r in per],
                        [r["exact_hi_normalised"]["median"] for r in per], alpha=0.3,
                        label="MIP bracket (medians of its ends)")
        sl = summary[p]["slope"].get("exact")
        lab = "bracket middle" + (f", slope {sl['value']:+.2f}" if sl else "")
        ax.plot(ns, med, "o-", label=lab)
        ax.plot(ns, [r["attack_normalised"]["median"] for r in per], "s--", ms=4,
                label="attack (PGD)")
        ax.plot(ns, [r["crown_normalised"]["median"] for r in per], "v:", ms=4,
                label="CROWN radius")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("input dimension n")
        name = {"1": "L1", "2": "L2", "inf": "L-inf"}[p]
        ax.set_ylabel(f"{name} distance x sqrt(n) / ||x||")
        ax.set_title(f"{name}: theory slope {THEORY_SLOPE[p]:+.1f} before normalising")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
