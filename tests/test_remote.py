"""A stage reproduced by a worker in its own clone, handed back through a DVC remote (a local
folder here, S3 in production): the coordinator restores it from the run-cache, no re-run.
First the worker flow alone, then the whole round trip through a real Prefect server and real
process workers, two coordinators at once and two trains at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import api, make_repo, project_env, reference_entries, run, stop_worker, tiny_params

from flows.runtime.pipeline import pipeline
from flows.runtime.workers import run_on_worker

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def test_a_worker_clone_trains_and_the_coordinator_restores_from_the_run_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", project_env()["PATH"])
    coordinator = make_repo(tmp_path / "coordinator")
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], coordinator)
    run(["dvc", "repro", "split@iris"], coordinator)
    run(["dvc", "push"], coordinator)
    run(GIT + ["add", "-A"], coordinator)
    run(GIT + ["commit", "-qm", "iris split, remote"], coordinator)
    rev = run(["git", "rev-parse", "HEAD"], coordinator).stdout.strip()

    monkeypatch.setenv("CAIRN_WORKER_REPOS", str(coordinator))  # a worker clones only what it allows
    assert run_on_worker.fn("train@iris", str(coordinator), rev) == {"stage": "train@iris", "ran": True}

    monkeypatch.chdir(coordinator)
    outcome = pipeline.fn(["iris"])
    assert outcome["train@iris"] == "restored"  # trained once, on the worker
    assert outcome["evaluate@iris"] == outcome["publish@iris"] == "ran"
    assert run(["dvc", "status", "--json", "--with-deps", "publish@iris"], coordinator).stdout.strip() == "{}"
    lock = yaml.safe_load((coordinator / "dvc.lock").read_text())["stages"]
    assert {o["path"] for o in lock["train@iris"]["outs"]} == {
        "data/iris/train/model.safetensors", "data/iris/train/model.json", "data/iris/train/history.csv"}  # fmt: skip


@pytest.mark.slow
def test_two_coordinators_hand_trains_to_a_gpu_pool_at_once_and_end_with_the_lock_of_dvc_repro(prefect_server, tmp_path,
                                                                                                request):  # fmt: skip
    """Two coordinators in separate clones sharing one DVC remote send their trains to the 'gpu'
    pool, at the same time: "first" runs iris and blobs with --jobs 2, "second" iris alone. Two
    real process workers in a third clone train. The first hands its two trains over at once
    (the second worker run is created while the first is still going), both coordinators end
    with the dvc.lock entries of a plain local `dvc repro` (the shared from-scratch build), and no
    coordinator trained. (Whether the two runs also overlap on the workers depends on how fast a
    worker picks a run up, which a loaded CI machine does not promise: on an idle machine they
    do, bench/remote_pools.py and docs/benchmarks.md.)"""
    env = prefect_server | {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
    params = tiny_params()
    params["workloads"] = {w: params["workloads"][w] for w in ("iris", "blobs")}
    params["score"] = {}
    params["deploy"]["remote_stages"] = {"train@iris": "gpu", "train@blobs": "gpu"}
    origin = make_repo(tmp_path / "origin", params)
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], origin)
    run([sys.executable, "-m", "flows", "deployments"], origin)
    run(GIT + ["add", "prefect.yaml", ".dvc/config"], origin)
    run(GIT + ["commit", "-qm", "a shared DVC remote, deployments"], origin)
    clones = {name: tmp_path / name for name in ("worker", "first", "second")}
    for path in clones.values():
        run(["git", "clone", "-q", str(origin), str(path)], tmp_path)
    # The first's upstream stages before it starts, so its two trains are ready, and handed over,
    # at the same moment: otherwise blobs' local stages may still run when iris' worker run ended.
    run(["dvc", "repro", "split@iris", "split@blobs"], clones["first"])

    prefect = str(Path(sys.executable).parent / "prefect")
    run([prefect, "work-pool", "create", "gpu", "--type", "process"], clones["worker"], env=env)
    run([prefect, "--no-prompt", "deploy", "--name", "gpu"], clones["worker"], env=env)
    workers = [
        subprocess.Popen(
            [prefect, "worker", "start", "--pool", "gpu", "--name", f"w{i}", "--limit", "1"],
            cwd=clones["worker"],
            env=env,
            stdout=open(tmp_path / f"worker{i}.log", "w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        coordinators = {
            name: subprocess.Popen(
                [sys.executable, "-m", "flows", "pipeline", *args],
                cwd=clones[name],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
            for name, args in (("first", ["--jobs", "2"]), ("second", ["iris"]))
        }
        logs = {name: proc.communicate(timeout=600)[0] for name, proc in coordinators.items()}
    finally:
        for worker in workers:
            stop_worker(worker)
    worker_logs = "\n".join((tmp_path / f"worker{i}.log").read_text()[-2000:] for i in range(2))
    for name, proc in coordinators.items():
        assert proc.returncode == 0, f"{name}:\n{logs[name]}\nworkers:\n{worker_logs}"
    assert "train@iris: sent to work pool 'gpu'" in logs["first"] and "train@blobs: sent" in logs["first"]
    assert (
        "train@iris: sent to work pool 'gpu'" in logs["second"]
        or "train@iris: restored from DVC's run-cache" in logs["second"]
    )

    stages = ("ingest", "clean", "split", "train", "evaluate", "publish", "promote")
    for name, workloads in (("first", ("iris", "blobs")), ("second", ("iris",))):
        ours, local = reference_entries(clones[name], request)  # promote: each clone's own registry
        assert set(ours) == {f"{s}@{w}" for s in stages for w in workloads} and ours == local, name
        promoted = [f"promote@{w}" for w in workloads]
        assert run(["dvc", "status", "--json", *promoted], clones[name]).stdout.strip() == "{}", name

    runs = api(env).post("flow_runs/filter", json={"limit": 200, "offset": 0}).json()
    states = [(r["name"], r["state"]["type"]) for r in runs]
    on_workers = [r for r in runs if r["name"].endswith(" on a worker")]
    assert on_workers and {r["state"]["type"] for r in on_workers} == {"COMPLETED"}, states
    # The worker's `dvc repro` reports its train run too; a coordinator adds none of its own.
    for workload in ("iris", "blobs"):
        sent = [r for r in on_workers if r["name"] == f"train@{workload} on a worker"]
        assert sent and len([s for s in states if s[0] == f"train@{workload}"]) <= len(sent), states
    assert [s for s in states if s[0] == "publish@iris"] == [("publish@iris", "COMPLETED")] * 2
    # The first's two runs: only its lock (a run's parameter) holds blobs' stages, as only it ran them.
    first = sorted(
        (r["created"], r["end_time"]) for r in on_workers if "split@blobs" in (r["parameters"]["lock"] or "")
    )
    assert len(first) == 2 and first[1][0] < first[0][1], first  # the second handed over before the first ended


@pytest.fixture
def gpu_repo(tmp_path) -> Path:
    """A tiny repo whose params send train@iris to a 'gpu' pool."""
    params = tiny_params()
    params["deploy"]["remote_stages"] = {"train@iris": "gpu"}
    return make_repo(tmp_path / "repo", params)


def test_a_pipeline_that_needs_a_worker_but_has_no_prefect_api_stops_before_any_stage(gpu_repo):
    result = run([sys.executable, "-m", "flows", "pipeline", "iris"], gpu_repo, check=False)
    assert result.returncode == 1
    assert (
        "error: pipeline: train@iris goes to work pool 'gpu' (deploy.remote_stages in params.yaml), "
        "but no Prefect API is configured (PREFECT_API_URL)"
    ) in result.stderr
    assert not (gpu_repo / "data/iris/ingest").exists()  # nothing ran


def test_remote_stages_must_name_stages_of_dvc_yaml(gpu_repo):
    params = yaml.safe_load((gpu_repo / "params.yaml").read_text())
    params["deploy"]["remote_stages"] = {"train@irs": "gpu"}
    (gpu_repo / "params.yaml").write_text(yaml.safe_dump(params))
    result = run([sys.executable, "-m", "flows", "pipeline", "iris"], gpu_repo, check=False)
    assert (
        "error: params.yaml: deploy.remote_stages names ['train@irs'], which dvc.yaml does not define" in result.stderr
    )


def test_a_worker_is_sent_only_what_it_can_reproduce(gpu_repo, monkeypatch):
    from dvc.repo import Repo

    from flows.runtime import workers
    from flows.runtime.dvc_repo import Dvc

    monkeypatch.setattr(workers, "tracked", lambda: True)
    run(["dvc", "remote", "add", "-d", "shared", str(gpu_repo.parent / "remote")], gpu_repo)
    with (gpu_repo / "steps/train.py").open("a") as f:
        f.write("# an uncommitted change\n")
    monkeypatch.chdir(gpu_repo)
    with Repo(".") as dvc_repo:
        repo, stage = Dvc(dvc_repo), "train@iris"
        with pytest.raises(
            workers.WorkerFailed, match=r"but steps/train.py differ from the commit a worker would clone; commit first"
        ):
            workers.check_ready(repo, stage, "gpu")
        run(GIT + ["commit", "-qam", "the change"], gpu_repo)
        monkeypatch.setattr(workers, "deployment_exists", lambda name: False)
        with pytest.raises(workers.WorkerFailed, match="no deployment 'stage-on-worker/gpu'; run `python -m flows dep"):
            workers.check_ready(repo, stage, "gpu")
        monkeypatch.setattr(workers, "deployment_exists", lambda name: name == "stage-on-worker/gpu")
        workers.check_ready(repo, stage, "gpu")  # committed, deployed: ready
        run(["git", "init", "-q", "--bare", str(gpu_repo.parent / "origin.git")], gpu_repo)
        run(["git", "remote", "add", "origin", str(gpu_repo.parent / "origin.git")], gpu_repo)
        with pytest.raises(workers.WorkerFailed, match="this commit is not on origin, where the worker clones from"):
            workers.check_ready(repo, stage, "gpu")


@pytest.mark.slow
def test_a_stage_no_worker_takes_is_cancelled_after_the_timeout(prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from flows.runtime import workers

    parameters = {"stage": "train@iris", "repo_url": "/nowhere", "rev": "HEAD", "lock": None}
    server = {PREFECT_API_URL: prefect_server["PREFECT_API_URL"],
              PREFECT_API_AUTH_STRING: prefect_server["PREFECT_API_AUTH_STRING"]}  # fmt: skip
    with temporary_settings(server):
        with get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name="idle", type="process"))
        workers.run_on_worker.to_deployment(name="idle").apply(work_pool_name="idle")
        assert workers.deployment_exists("stage-on-worker/idle")
        expected = r"waited 3 s for work pool 'idle' and cancelled its run, still \w+; is a worker of that pool running"
        with pytest.raises(workers.WorkerFailed, match=expected):
            workers.await_worker("idle", parameters, timeout=3)
        with get_client(sync_client=True) as client:
            runs = [r for r in client.read_flow_runs() if r.parameters.get("repo_url") == "/nowhere"]
    assert [r.state.type.value for r in runs] == ["CANCELLED"]  # it cannot start later, unwatched
