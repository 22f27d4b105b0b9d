"""`python -m flows plan [WORKLOAD ...]`: what the next `dvc repro` or pipeline run will do, and
why, before it runs. `dvc status` says which stages are stale; this also says which dep, param
or partition changed, how many raw files ingest will compute and how many it will reuse
(flows/storage/datums.py), what will run only if an upstream stage changes its outputs, and how long
each stage took last time (.cairn/timings.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flows import config
from flows.runtime.dvc_repo import Dvc
from flows.runtime.stages import TIMINGS


def reasons(status: list) -> list[str]:
    """DVC's status entries of one stage as short sentences."""
    out = []
    for entry in status:
        if isinstance(entry, str):
            out.append(entry)
            continue
        for kind, changes in entry.items():
            for path, what in changes.items() if isinstance(changes, dict) else [(changes, "")]:
                if isinstance(what, dict):  # params.yaml: {key: modified}
                    out += [f"param {key} {how}" for key, how in what.items()]
                else:
                    out.append(f"{kind.removeprefix('changed ').rstrip('s')} {path} {what}".strip())
    return out


def ingest_files(workload: str) -> dict[str, int]:
    """{'compute': n, 'reuse': m}: the raw files of ``workload`` that ingest will parse, and those
    whose result the datum store already has."""
    from flows.ingest import datum_key, file_name, partitions
    from flows.storage import datums
    from flows.storage import raw as raw_files

    params = config.workload(workload)
    raw = Path(params.raw)
    counts = {"compute": 0, "reuse": 0}
    files = partitions(raw)[0]
    # An unchanged raw file is not read again: its sha256 is remembered by inode, size and mtime.
    for path, sha256 in zip(files, datums.file_sha256(files, raw_files.sha256), strict=True):
        datum = datum_key(file_name(path, raw), sha256, params)
        counts["reuse" if datums.has("ingest", datum) else "compute"] += 1
    return counts


def plan(workloads: list[str] | None = None, dvc: Dvc | None = None) -> list[dict[str, Any]]:
    """One row per stage that will or may run, in the order they would run. ``dvc``: the DVC
    adapter (flows/runtime/dvc_repo.py); by default the working directory's repository, read under
    DVC's lock (DVC reads stage status under it)."""
    if dvc is None:
        with Dvc.reading() as dvc:
            return plan(workloads, dvc)
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    rows: list[dict[str, Any]] = []
    stale: set[str] = set()
    files: dict[str, dict[str, int]] = {}  # workload -> ingest's raw files to compute and reuse
    for name in dvc.plan(workloads):
        upstream = sorted(u for u in dvc.upstream(name) if u in stale)
        if dvc.changed(name):
            row = {"stage": name, "will": "run", "why": reasons(dvc.status(name))}
        elif upstream:
            verb = "changes its" if len(upstream) == 1 else "change their"
            row = {"stage": name, "will": "run if", "why": [f"{', '.join(upstream)} {verb} outputs"]}
        else:
            continue
        stale.add(name)
        kind, _, workload = name.partition("@")
        if kind == "ingest" and row["will"] == "run":
            row["files"] = files[workload] = ingest_files(workload)
        elif kind in ("clean", "split") and workload in files:
            # Partition for partition, as ingest's: an unchanged ingested partition is checked
            # and dealt from the store, unless it now repeats a row of one that sorts before it.
            row["partitions"] = files[workload]
        row["last_seconds"] = timings.get(name)
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "Nothing to run: every stage is up to date."
    lines = [f"{'stage':<20} {'will':<7} {'last run':>9}  why"]
    for row in rows:
        last = f"{row['last_seconds']:.1f} s" if row.get("last_seconds") is not None else "-"
        why = "; ".join(row["why"])
        if "files" in row:
            why += f" ({row['files']['compute']} raw file(s) to compute, {row['files']['reuse']} reused)"
        if "partitions" in row:
            counts = row["partitions"]
            why += f" (per partition, as ingest: {counts['compute']} raw file(s) new or changed, {counts['reuse']} not)"
        lines.append(f"{row['stage']:<20} {row['will']:<7} {last:>9}  {why}")
    runs = [r for r in rows if r["will"] == "run"]
    total = sum(r["last_seconds"] or 0 for r in runs)
    lines.append(f"{len(runs)} stage(s) will run (about {total:.0f} s by their last runs, less where ingest reuses "
                 f"files); {len(rows) - len(runs)} may run after them")  # fmt: skip
    return "\n".join(lines)
