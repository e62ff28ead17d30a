"""The executor (in-process, process pool, Dask) and the journal of finished jobs.

References: results computed by plain Python calls in this process (bit for bit), the job
order, and a counter of how often a job really ran.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynid.errors import ConfigError
from dynid.executor import Executor, available_cores, job_threads
from dynid.journal import Journal, Volatile, content_hash, decode, encode
from dynid.relunet import ReLUNet
from dynid.results import Certificate, Status
from tests.conftest import random_relunet

CALLS = {"n": 0}


def _counted(x, scale=1.0):
    CALLS["n"] += 1
    return np.sqrt(np.asarray(x, float)) * scale


def _threads_and_pid(_):
    import torch

    return job_threads(), torch.get_num_threads(), os.getpid()


def _fails(x):
    if x == 2:
        raise ConfigError("job 2 is bad")
    return x


def _value(x):
    return x


# ---------------------------------------------------------------------- journal / hashing


def test_content_hash_sees_content_not_identity():
    a = np.arange(4.0)
    assert content_hash({"x": a, "y": [1, 2.0]}) == content_hash({"y": [1, 2.0], "x": a.copy()})
    assert content_hash(a) != content_hash(a.astype(np.float32))      # dtype counts
    assert content_hash(a) != content_hash(a.reshape(2, 2))            # shape counts
    assert content_hash(1) != content_hash(1.0) != content_hash(True)
    assert content_hash(0.0) != content_hash(-0.0)                      # bits, not equality
    assert content_hash((1, Volatile(5.0))) == content_hash((1, Volatile("later")))
    net = random_relunet(np.random.default_rng(0), [2, 3, 2])
    twin = ReLUNet([w.copy() for w in net.weights], net.biases, net.relu)
    assert content_hash(net) == content_hash(twin)
    bumped = [w.copy() for w in net.weights]
    bumped[0][0, 0] = np.nextafter(bumped[0][0, 0], np.inf)
    assert content_hash(net) != content_hash(ReLUNet(bumped, net.biases, net.relu))
    with pytest.raises(TypeError, match="local function"):
        content_hash(lambda v: v)


floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=60, deadline=None)
@given(st.lists(floats, min_size=0, max_size=6), floats, st.integers(-2**70, 2**70))
def test_codec_round_trips_bit_for_bit(values, x, big):
    arr = np.array(values, dtype=np.float64)
    obj = {"a": arr, "t": (x, big, None, "s"), 3: [np.float32(x) if math.isfinite(x) else 0.0],
           "__odd": np.int64(7), "nested": {"m": arr.reshape(-1, 1).astype(np.float32)}}
    back = decode(encode(obj))
    assert back["a"].dtype == arr.dtype and back["a"].tobytes() == arr.tobytes()
    assert back["nested"]["m"].tobytes() == obj["nested"]["m"].tobytes()
    assert np.float64(back["t"][0]).tobytes() == np.float64(x).tobytes()
    assert back["t"][1:] == (big, None, "s") and isinstance(back["t"], tuple)
    assert back["__odd"] == 7 and back["__odd"].dtype == np.int64 and 3 in back


def test_journal_keeps_certificates_and_networks(tmp_path):
    net = random_relunet(np.random.default_rng(1), [2, 4, 2])
    cert = Certificate("q", Status.COUNTEREXAMPLE, 0.25, 0.5, 0.25,
                       {"x": np.array([0.1, -0.0])}, "highs", 1.5, {"variables": 3},
                       {"note": "n", "cells": 2})
    j = Journal(tmp_path / "j")
    j.put("ab12", {"net": net, "cert": cert})
    got = j.get("ab12")
    assert got["cert"] == cert.__class__(**{**cert.__dict__, "witness": got["cert"].witness})
    assert got["cert"].witness["x"].tobytes() == cert.witness["x"].tobytes()
    assert got["cert"].status is Status.COUNTEREXAMPLE
    assert all(a.tobytes() == b.tobytes() for a, b in zip(got["net"].weights, net.weights))
    (tmp_path / "j" / "cd34.json").write_text("{not json")       # damaged: read as missing
    assert j.get("cd34") is None and "cd34" not in j and "ab12" in j
    assert len(j) == 2
    j.clear()
    assert not (tmp_path / "j").exists() and j.get("ab12") is None


# ---------------------------------------------------------------------- executor


def test_in_process_map_order_stop_and_journal(tmp_path):
    jobs = [(float(i),) for i in range(6)]
    ref = [np.sqrt(float(i)) * 2 for i in range(6)]
    ex = Executor().with_journal(tmp_path / "j")
    CALLS["n"] = 0
    out = ex.map(_counted, jobs, kwargs={"scale": 2.0})
    assert CALLS["n"] == 6 and all(o.tobytes() == r.tobytes() for o, r in zip(out, ref))
    again = ex.map(_counted, jobs, kwargs={"scale": 2.0})        # all journaled: nothing runs
    assert CALLS["n"] == 6 and all(o.tobytes() == r.tobytes() for o, r in zip(again, ref))
    ex.map(_counted, jobs, kwargs={"scale": 3.0})                # other kwargs: other jobs
    assert CALLS["n"] == 12
    # stop: cut after the first result (in job order) that satisfies it
    CALLS["n"] = 0
    cut = Executor().map(_counted, jobs, stop=lambda r: r >= 1.5)
    assert [float(c) for c in cut] == [0.0, 1.0, math.sqrt(2), math.sqrt(3)]
    assert CALLS["n"] == 4                                        # later jobs never ran


def test_interrupted_map_keeps_finished_jobs(tmp_path):
    ex = Executor().with_journal(tmp_path / "j")
    seen = []

    def ctrl_c_after_two(i, r):
        seen.append(i)
        if len(seen) == 2:
            raise KeyboardInterrupt

    CALLS["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        ex.map(_counted, [(1.0,), (4.0,), (9.0,), (16.0,)], on_result=ctrl_c_after_two)
    assert CALLS["n"] == 2 and len(ex.journal) == 2
    out = ex.map(_counted, [(1.0,), (4.0,), (9.0,), (16.0,)])
    assert CALLS["n"] == 4 and [float(v) for v in out] == [1.0, 2.0, 3.0, 4.0]


def test_validation_of_executor_options():
    with pytest.raises(ConfigError, match="workers"):
        Executor(workers=0)
    with pytest.raises(ConfigError, match="threads"):
        Executor(threads=0)
    with pytest.raises(ConfigError, match="cores"):
        Executor(workers=2, threads=available_cores())
    with pytest.raises(ConfigError, match="scheduler"):
        Executor(scheduler=" ")
    assert Executor().describe() == "in-process, 1 thread per job"
    assert Executor(workers=2).kind == "processes"


def test_process_pool_matches_in_process():
    """Worker processes: same results in job order, the same stop, 1 thread per job there."""
    jobs = [(np.linspace(0, 1, 5) * i,) for i in range(7)]
    ref = Executor().map(_counted, jobs)
    with Executor(workers=2) as ex:
        out = ex.map(_counted, jobs)
        assert all(o.tobytes() == r.tobytes() for o, r in zip(out, ref))
        cut = ex.map(_value, [(v,) for v in [0, 1, 5, 2, 7, 3]], stop=lambda r: r >= 5)
        assert cut == [0, 1, 5]
        info = ex.map(_threads_and_pid, [(i,) for i in range(4)])
        assert {(t, n) for t, n, _ in info} == {(1, 1)}
        assert os.getpid() not in {p for _, _, p in info}
        with pytest.raises(ConfigError, match="job 2 is bad"):
            ex.map(_fails, [(i,) for i in range(4)])
        assert ex.map(_value, [(3,)]) == [3]          # the pool survives a failed job


def test_cell_pairs_and_reach_identical_on_a_dask_cluster():
    """Acceptance: a Dask LocalCluster with two workers gives the in-process results, bit for
    bit, for a partitioned reach run and a cell-pair certificate (local worker processes:
    tests/test_runs.py runs a whole pipeline with --workers 2)."""
    distributed = pytest.importorskip("distributed")
    from dynid.certify import invertible_on
    from reach.reachability import reach

    rng = np.random.default_rng(3)
    step = random_relunet(rng, [2, 8, 8, 2], scale=0.4)
    fold = ReLUNet([np.array([[1.0], [-1.0]]), np.array([[-1.0, -1.0]])],
                   [np.zeros(2), np.zeros(1)])                     # x -> -|x|: folds at 0
    wide = random_relunet(np.random.default_rng(4), [2, 6, 2], scale=0.7)

    def work(ex):
        sets = reach(step, [-1, -1], [1, 1], 2, engine="lp-highs", partitions=3, executor=ex)
        pairs = invertible_on(wide, [-1, -1], [1, 1], cells=2, executor=ex, solver="highs")
        folded = invertible_on(fold, [-1], [1], cells=4, executor=ex, solver="highs")
        return sets, pairs, folded

    ref = work(Executor())
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with Executor(scheduler=cluster.scheduler_address) as ex:
            assert ex.kind == "dask"
            got = work(ex)
    for v in ("lower", "upper", "cell_lo", "cell_hi"):
        assert got[0][v].values.tobytes() == ref[0][v].values.tobytes()
    for a, b in ((got[1], ref[1]), (got[2], ref[2])):
        da, db = a.to_dict(), b.to_dict()
        for d in (da, db):
            d.pop("seconds")
        assert da == db
    assert ref[2].status is Status.COUNTEREXAMPLE            # the fold of -|x| is found
    w = ref[2].witness
    assert abs(float(fold.forward(w["x"])[0] - fold.forward(w["y"])[0])) < 1e-9


def test_benchmarks_refuse_cuda_without_a_gpu(capsys):
    import torch

    from benchmarks import scale_bench, splitting_bench

    if torch.cuda.is_available():   # the GPU rows then run: nothing to refuse
        return
    for bench in (scale_bench, splitting_bench):
        assert bench.main(["--device", "cuda"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--device cuda needs a CUDA GPU" in err[0]


def _without_timings(cert: Certificate) -> dict:
    d = cert.to_dict()
    d.pop("seconds")
    d["info"].pop("timings")
    return d


def test_max_box_points_identical_in_worker_processes():
    """The largest-box study's per-point function (issue 14) as executor jobs: two worker
    processes give the in-process boxes and certificates, bit for bit (but the timings)."""
    from dynid.certify import keep_label
    from dynid.certify.maxbox import max_box_job
    from dynid.modelfile import load_model
    from pathlib import Path

    net = load_model(Path(__file__).resolve().parents[1] / "examples" / "voronoi_mlp.h5")
    opts = {"spec": keep_label(), "domain": ([-1.0, -1.0], [1.0, 1.0]), "iterations": 40}
    jobs = [(net, np.array(x), opts) for x in ([0.2, 0.7], [-0.3, -0.4])]
    ref = Executor().map(max_box_job, jobs)
    with Executor(workers=2) as ex:
        got = ex.map(max_box_job, jobs)
    assert [c.status for c in ref] == [Status.CERTIFIED] * 2
    for a, b in zip(got, ref):
        assert _without_timings(a) == _without_timings(b)
        assert np.asarray(a.info["lo"]).tobytes() == np.asarray(b.info["lo"]).tobytes()
