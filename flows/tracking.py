"""How a stage flow is seen: its Prefect flow (tracked when an API is configured, a plain
function otherwise), its logger, the summary and figures it attaches to its run, and the
nondeterministic record of a run (timings, git revision) that no DVC output may hold."""

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

from flows.storage.files import write_json
from steps.errors import BadInput


def in_flow_run() -> bool:
    """True inside a tracked Prefect flow run. Prefect is not imported to say no: without it
    loaded, no run can be active (a `dvc repro` stage process never loads it)."""
    context = sys.modules.get("prefect.context")
    return context is not None and context.FlowRunContext.get() is not None


class StageFlow:
    """A stage's function and its Prefect flow, run as '<name>@<workload>'. The flow is built on
    first use: an untracked stage process (`dvc repro`) calls ``fn`` and never imports Prefect's
    flow machinery (about 2 s per process). When the stage refuses its input (a BadInput), the
    run's first log line is that one-line error (which stage, what, where); Prefect's traceback
    follows it, once."""

    def __init__(self, name: str, fn: Callable) -> None:
        self.name = name

        @functools.wraps(fn)
        def body(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except BadInput as err:
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
    """True when a Prefect API is configured: flows then run as tracked Prefect runs.

    Only PREFECT_API_URL or a settings file can set the API's URL: a profile (profiles.toml
    under PREFECT_HOME or PREFECT_PROFILES_PATH; PREFECT_PROFILE picks one, in Prefect's test
    mode among its built-in ones), a `.env`, a `prefect.toml` or pyproject's [tool.prefect].
    Where none of them is there the answer is no without importing Prefect, which costs a `dvc
    repro` stage process 1.1-1.3 s of CPU, as much as a tiny ingest's own work: other PREFECT_*
    variables (PREFECT_HOME, PREFECT_LOGGING_LEVEL, ...) do not make it pay that. A process that
    has loaded Prefect's settings asks them: they may have been changed in the process
    (``temporary_settings``, Prefect's test harness)."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    if "prefect.settings" in sys.modules:
        return bool(sys.modules["prefect.settings"].get_current_settings().api.url)
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    sources = [Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")), Path(".env"),
               Path("prefect.toml")]  # fmt: skip
    pyproject = Path("pyproject.toml")
    configured = ("PREFECT_PROFILE" in os.environ or any(p.exists() for p in sources)
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
