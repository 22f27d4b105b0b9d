"""The shape of every ingested table: cairn's own columns (``key``, ``partition``,
``problem``), the label and the features in schema order with the schema's types; the columns
params name, checked against a file's; and the file name of an ingested partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from steps import arrow
from steps.errors import IngestError
from steps.schema import resolve_features

# cairn's own columns of every ingested table (``arrow_schema``).
OWN = ("key", "partition", "problem")


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
    if schema["label"] is not None:  # None: rows to score, which have no label (flows/score.py)
        fields.append(pa.field(schema["label"], pa.string() if schema["label"] in text else label_type))
    if schema.get("image"):
        size = int(np.prod(schema["image"]["shape"]))
        fields.append(pa.field(schema["image"]["column"], pa.list_(pa.float32(), size)))
    else:
        fields += [pa.field(n, pa.string() if n in text else pa.float64()) for n in schema["features"]]
    fields.append(pa.field("problem", pa.string()))
    return pa.schema(fields)


def with_keys(table: pa.Table, partition: str, schema: dict[str, Any], rows: Sequence[int] | None = None) -> pa.Table:
    """Add ``key`` and ``partition``: the key column from params, else '<partition>:<n>', where n
    is the row's line in a text file (``rows``) or its row number from 1 in any other file, so
    a key also tells a user where to look."""
    if schema.get("key"):
        keys = pc.cast(table.column(schema["key"]), pa.string())
    else:
        numbers = arrow.numbers(np.asarray(rows if rows is not None else np.arange(1, table.num_rows + 1), np.int64))
        keys = pc.binary_join_element_wise(arrow.text(f"{partition}:"), pc.cast(numbers, pa.string()), arrow.text(""))
    parts = pa.repeat(arrow.text(partition), table.num_rows)
    # A file's own 'key', 'partition' or 'problem' (common in exports) makes way for cairn's: the
    # schema cannot need it (``require_columns`` refuses that), so it is one more unused column.
    table = table.drop_columns([c for c in OWN if c in table.column_names])
    return table.append_column("key", keys).append_column("partition", parts)


def project(
    table: pa.Table, partition: str, schema: dict[str, Any], rows: Sequence[int] | None = None, keep_problem=False
) -> pa.Table:
    """Keep only the schema's columns, in schema order, with the schema's types. ``keep_problem``:
    the table's 'problem' column is cairn's (cells that are not numbers), not the file's."""
    label_type = table.schema.field(schema["label"]).type if schema["label"] is not None else pa.null()
    if pa.types.is_integer(label_type):
        label_type = pa.int64()
    elif not pa.types.is_string(label_type):
        label_type = pa.string()
    target = arrow_schema(schema, label_type)
    if schema.get("image"):
        check_image_sizes(table.column(schema["image"]["column"]), partition, schema["image"], rows)
    problem = table.column("problem") if keep_problem else pa.nulls(table.num_rows, pa.string())
    table = with_keys(table, partition, schema, rows).append_column("problem", problem)
    return pa.table([pc.cast(table.column(f.name), f.type) for f in target], schema=target)


def check_image_sizes(
    column: pa.ChunkedArray, partition: str, image: dict[str, Any], rows: Sequence[int] | None
) -> None:
    """IngestError naming the file (and the row) when the image column does not hold images of
    the schema's shape: Arrow's cast would only say that list sizes differ. A missing image is
    clean's to quarantine, not an error."""
    size, shape, name = int(np.prod(image["shape"])), "×".join(map(str, image["shape"])), image["column"]
    if pa.types.is_fixed_size_list(column.type) and column.type.list_size != size:
        raise IngestError(f"ingest: {partition} column '{name}' holds images of {column.type.list_size} values; "
                          f"the schema's image shape {shape} in params.yaml needs {size}")  # fmt: skip
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = pc.list_value_length(column)
        lengths = arrow.to_numpy(pc.fill_null(lengths, arrow.scalar(size, lengths.type)))
        wrong = np.flatnonzero(lengths != size)
        if len(wrong):
            row = wrong[0]
            raise IngestError(f"ingest: {partition} row {rows[row] if rows is not None else row + 1} of column "
                              f"'{name}' is an image of {lengths[row]} values; the schema's image shape {shape} "
                              f"in params.yaml needs {size}")  # fmt: skip


def named_columns(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """(params key, column) of every column the schema in params.yaml names, in that order."""
    named = [("schema.label", schema["label"])] if schema["label"] is not None else []
    named += [("schema.features", c) for c in schema.get("features") or []]
    if schema.get("image"):
        named.append(("schema.image.column", schema["image"]["column"]))
    if schema.get("key"):
        named.append(("schema.key", schema["key"]))
    named += [("schema.parse", c) for c in schema.get("parse") or {}]
    named += [("schema.categorical", c) for c in schema.get("categorical") or []]
    for ranged in ("range", "decimal"):
        if isinstance(schema.get(ranged), dict):
            named += [(f"schema.{ranged}", c) for c in schema[ranged]]
    return named


def require_columns(names: list[str], schema: dict[str, Any], where: str) -> None:
    """IngestError in one line naming the params key, the column and the columns the file has,
    for the first column the schema names that the file lacks, or that cairn keeps for itself
    (a label or feature named 'key'); or that is parsed, categorical or ranged but neither the
    label nor a feature (ingest would drop it, and clean could not find it)."""
    for where_named, col in named_columns(schema):
        if col not in names:
            raise IngestError(
                f"ingest: {where} has no column '{col}' named by {where_named} in params.yaml; "
                f"it has: {', '.join(names) or 'no columns'}"
            )
        if col in OWN and where_named != "schema.key":
            raise IngestError(
                f"ingest: {where} column '{col}' is named by {where_named} in params.yaml, but cairn keeps "
                f"'{col}' for its own ({', '.join(OWN)}); rename the column in the file"
            )
    kept = {schema["label"], *(schema.get("features") or names)}
    for where_named, col in named_columns(schema):
        if where_named in ("schema.parse", "schema.categorical", "schema.range", "schema.decimal") and col not in kept:
            raise IngestError(
                f"ingest: {where_named} in params.yaml names column '{col}' of {where}, which is neither the "
                f"label nor in schema.features, so ingest does not keep it; the features are: "
                f"{', '.join(schema.get('features') or [])}"
            )


def unused_columns(names: list[str], schema: dict[str, Any]) -> list[str]:
    """The columns of a file (``names``) that the schema does not keep, in file order: ingest
    drops them, and says so (read.json, the ingest and clean reports)."""
    used = set(wanted_columns(resolve_features(schema, names)))
    return [n for n in names if n not in used]


def wanted_columns(schema: dict[str, Any]) -> list[str]:
    wanted = [c for c in [schema["label"], *(schema.get("features") or [])] if c is not None]
    if schema.get("image"):
        wanted.append(schema["image"]["column"])
    if schema.get("key"):
        wanted.append(schema["key"])
    return wanted


def partition_stem(name: str) -> str:
    """The ingested file name of a raw partition: 'a/b.csv.gz' -> 'a__b' (suffixes of any case off)."""
    stem = name.replace("/", "__")
    while "." in stem and stem.rsplit(".", 1)[1].lower() in {"csv", "tsv", "txt", "parquet", "gz", "bz2", "zst"}:
        stem = stem.rsplit(".", 1)[0]
    return stem
