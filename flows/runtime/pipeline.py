"""The pipeline flow: DVC's DAG run from Prefect, with DVC still the judge of what is stale.

For each stage in the order `dvc repro` would use: skip it if DVC finds it up to date,
restore it from DVC's run-cache if that has it, else run its command line in this process
(a Prefect subflow, so the UI shows it as its own run) and `dvc commit` it, which writes the
same dvc.lock entry and run-cache entry that `dvc repro` writes. A stage that
``deploy.remote_stages`` sends to a work pool (train on a GPU pool) runs on a worker of that
pool instead and comes back through the run-cache (flows/runtime/workers.py).
"""

from __future__ import annotations

import contextvars
import functools
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow

from flows import config
from flows.runtime import drift, lockfile
from flows.runtime.dvc_repo import Dvc
from flows.runtime.stages import STAGES, UsageError, run_stage
from flows.runtime.workers import await_worker, bring_back, check_ready, hand_over
from flows.storage.files import load_yaml
from flows.tracking import git_revision, in_flow_run, log, report, tracked
from steps.errors import CairnError, StageFailed

COMMAND = ["python", "-m", "flows", "$DVC_STAGE"]


def _command(dvc: Dvc, name: str) -> list[str]:
    """The stage's command line as `python -m flows` takes it: its address, as DVC passes it."""
    cmd = dvc.command(name)
    if shlex.split(cmd) != COMMAND or name.split("@")[0] not in STAGES:
        raise UsageError(f"pipeline: stage '{name}' runs {cmd!r}; expected 'python -m flows \"$DVC_STAGE\"'")
    return [name]


def run_name() -> str:
    """A pipeline run's name says what it runs: 'pipeline: iris, loans' or 'pipeline: all workloads'."""
    from prefect.runtime import flow_run

    workloads = flow_run.parameters.get("workloads")
    return f"pipeline: {', '.join(workloads) if workloads else 'all workloads'}"


@flow(name="pipeline", flow_run_name=run_name, persist_result=False)
def pipeline(workloads: list[str] | None = None, jobs: int | None = None) -> dict[str, str]:
    """Bring every stage of ``workloads`` (default: all in params.yaml) up to date, up to
    ``jobs`` stages at once (default: ``execution.jobs`` in params.yaml).

    Runs in the repository root (the working directory). Returns {stage address: 'skipped' |
    'restored' | 'ran' | 'worker'}, except that a champion gate that ran says what it decided:
    {'promote@<workload>': 'promoted' | 'rejected' | 'already v<N>'}.
    """
    # DVC's repository lock for the whole run: a second run on this checkout is refused
    # (DVC gives up after a few seconds) instead of interleaving its stages with ours.
    with Dvc.open("pipeline") as dvc:
        return _run(dvc, workloads, jobs or config.load().execution.jobs)


def _run(dvc: Dvc, workloads: list[str] | None, jobs: int) -> dict[str, str]:
    logger = log()
    addresses = dvc.addresses()
    pools = config.load().deploy.remote_stages
    if unknown := sorted(set(pools) - set(addresses)):
        raise UsageError(f"params.yaml: deploy.remote_stages names {unknown}, which dvc.yaml does not define")
    if workloads and not any(a.split("@")[-1] in workloads for a in addresses):
        raise UsageError(f"pipeline: no stages for workloads {workloads} in dvc.yaml")
    plan = dvc.plan(workloads)
    for name in plan:  # before any stage runs: fail early, lose nothing
        if name in pools:
            check_ready(dvc, name, pools[name])
    # A tracked run keeps every local stage a subflow of its own run, in this process.
    outcome = Waves(dvc, plan, pools, jobs, run_stage, run_apart=None if in_flow_run() else run_apart).run()
    drift.record()  # the metrics dvc.lock now stands for, committed with it (flows/runtime/drift.py)
    counts = {
        k: list(outcome.values()).count(k) for k in ("ran", "worker", "restored", "skipped", "promoted", "rejected")
    }
    report("pipeline", "pipeline", counts | {"stages": outcome, "jobs": jobs, "git_revision": git_revision()})
    produced_artifact(outcome)
    if not counts["ran"] and not counts["worker"] and not counts["restored"]:
        logger.info("pipeline: nothing changed in data, code or params; every stage skipped")
    return outcome


