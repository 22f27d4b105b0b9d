"""`python -m flows serve` (make serve) as a service, as a real process (#27): one per checkout,
reachable from localhost and 127.0.0.1 only (CORS and Host), four queued runs complete with a
clean server log, Ctrl-C stops watcher and worker before the server within ~10 s, logs appended."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest
import yaml
from conftest import api, free_port, project_env, run, seed_database

from flows.service.serve import RotatingLog


def test_logs_roll_over_by_size_and_nothing_is_lost(tmp_path):
    path = tmp_path / "server.log"
    path.write_bytes(b"an earlier incident\n")
    log = RotatingLog(path, max_bytes=100)
    for i in range(30):
        log.write(f"line {i:02d} of the log\n".encode())  # 20 bytes each
    kept = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("server.log.*"), reverse=True))
    kept += path.read_bytes()
    assert path.stat().st_size <= 100 and (tmp_path / "server.log.3").exists()
    assert not (tmp_path / "server.log.4").exists()  # three old files kept
    assert kept.endswith(b"".join(f"line {i:02d} of the log\n".encode() for i in range(14, 30)))


@pytest.mark.slow
def test_serve_is_one_service_per_checkout_with_a_clean_log_and_a_clean_ctrl_c(blobs_repo, tmp_path):
    repo = blobs_repo
    port = free_port()
    env = project_env(PREFECT_HOME=str(tmp_path / "prefect"))
    (tmp_path / "prefect").mkdir()
    seed_database(tmp_path / "prefect")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["deploy"]["stop_seconds"] = 2  # a run in flight at Ctrl-C cannot end in time: Cancelled
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".cairn/logs").mkdir(parents=True)
    (repo / ".cairn/logs/server.log").write_text("an earlier incident\n")
    serve_cmd = [sys.executable, "-m", "flows", "serve", "--port", str(port)]
    out = open(tmp_path / "serve.out", "w")  # noqa: SIM115
    # Its own process group, as a shell's foreground job: a Ctrl-C is SIGINT to the whole group.
    serve = subprocess.Popen(serve_cmd, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 240
        while "Prefect UI:" not in (text := (tmp_path / "serve.out").read_text()):
            assert serve.poll() is None and time.time() < deadline, text + (repo / ".cairn/logs/serve.log").read_text()
            time.sleep(1)
        assert len(text.splitlines()) <= 8, text  # quiet: where the UI is and how to log in
        from flows.service.server import server_env

        client_env = env | server_env(port, (repo / ".cairn/prefect-auth").read_text().strip())

        # A second start in the same checkout is refused and says where the first runs.
        second = run(serve_cmd[:-1] + [str(free_port())], repo, env=env, check=False)
        assert second.returncode == 75, second.stderr
        assert f"serve: already running in this checkout (pid {serve.pid}, UI http://127.0.0.1:{port}" in second.stderr
        status = run([sys.executable, "-m", "flows", "status"], repo, env=env)
        assert f"running (pid {serve.pid}" in status.stdout and "server answers" in status.stdout

        # Reachable as people open it: localhost and 127.0.0.1; no other origin, no other Host.
        url = f"http://127.0.0.1:{port}/api"
        for origin in (f"http://localhost:{port}", f"http://127.0.0.1:{port}"):
            asks = {"Origin": origin, "Access-Control-Request-Method": "POST"}
            pre = httpx.options(f"{url}/flows/filter", headers=asks)
            assert pre.headers.get("access-control-allow-origin") == origin
        pre = httpx.options(f"{url}/flows/filter", headers={"Origin": "http://evil.example",
                                                             "Access-Control-Request-Method": "POST"})  # fmt: skip
        assert pre.headers.get("access-control-allow-origin") is None
        assert httpx.get(f"{url}/health", headers={"Host": f"localhost:{port}"}).status_code == 200
        assert httpx.get(f"{url}/health", headers={"Host": "rebound.evil.example"}).status_code == 400

        # Queued runs of one checkout: all complete, one at a time, no "database is locked". (Two
        # show the queue as well as four did, for two fewer flow-run processes of 6-7 s of CPU.)
        client = api(client_env)
        deployment = client.get("deployments/name/pipeline/blobs").json()["id"]
        for _ in range(2):
            assert client.post(f"deployments/{deployment}/create_flow_run", json={}).status_code == 201
        body = {"deployments": {"id": {"any_": [deployment]}}, "limit": 10, "offset": 0}
        deadline = time.time() + 300
        while True:
            runs = client.post("flow_runs/filter", json=body).json()
            states = [r["state"]["type"] for r in runs]
            if states.count("COMPLETED") == 2 or {"FAILED", "CRASHED"} & set(states) or time.time() > deadline:
                break
            time.sleep(2)
        logs = repo / ".cairn/logs"
        assert states == ["COMPLETED"] * 2, (states, (logs / "worker.log").read_text()[-3000:])
        spans = sorted((r["start_time"], r["end_time"]) for r in runs)
        assert spans[0][1] <= spans[1][0], spans  # one after the other
        server_log = (logs / "server.log").read_text()
        assert "database is locked" not in server_log and "Traceback" not in server_log, server_log[-3000:]
        assert not re.search(r"\| ERROR ", server_log), server_log[-3000:]

        # A run in flight at Ctrl-C: a retrain that takes longer than the stop budget.
        params["workloads"]["blobs"]["train"] |= {"epochs": 3000, "patience": 3000}
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        in_flight = client.post(f"deployments/{deployment}/create_flow_run", json={}).json()["id"]
        deadline = time.time() + 120
        while client.get(f"flow_runs/{in_flight}").json()["state"]["type"] != "RUNNING":
            assert time.time() < deadline, client.get(f"flow_runs/{in_flight}").json()["state"]
            time.sleep(0.5)
        time.sleep(3)  # into the pipeline, not still starting

        # Ctrl-C: watcher and worker, then the server, all gone within ~10 s.
        os.killpg(serve.pid, signal.SIGINT)
        started = time.monotonic()
        assert serve.wait(30) == 0
        took = time.monotonic() - started
        assert took < 12, took
        serve_log = (logs / "serve.log").read_text()
        children = dict(re.findall(r"(server|worker|watch-files): pid (\d+)", serve_log))
        assert set(children) == {"server", "worker", "watch-files"}
        for pid in children.values():
            with pytest.raises(ProcessLookupError):
                os.kill(int(pid), 0)
        assert run([sys.executable, "-m", "flows", "status"], repo, env=env, check=False).returncode == 3
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/health", timeout=2)
        assert (logs / "server.log").read_text().startswith("an earlier incident\n")  # appended
        # The run the worker could not finish is Cancelled, with the reason, not left Running.
        with sqlite3.connect(tmp_path / "prefect/prefect.db") as db:
            row = db.execute("SELECT state_type FROM flow_run WHERE id = ?", (in_flight,)).fetchone()
        assert row == ("CANCELLED",), row
        assert "was in flight: marked Cancelled" in serve_log
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
        out.close()


def test_serve_on_a_port_another_program_holds_is_refused_before_anything_starts(workdir):
    """`make serve` where the port is taken: exit 75 and one line naming the port, with nothing
    started (no server, no deployments written)."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = run([sys.executable, "-m", "flows", "serve", "--port", str(port)], workdir, check=False)
    assert result.returncode == 75, result.stderr
    assert f"serve: port {port} on 127.0.0.1 is in use by another program" in result.stderr
    assert not (workdir / "prefect.yaml").exists() and not (workdir / ".cairn/logs").exists()
