"""`python -m flows drift` (make run ends with it): are the outputs the committed bytes, and if
not, which stages differ and what became of the metrics (issue #29)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import yaml
from conftest import run

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def drift(repo: Path) -> str:
    return run([sys.executable, "-m", "flows", "drift"], repo).stdout.strip()


def test_drift_names_the_stages_another_machine_changed_and_the_metric_committed_and_here(built_copy: Path):
    repo = built_copy
    # What the pipeline recorded (data/metrics.json) is committed with the lock, as in cairn's repository.
    recorded = json.loads((repo / "data/metrics.json").read_text())
    assert set(recorded) == {"iris", "blobs", "sales", "loans", "forest", "digits"}
    run(["git", "add", "dvc.lock", "data/metrics.json"], repo)
    run(GIT + ["commit", "-qm", "the lock of this machine and its metrics"], repo)
    stages = len(yaml.safe_load((repo / "dvc.lock").read_text())["stages"])
    assert drift(repo) == f"dvc.lock: all {stages} stages' outputs are the committed bytes"

    # As another CPU would leave it: other weights, so other metrics.
    metrics_file = repo / "data/blobs/evaluate/metrics.json"
    metrics = json.loads(metrics_file.read_text())
    committed_accuracy = metrics["accuracy"]
    assert recorded["blobs"]["metrics"] == metrics
    metrics_file.write_text(json.dumps(metrics | {"accuracy": 0.5}))
    whole = yaml.safe_load((repo / "dvc.lock").read_text())
    for out in whole["stages"]["train@blobs"]["outs"]:
        out["md5"] = hashlib.md5(out["md5"].encode()).hexdigest()
    for out in whole["stages"]["evaluate@blobs"]["outs"]:
        if out["path"] == "data/blobs/evaluate/metrics.json":
            out["md5"] = hashlib.md5(metrics_file.read_bytes()).hexdigest()
    (repo / "dvc.lock").write_text(yaml.safe_dump(whole, sort_keys=False))
    said = (
        f"dvc.lock: 2 of {stages} stages' outputs differ from the committed ones (train@blobs, evaluate@blobs): "
        "this machine computed other bytes (README, 'Same bytes on another machine'); "
        f"blobs accuracy committed {committed_accuracy:.6g}, here 0.5"
    )
    assert drift(repo) == said

    # A fresh clone without a DVC remote has no cache: the committed metrics come from git.
    cache = repo / ".dvc/cache"
    cache.rename(repo / "elsewhere")
    assert drift(repo) == said

    # A lock committed without its record (`dvc repro` alone): DVC's cache, where it has them.
    run(["git", "rm", "-q", "--cached", "data/metrics.json"], repo)
    run(GIT + ["commit", "-qm", "no record"], repo)
    assert drift(repo).endswith(
        "; committed metrics of blobs are neither in data/metrics.json at HEAD nor in the DVC cache "
        "(`dvc pull` brings them)"
    )
    (repo / "elsewhere").rename(cache)
    assert drift(repo) == said


def test_the_record_holds_only_metrics_of_the_bytes_the_lock_names(built_copy: Path, monkeypatch):
    """data/metrics.json holds a workload's metrics only where dvc.lock's hash is of the file they
    came from: a metrics.json changed behind DVC's back does not replace its entry, one not
    checked out keeps it, and a workload whose lock entry names other bytes loses it."""
    from flows.runtime import drift as module

    repo = built_copy
    monkeypatch.chdir(repo)
    before = json.loads((repo / "data/metrics.json").read_text())
    (repo / "data/blobs/evaluate/metrics.json").write_text('{"accuracy": 0.1}')
    (repo / "data/iris/evaluate/metrics.json").unlink()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    for out in lock["stages"]["evaluate@sales"]["outs"]:
        out["md5"] = hashlib.md5(out["md5"].encode()).hexdigest()
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    module.record()
    assert json.loads((repo / "data/metrics.json").read_text()) == {k: v for k, v in before.items() if k != "sales"}


def test_a_clone_with_a_remote_that_holds_the_outputs_restores_them_and_trains_nothing(built_copy, tmp_path):
    """Where this machine would train other bytes, the committed ones come from a DVC remote:
    the pipeline fetches the remote's run-cache and restores each stage with its data, so
    nothing runs and dvc.lock stays as committed (README, 'Same bytes on another machine')."""
    origin = built_copy
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], origin)
    run(["dvc", "push", "-q", "--run-cache"], origin)
    run(["git", "add", "dvc.lock", ".dvc/config"], origin)
    run(GIT + ["commit", "-qm", "outputs on the remote"], origin)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    result = run([sys.executable, "-m", "flows", "pipeline", "blobs"], clone)
    (said,) = [line for line in result.stderr.splitlines() if line.startswith("pipeline: {")]
    outcome = json.loads(said.removeprefix("pipeline: "))["stages"]
    assert {name: how for name, how in outcome.items() if not name.startswith("promote@")} == {
        f"{stage}@blobs": "restored" for stage in ("ingest", "clean", "split", "train", "evaluate", "publish", "score")
    }
    assert run(["git", "status", "--porcelain", "dvc.lock"], clone).stdout == ""
    model = "data/blobs/train/model.safetensors"
    assert (clone / model).read_bytes() == (origin / model).read_bytes()
    assert drift(clone).startswith("dvc.lock: all ")
