"""The stage flows by name, and how one stage command line runs, tracked by Prefect or not.

Each stage's module is imported only when that stage runs: a `dvc repro` stage process
then pays for the libraries it uses (torch, scikit-learn) and no others.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from pathlib import Path
from typing import Any

from flows.common import log, tracked

STAGES = ("ingest", "clean", "split", "train", "evaluate", "publish")
ACTIONS = ("promote",)  # flows that run after the stages, outside DVC's DAG
USAGE = (
    "python -m flows {%s} WORKLOAD --INPUT PATH ... --out PATH | python -m flows pipeline [WORKLOAD ...]"
    " | python -m flows registry {list [WORKLOAD] | rollback WORKLOAD [--to N]}"
)


class UsageError(ValueError):
    """A command line that names no known stage or lacks an option."""


def stage_flow(name: str):
    """The Prefect flow of stage ``name`` (flows/<name>.py defines a flow called <name>)."""
    if name not in STAGES + ACTIONS:
        raise UsageError(f"unknown stage {name!r}; expected one of {', '.join(STAGES + ACTIONS)}")
    return getattr(importlib.import_module(f"flows.{name}"), name)


def parse(argv: list[str]) -> tuple[Any, dict[str, Any]]:
    """(flow, keyword arguments) of a stage command line; the options are the flow's parameters."""
    if not argv:
        raise UsageError(f"usage: {USAGE % ','.join(STAGES + ACTIONS)}")
    stage = stage_flow(argv[0])
    cmd = argparse.ArgumentParser(prog=f"python -m flows {argv[0]}", description=stage.fn.__doc__)
    cmd.add_argument("workload")
    for param in list(inspect.signature(stage.fn).parameters)[1:]:
        cmd.add_argument(f"--{param}", type=Path, required=True)
    return stage, vars(cmd.parse_args(argv[1:]))


def run_stage(argv: list[str]) -> Any:
    """Run one stage from its command line (as written in dvc.yaml, without `python -m flows`).

    With a Prefect API configured the stage is a tracked flow run (a subflow inside a tracked
    pipeline); without one it runs as a plain function, so a `dvc repro` stage process never
    pays for starting a temporary Prefect server.
    """
    stage, args = parse(argv)
    if tracked():
        return stage(**args)
    log().info("%s@%s: no Prefect API configured, running untracked", stage.name, args["workload"])
    return stage.fn(**args)
