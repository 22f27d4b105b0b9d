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

A stored datum is verified before it is reused: its manifest records the size and sha256 of every
file, and a lookup checks both (hashing the store costs a read of it at ~1.6 GB/s, measured on an
append in docs/benchmarks.md). A datum that fails is a miss: a warning names it and its
partition, the datum is removed and the partition computed again, so a damaged file never flows
into an output. `python -m flows verify` checks the whole store and the remembered file hashes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.storage import code
from flows.storage.files import commit, write_atomic
from steps import BadInput

ROOT = Path(".cairn") / "datums"
MANIFEST = "manifest.json"
# The partition each datum key of this process was made for (``key``): the manifest records it,
# and a warning about a damaged datum names it.
_PARTITIONS: dict[str, str] = {}
# Datums this process stored or verified: a second lookup of one in the same run (clean looks a
# partition up, then links it) checks sizes only, not the bytes again.
_VERIFIED: set[Path] = set()


def log() -> logging.Logger:
    return logging.getLogger("cairn")


def key(stage: str, name: str, data: bytes | str, params: Any) -> str:
    """The key of partition ``name`` in ``stage`` under ``params``; ``data`` is its bytes or their
    sha256 (hex, as ``file_sha256`` gives it). ``stage`` may name a kind of datum within a stage
    ('clean-settle'): the code hashed is the stage's, the word before the '-'."""
    digest = hashlib.sha256()
    for part in (stage, name, code.digest(stage.partition("-")[0]), json.dumps(params, sort_keys=True, default=str)):
        digest.update(part.encode() + b"\0")
    digest.update(bytes.fromhex(data) if isinstance(data, str) else hashlib.sha256(data).digest())
    out = digest.hexdigest()
    _PARTITIONS[out] = name
    return out


STATE = Path(".cairn") / "state.sqlite"
_TABLE = ("CREATE TABLE IF NOT EXISTS sha256 (path TEXT, ino INT, size INT, mtime_ns INT, sha256 TEXT, "
          "PRIMARY KEY (path, ino, size, mtime_ns))")  # fmt: skip


def file_sha256(paths: list[Path], sha256: Callable[[Path], str]) -> list[str]:
    """``sha256(path)`` (hex, of the bytes as the stage reads them) for each path, remembered by
    the file's inode, size and modification time as DVC's own state does: an unchanged file is not read again (an append
    to a folder of 100 files reads one). A file changed in place gets a new mtime, so a new hash;
    one edited in place that keeps its size and mtime is not read again (DVC's rule too):
    ``verify`` finds it. A damaged state file is removed and rebuilt (every file hashed once)."""
    try:
        return _file_sha256(paths, sha256)
    except sqlite3.DatabaseError as err:
        if not _state_damaged(err):
            raise
        log().warning("%s is damaged (%s): removed; it is rebuilt as the files are hashed again", STATE, err)
        _remove_state()
        return _file_sha256(paths, sha256)


def _file_sha256(paths: list[Path], sha256: Callable[[Path], str]) -> list[str]:
    stats = [p.stat() for p in paths]
    ids = [(str(p.resolve()), st.st_ino, st.st_size, st.st_mtime_ns) for p, st in zip(paths, stats, strict=True)]
    STATE.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(STATE, timeout=60)) as db, db:
        db.execute(_TABLE)
        asked = json.dumps([i[0] for i in ids])
        rows = db.execute("SELECT * FROM sha256 WHERE path IN (SELECT value FROM json_each(?))", (asked,))
        known = {tuple(row[:4]): row[4] for row in rows}
        out = []
        for path, id_ in zip(paths, ids, strict=True):
            if (found := known.get(id_)) is None:
                found = sha256(path)
                if not (isinstance(found, str) and len(found) == 64):
                    raise TypeError(f"file_sha256: {sha256!r} gave {type(found).__name__}, not a sha256 in hex")
                db.execute("DELETE FROM sha256 WHERE path = ?", (id_[0],))
                db.execute("INSERT INTO sha256 VALUES (?, ?, ?, ?, ?)", (*id_, found))
            out.append(found)
    return out


def _state_damaged(err: sqlite3.DatabaseError) -> bool:
    """Whether ``err`` says the state file is damaged, not merely busy (another process writing)."""
    busy = isinstance(err, sqlite3.OperationalError) and any(w in str(err) for w in ("locked", "busy"))
    return not busy


def _remove_state() -> None:
    for path in (STATE, *(STATE.with_name(STATE.name + s) for s in ("-journal", "-wal", "-shm"))):
        path.unlink(missing_ok=True)


def _folder(stage: str, datum: str) -> Path:
    return ROOT / stage / datum[:2] / datum


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


LEGACY = "its manifest records no sizes and hashes (stored by an earlier cairn)"


