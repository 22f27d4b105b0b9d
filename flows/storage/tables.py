"""What stages hand each other: Parquet tables (one file per partition in a folder) read and
written whole or a table at a time, and inputs that must exist."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from steps.errors import BadInput


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise BadInput(f"{what} '{path}' does not exist; run the stage that makes it first")
    return path


def parquet_files(path: Path) -> list[Path]:
    """A Parquet file, or the Parquet files of a folder (one per partition) in name order."""
    require(path, "input")
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise BadInput(f"input folder '{path}' has no .parquet files")
    return files


def read_parquet(source: Path | pa.NativeFile, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file (a path or a buffer) as a table: pq.read_table's table, without its
    dataset layer. pq.read_table imports pyarrow.dataset and with it pandas (0.4 s, `python -X
    importtime`), which train and publish need nowhere else; ParquetFile reads the file itself."""
    return pq.ParquetFile(source).read(columns=columns)


def read_table(path: Path) -> pa.Table:
    """A Parquet file, or all Parquet files of a folder in name order, as one table."""
    return pa.concat_tables(read_parquet(f) for f in parquet_files(path))


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


class ParquetAppender:
    """A Parquet file written one table at a time (a row group or more each), in a staged file."""

    def __init__(self, path: Path) -> None:
        self.path, self.writer = path, None

    def write(self, table: pa.Table, where: str) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        elif not table.schema.equals(self.writer.schema):
            try:
                table = table.cast(self.writer.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as err:
                raise BadInput(f"{where} has other columns or types than the ones before it: {err}") from None
        if table.num_rows:  # an empty partition adds no row group
            self.writer.write_table(table)

    def close(self, empty: pa.Schema) -> None:
        if self.writer is None:  # nothing at all: a file with the columns and no rows
            pq.write_table(empty.empty_table(), self.path, compression="zstd")
        else:
            self.writer.close()
