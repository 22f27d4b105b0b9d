"""Operating cairn: prefect.yaml in step with params.yaml, a deployment run by a real process
worker against a real local Prefect server, and the container files a GPU pool would use."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import (
    ROOT,
    api,
    blobs_csv,
    create_process_pool,
    free_port,
    make_repo,
    only_workloads,
    project_env,
    run,
    start_server,
    stop,
    stop_worker,
    tiny_params,
)

from flows import config
from flows.service.deployments import prefect_yaml


def test_prefect_yaml_is_generated_from_params():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert (ROOT / "prefect.yaml").read_text() == prefect_yaml(config.parse(params)), (
        "run `python -m flows deployments`"
    )
    deployments = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    assert set(params["workloads"]) < set(deployments)
    assert deployments["retrain"]["schedules"] == [{"cron": params["deploy"]["retrain_cron"], "timezone": "UTC"}]
    assert deployments["watch"]["entrypoint"] == "flows/service/deployments.py:watch"


def test_container_files_ask_for_gpus_and_run_cairns_command_line():
    docker = json.loads((ROOT / "deploy/docker-gpu-job-template.json").read_text())
    request = docker["job_configuration"]["container_create_kwargs"]["device_requests"][0]
    assert request["capabilities"] == [["gpu"]] and request["driver"] == "nvidia"
    k8s = json.loads((ROOT / "deploy/k8s-gpu-job-template.json").read_text())
    container = k8s["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    for template in (docker, k8s):  # the worker's own command runs the flow run: no default to override it
        assert "default" not in template["variables"]["properties"]["command"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.index("COPY requirements.lock") < dockerfile.index("COPY flows")  # dependencies cached
    assert "\nUSER cairn" in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "flows"]' in dockerfile and (ROOT / "flows/__main__.py").exists()


def test_a_second_run_on_a_locked_checkout_is_refused_with_a_clear_message(built_repo):
    from dvc.repo import Repo, lock_repo

    with Repo(str(built_repo)) as repo, lock_repo(repo):  # as if another pipeline were running
        result = run([sys.executable, "-m", "flows", "pipeline", "iris"], built_repo, check=False)
    assert result.returncode == 75  # EX_TEMPFAIL: the same command later will work
    assert "error: pipeline: another DVC command or pipeline run holds the lock on this checkout" in result.stderr
    assert run(["dvc", "status", "--json"], built_repo).stdout.strip() == "{}"  # nothing was touched


def test_the_watcher_runs_only_workloads_with_new_raw_data(built_copy, monkeypatch):
    from flows.service.deployments import watch

    monkeypatch.chdir(built_copy)
    assert watch.fn() == {}  # nothing new: nothing runs
    (built_copy / "data/blobs/raw/part-3.csv").write_text((built_copy / "data/blobs/raw/part-2.csv").read_text())
    outcome = watch.fn()
    assert outcome["ingest@blobs"] == "ran" and "ingest@iris" not in outcome


def flow_runs(server: dict, deployment_id: str | None = None) -> list[dict]:
    body: dict = {"limit": 200, "offset": 0, "sort": "EXPECTED_START_TIME_ASC"}
    if deployment_id:
        body["deployments"] = {"id": {"any_": [deployment_id]}}
    return api(server).post("flow_runs/filter", json=body).json()


def wait_for(what: str, check, seconds: float, log_file: Path):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if found := check():
            return found
        time.sleep(2)
    pytest.fail(f"{what} within {seconds:g} s; server log:\n{log_file.read_text()[-3000:]}")


# SQLite's immediate SQLITE_BUSY (PrefectHQ/prefect#10188): a Prefect service that starts a
# deferred transaction, reads, then writes (marking a queued run Late) gets "database is locked"
# at once, without waiting out busy_timeout, when another writer committed in between. Prefect
# counts it as retryable and the service marks the run on its next loop: noise, not a fault.
SQLITE_BUSY = "(sqlite3.OperationalError) database is locked"


def server_errors(log: str) -> list[str]:
    """The server log's error records (each with its traceback), less SQLite's transient lock."""
    records = re.split(r"\n(?=\d\d:\d\d:\d\d\.\d+ \| )", log)
    bad = [r for r in records if " ERROR " in r or "Traceback" in r or "bulk DML" in r]
    return [r for r in bad if SQLITE_BUSY not in r]


@pytest.mark.slow
def test_schedules_fire_a_worker_completes_the_run_and_overlapping_runs_queue(tmp_path_factory):
    """The whole scheduled path on a real server, secured as `make serve` secures it: the
    server creates the watcher's runs from its interval schedule, a worker completes one, two
    runs of one checkout wait for each other (pool concurrency 1) instead of failing, and the
    server logs no error meanwhile. A deployment's run on a process worker reproduces the
    workload: each stage a completed subflow, the checkout's dvc.lock and registry written."""
    from flows.service.server import server_env

    home = tmp_path_factory.mktemp("schedule")
    env = project_env(PREFECT_HOME=str(home), **server_env(free_port(), "cairn:test-secret"),
                      PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
                      PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="30")  # fmt: skip
    server = start_server(home, env)
    try:
        params = tiny_params()
        params["workloads"], params["score"] = {"iris": params["workloads"]["iris"]}, {}
        params["deploy"]["watch_seconds"] = 30  # each watcher run is a flow-run process: fewer, less CPU
        repo = make_repo(home / "repo", params)
        prefect = str(Path(sys.executable).parent / "prefect")
        run([sys.executable, "-m", "flows", "deployments"], repo, env=env)
        create_process_pool(env, "cairn", concurrency_limit=1)  # as `make serve` does
        run([prefect, "--no-prompt", "deploy", "--name", "watch", "--name", "iris"], repo, env=env)
        watch = api(env).get("deployments/name/watch/watch").json()["id"]
        scheduled = wait_for("the server scheduled no watcher runs",
                             lambda: [r for r in flow_runs(env, watch) if r["state"]["type"] == "SCHEDULED"],
                             60, home / "server.log")  # fmt: skip
        assert len(scheduled) >= 2

        # Two on-demand runs of the same checkout, queued behind the scheduled watcher run.
        for _ in range(2):
            run([prefect, "deployment", "run", "pipeline/iris"], repo, env=env)
        with open(home / "worker.log", "w") as worker_log:
            worker = subprocess.Popen([prefect, "worker", "start", "--pool", "cairn"], cwd=repo, env=env,
                                      stdout=worker_log, stderr=subprocess.STDOUT)  # fmt: skip
            try:

                def finished():
                    runs = [r for r in flow_runs(env) if r["parent_task_run_id"] is None and r["deployment_id"]]
                    done = [r for r in runs if r["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED")]
                    iris = [r for r in done if r["name"].startswith("pipeline: iris")]
                    return done if len(iris) == 2 and any(r["deployment_id"] == watch for r in done) else None

                done = wait_for("the worker did not finish the runs", finished, 420, home / "worker.log")
            finally:
                stop_worker(worker)
        assert {r["state"]["type"] for r in done} == {"COMPLETED"}, [(r["name"], r["state"]) for r in done]
        spans = sorted((r["start_time"], r["end_time"]) for r in done)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans  # one at a time, none refused
        runs = flow_runs(env)
        assert not [r["name"] for r in runs if r["state"]["type"] in ("FAILED", "CRASHED")]
        completed = {r["name"] for r in runs if r["state"]["type"] == "COMPLETED"}
        assert {f"{stage}@iris" for stage in ("ingest", "train", "publish", "promote")} <= completed
        lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
        assert {f"{s}@iris" for s in ("ingest", "clean", "split", "train", "evaluate", "publish")} <= set(lock)
        assert (repo / "registry/iris/index.json").exists()
        errors = server_errors((home / "server.log").read_text())
        assert not errors, "\n".join(errors)[-3000:]
    finally:
        stop(server)