def exclusive(name: str) -> bool:
    """Whether ``stage`` trains a model whose fit holds torch's process-wide generator from start
    to end (it draws dropout masks from it): at most one such stage runs at a time in this
    process. The model module's ``exclusive(model settings)`` says so (steps/models). Other
    fits run side by side: each seeds its net's construction in turn. (ONNX exports, whose global
    flag makes a second export at once fail, take turns inside steps/models/torchnet.py: a
    publish stage is never exclusive.)"""
    kind, _, workload = name.partition("@")
    if kind != "train":
        return False
    from steps import models

    settings = config.workload(workload)
    decide = getattr(models.module(settings.model.name), "exclusive", None)
    return bool(decide and decide(settings.settings("model")))


def own_process(name: str) -> bool:
    """Whether ``name`` is a torch fit big enough to train in a process of its own: a train stage
    whose model runs torchnet's loop (``TORCH_LOOP``) for at least ``execution.fit_process``
    optimizer steps (epochs × batches of the train split; one batch for L-BFGS). That loop is
    thousands of small torch ops a second, and between two ops it needs the GIL, which the
    pipeline's other stage threads and its coordinator (DVC's commits, the lock writes) hold for
    long stretches: beside them the autoencoder's epochs took 12 s instead of 3.5 s, and the
    pipeline from scratch 135-140 s instead of 104.5 s (docs/benchmarks.md). A child costs a
    Python start and its imports (2-3 s), which a small fit does not win back."""
    kind, _, workload = name.partition("@")
    threshold = config.load().execution.fit_process
    if kind != "train" or threshold is None:
        return False
    from steps import models

    settings = config.workload(workload)
    if not getattr(models.module(settings.model.name), "TORCH_LOOP", False):
        return False
    import pyarrow.parquet as pq

    from flows.runtime.stages import stage_paths
    from flows.storage.tables import parquet_files

    rows = sum(
        pq.ParquetFile(f).metadata.num_rows for f in parquet_files(stage_paths(kind, workload)["split"] / "train")
    )
    train = settings.train
    batch = rows if train.optimizer == "lbfgs" or train.batch_size < 1 else train.batch_size
    return train.epochs * -(-rows // max(1, batch)) >= threshold


def run_apart(argv: list[str]) -> None:
    """The stage's command line as dvc.yaml runs it, `python -m flows <address>`, in a child
    process. Its log lines pass through; its one-line error (or the last line of its traceback,
    printed above) is the stage's failure."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-m", "flows", *argv], stderr=subprocess.PIPE, text=True)
    last = ""
    for line in child.stderr:
        sys.stderr.write(line)
        last = line.strip() or last
    if child.wait():
        message = (
            last.removeprefix("error: ") if last.startswith("error: ") else f"exit code {child.returncode}: {last}"
        )
        raise (UsageError if child.returncode == UsageError.exit_code else StageFailed)(message)


def torch_default_threads() -> int:
    """The intra-op threads a new process's torch starts with (read before any stage runs).

    torch hands a new thread the count last set by any thread, and a train stage sets its own
    (``train.threads``); so each local stage thread starts from this count first, and an
    evaluate or publish runs on the threads a `dvc repro` stage process would, whichever fit
    ran before it."""
    import torch

    return torch.get_num_threads()


class Waves:
    """DVC's DAG in waves: every stage whose upstream stages are done and committed starts, up
    to ``jobs`` at once, each in a thread of its own (a Prefect subflow of the pipeline run).

    Every DVC call (is it stale, restore from the run-cache, `dvc commit`, pushes for worker
    pools) stays in this, the coordinator thread, one at a time, through ``dvc`` (the adapter,
    flows/runtime/dvc_repo.py); a stage thread only runs the stage (``run_local``, given its command
    line as `python -m flows` takes it) or waits for its worker. A stage on a work pool takes no
    local slot; torch fits with dropout run one at a time (``exclusive``). When a stage
    fails (whatever it raised), the local ones running finish and are committed, nothing new
    starts, a stage still on a work pool is not waited for (a rerun restores it from the
    run-cache), and the run ends with the failing stage's one-line error. New dvc.lock entries
    are written together (before a stage that reads the lock, and at the end: ``Dvc.commit``)
    and put in plan order at the end, so the lock is byte for byte that of `dvc repro` or
    ``jobs=1``.
    """

    def __init__(self, dvc: Dvc, plan: list[str], pools: dict[str, str], jobs: int,
                 run_local: Callable[[list[str]], Any],
                 run_apart: Callable[[list[str]], Any] | None = None):  # fmt: skip
        self.dvc, self.plan, self.pools, self.jobs, self.run_local = dvc, plan, pools, jobs, run_local
        # How a stage that ``own_process`` picks runs (in a child process); None: none is picked.
        self.run_apart = run_apart
        self.apart: dict[str, bool] = {}  # own_process of each stage asked about
        names = set(plan)
        # DVC's edges point from a stage to the stages it depends on.
        self.upstream = {name: [u for u in dvc.upstream(name) if u in names] for name in plan}
        self.outcome: dict[str, str] = {}
        self.verdicts: dict[str, str] = {}  # promote@<workload> that ran: what the gate decided
        self.failed: list[str] = []  # each failed stage's one-line error
        self.errors: list[Exception] = []  # and what it raised
        self.pull = dvc.fetch_run_cache()
        self.threads: int | None = None  # torch_default_threads, once a local stage starts

    def run(self) -> dict[str, str]:
        import concurrent.futures as cf

        before = self.dvc.lock_order()
        running: dict[cf.Future, str] = {}
        try:
            while True:
                if not self.failed:
                    self._start_ready(running)
                if self.failed and all(name in self.pools for name in running.values()):
                    self._leave(running)
                    break
                if not running:
                    break
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    self._finish(running.pop(future), future)
        finally:
            self.dvc.write_lock()
            self.dvc.order_lock(before, self.plan)
        if self.errors:
            if isinstance(self.errors[0], UsageError):  # dvc.yaml itself is wrong: exit 2, as before
                raise self.errors[0]
            raise StageFailed(self.failed[0])
        return {name: self.verdicts.get(name, self.outcome[name]) for name in self.plan if name in self.outcome}

    def _start_ready(self, running: dict) -> None:
        """Decide, restore or start every stage that can go now, in plan order. Anything a stage
        raises on the way (DVC's status, a restore, a hand-over) is that stage's failure."""
        local = [name for name in running.values() if name not in self.pools]
        busy = set(running.values())
        for name in self.plan:
            if name in self.outcome or name in busy:
                continue
            if not all(self.outcome.get(u) in DONE for u in self.upstream[name]):
                continue
            remote = name in self.pools
            if not remote and len(local) >= self.jobs:
                continue
            try:
                # The stages already running first: asking a train stage whether it is exclusive
                # imports its model (torch, 2.4 s of CPU), which a pipeline where nothing else
                # runs, or where it is up to date, does not need.
                if not remote and any(map(self._exclusive, local)) and self._exclusive(name):
                    continue
                job = self._prepare(name)
            except Exception as err:  # noqa: BLE001 - any error is this stage's failure, said once
                return self._fail(name, err)
            if job is None:
                continue
            if not remote:
                self.threads = self.threads or torch_default_threads()
                job = functools.partial(_on_threads, self.threads, job)
            # The copied context makes the stage's flow a subflow of this pipeline run.
            call = functools.partial(contextvars.copy_context().run, job)
            running[_on_thread(call, name, daemon=remote)] = name
            if not remote:
                local.append(name)

    def _prepare(self, name: str) -> Callable[[], Any] | None:
        """What running ``name`` takes (its command, or waiting for its worker), or None when it
        is up to date or was restored from the run-cache (then it is done)."""
        if not self.dvc.changed(name) and not _champion_moved(self.dvc, name):
            log().info("%s: up to date, skipped", name)
            self.outcome[name] = "skipped"
            return None
        # As `dvc repro` does: outputs go first, so a damaged one is replaced, never merged with.
        self.dvc.remove_outs(name)
        if self._restore(name):
            return None
        if name in self.pools or name.partition("@")[0] in READS_LOCK:
            self.dvc.write_lock()  # what it reads of dvc.lock includes the stages just committed
        if name in self.pools:
            parameters = hand_over(self.dvc, name, self.pools[name])
            timeout = config.load().deploy.worker_timeout_seconds
            return functools.partial(await_worker, self.pools[name], parameters, timeout)
        if self._runs_apart(name):
            log().info("%s: in a process of its own (execution.fit_process)", name)
            return functools.partial(self.run_apart, _command(self.dvc, name))
        return functools.partial(self.run_local, _command(self.dvc, name))

    def _runs_apart(self, name: str) -> bool:
        """Whether ``name`` (its upstream stages done) runs in a process of its own."""
        if self.run_apart is None:
            return False
        if name not in self.apart:
            self.apart[name] = own_process(name)
        return self.apart[name]

    def _exclusive(self, name: str) -> bool:
        """``exclusive``, for a stage that runs in this process: one in a process of its own holds
        nothing here."""
        return not self._runs_apart(name) and exclusive(name)

    def _restore(self, name: str) -> bool:
        if not self.dvc.restore(name, pull=self.pull):
            return False
        log().info("%s: restored from DVC's run-cache", name)
        self._commit(name, "restored")
        return True

    def _finish(self, name: str, future) -> None:
        """Take in a finished stage: commit it, or record its failure. Whatever it raised (a
        refusal, a torch error, a PermissionError, a network error in a restore) is its failure,
        so the stages beside it still finish and are committed."""
        try:
            result = future.result()
        except Exception as err:  # noqa: BLE001 - any error is this stage's failure, said once
            # A local stage of a tracked run is a Prefect subflow: its engine has logged the
            # traceback already ("Encountered exception during execution").
            return self._fail(name, err, traceback_logged=name not in self.pools and in_flow_run())
        try:
            if name in self.pools:
                bring_back(self.dvc, name)
            elif name.startswith("promote@"):
                self.verdicts[name] = _verdict(result)
            self._commit(name, "worker" if name in self.pools else "ran")
        except Exception as err:  # noqa: BLE001 - any error is this stage's failure, said once
            self._fail(name, err)

    def _fail(self, name: str, err: Exception, traceback_logged: bool = False) -> None:
        """Record a stage's refusal or failure as one line; an error that is not cairn's own
        (a bug, an OS or library error) also logs its traceback, once: here, unless the stage's
        own flow run logged it (``traceback_logged``)."""
        if isinstance(err, CairnError):
            message = str(err)
            log().error("%s failed: %s", name, message)
        else:
            first = str(err).strip().splitlines()
            message = f"{type(err).__name__}: {first[0]}" if first else type(err).__name__
            log().error("%s failed: %s", name, message, exc_info=None if traceback_logged else err)
        self.outcome[name] = "failed"
        self.failed.append(f"{name} failed: {message}")
        self.errors.append(err)

    def _leave(self, running: dict) -> None:
        """After a failure, stages on work pools are not waited for: their workers go on and
        push to the run-cache, from which a rerun restores them without running them again."""
        for name in running.values():
            log().warning(
                "%s: still running on work pool '%s'; not waited for after the failure; a rerun "
                "restores it from DVC's run-cache once its worker has pushed it",
                name,
                self.pools[name],
            )
            self.outcome[name] = "left running"

    def _commit(self, name: str, how: str) -> None:
        self.dvc.commit(name)  # the lock is kept as it was, then DVC rewrites it
        self.outcome[name] = how


DONE = ("skipped", "restored", "ran", "worker")
# Stages whose command reads dvc.lock (publish records its upstream entries: flows/publish.py);
# a stage sent to a work pool takes the lock along (workers.hand_over).
READS_LOCK = ("publish",)


def _on_threads(threads: int, job: Callable[[], Any]) -> Any:
    import torch

    torch.set_num_threads(threads)  # this thread's own count: a train stage sets its own
    return job()


def _on_thread(job: Callable[[], Any], name: str, daemon: bool):
    """``job()`` on a thread of its own, as a future.

    A stage on a work pool waits for its worker on a daemon thread: waiting never holds up local
    work, even with jobs=1, and after a failure neither this run nor the process waits for it (up
    to deploy.worker_timeout_seconds). A local stage gets a fresh thread that ends with it, never
    a pooled one: each thread that runs torch keeps an OpenMP team of its own while it lives, and
    once a process has more OpenMP threads than cores libgomp stops spinning at its barriers and
    sleeps, which made a torch fit 2.2 times slower with the teams of two pooled stage threads
    alive (docs/benchmarks.md, "OpenMP teams"). A thread's team ends with the thread.
    """
    import concurrent.futures as cf
    import threading

    future: cf.Future = cf.Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(job())
        except BaseException as err:  # noqa: BLE001 - handed to the coordinator, which decides
            future.set_exception(err)

    threading.Thread(target=work, name=f"stage-{name}", daemon=daemon).start()
    return future


def _verdict(result: dict) -> str:
    """What a champion gate decided: 'promoted', 'rejected' or 'already v<N>'."""
    if not result["new"]:
        return f"already v{result['version']}"
    return "promoted" if result["status"] == "champion" else "rejected"


def _champion_moved(dvc: Dvc, name: str) -> bool:
    """Whether ``name`` is a champion gate whose output no longer holds the registry's champion:
    a promotion or rollback made from another clone sharing the registry, which DVC cannot see.
    The pipeline (what deployments and the schedule run) then runs the gate again, and the
    stages after it (score) follow the champion."""
    kind, _, workload = name.partition("@")
    if kind != "promote":
        return False
    from flows import registry

    stale = registry.stale_serving(workload, Path(dvc.wdir(name)) / "data" / workload / "promote")
    if stale:
        log().info("%s: the registry's champion is not the one in its output; the gate runs again", name)
    return stale


def produced_artifact(outcome: dict[str, str]) -> None:
    """In a tracked run, a table artifact 'pipeline-outputs': every output of the stages this run
    covered with its DVC hash from dvc.lock, what the run did for it, and the git revision, so a
    run in the UI names exactly the data and models it left."""
    from prefect.artifacts import create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    stages = (load_yaml(lockfile.LOCK.read_text()) or {}).get("stages", {})
    revision = git_revision()
    rows = [
        {"stage": name, "done": done, "output": out["path"], "md5": out.get("md5"), "git revision": revision[:12]}
        for name, done in outcome.items()
        for out in stages.get(name, {}).get("outs", [])
    ]
    create_table_artifact(table=rows, key="pipeline-outputs", description=f"outputs at git {revision}")


def run_pipeline(workloads: list[str] | None = None, jobs: int | None = None) -> dict[str, str]:
    """The pipeline flow, tracked when a Prefect API is configured, else as a plain function."""
    if tracked():
        return pipeline(workloads, jobs)
    log().info("pipeline: no Prefect API configured, running untracked")
    return pipeline.fn(workloads, jobs)
