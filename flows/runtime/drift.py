"""After a run: are the outputs the committed bytes? One line that says so, or which stages differ
and what that did to the metrics (issue #29).

A CPU whose BLAS picks other kernels (MKL on an Intel Xeon with AMX, docs/machines.md) trains
other bytes than the ones committed in dvc.lock: `make run` then leaves dvc.lock modified, and a
user deserves to know why, and whether the models are any worse, without reading YAML diffs.
The committed metrics are read from DVC's cache when it holds them (a `dvc pull`, or an earlier
run of that commit here); a fresh clone without a remote has only their hashes.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from flows import config
from flows.runtime.lockfile import LOCK, SAFE_LOADER

CACHE = Path(".dvc") / "cache" / "files" / "md5"  # DVC 3's cache layout: md5[:2]/md5[2:]


def committed_lock() -> dict[str, Any] | None:
    """HEAD's dvc.lock stages, or None outside git or where HEAD has no dvc.lock."""
    shown = subprocess.run(["git", "show", f"HEAD:{LOCK}"], capture_output=True, text=True)
    return yaml.load(shown.stdout, SAFE_LOADER).get("stages", {}) if shown.returncode == 0 and shown.stdout else None


def outs(entry: dict[str, Any]) -> dict[str, str | None]:
    return {o["path"]: o.get("md5") for o in entry.get("outs", [])}


def differing(committed: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The stages of both locks whose outputs' hashes differ, in the current lock's order."""
    return [name for name, entry in current.items() if name in committed and outs(entry) != outs(committed[name])]


def _read_metrics(source: Path) -> dict[str, Any] | None:
    try:
        return json.loads(source.read_text())
    except (OSError, ValueError):
        return None


def metric_changes(committed: dict[str, Any], stages: list[str]) -> tuple[list[str], list[str]]:
    """For each evaluate stage among ``stages``: 'W METRIC committed X, here Y' (the workload's
    promote metric), and the workloads whose committed metrics this clone does not have."""
    said, missing = [], []
    for name in stages:
        kind, _, workload = name.partition("@")
        if kind != "evaluate":
            continue
        path = Path("data") / workload / "evaluate" / "metrics.json"
        md5 = outs(committed[name]).get(path.as_posix())
        then = _read_metrics(CACHE / md5[:2] / md5[2:]) if md5 else None  # committed: by hash, from the cache
        now = _read_metrics(path)
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
    current = yaml.load(LOCK.read_text(), SAFE_LOADER).get("stages", {})
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
        line += f"; committed metrics of {', '.join(missing)} are not in the DVC cache (`dvc pull` brings them)"
    return line
