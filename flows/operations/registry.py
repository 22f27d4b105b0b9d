"""The model registry: versions, the champion that serves, history, rollback.

The registry is a folder (``$CAIRN_REGISTRY``, default ``registry/``), one subfolder per
workload: ``index.json`` (versions, their status, metric, holdout, lineage, which is champion,
and a dated log of every promotion, rejection and rollback), ``v<N>/`` with the published
files of each promoted version, and ``champion``, a link to the ``v<N>/`` being served. It
lives outside git and DVC's cache on purpose: it keeps every version, and clones may share one.
The champion gate (flows/promote.py, the ``promote`` stage) registers what publish made and
copies the champion into ``data/<workload>/promote/``, the model that DVC's later stages (score)
use; ``serve_to`` writes that folder, and a rollback rewrites it in the checkout it runs in.

Every change takes a lock on the workload's folder, so clones sharing one registry never lose
a registration, and the index is written atomically.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flows.common import (
    InputError,
    artifact_key,
    check_name,
    replace_dir,
    require,
    write_json,
)

SERVING = "champion.json"  # in data/<workload>/promote: which version that folder holds


def registry_root() -> Path:
    return Path(os.environ.get("CAIRN_REGISTRY", "registry"))


def folder(workload: str) -> Path:
    """The registry folder of ``workload`` (a checked name: no path can climb out of the registry)."""
    return registry_root() / check_name(workload, "registry: workload")


def read_index(workload: str) -> dict[str, Any]:
    """The index of ``workload`` (an empty one before its first model); InputError when unreadable."""
    path = folder(workload) / "index.json"
    if not path.exists():
        return {"workload": workload, "champion": None, "versions": [], "events": []}
    try:
        index = json.loads(path.read_text())
        if not isinstance(index.get("versions"), list):
            raise ValueError("no 'versions' list")
    except (ValueError, AttributeError) as err:
        raise InputError(
            f"registry: {path} is unreadable ({err}); restore it from a backup, or move the folder "
            "away to start a new history"
        ) from None
    index.setdefault("events", [])
    return index


@contextlib.contextmanager
def locked(workload: str) -> Iterator[dict[str, Any]]:
    """The index of ``workload``, locked against other processes (other clones sharing the
    registry too) until the block ends; written back atomically when the block succeeds."""
    root = folder(workload)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks until the other change is done
        index = read_index(workload)
        yield index
        write_json(root / "index.json", index)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def point_champion(workload: str, version: int) -> None:
    """Point ``champion`` at ``v<version>``: swapped in one rename, never missing or half-made."""
    link, tmp = folder(workload) / "champion", folder(workload) / ".champion.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(f"v{version}", target_is_directory=True)
    os.replace(tmp, link)


def champion(workload: str) -> tuple[int, Path] | None:
    """(version, folder) of ``workload``'s champion, or None when there is none yet."""
    version = read_index(workload)["champion"]
    return (version, folder(workload) / f"v{version}") if version else None


def serving(workload: str) -> dict[str, Any]:
    """What ``data/<workload>/promote/champion.json`` says of the champion: version, model
    sha256 and metric. No dates: the same champion gives the same bytes, so DVC reruns the
    stages after it only when the champion changed."""
    index = read_index(workload)
    entry = next((v for v in index["versions"] if v["version"] == index["champion"]), None)
    if entry is None:
        raise InputError(f"registry: {workload} has no champion; run its gate: `dvc repro promote@{workload}`")
    return {"workload": workload, "version": entry["version"], "model_sha256": entry["model_sha256"],
            "metric": entry["metric"]}  # fmt: skip


def serve_to(workload: str, out: Path) -> dict[str, Any]:
    """Copy the champion of ``workload`` (its published files) into ``out`` with ``champion.json``,
    replacing ``out`` whole; returns what champion.json says."""
    record = serving(workload)
    source = require(folder(workload) / f"v{record['version']}", f"champion v{record['version']}")
    with replace_dir(out) as tmp:
        for path in sorted(source.iterdir()):
            if path.is_file():
                shutil.copyfile(path, tmp / path.name)
        write_json(tmp / SERVING, record)
    return record


