"""What every stage flow shares: params, atomic writes, logging, and Prefect tracking."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from steps import StepError

PARAMS_FILE = Path("params.yaml")


class InputError(StepError):
    """A stage's input file or params entry is missing or unreadable."""


def load_params(workload: str, path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The params.yaml entry of ``workload``; raises InputError naming what is missing."""
    if not path.exists():
        raise InputError(f"{path} not found in {Path.cwd()}; run stages from the repository root")
    workloads = (yaml.safe_load(path.read_text()) or {}).get("workloads") or {}
    if workload not in workloads:
        raise InputError(f"{path} has no workload '{workload}'; it has: {', '.join(workloads) or 'none'}")
    return workloads[workload]


def log() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a tracked run (the UI shows it), else a plain logger."""
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is not None:
        from prefect import get_run_logger

        return get_run_logger()
    return logging.getLogger("cairn")


def tracked() -> bool:
    """True when a Prefect API is configured: flows then run as tracked Prefect runs."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def report(key: str, title: str, summary: dict[str, Any]) -> None:
    """Log a stage's summary; in a tracked run also attach it to the run as an artifact."""
    log().info("%s: %s", title, json.dumps(summary, default=str))
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is not None:
        from prefect.artifacts import create_markdown_artifact

        rows = "\n".join(f"| {k} | {json.dumps(v, default=str)} |" for k, v in summary.items())
        create_markdown_artifact(key=key, markdown=f"# {title}\n\n| | |\n|---|---|\n{rows}\n", description=title)


def attach(key: str, markdown: str, links: dict[str, Path] | None = None) -> None:
    """In a tracked run, attach a Markdown document (a model card) and links to files (plots)
    to the run, so the Prefect UI shows them; outside one, do nothing."""
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    create_markdown_artifact(key=key, markdown=markdown, description=key)
    for name, path in (links or {}).items():
        create_link_artifact(key=f"{key}-{name}", link=path.resolve().as_uri(), link_text=str(path))


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{what} '{path}' does not exist; run the stage that makes it first")
    return path


def read_table(path: Path) -> pa.Table:
    """A Parquet file, or all Parquet files of a folder in name order, as one table."""
    require(path, "input")
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"input folder '{path}' has no .parquet files")
    return pa.concat_tables(pq.read_table(f) for f in files)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``path`` so that it is either absent/old or complete: temp file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def replace_dir(path: Path) -> Iterator[Path]:
    """Build a folder output in a temp folder beside it; swap it in only if the block succeeds.

    A failed or killed stage leaves the old folder (or none), never a half-written one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def git_revision() -> str:
    """HEAD's commit, or 'unknown' outside a git repository."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_record(workload: str, stage: str, record: dict[str, Any]) -> None:
    """Nondeterministic facts of a run (timings, device) go here: gitignored, never a DVC
    output, so they cannot change any hash."""
    write_json(Path(".cairn") / "runs" / f"{stage}@{workload}.json", record)
