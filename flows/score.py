"""score flow: new data dropped into a workload's inbox -> predictions of its champion.

`score@<workload>` exists for every workload named in params.yaml's ``score`` section. Each
inbox partition file (CSV/TSV/TXT or Parquet, possibly compressed, with the workload's raw
columns; a label column is ignored) is read and cleaned by the rules of ingest and clean, its
good rows are scored in onnxruntime by the ONNX model that serves: the registry's champion,
which the promote stage copies to ``data/<workload>/promote/`` (a challenger the gate rejected
never scores anything). The stage writes

- ``partitions/<partition>.parquet``: key, predicted (class or value) and probabilities, or
  reconstruction_error, and the model_sha256 and model_version that scored each row;
- ``quarantine.parquet``: rows not scored (key, partition, reason);
- ``report.json`` (a DVC metric): rows in, scored, quarantined by reason, the model's version
  and sha256.

Datum by datum: a partition is scored again only when its bytes, the model or cairn's code
changed (flows/storage/datums.py); partitions fan out on the runner of params.yaml's
``execution`` section (flows/fanout.py), one onnxruntime session per worker.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flows import config, fanout
from flows.storage import datums
from flows.storage.files import replace_dir, write_atomic, write_json
from flows.storage.raw import NOT_DATA, file_name, kind, read_bytes
from flows.storage.raw import sha256 as raw_sha256
from flows.storage.tables import parquet_bytes, require
from flows.tracking import log, report, stage_flow
from steps import score as steps
from steps.errors import BadInput
from steps.read.columns import partition_stem


def inbox_files(inbox: Path) -> list[Path]:
    """The partition files in ``inbox`` (read recursively), in name order; an empty inbox is fine."""
    if not inbox.is_dir():
        raise BadInput(f"score: inbox '{inbox}' is not a folder (score.<workload>.inbox in params.yaml)")
    files = sorted(p for p in inbox.rglob("*") if p.is_file() and p.name.lower() not in NOT_DATA)
    for path in files:
        if kind(path)[0] is None:
            log().warning("score: skipped %s: not a partition file cairn reads (.csv, .tsv, .txt, .parquet)", path)
    return [p for p in files if kind(p)[0]]


Scored = tuple[bytes, bytes, dict, int]  # (scores, quarantined rows) as Parquet, {reason: rows}, repeated rows


@dataclass(frozen=True)
class Model:
    """The model that scores: its spec, ONNX bytes, their sha256, and its registry version (None
    for a folder that is not a registry champion, e.g. `--model data/<w>/publish`)."""

    spec: dict
    onnx: bytes
    sha256: str
    version: int | None


def load_model(folder: Path) -> Model:
    """The model in ``folder`` (data/<workload>/promote: the champion, with champion.json)."""
    from flows.registry import SERVING

    spec = json.loads(require(folder / "model.json", "model spec").read_text())
    onnx = require(folder / "model.onnx", "ONNX model").read_bytes()
    serving = folder / SERVING
    version = json.loads(serving.read_text())["version"] if serving.exists() else None
    return Model(spec, onnx, steps.model_sha256(onnx), version)


def score_batch(payload: tuple[Model, list[tuple[str, bytes]]]) -> list[Scored]:
    """Score a batch of inbox files from their bytes (a fan-out worker may be another process or
    machine): ``payload`` is (the model, [(file name, bytes), ...])."""
    model, files = payload
    out = []
    for name, data in files:
        scores, quarantined, by_reason, repeated = steps.score(
            name, data, model.spec, model.onnx, model.sha256, model.version
        )
        out.append((scores, parquet_bytes(quarantined), by_reason, repeated))
    return out


def scored_datums(files: list[Path], inbox: Path, model: Model) -> tuple[list[Path], int]:
    """The datum folder of every inbox file (scores.parquet, quarantine.parquet, reasons.json), in
    order, scoring the missing ones on the fan-out runner in batches; and how many were reused.
    An unchanged file is not even read: its hash is remembered by inode, size and mtime."""
    names = [file_name(p, inbox) for p in files]
    scorer = {"model_sha256": model.sha256, "model_version": model.version}
    keys = [datums.key("score", name, content, scorer)
            for name, content in zip(names, datums.file_sha256(files, raw_sha256), strict=True)]  # fmt: skip
    misses = [(p, n, k, p.stat().st_size) for p, n, k in zip(files, names, keys, strict=True)
              if datums.folder("score", k) is None]  # fmt: skip
    run = config.load().execution
    plan = fanout.batches(misses, [size for *_, size in misses], run)
    if misses:
        log().info("score: %d inbox file(s) to score in %d batch(es) on %s", len(misses), len(plan), run.runner)
    payloads = ((model, [(name, read_bytes(path)) for path, name, _, _ in batch]) for batch in plan)
    for batch, results in zip(plan, fanout.fan_out(score_batch, payloads, "score", run), strict=True):
        for (_, _, datum, _), (scores, quarantined, reasons, repeated) in zip(batch, results, strict=True):
            stored = {"scores.parquet": scores, "quarantine.parquet": quarantined,
                      "reasons.json": json.dumps(reasons).encode(),
                      "repeats.json": json.dumps({"rows": repeated}).encode()}  # fmt: skip
            datums.store("score", datum, stored)
    return datums.folders("score", keys), len(files) - len(misses)


@stage_flow("score")
def score(workload: str, inbox: Path, model: Path, out: Path) -> dict:
    """Score every partition of ``inbox`` with the model in the folder ``model``; write ``out``/
    partitions/<partition>.parquet, quarantine.parquet and report.json."""
    scorer = load_model(model)
    files = inbox_files(inbox)
    started = time.perf_counter()
    folders, reused = scored_datums(files, inbox, scorer)
    rows = 0
    by_reason: dict[str, int] = {}
    repeated: dict[str, int] = {}  # inbox file -> rows repeating an earlier row of it (scored all the same)
    with_quarantine = []  # datums that quarantined rows: most have none, and are not read
    with replace_dir(out / "partitions") as tmp:
        for path, folder in zip(files, folders, strict=True):
            stem = partition_stem(file_name(path, inbox))
            if (tmp / f"{stem}.parquet").exists():
                raise BadInput(f"score: two inbox files of '{inbox}' are both named '{stem}'")
            datums.link(folder / "scores.parquet", tmp / f"{stem}.parquet")
            rows += pq.read_metadata(folder / "scores.parquet").num_rows
            if n := json.loads((folder / "repeats.json").read_text())["rows"]:
                repeated[file_name(path, inbox)] = n
            reasons = json.loads((folder / "reasons.json").read_text())
            for reason, n in reasons.items():
                by_reason[reason] = by_reason.get(reason, 0) + n
            if reasons:
                with_quarantine.append(folder)
    # Merged in inbox file order, whatever order the runner gave them back in.
    # (ParquetFile, not pq.read_table, which imports pyarrow.dataset and so pandas; see steps/arrow.py)
    quarantines = [pq.ParquetFile(folder / "quarantine.parquet").read() for folder in with_quarantine]
    quarantine = pa.concat_tables(quarantines) if quarantines else pa.Table.from_batches([], steps.QUARANTINE)
    write_atomic(out / "quarantine.parquet", parquet_bytes(quarantine))
    summary = {
        "partitions": len(files),
        "rows_in": rows + quarantine.num_rows,
        "rows_scored": rows,
        "rows_quarantined": quarantine.num_rows,
        "quarantined_by_reason": dict(sorted(by_reason.items())),
        # Rows that repeat an earlier row of their own inbox file: scored, and counted here.
        "duplicate_rows_scored": sum(repeated.values()),
        "model_version": scorer.version,
        "model_sha256": scorer.sha256,
    }
    write_json(out / "report.json", summary)
    seconds = time.perf_counter() - started
    # Timings and reuse go to the log and the UI, never into a DVC output: equal inputs, equal bytes.
    extra = {"files_computed": len(files) - reused, "files_reused": reused, "seconds": round(seconds, 2),
             "rows_per_second": round(summary["rows_in"] / seconds) if seconds > 0 else None}  # fmt: skip
    for name, n in repeated.items():
        log().warning("score@%s: %s has %d row(s) repeating an earlier row of it; scored all the same", workload,
                      name, n)  # fmt: skip
    if quarantine.num_rows:
        log().warning("score@%s: %d rows quarantined, not scored (%s); in %s", workload, quarantine.num_rows,
                      summary["quarantined_by_reason"], out / "quarantine.parquet")  # fmt: skip
    report(f"score-{workload}", f"score@{workload}", summary | extra)
    return summary | extra
