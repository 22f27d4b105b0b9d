"""End to end: the pipeline flow under a real Prefect API, on tiny data: what the server recorded
of the shared build's tracked run (tests/conftest.py: built_run), and failures in tracked runs
under a temporary API."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import api, blobs_csv, free_port, make_repo, only_workloads, project_env, run, start_server, stop

from flows.runtime.pipeline import pipeline


@pytest.fixture(scope="module")
def harness(prefect_server):
    """In-process runs tracked by a real server of the module's own (conftest: its database
    migrated once per test run, secured as `make serve` secures it), through Prefect's settings:
    prefect_test_harness's temporary server migrated an empty database first (30 s here)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    urls = {PREFECT_API_URL: prefect_server["PREFECT_API_URL"],
            PREFECT_API_AUTH_STRING: prefect_server["PREFECT_API_AUTH_STRING"]}  # fmt: skip
    with temporary_settings(updates=urls):
        yield


@pytest.fixture(scope="module")
def recorded(built_run: Path, tmp_path_factory):
    """A secured server on a copy of the database that tracked built_repo's pipeline run (two
    stages at once, all six workloads), and what that run said of each stage: (env, outcome)."""
    from flows.service.server import server_env

    home = tmp_path_factory.mktemp("recorded")
    for db in built_run.glob("prefect.db*"):  # with SQLite's write-ahead log, if one is left
        shutil.copy(db, home / db.name)
    env = project_env(PREFECT_HOME=str(home), **server_env(free_port(), "cairn:test-secret"))
    server = start_server(home, env)
    summary = re.search(r"pipeline: (\{.*\})$", (built_run / "pipeline.log").read_text(), re.MULTILINE)
    yield env, json.loads(summary.group(1))["stages"]
    stop(server)


def test_every_stage_ran_as_its_own_tracked_run(recorded, built_repo: Path):
    env, outcome = recorded
    stages = {k: v for k, v in outcome.items() if not k.startswith("promote@")}
    assert set(stages.values()) == {"ran"} and len(stages) == 37  # 6 stages per workload, score@blobs
    assert {v for k, v in outcome.items() if k.startswith("promote@")} == {"promoted"}  # first models
    client = api(env)
    runs = client.post("flow_runs/filter", json={"limit": 200, "offset": 0}).json()
    by_name = {r["name"]: r for r in runs}
    for stage in outcome:
        assert by_name[stage]["state"]["type"] == "COMPLETED", stage
        assert by_name[stage]["parent_task_run_id"] is not None  # a subflow of the pipeline run
    # Each stage and each workload's champion gate ran as exactly one completed subflow. (Under
    # load a client may retry a flow run's creation; such a duplicate never starts: it is left
    # pending or scheduled, and ran nothing.)
    subflows = [r for r in runs if r["parent_task_run_id"] is not None]
    completed = Counter(r["name"] for r in subflows if r["state"]["type"] == "COMPLETED")
    assert completed == Counter(list(outcome)) and len(outcome) == 37 + 6
    extra = [(r["name"], r["state"]["type"]) for r in subflows if r["state"]["type"] != "COMPLETED"]
    assert all(state in ("PENDING", "SCHEDULED") for _, state in extra), extra
    artifacts = {a["key"]: a for a in client.post("artifacts/filter", json={"limit": 200, "offset": 0}).json()}
    keys = set(artifacts)
    # One key per workload: the UI's history of 'metrics-iris' follows iris alone.
    for workload in ("iris", "blobs", "sales", "loans", "forest", "digits"):
        kinds = ("ingest", "clean", "split", "train", "metrics", "publish", "promote")
        assert {f"{kind}-{workload}" for kind in kinds} <= keys, workload
    assert "pipeline" in keys and "metrics" not in keys
    assert by_name["pipeline: all workloads"]["parent_task_run_id"] is None  # named after what it runs
    assert {"model-card-iris", "model-card-iris-figure", "model-card-digits-loss", "clean-iris-pairplot"} <= keys
    assert {f"registry-{w}" for w in ("iris", "blobs", "sales", "loans", "forest", "digits")} <= keys
    # Figures are in the artifact itself, as PNG data: URLs the UI shows as images on any machine.
    figure = artifacts["model-card-iris-figure"]
    assert figure["type"] == "image" and figure["data"].startswith("data:image/png;base64,iVBORw0KGgo")
    outputs = json.loads(artifacts["pipeline-outputs"]["data"])
    lock = yaml.safe_load((built_repo / "dvc.lock").read_text())["stages"]
    row = next(r for r in outputs if r["stage"] == "train@iris" and r["output"].endswith("model.safetensors"))
    assert row["md5"] == next(o["md5"] for o in lock["train@iris"]["outs"] if o["path"] == row["output"])
    history = artifacts["registry-iris"]
    assert history["type"] == "table"
    (row,) = json.loads(history["data"])
    assert row["version"] == "v1" and row["status"] == "champion" and set(row) >= {"git revision", "data (ingest md5)"}


