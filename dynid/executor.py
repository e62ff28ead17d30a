"""One executor for independent jobs: in-process, a local process pool, or a Dask cluster.

Cells of a partition, cell pairs of an invertibility verdict, pruning levels: each is a job,
a call ``fn(*args, **kwargs)`` of a module-level function of this package on arrays and
networks. :meth:`Executor.map` runs a list of such jobs and returns their results **in job
order**, whichever executor ran them:

- ``Executor()`` runs them one after the other in this process (the default);
- ``Executor(workers=N)`` runs them in N worker processes on this machine;
- ``Executor(scheduler="tcp://host:8786")`` sends them to a Dask distributed cluster
  (``pip install dynid[dask]``).

Each job runs with ``threads`` torch / solver threads (default 1, so ``workers x threads``
stays within the cores; :func:`job_threads` tells a job its share). Since every executor runs
the same job with the same arguments and the same thread count, the results are the same:
the tests compare them bit for bit.

Jobs and their results travel between the processes of one run as Python objects (pickled in
memory by :mod:`concurrent.futures` / Dask); nothing is pickled to disk. With a
:class:`~dynid.journal.Journal` attached (the pipeline attaches one per stage), every finished
job is also written there as JSON under its content hash, and a later ``map`` over the same
jobs reads it back instead of running it again: an interrupted run resumes at the first
unfinished job with results identical to an uninterrupted one.

``stop=`` ends the work early the same way in every executor: the result list is cut after
the *first job in order* whose result satisfies ``stop``; every earlier job is always run.

Example
-------
>>> import math
>>> Executor().map(math.sqrt, [(4.0,), (9.0,)])
[2.0, 3.0]
>>> Executor().map(math.sqrt, [(1.0,), (4.0,), (9.0,)], stop=lambda r: r >= 2)
[1.0, 2.0]
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Callable, Sequence

from dynid.errors import ConfigError

KINDS = ("in-process", "processes", "dask")
_PENDING = object()
_JOB_THREADS: int | None = None    # threads of the job running in this process, if any
_IN_WORKER = False                  # True in a worker process of a pool


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # pragma: no cover - not Linux
        return os.cpu_count() or 1


def job_threads(default: int | None = None) -> int | None:
    """Threads the running job may use (set by the executor), else ``default``.

    Example
    -------
    >>> job_threads(4)
    4
    """
    return _JOB_THREADS if _JOB_THREADS is not None else default


def in_job() -> bool:
    """Whether this code runs inside a job of an executor (nested maps then run in-process)."""
    return _JOB_THREADS is not None


def _set_torch_threads(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _unwrap(value):
    from dynid.journal import Volatile

    return _aligned(value.value if isinstance(value, Volatile) else value)


def _aligned(obj):
    """``obj`` with every numpy array it holds in aligned memory. Dask hands arrays over as
    views of its network buffers, possibly not even 8-byte aligned, and numpy computes on
    unaligned data along another path, with other last bits; a copy puts them back on the
    usual one, so a job gives the same bits wherever it runs."""
    import dataclasses

    import numpy as np

    from dynid.relunet import ReLUNet
    from dynid.results import Certificate

    if isinstance(obj, np.ndarray):
        return obj if obj.flags.aligned else np.array(obj, copy=True)
    if isinstance(obj, tuple):
        return tuple(_aligned(v) for v in obj)
    if isinstance(obj, list):
        return [_aligned(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _aligned(v) for k, v in obj.items()}
    if isinstance(obj, ReLUNet):
        if all(a.flags.aligned for a in (*obj.weights, *obj.biases)):
            return obj
        return ReLUNet(obj.weights, obj.biases, obj.relu, obj.meta)   # copies
    if isinstance(obj, Certificate):
        return dataclasses.replace(obj, witness=_aligned(obj.witness), info=_aligned(obj.info))
    return obj


def _run_job(fn, args, kwargs, threads):
    """Run one job in whichever process it lands in, with ``threads`` threads."""
    global _JOB_THREADS
    previous = _JOB_THREADS
    _JOB_THREADS = threads
    try:
        _set_torch_threads(threads)
        return fn(*[_unwrap(a) for a in args], **{k: _unwrap(v) for k, v in kwargs.items()})
    finally:
        _JOB_THREADS = previous


def _init_worker(threads: int) -> None:
    """Pool worker set-up: Ctrl-C is handled by the parent (which ends the workers)."""
    global _IN_WORKER
    _IN_WORKER = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    _set_torch_threads(threads)


class _Pool:
    """The worker pool or Dask client, shared by an executor and its journaled copies."""

    def __init__(self):
        self.pool = None
        self.client = None


class Executor:
    """Runs independent jobs; see the module docstring.

    Parameters
    ----------
    workers : 1 (in-process, the default) or the number of local worker processes.
    scheduler : address of a Dask scheduler (``"tcp://host:8786"``) or a
        ``distributed.Client``; overrides ``workers``.
    threads : torch / solver threads per job (default 1). With local workers,
        ``workers x threads`` must not exceed the cores (a ConfigError says so).
    journal : a :class:`~dynid.journal.Journal` of finished jobs (see :meth:`with_journal`).
    progress : None, True (a tqdm bar of jobs done / total per map) or a callable
        ``progress(done, total, desc)``.
    """

    def __init__(self, workers: int = 1, scheduler=None, threads: int | None = None, *,
                 journal=None, progress=None):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
        threads = 1 if threads is None else threads
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
        if scheduler is not None and not isinstance(scheduler, str) \
                and not hasattr(scheduler, "submit"):
            raise ConfigError("scheduler must be a Dask scheduler address such as "
                              "'tcp://127.0.0.1:8786' (or a distributed.Client)")
        if isinstance(scheduler, str) and not scheduler.strip():
            raise ConfigError("scheduler address is empty: give e.g. tcp://127.0.0.1:8786")
        cores = available_cores()
        if scheduler is None and threads > 1 and workers * threads > cores:
            raise ConfigError(f"{workers} worker(s) x {threads} threads exceed the {cores} "
                              f"cores of this machine: use threads <= {max(1, cores // workers)}")
        self.workers = int(workers)
        self.scheduler = scheduler
        self.threads = int(threads)
        self.journal = journal
        self.progress = progress
        self._shared = _Pool()

    # ------------------------------------------------------------------ description
    @property
    def kind(self) -> str:
        """"in-process", "processes" or "dask"."""
        if self.scheduler is not None:
            return "dask"
        return "processes" if self.workers > 1 else "in-process"

    def describe(self) -> str:
        """One line: which executor, how many workers and threads."""
        t = f"{self.threads} thread{'s' if self.threads > 1 else ''} per job"
        if self.kind == "dask":
            addr = self.scheduler if isinstance(self.scheduler, str) else "a Dask client"
            return f"Dask cluster at {addr}, {t}"
        if self.kind == "processes":
            return f"{self.workers} worker processes, {t}"
        return f"in-process, {t}"

    def with_journal(self, journal) -> "Executor":
        """A copy that shares this executor's workers and records jobs in ``journal``
        (a :class:`~dynid.journal.Journal`, a folder path, or None for no journal)."""
        from dynid.journal import Journal

        new = object.__new__(Executor)
        new.__dict__.update(self.__dict__)
        new.journal = Journal(journal) if isinstance(journal, (str, Path)) else journal
        return new

    # ------------------------------------------------------------------ life cycle
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        """Shut the worker pool down (or disconnect from Dask). The executor stays usable:
        the next map starts a fresh pool."""
        s = self._shared
        if s.pool is not None:
            s.pool.shutdown(wait=True, cancel_futures=True)
            s.pool = None
        if s.client is not None:
            if isinstance(self.scheduler, str):
                s.client.close()
            s.client = None

    def start(self) -> "Executor":
        """Start the workers now (else the first map does); returns self."""
        if self.kind == "processes":
            self._process_pool()
        elif self.kind == "dask":
            self._dask_client()
        return self

    def _process_pool(self):
        s = self._shared
        if s.pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # forkserver: workers fork from a clean server that imported torch once (fork
            # from a process with live OpenMP threads can hang; spawn re-imports per worker)
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(["dynid.executor", "numpy", "torch"])
            s.pool = ProcessPoolExecutor(self.workers, mp_context=ctx,
                                         initializer=_init_worker, initargs=(self.threads,))
        return s.pool

    def _dask_client(self):
        s = self._shared
        if s.client is None:
            if not isinstance(self.scheduler, str):
                s.client = self.scheduler
            else:
                try:
                    from distributed import Client
                except ImportError:
                    raise ConfigError("--scheduler needs Dask distributed: "
                                      "pip install 'dynid[dask]'") from None
                try:
                    s.client = Client(self.scheduler, timeout="10s", set_as_default=False)
                except (OSError, TimeoutError) as exc:
                    raise ConfigError(f"cannot reach the Dask scheduler at {self.scheduler}: "
                                      f"{exc}") from None
        return s.client

    def _kill_pool(self) -> None:
        """Ctrl-C: end the workers now (a running MIP would otherwise finish first)."""
        s = self._shared
        if s.pool is None:
            return
        for p in list(getattr(s.pool, "_processes", {}).values()):
            p.terminate()
        s.pool.shutdown(wait=False, cancel_futures=True)
        s.pool = None

    # ------------------------------------------------------------------ map
    def map(self, fn: Callable, jobs: Sequence[tuple], *, kwargs: dict | None = None,
            desc: str = "jobs", stop: Callable | None = None,
            on_result: Callable | None = None) -> list:
        """Results of ``fn(*job, **kwargs)`` for every job, in job order.

        Parameters
        ----------
        fn : a module-level function (it must be importable in a worker process).
        jobs : one tuple of positional arguments per job. Top-level arguments wrapped in
            :class:`~dynid.journal.Volatile` are passed unwrapped but left out of the job's
            content hash.
        kwargs : keyword arguments shared by every job.
        desc : label of the progress bar.
        stop : ``stop(result) -> bool``; the list is cut after the first job in order whose
            result satisfies it (later jobs are cancelled or their results dropped).
        on_result : ``on_result(index, result)``, called in this process as each result
            arrives (in completion order; journaled results first).

        A job that raises ends the map with its exception; Ctrl-C ends the workers and
        raises KeyboardInterrupt after ``on_result`` has seen every finished job. Results
        that are ``None`` are not journaled (a job returns None for "not done", e.g. when a
        time budget ran out before it started).
        """
        jobs = [tuple(j) for j in jobs]
        kwargs = dict(kwargs or {})
        n = len(jobs)
        results = [_PENDING] * n
        state = {"stop_at": None, "done": 0}
        journal = None if in_job() else self.journal
        keys = self._keys(fn, jobs, kwargs) if journal is not None else [None] * n
        tick = self._ticker(n, desc)

        def record(i, r, fresh=True):
            results[i] = r
            if fresh and journal is not None and r is not None:
                journal.put(keys[i], r)
            state["done"] += 1
            tick(state["done"])
            if on_result is not None:
                on_result(i, r)
            if stop is not None and stop(r) and (state["stop_at"] is None
                                                 or i < state["stop_at"]):
                state["stop_at"] = i

        try:
            if journal is not None:
                for i, key in enumerate(keys):
                    r = journal.get(key, _PENDING)
                    if r is not _PENDING:
                        record(i, r, fresh=False)
            cut = state["stop_at"]
            todo = [i for i in range(n) if results[i] is _PENDING and (cut is None or i < cut)]
            if todo:
                if in_job() or self.kind == "in-process":
                    self._run_here(fn, jobs, kwargs, todo, state, record)
                else:
                    self._run_remote(fn, jobs, kwargs, todo, state, record)
        finally:
            tick(None)
        cut = state["stop_at"]
        out = results if cut is None else results[:cut + 1]
        assert all(r is not _PENDING for r in out)
        return out

    def _keys(self, fn, jobs, kwargs) -> list[str]:
        from dynid import __version__
        from dynid.journal import content_hash

        memo: dict = {}
        base = content_hash((__version__, fn, kwargs), memo)
        return [content_hash((base, job), memo) for job in jobs]

    def _run_here(self, fn, jobs, kwargs, todo, state, record) -> None:
        threads = job_threads(self.threads) if in_job() else self.threads
        for i in todo:
            if state["stop_at"] is not None and i > state["stop_at"]:
                break
            record(i, _run_job(fn, jobs[i], kwargs, threads))

    def _run_remote(self, fn, jobs, kwargs, todo, state, record) -> None:
        dask = self.kind == "dask"
        if dask:
            client = self._dask_client()
            submit = lambda i: client.submit(_run_job, fn, jobs[i], kwargs,  # noqa: E731
                                             self.threads, pure=False)
            cancel = lambda fs: client.cancel(fs) if fs else None  # noqa: E731
        else:
            pool = self._process_pool()
            submit = lambda i: pool.submit(_run_job, fn, jobs[i], kwargs,  # noqa: E731
                                           self.threads)
            cancel = lambda fs: [f.cancel() for f in fs]  # noqa: E731
        futures = {}
        try:
            for i in todo:
                futures[i] = submit(i)
            pending = dict(futures)

            def prune_after_stop():   # cancel what a stop made unnecessary
                cut = state["stop_at"]
                if cut is not None:
                    cancel([f for i, f in pending.items() if i > cut])
                    for i in [i for i in pending if i > cut]:
                        del pending[i]

            if dask:
                from distributed import as_completed

                index = {f.key: i for i, f in futures.items()}
                for f in as_completed(list(futures.values()), loop=client.loop):
                    i = index[f.key]
                    if i in pending:
                        del pending[i]
                        record(i, _aligned(f.result()))
                        prune_after_stop()
                    if not pending:
                        break
            else:
                from concurrent.futures import FIRST_COMPLETED, wait

                while pending:
                    done, _ = wait(list(pending.values()), return_when=FIRST_COMPLETED)
                    for i in sorted(i for i, f in pending.items() if f in done):
                        if i in pending:
                            record(i, pending.pop(i).result())
                            prune_after_stop()
        except KeyboardInterrupt:
            if dask:
                cancel(list(futures.values()))
            else:
                self._kill_pool()
            raise
        except BaseException:
            cancel(list(futures.values()))
            raise

    def _ticker(self, total: int, desc: str):
        """progress(done) per finished job; progress(None) closes the bar."""
        p = self.progress
        if p is True and total > 0:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc=desc, unit="job", leave=False)

            def tick(done):
                if done is None:
                    bar.close()
                else:
                    bar.update(done - bar.n)
            return tick
        if callable(p):
            return lambda done: None if done is None else p(done, total, desc)
        return lambda done: None


def resolve(executor) -> Executor:
    """``executor`` itself, or the default in-process executor for None.

    Example
    -------
    >>> resolve(None).kind
    'in-process'
    """
    return Executor() if executor is None else executor


__all__ = ["Executor", "resolve", "job_threads", "in_job", "available_cores", "KINDS"]
