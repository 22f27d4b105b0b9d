"""clean flow: ingested partitions -> clean rows, quarantined rows with reasons, a report.

Partition by partition, in bounded memory. What needs one partition alone (parsing, checking
each row, the digests of its key and values) is a datum (flows/storage/datums.py): kept by the
partition's bytes, the schema and cairn's code, computed on the fan-out runner only for new or
changed partitions. What needs all of them (a key or row repeating one in an earlier partition,
``max_quarantined`` over all rows, the profile) is settled over the digests alone (read one
column at a time, and spilled to disk in buckets by digest when there are many, so that memory
stays flat as the corpus grows), then the outputs are written one partition at a time: the same
bytes whether a partition was reused or computed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flows import config, fanout
from flows.storage import datums
from flows.storage.files import commit, replace_dir, staged, write_atomic, write_json
from flows.storage.raw import sha256 as raw_sha256
from flows.storage.tables import ParquetAppender, parquet_bytes, read_parquet
from flows.tracking import attach, log, report, stage_flow
from steps import clean as steps
from steps import dedupe
from steps.dedupe import Digests
from steps.errors import BadInput
from steps.schema import resolve_features
from steps.tally import Profile, Tally

PAIRPLOT_ROWS = 2000
# Digests held at once by the duplicate check: 24 bytes a row, ~0.3 GB with pandas' hashing.
# More rows than this are spilled to disk in buckets by digest, one bucket checked at a time.
BUCKET_ROWS = 1 << 22
SPILL = np.dtype([("words", "<u8", (2,)), ("position", "<i8")])


def datum_key(stem: str, data: bytes | str, schema: dict) -> str:
    return datums.key("clean", stem, data, {"schema": schema})


def check_batch(payload: tuple[dict, list[tuple[str, bytes]]]) -> list[dict[str, bytes]]:
    """The checks of a batch of ingested partitions, from their Parquet bytes alone (a fan-out
    worker may be another process or machine): the parsed rows and the per-row checks."""
    schema, parts = payload
    out = []
    for _, data in parts:
        checked = steps.check(read_parquet(pa.BufferReader(data)), schema)
        out.append({"parsed.parquet": parquet_bytes(checked.parsed), "checks.parquet": parquet_bytes(checked.checks)})
    return out


def checked_partitions(files: list[Path], schema: dict) -> tuple[list[str], list[Path], int]:
    """The datum key and folder of each ingested partition's checks, in order (computing the
    missing ones on the fan-out runner), and how many were reused. An ingested file's hash is
    remembered by its inode and mtime (ingest links reused partitions): not read again."""
    shas = datums.file_sha256(files, raw_sha256)
    keys = [datum_key(f.stem, sha, schema) for f, sha in zip(files, shas, strict=True)]
    misses = [(f, k) for f, k in zip(files, keys, strict=True) if datums.folder("clean", k) is None]
    run = config.load().execution
    plan = fanout.batches(misses, [f.stat().st_size for f, _ in misses], run)
    if misses:
        log().info("clean: %d partition(s) to check in %d batch(es) on %s", len(misses), len(plan), run.runner)
    payloads = ((schema, [(f.stem, f.read_bytes()) for f, _ in batch]) for batch in plan)
    for batch, results in zip(plan, fanout.fan_out(check_batch, payloads, "clean", run), strict=True):
        for (_, key), files_ in zip(batch, results, strict=True):
            datums.store("clean", key, files_)
    return keys, datums.folders("clean", keys), len(files) - len(misses)


def pairplot(sample: pa.Table, numeric: list[str], label: str | None, title: str) -> bytes:
    """The pair plot of ``sample``; drawn again only when the sample or its settings change (an
    appended partition rarely changes the first rows, and drawing costs seconds)."""
    datum = datums.key("clean-pairplot", title, parquet_bytes(sample), {"numeric": numeric, "label": label})
    if (stored := datums.fetch("pairplot", datum)) is not None:
        return stored["pairplot.png"]
    from steps.figures import pairplot_png  # matplotlib: only when drawing

    png = pairplot_png(sample, numeric, label, title)
    datums.store("pairplot", datum, {"pairplot.png": png})
    return png


def ingested_files(ingested: Path) -> list[Path]:
    files = sorted(ingested.glob("*.parquet")) if ingested.is_dir() else []
    if not files:
        raise BadInput(f"clean: input folder '{ingested}' has no .parquet files (run ingest first)")
    return files


def digests(folders: list[Path]) -> tuple[Callable[[str], Iterator[pa.ChunkedArray]], int]:
    """A reader of one digest column of every partition's checks, in order, and the rows in all."""
    rows = sum(pq.read_metadata(folder / "checks.parquet").num_rows for folder in folders)

    def column(name: str) -> Iterator[pa.ChunkedArray]:
        for folder in folders:
            yield read_parquet(folder / "checks.parquet", columns=[name]).column(name)

    return column, rows


