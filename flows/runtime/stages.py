"""The stage flows by name, and how one stage command line runs, tracked by Prefect or not.

Each stage's module is imported only when that stage runs: a `dvc repro` stage process
then pays for the libraries it uses (torch, scikit-learn) and no others.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from flows import config
from flows.config import check_name
from flows.storage.files import write_json
from flows.tracking import log, tracked
from steps.errors import UsageError

STAGES = ("ingest", "clean", "split", "train", "evaluate", "publish", "promote", "score")
# The inputs of each stage, named as its flow's parameters (after ``workload``, before ``out``):
# the options of `python -m flows STAGE WORKLOAD --INPUT PATH ... --out PATH`. Written here so
# that `--help` does not import the stage (torch for train); a test checks them against the flows.
STAGE_INPUTS = {
    "ingest": ("raw",),
    "clean": ("ingested",),
    "split": ("clean",),
    "train": ("split",),
    "evaluate": ("split", "train"),
    "publish": ("raw", "ingested", "clean", "split", "train", "evaluate"),  # the first three for the lineage
    "promote": ("split", "publish"),
    "score": ("inbox", "model"),
}


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
    if stage == "ingest":
        return {"raw": Path(config.workload(workload).raw), "out": data / "ingest"}
    if stage == "score":  # only for the workloads of params.yaml's `score` section
        return {"inbox": config.load().inbox(workload), "model": data / "promote", "out": data / "score"}
    inputs = {
        "clean": {"ingested": data / "ingest"},
        "split": {"clean": data / "clean" / "rows"},
        "train": {"split": data / "split"},
        "evaluate": {"split": data / "split", "train": data / "train"},
        "publish": {
            "raw": Path(config.workload(workload).raw),
            "ingested": data / "ingest",
            "clean": data / "clean" / "rows",
            "split": data / "split",
            "train": data / "train",
            "evaluate": data / "evaluate",
        },
        "promote": {"split": data / "split", "publish": data / "publish"},
    }
    if stage not in inputs:
        raise UsageError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    return inputs[stage] | {"out": data / stage}


def parse(argv: list[str]) -> tuple[Any, dict[str, Any]]:
    """(flow, keyword arguments) of a stage command line: ``STAGE@WORKLOAD`` alone (what dvc.yaml
    runs, as ``"$DVC_STAGE"``) takes its paths from ``stage_paths``; the long form
    ``STAGE WORKLOAD --INPUT PATH ... --out PATH`` (flows/cli.py checks it) names every path."""
    if "@" in argv[0]:
        # dvc.yaml passes the stage address through the environment ("$DVC_STAGE"), never as
        # text interpolated into the shell command, so no params value can reach the shell.
        if len(argv) > 1:
            raise UsageError(f"python -m flows {argv[0]} takes no other arguments; got {' '.join(argv[1:])}")
        name, workload = argv[0].split("@", 1)
        stage = stage_flow(name)
        return stage, {"workload": check_name(workload, "workload")} | stage_paths(name, workload)
    name, workload, options = argv[0], argv[1], argv[2:]
    stage = stage_flow(name)
    args = {k.removeprefix("--"): Path(v) for k, v in zip(options[::2], options[1::2], strict=True)}
    return stage, {"workload": check_name(workload, "workload")} | args


def run_stage(argv: list[str]) -> Any:
    """Run one stage from its command line (as written in dvc.yaml, without `python -m flows`).

    With a Prefect API configured the stage is a tracked flow run (a subflow inside a tracked
    pipeline); without one it runs as a plain function, so a `dvc repro` stage process never
    pays for starting a temporary Prefect server.
    """
    from flows.runtime import lockfile

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
