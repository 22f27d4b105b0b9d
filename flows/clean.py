"""clean flow: ingested partitions -> clean rows, quarantined rows with reasons, a report."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from flows.common import (
    attach,
    load_params,
    log,
    parquet_bytes,
    read_table,
    report,
    stage_flow,
    write_atomic,
    write_json,
)
from steps.clean import check_share
from steps.clean import clean as clean_rows
from steps.figures import pairplot_png
from steps.ingest import profile, resolve_features


@stage_flow("clean")
def clean(workload: str, ingested: Path, out: Path) -> dict:
    """Write ``out``/clean.parquet, quarantine.parquet, report.json (a DVC metric), and the data
    profile: profile.json (type, missing, min/max/mean per column) and pairplot.png."""
    params = load_params(workload)
    table = read_table(ingested)
    schema = resolve_features(params["schema"], table.column_names)
    result = clean_rows(table, schema, params["clean"])
    read = ingested / "read.json"  # how ingest read each file (blank lines it skipped)
    if read.exists():
        partitions = json.loads(read.read_text())["partitions"].values()
        result.report["blank_lines_skipped"] = sum(p.get("blank_lines_skipped", 0) for p in partitions)
    # Too many bad rows: the quarantine and the counts are written all the same, for the user to
    # look at; clean.parquet is not, so nothing downstream can run on it.
    (out / "clean.parquet").unlink(missing_ok=True)
    write_atomic(out / "quarantine.parquet", parquet_bytes(result.quarantined))
    write_json(out / "report.json", result.report)
    check_share(result, params["clean"], str(out / "quarantine.parquet"))
    write_atomic(out / "clean.parquet", parquet_bytes(result.kept))
    # The profile of what training will see: typed values, quarantined rows left out.
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
    attach(f"clean-{workload}", images={"pairplot": out / "pairplot.png"})
    return result.report
