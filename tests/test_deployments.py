"""Operating cairn: prefect.yaml in step with params.yaml, a deployment run by a real process
worker against a real local Prefect server, and the container files a GPU pool would use."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import ROOT, make_repo, run

from flows.deployments import prefect_yaml


def test_prefect_yaml_is_generated_from_params():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert (ROOT / "prefect.yaml").read_text() == prefect_yaml(params), "run `python -m flows deployments`"
    deployments = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    assert set(params["workloads"]) < set(deployments)
    assert deployments["retrain"]["schedules"] == [{"cron": params["deploy"]["retrain_cron"], "timezone": "UTC"}]
    assert deployments["watch"]["entrypoint"] == "flows/deployments.py:watch"


def test_container_files_ask_for_gpus_and_run_cairns_command_line():
    docker = json.loads((ROOT / "deploy/docker-gpu-job-template.json").read_text())
    request = docker["job_configuration"]["container_create_kwargs"]["device_requests"][0]
    assert request["capabilities"] == [["gpu"]] and request["driver"] == "nvidia"
    k8s = json.loads((ROOT / "deploy/k8s-gpu-job-template.json").read_text())
    container = k8s["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    for template in (docker, k8s):
        assert template["variables"]["properties"]["command"]["default"] == "python -m flows pipeline"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.index("COPY requirements.lock") < dockerfile.index("COPY flows")  # dependencies cached
    assert "\nUSER cairn" in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "flows"]' in dockerfile and (ROOT / "flows/__main__.py").exists()


@pytest.mark.slow
def test_a_deployment_runs_on_a_process_worker(prefect_server, tmp_path):
    server = prefect_server
    repo = make_repo(tmp_path / "repo")
    run([sys.executable, "-m", "flows", "deployments"], repo, env=server)
    prefect = str(Path(sys.executable).parent / "prefect")
    run([prefect, "work-pool", "create", "cairn", "--type", "process"], repo, env=server)
    run([prefect, "--no-prompt", "deploy", "--name", "iris"], repo, env=server)
    run([prefect, "deployment", "run", "pipeline/iris"], repo, env=server)
    # One polling round: the worker takes the scheduled run, executes it, and exits.
    run([prefect, "worker", "start", "--pool", "cairn", "--run-once"], repo, env=server)
    api = server["PREFECT_API_URL"]
    runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 50, "offset": 0, "sort": "START_TIME_ASC"}).json()
    states = {r["name"]: r["state"]["type"] for r in runs}
    assert states["ingest@iris"] == states["publish@iris"] == states["promote@iris"] == "COMPLETED"
    pipeline_runs = [r for r in runs if r["parent_task_run_id"] is None]
    assert [r["state"]["type"] for r in pipeline_runs] == ["COMPLETED"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert {f"{s}@iris" for s in ("ingest", "clean", "split", "train", "evaluate", "publish")} <= set(lock)
    assert (repo / "registry/iris/index.json").exists()


def test_a_second_run_on_a_locked_checkout_is_refused_with_a_clear_message(repro_repo):
    from dvc.repo import Repo, lock_repo

    with Repo(str(repro_repo)) as repo, lock_repo(repo):  # as if another pipeline were running
        result = run([sys.executable, "-m", "flows", "pipeline", "iris"], repro_repo, check=False)
    assert result.returncode == 1
    assert "error: pipeline: another DVC command or pipeline run holds the lock on this checkout" in result.stderr
    assert run(["dvc", "status", "--json"], repro_repo).stdout.strip() == "{}"  # nothing was touched


def test_the_watcher_runs_only_workloads_with_new_raw_data(repro_repo, monkeypatch):
    from flows.deployments import watch

    monkeypatch.chdir(repro_repo)
    assert watch.fn() == {}  # nothing new: nothing runs
    lock = (repro_repo / "dvc.lock").read_text()
    new = repro_repo / "data/blobs/raw/part-3.csv"
    new.write_text((repro_repo / "data/blobs/raw/part-2.csv").read_text())
    try:
        outcome = watch.fn()
        assert outcome["ingest@blobs"] == "ran" and "ingest@iris" not in outcome
    finally:
        new.unlink()  # back to the state other tests share: the old lock, outputs from DVC's cache
        (repro_repo / "dvc.lock").write_text(lock)
        run(["dvc", "checkout", "-q", "--force"], repro_repo)
        assert run(["dvc", "status", "--json"], repro_repo).stdout.strip() == "{}"
