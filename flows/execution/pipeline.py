"""The pipeline flow: DVC's DAG run from Prefect, with DVC still the judge of what is stale.

For each stage in the order `dvc repro` would use: skip it if DVC finds it up to date,
restore it from DVC's run-cache if that has it, else run its command line in this process
(a Prefect subflow, so the UI shows it as its own run) and `dvc commit` it, which writes the
same dvc.lock entry and run-cache entry that `dvc repro` writes. A stage that
``deploy.remote_stages`` sends to a work pool (train on a GPU pool) runs on a worker of that
pool instead and comes back through the run-cache (flows/operations/workers.py).
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator

from prefect import flow

from flows.common import git_revision, log, report, tracked
from flows.execution import lockfile
from flows.execution.files import NoSpace
from flows.execution.stages import STAGES, UsageError, parse, run_stage
from flows.operations.workers import check_ready, remote_stages, send_to_worker
from steps import StepError

COMMAND = ["python", "-m", "flows", "$DVC_STAGE"]


def _command(stage) -> list[str]:
    """The stage's command line as `python -m flows` takes it: its address, as DVC passes it."""
    if shlex.split(stage.cmd) != COMMAND or stage.addressing.split("@")[0] not in STAGES:
        raise UsageError(
            f"pipeline: stage '{stage.addressing}' runs {stage.cmd!r}; expected 'python -m flows \"$DVC_STAGE\"'"
        )
    return [stage.addressing]


def _fetch_run_cache(repo) -> bool:
    """Fetch the run-cache entries (not the data) of the default DVC remote, if there is one, so
    stages that workers reproduced restore here without running. True when there is a remote."""
    if not repo.config["core"].get("remote"):
        return False
    try:
        repo.stage_cache.pull(None)
    except Exception as err:  # an unreachable remote must not stop a local run
        log().warning("pipeline: could not fetch DVC's run-cache from the remote (%s); stages run here", err)
        return False
    return True


def _gate(publish_stage) -> str:
    """Run the champion gate on what ``publish_stage`` published; 'promoted', 'rejected' or
    'already v<N>'."""
    args = parse(_command(publish_stage))[1]
    result = run_stage(["promote", args["workload"], "--split", str(args["split"]), "--publish", str(args["out"])])
    if not result["new"]:
        return f"already v{result['version']}"
    return "promoted" if result["status"] == "champion" else "rejected"


class StageFailed(StepError):
    """A stage of the pipeline refused its input or failed: the stage's one-line error."""


class Busy(StepError):
    """The checkout is locked by another run."""


@contextlib.contextmanager
def checkout_lock(what: str) -> Iterator:
    """The DVC repository of the working directory, locked for the block (after putting back a
    good dvc.lock if a kill broke it), with DVC's writes made atomic. Another run holding the
    lock is a one-line Busy error: runs from deployments queue on the work pool's concurrency
    limit of 1 instead."""
    from dvc.lock import LockError
    from dvc.repo import Repo, lock_repo

    lockfile.recover()
    lockfile.atomic_dvc_writes()
    try:
        with Repo(".") as repo, lock_repo(repo):
            lockfile.snapshot()
            yield repo
    except LockError:
        raise Busy(
            f"{what}: another DVC command or pipeline run holds the lock on this checkout (.dvc/tmp/lock); "
            "wait for it to finish, or run in a separate clone that shares the DVC remote"
        ) from None


def run_name() -> str:
    """A pipeline run's name says what it runs: 'pipeline: iris, loans' or 'pipeline: all workloads'."""
    from prefect.runtime import flow_run

    workloads = flow_run.parameters.get("workloads")
    return f"pipeline: {', '.join(workloads) if workloads else 'all workloads'}"


@flow(name="pipeline", flow_run_name=run_name, persist_result=False)
def pipeline(workloads: list[str] | None = None) -> dict[str, str]:
    """Bring every stage of ``workloads`` (default: all in params.yaml) up to date.

    Then runs the champion gate for each workload. Runs in the repository root (the working
    directory). Returns {stage address: 'skipped' | 'restored' | 'ran' | 'worker'} and, per workload,
    {'promote@<workload>': 'promoted' | 'rejected' | 'already v<N>'}.
    """
    # DVC's repository lock for the whole run: a second run on this checkout is refused
    # (DVC gives up after a few seconds) instead of interleaving its stages with ours.
    with checkout_lock("pipeline") as repo:
        return _run(repo, workloads)


