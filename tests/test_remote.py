"""A stage reproduced by a worker in its own clone, handed back through a DVC remote (a local
folder here, S3 in production): the coordinator restores it from the run-cache, no re-run."""

from __future__ import annotations

import yaml
from conftest import make_repo, project_env, run

from flows.pipeline import pipeline
from flows.remote import run_on_worker

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def test_a_worker_clone_trains_and_the_coordinator_restores_from_the_run_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", project_env()["PATH"])
    coordinator = make_repo(tmp_path / "coordinator")
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], coordinator)
    run(["dvc", "repro", "split@iris"], coordinator)
    run(["dvc", "push"], coordinator)
    run(GIT + ["add", "-A"], coordinator)
    run(GIT + ["commit", "-qm", "iris split, remote"], coordinator)
    rev = run(["git", "rev-parse", "HEAD"], coordinator).stdout.strip()

    assert run_on_worker.fn("train@iris", str(coordinator), rev) == {"stage": "train@iris", "ran": True}

    monkeypatch.chdir(coordinator)
    outcome = pipeline.fn(["iris"])
    assert outcome["train@iris"] == "restored"  # trained once, on the worker
    assert outcome["evaluate@iris"] == outcome["publish@iris"] == "ran"
    assert run(["dvc", "status", "--json", "--with-deps", "publish@iris"], coordinator).stdout.strip() == "{}"
    lock = yaml.safe_load((coordinator / "dvc.lock").read_text())["stages"]
    assert {o["path"] for o in lock["train@iris"]["outs"]} == {
        "data/iris/train/model.safetensors", "data/iris/train/model.json", "data/iris/train/history.csv"}  # fmt: skip
