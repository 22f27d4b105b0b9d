"""ingest: raw partitions (CSV, Parquet, built-in sources) -> Arrow tables with an explicit schema.

Every ingested table has the same columns: ``key`` (a stable row id), ``partition`` (the raw
partition it came from), the label column, and the features: one float64 column per feature
for tabular data, or one ``fixed_size_list<float32>`` column for images. The readers live in
``steps/read/``, one module per job; this module names what the ingest stage runs.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from steps.errors import IngestError
from steps.read.builtin import MNIST_PACKAGE, iris, mnist
from steps.read.columns import partition_stem
from steps.read.delimited import STREAM_BLOCK, csv_chunks, csv_stream, from_csv
from steps.read.parquet import from_parquet, parquet_row_groups

__all__ = [
    "MNIST_PACKAGE",
    "STREAM_BLOCK",
    "IngestError",
    "csv_chunks",
    "csv_stream",
    "from_csv",
    "from_parquet",
    "iris",
    "mnist",
    "parquet_row_groups",
    "partition_stem",
    "profile",
]


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
