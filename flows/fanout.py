"""Fan-out: one function over a stage's partitions, on a runner chosen in params.yaml.

The per-partition work of a stage (ingest's raw files, score's inbox files) goes through
``fan_out``; which engine runs it is a setting, never a code change, and never changes a byte of
the output (results come back in input order and the coordinator writes them):

- ``serial``: a plain loop, in this process;
- ``threads`` / ``processes``: a pool of ``workers`` on this machine;
- ``dask``: Dask distributed: a ``LocalCluster`` of ``workers`` processes here, or the cluster
  at ``dask_address`` (a scheduler started elsewhere, a ``KubeCluster``'s address). Workers
  there need cairn installed and get every input as bytes: they never read this checkout.

In a tracked run (a Prefect API configured) the batches are Prefect task runs on the matching
Prefect task runner (``ThreadPoolTaskRunner``, ``ProcessPoolTaskRunner``, prefect-dask's
``DaskTaskRunner``), so the UI shows them; under plain `dvc repro` they run on
``concurrent.futures`` or a Dask ``Client`` with the same function.

Small partitions are batched so each task carries real work and a stage never makes more than
``max_tasks`` tasks (a Prefect server struggles past a few thousand task runs); at most two
batches per worker are in flight, so memory holds a bounded number of partitions, not all.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from flows import config
from flows.config import Execution
from flows.tracking import in_flow_run, log, tracked

P = TypeVar("P")
R = TypeVar("R")
T = TypeVar("T")

RUNNERS = ("serial", "threads", "processes", "dask")


def batches(items: Sequence[T], weights: Sequence[int], run: Execution) -> list[list[T]]:
    """``items`` in order, cut into contiguous batches of about ``batch_mb`` of weight (bytes),
    never more than ``max_tasks`` of them and never an empty one."""
    if not items:
        return []
    total = sum(weights)
    target = max(run.batch_mb * 2**20, total / run.max_tasks)
    out: list[list[T]] = [[]]
    filled = 0.0
    for item, weight in zip(items, weights, strict=True):
        if out[-1] and filled + weight > target and len(out) < run.max_tasks:
            out.append([])
            filled = 0.0
        out[-1].append(item)
        filled += weight
    return out


def fan_out(fn: Callable[[P], R], payloads: Iterable[P], name: str, run: Execution | None = None) -> Iterator[R]:
    """``fn(payload)`` for every payload, yielded in payload order, on the configured runner.
    ``payloads`` is consumed lazily: at most two per worker are held at once. ``fn`` must be a
    module-level function (processes and Dask pickle it by name). A single payload runs here,
    in this process, whatever the runner."""
    run = run or config.load().execution
    payloads = iter(payloads)
    head = list(itertools.islice(payloads, 2))
    if run.runner == "serial" or len(head) < 2:  # one task: a pool would only add its start
        yield from map(fn, itertools.chain(head, payloads))
        return
    payloads = itertools.chain(head, payloads)
    with _submitter(fn, name, run) as submit:
        window: collections.deque = collections.deque()
        for payload in payloads:
            window.append(submit(payload))
            if len(window) >= 2 * run.workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


@contextlib.contextmanager
def _submitter(fn: Callable[[P], R], name: str, run: Execution) -> Iterator[Callable[[P], Any]]:
    """A function that submits one payload and returns a future (``.result()``), for the
    runner of ``run``: Prefect task runners in a tracked run, else concurrent.futures / Dask."""
    if tracked() and in_flow_run():
        with _prefect_runner(run) as runner:
            task = _as_task(fn, name)
            yield lambda payload: runner.submit(task, parameters={"payload": payload})
        return
    if run.runner == "dask":
        with _dask_client(run) as client:
            yield lambda payload: client.submit(fn, payload, pure=False)
        return
    import concurrent.futures as cf
    import multiprocessing

    if run.runner == "threads":
        pool: cf.Executor = cf.ThreadPoolExecutor(run.workers, thread_name_prefix=name)
    else:  # forkserver: no fork of a process whose threads (Prefect's, DVC's) may hold locks
        pool = cf.ProcessPoolExecutor(run.workers, mp_context=multiprocessing.get_context("forkserver"))
    with pool:
        yield lambda payload: pool.submit(fn, payload)


def _as_task(fn: Callable, name: str):
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    # The payloads are the partitions' bytes: never hashed for a cache key, never persisted.
    return task(fn, name=f"{name}-batch", cache_policy=NO_CACHE, persist_result=False)


@contextlib.contextmanager
def _prefect_runner(run: Execution) -> Iterator:
    if run.runner == "dask":
        from prefect_dask import DaskTaskRunner

        runner = (
            DaskTaskRunner(address=run.dask_address)
            if run.dask_address
            else DaskTaskRunner(cluster_kwargs=_local_cluster_kwargs(run))
        )
    elif run.runner == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        runner = ProcessPoolTaskRunner(max_workers=run.workers)
    else:
        from prefect.task_runners import ThreadPoolTaskRunner

        runner = ThreadPoolTaskRunner(max_workers=run.workers)
    with runner:
        log().info("fan-out on %s (%d worker(s))", type(runner).__name__, run.workers)
        yield runner


def _local_cluster_kwargs(run: Execution) -> dict[str, Any]:
    # One single-threaded worker process per core asked for: the work is CPU-bound Python.
    return {
        "n_workers": run.workers,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        "silence_logs": logging.ERROR,
    }


@contextlib.contextmanager
def _dask_client(run: Execution) -> Iterator:
    from distributed import Client, LocalCluster

    if run.dask_address:
        with Client(run.dask_address, timeout="30s") as client:
            workers = len(client.scheduler_info()["workers"])
            log().info("fan-out on the Dask cluster at %s (%d worker(s))", run.dask_address, workers)
            yield client
        return
    with LocalCluster(**_local_cluster_kwargs(run)) as cluster, Client(cluster) as client:
        log().info("fan-out on a Dask LocalCluster (%d worker process(es))", run.workers)
        yield client
