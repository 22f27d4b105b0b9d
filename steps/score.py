"""Scoring new rows with a published ONNX model: the same reading and cleaning rules as ingest
and clean (bad rows are quarantined with their reason, never scored), then onnxruntime.

Pure: bytes and the published model's spec in, tables out. One onnxruntime session per process
and model, reused across partitions (a fan-out worker scores many).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from steps import arrow, models
from steps.clean import clean
from steps.read.delimited import csv_chunks
from steps.read.parquet import parquet_row_groups

QUARANTINE = pa.schema([("key", pa.string()), ("partition", pa.string()), ("reason", pa.string())])

_SESSIONS: dict[str, Any] = {}  # model sha256 -> onnxruntime.InferenceSession, per process


def model_sha256(onnx: bytes) -> str:
    return hashlib.sha256(onnx).hexdigest()


def session(onnx: bytes, sha256: str):
    """The onnxruntime session of this model in this process: built once, then reused."""
    if sha256 not in _SESSIONS:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1  # one core per fan-out worker: workers are the parallelism
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        _SESSIONS[sha256] = ort.InferenceSession(onnx, options, providers=providers)
    return _SESSIONS[sha256]


def unlabelled(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of rows to score: no label column, and no parse or category rule for it."""
    label = schema["label"]
    parse = {c: kind for c, kind in (schema.get("parse") or {}).items() if c != label} or None
    categorical = [c for c in schema.get("categorical") or [] if c != label] or None
    out = {**schema, "label": None, "parse": parse, "categorical": categorical}
    if isinstance(schema.get("range"), dict):
        out["range"] = {c: bounds for c, bounds in schema["range"].items() if c != label}
    return out


COMPRESSION = "zstd"


def read(name: str, data: bytes, schema: dict[str, Any]) -> Iterator[pa.Table]:
    """An inbox partition as ingest reads raw data, without a label: Parquet a row group at a time
    and delimited text a chunk of records at a time (memory holds one of them decoded, besides
    the file's bytes)."""
    suffixes = [s.lower() for s in Path(name).suffixes]
    if ".parquet" in suffixes:
        yield from parquet_row_groups(data, name, schema)
    else:
        yield from csv_chunks(data, name, schema)


_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))
_LANES = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD6E8FEB86659FD93))


