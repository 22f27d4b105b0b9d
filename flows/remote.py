"""A stage reproduced on a worker, in its own clone, handed back through DVC's remote.

The worker clones the project at the coordinator's revision, lets DVC pull the stage's inputs
(`dvc repro --pull`), reproduces the one stage, and pushes its outputs and run-cache entry.
The coordinator's pipeline then fetches the run-cache and restores the stage without running
it, so both end with the same dvc.lock. Never two processes in one working copy: DVC's locks
key on process and command.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from prefect import flow

from flows.common import log
from steps import StepError


class WorkerError(StepError):
    """A command on the worker failed."""


def _sh(cmd: list[str], cwd: Path) -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise WorkerError(f"worker: {' '.join(cmd)} failed in {cwd}: {result.stderr.strip()[-500:]}")
    return result.stdout


@flow(name="stage-on-worker", flow_run_name="{stage} on a worker", persist_result=False, retries=1)
def run_on_worker(stage: str, repo_url: str, rev: str) -> dict:
    """Reproduce ``stage`` (e.g. 'train@mnist') from ``repo_url`` at ``rev`` in a fresh clone and
    push its outputs and run-cache to the project's default DVC remote. Retried once: it
    touches a network (git, the remote)."""
    with tempfile.TemporaryDirectory(prefix="cairn-worker-") as tmp:
        clone = Path(tmp) / "repo"
        _sh(["git", "clone", "--quiet", repo_url, str(clone)], Path(tmp))
        _sh(["git", "checkout", "--quiet", rev], clone)
        out = _sh(["dvc", "repro", "--pull", "--single-item", stage], clone)
        ran = f"Running stage '{stage}'" in out
        _sh(["dvc", "push", "--run-cache", stage], clone)
    log().info("%s: %s on a worker and pushed with its run-cache", stage, "reproduced" if ran else "found up to date")
    return {"stage": stage, "ran": ran}
