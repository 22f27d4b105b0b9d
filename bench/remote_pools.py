"""Two stages on worker pools: do they finish in about the max of their times, not the sum?

    python bench/remote_pools.py [--epochs 400]

A real `prefect server` on loopback, a repository with two workloads (iris and blobs, the
tests' tiny data with --epochs of training each), and `deploy.remote_stages` sending both
trains to one process work pool. `python -m flows pipeline --jobs 2` runs it twice, each time
from scratch (a fresh repository, DVC remote and pool): once with ONE worker of the pool
(the two worker runs must take turns: the sum) and once with TWO (at once: the max); each
training uses one thread, so two workers on this 2-core machine stand for two machines. For each,
the durations of the two worker runs as the server recorded them, the span from the first
run's start to the last run's end, and the pipeline's wall time. Untracked work of the
coordinator (ingest, clean, split of both workloads) is done first, by `dvc repro`, so the
span measures the two trains alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import api, free_port, make_repo, project_env, run, start_server, stop, tiny_params  # noqa: E402

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
PREFECT = str(Path(sys.executable).parent / "prefect")


def variant(base: Path, env: dict, workers: int, epochs: int) -> dict:
    """The pipeline with ``workers`` workers of a pool of their own; the worker runs' spans."""
    pool = f"bench{workers}"
    params = tiny_params()
    params["workloads"] = {w: params["workloads"][w] for w in ("iris", "blobs")}
    for workload in params["workloads"].values():
        # One core per training: the two workers here stand for two machines, not two
        # trainings that each want both of this machine's cores.
        workload["train"] |= {"epochs": epochs, "patience": epochs, "threads": 1}
    params["score"] = {}
    params["deploy"]["remote_stages"] = {"train@iris": pool, "train@blobs": pool}
    origin = make_repo(base / "origin", params)
    run(["dvc", "remote", "add", "-d", "shared", str(base / "remote")], origin)
    run([sys.executable, "-m", "flows", "deployments"], origin)
    run(GIT + ["add", "prefect.yaml", ".dvc/config"], origin)
    run(GIT + ["commit", "-qm", "a shared DVC remote, deployments"], origin)
    for name in ("worker", "coordinator"):
        run(["git", "clone", "-q", str(origin), str(base / name)], base)
    run([PREFECT, "work-pool", "create", pool, "--type", "process"], base / "worker", env=env)
    run([PREFECT, "--no-prompt", "deploy", "--name", pool], base / "worker", env=env)
    procs = [
        subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", pool, "--name", f"w{i}", "--limit", "1"],
            cwd=base / "worker",
            env=env,
            stdout=open(base / f"worker{i}.log", "w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for i in range(workers)
    ]
    run(["dvc", "repro", "split@iris", "split@blobs"], base / "coordinator")
    try:
        started = time.perf_counter()
        run([sys.executable, "-m", "flows", "pipeline", "--jobs", "2"], base / "coordinator", env=env)
        wall = time.perf_counter() - started
    finally:
        for proc in procs:
            stop(proc)
    deployment = api(env).get(f"deployments/name/stage-on-worker/{pool}").json()["id"]
    body = {"limit": 10, "offset": 0, "deployments": {"id": {"any_": [deployment]}}}
    spans = [(datetime.fromisoformat(r["start_time"]), datetime.fromisoformat(r["end_time"]), r["parameters"]["stage"])
             for r in api(env).post("flow_runs/filter", json=body).json()]  # fmt: skip
    assert len(spans) == 2, spans
    seconds = {stage: round((end - start).total_seconds(), 1) for start, end, stage in spans}
    span = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    return {"worker runs (s)": seconds, "sum (s)": round(sum(seconds.values()), 1),
            "max (s)": max(seconds.values()), "first start to last end (s)": round(span.total_seconds(), 1),
            "pipeline wall (s)": round(wall, 1)}  # fmt: skip


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--epochs", type=int, default=400, help="training epochs of each of the two stages")
    args = cli.parse_args()
    with tempfile.TemporaryDirectory(prefix="cairn-pools-") as tmp:
        from flows.service.server import server_env

        home = Path(tmp) / "prefect-home"
        home.mkdir()
        env = project_env(PREFECT_HOME=str(home), **server_env(free_port(), "cairn:bench-secret"))
        env |= {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
        server = start_server(home, env)
        try:
            result = {}
            for workers in (1, 2):
                result[f"{workers} worker(s)"] = variant(Path(tmp) / f"w{workers}", env, workers, args.epochs)
                print(json.dumps(result), flush=True)
        finally:
            stop(server)
    two = result["2 worker(s)"]
    result["2 workers: span / max of the two runs"] = round(two["first start to last end (s)"] / two["max (s)"], 2)
    result["2 workers: span / sum of the two runs"] = round(two["first start to last end (s)"] / two["sum (s)"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
