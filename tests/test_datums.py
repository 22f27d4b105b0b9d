"""Datums: a new or changed raw partition costs that partition, and the result is the bytes of a
from-scratch run (flows/storage/datums.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import blobs_csv, from_scratch, lock_entries, only_workloads, run


def repro(repo: Path, target: str = "split@blobs") -> str:
    result = run(["dvc", "repro", target], repo)
    return result.stdout + result.stderr


def test_an_incremental_run_leaves_the_lock_and_outputs_of_a_full_run(blobs_repo: Path, tmp_path_factory):
    grown = blobs_repo  # after a first run, which computed everything
    raw = grown / "data/blobs/raw"

    # An out-of-order partition that repeats a row of part-2 (a duplicate across partitions),
    # and a changed old partition.
    duplicate = (raw / "part-2.csv").read_text().splitlines()[7]
    others = blobs_csv(20, seed=8).splitlines()[1:]
    (raw / "part-0.csv").write_text("\n".join(["f1,f2,kind", duplicate, *others]) + "\n")
    (raw / "part-2.csv").write_text(blobs_csv(61, seed=2))
    plan = run([sys.executable, "-m", "flows", "plan", "blobs"], grown).stdout.splitlines()
    ingest = r"ingest@blobs +run +[\d.]+ s  dep data/blobs/raw modified \(2 raw file\(s\) to compute, 1 reused\)$"
    assert re.match(ingest, plan[1]), plan
    clean = (r"clean@blobs +run if +[\d.]+ s  ingest@blobs changes its outputs "
             r"\(per partition, as ingest: 2 raw file\(s\) new or changed, 1 not\)$")  # fmt: skip
    assert re.match(clean, plan[2]), plan
    log = repro(grown)
    assert "ingest@blobs: 2 file(s) computed, 1 reused unchanged" in log  # part-1 was not read again
    assert "clean@blobs: 2 partition(s) computed, 1 reused unchanged" in log  # nor checked again

    (raw / "part-1.csv").unlink()  # a removed partition
    log = repro(grown)
    assert "ingest@blobs: 0 file(s) computed, 2 reused unchanged" in log
    assert "clean@blobs: 0 partition(s) computed, 2 reused unchanged" in log

    files = {f"data/blobs/raw/{name}": (raw / name).read_text() for name in ("part-0.csv", "part-2.csv")}
    scratch = from_scratch(tmp_path_factory, only_workloads("blobs"), files, "split@blobs",
                           remove=("data/blobs/raw/part-1.csv",))  # fmt: skip
    ours, theirs = lock_entries(grown, scratch)
    assert ours == theirs and set(theirs) == {"ingest@blobs", "clean@blobs", "split@blobs"}
    for stage in ("ingest", "clean", "split"):
        ours = sorted(p.relative_to(grown) for p in (grown / "data/blobs" / stage).rglob("*") if p.is_file())
        theirs = sorted(p.relative_to(scratch) for p in (scratch / "data/blobs" / stage).rglob("*") if p.is_file())
        assert ours == theirs
        assert all((grown / p).read_bytes() == (scratch / p).read_bytes() for p in ours), stage
    clean = (grown / "data/blobs/clean/report.json").read_text()
    assert '"duplicate_rows_kept": 1' in clean  # across partitions, whatever their order


KILLED_WHILE_STORING = """
import os, signal, sys
from flows.storage import datums, files
from flows.__main__ import main

real = datums.write_atomic
def half_then_die(path, data):
    real(path, data)
    if path.name.endswith(".parquet"):  # a partition's result written, its manifest not yet
        os.kill(os.getpid(), signal.SIGKILL)
