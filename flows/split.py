"""split flow: clean rows -> train / val / test folders (one Parquet file per partition) and a
per-class report.

A row's set depends on its key alone, so each partition of clean rows is dealt to the three sets
on its own: memory holds one partition, not the data set. Its three files and counts are a
datum (flows/storage/datums.py), kept by the bytes of the partition's clean rows and the split
params, so an appended partition costs its own rows; the others are linked, not written again.
"""

from __future__ import annotations

import json
from pathlib import Path

from flows import config
from flows.storage import datums
from flows.storage.files import replace_dir, write_json
from flows.storage.raw import sha256 as raw_sha256
from flows.storage.tables import parquet_bytes, read_parquet, require
from flows.tracking import report, stage_flow
from steps import split as steps
from steps.errors import BadInput


def dealt(file: Path, sha256: str, label: str, params: dict) -> dict[str, Path]:
    """The partition of clean rows in ``file`` dealt to the sets: <set>.parquet for each, and
    counts.json; from the datum store when this partition was dealt before."""
    datum = datums.key("split", file.stem, sha256, {"label": label, "split": params})
    if (stored := datums.stored("split", datum)) is not None:
        return stored
    tables, counts = steps.deal(read_parquet(file), label, params)
    files = {f"{name}.parquet": parquet_bytes(table) for name, table in tables.items()}
    datums.store("split", datum, files | {"counts.json": json.dumps(counts, sort_keys=True)})
    return datums.stored("split", datum)  # type: ignore[return-value]


@stage_flow("split")
def split(workload: str, clean: Path, out: Path) -> dict:
    """Write ``out``/train/, val/ and test/ (one Parquet file per partition of clean rows each)
    and report.json."""
    params = config.workload(workload)
    label = params.schema_.label
    files = sorted(require(clean, "input").glob("*.parquet"))
    if not files:
        raise BadInput(f"split: input folder '{clean}' has no .parquet files (run clean first)")
    sets = steps.Sets(label, params.settings("split"))
    with replace_dir(out) as tmp:
        for name in steps.SETS:
            (tmp / name).mkdir()
        for file, sha256 in zip(files, datums.file_sha256(files, raw_sha256), strict=True):
            part = dealt(file, sha256, label, params.settings("split"))
            for name in steps.SETS:
                datums.link(part[f"{name}.parquet"], tmp / name / file.name)
            sets.add(json.loads(part["counts.json"].read_text()))
        sets.check()
        summary = sets.report()
        write_json(tmp / "report.json", summary)
    report(f"split-{workload}", f"split@{workload}", {name: info["rows"] for name, info in summary.items()})
    return summary
