"""Scoring new rows with a published ONNX model: the same reading and cleaning rules as ingest
and clean (bad rows are quarantined with their reason, never scored), then onnxruntime.

Pure: bytes and the published model's spec in, tables out. One onnxruntime session per process
and model, reused across partitions (a fan-out worker scores many).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from steps import models
from steps.clean import clean
from steps.evaluate import decide
from steps.ingest import from_csv, from_parquet

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
    return {**schema, "label": None, "parse": parse, "categorical": categorical}


def read(name: str, data: bytes, schema: dict[str, Any]) -> pa.Table:
    """An inbox partition (delimited text or Parquet) as ingest reads raw data, without a label."""
    suffixes = [s.lower() for s in Path(name).suffixes]
    if ".parquet" in suffixes:
        return from_parquet(data, name, schema)
    return from_csv(data, name, schema)


def score(name: str, data: bytes, spec: dict[str, Any], onnx: bytes, sha256: str) -> tuple[pa.Table, pa.Table, dict]:
    """(scores, quarantined rows with a 'reason', {reason kind: rows}) of one inbox partition.

    Scores have the row ``key``, then by task: ``predicted`` (class label) and ``probabilities``;
    ``predicted`` (value); or ``reconstruction_error`` (mean squared, per row); and the
    ``model_sha256`` of the model that scored the row.
    """
    schema = unlabelled(spec["schema"])
    table = read(name, data, schema)
    if table.num_rows == 0:
        empty = pa.table({"key": pa.array([], pa.string())})
        return empty, table.select(["key", "partition"]).append_column("reason", pa.array([], pa.string())), {}
    cleaned = clean(table, schema, {"max_quarantined": 1.0, "dedupe": False})
    kept = cleaned.kept
    x = models.features(kept, schema, spec.get("encoding"))
    task = spec["task"]
    output = {"classification": "probabilities", "regression": "prediction", "reconstruction": "reconstruction"}[task]
    y = session(onnx, sha256).run([output], {"features": x})[0]
    columns: dict[str, pa.Array] = {"key": kept.column("key").combine_chunks()}
    if task == "classification":
        classes = spec["classes"]
        chosen = decide(y, spec.get("threshold"))  # the rule evaluate measured the model with
        columns["predicted"] = pa.array(np.asarray(classes, dtype=object)[chosen].tolist())
        columns["probabilities"] = pa.FixedSizeListArray.from_arrays(pa.array(y.astype(np.float32).ravel()), y.shape[1])
    elif task == "regression":
        columns["predicted"] = pa.array(y.reshape(-1).astype(np.float64))
    else:
        columns["reconstruction_error"] = pa.array(((y - x) ** 2).mean(axis=1).astype(np.float64))
    columns["model_sha256"] = pa.array([sha256] * kept.num_rows, pa.string())
    quarantined = cleaned.quarantined.select(["key", "partition", "reason"])
    return pa.table(columns), quarantined, cleaned.report["quarantined_by_reason"]
