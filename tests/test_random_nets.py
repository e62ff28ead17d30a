"""Random He-initialised nets and the scaling study: the weight law against N(0, 2 / fan_in)
(moments and a Kolmogorov-Smirnov test), He's mean-square propagation law, seeding, the study's
points (pure, JSON in / JSON out, a bracket on every point), the resumable JSON-lines runner
(a torn line, an interrupted run), and the statistics against numpy and known power laws."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from dynid.errors import ConfigError, NormError
from dynid.random_nets import (AUTHORS_SLOPE, THEORY_SLOPE, bracket_ok, he_mlp, load_rows,
                               loglog_slope, plot_scaling, point_config, point_key, run_study, slope_rows,
                               study_grid, study_point, summarise, summary_rows)


# ------------------------------------------------------------------ he_mlp
def test_he_weights_follow_the_normal_law():
    net = he_mlp(50, [400, 300], seed=1)
    for w, fan_in in zip(net.weights, [50, 400, 300]):
        z = w.ravel() / math.sqrt(2.0 / fan_in)          # standardised: N(0, 1) if He
        assert stats.kstest(z, "norm").pvalue > 1e-3
        assert abs(z.mean()) < 5 / math.sqrt(z.size)
    assert [w.shape for w in net.weights] == [(400, 50), (300, 400), (2, 300)]
    assert all(np.all(b == 0) for b in net.biases)
    assert net.relu[0].all() and net.relu[1].all() and not net.relu[2].any()


def test_random_biases_have_the_asked_spread():
    net = he_mlp(10, [2000], bias_std=0.3, seed=2)
    b = net.biases[0]
    assert stats.kstest(b / 0.3, "norm").pvalue > 1e-3


def test_he_initialisation_keeps_the_mean_square_of_the_activations():
    # He et al. 2015: with weights N(0, 2 / fan_in) and no biases, E[h_i^2] of every ReLU layer
    # equals the mean square of the input (E relu(z)^2 = Var z / 2, Var z = 2 |x|^2 / fan_in)
    rng = np.random.default_rng(0)
    x = rng.random(32)
    ms = []
    for seed in range(200):
        net = he_mlp(32, [64, 64], seed=seed)
        z = x
        layer = []
        for w, b, relu in zip(net.weights, net.biases, net.relu):
            z = w @ z + b
            if relu.all():
                z = np.maximum(z, 0.0)
                layer.append(np.mean(z ** 2))
        ms.append(layer)
    ms = np.array(ms).mean(axis=0)
    assert ms == pytest.approx([np.mean(x ** 2)] * 2, rel=0.1)


def test_seeds_reproduce_and_differ():
    a, b, c = he_mlp(8, [16], seed=5), he_mlp(8, [16], seed=5), he_mlp(8, [16], seed=6)
    assert all(np.array_equal(u, v) for u, v in zip(a.weights, b.weights))
    assert not np.array_equal(a.weights[0], c.weights[0])


@pytest.mark.parametrize("kwargs", [dict(n_in=0), dict(widths=[0]), dict(n_out=0),
                                    dict(bias_std=-1.0), dict(bias_std=math.nan),
                                    dict(widths=[2_000_000])])
def test_bad_sizes_are_refused(kwargs):
    args = {"n_in": 4, "widths": [8], **kwargs}
    with pytest.raises(ConfigError):
        he_mlp(args.pop("n_in"), args.pop("widths"), **args)


# ------------------------------------------------------------------ the study's points
def test_grid_is_deterministic_and_keys_are_unique():
    a = study_grid(ns=[4, 8], n_nets=3, n_inputs=2)
    b = study_grid(ns=[4, 8], n_nets=3, n_inputs=2)
    assert a == b and len(a) == 2 * 3 * 2 * 3
    assert len({point_key(s) for s in a}) == len(a)
    assert len({s["net_seed"] for s in a}) == 6            # one net per (n, net)
    assert len({s["input_seed"] for s in a}) == 12         # one input per (n, net, input)
    assert json.loads(json.dumps(a)) == a                   # plain JSON


@pytest.mark.parametrize("kwargs,err", [(dict(ns=[0]), ConfigError), (dict(n_nets=0), ConfigError),
                                        (dict(time_limit=-1.0), ConfigError),
                                        (dict(time_limit=0.0), ConfigError),
                                        (dict(norms=["3"]), NormError)])
def test_bad_grids_are_refused(kwargs, err):
    with pytest.raises(err):
        study_grid(**kwargs)


def _check_points(specs):
    from dynid.certify import boundary_distance

    for spec in specs:
        row = study_point(spec)
        assert json.loads(json.dumps(row)) == row
        assert bracket_ok(row), row
        if row["upper"] == "inf":   # a tiny bias-free net may keep one decision everywhere
            assert row["status"] == "unknown" and "no point" in row["note"]
            continue
        assert row["witness_checked"]
        # certified, or a tie plateau: the closed set {margin <= 0} is reached (the MIP was
        # solved) where the open set is not, e.g. every unit of a layer dead in a small
        # bias-free net; then the bracket stays open but sound
        assert row["status"] == "certified" or (row["mip_status"] == "optimal"
                                                and row.get("strict_mip")), row
        p = {"1": 1, "2": 2, "inf": math.inf}[spec["norm"]]
        net = he_mlp(spec["n"], [8, 8], seed=spec["net_seed"])
        x = np.random.default_rng(spec["input_seed"]).random(spec["n"])
        assert row["x_norm"] == pytest.approx(np.linalg.norm(x, ord=p))
        cert = boundary_distance(net, x, p)
        assert cert.value <= row["exact_hi"] * (1 + 1e-9) and row["exact_lo"] <= cert.bound * (1 + 1e-9)


def test_points_give_an_ordered_bracket_and_match_a_direct_call():
    _check_points(study_grid(ns=[2, 4], n_nets=1, n_inputs=1, widths=[8, 8], time_limit=20))


@pytest.mark.slow
def test_points_give_an_ordered_bracket_and_match_a_direct_call_many():
    _check_points(study_grid(ns=[2, 4, 8], n_nets=4, n_inputs=2, widths=[8, 8], time_limit=60))


# ------------------------------------------------------------------ resumable runs
def _fake_point(spec):
    n = spec["n"]
    d = 0.3 * n ** THEORY_SLOPE[spec["norm"]] * (1 + 0.01 * spec["net"])
    return {"key": point_key(spec), "config": point_config(spec), "n": n, "net": spec["net"], "input": spec["input"],
            "norm": spec["norm"], "x_norm": 1.0, "status": "certified", "seconds": 0.1,
            "lower": 0.5 * d, "exact_lo": d, "exact_hi": d, "upper": 1.2 * d}


def _map_counting(seen, fail_after=None):
    def run(fn, specs):
        for k, s in enumerate(specs):
            if fail_after is not None and k == fail_after:
                raise KeyboardInterrupt
            seen.append(point_key(s))
            yield _fake_point(s)
    return run


def test_run_study_appends_and_resumes(tmp_path):
    specs = study_grid(ns=[4, 8], n_nets=2, n_inputs=1)
    path = tmp_path / "pts.jsonl"
    seen = []
    with pytest.raises(KeyboardInterrupt):      # Ctrl-C after 5 points: those 5 are kept
        run_study(specs, path, map_fn=_map_counting(seen, fail_after=5))
    assert len(load_rows(path)) == 5
    with open(path, "a") as fh:                 # a run killed mid-write: a torn line
        fh.write('{"key": "n4-net1')
    seen.clear()
    calls = []
    rows = run_study(specs, path, map_fn=_map_counting(seen),
                     progress=lambda d, t, r: calls.append((d, t)))
    assert len(seen) == len(specs) - 5          # only the missing points ran
    assert [point_key(s) for s in specs] == [r["key"] for r in rows]
    assert calls[0] == (5, len(specs)) and calls[-1] == (len(specs), len(specs))
    seen.clear()
    run_study(specs, path, map_fn=_map_counting(seen))
    assert seen == []                           # nothing left to do
    assert len(load_rows(path)) == len(specs)
    other = study_grid(ns=[4, 8], n_nets=2, n_inputs=1, time_limit=7.0)
    run_study(other, path, map_fn=_map_counting(seen))
    assert len(seen) == len(specs)              # other settings: nothing reused
    assert len(load_rows(path)) == 2 * len(specs)


def test_duplicate_points_are_refused(tmp_path):
    s = study_grid(ns=[4], n_nets=1, n_inputs=1, norms=["inf"])
    with pytest.raises(ConfigError):
        run_study(s + s, tmp_path / "x.jsonl")


# ------------------------------------------------------------------ statistics
def test_loglog_slope_recovers_power_laws():
    ns = np.array([8, 16, 32, 64, 128])
    for a in (-0.5, 0.0, 0.5, 1.3):
        assert loglog_slope(ns, 2.7 * ns ** a) == pytest.approx(a, abs=1e-12)


def test_summarise_against_numpy_and_the_true_slopes():
    rng = np.random.default_rng(3)
    rows = []
    for n in (8, 16, 32, 64, 128):
        for k in range(30):
            for norm, a in THEORY_SLOPE.items():
                d = n ** a * math.exp(0.2 * rng.standard_normal())
                rows.append({"key": f"{n}-{k}-{norm}", "n": n, "net": k, "input": 0,
                             "norm": norm, "x_norm": 2.0, "status": "certified", "seconds": n,
                             "lower": 0.5 * d, "exact_lo": d, "exact_hi": d, "upper": 1.25 * d})
    s = summarise(rows, n_boot=300)
    for norm, a in THEORY_SLOPE.items():
        sl = s[norm]["slope"]["exact"]
        assert sl["ci_lo"] <= a <= sl["ci_hi"] and sl["ci_hi"] - sl["ci_lo"] < 0.2
        assert s[norm]["slope"]["attack"]["value"] == pytest.approx(sl["value"])
        assert s[norm]["authors"] == AUTHORS_SLOPE[norm]
        for r in s[norm]["per_n"]:
            d = np.array([x["exact_lo"] for x in rows if x["norm"] == norm and x["n"] == r["n"]])
            assert r["exact"]["median"] == pytest.approx(np.median(d))
            assert r["exact"]["p45"] == pytest.approx(np.percentile(d, 45))
            assert r["exact_normalised"]["median"] == pytest.approx(
                np.median(d) * math.sqrt(r["n"]) / 2.0)
            assert r["ratio_exact_attack"] == pytest.approx(0.8)
            assert r["bracket_violations"] == 0 and r["certified"] == 30
    flat = summary_rows(s)
    assert len(flat) == 15 and {r["norm"] for r in flat} == {"1", "2", "inf"}
    assert {r["series"] for r in slope_rows(s)} >= {"exact", "attack", "crown"}


def test_a_bad_bracket_is_counted():
    rows = [_fake_point(s) for s in study_grid(ns=[4, 8], n_nets=2, n_inputs=1, norms=["1"])]
    rows[0]["exact_hi"] = 2 * rows[0]["upper"]
    rows[-1].update(upper="inf", exact_hi="inf", status="unknown")   # no other side found
    s = summarise(rows, n_boot=10)
    assert [r["bracket_violations"] for r in s["1"]["per_n"]] == [1, 0]
    assert [(r["points"], r["no_other_side"]) for r in s["1"]["per_n"]] == [(2, 0), (1, 1)]
    assert all(math.isfinite(r["exact"]["median"]) for r in s["1"]["per_n"])


def test_plot_scaling_writes_a_png(tmp_path):
    rows = [_fake_point(s) for s in study_grid(ns=[4, 8, 16], n_nets=3, n_inputs=1)]
    out = tmp_path / "fig.png"
    plot_scaling(summarise(rows, n_boot=20), out, title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
