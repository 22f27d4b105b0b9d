"""Two stages on worker pools at once (--jobs 2): the longest test of worker pools, in a file
of its own so pytest's two workers (--dist loadfile) can run it beside tests/test_remote.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import api, make_repo, reference_entries, run, stop, tiny_params

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


@pytest.mark.slow
def test_two_stages_on_worker_pools_are_handed_over_at_once_not_one_after_the_other(prefect_server, tmp_path,
                                                                                    request):  # fmt: skip
    """With --jobs 2, train@iris and train@blobs go to the 'pair' pool together: the coordinator
    creates the second worker run while the first is still going, two process workers reproduce
    them, and the coordinator ends with the lock entries of a local `dvc repro` (the shared
    from-scratch build). (Whether the two runs also overlap on the workers depends on how fast a
    worker picks a run up, which a loaded CI machine does not promise: on an idle machine they
    do, bench/remote_pools.py and docs/benchmarks.md.)"""
    env = prefect_server | {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
    params = tiny_params()
    params["workloads"] = {w: params["workloads"][w] for w in ("iris", "blobs")}
    params["score"] = {}
    # A pool of its own ('pair'), apart from test_remote.py's 'gpu'.
    params["deploy"]["remote_stages"] = {"train@iris": "pair", "train@blobs": "pair"}
    origin = make_repo(tmp_path / "origin", params)
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], origin)
    run([sys.executable, "-m", "flows", "deployments"], origin)
    run(GIT + ["add", "prefect.yaml", ".dvc/config"], origin)
    run(GIT + ["commit", "-qm", "a shared DVC remote, deployments"], origin)
    for name in ("worker", "coordinator"):
        run(["git", "clone", "-q", str(origin), str(tmp_path / name)], tmp_path)
    prefect = str(Path(sys.executable).parent / "prefect")
    run([prefect, "work-pool", "create", "pair", "--type", "process"], tmp_path / "worker", env=env)
    run([prefect, "--no-prompt", "deploy", "--name", "pair"], tmp_path / "worker", env=env)
    workers = [
        subprocess.Popen(
            [prefect, "worker", "start", "--pool", "pair", "--name", f"w{i}", "--limit", "1"],
            cwd=tmp_path / "worker",
            env=env,
            stdout=open(tmp_path / f"worker{i}.log", "w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for i in range(2)
    ]
    # Both trains' upstream stages first, so the two are ready, and handed over, at the same
    # moment: otherwise blobs' local stages may still run when iris' worker run has ended.
    run(["dvc", "repro", "split@iris", "split@blobs"], tmp_path / "coordinator")
    try:
        result = run([sys.executable, "-m", "flows", "pipeline", "--jobs", "2"], tmp_path / "coordinator", env=env)
    finally:
        for worker in workers:
            stop(worker)
    assert "train@iris: sent to work pool 'pair'" in result.stderr and "train@blobs: sent" in result.stderr
    pool = api(env).get("deployments/name/stage-on-worker/pair").json()["id"]  # this test's runs only
    body = {"limit": 200, "offset": 0, "deployments": {"id": {"any_": [pool]}}}
    runs = api(env).post("flow_runs/filter", json=body).json()
    assert [r["state"]["type"] for r in runs] == ["COMPLETED"] * 2
    spans = sorted((r["created"], r["end_time"]) for r in runs)
    assert spans[1][0] < spans[0][1], spans  # the second was handed over before the first ended
    ours, local = reference_entries(tmp_path / "coordinator", request)
    stages = ("ingest", "clean", "split", "train", "evaluate", "publish", "promote")
    assert set(ours) == {f"{s}@{w}" for s in stages for w in ("iris", "blobs")}  # no score section here
    assert ours == local
