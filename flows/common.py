"""What every stage flow shares: params, atomic writes, logging, and Prefect tracking."""

from __future__ import annotations

import base64
import functools
import inspect
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from flows.execution.files import UMASK, remove_leftovers, replace_dir, write_atomic, write_json  # noqa: F401
from steps import StepError

PARAMS_FILE = Path("params.yaml")


class InputError(StepError):
    """A stage's input file or params entry is missing or unreadable."""


# Workload names reach file paths, DVC stage names and Prefect artifact keys: letters, digits,
# '-' and '_' only, so none of them can carry shell syntax or climb out of data/.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_name(name: object, what: str) -> str:
    """``name`` if it is a safe workload name, else InputError saying what is wrong."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InputError(
            f"{what} {name!r} is not a valid name; use letters, digits, '-' and '_' (at most 64, "
            "starting with a letter or digit)"
        )
    return name


def check_inside(path: object, what: str, root: Path | None = None) -> Path:
    """``path`` as a relative Path inside ``root`` (default: the working directory, the
    repository root), else InputError. Refuses absolute paths, '..' and shell syntax."""
    root = (root or Path.cwd()).resolve()
    if not isinstance(path, str) or not re.fullmatch(r"[A-Za-z0-9_./-]+", path):
        raise InputError(f"{what} {path!r} is not a plain relative path (letters, digits, '_', '-', '.', '/')")
    resolved = (root / path).resolve()
    if Path(path).is_absolute() or ".." in Path(path).parts or not resolved.is_relative_to(root):
        raise InputError(f"{what} {path!r} is outside the repository {root}")
    return Path(path)


def check_params(params: dict[str, Any], path: Path = PARAMS_FILE) -> dict[str, Any]:
    """Every workload name and raw path of a parsed params.yaml, checked before any stage runs."""
    from flows import settings  # pydantic: 0.1 s to import, only where params are checked

    workloads = params.get("workloads")
    if not isinstance(workloads, dict) or not workloads:
        raise InputError(f"{path} has no 'workloads' section")
    for name, entry in workloads.items():
        check_name(name, f"{path}: workload")
        if not isinstance(entry, dict):
            raise InputError(f"{path}: workload {name!r} is {entry!r}; expected a mapping of settings")
        check_inside(entry.get("raw"), f"{path}: workloads.{name}.raw")
        wrong = settings.problems(entry, f"{path}: workloads.{name}")
        if wrong:
            raise InputError("; ".join(wrong))
    for name, entry in (params.get("score") or {}).items():
        if name not in workloads:
            raise InputError(
                f"{path}: score names '{name}', which is not a workload; workloads: {', '.join(workloads)}"
            )
        check_inside((entry or {}).get("inbox"), f"{path}: score.{name}.inbox")
    return params


def load_params(workload: str, path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The params.yaml entry of ``workload``; raises InputError naming what is missing or unsafe."""
    if not path.exists():
        raise InputError(f"{path} not found in {Path.cwd()}; run stages from the repository root")
    workloads = check_params(yaml.safe_load(path.read_text()) or {}, path)["workloads"]
    if workload not in workloads:
        raise InputError(f"{path} has no workload '{workload}'; it has: {', '.join(workloads) or 'none'}")
    return workloads[workload]


def in_flow_run() -> bool:
    """True inside a tracked Prefect flow run. Prefect is not imported to say no: without it
    loaded, no run can be active (a `dvc repro` stage process never loads it)."""
    context = sys.modules.get("prefect.context")
    return context is not None and context.FlowRunContext.get() is not None