def _run(repo, workloads: list[str] | None) -> dict[str, str]:
    from dvc.repo.reproduce import get_active_graph, plan_repro
    from dvc.stage.cache import RunCacheNotFoundError

    logger = log()
    outcome: dict[str, str] = {}
    pull = _fetch_run_cache(repo)
    graph = get_active_graph(repo.index.graph)
    pools = remote_stages()
    if unknown := sorted(set(pools) - {s.addressing for s in graph}):
        raise UsageError(f"params.yaml: deploy.remote_stages names {unknown}, which dvc.yaml does not define")
    targets = [s for s in graph if workloads is None or s.addressing.split("@")[-1] in workloads]
    if workloads and not targets:
        raise UsageError(f"pipeline: no stages for workloads {workloads} in dvc.yaml")
    for stage in plan_repro(graph, targets):  # before any stage runs: fail early, lose nothing
        if stage.addressing in pools:
            check_ready(repo, stage, pools[stage.addressing])
    for stage in plan_repro(graph, targets):
        name = stage.addressing
        if not stage.changed():
            logger.info("%s: up to date, skipped", name)
            outcome[name] = "skipped"
            continue
        # As `dvc repro` does: outputs go first, so a damaged one is replaced, never merged with.
        stage.remove_outs(ignore_remove=False, force=False)
        try:
            repo.stage_cache.restore(stage, pull=pull)
            restored = True
        except RunCacheNotFoundError:
            restored = False
        # Run outside the except block: a failing stage's error is not chained to the cache miss.
        try:
            if restored:
                logger.info("%s: restored from DVC's run-cache", name)
                outcome[name] = "restored"
            elif name in pools:
                send_to_worker(repo, graph, stage, pools[name])
                outcome[name] = "worker"
            else:
                run_stage(_command(stage))
                outcome[name] = "ran"
        except (StepError, NoSpace) as err:
            message = err.strerror if isinstance(err, NoSpace) else str(err)
            logger.error("%s failed: %s", name, message)
            raise StageFailed(f"{name} failed: {message}") from None
        lockfile.snapshot()  # the lock as it is before DVC rewrites it in place
        repo.commit(name, force=True)
    # The champion gate, after DVC's DAG: it reads the registry, which no stage may depend on.
    for stage in plan_repro(graph, targets):
        if stage.addressing.startswith("publish@"):
            outcome[stage.addressing.replace("publish@", "promote@")] = _gate(stage)
    counts = {
        k: list(outcome.values()).count(k) for k in ("ran", "worker", "restored", "skipped", "promoted", "rejected")
    }
    report("pipeline", "pipeline", counts | {"stages": outcome, "git_revision": git_revision()})
    produced_artifact(outcome)
    if not counts["ran"] and not counts["worker"] and not counts["restored"]:
        logger.info("pipeline: nothing changed in data, code or params; every stage skipped")
    return outcome


def produced_artifact(outcome: dict[str, str]) -> None:
    """In a tracked run, a table artifact 'pipeline-outputs': every output of the stages this run
    covered with its DVC hash from dvc.lock, what the run did for it, and the git revision, so a
    run in the UI names exactly the data and models it left."""
    import yaml
    from prefect.artifacts import create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    stages = (yaml.safe_load(lockfile.LOCK.read_text()) or {}).get("stages", {})
    revision = git_revision()
    rows = [
        {"stage": name, "done": done, "output": out["path"], "md5": out.get("md5"), "git revision": revision[:12]}
        for name, done in outcome.items()
        for out in stages.get(name, {}).get("outs", [])
    ]
    create_table_artifact(table=rows, key="pipeline-outputs", description=f"outputs at git {revision}")


def run_pipeline(workloads: list[str] | None = None) -> dict[str, str]:
    """The pipeline flow, tracked when a Prefect API is configured, else as a plain function."""
    if tracked():
        return pipeline(workloads)
    log().info("pipeline: no Prefect API configured, running untracked")
    return pipeline.fn(workloads)