def _mix(words: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every bit of a word reaches every bit of the result."""
    words = words ^ (words >> np.uint64(30))
    words = words * _MIX[0]
    words = words ^ (words >> np.uint64(27))
    words = words * _MIX[1]
    return words ^ (words >> np.uint64(31))


def _words(column: pa.ChunkedArray) -> Iterator[np.ndarray]:
    """A column of clean rows (no nulls) as 64-bit words, one per row, a few at a time: a text or
    an image as its digest (an image's 784 values are one blake2b each row, not 784 passes)."""
    array = column.combine_chunks()
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        encoded = array.dictionary_encode()
        digests = [hashlib.blake2b(v.encode(), digest_size=8).digest() for v in encoded.dictionary.to_pylist()]
        values = np.frombuffer(b"".join(digests), np.uint64)
        yield values[arrow.to_numpy(encoded.indices).astype(np.intp)]
    elif pa.types.is_fixed_size_list(array.type):
        pixels = arrow.to_numpy(pc.list_flatten(array)).reshape(len(array), array.type.list_size)
        pixels = np.ascontiguousarray(pixels + pixels.dtype.type(0))  # -0.0 == 0.0
        digests = b"".join(hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in pixels)
        yield from np.frombuffer(digests, np.uint64).reshape(-1, 2).T
    else:  # -0.0 == 0.0; exact for float32 and for integer labels
        yield (arrow.to_numpy(array).astype(np.float64) + 0.0).view(np.uint64)


def row_hashes(kept: pa.Table) -> np.ndarray:
    """Two 64-bit hashes per clean row of its values (not its key or partition), (n, 2): equal
    rows hash equal, and 128 bits make two different rows hashing equal unlikely enough to count
    repeats by them. Column operations, a column at a time."""
    lanes = np.zeros((kept.num_rows, 2), np.uint64)
    for name in kept.column_names:
        if name in ("key", "partition"):
            continue
        for word in _words(kept.column(name)):
            mixed = _mix(word)
            lanes[:, 0] = _mix(lanes[:, 0] * _LANES[0] + mixed)
            lanes[:, 1] = _mix(lanes[:, 1] ^ (mixed * _LANES[1]))
    return lanes


def repeats(hashes: np.ndarray) -> int:
    """How many rows of ``hashes`` (row_hashes) repeat an earlier one."""
    return (
        len(hashes) - len(np.unique(np.ascontiguousarray(hashes).view(np.dtype((np.void, 16))))) if len(hashes) else 0
    )


def score(name: str, data: bytes, spec: dict[str, Any], onnx: bytes, sha256: str,
          version: int | None = None) -> tuple[bytes, pa.Table, dict, int]:  # fmt: skip
    """(scores as Parquet bytes, quarantined rows with a 'reason', {reason kind: rows}, rows that
    repeat an earlier scored row of the file) of one inbox partition, scored a row group at a
    time. A repeated row is scored like any other: the report says how many there were.

    Scores have the row ``key``, then by task: ``predicted`` (class label) and ``probabilities``;
    ``predicted`` (value); or ``reconstruction_error`` (mean squared, per row); and the
    ``model_sha256`` and registry ``model_version`` of the model that scored the row (null
    version: a model from outside the registry).
    """
    schema = unlabelled(spec["schema"])
    sink = io.BytesIO()
    writer = None
    quarantined: list[pa.Table] = []
    by_reason: dict[str, int] = {}
    hashes = [np.empty((0, 2), np.uint64)]  # 16 bytes a scored row, for the file's repeats
    for table in read(name, data, schema):
        if table.num_rows == 0:
            continue
        cleaned = clean(
            table, schema, {"max_quarantined": 1.0, "dedupe": False, "min_class_rows": 0}, row_digests=False
        )
        scores = predict(cleaned.kept, schema, spec, onnx, sha256, version)
        hashes.append(row_hashes(cleaned.kept))
        writer = writer or pq.ParquetWriter(sink, scores.schema, compression=COMPRESSION)
        writer.write_table(scores)
        quarantined.append(cleaned.quarantined.select(["key", "partition", "reason"]))
        for reason, n in cleaned.report["quarantined_by_reason"].items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    if writer is None:  # no rows at all
        writer = pq.ParquetWriter(sink, pa.schema([("key", pa.string())]), compression=COMPRESSION)
    writer.close()
    quarantine = pa.concat_tables([q.cast(QUARANTINE) for q in quarantined] or [pa.Table.from_batches([], QUARANTINE)])
    return sink.getvalue(), quarantine, by_reason, repeats(np.concatenate(hashes))


def predict(kept: pa.Table, schema: dict[str, Any], spec: dict[str, Any], onnx: bytes, sha256: str,
            version: int | None = None) -> pa.Table:  # fmt: skip
    """The scores of clean rows (see `score`)."""
    x = models.features(kept, schema, spec.get("encoding"), writable=False)
    task = spec["task"]
    output = {"classification": "probabilities", "regression": "prediction", "reconstruction": "reconstruction"}[task]
    y = session(onnx, sha256).run([output], {"features": x})[0]
    columns: dict[str, pa.Array] = {"key": kept.column("key").combine_chunks()}
    if task == "classification":
        classes = spec["classes"]
        chosen = models.decide(y, spec.get("threshold"))  # the rule evaluate measured the model with
        labels = arrow.array(classes, pa.string() if isinstance(classes[0], str) else pa.int64())  # as ingest types
        columns["predicted"] = labels.take(arrow.numbers(np.asarray(chosen, np.int64)))
        probabilities = arrow.numbers(y.astype(np.float32).ravel())
        columns["probabilities"] = pa.FixedSizeListArray.from_arrays(probabilities, y.shape[1])
    elif task == "regression":
        columns["predicted"] = arrow.numbers(y.reshape(-1).astype(np.float64))
    else:
        columns["reconstruction_error"] = arrow.numbers(((y - x) ** 2).mean(axis=1).astype(np.float64))
    columns["model_sha256"] = pa.repeat(arrow.text(sha256), kept.num_rows)
    columns["model_version"] = pa.repeat(arrow.scalar(version, pa.int32()), kept.num_rows)
    return pa.table(columns)
