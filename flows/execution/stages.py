"""The stage flows by name, and how one stage command line runs, tracked by Prefect or not.

Each stage's module is imported only when that stage runs: a `dvc repro` stage process
then pays for the libraries it uses (torch, scikit-learn) and no others.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import threading
import time
from pathlib import Path
from typing import Any

from flows.common import check_name, load_params, log, tracked, write_json

STAGES = ("ingest", "clean", "split", "train", "evaluate", "publish", "promote", "score")
USAGE = (
    "python -m flows STAGE@WORKLOAD | python -m flows {%s} WORKLOAD --INPUT PATH ... --out PATH"
    " | python -m flows pipeline [--jobs N] [WORKLOAD ...]"
    " | python -m flows registry {list [WORKLOAD] | rollback WORKLOAD [--to N]}"
)


class UsageError(ValueError):
    """A command line that names no known stage or lacks an option."""


def stage_flow(name: str):
    """The Prefect flow of stage ``name`` (flows/<name>.py defines a flow called <name>)."""
    if name not in STAGES:
        raise UsageError(f"unknown stage {name!r}; expected one of {', '.join(STAGES)}")
    return getattr(importlib.import_module(f"flows.{name}"), name)


def stage_paths(stage: str, workload: str) -> dict[str, Path]:
    """What stage ``stage`` of ``workload`` reads and writes: ``data/<workload>/<stage>``, the
    layout that dvc.yaml declares as deps and outs (tests/test_structure.py keeps the two in
    step). Inputs are named as the stage flow's parameters."""
    data = Path("data") / workload
    inputs = {
        "ingest": {"raw": Path(load_params(workload)["raw"])},
        "clean": {"ingested": data / "ingest"},
        "split": {"clean": data / "clean" / "rows"},
        "train": {"split": data / "split"},
        "evaluate": {"split": data / "split", "train": data / "train"},
        "publish": {"split": data / "split", "train": data / "train", "evaluate": data / "evaluate"},
        "promote": {"split": data / "split", "publish": data / "publish"},
    }
    if stage == "score":  # only for the workloads of params.yaml's `score` section
        from flows.score import inbox_of

        return {"inbox": inbox_of(workload), "model": data / "promote", "out": data / "score"}
    if stage not in inputs:
        raise UsageError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    return inputs[stage] | {"out": data / stage}


def parse(argv: list[str]) -> tuple[Any, dict[str, Any]]:
    """(flow, keyword arguments) of a stage command line; the options are the flow's parameters.

    ``STAGE@WORKLOAD`` alone (what dvc.yaml runs, as ``"$DVC_STAGE"``) takes its paths from
    ``stage_paths``; the long form names every path."""
    if not argv:
        raise UsageError(f"usage: {USAGE % ','.join(STAGES)}")
    if "@" in argv[0]:
        # dvc.yaml passes the stage address through the environment ("$DVC_STAGE"), never as
        # text interpolated into the shell command, so no params value can reach the shell.
        if len(argv) > 1:
            raise UsageError(f"python -m flows {argv[0]} takes no other arguments; got {' '.join(argv[1:])}")
        name, workload = argv[0].split("@", 1)
        stage = stage_flow(name)
        return stage, {"workload": check_name(workload, "workload")} | stage_paths(name, workload)
    stage = stage_flow(argv[0])
    cmd = argparse.ArgumentParser(prog=f"python -m flows {argv[0]}", description=stage.fn.__doc__)
    cmd.add_argument("workload")
    for param in list(inspect.signature(stage.fn).parameters)[1:]:
        cmd.add_argument(f"--{param}", type=Path, required=True)
    args = vars(cmd.parse_args(argv[1:]))
    check_name(args["workload"], "workload")
    return stage, args


def run_stage(argv: list[str]) -> Any:
    """Run one stage from its command line (as written in dvc.yaml, without `python -m flows`).

    With a Prefect API configured the stage is a tracked flow run (a subflow inside a tracked
    pipeline); without one it runs as a plain function, so a `dvc repro` stage process never
    pays for starting a temporary Prefect server.
    """
    from flows.execution import lockfile

    stage, args = parse(argv)
    lockfile.snapshot()  # under `dvc repro`, DVC has just read dvc.lock: a good copy to keep
    started = time.perf_counter()
    if tracked():
        result = stage(**args)
    else:
        log().info("%s@%s: no Prefect API configured, running untracked", stage.name, args["workload"])
        result = stage.fn(**args)
    record_seconds(f"{stage.name}@{args['workload']}", time.perf_counter() - started)
    return result


TIMINGS = Path(".cairn") / "timings.json"
_TIMINGS_LOCK = threading.Lock()  # the pipeline runs stages in threads of one process


def record_seconds(address: str, seconds: float) -> None:
    """How long a stage took last time: `python -m flows plan` estimates from it. Gitignored,
    never a DVC output. Two stage processes at once may lose one entry: only an estimate."""
    with _TIMINGS_LOCK:
        timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
        timings[address] = round(seconds, 3)
        write_json(TIMINGS, timings)
