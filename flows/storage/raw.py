"""Raw partition files as ingest and score find them: which files are data, their format and
compression (from the name, in any case), their bytes decompressed, and their names in keys."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from steps.errors import BadInput

# Delimited text (the delimiter is found from the header) and Parquet; either may be compressed.
TEXT = {".csv", ".tsv", ".txt"}
FORMATS = TEXT | {".parquet"}
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
    return (suffix, compression) if suffix in FORMATS else (None, None)


def read_bytes(path: Path) -> bytes:
    """The bytes of a partition file, decompressed."""
    compression = kind(path)[1]
    if compression is None:
        return path.read_bytes()
    try:
        with pa.input_stream(str(path), compression=compression) as stream:
            return stream.read()
    except (OSError, pa.ArrowInvalid) as err:
        raise BadInput(f"ingest: {path} is not a readable {compression} file: {err}") from None


def file_name(path: Path, raw: Path) -> str:
    """A raw file's name in keys and messages: its path under the raw folder."""
    return path.name if path == raw else path.relative_to(raw).as_posix()