def test_a_fresh_clone_has_new_raw_data_only_where_files_differ_from_dvc_lock(built_repo, tmp_path, monkeypatch):
    """A clone has no DVC cache, so no outputs: that is not new data. A new partition is."""
    from dvc.repo import Repo

    from flows.runtime.dvc_repo import Dvc
    from flows.service.deployments import new_raw_data

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(built_repo), str(clone)], tmp_path)
    (clone / "dvc.lock").write_text((built_repo / "dvc.lock").read_text())  # as if it were committed
    monkeypatch.chdir(clone)
    with Repo(".") as repo:
        assert new_raw_data(Dvc(repo)) == {}
    (clone / "data/blobs/raw/part-3.csv").write_text((clone / "data/blobs/raw/part-2.csv").read_text())
    with Repo(".") as repo:
        assert list(new_raw_data(Dvc(repo))) == ["blobs"]


@pytest.mark.slow
def test_a_file_landing_in_raw_is_an_event_that_starts_its_workloads_run(tmp_path_factory):
    """watch-files sees a new partition at once and emits cairn.raw.changed; the workload's
    deployment trigger (prefect.yaml) creates its pipeline run, which the UI shows as started by
    that event. On a real server, secured as `make serve` secures it."""
    from flows.service.server import server_env

    home = tmp_path_factory.mktemp("events")
    env = project_env(PREFECT_HOME=str(home), **server_env(free_port(), "cairn:test-secret"))
    server = start_server(home, env)
    watcher = None
    try:
        repo = make_repo(home / "repo", only_workloads("blobs"))
        prefect = str(Path(sys.executable).parent / "prefect")
        run([sys.executable, "-m", "flows", "deployments"], repo, env=env)
        create_process_pool(env, "cairn")
        run([prefect, "--no-prompt", "deploy", "--name", "blobs"], repo, env=env)
        deployment = api(env).get("deployments/name/pipeline/blobs").json()["id"]
        with open(home / "watch-files.log", "w") as log:
            watcher = subprocess.Popen([sys.executable, "-m", "flows", "watch-files"], cwd=repo, env=env,
                                       stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        wait_for("watch-files did not start", lambda: "watching" in (home / "watch-files.log").read_text(), 60,
                 home / "watch-files.log")  # fmt: skip
        assert flow_runs(env, deployment) == []
        (repo / "data/blobs/raw/part-3.csv").write_text(blobs_csv(30, seed=5))

        def event():
            found = api(env).post("events/filter", json={"filter": {"event": {"name": ["cairn.raw.changed"]}}})
            return found.json()["events"]

        (seen,) = wait_for("no cairn.raw.changed event", event, 60, home / "watch-files.log")
        assert seen["resource"]["prefect.resource.id"] == "cairn.workload.blobs"
        assert seen["payload"]["changes"] == ["data/blobs/raw/part-3.csv added"]
        (started,) = wait_for("the trigger created no run", lambda: flow_runs(env, deployment), 60, home / "server.log")
        assert started["parameters"] == {"workloads": ["blobs"]}
        assert started["created_by"]["type"] == "AUTOMATION"  # the UI says what started it
        automations = api(env).post("automations/filter", json={}).json()
        assert [a["name"] for a in automations] == ["blobs: new raw data runs its pipeline"]  # not blobs__automation_1
    finally:
        if watcher is not None:
            stop(watcher)
        stop(server)
