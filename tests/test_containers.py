"""cairn in containers (Dockerfile, deploy/): GPU requests rendered as the Docker Engine and the
Kubernetes API would receive them, with no daemon or cluster (fast); then, where a Docker daemon
runs or can be started (root), a stage on a Docker work pool and a fan-out on Dask workers in
containers of cairn:cpu, compared byte for byte with local runs (slow).

The slow tests use an image cairn:cpu whose dependencies match this checkout (label cairn.deps:
a hash of requirements.lock and the Dockerfile; `make image` sets it) and rebuild only its code
layer (seconds). Without such an image they skip, unless CAIRN_CONTAINER_BUILD=1 lets them build
it cold (minutes: see README "Containers")."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from unittest import mock

import conftest
import pytest
import yaml
from conftest import ROOT, api, blobs_csv, free_port, make_repo, only_workloads, project_env, run, tiny_params

IMAGE = "cairn:cpu"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def rendered(base_template: dict, values: dict, configuration: type) -> object:
    """A pool's job configuration for one flow run, as its worker renders it: the base job
    template filled with ``values`` (the pool's variables), prepared for a flow run."""
    from prefect.client.schemas.objects import FlowRun

    job = asyncio.run(configuration.from_template_and_values(base_template, values, client=mock.MagicMock()))
    job.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name="gpu-run"))
    return job


def as_job(manifest: dict) -> tuple[object, dict]:
    """(``manifest`` read by the Kubernetes client's V1Job model, that model written back): a key
    the models do not know is dropped and a wrong type fails, so the two differ or it raises."""
    from kubernetes_asyncio.client import ApiClient

    async def read() -> tuple[object, dict]:
        async with ApiClient() as client:  # no cluster: only the client's own (de)serialiser
            model = client._ApiClient__deserialize(manifest, "V1Job")
            return model, client.sanitize_for_serialization(model)

    return asyncio.run(read())


def test_the_docker_gpu_pool_asks_the_engine_for_nvidia_gpus():
    """deploy/docker-gpu-job-template.json, rendered by prefect-docker and turned by docker-py into
    the body of the Engine API's container create: the HostConfig carries the device request."""
    from docker.models.containers import _create_container_args
    from docker.types import HostConfig
    from prefect_docker.worker import DockerWorker, DockerWorkerJobConfiguration

    template = json.loads((ROOT / "deploy/docker-gpu-job-template.json").read_text())
    job = rendered(template, {"image": "cairn:cuda"}, DockerWorkerJobConfiguration)
    engine = mock.MagicMock(**{"version.return_value": {"Version": "20.10.24"}})
    settings = DockerWorker._build_container_settings(None, engine, job)
    create = _create_container_args(settings | {"version": "1.41"})  # docker-py's own translation
    host = create.pop("host_config")
    assert isinstance(host, HostConfig)
    assert create["image"] == "cairn:cuda"
    assert host["DeviceRequests"] == [
        {"Driver": "nvidia", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]
    assert create["environment"]["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    # The container runs the flow run (Prefect's command), not the image's ENTRYPOINT with that
    # command appended (`python -m flows prefect flow-run execute`).
    assert create["entrypoint"] == [""] and create["command"] == job._base_flow_run_command()


def test_the_kubernetes_gpu_pool_renders_a_valid_job_that_limits_nvidia_gpus():
    """deploy/k8s-gpu-job-template.json, rendered by prefect-kubernetes, is a batch/v1 Job the
    Kubernetes API's models accept whole (every key known, every type right: what the models read
    back serialises to the same manifest) and requests one nvidia.com/gpu."""
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    template = json.loads((ROOT / "deploy/k8s-gpu-job-template.json").read_text())
    job = rendered(template, {"namespace": "ml"}, KubernetesWorkerJobConfiguration)
    manifest = job.job_manifest
    model, back = as_job(manifest)
    # prefect-kubernetes 0.8.0 refuses a template without completions and parallelism in the pod
    # spec (its own default has them there); Kubernetes knows them only in the Job spec, and its
    # models drop them: the one difference allowed.
    expected = copy.deepcopy(manifest)
    pod = expected["spec"]["template"]["spec"]
    assert (pod.pop("completions"), pod.pop("parallelism")) == (1, 1)
    for amounts in pod["containers"][0]["resources"].values():  # quantities: JSON numbers or strings
        amounts.update({name: str(amount) for name, amount in amounts.items()})
    assert back == expected
    container = model.spec.template.spec.containers[0]
    assert container.resources.limits["nvidia.com/gpu"] == container.resources.requests["nvidia.com/gpu"] == "1"
    assert model.spec.template.spec.security_context.run_as_non_root is True
    # The flow run's command replaces the image's ENTRYPOINT (python -m flows), not follows it.
    assert container.command == ["/usr/bin/env"] and container.args == job._base_flow_run_command().split()
    assert model.metadata.namespace == "ml"
    assert {e.name: e.value for e in container.env}["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_the_manifest_check_catches_a_misspelt_key():
    """The check above can fail: a key the Job model does not know is dropped on the way through."""
    manifest = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "i", "resources": {"limit": {"nvidia.com/gpu": 1}}}]}}}}  # fmt: skip
    assert as_job(manifest)[1] != manifest


