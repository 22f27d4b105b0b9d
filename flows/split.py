"""split flow: clean rows -> train / val / test Parquet files and a per-class report."""

from __future__ import annotations

from pathlib import Path

from flows.common import load_params, parquet_bytes, read_table, replace_dir, report, stage_flow, write_json
from steps import split as steps


@stage_flow("split")
def split(workload: str, clean: Path, out: Path) -> dict:
    """Write ``out``/{train,val,test}.parquet and report.json."""
    params = load_params(workload)
    label = params["schema"]["label"]
    tables = steps.split(read_table(clean), label, params["split"])
    summary = steps.split_report(tables, label)
    with replace_dir(out) as tmp:
        for name, table in tables.items():
            (tmp / f"{name}.parquet").write_bytes(parquet_bytes(table))
        write_json(tmp / "report.json", summary)
    report(f"split-{workload}", f"split@{workload}", {name: info["rows"] for name, info in summary.items()})
    return summary
