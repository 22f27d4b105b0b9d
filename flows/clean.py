"""clean flow: ingested partitions -> clean rows, quarantined rows with reasons, a report."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from prefect import flow

from flows.common import load_params, log, parquet_bytes, read_table, report, write_atomic, write_json
from steps.clean import clean as clean_rows
from steps.figures import pairplot_png
from steps.ingest import profile


@flow(name="clean", flow_run_name="clean@{workload}", persist_result=False)
def clean(workload: str, ingested: Path, out: Path) -> dict:
    """Write ``out``/clean.parquet, quarantine.parquet, report.json (a DVC metric), and the data
    profile: profile.json (type, missing, min/max/mean per column) and pairplot.png."""
    params = load_params(workload)
    result = clean_rows(read_table(ingested), params["schema"], params["clean"])
    write_atomic(out / "clean.parquet", parquet_bytes(result.kept))
    write_atomic(out / "quarantine.parquet", parquet_bytes(result.quarantined))
    write_json(out / "report.json", result.report)
    # The profile of what training will see: typed values, quarantined rows left out.
    schema = params["schema"]
    write_json(out / "profile.json", profile(result.kept))
    numeric = [c for c in schema.get("features") or [] if pa.types.is_floating(result.kept.schema.field(c).type)]
    write_atomic(out / "pairplot.png", pairplot_png(result.kept, numeric, schema["label"], f"{workload}: clean rows"))
    if result.report["rows_quarantined"]:
        log().warning(
            "clean@%s: %d rows quarantined (%s); rows and reasons in %s",
            workload,
            result.report["rows_quarantined"],
            result.report["quarantined_by_reason"],
            out / "quarantine.parquet",
        )
    report(f"clean-{workload}", f"clean@{workload}", result.report)
    return result.report
