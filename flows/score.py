"""score flow: new data dropped into a workload's inbox -> predictions of its published model.

`score@<workload>` exists for every workload named in params.yaml's ``score`` section. Each
inbox partition file (CSV/TSV/TXT or Parquet, possibly compressed, with the workload's raw
columns; a label column is ignored) is read and cleaned by the rules of ingest and clean, its
good rows are scored by the published ONNX model in onnxruntime, and the stage writes

- ``partitions/<partition>.parquet``: key, predicted (class or value) and probabilities, or
  reconstruction_error, and the model_sha256 that scored each row;
- ``quarantine.parquet``: rows not scored (key, partition, reason);
- ``report.json`` (a DVC metric): rows in, scored, quarantined by reason, the model's sha256.

Datum by datum: a partition is scored again only when its bytes, the model or cairn's code
changed (flows/execution/datums.py); partitions fan out on the runner of params.yaml's
``execution`` section (flows/execution/fanout.py), one onnxruntime session per worker.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from flows.common import (
    PARAMS_FILE,
    InputError,
    check_inside,
    log,
    parquet_bytes,
    replace_dir,
    report,
    require,
    stage_flow,
    write_atomic,
    write_json,
)
from flows.execution import datums, fanout
from flows.ingest import NOT_DATA, file_name, kind, read_bytes
from steps import score as steps
from steps.ingest import partition_stem

QUARANTINE = pa.schema([("key", pa.string()), ("partition", pa.string()), ("reason", pa.string())])


def inbox_of(workload: str, path: Path = PARAMS_FILE) -> Path:
    """``score.<workload>.inbox`` of params.yaml: where new data to score lands."""
    section = (yaml.safe_load(path.read_text()) or {}).get("score") or {}
    if workload not in section:
        raise InputError(f"{path}: score has no entry for '{workload}'; it has: {', '.join(section) or 'none'}")
    return check_inside((section[workload] or {}).get("inbox"), f"{path}: score.{workload}.inbox")


def inbox_files(inbox: Path) -> list[Path]:
    """The partition files in ``inbox`` (read recursively), in name order; an empty inbox is fine."""
    if not inbox.is_dir():
        raise InputError(f"score: inbox '{inbox}' is not a folder (score.<workload>.inbox in params.yaml)")
    files = sorted(p for p in inbox.rglob("*") if p.is_file() and p.name.lower() not in NOT_DATA)
    for path in files:
        if kind(path)[0] is None:
            log().warning("score: skipped %s: not a partition file cairn reads (.csv, .tsv, .txt, .parquet)", path)
    return [p for p in files if kind(p)[0]]


Scored = tuple[bytes, bytes, dict]  # (scores, quarantined rows) as Parquet, {reason: rows}


def score_batch(payload: tuple[dict, bytes, str, list[tuple[str, bytes]]]) -> list[Scored]:
    """Score a batch of inbox files from their bytes (a fan-out worker may be another process or
    machine): ``payload`` is (model spec, ONNX bytes, its sha256, [(file name, bytes), ...])."""
    spec, onnx, sha256, files = payload
    out = []
    for name, data in files:
        scores, quarantined, by_reason = steps.score(name, data, spec, onnx, sha256)
        out.append((parquet_bytes(scores), parquet_bytes(quarantined.cast(QUARANTINE)), by_reason))
    return out


def all_scored(
    files: list[Path], inbox: Path, spec: dict, onnx: bytes, sha256: str
) -> Iterator[tuple[str, Scored, bool]]:
    """(file name, its scores and quarantine, reused?) of every inbox file, stored datums at
    once and the rest scored by the fan-out runner in batches."""
    misses = []
    for path in files:
        name = file_name(path, inbox)
        data = read_bytes(path)
        datum = datums.key("score", name, data, {"model_sha256": sha256})
        if (stored := datums.fetch("score", datum)) is not None:
            reasons = json.loads(stored["reasons.json"])
            yield name, (stored["scores.parquet"], stored["quarantine.parquet"], reasons), True
        else:
            misses.append((path, name, datum, len(data)))
    run = fanout.settings()
    plan = fanout.batches(misses, [size for *_, size in misses], run)
    if misses:
        log().info("score: %d inbox file(s) to score in %d batch(es) on %s", len(misses), len(plan), run.runner)
    payloads = ((spec, onnx, sha256, [(name, read_bytes(path)) for path, name, _, _ in batch]) for batch in plan)
    for batch, results in zip(plan, fanout.fan_out(score_batch, payloads, "score", run), strict=True):
        for (_, name, datum, _), (scores, quarantined, reasons) in zip(batch, results, strict=True):
            files = {"scores.parquet": scores, "quarantine.parquet": quarantined, "reasons.json": json.dumps(reasons)}
            datums.store("score", datum, {k: v if isinstance(v, bytes) else v.encode() for k, v in files.items()})
            yield name, (scores, quarantined, reasons), False


@stage_flow("score")
def score(workload: str, inbox: Path, publish: Path, out: Path) -> dict:
    """Score every partition of ``inbox`` with the model in ``publish``; write ``out``/
    partitions/<partition>.parquet, quarantine.parquet and report.json."""
    spec = json.loads(require(publish / "model.json", "published model spec").read_text())
    onnx = require(publish / "model.onnx", "published ONNX model").read_bytes()
    sha256 = steps.model_sha256(onnx)
    files = inbox_files(inbox)
    started = time.perf_counter()
    quarantines: dict[str, pa.Table] = {}
    rows: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    counts = {"computed": 0, "reused": 0}
    with replace_dir(out / "partitions") as tmp:
        for name, (scores, quarantined, reasons), reused in all_scored(files, inbox, spec, onnx, sha256):
            counts["reused" if reused else "computed"] += 1
            stem = partition_stem(name)
            if (tmp / f"{stem}.parquet").exists():
                raise InputError(f"score: two inbox files of '{inbox}' are both named '{stem}'")
            (tmp / f"{stem}.parquet").write_bytes(scores)
            quarantines[name] = pq.read_table(io.BytesIO(quarantined))
            rows[name] = pq.read_metadata(io.BytesIO(scores)).num_rows
            for reason, n in reasons.items():
                by_reason[reason] = by_reason.get(reason, 0) + n
    # Merged in inbox file order, whatever order the runner gave them back in.
    order = [file_name(p, inbox) for p in files]
    quarantine = pa.concat_tables([quarantines[n] for n in order]) if order else QUARANTINE.empty_table()
    write_atomic(out / "quarantine.parquet", parquet_bytes(quarantine))
    summary = {
        "partitions": len(order),
        "rows_in": sum(rows.values()) + quarantine.num_rows,
        "rows_scored": sum(rows.values()),
        "rows_quarantined": quarantine.num_rows,
        "quarantined_by_reason": dict(sorted(by_reason.items())),
        "model_sha256": sha256,
    }
    write_json(out / "report.json", summary)
    seconds = time.perf_counter() - started
    # Timings and reuse go to the log and the UI, never into a DVC output: equal inputs, equal bytes.
    extra = {"files_computed": counts["computed"], "files_reused": counts["reused"], "seconds": round(seconds, 2),
             "rows_per_second": round(summary["rows_in"] / seconds) if seconds > 0 else None}  # fmt: skip
    if quarantine.num_rows:
        log().warning("score@%s: %d rows quarantined, not scored (%s); in %s", workload, quarantine.num_rows,
                      summary["quarantined_by_reason"], out / "quarantine.parquet")  # fmt: skip
    report(f"score-{workload}", f"score@{workload}", summary | extra)
    return summary | extra