def stale_serving(workload: str, out: Path) -> bool:
    """Whether ``out`` (data/<workload>/promote) holds another model than the registry's champion:
    a rollback or promotion made from another clone that shares the registry."""
    try:
        held = json.loads((out / SERVING).read_text())
    except (OSError, ValueError):
        return True
    index = read_index(workload)
    return held.get("version") != index["champion"]


def history_rows(workload: str) -> list[dict]:
    """The registry's history of ``workload``, newest first, one row per version: what answers
    "is this model better than last week's" in the Prefect UI."""
    rows = []
    for v in reversed(read_index(workload)["versions"]):
        ((metric, value),) = v["metric"].items()
        raw = next(iter(v.get("lineage", {}).get("ingest", {}).values()), None)
        rows.append({
            "version": f"v{v['version']}",
            "registered": v.get("registered_at", "?"),
            "status": v["status"],
            metric: round(value, 6),
            "champion then": "-" if not v.get("champion_then") else f"v{v['champion_then']['version']}: "
                                                                  f"{v['champion_then'][metric]:.6g}",
            "reason": v["reason"],
            "data (ingest md5)": raw or "?",
            "git revision": v.get("git_revision", "?")[:12],
            "model sha256": v["model_sha256"][:12],
        })  # fmt: skip
    return rows


def history_artifact(workload: str) -> None:
    """The history as a table artifact 'registry-<workload>' (its versions are the UI's history)."""
    from prefect.artifacts import create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is not None:
        create_table_artifact(table=history_rows(workload), key=artifact_key("registry", workload),
                              description=f"{workload}: every registered model, newest first")  # fmt: skip


def rollback(workload: str, to: int | None = None) -> dict:
    """Make version ``to`` (default: the champion before the current one) the champion again:
    ``champion`` then serves it, and the index logs when and from which version."""
    if to is not None and (not isinstance(to, int) or to < 1):
        raise InputError(f"registry: --to {to!r} is not a version number (1, 2, ...)")
    if not (folder(workload) / "index.json").exists():
        raise InputError(f"registry: {workload} has no registered models; see `python -m flows registry list`")
    with locked(workload) as index:
        promoted = [v for v in index["versions"] if v["status"] in ("champion", "retired")]
        if to is None:
            earlier = [v["version"] for v in promoted if v["version"] < (index["champion"] or 0)]
            if not earlier:
                raise InputError(f"registry: {workload} has no earlier champion to roll back to")
            to = max(earlier)
        chosen = next((v for v in promoted if v["version"] == to), None)
        if chosen is None:
            raise InputError(f"registry: {workload} has no promoted version v{to}; see `python -m flows registry list`")
        before = index["champion"]
        for v in index["versions"]:
            if v["status"] == "champion":
                v["status"] = "retired"
        chosen["status"] = "champion"
        index["champion"] = to
        point_champion(workload, to)
        index["events"].append(
            {"at": now(), "event": "rollback", "version": to, "reason": f"rolled back from v{before}"}
        )
    served = Path("data") / workload / "promote"
    if served.is_dir():  # this checkout's copy of what serves: `dvc repro` then sees it changed
        serve_to(workload, served)
    return chosen


def listing(workload: str | None = None) -> str:
    """The registry as a table: workload, version, status (champion = serving), when, metric on
    which holdout, reason; then each workload's dated log of changes."""
    root = registry_root()
    names = [workload] if workload else sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []
    lines = [f"{'workload':<10} {'version':>7}  {'status':<9} {'registered':<20} {'metric':<22} {'holdout':<9} reason"]
    events = []
    for name in names:
        index = read_index(name)
        for v in index["versions"]:
            ((metric, value),) = v["metric"].items()
            version, score = f"v{v['version']}", f"{metric} {value:.6g}"
            status = "champion" if v["status"] == "champion" else v["status"]
            rows = f"{v['holdout']['rows']} rows" if "holdout" in v else "?"
            lines.append(f"{name:<10} {version:>7}  {status:<9} {v.get('registered_at', '?'):<20} {score:<22} "
                         f"{rows:<9} {v['reason']}")  # fmt: skip
        events += [f"{e['at']}  {name} v{e['version']} {e['event']}: {e['reason']}" for e in index["events"]]
        if index["champion"]:
            events.append(f"serving: {name} v{index['champion']} ({folder(name) / 'champion'})")
    return "\n".join(lines + ([""] + events if events else []))