def damage(folder: Path, content: bool = True) -> str | None:
    """What is wrong with the datum stored in ``folder`` (a sentence), or None when every file the
    manifest lists has its recorded size and, with ``content``, its recorded sha256."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        return f"its manifest is unreadable ({err})"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        return LEGACY
    for name, want in sorted(files.items()):
        try:
            size = (folder / name).stat().st_size
        except FileNotFoundError:
            return f"{name} is missing"
        if size != want.get("size"):
            return f"{name} is {size} bytes; the manifest says {want.get('size')}"
        if content and (got := _sha256(folder / name)) != want.get("sha256"):
            return f"{name} has sha256 {got[:16]}...; the manifest says {str(want.get('sha256'))[:16]}..."
    return None


def _partition(folder: Path) -> str:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if name := json.loads((folder / MANIFEST).read_text()).get("partition"):
            return str(name)
    return _PARTITIONS.get(folder.name, "unknown")


_legacy_said = False


def _discard(stage: str, folder: Path, problem: str) -> None:
    """Remove a datum that failed its check, saying which and why (an earlier cairn's: once)."""
    global _legacy_said
    partition = _partition(folder)
    if problem != LEGACY:
        log().warning("datum store: the %s datum %s (partition %s) is damaged: %s; removed, the partition is "
                      "computed again", stage, folder, partition, problem)  # fmt: skip
    elif not _legacy_said:
        _legacy_said = True
        log().info("datum store: datums stored without sizes and hashes (an earlier cairn) are computed again")
    shutil.rmtree(folder, ignore_errors=True)
    _VERIFIED.discard(folder)


def _whole(stage: str, datum: str) -> dict[str, Path] | None:
    """The files of ``datum`` when it is stored whole and sound, else None (a damaged one removed)."""
    folder = _folder(stage, datum)
    manifest = folder / MANIFEST
    if not manifest.exists():
        return None
    if (problem := damage(folder, content=folder not in _VERIFIED)) is not None:
        _discard(stage, folder, problem)
        return None
    _VERIFIED.add(folder)
    used(manifest)
    return {n: folder / n for n in json.loads(manifest.read_text())["files"]}


def stored(stage: str, datum: str) -> dict[str, Path] | None:
    """The paths of the files stored under ``datum``, or None when there are none, a kill left
    them partial, or they fail their sizes and hashes (then the datum is removed with a warning,
    and the caller computes the partition again). Never write to them: link or read them."""
    return _whole(stage, datum)


def fetch(stage: str, datum: str) -> dict[str, bytes] | None:
    """The files stored under ``datum`` (their bytes), or None when there are none."""
    files = stored(stage, datum)
    return None if files is None else {n: p.read_bytes() for n, p in files.items()}


def store(stage: str, datum: str, files: dict[str, bytes | str | Path]) -> None:
    """Keep ``files`` under ``datum`` (bytes, or a file written beside the store, moved in: a
    partition too big to hold in memory); the manifest (each file's size and sha256, the
    partition's name) is written last, so a killed store is a miss."""
    folder = _folder(stage, datum)
    recorded = {}
    for name, data in files.items():
        if isinstance(data, Path):
            folder.mkdir(parents=True, exist_ok=True)
            recorded[name] = {"size": data.stat().st_size, "sha256": _sha256(data)}
            commit(data, folder / name)
        else:
            blob = data.encode() if isinstance(data, str) else data
            write_atomic(folder / name, blob)
            recorded[name] = {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    manifest = {"partition": _PARTITIONS.get(datum), "files": recorded}
    write_atomic(folder / MANIFEST, json.dumps(manifest, sort_keys=True))
    _VERIFIED.add(folder)


def staging(stage: str) -> Path:
    """A folder for files written a piece at a time before ``store`` moves them in (on the store's
    file system, so the move is a rename)."""
    path = ROOT.parent / "staging" / stage  # beside the store, not in it: scrub and prune see datums only
    path.mkdir(parents=True, exist_ok=True)
    return path


def folder(stage: str, datum: str) -> Path | None:
    """The folder of ``datum``'s files, to read one of them, or None when it is not stored whole
    and sound (see ``stored``)."""
    return None if _whole(stage, datum) is None else _folder(stage, datum)


# os.link's errors that mean "no hard link here" (another device, a file system without links, a
# file at its link limit): a copy does. Any other error (the file exists, the folder is gone, the
# disk is full) is an error of the caller's, raised.
NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


def link(stored: Path, dest: Path) -> None:
    """Put a stored datum file at ``dest`` as a hard link (no bytes written), or a copy where
    links cannot be made. Stored files are never written again (write_atomic replaces a file, it
    does not write into it); DVC, caching the output, puts its own copy in its place.
    Raises OSError (FileExistsError when ``dest`` exists) for anything but a link refused."""
    try:
        os.link(stored, dest)
    except OSError as err:
        if err.errno not in NO_LINK:
            raise
        shutil.copyfile(stored, dest)


def folders(stage: str, datums: list[str]) -> list[Path]:
    """The folder of each of ``datums``, which the stage has just stored or found whole."""
    out = [folder(stage, d) for d in datums]
    if any(f is None for f in out):  # only a concurrent prune could do this
        raise BadInput(f"{stage}: a stored datum vanished from {ROOT} while the stage ran; run it again")
    return out  # type: ignore[return-value]


def has(stage: str, datum: str) -> bool:
    """Whether ``datum`` is stored whole (its manifest written; not verified: for estimates)."""
    return (_folder(stage, datum) / MANIFEST).exists()


def used(manifest: Path) -> None:
    """Mark a datum used now (its manifest's mtime), for `prune`."""
    with contextlib.suppress(OSError):
        os.utime(manifest)


def _stored_folders() -> list[Path]:
    return sorted(ROOT.glob("*/*/*")) if ROOT.exists() else []


def prune(days: float, dry_run: bool = False) -> dict[str, int]:
    """Remove the datums no run has used for ``days`` days, and what killed runs left half-stored
    (a folder without a manifest, an hour old); forget the hashes of files that are gone; then
    verify the datums kept (``scrub``), removing damaged ones. Returns the datums kept, removed,
    found damaged, and the bytes freed."""
    now = time.time()
    counts = {"kept": 0, "removed": 0, "bytes_freed": 0, "damaged": 0}
    for manifest_dir in _stored_folders():
        manifest = manifest_dir / MANIFEST
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
        try:
            with contextlib.closing(sqlite3.connect(STATE, timeout=60)) as db, db:
                paths = [row[0] for row in db.execute("SELECT DISTINCT path FROM sha256")]
                gone = [(p,) for p in paths if not Path(p).exists()]
                db.executemany("DELETE FROM sha256 WHERE path = ?", gone)
        except sqlite3.DatabaseError as err:
            if not _state_damaged(err):
                raise
            _remove_state()  # rebuilt by the next run, as file_sha256 does
    if not dry_run:  # what a dry run would keep is checked by `verify --dry-run`
        damaged = scrub(dry_run=False)
        counts["damaged"] = len(damaged)
        counts["kept"] -= len(damaged)
    return counts


def scrub(dry_run: bool = False) -> list[tuple[Path, str, str]]:
    """Check every datum stored whole against its manifest (sizes and sha256); remove the
    damaged ones unless ``dry_run``. Returns (folder, partition, what is wrong) for each. A
    folder without a manifest (a store under way, or one a kill cut short) is prune's."""
    out = []
    for folder in _stored_folders():
        if not (folder / MANIFEST).exists():
            continue
        if (problem := damage(folder)) is not None:
            out.append((folder, _partition(folder), problem))
            if not dry_run:
                shutil.rmtree(folder, ignore_errors=True)
                _VERIFIED.discard(folder)
    return out


def verify_hashes(sha256: Callable[[Path], str], under: list[Path] | None = None,
                  dry_run: bool = False) -> tuple[int, list[tuple[str, str]], int]:  # fmt: skip
    """Check the remembered file hashes (``STATE``) against the bytes, ``sha256`` hashing a file as
    the stages that hashed it read it (decompressed); only files under ``under`` when given. A file
    whose inode, size and mtime still match its row but whose bytes do not was edited in place
    keeping its size and mtime (or the row is damaged): unless ``dry_run``, its row is forgotten
    and its mtime set to now, so that cairn and DVC (whose state keeps the same shortcut) hash it
    again. Rows of files gone or changed since are forgotten too (stale, not damage). A state
    file SQLite cannot read is removed, to be rebuilt. Returns (rows checked, [(path, what is
    wrong)], rows forgotten as stale)."""
    if not STATE.exists():
        return 0, [], 0
    roots = [str(p.resolve()) for p in under] if under is not None else None
    wrong: list[tuple[str, str]] = []
    stale, checked = [], 0
    try:
        with contextlib.closing(sqlite3.connect(STATE, timeout=60)) as db, db:
            db.execute(_TABLE)
            if (result := db.execute("PRAGMA integrity_check").fetchone()[0]) != "ok":
                raise sqlite3.DatabaseError(result)
            for path, ino, size, mtime_ns, remembered in db.execute("SELECT * FROM sha256").fetchall():
                if roots is not None and not any(path == r or path.startswith(r + os.sep) for r in roots):
                    continue
                checked += 1
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    stale.append(path)
                    continue
                if (st.st_ino, st.st_size, st.st_mtime_ns) != (ino, size, mtime_ns):
                    stale.append(path)
                    continue
                if (now := sha256(Path(path))) != remembered:
                    wrong.append((path, f"remembered sha256 {remembered[:16]}... but its bytes have {now[:16]}... "
                                        "(edited in place keeping its size and mtime, or a damaged row)"))  # fmt: skip
            if not dry_run:
                db.executemany("DELETE FROM sha256 WHERE path = ?", [(p,) for p in stale + [w[0] for w in wrong]])
    except sqlite3.DatabaseError as err:
        if not _state_damaged(err):
            raise
        wrong.append((str(STATE), f"SQLite cannot read it ({err}); removed, rebuilt as files are hashed again"))
        if not dry_run:
            _remove_state()
        return checked, wrong, 0
    if not dry_run:
        for path, _ in wrong:
            with contextlib.suppress(OSError):
                os.utime(path)
    return checked, wrong, len(stale)
