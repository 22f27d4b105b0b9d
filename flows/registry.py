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
import contextvars
import datetime
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flows.config import check_name
from flows.storage.files import replace_dir, write_json
from flows.storage.tables import require
from steps.errors import BadInput

SERVING = "champion.json"  # in data/<workload>/promote: which version that folder holds


def registry_root() -> Path:
    return Path(os.environ.get("CAIRN_REGISTRY", "registry"))


def folder(workload: str) -> Path:
    """The registry folder of ``workload`` (a checked name: no path can climb out of the registry)."""
    return registry_root() / check_name(workload, "registry: workload")


def read_index(workload: str) -> dict[str, Any]:
    """The index of ``workload`` (an empty one before its first model); BadInput when unreadable."""
    path = folder(workload) / "index.json"
    if not path.exists():
        return {"workload": workload, "champion": None, "versions": [], "events": []}
    try:
        index = json.loads(path.read_text())
        if not isinstance(index.get("versions"), list):
            raise ValueError("no 'versions' list")
    except (ValueError, AttributeError) as err:
        raise BadInput(
            f"registry: {path} is unreadable ({err}); restore it from a backup, or move the folder "
            "away to start a new history"
        ) from None
    index.setdefault("events", [])
    return index


_LOCKED: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("registry_locked", default=frozenset())


@contextlib.contextmanager
def locked(workload: str) -> Iterator[dict[str, Any]]:
    """The index of ``workload``, locked against other processes (other clones sharing the
    registry too) until the block ends; written back atomically when the block succeeds, and
    then the ``champion`` link made to name the index's champion.

    Index first, link second: a kill between leaves the link on the previous champion, a
    registered version, and the index (the truth) naming the new one; the next change repairs
    the link when it takes the lock. The other order could leave the link serving a version the
    index never recorded.
    """
    root = folder(workload)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks until the other change is done
        index = read_index(workload)
        _link_champion(workload, index["champion"])  # a change killed after writing its index
        token = _LOCKED.set(_LOCKED.get() | {workload})
        try:
            yield index
        finally:
            _LOCKED.reset(token)
        write_json(root / "index.json", index)
        _link_champion(workload, index["champion"])


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def point_champion(workload: str, version: int) -> None:
    """Point ``champion`` at ``v<version>``: swapped in one rename, never missing or half-made.
    Inside ``locked(workload)`` (where the caller sets ``index['champion']``) the swap waits until
    the index is written, so the link never names a version the index does not record."""
    if workload not in _LOCKED.get():
        _link_champion(workload, version)


def _link_champion(workload: str, version: int | None) -> None:
    link, tmp = folder(workload) / "champion", folder(workload) / ".champion.tmp"
    if not version or (link.is_symlink() and os.readlink(link) == f"v{version}"):
        return
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
        raise BadInput(f"registry: {workload} has no champion; run its gate: `dvc repro promote@{workload}`")
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