def spilled(rows: int, bucket_rows: int = BUCKET_ROWS) -> Callable[[Iterable[Digests]], Iterator[Digests]]:
    """A grouping for ``dedupe.duplicates`` that holds ~``bucket_rows`` digests at a time: every
    chunk is split by the top bits of its digests into bucket files (equal digests share one),
    then each bucket is read back whole, positions ascending. Few rows: all in memory."""
    bits = max(0, int(np.ceil(np.log2(max(rows, 1) / bucket_rows))))
    if bits == 0:
        return dedupe.together

    def group(chunks: Iterable[Digests]) -> Iterator[Digests]:
        datums.ROOT.parent.mkdir(exist_ok=True)  # .cairn/: ignored by git, on the data's disk
        with tempfile.TemporaryDirectory(prefix="clean-digests-", dir=datums.ROOT.parent) as tmp:
            paths = [Path(tmp) / f"{b}.bin" for b in range(1 << bits)]
            handles = [open(path, "wb") for path in paths]  # noqa: SIM115 (closed below, all at once)
            try:
                for digests, positions in chunks:
                    bucket = dedupe.bucket_of(digests, bits)
                    order = np.argsort(bucket, kind="stable")  # positions stay ascending in a bucket
                    records = np.empty(len(order), SPILL)
                    records["words"], records["position"] = digests[order], positions[order]
                    bounds = np.searchsorted(bucket[order], np.arange(len(handles) + 1))
                    for b, handle in enumerate(handles):
                        handle.write(records[bounds[b] : bounds[b + 1]].tobytes())
            finally:
                for handle in handles:
                    handle.close()
            for path in paths:
                records = np.fromfile(path, SPILL)
                path.unlink()
                yield records["words"], records["position"]

    return group


def rare_classes(folders: list[Path], schema: dict, min_rows: int) -> dict:
    """The rare classes over every partition (steps.clean.rare_classes), from each partition's
    checked rows, one label column at a time; none when the label is not a text label."""
    if not min_rows or not folders:
        return {}
    label = steps.learned_label(pq.read_schema(folders[0] / "parsed.parquet").empty_table(), schema)
    if label is None:
        return {}
    counts: dict = {}
    for folder in folders:
        parsed = read_parquet(folder / "parsed.parquet", columns=[label])
        checks = read_parquet(folder / "checks.parquet", columns=["before_kind", "after_kind"])
        for value, n in steps.class_counts(steps.Checked(parsed, checks), label).items():
            counts[value] = counts.get(value, 0) + n
    return steps.rare_classes(counts, min_rows)


def settled(
    file: Path, checked_in: Path, checked_key: str, rows: dedupe.Marks, schema: pa.Schema | None,
    rare: dict, min_rows: int, label: str | None,
) -> dict[str, Path]:  # fmt: skip
    """One partition settled under its marks and the rare classes: rows.parquet (kept),
    quarantine.parquet (when any row is bad) and settle.json (counts, profile summary, first bad
    row). A datum too, kept by the partition's checks, its marks and the rare classes: when an
    appended partition changes no earlier one's, those are linked, not read and written again."""
    marked = checked_key.encode() + b"|" + rows.digest()
    if rare:  # only then: a partition's datum key stays as it was where no class is rare
        marked += b"|" + json.dumps([min_rows, sorted(map(str, rare.items()))]).encode()
    datum = datums.key("clean-settle", file.stem, marked, {})
    if (stored := datums.stored("clean-settle", datum)) is not None:
        return stored
    checked = steps.Checked(read_parquet(checked_in / "parsed.parquet"), read_parquet(checked_in / "checks.parquet"))
    rare_rows = steps.rare_rows(checked, label, rare, min_rows)
    kept, bad, counts = steps.settle(lambda: read_parquet(file), checked, rows, rare_rows)
    if schema is not None and not kept.schema.equals(schema):
        raise BadInput(f"clean: partition {file.name} has other columns or types than the ones before it: "
                         f"{kept.schema} vs {schema}")  # fmt: skip
    summary = {"kept": kept.num_rows, "counts": counts, "profile": Profile.summary(kept),
               "first_bad": None if bad is None else bad.slice(0, 1).to_pylist()[0]}  # fmt: skip
    files = {"rows.parquet": parquet_bytes(kept), "settle.json": json.dumps(summary, sort_keys=True, default=str)}
    if bad is not None:
        files["quarantine.parquet"] = parquet_bytes(bad)
    datums.store("clean-settle", datum, files)
    return datums.stored("clean-settle", datum)  # type: ignore[return-value]


