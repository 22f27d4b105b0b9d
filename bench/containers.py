"""What running on containers costs here, against processes (issue #28), in one run:

    python bench/containers.py [--repeats 5]

Needs a Docker daemon this user can start (deploy/docker-daemon.sh) and cairn's image built from
this checkout's requirements.lock (`make image`; the code layer is rebuilt here if it is stale).

1. Start: a Python that imports cairn's worker module, in a `cairn:cpu` container (`docker run
   --rm --network host`) against this venv's Python; interleaved, the median of --repeats each.
2. A stage on a worker: `train@iris` of the tests' tiny iris sent to a process work pool, then to
   a Docker work pool (deploy/docker-pool.sh), each from a fresh repository, DVC remote and pool
   against one real `prefect server`. For each: the worker run's scheduled -> running and running
   -> completed as the server recorded them, and the pipeline's wall time; both end with the same
   dvc.lock entries for iris.
3. The ingest fan-out, 8 CSV partitions of blobs (one per batch): the serial loop, 2 worker
   processes, and 2 Dask workers in containers (deploy/dask-containers.sh); best of --repeats,
   the output bytes compared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import (  # noqa: E402
    api,
    blobs_csv,
    free_port,
    make_repo,
    only_workloads,
    project_env,
    run,
    start_server,
    stop,
)

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
PREFECT = str(Path(sys.executable).parent / "prefect")
IMAGE = "cairn:cpu"


def sh(cmd: list[str], timeout: float = 1800) -> str:
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def starts(repeats: int) -> dict:
    """Seconds to start a Python importing flows.runtime.workers: container vs process."""
    code = "import flows.runtime.workers"
    commands = {
        "container": ["docker", "run", "--rm", "--network", "host", "--entrypoint", "python", IMAGE, "-c", code],
        "process": [sys.executable, "-c", code],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, cmd in commands.items():
            began = time.perf_counter()
            sh(cmd)
            times[name].append(time.perf_counter() - began)
    return {name: {"median_s": round(statistics.median(t), 2), "runs_s": [round(x, 2) for x in t]}
            for name, t in times.items()}  # fmt: skip


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def on_pool(base: Path, env: dict, kind: str) -> dict:
    """The tiny iris pipeline with train@iris sent to a fresh pool of type ``kind``."""
    pool = f"bench-{kind}"
    params = only_workloads("iris")
    params["deploy"]["remote_stages"] = {"train@iris": pool}
    origin = make_repo(base / "origin", params)
    remote = base / "remote"
    run(["dvc", "remote", "add", "-d", "shared", str(remote)], origin)
    if kind == "docker":
        run(["dvc", "remote", "modify", "shared", "shared", "group"], origin)  # the container's user writes too
    run([sys.executable, "-m", "flows", "deployments"], origin)
    run(GIT + ["add", "prefect.yaml", ".dvc/config"], origin)
    run(GIT + ["commit", "-qm", "a shared DVC remote, deployments"], origin)
    for name in ("worker", "coordinator"):
        run(["git", "clone", "-q", str(origin), str(base / name)], base)
    log = open(base / "worker.log", "w")
    if kind == "process":
        run([PREFECT, "work-pool", "create", pool, "--type", "process"], base / "worker", env=env)
        run([PREFECT, "--no-prompt", "deploy", "--name", pool], base / "worker", env=env)
        command = [PREFECT, "worker", "start", "--pool", pool]
        worker = subprocess.Popen(command, cwd=base / "worker", env=env, stdout=log, stderr=subprocess.STDOUT)
    else:
        command = [str(ROOT / "deploy/docker-pool.sh"), pool, str(remote), str(origin)]
        worker = subprocess.Popen(command, cwd=ROOT, env=env | {"BIN": str(Path(sys.executable).parent)}, stdout=log,
                                  stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.time() + 180
        while "started" not in (base / "worker.log").read_text():
            if worker.poll() is not None or time.time() > deadline:
                sys.exit(f"the {kind} worker did not start:\n{(base / 'worker.log').read_text()[-3000:]}")
            time.sleep(0.5)
        run(["dvc", "repro", "split@iris"], base / "coordinator")  # only the stage on the worker is timed
        began = time.perf_counter()
        result = run([sys.executable, "-m", "flows", "pipeline", "iris"], base / "coordinator", env=env)
        wall = time.perf_counter() - began
    finally:
        stop(worker)
    assert f"train@iris: sent to work pool '{pool}'" in result.stderr, result.stderr[-3000:]
    body = {"limit": 50, "offset": 0, "work_pools": {"name": {"any_": [pool]}}}
    runs = api(env).post("flow_runs/filter", json=body).json()
    (on_worker,) = [r for r in runs if r["name"].endswith("on a worker")]
    assert on_worker["state"]["type"] == "COMPLETED", on_worker["state"]
    scheduled, started, ended = (_seconds(on_worker[k]) for k in ("expected_start_time", "start_time", "end_time"))
    lock = yaml.safe_load((base / "coordinator/dvc.lock").read_text())["stages"]
    return {
        "scheduled_to_running_s": round(started - scheduled, 1),
        "running_to_completed_s": round(ended - started, 1),
        "pipeline_wall_s": round(wall, 1),
        "lock": {name: entry for name, entry in lock.items() if name.endswith("@iris")},
    }


def stage_on_workers(base: Path) -> dict:
    from flows.service.server import server_env

    home = base / "prefect"
    home.mkdir()
    env = project_env(PREFECT_HOME=str(home), **server_env(free_port(), "cairn:bench-secret"),
                      PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="1")  # fmt: skip
    server = start_server(home, env)
    try:
        results = {kind: on_pool(base / kind, env, kind) for kind in ("process", "docker")}
    finally:
        stop(server)
    locks = [result.pop("lock") for result in results.values()]
    results["same dvc.lock entries"] = locks[0] == locks[1]
    return results


def fan_out(base: Path, repeats: int) -> dict:
    """ingest@blobs of 8 partitions on the serial loop, 2 processes, 2 Dask workers in containers."""
    params = only_workloads("blobs")
    params["execution"] = {"batch_mb": 0.0001, "workers": 2}  # 100-byte batches: one file each
    repo = make_repo(base / "fanout", params)
    for i in range(3, 9):
        (repo / "data/blobs/raw" / f"part-{i}.csv").write_text(blobs_csv(2000, seed=i))
    port = str(free_port())
    address = sh(["deploy/dask-containers.sh", "start", port, "2"], timeout=300).strip()
    try:
        params["execution"]["dask_address"] = address
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        times: dict[str, list[float]] = {"serial": [], "processes": [], "dask": []}
        outputs: dict[str, dict[str, bytes]] = {}
        for _ in range(repeats):
            for runner in times:
                run(["rm", "-rf", ".cairn/datums", "data/blobs/ingest"], repo)
                began = time.perf_counter()
                run([sys.executable, "-m", "flows", "ingest@blobs"], repo, env=project_env(CAIRN_RUNNER=runner))
                times[runner].append(time.perf_counter() - began)
                outputs[runner] = {p.name: p.read_bytes() for p in sorted((repo / "data/blobs/ingest").iterdir())}
    finally:
        sh(["deploy/dask-containers.sh", "stop", port])
    size = sum(p.stat().st_size for p in (repo / "data/blobs/raw").iterdir())
    return {
        "raw_bytes": size,
        **{runner: {"best_s": round(min(t), 2), "runs_s": [round(x, 2) for x in t]} for runner, t in times.items()},
        "same bytes": outputs["serial"] == outputs["processes"] == outputs["dask"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sh(["deploy/docker-daemon.sh"], timeout=300)
    sh(["deploy/image.sh", IMAGE])  # the code layer of this checkout (seconds when only it changed)
    cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        report = {
            "cpu": cpu,
            "start": starts(args.repeats),
            "stage on a worker": stage_on_workers(base),
            "fan-out": fan_out(base, args.repeats),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
