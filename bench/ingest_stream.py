"""One big CSV file through ingest's reader: peak memory and speed of cairn's streaming reader
(steps.ingest.csv_stream) and of the ingest stage itself (which reads a text file above
flows.ingest.STREAM_ABOVE with it: the file hashed, read and written a block at a time, stored as
a datum) against the bare streaming pyarrow loop (open_csv + ParquetWriter) and cairn's
whole-file reader (steps.ingest.from_csv), in the same run (#26 item 8).

    python bench/ingest_stream.py [--mb 400] [--block-mb 16] [--scratch DIR] [--no-whole]

Writes a CSV of about --mb MB (six numeric columns and a text label, seeded) outside git, then
runs each reader in its own child process, which reads the file, converts it as the schema says
and writes Parquet, and reports its wall time and peak RSS (getrusage). Prints JSON: each
reader's seconds, MB/s and peak RSS, and the streaming reader's speed and memory as ratios to the
bare loop's. The goal (the issue): peak RSS bounded by the block, not the file, at >= 0.5x the
bare loop's speed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = {"key": None, "label": "kind", "features": [f"f{i}" for i in range(1, 7)], "image": None}

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import pyarrow.csv as pacsv, pyarrow.parquet as pq
from steps import ingest
reader, path, out, block, schema = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
start = time.perf_counter()
rows = 0
if reader == "bare":
    stream = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=block))
    writer = pq.ParquetWriter(out, stream.schema, compression="zstd")
    for batch in stream:
        writer.write_batch(batch)
        rows += batch.num_rows
    writer.close()
elif reader == "stream":
    writer = None
    with open(path, "rb") as f:
        for table in ingest.csv_stream(f.read, "big.csv", schema, block):
            writer = writer or pq.ParquetWriter(out, table.schema, compression="zstd")
            writer.write_table(table)
            rows += table.num_rows
    writer.close()
elif reader == "stage":  # the ingest stage itself: the file hashed, streamed, stored as a datum
    import os
    from pathlib import Path
    project = Path(out).parent / "project"
    os.chdir(project)
    from flows.ingest import ingest as stage
    ingest.STREAM_BLOCK = block  # the stage's block (flows.ingest reads steps.ingest.STREAM_BLOCK)
    rows = stage.fn("big", Path(path).parent, project / "ingest")["rows"]
else:
    with open(path, "rb") as f:
        table = ingest.from_csv(f.read(), "big.csv", schema)
    pq.write_table(table, out, compression="zstd")
    rows = table.num_rows
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": round(seconds, 2), "rows": rows, "peak_rss_mb": round(peak)}}))
"""


def write_csv(path: Path, mb: float) -> int:
    """A CSV of about ``mb`` MB, written in slices of a million rows; its size in bytes."""
    rng = np.random.default_rng(7)
    with pacsv.CSVWriter(path, pa.schema([*(pa.field(f, pa.float64()) for f in SCHEMA["features"]),
                                          pa.field("kind", pa.string())])) as writer:  # fmt: skip
        while path.stat().st_size < mb * 1e6:
            n = 1_000_000
            columns = {f: np.round(rng.normal(50, 20, n), 3) for f in SCHEMA["features"]}
            columns["kind"] = pa.array(np.array(["a", "b", "c"])[rng.integers(0, 3, n)])
            writer.write_table(pa.table(columns))
    return path.stat().st_size


def project(folder: Path) -> None:
    """A project folder whose params.yaml has one workload, 'big', of the CSV's schema."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    big = params["workloads"]["iris"] | {"raw": "raw", "schema": SCHEMA | {"range": None}}
    params["workloads"], params["score"] = {"big": big}, {}
    folder.mkdir()
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def run(reader: str, path: Path, out: Path, block: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(ROOT)), reader, str(path), str(out), str(block),
         json.dumps(SCHEMA)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)


def main() -> None:
    cli = argparse.ArgumentParser()
    cli.add_argument("--mb", type=float, default=400)
    cli.add_argument("--block-mb", type=float, default=16)
    cli.add_argument("--scratch", type=Path, default=None)
    cli.add_argument("--no-whole", action="store_true", help="skip the whole-file reader (~5x the file in memory)")
    args = cli.parse_args()
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        path = Path(tmp) / "raw" / "big.csv"
        path.parent.mkdir()
        size = write_csv(path, args.mb) / 1e6
        project(Path(tmp) / "project")
        block = int(args.block_mb * (1 << 20))
        found = {"file_mb": round(size), "block_mb": args.block_mb}
        for reader in ("bare", "stream", "stage") + (() if args.no_whole else ("whole",)):
            figures = run(reader, path, Path(tmp) / f"{reader}.parquet", block)
            found[reader] = figures | {"mb_per_s": round(size / figures["seconds"], 1)}
        found["stream_vs_bare"] = {
            "speed": round(found["bare"]["seconds"] / found["stream"]["seconds"], 2),
            "peak_rss": round(found["stream"]["peak_rss_mb"] / found["bare"]["peak_rss_mb"], 2),
        }
        found["stage_vs_bare"] = {"speed": round(found["bare"]["seconds"] / found["stage"]["seconds"], 2)}
        assert len({found[r]["rows"] for r in found if isinstance(found[r], dict) and "rows" in found[r]}) == 1, found
    print(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
