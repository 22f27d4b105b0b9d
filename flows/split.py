"""split flow: clean rows -> train / val / test Parquet files and a per-class report.

A row's set depends on its key alone, so clean.parquet is read a row group at a time (clean
writes one per partition) and each dealt to the three files: memory holds a row group, not the
data set. Hashing every key is the stage's only Python per row; the sets drawn for a row group
are a datum (flows/execution/datums.py), kept by the bytes of its keys and the split params, so
an appended partition costs its own keys.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flows.common import ParquetAppender, load_params, replace_dir, report, require, stage_flow, write_json
from flows.execution import datums
from steps import split as steps


def keys_digest(keys: pa.ChunkedArray) -> bytes:
    """sha256 of a string column's values (their offsets and characters), without Python per row."""
    array = keys.combine_chunks()
    if not pa.types.is_string(array.type) or array.null_count:
        return hashlib.sha256(repr(array.to_pylist()).encode()).digest()
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2]
    chars = b"" if data is None else data.to_pybytes()[offsets[0] : offsets[-1]]
    return hashlib.sha256((offsets - offsets[0]).tobytes() + chars).digest()


def drawn(keys: pa.ChunkedArray, params: dict) -> np.ndarray:
    """``steps.draw`` for these keys, from the datum store when they were drawn before."""
    shares = {k: params[k] for k in ("seed", "val", "test")}
    datum = datums.key("split", "keys", keys_digest(keys), shares)
    if (stored := datums.fetch("split", datum)) is not None:
        return np.frombuffer(stored["sets.bin"], dtype=np.uint8)
    sets = steps.draw(keys.to_pylist(), **shares)
    datums.store("split", datum, {"sets.bin": sets.tobytes()})
    return sets


@stage_flow("split")
def split(workload: str, clean: Path, out: Path) -> dict:
    """Write ``out``/{train,val,test}.parquet and report.json."""
    params = load_params(workload)
    sets = steps.Sets(params["schema"]["label"], params["split"])
    source = pq.ParquetFile(require(clean, "input"))
    with replace_dir(out) as tmp:
        files = {name: ParquetAppender(tmp / f"{name}.parquet") for name in steps.SETS}
        for group in range(source.num_row_groups):
            table = source.read_row_group(group)
            for name, part in sets.deal(table, drawn(table.column("key"), params["split"])).items():
                files[name].write(part, f"split: {clean}")
        sets.check()
        for appender in files.values():
            appender.close(source.schema_arrow)
        summary = sets.report()
        write_json(tmp / "report.json", summary)
    report(f"split-{workload}", f"split@{workload}", {name: info["rows"] for name, info in summary.items()})
    return summary
