"""After a run: are the outputs the committed bytes? One line that says so, or which stages differ
and what that did to the metrics (issue #29).

A CPU whose BLAS picks other kernels (MKL on an Intel Xeon with AMX, docs/machines.md) trains
other bytes than the ones committed in dvc.lock: `make run` then leaves dvc.lock modified, and a
user deserves to know why, and whether the models are any worse, without reading YAML diffs.
The committed metrics come from git: each pipeline run records every evaluated workload's metrics
in data/metrics.json (``record``), with the hash of the metrics.json they were read from, and
that file is committed with dvc.lock (tests/test_structure.py keeps the two in step). A fresh
clone without a DVC remote has no outputs, yet knows the metrics its lock stands for. Where
HEAD's record does not match its lock (a lock from `dvc repro` alone), DVC's cache is asked.
(Not `cache: false` on metrics.json in dvc.yaml, DVC's own way to keep a metric in git: DVC 3
gives no run-cache entry to a stage with an uncached output, so evaluate could no longer be
restored from a remote; tried, and tests/test_drift.py's clone then ran evaluate@blobs.)
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from flows import config
from flows.runtime.lockfile import LOCK, problem
from flows.storage.files import load_yaml

CACHE = Path(".dvc") / "cache" / "files" / "md5"  # DVC 3's cache layout: md5[:2]/md5[2:]
RECORD = Path("data") / "metrics.json"  # {workload: {"md5": of its metrics.json, "metrics": {...}}}


def _committed(path: Path) -> str | None:
    """HEAD's ``path``, or None outside git or where HEAD has no such file."""
    shown = subprocess.run(["git", "show", f"HEAD:{path.as_posix()}"], capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 and shown.stdout else None


def committed_lock() -> dict[str, Any] | None:
    """HEAD's dvc.lock stages, or None outside git or where HEAD has no dvc.lock."""
    text = _committed(LOCK)
    return load_yaml(text).get("stages", {}) if text else None


def outs(entry: dict[str, Any]) -> dict[str, str | None]:
    return {o["path"]: o.get("md5") for o in entry.get("outs", [])}


def differing(committed: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The stages of both locks whose outputs' hashes differ, in the current lock's order."""
    return [name for name, entry in current.items() if name in committed and outs(entry) != outs(committed[name])]


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _mapping(data: bytes | str | None) -> dict[str, Any] | None:
    """``data`` as JSON if it is an object, else None (absent, damaged, or not a mapping)."""
    try:
        value = json.loads(data) if data else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _metrics_file(workload: str) -> Path:
    return Path("data") / workload / "evaluate" / "metrics.json"


def record() -> None:
    """Write data/metrics.json for dvc.lock as it is: each evaluated workload's metrics and the
    hash dvc.lock gives its metrics.json, read from that file where it holds those bytes, else
    kept from the record as it was (an output not checked out here). Sorted and indented, so an
    unchanged run leaves the file byte for byte as it was."""
    text = LOCK.read_text() if LOCK.exists() else ""
    if problem(text):
        return  # nothing to record; the next pipeline run recovers the lock (flows/runtime/lockfile.py)
    stages = load_yaml(text)["stages"]
    before, entries = _mapping(_read(RECORD)) or {}, {}
    for name, entry in stages.items():
        kind, _, workload = name.partition("@")
        md5 = outs(entry).get(_metrics_file(workload).as_posix()) if kind == "evaluate" else None
        if md5 is None:
            continue
        data = _read(_metrics_file(workload))
        if data is not None and hashlib.md5(data).hexdigest() == md5 and (metrics := _mapping(data)) is not None:
            entries[workload] = {"md5": md5, "metrics": metrics}
        elif isinstance(kept := before.get(workload), dict) and kept.get("md5") == md5:
            entries[workload] = kept
    written = (json.dumps(entries, indent=2, sort_keys=True) + "\n").encode()
    if written != _read(RECORD):
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        tmp = RECORD.with_name(f".{RECORD.name}.tmp")
        tmp.write_bytes(written)
        tmp.replace(RECORD)


def metric_changes(committed: dict[str, Any], stages: list[str]) -> tuple[list[str], list[str]]:
    """For each evaluate stage among ``stages``: 'W METRIC committed X, here Y' (the workload's
    promote metric), and the workloads whose committed metrics this clone does not have."""
    said, missing = [], []
    record_then = _mapping(_committed(RECORD)) or {}
    for name in stages:
        kind, _, workload = name.partition("@")
        if kind != "evaluate":
            continue
        path = _metrics_file(workload)
        md5 = outs(committed[name]).get(path.as_posix())
        entry = record_then.get(workload)
        if md5 and isinstance(entry, dict) and entry.get("md5") == md5 and isinstance(entry.get("metrics"), dict):
            then = entry["metrics"]  # committed with the lock
        else:  # by hash, from DVC's cache
            then = _mapping(_read(CACHE / md5[:2] / md5[2:])) if md5 else None
        now = _mapping(_read(path))
        metric = config.workload(workload).promote.metric
        if then is None or now is None or metric not in then or metric not in now:
            missing.append(workload)
        else:
            said.append(f"{workload} {metric} committed {then[metric]:.6g}, here {now[metric]:.6g}")
    return said, missing


def summary() -> str | None:
    """The one line (None outside git, or without a committed or current dvc.lock)."""
    committed = committed_lock()
    if committed is None or not LOCK.exists():
        return None
    current = load_yaml(LOCK.read_text()).get("stages", {})
    stages = differing(committed, current)
    if not stages:
        return f"dvc.lock: all {len(current)} stages' outputs are the committed bytes"
    said, missing = metric_changes(committed, stages)
    line = (f"dvc.lock: {len(stages)} of {len(current)} stages' outputs differ from the committed ones "
            f"({', '.join(stages[:4])}{', ...' if len(stages) > 4 else ''}): this machine computed other bytes "
            "(README, 'Same bytes on another machine')")  # fmt: skip
    if said:
        line += "; " + "; ".join(said)
    if missing:
        line += (f"; committed metrics of {', '.join(missing)} are neither in {RECORD} at HEAD nor in the DVC "
                 "cache (`dvc pull` brings them)")  # fmt: skip
    return line
