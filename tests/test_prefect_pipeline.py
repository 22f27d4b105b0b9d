"""End to end: the pipeline flow under a real (temporary) Prefect API, on tiny data."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import blobs_csv, built_once, make_repo, only_workloads, run

from flows.runtime.pipeline import pipeline


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def pipeline_repo(tmp_path_factory, harness) -> tuple[Path, dict]:
    """The tiny repo after one pipeline run, and what the run said of each stage: built once per
    test run (should pytest set this module's fixtures up again, the run is not repeated)."""

    def build(repo: Path) -> None:
        make_repo(repo)
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(repo)
            outcome = pipeline(None, 2)  # two stages at once: the lock must still be dvc repro's
        (repo.parent / "pipeline-outcome.json").write_text(json.dumps(outcome))

    repo = built_once(tmp_path_factory, "pipeline", build)
    return repo, json.loads((repo.parent / "pipeline-outcome.json").read_text())


def test_every_stage_ran_as_its_own_tracked_run(pipeline_repo, harness):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentTaskRunId

    _, outcome = pipeline_repo
    stages = {k: v for k, v in outcome.items() if not k.startswith("promote@")}
    assert set(stages.values()) == {"ran"} and len(stages) == 37  # 6 stages per workload, score@blobs
    assert {v for k, v in outcome.items() if k.startswith("promote@")} == {"promoted"}  # first models
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
        by_name = {r.name: r for r in runs}
        for stage in outcome:
            assert by_name[stage].state.is_completed(), stage
            assert by_name[stage].parent_task_run_id is not None  # a subflow of the pipeline run
        subflows = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=False)),
            limit=200,
        )
        # Each stage and each workload's champion gate ran as exactly one completed subflow. (Under
        # load a client may retry a flow run's creation; such a duplicate never starts: it is
        # left pending or scheduled, and ran nothing.)
        completed = Counter(r.name for r in subflows if r.state.is_completed())
        assert completed == Counter(list(outcome)) and len(outcome) == 37 + 6
        extra = [(r.name, r.state.type.value) for r in subflows if not r.state.is_completed()]
        assert all(state in ("PENDING", "SCHEDULED") for _, state in extra), extra
        # (with fastapi >= 0.151 the server refuses this client's null limit and offset: 422)
        keys = {a.key for a in client.read_artifacts(limit=200)}
    # One key per workload: the UI's history of 'metrics-iris' follows iris alone.
    for workload in ("iris", "blobs", "sales", "loans", "forest", "digits"):
        kinds = ("ingest", "clean", "split", "train", "metrics", "publish", "promote")
        assert {f"{kind}-{workload}" for kind in kinds} <= keys, workload
    assert "pipeline" in keys and "metrics" not in keys
    assert by_name["pipeline: all workloads"].parent_task_run_id is None  # named after what it runs
    assert {"model-card-iris", "model-card-iris-figure", "model-card-digits-loss", "clean-iris-pairplot"} <= keys
    assert {f"registry-{w}" for w in ("iris", "blobs", "sales", "loans", "forest", "digits")} <= keys
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts(limit=200)}
    # Figures are in the artifact itself, as PNG data: URLs the UI shows as images on any machine.
    figure = artifacts["model-card-iris-figure"]
    assert figure.type == "image" and figure.data.startswith("data:image/png;base64,iVBORw0KGgo")
    outputs = json.loads(artifacts["pipeline-outputs"].data)
    lock = yaml.safe_load((pipeline_repo[0] / "dvc.lock").read_text())["stages"]
    row = next(r for r in outputs if r["stage"] == "train@iris" and r["output"].endswith("model.safetensors"))
    assert row["md5"] == next(o["md5"] for o in lock["train@iris"]["outs"] if o["path"] == row["output"])
    history = artifacts["registry-iris"]
    assert history.type == "table"
    (row,) = json.loads(history.data)
    assert row["version"] == "v1" and row["status"] == "champion" and set(row) >= {"git revision", "data (ingest md5)"}


def test_a_tracked_pipeline_leaves_the_lock_of_an_untracked_one(pipeline_repo, request):
    """Byte for byte: this run was tracked by Prefect (every stage a subflow), built_repo's was
    not; both ran two stages at once (--jobs 2), in whatever order they finished. (That lock is
    `dvc repro`'s: tests/test_dvc_repro.py.)"""
    repo, _ = pipeline_repo
    # Asked for here, not as an argument: pytest groups the tests that share a session fixture,
    # which would split this module's tests and build pipeline_repo twice.
    built_repo = request.getfixturevalue("built_repo")
    assert (repo / "dvc.lock").read_text() == (built_repo / "dvc.lock").read_text()
    assert run(["dvc", "status", "--json"], repo).stdout.strip() == "{}"


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
