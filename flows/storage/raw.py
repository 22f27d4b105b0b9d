"""Raw partition files as ingest and score find them: which files are data, their format and
compression (from the name, in any case), their bytes decompressed, and their names in keys."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

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


BLOCK = 16 << 20  # bytes read at a time where a file is streamed, not read whole


def read_bytes(path: Path) -> bytes:
    """The bytes of a partition file, decompressed."""
    with opened(path) as stream:
        return stream.read()


@contextlib.contextmanager
def opened(path: Path) -> Iterator[BinaryIO]:
    """A partition file as a binary stream of its decompressed bytes; a file that is not the
    compressed file its name says is a BadInput naming it."""
    compression = kind(path)[1]
    if compression is None:
        with open(path, "rb") as f:
            yield f
        return
    try:
        stream = pa.input_stream(str(path), compression=compression)
    except (OSError, pa.ArrowInvalid) as err:
        raise BadInput(f"ingest: {path} is not a readable {compression} file: {err}") from None
    with stream:  # errors of the caller's own work pass through as they are
        yield _Checked(stream, path, compression)


class _Checked:
    """A decompressing stream whose read errors name the file (Arrow's alone do not)."""

    def __init__(self, stream, path: Path, compression: str) -> None:
        self.stream, self.path, self.compression = stream, path, compression

    def read(self, size: int = -1) -> bytes:
        try:
            return self.stream.read() if size < 0 else self.stream.read(size)
        except (OSError, pa.ArrowInvalid) as err:
            raise BadInput(f"ingest: {self.path} is not a readable {self.compression} file: {err}") from None


def sha256(path: Path) -> str:
    """The sha256 (hex) of a partition file's decompressed bytes, read a block at a time."""
    digest = hashlib.sha256()
    with opened(path) as stream:
        while block := stream.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def file_name(path: Path, raw: Path) -> str:
    """A raw file's name in keys and messages: its path under the raw folder."""
    return path.name if path == raw else path.relative_to(raw).as_posix()
