"""Stages reproduced on a worker (a GPU pool, say), in its own clone, handed back through DVC's remote.

Coordinator side (`hand_over`, `await_worker`, `bring_back`, called by the pipeline for the stages that
``deploy.remote_stages`` in params.yaml names): push the stage's inputs to the default DVC
remote, start the `stage-on-worker/<pool>` deployment with the git revision and the current
dvc.lock, wait for it, then fetch the run-cache and restore the stage without running it.

Worker side (`run_on_worker`, the flow that deployment runs): clone the project at that
revision, put the coordinator's dvc.lock in place, let DVC pull the stage's inputs
(`dvc repro --pull`), reproduce the one stage, and push its outputs and run-cache entry.
Never two processes in one working copy: DVC's locks key on process and command.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from prefect import flow

from flows import config
from flows.runtime.dvc_repo import Dvc, no_run_cache_entry, transient_errors
from flows.tracking import log, tracked
from steps.errors import WorkerFailed

DEPLOYMENT = "stage-on-worker"


T = TypeVar("T")


# A DVC remote that is briefly unreachable (a network blip, a restarting object store) is
# transient: each transfer is retried with exponential backoff, about two minutes in all.
RETRY_DELAYS = (5, 10, 20, 40, 60)


def with_retries(what: str, attempt: Callable[[], T], delays: tuple[float, ...] = RETRY_DELAYS,
                 also: tuple[type, ...] = ()) -> T:  # fmt: skip
    """``attempt()``, retried after each delay while it fails with an error of DVC or the OS (or
    one of ``also``); the last failure is raised. Bad input (any other BadInput) and a run-cache
    that has no entry are answers, not faults: raised at once."""
    for delay in (*delays, None):
        try:
            return attempt()
        except also + transient_errors() + (OSError,) as err:
            if delay is None or no_run_cache_entry(err):
                raise
            log().warning("%s failed (%s); retrying in %g s", what, redact(str(err)).splitlines()[0], delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def redact(text: str) -> str:
    """``text`` without the credentials of any URL in it (``https://user:token@host`` ->
    ``https://host``): tokens never reach a log, a flow run's parameters or an error."""
    return re.sub(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", r"\1", text)


def _sh(cmd: list[str], cwd: Path, where: str = "worker") -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise WorkerFailed(redact(f"{where}: {' '.join(cmd)} failed in {cwd}: {result.stderr.strip()[-500:]}"))
    return result.stdout


def _origin(root: Path) -> str | None:
    found = subprocess.run(["git", "remote", "get-url", "origin"], cwd=root, capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def allowed_repos(root: Path | None = None) -> dict[str, str]:
    """{repository a worker may clone, credentials removed: the URL to clone it by}: the worker
    checkout's own ``origin`` (with its credentials) and path, ``deploy.worker_repos`` of its
    params.yaml, and ``$CAIRN_WORKER_REPOS`` (space-separated)."""
    root = (root or Path.cwd()).resolve()
    urls = [str(root), *os.environ.get("CAIRN_WORKER_REPOS", "").split()]
    if (root / config.PARAMS_FILE).exists():
        urls += config.load(root / config.PARAMS_FILE).deploy.worker_repos
    if origin := _origin(root):
        urls.append(origin)
    return {redact(url): url for url in urls}


@flow(name=DEPLOYMENT, flow_run_name="{stage} on a worker", persist_result=False, retries=1)
def run_on_worker(stage: str, repo_url: str, rev: str, lock: str | None = None) -> dict:
    """Reproduce ``stage`` (e.g. 'train@mnist') from ``repo_url`` at ``rev`` in a fresh clone and
    push its outputs and run-cache to the project's default DVC remote. ``lock`` is the
    coordinator's dvc.lock: it names the exact inputs, which may be newer than the commit.
    Only repositories in ``allowed_repos`` are cloned: a run of this deployment cannot make the
    worker fetch and execute code from anywhere else. Retried once: it touches a network (git,
    the remote)."""
    allowed = allowed_repos()
    if redact(repo_url) not in allowed:
        raise WorkerFailed(
            f"worker: refusing to clone {redact(repo_url)!r}: not this worker's origin, checkout, "
            "deploy.worker_repos or $CAIRN_WORKER_REPOS"
        )
    if not re.fullmatch(r"[0-9a-f]{7,40}", rev) or not re.fullmatch(r"[\w-]+@[\w-]+", stage):
        raise WorkerFailed(f"worker: {stage!r} at {rev!r} is not a stage address at a commit hash")
    with tempfile.TemporaryDirectory(prefix="cairn-worker-") as tmp:
        clone = Path(tmp) / "repo"
        _sh(["git", "clone", "--quiet", allowed[redact(repo_url)], str(clone)], Path(tmp))
        _sh(["git", "checkout", "--quiet", rev], clone)
        if lock is not None:
            (clone / "dvc.lock").write_text(lock)
        out = _sh(["dvc", "repro", "--pull", "--single-item", stage], clone)
        ran = f"Running stage '{stage}'" in out
        push = ["dvc", "push", "--run-cache", stage]
        with_retries(f"{stage}: pushing to the DVC remote", lambda: _sh(push, clone), also=(WorkerFailed,))
    log().info("%s: %s on a worker and pushed with its run-cache", stage, "reproduced" if ran else "found up to date")
    return {"stage": stage, "ran": ran}


def _source(root: Path) -> tuple[str, str]:
    """(git URL a worker can clone, without credentials: the worker uses its own; HEAD's
    commit): the `origin` remote if there is one, else this checkout's own path (a worker on
    this machine)."""
    rev = _sh(["git", "rev-parse", "HEAD"], root, "pipeline").strip()
    return redact(_origin(root) or str(root.resolve())), rev


def _text(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def check_ready(dvc: Dvc, stage: str, pool: str) -> None:
    """Refuse early, and say why, what a worker could not reproduce as this checkout would."""
    where = f"pipeline: {stage} goes to work pool '{pool}' (deploy.remote_stages in params.yaml)"
    if not tracked():
        raise WorkerFailed(f"{where}, but no Prefect API is configured (PREFECT_API_URL)")
    if not dvc.has_remote():
        raise WorkerFailed(f"{where}, but there is no default DVC remote to hand data over (`dvc remote add -d`)")
    # The worker runs the committed code and params: uncommitted changes would train something else.
    tracked_deps = ["params.yaml", "dvc.yaml", *dvc.dep_paths(stage)]
    root = Path(dvc.root)
    dirty = _sh(["git", "diff", "--name-only", "HEAD", "--", *tracked_deps], root, "pipeline").split()
    if dirty:
        raise WorkerFailed(f"{where}, but {', '.join(dirty)} differ from the commit a worker would clone; commit first")
    has_origin = subprocess.run(["git", "remote", "get-url", "origin"], cwd=root, capture_output=True).returncode == 0
    if has_origin and not _sh(["git", "branch", "-r", "--contains", "HEAD"], root, "pipeline").strip():
        raise WorkerFailed(f"{where}, but this commit is not on origin, where the worker clones from; git push first")
    if not deployment_exists(f"{DEPLOYMENT}/{pool}"):
        raise WorkerFailed(
            f"{where}, but the Prefect server has no deployment '{DEPLOYMENT}/{pool}'; run "
            f"`python -m flows deployments` and, where the workers are, `prefect deploy --name {pool}`"
        )


def await_worker(pool: str, parameters: dict, timeout: float) -> None:
    """Run ``stage-on-worker/<pool>`` with ``parameters`` and wait up to ``timeout`` seconds for
    it to finish; a run no worker finished in time is cancelled, so it cannot start later."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelled

    stage = parameters["stage"]
    run = run_deployment(f"{DEPLOYMENT}/{pool}", parameters=parameters, timeout=timeout, poll_interval=2)
    if not run.state.is_final():
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelled(message=f"no worker finished it in {timeout:g} s"), force=True)
        raise WorkerFailed(
            f"pipeline: {stage} waited {timeout:g} s for work pool '{pool}' and cancelled its run, still "
            f"{run.state.name}; is a worker of that pool running? (deploy.worker_timeout_seconds in params.yaml)"
        )
    if not run.state.is_completed():
        raise WorkerFailed(f"pipeline: {stage} on work pool '{pool}' ended {run.state.name}: "
                          f"{run.state.message or 'see the flow run ' + run.name}")  # fmt: skip


def deployment_exists(name: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(name)
        except ObjectNotFound:
            return False
    return True


def hand_over(dvc: Dvc, stage: str, pool: str) -> dict:
    """Push ``stage``'s inputs to the DVC remote; the parameters of its worker run. DVC calls:
    the pipeline's coordinator thread makes them, never a thread that waits for a worker."""
    root = Path(dvc.root)
    upstream = dvc.upstream(stage)
    if upstream:
        with_retries(f"{stage}: pushing its inputs to the DVC remote", lambda: dvc.push(upstream))
    url, rev = _source(root)
    log().info("%s: sent to work pool '%s' (%s at %s)", stage, pool, url, rev[:12])
    return {"stage": stage, "repo_url": url, "rev": rev, "lock": _text(root / "dvc.lock")}


def bring_back(dvc: Dvc, stage: str) -> None:
    """Fetch the run-cache a worker pushed and restore ``stage``'s outputs from it."""
    with_retries(f"{stage}: fetching the worker's run-cache", dvc.pull_run_cache)
    if not with_retries(f"{stage}: restoring its outputs", lambda: dvc.restore(stage, pull=True)):
        raise WorkerFailed(
            f"pipeline: the worker reproduced {stage}, but DVC's run-cache has no entry for this "
            "checkout's inputs; does the worker push to the same DVC remote?"
        )
    log().info("%s: restored from what the worker pushed", stage)


# A Docker work pool: the same `stage-on-worker` flow, run by a Docker worker in a container of
# cairn's image (`make image`). The container runs as the image's user, on the host's network
# (the daemon of deploy/docker-daemon.sh has no bridge; the Prefect API is on loopback), and sees
# only the folders it is given, at the same paths as on the host: the repositories it may clone
# (read-only) and the DVC remote the project's .dvc/config names. Its clone lives in the
# container, which is removed when the run ends: the host keeps only what `dvc push` wrote.
IMAGE = "cairn:cpu"


def docker_job_template(image: str = IMAGE, repos: tuple[str, ...] = (), remote: str | None = None) -> dict:
    """prefect-docker's base job template for a pool whose containers reproduce cairn stages:
    ``image`` (local, never pulled), removed after the run, host network, ``repos`` mounted
    read-only and ``remote`` read-write at their host paths, ``$CAIRN_WORKER_REPOS`` naming the
    repos. The image's ENTRYPOINT (`python -m flows`) is cleared: the worker's command is
    Prefect's `prefect flow-run execute`."""
    from prefect_docker.worker import DockerWorker

    template = DockerWorker.get_default_base_job_template()
    paths = [str(Path(p).resolve()) for p in repos]
    volumes = [f"{p}:{p}:ro" for p in paths]
    if remote:
        volumes.append(f"{Path(remote).resolve()}:{Path(remote).resolve()}")
    defaults = {
        "image": image,
        "image_pull_policy": "Never",
        "auto_remove": True,
        "network_mode": "host",
        "volumes": volumes,
        "env": {"CAIRN_WORKER_REPOS": " ".join(paths), "PREFECT_HOME": "/home/cairn/.prefect"},
        "container_create_kwargs": {"entrypoint": [""]},
    }
    for key, value in defaults.items():
        template["variables"]["properties"][key]["default"] = value
    return template


def create_docker_pool(pool: str, repos: tuple[str, ...], remote: str, image: str = IMAGE) -> None:
    """Create (or update) the Docker work pool ``pool`` (docker_job_template) and its deployment
    `stage-on-worker/<pool>`, whose entrypoint is a module path the image imports from /app."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.deployments.runner import EntrypointType
    from prefect.exceptions import ObjectAlreadyExists

    template = docker_job_template(image, repos, remote)
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="docker", base_job_template=template))
        except ObjectAlreadyExists:
            client.update_work_pool(pool, WorkPoolUpdate(base_job_template=template))
    run_on_worker.to_deployment(name=pool, entrypoint_type=EntrypointType.MODULE_PATH).apply(work_pool_name=pool)
    log().info("work pool '%s' (docker, %s) and deployment %s/%s ready", pool, image, DEPLOYMENT, pool)
