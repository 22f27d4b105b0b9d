"""Safe arrival (#27): a file in a raw folder counts once it is complete (quiet, no writer),
temp names are not data, one upload is one event, a removal is news only if dvc.lock says so."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import api, blobs_csv, free_port, project_env, start_server, stop

from flows.service.deployments import Arrivals, is_temp, open_for_writing


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def arrivals(tmp_path: Path, quiet: float = 3.0) -> tuple[Arrivals, Clock]:
    clock = Clock()
    return Arrivals({tmp_path / "raw": ["iris"]}, quiet, clock=clock), clock


def added(path: Path):
    from watchfiles import Change

    return {(Change.added, str(path))}


def test_temp_names_are_not_data():
    for name in (".part-3.csv.x1", "part-3.csv.tmp", "part-3.csv.part", "~$book.xlsx"):
        assert is_temp(Path("data/iris/raw") / name), name
    assert not is_temp(Path("data/iris/raw/part-3.csv"))


def test_a_file_arrives_after_a_quiet_period_and_many_writes_are_one_arrival(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "raw").mkdir()
    watch, clock = arrivals(tmp_path)
    part = tmp_path / "raw/part-3.csv"
    for second in range(5):  # a slow upload: a write every second
        clock.now = float(second)
        with open(part, "a") as f:
            f.write(f"row {second}\n")
        watch.seen(added(part))
        assert watch.settled() == {}
    (tmp_path / "raw/.part-4.csv.tmp").write_text("half")
    watch.seen(added(tmp_path / "raw/.part-4.csv.tmp"))
    clock.now = 6.0
    assert watch.settled() == {}  # 2 s quiet < 3 s
    clock.now = 7.5
    assert watch.settled() == {"iris": ["raw/part-3.csv added"]}
    clock.now = 20.0
    assert watch.settled() == {}  # once


def test_a_file_whose_size_changes_without_an_event_is_not_yet_arrived(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "raw").mkdir()
    watch, clock = arrivals(tmp_path)
    part = tmp_path / "raw/part-3.csv"
    part.write_text("a,b\n")
    watch.seen(added(part))
    clock.now = 2.5
    part.write_text("a,b\n1,2\n")  # the watcher missed this write; the size says so
    assert watch.settled() == {}
    clock.now = 5.0
    assert watch.settled() == {}
    clock.now = 5.6
    assert watch.settled() == {"iris": ["raw/part-3.csv added"]}


def test_a_file_a_process_holds_open_for_writing_is_found(tmp_path):
    part = tmp_path / "slow.csv"
    with open(part, "w") as f:
        f.write("a")
        f.flush()
        assert open_for_writing({part}) == {part}
    with open(part) as f:  # a reader is not a writer
        assert open_for_writing({part}) == set()


@pytest.mark.slow
def test_a_slow_upload_is_one_event_after_it_ends_and_temp_files_and_unrecorded_removals_none(blobs_repo):
    """The issue's reproduction against a real watcher process and a real secured server: a CSV
    written in two parts with a pause longer than the quiet period is announced once, after its
    last byte; a temp file, written and renamed, is one event; a file that comes and goes before
    DVC ever recorded it is no event."""
    import yaml

    from flows.service.server import server_env

    repo = blobs_repo
    home = repo.parent / "prefect"
    home.mkdir()
    env = project_env(PREFECT_HOME=str(home), **server_env(free_port(), "cairn:test-secret"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["deploy"]["arrival_quiet_seconds"] = 1.0
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    server = start_server(home, env)
    log_file = home / "watch-files.log"
    watcher = None

    def events() -> list[dict]:
        body = {"filter": {"event": {"name": ["cairn.raw.changed"]}}, "limit": 50}
        return api(env).post("events/filter", json=body).json()["events"]

    def logged(text: str, seconds: float = 60) -> None:
        deadline = time.time() + seconds
        while text not in log_file.read_text():
            assert time.time() < deadline, f"{text!r} not in the watcher's log:\n{log_file.read_text()}"
            time.sleep(0.2)

    def wait(check, seconds: float = 30):
        deadline = time.time() + seconds
        while not (found := check()):
            assert time.time() < deadline, f"not seen within {seconds} s: {events()}"
            time.sleep(0.5)
        return found

    try:
        with open(log_file, "w") as log:
            watcher = subprocess.Popen([sys.executable, "-m", "flows", "watch-files"], cwd=repo, env=env,
                                       stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        logged("watching")
        # A file that comes and goes before any run recorded it: not news.
        (repo / "data/blobs/raw/oops.csv").write_text(blobs_csv(9, seed=7))
        time.sleep(0.3)
        (repo / "data/blobs/raw/oops.csv").unlink()
        logged("oops.csv deleted: what dvc.lock records is unchanged; no run")
        text = blobs_csv(30, seed=5)
        # (printf 'first half'; sleep 3; printf 'rest') > part-3.csv: quiet for 3 s, but still open.
        with open(repo / "data/blobs/raw/part-3.csv", "w") as out:  # only the writer keeps it open
            writer = subprocess.Popen(["sh", "-c", 'printf %s "$1"; sleep 3; printf %s "$2"', "sh",
                                       text[:200], text[200:]], stdout=out)  # fmt: skip
        writer.wait()
        finished = time.time()
        logged("event cairn.raw.changed emitted")
        (seen,) = wait(lambda: [e for e in events() if "part-3" in str(e["payload"])])
        assert seen["payload"]["changes"] == ["data/blobs/raw/part-3.csv added"]
        assert seen["resource"]["prefect.resource.id"] == "cairn.workload.blobs"
        occurred = time.mktime(time.strptime(seen["occurred"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert occurred >= int(finished) - 1  # not on the first write

        # Write then rename: the temp name is ignored; the rename is the arrival.
        (repo / "data/blobs/raw/.part-4.csv.tmp").write_text(blobs_csv(30, seed=6))
        (repo / "data/blobs/raw/.part-4.csv.tmp").rename(repo / "data/blobs/raw/part-4.csv")
        logged("part-4.csv added): event")
        wait(lambda: len(events()) == 2)
        time.sleep(2.5)  # two more quiet periods: nothing else comes
        names = sorted(" ".join(e["payload"]["changes"]) for e in events())
        assert names == ["data/blobs/raw/part-3.csv added", "data/blobs/raw/part-4.csv added"], names
    finally:
        if watcher is not None:
            stop(watcher)
        stop(server)