def test_a_failing_stage_says_what_failed_in_one_line_first(tmp_path, harness):
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from flows.runtime.pipeline import StageFailed

    repo = make_repo(tmp_path / "repo", only_workloads("blobs"))
    (repo / "data/blobs/raw/part-2.csv").write_text(blobs_csv(60, seed=2, bad={i: "NaN" for i in range(1, 31)}))
    expected = "clean: 31 of 150 rows (20.7%) are bad, more than max_quarantined 10.0%; first: row 'part-1.csv:5'"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        with pytest.raises(StageFailed, match=r"^clean@blobs failed: " + re.escape(expected)):
            pipeline(["blobs"])
    with get_client(sync_client=True) as client:
        # The newest runs of these names: the module's other tests ran clean@blobs before.
        from prefect.client.schemas.sorting import FlowRunSort

        runs: dict = {}
        for r in client.read_flow_runs(limit=200, sort=FlowRunSort.START_TIME_DESC):
            runs.setdefault(r.name, r)
        clean, parent = runs["clean@blobs"], runs["pipeline: blobs"]
        assert clean.state.is_failed() and expected in clean.state.message
        assert parent.state.is_failed() and "clean@blobs failed: " + expected in parent.state.message
        for run_, first in ((clean, "clean@blobs failed: " + expected), (parent, "clean@blobs failed: " + expected)):
            for _ in range(40):  # logs reach the API in batches, a moment after the run ends
                logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_.id])))
                errors = [entry.message for entry in sorted(logs, key=lambda e: e.timestamp) if entry.level >= 40]
                if errors:
                    break
                time.sleep(0.5)
            assert errors[0].startswith(first), errors[:2]
            assert not any("During handling of the above" in m or "RunCacheNotFoundError" in m for m in errors)


def _denied(*args, **kwargs):
    raise PermissionError(13, "Permission denied", "data/blobs/split/train.parquet")


def test_an_unexpected_error_in_a_tracked_stage_logs_its_traceback_once(tmp_path, harness):
    """Not a refusal but a library or OS error inside a stage: the stage's run logs its
    traceback (Prefect's engine does), the pipeline run says the one line without repeating it."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    from flows.runtime.pipeline import StageFailed

    repo = make_repo(tmp_path / "repo", only_workloads("blobs"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        mp.setattr("steps.split.deal", _denied)
        with pytest.raises(StageFailed, match=r"^split@blobs failed: PermissionError: \[Errno 13\] Permission denied"):
            pipeline(["blobs"])
    with get_client(sync_client=True) as client:
        runs: dict = {}
        for r in client.read_flow_runs(limit=200, sort=FlowRunSort.START_TIME_DESC):
            runs.setdefault(r.name, r)
        ids = [runs["split@blobs"].id, runs["pipeline: blobs"].id]
        for _ in range(40):  # logs reach the API in batches, a moment after the run ends
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
            stage_said = any(e.flow_run_id == ids[0] and e.level >= 40 for e in logs)
            if stage_said and any(e.flow_run_id == ids[1] and "split@blobs failed" in e.message for e in logs):
                break
            time.sleep(0.5)
    errors = [e for e in logs if e.level >= 40]
    tracebacks = [e for e in errors if "in _denied" in e.message]  # the stage's own frame
    assert len(tracebacks) == 1 and tracebacks[0].flow_run_id == ids[0], [e.message[:300] for e in errors]


def test_a_stage_is_tracked_only_where_a_prefect_setting_names_an_api_and_asks_prefect_only_then(tmp_path):
    """A `dvc repro` stage process asks first whether it is tracked. Where no setting can name an
    API, with other PREFECT_* variables set (a user's PREFECT_HOME, this suite's), it says no
    without importing Prefect: 1.1-1.3 s of CPU per stage process, as much as a tiny ingest's own
    work. A profile that names an API makes it tracked."""
    probe = "import sys\nfrom flows.tracking import tracked\nprint(tracked(), 'prefect' in sys.modules)"
    home = tmp_path / "prefect-home"
    home.mkdir()
    env = project_env(PREFECT_HOME=str(home), PREFECT_LOGGING_LEVEL="DEBUG")
    assert run([sys.executable, "-c", probe], tmp_path, env=env).stdout.split() == ["False", "False"]
    (home / "profiles.toml").write_text(
        'active = "remote"\n[profiles.remote]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n'
    )
    assert run([sys.executable, "-c", probe], tmp_path, env=env).stdout.split() == ["True", "True"]
