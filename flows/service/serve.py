"""`make serve` as a service: `python -m flows serve | stop | status`.

One supervisor per checkout runs the secured Prefect server (flows/service/prefect_server.py),
writes prefect.yaml and deploys it, then runs a process worker and the file watcher. It holds an
exclusive lock on ``.cairn/serve.lock`` while it lives and writes where it runs to
``.cairn/serve.json``: a second start in the same checkout is refused and says where the first
runs. Its children run in sessions of their own, so a Ctrl-C in the terminal reaches the
supervisor only, which stops them in order (watcher, worker, then the server) within
``deploy.stop_seconds``; a run the worker cannot finish by then is marked Cancelled on the
server. Every child's output is appended to ``.cairn/logs/<name>.log`` (rolled over at
``deploy.log_max_mb``, three old files kept), never truncated.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from flows import config
from flows.service import deployments, server
from steps.errors import Busy, CairnError

STATE = Path(".cairn")
LOCK = STATE / "serve.lock"
INFO = STATE / "serve.json"
LOGS = STATE / "logs"
NOT_RUNNING = 3  # `status`: the LSB code for "not running"


class RotatingLog:
    """Bytes appended to ``path``; past ``max_bytes`` it becomes ``path.1`` (``.2``, ``.3``: older)."""

    def __init__(self, path: Path, max_bytes: int, keep: int = 3) -> None:
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self.lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file: IO[bytes] = open(path, "ab")  # noqa: SIM115 - open for the service's life

    def write(self, data: bytes) -> None:
        with self.lock:
            if self.file.tell() + len(data) > self.max_bytes and self.file.tell() > 0:
                self.file.close()
                for i in range(self.keep - 1, 0, -1):
                    older = self.path.with_name(f"{self.path.name}.{i}")
                    if older.exists():
                        older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
                self.path.replace(self.path.with_name(f"{self.path.name}.1"))
                self.file = open(self.path, "ab")  # noqa: SIM115
            self.file.write(data)
            self.file.flush()

    def line(self, text: str) -> None:
        self.write(f"{datetime.datetime.now().isoformat(timespec='seconds')} {text}\n".encode())


def running() -> dict[str, Any] | None:
    """The running service's record (.cairn/serve.json) if one holds this checkout's lock."""
    if not LOCK.exists():
        return None
    with open(LOCK, "a") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return json.loads(INFO.read_text())
            except (OSError, ValueError):
                return {"pid": "?", "ui": "?", "started": "?"}
        fcntl.flock(probe, fcntl.LOCK_UN)
    return None


def where(info: dict[str, Any]) -> str:
    return f"pid {info['pid']}, UI {info['ui']}, since {info['started']}"


class Service:
    """The supervisor of one `make serve`."""

    def __init__(self, port: int, out: IO[str] = sys.stdout) -> None:
        self.params = config.load()
        self.port, self.out = port, out
        self.stop = threading.Event()
        self.children: dict[str, subprocess.Popen] = {}
        self.max_bytes = int(self.params.deploy.log_max_mb * 2**20)
        self.log = RotatingLog(LOGS / "serve.log", self.max_bytes)
        bin_dir = str(Path(sys.executable).parent)
        self.env = os.environ | server.server_env(
            port, server.auth_string(), extra_origins=self.params.deploy.allowed_origins
        )
        self.env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        self.prefect = str(Path(bin_dir) / "prefect")

    def say(self, text: str) -> None:
        self.log.line(text)
        print(text, file=self.out, flush=True)

    def spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        """``cmd`` in a session of its own (a terminal's Ctrl-C does not reach it), its output
        appended to .cairn/logs/<name>.log."""
        log = RotatingLog(LOGS / f"{name}.log", self.max_bytes)
        log.line(f"--- started by `python -m flows serve` (supervisor pid {os.getpid()}): {' '.join(cmd)}")
        proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip

        def pump() -> None:
            for chunk in iter(proc.stdout.readline, b""):  # type: ignore[union-attr]
                log.write(chunk)

        threading.Thread(target=pump, name=f"log-{name}", daemon=True).start()
        self.children[name] = proc
        self.log.line(f"{name}: pid {proc.pid}")
        return proc

    def setup(self, cmd: list[str]) -> None:
        """A setup command; its output goes to serve.log, its failure stops the service."""
        result = subprocess.run(cmd, env=self.env, capture_output=True)
        self.log.write(result.stdout + result.stderr)
        if result.returncode:
            tail = (result.stdout + result.stderr).decode(errors="replace").strip().splitlines()[-1:]
            raise CairnError(f"serve: `{' '.join(cmd[1:])}` failed: {' '.join(tail)} (see {LOGS / 'serve.log'})")

    def wait_healthy(self, proc: subprocess.Popen) -> None:
        import logging

        import httpx

        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per health check
        url = self.env["PREFECT_API_URL"] + "/health"
        while not self.stop.is_set():
            if proc.poll() is not None:
                raise CairnError(f"serve: the Prefect server exited ({proc.returncode}); see {LOGS / 'server.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            self.stop.wait(0.5)

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A Prefect client of this service's server."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        this_server = {PREFECT_API_URL: self.env["PREFECT_API_URL"],
                       PREFECT_API_AUTH_STRING: self.env["PREFECT_API_AUTH_STRING"]}  # fmt: skip
        # This process's own Prefect settings were read before the server existed.
        with temporary_settings(updates=this_server), get_client(sync_client=True) as client:
            yield client

    def deploy(self) -> None:
        """The work pools through Prefect's client in this process: as `prefect work-pool`
        commands they were three processes and 6-7 s of CPU before the UI was up. The
        deployments of prefect.yaml through `prefect deploy --all`, as a user would."""
        import httpx
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
        from prefect.workers.process import ProcessWorker

        pool = self.params.deploy.work_pool
        deployments.write_prefect_yaml()
        template = ProcessWorker.get_default_base_job_template()
        try:
            with self.client() as client:
                # Every deployment of this pool works in this one checkout under DVC's lock: one
                # run at a time, the others wait in the queue (Scheduled) instead of failing on it.
                client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=template,
                                                       concurrency_limit=1), overwrite=True)  # fmt: skip
                for remote in sorted(set(self.params.deploy.remote_stages.values())):
                    try:
                        client.read_work_pool(remote)
                    except ObjectNotFound:
                        client.create_work_pool(WorkPoolCreate(name=remote, type="process", base_job_template=template))
                    self.say(f"work pool '{remote}': start its worker in its own clone: "
                             f"prefect worker start --pool {remote}")  # fmt: skip
        except (httpx.HTTPError, PrefectHTTPStatusError) as err:
            raise CairnError(f"serve: creating the work pools failed: {err}") from None
        self.setup([self.prefect, "--no-prompt", "deploy", "--all"])

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop.set())
        ui = f"http://127.0.0.1:{self.port}"
        INFO.write_text(json.dumps({"pid": os.getpid(), "port": self.port, "ui": ui, "cwd": str(Path.cwd()),
                                    "started": datetime.datetime.now().isoformat(timespec="seconds")}))  # fmt: skip
        self.log.line(f"--- serve: starting on port {self.port} (pid {os.getpid()})")
        try:
            srv = self.spawn("server", [sys.executable, "-m", "flows.service.prefect_server"])
            self.wait_healthy(srv)
            if self.stop.is_set():
                return 0
            self.deploy()
            self.spawn("worker", [self.prefect, "worker", "start", "--pool", self.params.deploy.work_pool])
            self.spawn("watch-files", [sys.executable, "-m", "flows", "watch-files"])
            others = ", ".join(o for o in server.origins(self.port, self.params.deploy.allowed_origins)[2:])
            self.say(f"Prefect UI: {ui}  (or http://localhost:{self.port}{', ' + others if others else ''})")
            self.say(f"Log in with the auth string in {server.AUTH_FILE}. Logs: {LOGS}/. Stop: Ctrl-C or `make stop`.")
            self.say("Other shells, to reach this server:")
            self.say(f'  export PREFECT_API_URL={self.env["PREFECT_API_URL"]} '
                     f'PREFECT_API_AUTH_STRING="$(cat {server.AUTH_FILE})"')  # fmt: skip
            while not self.stop.wait(1):
                if (code := srv.poll()) is not None:
                    self.say(f"serve: the Prefect server exited ({code}); stopping (see {LOGS / 'server.log'})")
                    return 1
                for name, proc in self.children.items():
                    if name != "server" and proc.poll() is not None and not getattr(proc, "reported", False):
                        proc.reported = True  # type: ignore[attr-defined]
                        self.say(f"serve: {name} exited ({proc.returncode}); see {LOGS / (name + '.log')}")
            return 0
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Watcher, worker, then the server, within deploy.stop_seconds in all."""
        started = time.monotonic()
        budget = self.params.deploy.stop_seconds
        self.say("serve: stopping the watcher, the worker, then the server ...")
        self.end("watch-files", budget * 0.1)
        self.end("worker", budget * 0.5)
        # Whether the worker exited in time or was killed, its flow-run processes went with it
        # (its process group): a run still Running or Pending now will never end by itself.
        self.cancel_in_flight()
        self.end("server", max(1.0, budget - (time.monotonic() - started) - 0.5))
        self.say(f"serve: stopped in {time.monotonic() - started:.1f} s")
        INFO.unlink(missing_ok=True)

    def end(self, name: str, seconds: float) -> bool:
        """SIGTERM ``name``'s process group; SIGKILL after ``seconds``. True if it ended in time."""
        proc = self.children.get(name)
        if proc is None or proc.poll() is not None:
            return True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(seconds)
            return True
        except subprocess.TimeoutExpired:
            self.log.line(f"{name}: still running after {seconds:.1f} s: killed")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return False

    def cancel_in_flight(self) -> None:
        """Mark the runs the stopped worker left Running or Pending as Cancelled, saying why: the
        runs of this checkout's work pool and their subflows (the stages of a pipeline run),
        not the runs of pools whose workers run elsewhere."""
        import httpx

        try:
            from prefect.client.schemas.filters import (
                FlowRunFilter,
                FlowRunFilterParentTaskRunId,
                FlowRunFilterState,
                FlowRunFilterStateType,
                WorkPoolFilter,
                WorkPoolFilterName,
            )
            from prefect.states import Cancelled

            state = FlowRunFilterState(type=FlowRunFilterStateType(any_=["RUNNING", "PENDING"]))
            pool = WorkPoolFilter(name=WorkPoolFilterName(any_=[self.params.deploy.work_pool]))
            nested = FlowRunFilter(state=state, parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=False))
            with self.client() as client:
                dead = {run.id: run for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(state=state),
                                                                     work_pool_filter=pool)}  # fmt: skip
                subflows = client.read_flow_runs(flow_run_filter=nested, limit=200)
                while added := [r for r in subflows if r.id not in dead
                                and client.read_task_run(r.parent_task_run_id).flow_run_id in dead]:  # fmt: skip
                    dead |= {r.id: r for r in added}
                for run in dead.values():
                    client.set_flow_run_state(run.id, Cancelled(message="make serve stopped"), force=True)
                    self.say(f"serve: run '{run.name}' was in flight: marked Cancelled")
        except (httpx.HTTPError, OSError, RuntimeError) as err:
            self.log.line(f"serve: could not mark runs in flight Cancelled: {err}")


