"""Fan-out (flows/fanout.py): the runner is a setting that changes the speed, never a
byte of the output; batching caps the number of tasks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from conftest import blobs_csv, make_repo, only_workloads, project_env, run

from flows import fanout


def test_batches_keep_order_cap_the_task_count_and_are_never_empty():
    run_ = fanout.Execution(max_tasks=3, batch_mb=1)
    items = list("abcdefgh")
    cut = fanout.batches(items, [2**19] * len(items), run_)  # 8 half-MB items, 1 MB batches: capped at 3
    assert [x for b in cut for x in b] == items and len(cut) == 3 and all(cut)
    assert fanout.batches(items, [10] * len(items), run_) == [items]  # small items: one batch
    assert fanout.batches([], [], run_) == []


def _square(payload: int) -> int:
    return payload * payload


@pytest.mark.parametrize("runner", fanout.RUNNERS)
def test_fan_out_gives_results_in_input_order_on_every_runner(runner):
    run_ = fanout.Execution(runner=runner, workers=2)
    assert list(fanout.fan_out(_square, iter(range(9)), "square", run_)) == [x * x for x in range(9)]


def test_a_bad_execution_setting_is_one_line_naming_it(tmp_path: Path):
    from conftest import ROOT

    from flows import config

    params = yaml.safe_load((ROOT / "params.yaml").read_text()) | {"execution": {"runner": "spark"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(
        config.BadInput, match=r"params.yaml: execution.runner is 'spark'; input should be 'serial', 'threads'"
    ):
        config.load(tmp_path / "params.yaml")


def ingest_bytes(repo: Path, runner: str, files: int = 5) -> dict[str, bytes]:
    """The ingest output of blobs under ``runner``, from scratch (no datum store)."""
    run(["rm", "-rf", ".cairn/datums", "data/blobs/ingest"], repo)
    result = run(["python", "-m", "flows", "ingest@blobs"], repo, env=project_env(CAIRN_RUNNER=runner))
    assert f"ingest: {files} raw file(s) to compute in {files} batch(es) on {runner}" in result.stderr
    folder = repo / "data/blobs/ingest"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_every_runner_writes_the_same_ingest_bytes_in_several_batches(tmp_path: Path):
    params = only_workloads("blobs")
    params["execution"] = {"batch_mb": 0.0001, "workers": 2}  # 100-byte batches: one file each
    repo = make_repo(tmp_path / "repo", params)
    for i in range(3, 6):
        (repo / "data/blobs/raw" / f"part-{i}.csv").write_text(blobs_csv(30, seed=i))
    outputs = {runner: ingest_bytes(repo, runner) for runner in fanout.RUNNERS}
    assert len(outputs["serial"]) == 7  # 5 partitions + profile.json + read.json
    for runner in ("threads", "processes", "dask"):
        assert outputs[runner] == outputs["serial"], runner


def test_every_runner_scores_the_same_bytes_in_several_batches(blobs_repo: Path):
    """score (#28): the champion scores three inbox files, one batch each, on every runner
    (Dask: a LocalCluster), and every runner writes the serial loop's bytes."""
    params = yaml.safe_load((blobs_repo / "params.yaml").read_text())
    params["execution"] = {"batch_mb": 0.0001, "workers": 2}  # 100-byte batches: one file each
    (blobs_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for i in (2, 3):
        (blobs_repo / "data/blobs/inbox" / f"new-{i}.csv").write_text(blobs_csv(20, seed=10 + i))
    outputs = {}
    for runner in fanout.RUNNERS:
        run(["rm", "-rf", ".cairn/datums/score", "data/blobs/score"], blobs_repo)
        said = run(["python", "-m", "flows", "score@blobs"], blobs_repo, env=project_env(CAIRN_RUNNER=runner))
        assert f"score: 3 inbox file(s) to score in 3 batch(es) on {runner}" in said.stderr, said.stderr
        outputs[runner] = {p.relative_to(blobs_repo).as_posix(): p.read_bytes()
                           for p in sorted((blobs_repo / "data/blobs/score").rglob("*")) if p.is_file()}  # fmt: skip
    assert len(outputs["serial"]) == 5  # 3 partitions, the quarantine, the report
    for runner in ("threads", "processes", "dask"):
        assert outputs[runner] == outputs["serial"], runner


@pytest.mark.slow
def test_ingest_fans_out_on_a_dask_scheduler_and_workers_started_apart(tmp_path: Path):
    """`execution.dask_address`: a `dask scheduler` and two `dask worker` processes on loopback,
    started as an operator would start a cluster (workers with cairn importable), compute the
    same bytes as the serial loop."""
    import subprocess
    import time

    from conftest import free_port, stop

    params = only_workloads("blobs")
    params["execution"] = {"batch_mb": 0.0001}  # one file a batch: two tasks
    repo = make_repo(tmp_path / "repo", params)
    serial = ingest_bytes(repo, "serial", files=2)
    address = f"tcp://127.0.0.1:{free_port()}"
    dask = str(Path(sys.executable).parent / "dask")
    env = project_env(PYTHONPATH=str(repo))
    logs = open(tmp_path / "dask.log", "w")
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                  "--no-dashboard"], env=env, stdout=logs, stderr=subprocess.STDOUT)  # fmt: skip
    workers = subprocess.Popen([dask, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
                               cwd=tmp_path, env=env, stdout=logs, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        params["execution"] = {"batch_mb": 0.0001, "runner": "dask", "dask_address": address}
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(["rm", "-rf", ".cairn/datums", "data/blobs/ingest"], repo)
        deadline = time.time() + 60
        while (tmp_path / "dask.log").read_text().count("Registered to") < 2 and time.time() < deadline:
            time.sleep(0.5)
        result = run(["python", "-m", "flows", "ingest@blobs"], repo)
    finally:
        stop(workers)
        stop(scheduler)
    assert f"fan-out on the Dask cluster at {address} (2 worker(s))" in result.stderr, (
        tmp_path / "dask.log"
    ).read_text()
    folder = repo / "data/blobs/ingest"
    assert {p.name: p.read_bytes() for p in sorted(folder.iterdir())} == serial


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["processes", "dask"])
def test_a_tracked_ingest_fans_out_as_prefect_task_runs(tmp_path: Path, prefect_server, runner: str):
    """Under a Prefect API the batches are task runs of Prefect's ProcessPoolTaskRunner (the
    default runner) or prefect-dask's DaskTaskRunner on a Dask LocalCluster (two worker
    processes), and the bytes are those of the serial loop."""
    from conftest import api

    params = only_workloads("blobs")
    params["execution"] = {"batch_mb": 0.0001, "workers": 2, "runner": runner}
    repo = make_repo(tmp_path / "repo", params)
    serial = ingest_bytes(repo, "serial", files=2)
    run(["rm", "-rf", ".cairn/datums", "data/blobs/ingest"], repo)
    body = {"task_runs": {"name": {"like_": "ingest-batch"}}, "limit": 50}
    before = {t["id"] for t in api(prefect_server).post("task_runs/filter", json=body).json()}
    result = run(["python", "-m", "flows", "ingest@blobs"], repo, env=prefect_server)
    expected = {"processes": "ProcessPoolTaskRunner", "dask": "DaskTaskRunner"}[runner]
    assert f"fan-out on {expected} (2 worker(s))" in result.stdout + result.stderr
    folder = repo / "data/blobs/ingest"
    assert {p.name: p.read_bytes() for p in sorted(folder.iterdir())} == serial
    tasks = [t for t in api(prefect_server).post("task_runs/filter", json=body).json() if t["id"] not in before]
    assert len(tasks) == 2 and {t["state"]["type"] for t in tasks} == {"COMPLETED"}, tasks
