"""Datums: a stage's result for one raw partition, kept by content so that the next run computes
only new or changed partitions (Pachyderm's idea, on DVC).

DVC decides that a stage is stale (its raw folder changed) and runs it; inside the stage, each
partition's result is looked up under a key made of everything it depends on:

- the partition's bytes (sha256),
- the stage's params slice (the workload's schema and source settings),
- the code the stage runs (flows/storage/code.py: the same files dvc.yaml lists as its deps), so
  an edit elsewhere (a model, the server) leaves the stage's datums valid.

A hit is the stored result, byte for byte what computing it again gives, so an incremental run
leaves exactly the outputs and dvc.lock of a from-scratch run. The store is `.cairn/datums/`
(gitignored, local): a fresh clone has none and computes everything.

Every change to a stage's code makes new keys, so the store grows by a corpus's worth of datums
per code version: `python -m flows prune [--days N]` removes those no run has used for N days
(a hit marks a datum used; outputs hold their own links to the files, so they keep them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.storage import code
from flows.storage.files import write_atomic
from steps import BadInput

ROOT = Path(".cairn") / "datums"


def key(stage: str, name: str, data: bytes | str, params: Any) -> str:
    """The key of partition ``name`` in ``stage`` under ``params``; ``data`` is its bytes or their
    sha256 (hex, as ``file_sha256`` gives it). ``stage`` may name a kind of datum within a stage
    ('clean-settle'): the code hashed is the stage's, the word before the '-'."""
    digest = hashlib.sha256()
    for part in (stage, name, code.digest(stage.partition("-")[0]), json.dumps(params, sort_keys=True, default=str)):
        digest.update(part.encode() + b"\0")
    digest.update(bytes.fromhex(data) if isinstance(data, str) else hashlib.sha256(data).digest())
    return digest.hexdigest()


STATE = Path(".cairn") / "state.sqlite"


def file_sha256(paths: list[Path], read: Callable[[Path], bytes]) -> list[str]:
    """The sha256 of ``read(path)`` for each path, remembered by the file's inode, size and
    modification time as DVC's own state does: an unchanged file is not read again (an append
    to a folder of 100 files reads one). A file changed in place gets a new mtime, so a new hash."""
    stats = [p.stat() for p in paths]
    ids = [(str(p.resolve()), st.st_ino, st.st_size, st.st_mtime_ns) for p, st in zip(paths, stats, strict=True)]
    STATE.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(STATE, timeout=60)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS sha256 (path TEXT, ino INT, size INT, mtime_ns INT, sha256 TEXT, "
                   "PRIMARY KEY (path, ino, size, mtime_ns))")  # fmt: skip
        asked = json.dumps([i[0] for i in ids])
        rows = db.execute("SELECT * FROM sha256 WHERE path IN (SELECT value FROM json_each(?))", (asked,))
        known = {tuple(row[:4]): row[4] for row in rows}
        out = []
        for path, id_ in zip(paths, ids, strict=True):
            if (found := known.get(id_)) is None:
                found = hashlib.sha256(read(path)).hexdigest()
                db.execute("DELETE FROM sha256 WHERE path = ?", (id_[0],))
                db.execute("INSERT INTO sha256 VALUES (?, ?, ?, ?, ?)", (*id_, found))
            out.append(found)
    return out


def stored(stage: str, datum: str) -> dict[str, Path] | None:
    """The paths of the files stored under ``datum``, or None when there are none (or a kill left
    them partial). Never write to them: link or read them (``link``)."""
    folder = ROOT / stage / datum[:2] / datum
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return None
    names = json.loads(manifest.read_text())
    files = {n: folder / n for n in names}
    if not all(p.exists() for p in files.values()):
        return None
    used(manifest)
    return files


def fetch(stage: str, datum: str) -> dict[str, bytes] | None:
    """The files stored under ``datum`` (their bytes), or None when there are none."""
    files = stored(stage, datum)
    return None if files is None else {n: p.read_bytes() for n, p in files.items()}


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
    if not all((path / n).exists() for n in names):
        return None
    used(path / "manifest.json")
    return path


def link(stored: Path, dest: Path) -> None:
    """Put a stored datum file at ``dest`` as a hard link (no bytes written), or a copy where
    links cannot be made. Stored files are never written again (write_atomic replaces a file, it
    does not write into it); DVC, caching the output, puts its own copy in its place."""
    try:
        os.link(stored, dest)
    except OSError:
        shutil.copyfile(stored, dest)


def folders(stage: str, datums: list[str]) -> list[Path]:
    """The folder of each of ``datums``, which the stage has just stored or found whole."""
    out = [folder(stage, d) for d in datums]
    if any(f is None for f in out):  # only a concurrent prune could do this
        raise BadInput(f"{stage}: a stored datum vanished from {ROOT} while the stage ran; run it again")
    return out  # type: ignore[return-value]


def has(stage: str, datum: str) -> bool:
    """Whether ``datum`` is stored whole (its manifest written)."""
    return (ROOT / stage / datum[:2] / datum / "manifest.json").exists()


def used(manifest: Path) -> None:
    """Mark a datum used now (its manifest's mtime), for `prune`."""
    with contextlib.suppress(OSError):
        os.utime(manifest)


def prune(days: float, dry_run: bool = False) -> dict[str, int]:
    """Remove the datums no run has used for ``days`` days, and what killed runs left half-stored
    (a folder without a manifest, an hour old); forget the hashes of files that are gone.
    Returns the datums kept and removed, and the bytes freed."""
    now = time.time()
    counts = {"kept": 0, "removed": 0, "bytes_freed": 0}
    for manifest_dir in sorted(ROOT.glob("*/*/*")) if ROOT.exists() else []:
        manifest = manifest_dir / "manifest.json"
        age = now - (manifest if manifest.exists() else manifest_dir).stat().st_mtime
        if age < (days * 86400 if manifest.exists() else 3600):
            counts["kept"] += 1
            continue
        counts["removed"] += 1
        # A file an output still links to stays on disk: only the last link frees its bytes.
        files = [f.stat() for f in manifest_dir.rglob("*") if f.is_file()]
        counts["bytes_freed"] += sum(st.st_size for st in files if st.st_nlink == 1)
        if not dry_run:
            shutil.rmtree(manifest_dir, ignore_errors=True)
    if STATE.exists() and not dry_run:
        with contextlib.closing(sqlite3.connect(STATE, timeout=60)) as db, db:
            paths = [row[0] for row in db.execute("SELECT DISTINCT path FROM sha256")]
            gone = [(p,) for p in paths if not Path(p).exists()]
            db.executemany("DELETE FROM sha256 WHERE path = ?", gone)
    return counts
