"""Fan-out: the overhead of one task on each runner, and the speedup of two CPU-bound
per-partition steps (ingest's parse of dirty loan CSVs, clean's checks) with two workers, in one run.

    python bench/fanout.py [--corpus-mb 200] [--partitions 40] [--tasks 400]

1. Overhead: ``fan_out`` of an empty function over --tasks payloads on each runner
   (serial, threads, processes, dask), untracked; seconds per task, pools started included.
2. Speedup: bench/corpus.py writes --corpus-mb of dirty loan partitions (outside git); ingest's
   ``compute_batch`` parses them, then clean's ``check_batch`` checks the Parquet partitions
   ingest made, one file per task, with 1 worker (serial) and with 2 workers (threads,
   processes, dask). Throughput in MB/s of each step's input and the ratio to the single worker.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows import fanout  # noqa: E402


def nothing(payload: int) -> int:
    return payload


def overhead(tasks: int) -> dict[str, float]:
    out = {}
    for runner in fanout.RUNNERS:
        run = fanout.Execution(runner=runner, workers=2)
        start = time.perf_counter()
        assert list(fanout.fan_out(nothing, range(tasks), "empty", run)) == list(range(tasks))
        out[runner] = round((time.perf_counter() - start) / tasks * 1000, 3)
    return out


RUNS = (("serial", 1), ("threads", 2), ("processes", 2), ("dask", 2))


def speedup(fn, payloads: list, mb: float, count) -> tuple[dict, list]:
    """``fn`` fanned out over ``payloads`` (one file a task) with 1 worker and with 2 on each
    runner: seconds, MB/s of input and the ratio to the single worker; and the serial results."""
    out: dict = {"input_mb": round(mb)}
    first: list = []
    for runner, workers in RUNS:
        run = fanout.Execution(runner=runner, workers=workers)
        start = time.perf_counter()
        results = list(fanout.fan_out(fn, iter(payloads), fn.__module__, run))
        seconds = time.perf_counter() - start
        first = first or results
        out[f"{runner} x{workers}"] = {"seconds": round(seconds, 2), "MB/s": round(mb / seconds, 1),
                                       "rows": count(results)}  # fmt: skip
    one = out["serial x1"]["seconds"]
    for runner, workers in RUNS[1:]:
        out[f"speedup {runner} x{workers}"] = round(one / out[f"{runner} x{workers}"]["seconds"], 2)
    return out, first


def per_partition_steps(corpus: Path) -> dict:
    """ingest's parse of the raw CSVs, then clean's check of the Parquet partitions it wrote."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    from flows import clean, ingest

    params = yaml.safe_load((ROOT / "params.yaml").read_text())["workloads"]["loans"]
    files = sorted(corpus.glob("*.csv"))
    size = sum(f.stat().st_size for f in files) / 2**20
    payloads = [(params, [(f.name, f.read_bytes())]) for f in files]
    rows = lambda results: sum(how["rows"] for batch in results for parts in batch for _, how, _ in parts.values())  # noqa: E731
    parse, ingested = speedup(ingest.compute_batch, payloads, size, rows)
    parts = [(name, data) for batch in ingested for p in batch for name, (data, _, _) in p.items()]
    schema = params["schema"]
    size = sum(len(data) for _, data in parts) / 2**20
    payloads = [(schema, [part]) for part in parts]
    rows = lambda results: sum(pq.read_metadata(pa.BufferReader(r["checks.parquet"])).num_rows  # noqa: E731
                               for batch in results for r in batch)  # fmt: skip
    check, _ = speedup(clean.check_batch, payloads, size, rows)
    return {"ingest: parse raw CSV": parse, "clean: check Parquet partitions": check}


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--corpus-mb", type=int, default=200)
    cli.add_argument("--partitions", type=int, default=40)
    cli.add_argument("--tasks", type=int, default=400)
    args = cli.parse_args()
    result = {"ms per empty task": overhead(args.tasks)}
    print(json.dumps(result), flush=True)
    with tempfile.TemporaryDirectory(prefix="cairn-fanout-") as tmp:
        corpus = Path(tmp) / "corpus"
        subprocess.run([sys.executable, str(ROOT / "bench/corpus.py"), str(corpus), "--size-mb",
                        str(args.corpus_mb), "--partitions", str(args.partitions)], check=True)  # fmt: skip
        result |= per_partition_steps(corpus)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