class StageFlow:
    """A stage's function and its Prefect flow, run as '<name>@<workload>'. The flow is built on
    first use: an untracked stage process (`dvc repro`) calls ``fn`` and never imports Prefect's
    flow machinery (about 2 s per process). When the stage refuses its input (a StepError), the
    run's first log line is that one-line error (which stage, what, where); Prefect's traceback
    follows it, once."""

    def __init__(self, name: str, fn: Callable) -> None:
        self.name = name

        @functools.wraps(fn)
        def body(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except StepError as err:
                if in_flow_run():  # untracked, `python -m flows` prints it
                    workload = inspect.signature(fn).bind_partial(*args, **kwargs).arguments.get("workload")
                    log().error("%s@%s failed: %s", name, workload, err)
                raise

        self.fn = body
        functools.update_wrapper(self, fn)

    @functools.cached_property
    def flow(self) -> Any:
        from prefect import flow

        return flow(name=self.name, flow_run_name=self.name + "@{workload}", persist_result=False)(self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.flow(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:  # with_options, ... of the Prefect flow
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.flow, attr)


def stage_flow(name: str) -> Callable[[Callable], StageFlow]:
    """Decorator: the function as the StageFlow of stage ``name``."""
    return lambda fn: StageFlow(name, fn)


def log() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a tracked run (the UI shows it), else a plain logger."""
    if in_flow_run():
        from prefect import get_run_logger

        return get_run_logger()
    return logging.getLogger("cairn")


def tracked() -> bool:
    """True when a Prefect API is configured: flows then run as tracked Prefect runs. Where no
    Prefect setting can come from (no PREFECT_* variable, no profile or config file) the answer
    is no without importing Prefect, which costs a `dvc repro` stage process about a second."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    sources = [Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")), Path(".env"),
               Path("prefect.toml")]  # fmt: skip
    pyproject = Path("pyproject.toml")
    configured = (any(k.startswith("PREFECT_") for k in os.environ) or any(p.exists() for p in sources)
                  or (pyproject.exists() and "[tool.prefect" in pyproject.read_text()))  # fmt: skip
    if not configured:
        return False
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lower-case letters, digits, '-') from ``parts``, e.g.
    ('metrics', 'sales_eu') -> 'metrics-sales-eu': one key per workload, so the UI's history
    of a key follows one workload over time."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def report(key: str, title: str, summary: dict[str, Any]) -> None:
    """Log a stage's summary; in a tracked run also attach it to the run as an artifact
    (``key`` made a valid artifact key, see artifact_key)."""
    log().info("%s: %s", title, json.dumps(summary, default=str))
    if in_flow_run():
        from prefect.artifacts import create_markdown_artifact

        rows = "\n".join(f"| {k} | {json.dumps(v, default=str)} |" for k, v in summary.items())
        create_markdown_artifact(
            key=artifact_key(key), markdown=f"# {title}\n\n| | |\n|---|---|\n{rows}\n", description=title
        )


def attach(key: str, markdown: str | None = None, images: dict[str, Path] | None = None) -> None:
    """In a tracked run, attach a Markdown document (a model card) and PNG figures to the run, so
    the Prefect UI shows them in the run's Artifacts tab; outside one, do nothing. A figure goes
    as an image artifact whose URL is the PNG itself (a data: URL): it shows in any browser that
    reaches the Prefect server, with no file server and no path on the worker's disk."""
    if not in_flow_run():
        return
    from prefect.artifacts import create_image_artifact, create_markdown_artifact

    if markdown is not None:
        create_markdown_artifact(key=artifact_key(key), markdown=markdown, description=key)
    for name, path in (images or {}).items():
        url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
        create_image_artifact(image_url=url, key=artifact_key(key, name), description=f"{key}: {path.name}")


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{what} '{path}' does not exist; run the stage that makes it first")
    return path


def parquet_files(path: Path) -> list[Path]:
    """A Parquet file, or the Parquet files of a folder (one per partition) in name order."""
    require(path, "input")
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"input folder '{path}' has no .parquet files")
    return files


def read_table(path: Path) -> pa.Table:
    """A Parquet file, or all Parquet files of a folder in name order, as one table."""
    return pa.concat_tables(pq.read_table(f) for f in parquet_files(path))


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


class ParquetAppender:
    """A Parquet file written one table at a time (a row group or more each), in a staged file."""

    def __init__(self, path: Path) -> None:
        self.path, self.writer = path, None

    def write(self, table: pa.Table, where: str) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        elif not table.schema.equals(self.writer.schema):
            try:
                table = table.cast(self.writer.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as err:
                raise InputError(f"{where} has other columns or types than the ones before it: {err}") from None
        if table.num_rows:  # an empty partition adds no row group
            self.writer.write_table(table)

    def close(self, empty: pa.Schema) -> None:
        if self.writer is None:  # nothing at all: a file with the columns and no rows
            pq.write_table(empty.empty_table(), self.path, compression="zstd")
        else:
            self.writer.close()


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