def serve(port: int) -> int:
    """Run the service in this checkout until Ctrl-C, SIGTERM or `stop`; Busy if one runs here."""
    STATE.mkdir(exist_ok=True)
    lock = open(LOCK, "a")  # noqa: SIM115 - held (locked) for the service's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        info = running() or {"pid": "?", "ui": "?", "started": "?"}
        raise Busy(f"serve: already running in this checkout ({where(info)}); "
                   "`make status` says more, `make stop` stops it") from None  # fmt: skip
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise Busy(f"serve: port {port} on 127.0.0.1 is in use by another program; "
                       "choose another: `python -m flows serve --port N`") from None  # fmt: skip
    return Service(port).run()


def stop() -> int:
    """Stop the service of this checkout (SIGTERM to its supervisor) and wait until it has."""
    info = running()
    if info is None:
        print("serve: not running in this checkout")
        return 0
    os.kill(int(info["pid"]), signal.SIGTERM)
    started = time.monotonic()
    while running() is not None:
        if time.monotonic() - started > config.load().deploy.stop_seconds + 20:
            raise Busy(f"serve: pid {info['pid']} did not stop within {time.monotonic() - started:.0f} s")
        time.sleep(0.2)
    print(f"serve: stopped (pid {info['pid']}, {time.monotonic() - started:.1f} s)")
    return 0


def status() -> int:
    """Say whether the service runs in this checkout, where, and whether its server answers."""
    import httpx

    info = running()
    if info is None:
        print("serve: not running in this checkout (`make serve` starts it)")
        return NOT_RUNNING
    try:
        health = "answers" if httpx.get(f"{info['ui']}/api/health", timeout=3).status_code == 200 else "unhealthy"
    except httpx.HTTPError:
        health = "not answering"
    print(f"serve: running ({where(info)}); server {health}; logs in {LOGS}/")
    return 0
