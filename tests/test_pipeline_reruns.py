"""The pipeline run again on a built repository, in-process and untracked (no Prefect API, as
`make run`): what it skips, what it repairs, the champion gate, warm starts, and a failure in the
middle of a run. (What Prefect records of a run: tests/test_prefect_pipeline.py.)"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from conftest import blobs_csv, make_repo, only_workloads, reference_entries, run

from flows.runtime.pipeline import run_pipeline


@pytest.fixture(autouse=True)
def untracked(monkeypatch):
    """No Prefect API here, whatever this worker ran before: the runs are `make run`'s."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    from flows import tracking

    assert not tracking.tracked()


def test_a_second_run_skips_every_stage_and_imports_no_torch(built_copy):
    """`make run` again with nothing changed: every stage skipped, in a process that never
    imported torch (2.4 s of CPU that deciding how a train stage would run used to cost, for
    each no-op run of the pipeline, the watcher's and a schedule's included)."""
    main = "import sys\nfrom flows.cli import main\nrc = main(['pipeline'])\nprint('torch' in sys.modules)\nexit(rc)"
    result = run([sys.executable, "-c", main], built_copy)
    summary = json.loads(re.search(r"^pipeline: (\{.*\})$", result.stderr, re.M).group(1))
    assert set(summary["stages"].values()) == {"skipped"}, summary  # the champion gates too
    assert result.stdout.strip() == "False", result.stderr[-2000:]


def test_a_damaged_output_is_replaced_not_a_traceback(built_copy):
    repo = built_copy
    damaged = sorted((repo / "data/iris/split/train").glob("*.parquet"))[0]
    good = damaged.read_bytes()
    damaged.write_bytes(b"not parquet any more")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        outcome = run_pipeline(["iris"])  # used to die with ConfirmRemoveError on every run
    assert outcome["split@iris"] == "restored" and outcome["train@iris"] == "skipped"
    assert damaged.read_bytes() == good


def _retrain_iris(repo: Path, seed: int, margin: float) -> dict:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["workloads"]["iris"]["train"]["seed"] = seed
    params["workloads"]["iris"]["promote"]["margin"] = margin
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        return run_pipeline(["iris"])


def test_the_champion_gate_rejects_keeps_and_rolls_back(built_copy):
    from flows import registry
    from flows.service import registry as service_registry

    repo = built_copy
    # A challenger cannot beat the champion by a whole accuracy point: rejected, with the reason.
    served = (repo / "data/iris/promote/model.onnx").read_bytes()
    outcome = _retrain_iris(repo, seed=8, margin=1.0)
    assert outcome["train@iris"] == "ran" and outcome["promote@iris"] == "rejected"
    # What serves, and so what the stages after the gate read, is still the champion's bytes.
    assert (repo / "data/iris/promote/model.onnx").read_bytes() == served
    assert json.loads((repo / "data/iris/promote/champion.json").read_text())["version"] == 1
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        index = registry.read_index("iris")
        assert index["champion"] == 1
        assert index["versions"][1]["status"] == "rejected"
        assert "less than the margin 1" in index["versions"][1]["reason"]
        assert not (repo / "registry/iris/v2/model.onnx").exists()  # the record, not the weights
        # A margin below zero promotes any challenger; rollback brings back the one before.
        assert _retrain_iris(repo, seed=9, margin=-1.0)["promote@iris"] == "promoted"
        assert registry.read_index("iris")["champion"] == 3
        assert json.loads((repo / "data/iris/promote/champion.json").read_text())["version"] == 3
        assert service_registry.rollback("iris")["version"] == 1
        assert registry.read_index("iris")["champion"] == 1
        assert re.search(r"iris +v3 +retired", service_registry.listing("iris"))
        # The rollback rewrote this checkout's copy of what serves: DVC sees it, a run commits it.
        assert (repo / "data/iris/promote/model.onnx").read_bytes() == served
        assert "promote@iris" in run(["dvc", "status", "--json"], repo).stdout
        assert run_pipeline(["iris"])["promote@iris"] == "already v3"
        assert json.loads((repo / "data/iris/promote/champion.json").read_text())["version"] == 1
        assert run(["dvc", "status", "--json"], repo).stdout.strip() == "{}"
        # A commit changes nothing publish writes (its outputs are a function of its inputs), and
        # the gate, run again, knows the model (the registry judges by weights and spec).
        run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"], repo)
        published = {p.name: p.read_bytes() for p in (repo / "data/iris/publish").iterdir()}
        run(["dvc", "repro", "-f", "-s", "publish@iris"], repo)
        assert {p.name: p.read_bytes() for p in (repo / "data/iris/publish").iterdir()} == published
        gate = run(["dvc", "repro", "-f", "-s", "promote@iris"], repo)
        assert "already v3" in gate.stdout + gate.stderr
        assert len(registry.read_index("iris")["versions"]) == 3
        assert json.loads((repo / "data/iris/promote/champion.json").read_text())["version"] == 1


def test_retraining_can_warm_start_from_the_champion(built_copy):
    import hashlib

    from flows import registry

    repo = built_copy
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["workloads"]["iris"]["train"]["warm_start"] = True  # a params switch: train is stale
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        version, folder = registry.champion("iris")
        outcome = run_pipeline(["iris"])
    assert outcome["train@iris"] == "ran"
    spec = json.loads((repo / "data/iris/publish/model.json").read_text())
    weights = (repo / folder / "model.safetensors").read_bytes()
    assert spec["warm_start"] == {"used": True, "reason": "same architecture", "champion": version,
                                  "weights_sha256": hashlib.sha256(weights).hexdigest()}  # fmt: skip


def test_a_failure_lets_running_stages_finish_starts_nothing_after_it_and_a_rerun_does_the_rest(tmp_path, request):
    """Two workloads at once (--jobs 2): blobs' clean refuses its data. What had started is
    committed, nothing downstream of clean@blobs runs, and after the fix a rerun runs only what
    is left; the lock is then that of a clean run."""
    from flows.runtime.pipeline import StageFailed

    repo = make_repo(tmp_path / "repo", only_workloads("blobs", "iris"))
    good = (repo / "data/blobs/raw/part-2.csv").read_text()
    (repo / "data/blobs/raw/part-2.csv").write_text(blobs_csv(60, seed=2, bad={i: "NaN" for i in range(1, 31)}))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        with pytest.raises(StageFailed, match=r"^clean@blobs failed: clean: 31 of 150 rows"):
            run_pipeline(None, 2)
        lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
        assert "ingest@blobs" in lock and not {"clean@blobs", "split@blobs"} & set(lock)
        done_before = set(lock)
        (repo / "data/blobs/raw/part-2.csv").write_text(good)
        outcome = run_pipeline(None, 2)
    kept = done_before - {"ingest@blobs"}  # the fixed raw file: ingest@blobs runs again
    assert {k for k, v in outcome.items() if v == "skipped"} == kept
    stages = ("ingest", "clean", "split", "train", "evaluate", "publish", "promote")
    every = {f"{s}@{w}" for s in stages for w in ("blobs", "iris")}
    assert {k for k, v in outcome.items() if v in ("ran", "promoted")} == (every | {"score@blobs"}) - kept
    ours, clean_run = reference_entries(repo, request)  # a from-scratch `dvc repro` of the same stages
    assert set(ours) == every | {"score@blobs"} and ours == clean_run
