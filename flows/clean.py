"""clean flow: ingested partitions -> clean rows, quarantined rows with reasons, a report."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.common import load_params, log, parquet_bytes, read_table, report, write_atomic, write_json
from steps.clean import clean as clean_rows


@flow(name="clean", flow_run_name="clean@{workload}", persist_result=False)
def clean(workload: str, ingested: Path, out: Path) -> dict:
    """Write ``out``/clean.parquet, quarantine.parquet and report.json (a DVC metric)."""
    params = load_params(workload)
    result = clean_rows(read_table(ingested), params["schema"], params["clean"]["max_quarantined"])
    write_atomic(out / "clean.parquet", parquet_bytes(result.kept))
    write_atomic(out / "quarantine.parquet", parquet_bytes(result.quarantined))
    write_json(out / "report.json", result.report)
    if result.report["rows_quarantined"]:
        log().warning(
            "clean@%s: %d rows quarantined (%s); rows and reasons in %s",
            workload,
            result.report["rows_quarantined"],
            result.report["quarantined_by_reason"],
            out / "quarantine.parquet",
        )
    report("clean", f"clean@{workload}", result.report)
    return result.report
