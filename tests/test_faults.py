"""Faults while operating, tried for real: each ends in a clear state with no half-written
output, and a rerun completes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import blobs_csv, error_line, project_env, run


@pytest.fixture
def tiny_disk(workdir: Path):
    """``workdir``/data on a 256 KiB tmpfs (needs root, as in CI's container)."""
    data = workdir / "data"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(data)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield data
    subprocess.run(["umount", "-l", str(data)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_old_output_survives(workdir: Path, tiny_disk: Path):
    raw = workdir / "raw.csv"
    out = tiny_disk / "blobs/ingest"

    def ingest():
        cmd = [sys.executable, "-m", "flows", "ingest", "blobs", "--raw", str(raw), "--out", str(out)]
        return run(cmd, workdir, env=project_env(), check=False)

    raw.write_text(blobs_csv(50, seed=1))
    assert ingest().returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    raw.write_text(blobs_csv(40_000, seed=2))  # its Parquet does not fit in what is left
    result = ingest()
    assert result.returncode == 74  # EX_IOERR: no space
    assert error_line(result) == (
        f"error: no space left on the device of {out.parent} while writing ingest (the old output, if any, "
        "is untouched); free space and run again"
    )
    assert "Traceback" not in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old output, whole
    assert [p.name for p in out.parent.iterdir()] == ["ingest"]  # no temp folder left behind

    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)  # space freed
    assert ingest().returncode == 0
    assert (out / "raw.parquet").stat().st_size > 100_000


@pytest.fixture
def served(tmp_path: Path):
    """A secured server, the iris deployment (a long training, so a fault lands in it) and a
    process worker: (env, repo, start_worker, restart_server)."""
    from conftest import create_process_pool, free_port, make_repo, only_workloads, start_server, stop

    from flows.service.server import server_env

    env = project_env(PREFECT_HOME=str(tmp_path), **server_env(free_port(), "cairn:test-secret"),
                      PREFECT_WORKER_QUERY_SECONDS="1")  # fmt: skip
    procs = {"server": start_server(tmp_path, env)}
    params = only_workloads("iris")
    params["workloads"]["iris"]["train"] |= {"epochs": 400, "patience": 400}  # about 20 s of training
    repo = make_repo(tmp_path / "repo", params)
    prefect = str(Path(sys.executable).parent / "prefect")
    run([sys.executable, "-m", "flows", "deployments"], repo, env=env)
    create_process_pool(env, "cairn")
    run([prefect, "--no-prompt", "deploy", "--name", "iris"], repo, env=env)

    def start_worker(name: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "w")
        procs[name] = subprocess.Popen([prefect, "worker", "start", "--pool", "cairn"], cwd=repo, env=env,
                                       stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        return procs[name]

    def restart_server(down_seconds: float) -> None:
        stop(procs["server"])
        time.sleep(down_seconds)
        procs["server"] = start_server(tmp_path, env)

    yield env, repo, start_worker, restart_server
    for name, proc in procs.items():
        if proc.poll() is None and name != "server":
            proc.kill()  # the test is over: a worker would wait up to 30 s on its runs' processes
            proc.wait(30)
    stop(procs["server"])


def runs_named(env: dict, prefix: str) -> list[dict]:
    from conftest import api

    found = api(env).post("flow_runs/filter", json={"limit": 200, "sort": "START_TIME_DESC"}).json()
    return [r for r in found if r["name"].startswith(prefix)]


def wait(what: str, check, seconds: float):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if found := check():
            return found
        time.sleep(1)
    pytest.fail(what)


def finished(env: dict, name: str, count: int = 1):
    done = [r for r in runs_named(env, name) if r["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
    return done if len(done) >= count else None


def registry_champion(repo: Path) -> int | None:
    import json

    index = repo / "registry/iris/index.json"
    return json.loads(index.read_text())["champion"] if index.exists() else None


def training(env: dict, seen: set[str] = frozenset()) -> list[dict]:
    """The train@iris runs in progress, less those of ids in ``seen``."""
    return [r for r in runs_named(env, "train@iris") if r["state"]["type"] == "RUNNING" and r["id"] not in seen]


@pytest.mark.slow
def test_a_worker_killed_mid_stage_and_a_server_restart_mid_rerun_end_clear_and_completed(served):
    """Two faults in one deployment's life (one server, deployment and 400-epoch training set up
    for both): a worker killed mid-stage leaves its run Crashed and no half-written output; the
    rerun, on a new worker, has the server stopped under it mid-training for ~10 s, retries
    through, and completes with one champion and nothing left for `dvc status`."""
    env, repo, start_worker, restart_server = served
    prefect = str(Path(sys.executable).parent / "prefect")
    worker = start_worker("worker")
    run([prefect, "deployment", "run", "pipeline/iris"], repo, env=env)
    killed = wait("train@iris never ran", lambda: training(env), 180)
    worker.kill()  # kill -9 of the worker process, mid-stage
    (first,) = wait("the pipeline run never ended", lambda: finished(env, "pipeline: iris"), 300)
    # The flow run's process outlives its worker, but its output went to the worker through a
    # pipe: its next log line meets a closed pipe and it stops, saying so (not left RUNNING).
    assert first["state"]["type"] == "CRASHED", (first["state"]["type"], first["state"].get("message"))
    leftovers = [p for p in (repo / "data/iris").glob(".*") if p.name != ".gitignore"]
    assert not leftovers  # no half-written output

    start_worker("worker-2")
    run([prefect, "deployment", "run", "pipeline/iris"], repo, env=env)
    wait("the rerun's train@iris never ran", lambda: training(env, {r["id"] for r in killed}), 180)
    restart_server(down_seconds=5)  # the server is gone for ~10 s in the middle of training
    done = wait("the rerun never ended", lambda: finished(env, "pipeline: iris", 2), 300)
    assert done[0]["state"]["type"] == "COMPLETED", done[0]["state"]  # the newest: the rerun
    assert registry_champion(repo) == 1  # one champion, not lost, not registered twice
    assert run(["dvc", "status", "--json"], repo).stdout.strip() == "{}"


@pytest.mark.slow
def test_a_dvc_remote_unreachable_for_a_while_is_retried_through(tmp_path: Path, monkeypatch):
    """The coordinator's push of a stage's inputs (what a GPU worker pulls) against a local-folder
    remote whose path is not a folder for ~8 s: retried with backoff, then done."""
    import shutil
    import threading

    from conftest import make_repo, only_workloads
    from dvc.repo import Repo

    from flows.runtime import workers

    repo = make_repo(tmp_path / "repo", only_workloads("blobs"))
    store = tmp_path / "store"
    run(["dvc", "remote", "add", "-d", "store", str(store)], repo)
    run(["dvc", "repro", "split@blobs"], repo)
    aside = tmp_path / "store-aside"
    store.mkdir()
    store.rename(aside)
    store.write_text("not a folder: the remote is unreachable")  # as a mount that is gone

    def come_back():
        time.sleep(8)
        store.unlink()
        aside.rename(store)

    threading.Thread(target=come_back).start()
    monkeypatch.chdir(repo)
    messages = []
    monkeypatch.setattr(workers, "log", lambda: type("L", (), {"warning": lambda *a: messages.append(a[1] % a[2:])})())
    started = time.time()
    with Repo(".") as dvc_repo:
        pushed = workers.with_retries("pushing split@blobs", lambda: dvc_repo.push(targets=["split@blobs"]),
                                     delays=(2, 4, 8, 16))  # fmt: skip
    assert pushed >= 1 and time.time() - started >= 8
    assert messages and messages[0].startswith("pushing split@blobs failed (")
    assert "retrying in 2 s" in messages[0]
    shutil.rmtree(repo / ".dvc/cache")
    run(["dvc", "pull", "split@blobs"], repo)  # what was pushed is all there
