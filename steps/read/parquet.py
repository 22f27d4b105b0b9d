"""Parquet partitions read into an ingested table, whole or a row group at a time."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from steps.errors import IngestError
from steps.read.columns import project, require_columns, unused_columns


def from_parquet(data: bytes, partition: str, schema: dict[str, Any], info: dict | None = None) -> pa.Table:
    """Read one Parquet partition; raises IngestError for a missing column or a bad file.
    ``info``, when given, receives the columns the schema does not use (when there are any)."""
    try:
        table = pq.ParquetFile(io.BytesIO(data)).read()  # not pq.read_table: flows/storage/tables.py read_parquet
    except pa.ArrowInvalid as err:
        raise IngestError(f"ingest: {partition} is not a readable Parquet file: {err}") from None
    require_columns(table.column_names, schema, partition)
    if info is not None and (unused := unused_columns(table.column_names, schema)):
        info["columns_unused"] = unused
    try:
        return project(table, partition, schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
        raise IngestError(f"ingest: {partition} does not fit the schema in params.yaml: {err}") from None


def parquet_row_groups(data: bytes, partition: str, schema: dict[str, Any]) -> Iterator[pa.Table]:
    """One Parquet partition a row group at a time, as `from_parquet` reads it whole (the same
    keys, types and errors): memory holds one row group decoded, not the partition."""
    try:
        file = pq.ParquetFile(io.BytesIO(data))
        require_columns(file.schema_arrow.names, schema, partition)
        first = 1
        for group in range(file.num_row_groups):
            table = file.read_row_group(group)
            yield project(table, partition, schema, range(first, first + table.num_rows))
            first += table.num_rows
    except pa.ArrowInvalid as err:
        raise IngestError(f"ingest: {partition} is not a readable Parquet file, or does not fit the schema in "
                          f"params.yaml: {err}") from None  # fmt: skip
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
        raise IngestError(f"ingest: {partition} does not fit the schema in params.yaml: {err}") from None