def test_the_docker_pool_runs_stages_as_the_image_user_with_only_the_repo_and_remote_mounted(tmp_path):
    from prefect_docker.worker import DockerWorkerJobConfiguration

    from flows.runtime.workers import docker_job_template

    template = docker_job_template("cairn:cpu", (str(tmp_path / "origin"),), str(tmp_path / "remote"))
    job = rendered(template, {}, DockerWorkerJobConfiguration)
    assert job.image == "cairn:cpu" and job.image_pull_policy == "Never" and job.auto_remove
    assert job.volumes == [f"{tmp_path}/origin:{tmp_path}/origin:ro", f"{tmp_path}/remote:{tmp_path}/remote"]
    assert job.env["CAIRN_WORKER_REPOS"] == str(tmp_path / "origin")
    assert job.command == "prefect flow-run execute" and job.container_create_kwargs == {"entrypoint": [""]}
    assert "user" not in job.container_create_kwargs  # the image's USER cairn


# --- for real, on a Docker daemon -----------------------------------------------------------------


def deps_hash() -> str:
    """deploy/image.sh's label cairn.deps: what the dependency layers of the image are built from."""
    return hashlib.sha256((ROOT / "requirements.lock").read_bytes() + (ROOT / "Dockerfile").read_bytes()).hexdigest()[
        :16
    ]


