"""Datums: a stage's result for one raw partition, kept by content so that the next run computes
only new or changed partitions (Pachyderm's idea, on DVC).

DVC decides that a stage is stale (its raw folder changed) and runs it; inside the stage, each
partition's result is looked up under a key made of everything it depends on:

- the partition's bytes (sha256),
- the stage's params slice (the workload's schema and source settings),
- cairn's code: every file of flows/ and steps/ (any change there is a miss: a full run).

A hit is the stored result, byte for byte what computing it again gives, so an incremental run
leaves exactly the outputs and dvc.lock of a from-scratch run. The store is `.cairn/datums/`
(gitignored, local): a fresh clone has none and computes everything.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from flows.execution.files import write_atomic

ROOT = Path(".cairn") / "datums"
FLOWS = Path(__file__).resolve().parents[1]
PACKAGES = (FLOWS, FLOWS.parent / "steps")


@cache
def code_digest() -> str:
    """sha256 over the paths and bytes of every .py file of cairn's code."""
    digest = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted(package.rglob("*.py")):
            digest.update(path.relative_to(package.parent).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def key(stage: str, name: str, data: bytes, params: Any) -> str:
    """The key of partition ``name`` (its bytes ``data``) in ``stage`` under ``params``."""
    digest = hashlib.sha256()
    for part in (stage, name, code_digest(), json.dumps(params, sort_keys=True, default=str)):
        digest.update(part.encode() + b"\0")
    digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def fetch(stage: str, datum: str) -> dict[str, bytes] | None:
    """The files stored under ``datum``, or None when there are none (or a kill left them partial)."""
    folder = ROOT / stage / datum[:2] / datum
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return None
    names = json.loads(manifest.read_text())
    files = {n: folder / n for n in names}
    if not all(p.exists() for p in files.values()):
        return None
    return {n: p.read_bytes() for n, p in files.items()}


def store(stage: str, datum: str, files: dict[str, bytes]) -> None:
    """Keep ``files`` under ``datum``; the manifest is written last, so a killed store is a miss."""
    folder = ROOT / stage / datum[:2] / datum
    for name, data in files.items():
        write_atomic(folder / name, data)
    write_atomic(folder / "manifest.json", json.dumps(sorted(files)))


def folder(stage: str, datum: str) -> Path | None:
    """The folder of ``datum``'s files, to read one of them, or None when it is not stored whole."""
    path = ROOT / stage / datum[:2] / datum
    if not has(stage, datum):
        return None
    names = json.loads((path / "manifest.json").read_text())
    return path if all((path / n).exists() for n in names) else None


def has(stage: str, datum: str) -> bool:
    """Whether ``datum`` is stored whole (its manifest written)."""
    return (ROOT / stage / datum[:2] / datum / "manifest.json").exists()
