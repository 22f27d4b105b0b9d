"""The datum store is verified, not trusted (issue #30): a stored datum whose bytes no longer
match its manifest is a miss (warned about, removed, computed again), `python -m flows verify`
scrubs the store and the remembered file hashes, and a damaged `.cairn/state.sqlite` is rebuilt."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from conftest import blobs_csv, from_scratch, lock_entries, only_workloads, run

from flows.storage import datums
from flows.storage.raw import sha256 as raw_sha256


def flip_byte(path: Path) -> None:
    """Change one byte in the middle of ``path`` in place, keeping its size and its mtime (so
    only the bytes can tell)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with path.open("r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def datum_of(repo: Path, stage: str, partition: str) -> Path:
    """The folder of the one datum of ``stage`` stored for ``partition`` in ``repo``."""
    found = [m.parent for m in (repo / datums.ROOT / stage).glob(f"*/*/{datums.MANIFEST}")
             if json.loads(m.read_text())["partition"] == partition]  # fmt: skip
    assert len(found) == 1, (stage, partition, found)
    return found[0]


# stage: (the partition whose stored file is damaged, that file)
DAMAGED = {
    "ingest": ("part-1.csv", "0.parquet"),
    "clean": ("part-1", "checks.parquet"),
    "clean-settle": ("part-1", "rows.parquet"),
    "split": ("part-1", "train.parquet"),
    "score": ("new-1.csv", "scores.parquet"),
}
# Damage in every datum store a run reads, at once (each store is looked up whatever the others
# hold: a partition computed again gives the same bytes, so the next stage's key is the same):
# (the stages damaged, the file that lands, the target).
RUNS = {
    "ingest-to-split": (("ingest", "clean", "clean-settle", "split"), "raw/part-3.csv", "split@blobs"),
    "score": (("score",), "inbox/new-2.csv", "score@blobs"),
}


@pytest.mark.parametrize("damaged_run", RUNS)
def test_a_flipped_byte_in_a_stored_datum_is_a_miss_and_the_outputs_are_from_scratch(
    blobs_repo: Path, tmp_path_factory, damaged_run: str
):
    stages, landed, target = RUNS[damaged_run]
    grown = blobs_repo  # after a full run: every partition stored
    damaged = {stage: datum_of(grown, stage, DAMAGED[stage][0]) for stage in stages}
    for stage, folder in damaged.items():
        flip_byte(folder / DAMAGED[stage][1])
    (grown / "data/blobs" / landed).write_text(blobs_csv(40, seed=3))
    result = run(["dvc", "repro", target], grown)
    log = result.stdout + result.stderr
    for stage, folder in damaged.items():
        partition, name = DAMAGED[stage]
        warning = (f"datum store: the {stage} datum {folder.relative_to(grown)} (partition {partition}) is damaged: "
                   f"{name} has sha256")  # fmt: skip
        assert warning in log
        assert datums.damage(folder) is None, stage  # stored again, sound
    assert log.count("removed, the partition is computed again") == len(stages)

    scratch = from_scratch(tmp_path_factory, only_workloads("blobs"), {f"data/blobs/{landed}": blobs_csv(40, seed=3)},
                           target)  # fmt: skip
    ours, theirs = lock_entries(grown, scratch)
    assert ours == theirs
    for folder in {stage.partition("@")[0] for stage in theirs} & {"ingest", "clean", "split", "score"}:
        ours = {p.relative_to(grown): p.read_bytes() for p in (grown / "data/blobs" / folder).rglob("*") if p.is_file()}
        theirs = {p.relative_to(scratch): p.read_bytes() for p in (scratch / "data/blobs" / folder).rglob("*")
                  if p.is_file()}  # fmt: skip
        assert ours == theirs, folder


def test_a_damaged_state_file_is_rebuilt_not_a_traceback(blobs_repo: Path, tmp_path_factory):
    grown = blobs_repo
    state = grown / datums.STATE
    data = bytearray(state.read_bytes())
    data[:100] = b"\xff" * 100  # SQLite's header: "file is not a database"
    state.write_bytes(data)
    (grown / "data/blobs/raw/part-3.csv").write_text(blobs_csv(40, seed=3))
    result = run(["dvc", "repro", "split@blobs"], grown)
    log = result.stdout + result.stderr
    assert "state.sqlite is damaged (file is not a database): removed; it is rebuilt" in log
    assert "Traceback" not in log
    files = {"data/blobs/raw/part-3.csv": blobs_csv(40, seed=3)}
    scratch = from_scratch(tmp_path_factory, only_workloads("blobs"), files, "split@blobs")
    ours, theirs = lock_entries(grown, scratch)
    assert ours == theirs
    with sqlite3.connect(state) as db:  # rebuilt: the files hashed again are remembered
        assert db.execute("SELECT count(*) FROM sha256").fetchone()[0] >= 3


@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> Path:
    """An empty working folder for the datum store (a fresh process's in-memory checks too)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datums, "_VERIFIED", set())
    return tmp_path


def test_file_sha256_rebuilds_a_state_file_sqlite_cannot_read(store: Path, caplog):
    (store / "a.csv").write_text("x\n1\n")
    datums.STATE.parent.mkdir(parents=True)
    datums.STATE.write_bytes(b"not a database at all" * 100)
    with caplog.at_level(logging.WARNING, "cairn"):
        assert datums.file_sha256([store / "a.csv"], raw_sha256) == [hashlib.sha256(b"x\n1\n").hexdigest()]
    assert "state.sqlite is damaged" in caplog.text
    reads = []
    assert datums.file_sha256([store / "a.csv"], lambda p: reads.append(p) or raw_sha256(p))
    assert reads == []  # remembered again in the rebuilt file


def test_a_lookup_checks_the_bytes_and_a_second_one_in_the_same_run_the_sizes(store: Path, caplog):
    key = datums.key("split", "part-7", b"rows", {})
    datums.store("split", key, {"train.parquet": b"t" * 1000, "counts.json": "{}"})
    folder = datums.folder("split", key)
    assert folder is not None
    manifest = json.loads((folder / datums.MANIFEST).read_text())
    assert manifest == {"partition": "part-7",
                        "files": {"train.parquet": {"size": 1000, "sha256": hashlib.sha256(b"t" * 1000).hexdigest()},
                                  "counts.json": {"size": 2, "sha256": hashlib.sha256(b"{}").hexdigest()}}}  # fmt: skip
    datums._VERIFIED.clear()  # another process: it checks the bytes again
    flip_byte(folder / "train.parquet")
    with caplog.at_level(logging.WARNING, "cairn"):
        assert datums.stored("split", key) is None
    assert f"the split datum {folder} (partition part-7) is damaged: train.parquet has sha256" in caplog.text
    assert not folder.exists()  # removed: the caller computes and stores it again

    datums.store("split", key, {"train.parquet": b"t" * 1000})
    assert datums.stored("split", key) is not None  # verified once in this process
    (folder / "train.parquet").write_bytes(b"t" * 999)
    assert datums.stored("split", key) is None  # a size is checked at every lookup


def test_a_datum_stored_without_sizes_and_hashes_is_a_quiet_miss(store: Path, caplog):
    folder = datums.ROOT / "ingest" / "ab" / ("ab" * 32)
    folder.mkdir(parents=True)
    (folder / "0.parquet").write_bytes(b"old")
    (folder / datums.MANIFEST).write_text(json.dumps(["0.parquet"]))  # an earlier cairn's manifest
    with caplog.at_level(logging.INFO, "cairn"):
        assert datums.stored("ingest", "ab" * 32) is None
    assert "damaged" not in caplog.text and "computed again" in caplog.text
    assert not folder.exists()


def two_datums() -> tuple[Path, Path]:
    keys = [datums.key("ingest", f"part-{i}.csv", f"bytes {i}".encode(), {}) for i in (1, 2)]
    for k in keys:
        datums.store("ingest", k, {"0.parquet": k.encode() * 100, "meta.json": b"{}"})
    return datums._folder("ingest", keys[0]), datums._folder("ingest", keys[1])


def test_verify_reports_and_removes_a_damaged_datum_and_a_file_edited_in_place(store: Path):
    good, bad = two_datums()
    flip_byte(bad / "0.parquet")
    raw = store / "data/blobs/raw"
    raw.mkdir(parents=True)
    (raw / "a.csv").write_text("x\n1\n")
    (store / "other.csv").write_text("x\n9\n")
    first = datums.file_sha256([raw / "a.csv", store / "other.csv"], raw_sha256)
    # Edited in place keeping its size and mtime: the remembered hash is what the runs see (the
    # same shortcut as DVC's state); verify catches it.
    st = (raw / "a.csv").stat()
    with (raw / "a.csv").open("r+") as f:
        f.write("x\n2\n")
    os.utime(raw / "a.csv", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert datums.file_sha256([raw / "a.csv"], raw_sha256) == first[:1]

    cmd = [sys.executable, "-m", "flows", "verify"]
    dry = run([*cmd, "--dry-run"], store, check=False)
    assert dry.returncode == 1, dry.stderr
    said = dry.stdout
    assert (
        f"1 damaged, reported only (--dry-run)\n  damaged: {bad} (partition part-2.csv): 0.parquet has sha256" in said
    )
    assert f"checked 2 remembered file hash(es): 1 wrong, reported only (--dry-run)\n  wrong: {raw / 'a.csv'}: " in said
    assert bad.exists() and datums.file_sha256([raw / "a.csv"], raw_sha256) == first[:1]

    done = run(cmd, store, check=False)
    assert done.returncode == 1
    assert "1 damaged, removed" in done.stdout and "1 wrong, forgotten" in done.stdout
    assert not bad.exists() and good.exists()
    assert datums.file_sha256([raw / "a.csv"], raw_sha256) == [hashlib.sha256(b"x\n2\n").hexdigest()]
    assert (raw / "a.csv").stat().st_mtime_ns > st.st_mtime_ns  # so that DVC hashes it again too

    again = run(cmd, store)
    assert "0 damaged" in again.stdout and "2 remembered file hash(es): 0 wrong" in again.stdout


def test_verify_of_a_workload_checks_the_hashes_of_its_files_only(store: Path):
    for name in ("blobs", "iris"):
        (store / f"data/{name}/raw").mkdir(parents=True)
        (store / f"data/{name}/raw/a.csv").write_text("x\n1\n")
    files = [store / f"data/{name}/raw/a.csv" for name in ("blobs", "iris")]
    datums.file_sha256(files, raw_sha256)
    for f in files:  # both edited in place, size and mtime kept
        st = f.stat()
        f.write_text("x\n2\n")
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    checked, wrong, stale = datums.verify_hashes(raw_sha256, [Path("data/blobs")])
    assert (checked, [w[0] for w in wrong], stale) == (1, [str(files[0])], 0)


def test_prune_leaves_the_store_verified(store: Path):
    good, bad = two_datums()
    (bad / "0.parquet").write_bytes(b"short")
    assert datums.prune(7, dry_run=True)["damaged"] == 0 and bad.exists()  # a dry run removes nothing
    assert datums.prune(7) == {"kept": 1, "removed": 0, "bytes_freed": 0, "damaged": 1}
    assert good.exists() and not bad.exists()


def test_link_falls_back_to_a_copy_only_where_links_cannot_be_made(tmp_path: Path, monkeypatch):
    stored = tmp_path / "stored.parquet"
    stored.write_bytes(b"scores")
    taken = tmp_path / "taken.parquet"
    taken.write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):  # no longer hidden by a copy over it
        datums.link(stored, taken)
    assert taken.read_bytes() == b"someone else's"
    with pytest.raises(FileNotFoundError):
        datums.link(stored, tmp_path / "no-such-folder" / "out.parquet")

    def refused(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refused)
    datums.link(stored, tmp_path / "copy.parquet")
    assert (tmp_path / "copy.parquet").read_bytes() == b"scores"
    assert (tmp_path / "copy.parquet").stat().st_ino != stored.stat().st_ino