datums.write_atomic = half_then_die
sys.exit(main(["STAGE@blobs"]))
"""


GROW = {  # stage: (the file that lands, what the rerun after the kill says)
    "ingest": ("raw/part-3.csv", "ingest@blobs: 1 file(s) computed, 2 reused unchanged"),
    "clean": ("raw/part-3.csv", "clean@blobs: 1 partition(s) computed, 2 reused unchanged"),
    "score": ("inbox/new-2.csv", '"files_computed": 1, "files_reused": 1'),
}


@pytest.mark.parametrize("stage", GROW)
def test_a_kill_during_an_incremental_run_then_a_rerun_gives_the_same_bytes(blobs_repo, tmp_path_factory, stage):
    landed, says = GROW[stage]
    target = "score@blobs" if stage == "score" else "split@blobs"
    grown = blobs_repo  # after a full run
    (grown / "data/blobs" / landed).write_text(blobs_csv(40, seed=3))
    if stage == "clean":
        run(["dvc", "repro", "ingest@blobs"], grown)
    killed = run([sys.executable, "-c", KILLED_WHILE_STORING.replace("STAGE", stage)], grown, check=False)
    assert killed.returncode == -9
    log = repro(grown, target)
    assert says in log  # the half-stored datum: a miss

    scratch = from_scratch(tmp_path_factory, only_workloads("blobs"), {f"data/blobs/{landed}": blobs_csv(40, seed=3)},
                           target)  # fmt: skip
    ours, theirs = lock_entries(grown, scratch)
    assert ours == theirs
    # and the outputs on disk are the bytes those hashes stand for
    assert run(["dvc", "status", "--json", "--with-deps", target], grown).stdout.strip() == "{}"
    assert not [p for p in (grown / "data/blobs").rglob(".*") if p.name != ".gitignore"]  # no leftovers


def test_a_file_hash_is_remembered_until_the_file_changes(tmp_path: Path, monkeypatch):
    """file_sha256 reads a file once; an unchanged file (same inode, size, mtime) is not read
    again, and a file rewritten in place, even to the same size, is."""
    import hashlib
    import os

    from flows.storage import datums, raw

    monkeypatch.chdir(tmp_path)
    reads: list[str] = []

    def read(path: Path) -> str:
        reads.append(path.name)
        return raw.sha256(path)

    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("x\n1\n")
    b.write_text("x\n2\n")
    assert datums.file_sha256([a, b], read) == [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b)]
    assert datums.file_sha256([a, b], read) == datums.file_sha256([a, b], read)
    assert reads == ["a.csv", "b.csv"]  # read once each
    stat = b.stat()
    with b.open("r+") as f:  # in place, same size, then the mtime moved on
        f.write("x\n3\n")
    os.utime(b, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert datums.file_sha256([a, b], read)[1] == hashlib.sha256(b"x\n3\n").hexdigest()
    assert reads == ["a.csv", "b.csv", "b.csv"]


def test_a_stored_file_is_linked_into_an_output_not_copied(tmp_path: Path):
    from flows.storage import datums

    stored = tmp_path / "stored.parquet"
    stored.write_bytes(b"scores")
    datums.link(stored, tmp_path / "out.parquet")
    assert (tmp_path / "out.parquet").read_bytes() == b"scores"
    assert (tmp_path / "out.parquet").stat().st_ino == stored.stat().st_ino


def test_prune_removes_what_no_run_used_for_days_and_half_stored_datums(tmp_path: Path, monkeypatch):
    import os
    import time

    from flows.storage import datums

    monkeypatch.chdir(tmp_path)
    old, recent, hit = ("a" * 64, "b" * 64, "c" * 64)
    for datum in (old, recent, hit):
        datums.store("ingest", datum, {"0.parquet": datum.encode() * 1000})
    week_ago = time.time() - 8 * 86400
    for datum in (old, hit):
        os.utime(datums.ROOT / "ingest" / datum[:2] / datum / "manifest.json", (week_ago, week_ago))
    assert datums.stored("ingest", hit) is not None  # a run used it: not old any more
    half = datums.ROOT / "ingest" / "dd" / ("d" * 64)  # a store a kill cut short: no manifest
    half.mkdir(parents=True)
    (half / "0.parquet").write_bytes(b"x")
    os.utime(half, (week_ago, week_ago))
    os.link(datums.ROOT / "ingest" / "aa" / old / "0.parquet", tmp_path / "output.parquet")  # an output's link

    assert datums.prune(7, dry_run=True) == {"kept": 2, "removed": 2, "bytes_freed": 139, "damaged": 0}
    assert half.exists()
    assert datums.prune(7) == {"kept": 2, "removed": 2, "bytes_freed": 139, "damaged": 0}  # the linked 64 kB stay
    assert datums.stored("ingest", old) is None and not half.exists()
    assert datums.stored("ingest", recent) and datums.stored("ingest", hit)
    assert (tmp_path / "output.parquet").read_bytes() == old.encode() * 1000
    result = run([sys.executable, "-m", "flows", "prune", "--days", "0"], tmp_path)
    assert "removed 2 datum(s) unused for 0 day(s), 0.1 MB; kept 0" in result.stdout