def _sh(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    """cairn:cpu with this checkout's dependencies and code, on a running daemon; skips saying why not."""
    opted_in = os.environ.get("CAIRN_CONTAINER_BUILD") == "1"
    if shutil.which("dockerd") is None and not opted_in:
        pytest.skip("no dockerd here (installing docker.io takes a while: set CAIRN_CONTAINER_BUILD=1 to allow it)")
    started = _sh(["deploy/docker-daemon.sh"], timeout=300)
    if started.returncode:
        pytest.skip(f"no Docker daemon: {started.stderr.strip() or started.stdout.strip()}")
    label = _sh(["docker", "image", "inspect", "-f", '{{ index .Config.Labels "cairn.deps" }}', IMAGE]).stdout.strip()
    if label != deps_hash() and not opted_in:
        pytest.skip(
            f"no {IMAGE} built from this requirements.lock and Dockerfile (deps {deps_hash()}, image has "
            f"{label or 'none'}): `make image` first, or CAIRN_CONTAINER_BUILD=1 to build it here (minutes)"
        )
    built = _sh(["deploy/image.sh", IMAGE], timeout=1800)  # the code layer only, when the deps match
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return IMAGE


def containers_of(image: str) -> list[str]:
    return _sh(["docker", "ps", "-aq", "--filter", f"ancestor={image}"]).stdout.split()


def iris_lock(repo: Path) -> dict:
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {name: entry for name, entry in stages.items() if name.endswith("@iris")}


@pytest.mark.slow
def test_train_runs_in_a_container_of_a_docker_pool_and_the_lock_equals_a_local_repro(image, prefect_server, tmp_path):
    """deploy/docker-pool.sh: a Docker work pool and worker; the pipeline sends train@iris there,
    a container of cairn:cpu (user cairn) clones the read-only mounted origin, trains and pushes
    to the mounted DVC remote; the coordinator restores it and ends with a plain local `dvc repro`'s
    dvc.lock. No container is left, and what the container wrote is only in the remote."""
    env = prefect_server | {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
    params = tiny_params()
    params["deploy"]["remote_stages"] = {"train@iris": "docker"}
    origin = make_repo(tmp_path / "origin", params)
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "shared", str(remote)], origin)
    run(["dvc", "remote", "modify", "shared", "shared", "group"], origin)  # the container's user writes too
    run(GIT + ["commit", "-qam", "a shared DVC remote"], origin)
    for name in ("coordinator", "local"):
        run(["git", "clone", "-q", str(origin), str(tmp_path / name)], tmp_path)
    before = set(containers_of(image))

    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([str(ROOT / "deploy/docker-pool.sh"), "docker", str(remote), str(origin)], cwd=ROOT,
                              env=env | {"BIN": str(Path(sys.executable).parent)}, stdout=log,
                              stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.time() + 120
        while (
            "Worker" not in (tmp_path / "worker.log").read_text()
            or "started" not in (tmp_path / "worker.log").read_text()
        ):
            assert worker.poll() is None and time.time() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.5)
        result = run([sys.executable, "-m", "flows", "pipeline", "iris"], tmp_path / "coordinator", env=env)
    finally:
        conftest.stop_worker(worker)
    assert "train@iris: sent to work pool 'docker'" in result.stderr
    assert "train@iris: restored from what the worker pushed" in result.stderr

    run(["dvc", "repro", "promote@iris"], tmp_path / "local")
    assert iris_lock(tmp_path / "coordinator") == iris_lock(tmp_path / "local")
    runs = api(env).post("flow_runs/filter", json={"limit": 50, "offset": 0}).json()
    on_worker = [r for r in runs if r["name"] == "train@iris on a worker"]
    assert [(r["state"]["type"], r["work_pool_name"]) for r in on_worker] == [("COMPLETED", "docker")]
    assert on_worker[0]["infrastructure_pid"], "the Docker worker records the container it ran"
    # The container wrote the run-cache entry as the image's user (uid 1000), through the mount.
    entries = [p for p in (remote / "runs").rglob("*") if p.is_file()]
    assert entries and {p.stat().st_uid for p in entries} == {1000}
    assert set(containers_of(image)) == before  # auto-removed
    start = _seconds(on_worker[0]["start_time"]) - _seconds(on_worker[0]["expected_start_time"])
    print(f"\ncontainer stage start: {start:.1f} s from scheduled to running")


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


@pytest.mark.slow
def test_ingest_fans_out_on_dask_workers_in_containers_with_the_serial_bytes(image, tmp_path):
    """deploy/dask-containers.sh: a scheduler and two workers, each in a cairn:cpu container;
    execution.dask_address pointed there gives the serial runner's ingest bytes."""
    params = only_workloads("blobs")
    params["execution"] = {"batch_mb": 0.0001}  # 100-byte batches: one file each
    repo = make_repo(tmp_path / "repo", params)
    for i in range(3, 6):
        (repo / "data/blobs/raw" / f"part-{i}.csv").write_text(blobs_csv(30, seed=i))
    serial = ingest(repo, "serial")
    port = str(free_port())
    started = _sh(["deploy/dask-containers.sh", "start", port, "2"], timeout=180)
    try:
        assert started.returncode == 0, started.stderr
        address = started.stdout.strip()
        params["execution"] |= {"runner": "dask", "dask_address": address}
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        result_bytes = ingest(repo, "dask")
    finally:
        _sh(["deploy/dask-containers.sh", "stop", port])
    assert address == f"tcp://127.0.0.1:{port}"
    assert result_bytes == serial
    assert not _sh(["docker", "ps", "-aq", "--filter", f"label=cairn.dask={port}"]).stdout.strip()


def ingest(repo: Path, runner: str) -> dict[str, bytes]:
    run(["rm", "-rf", ".cairn/datums", "data/blobs/ingest"], repo)
    result = run(["python", "-m", "flows", "ingest@blobs"], repo, env=project_env(CAIRN_RUNNER=runner))
    assert f"ingest: 5 raw file(s) to compute in 5 batch(es) on {runner}" in result.stderr
    if runner == "dask":
        assert "fan-out on the Dask cluster at tcp://127.0.0.1:" in result.stderr
        assert "(2 worker(s))" in result.stderr
    return {p.name: p.read_bytes() for p in sorted((repo / "data/blobs/ingest").iterdir())}
