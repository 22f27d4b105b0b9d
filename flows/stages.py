"""The stage flows by name, and how one stage command line runs, tracked by Prefect or not."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

from flows.clean import clean
from flows.common import log, tracked
from flows.evaluate import evaluate
from flows.ingest import ingest
from flows.publish import publish
from flows.split import split
from flows.train import train

STAGES = {f.name: f for f in (ingest, clean, split, train, evaluate, publish)}


def parser() -> argparse.ArgumentParser:
    """`<stage> <workload> --<input> PATH ... --out PATH`, the options read off each flow's signature."""
    top = argparse.ArgumentParser(prog="python -m flows", description="Run one cairn stage, or the pipeline.")
    sub = top.add_subparsers(dest="stage", required=True)
    for name, stage in STAGES.items():
        cmd = sub.add_parser(name, help=(stage.fn.__doc__ or "").strip().splitlines()[0])
        cmd.add_argument("workload")
        for param in list(inspect.signature(stage.fn).parameters)[1:]:
            cmd.add_argument(f"--{param}", type=Path, required=True)
    pipe = sub.add_parser("pipeline", help="Every stale stage in DVC's order (all workloads, or those named).")
    pipe.add_argument("workloads", nargs="*")
    return top


def run_stage(argv: list[str]) -> Any:
    """Run one stage from its command line (as written in dvc.yaml, without `python -m flows`).

    With a Prefect API configured the stage is a tracked flow run (a subflow inside a tracked
    pipeline); without one it runs as a plain function, so a `dvc repro` stage process never
    pays for starting a temporary Prefect server.
    """
    args = vars(parser().parse_args(argv))
    stage = STAGES[args.pop("stage")]
    if tracked():
        return stage(**args)
    log().info("%s@%s: no Prefect API configured, running untracked", stage.name, args["workload"])
    return stage.fn(**args)
