"""ingest: raw partitions (CSV, Parquet, built-in sources) -> Arrow tables with an explicit schema.

Every ingested table has the same columns: ``key`` (a stable row id), ``partition`` (the raw
partition it came from), the label column, and the features: one float64 column per feature
for tabular data, or one ``fixed_size_list<float32>`` column for images. The readers live in
``steps/read/``, one module per job; this module names what the ingest stage runs.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from steps.errors import IngestError
from steps.read.builtin import MNIST_PACKAGE, iris, mnist
from steps.read.columns import partition_stem
from steps.read.delimited import STREAM_BLOCK, csv_chunks, csv_stream, from_csv
from steps.read.parquet import from_parquet, parquet_row_groups
from steps.tally import Profile

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
    """Per-column type, null count, and min/max/mean for numeric columns: the profile a file
    read a block at a time adds up (steps/tally.py: Profile), for a table read whole."""
    whole = Profile()
    whole.add(Profile.summary(table))
    return whole.result()
