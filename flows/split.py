"""split flow: clean rows -> train / val / test Parquet files and a per-class report.

A row's set depends on its key alone, so clean.parquet is read a batch at a time and each batch
dealt to the three files: memory holds a batch, not the data set.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flows.common import ParquetAppender, load_params, replace_dir, report, require, stage_flow, write_json
from steps import split as steps

BATCH_ROWS = 1 << 16


@stage_flow("split")
def split(workload: str, clean: Path, out: Path) -> dict:
    """Write ``out``/{train,val,test}.parquet and report.json."""
    params = load_params(workload)
    sets = steps.Sets(params["schema"]["label"], params["split"])
    source = pq.ParquetFile(require(clean, "input"))
    with replace_dir(out) as tmp:
        files = {name: ParquetAppender(tmp / f"{name}.parquet") for name in steps.SETS}
        for batch in source.iter_batches(batch_size=BATCH_ROWS):
            for name, part in sets.deal(pa.Table.from_batches([batch])).items():
                files[name].write(part, f"split: {clean}")
        sets.check()
        for appender in files.values():
            appender.close(source.schema_arrow)
        summary = sets.report()
        write_json(tmp / "report.json", summary)
    report(f"split-{workload}", f"split@{workload}", {name: info["rows"] for name, info in summary.items()})
    return summary