@stage_flow("clean")
def clean(workload: str, ingested: Path, out: Path) -> dict:
    """Write ``out``/rows/ (the kept rows: one Parquet file per partition), quarantine.parquet,
    report.json (a DVC metric), and the data profile: profile.json (type, missing, min/max/mean
    per column) and pairplot.png."""
    params = config.workload(workload)
    files = ingested_files(ingested)
    schema = resolve_features(params.settings("schema"), pq.read_schema(files[0]).names)
    keys, folders, reused = checked_partitions(files, schema)
    read_digests, rows = digests(folders)
    dups = dedupe.duplicates(read_digests, spilled(rows))
    quarantine_repeats = params.clean.dedupe
    rare = rare_classes(folders, schema, params.clean.min_class_rows)
    if rare:
        log().warning("clean@%s: label(s) %s have fewer than clean.min_class_rows %d rows: quarantined as rare "
                      "classes (list the labels in schema.classes to keep them)", workload,
                      ", ".join(f"'{c}' ({n})" for c, n in rare.items()), params.clean.min_class_rows)  # fmt: skip
    tally, profile, sample = Tally(quarantine_repeats, dups.repeats, rare), Profile(), []
    key_of: dict[int, str] = {}
    first_bad: dict | None = None
    offset, kept_schema = 0, None
    with replace_dir(out / "rows") as rows_tmp, staged(out / "quarantine.parquet") as bad_tmp:
        bad_out = ParquetAppender(bad_tmp)
        for file, folder, key in zip(files, folders, keys, strict=True):
            n = pq.read_metadata(folder / "checks.parquet").num_rows
            keys_of = lambda f=folder: read_parquet(f / "parsed.parquet", columns=["key"]).column("key")  # noqa: E731
            marks = dedupe.marks(dups, offset, n, quarantine_repeats, key_of, keys_of)
            offset += n
            part = settled(file, folder, key, marks, kept_schema, rare, params.clean.min_class_rows, schema["label"])
            kept = rows_tmp / f"{file.stem}.parquet"
            datums.link(part["rows.parquet"], kept)
            kept_schema = kept_schema or pq.read_schema(kept)
            summary = json.loads(part["settle.json"].read_text())
            tally.add(summary["kept"], summary["counts"])
            profile.add(summary["profile"])
            if "quarantine.parquet" in part:
                bad_out.write(read_parquet(part["quarantine.parquet"]), f"clean: partition {file.name}")
                first_bad = first_bad or summary["first_bad"]
            if sum(t.num_rows for t in sample) < PAIRPLOT_ROWS:
                sample.append(read_parquet(kept).slice(0, PAIRPLOT_ROWS))
        bad_out.close(steps.quarantine_schema(pq.read_schema(files[0])))
        result = tally.report()
        read = ingested / "read.json"  # how ingest read each file (blank lines it skipped)
        if read.exists():
            partitions = json.loads(read.read_text())["partitions"].values()
            result["blank_lines_skipped"] = sum(p.get("blank_lines_skipped", 0) for p in partitions)
            # Only when there are any: the report of data whose columns are all used stays as it was.
            if unused := sorted({c for p in partitions for c in p.get("columns_unused", [])}):
                result["columns_unused"] = unused
        # Too many bad rows: the quarantine and the counts are written all the same, for the user
        # to look at; the kept rows are not, so nothing downstream can run on them.
        shutil.rmtree(out / "rows", ignore_errors=True)
        commit(bad_tmp, out / "quarantine.parquet")
        write_json(out / "report.json", result)
        steps.check_share(result, first_bad, params.settings("clean"), str(out / "quarantine.parquet"))
    # The profile of what training will see: typed values, quarantined rows left out.
    write_json(out / "profile.json", profile.result())
    kept_sample = pa.concat_tables(sample).slice(0, PAIRPLOT_ROWS)
    numeric = [c for c in schema.get("features") or [] if pa.types.is_floating(kept_sample.schema.field(c).type)]
    write_atomic(out / "pairplot.png", pairplot(kept_sample, numeric, schema["label"], f"{workload}: clean rows"))
    if result["rows_quarantined"]:
        bad = result["rows_quarantined"]
        log().warning("clean@%s: %d rows quarantined (%s); rows and reasons in %s", workload, bad,
                      result["quarantined_by_reason"], out / "quarantine.parquet")  # fmt: skip
    if reused:
        log().info("clean@%s: %d partition(s) computed, %d reused unchanged (flows/storage/datums.py)", workload,
                   len(files) - reused, reused)  # fmt: skip
    report(f"clean-{workload}", f"clean@{workload}", result)
    attach(f"clean-{workload}", images={"pairplot": out / "pairplot.png"})
    return result
