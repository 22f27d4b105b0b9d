"""Fan-out: the overhead of one task on each runner, and the speedup of a CPU-bound
per-partition step (ingest's parse of dirty loan CSVs) with two workers, in the same run.

    python bench/fanout.py [--corpus-mb 200] [--partitions 40] [--tasks 400]

1. Overhead: ``fan_out`` of an empty function over --tasks payloads on each runner
   (serial, threads, processes, dask), untracked; seconds per task, pools started included.
2. Speedup: bench/corpus.py writes --corpus-mb of dirty loan partitions (outside git); ingest's
   ``compute_batch`` parses them one file per task with 1 worker (serial) and with 2 workers
   (processes, dask). Throughput in MB/s and the ratio to the single worker.
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

from flows.execution import fanout  # noqa: E402


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


def speedup(corpus: Path) -> dict:
    import yaml

    from flows import ingest

    params = yaml.safe_load((ROOT / "params.yaml").read_text())["workloads"]["loans"]
    files = sorted(corpus.glob("*.csv"))
    size = sum(f.stat().st_size for f in files) / 2**20
    payloads = [(params, [(f.name, f.read_bytes())]) for f in files]
    out: dict = {"corpus_mb": round(size), "files": len(files)}
    for runner, workers in (("serial", 1), ("processes", 2), ("dask", 2)):
        run = fanout.Execution(runner=runner, workers=workers)
        start = time.perf_counter()
        results = fanout.fan_out(ingest.compute_batch, iter(payloads), "ingest", run)
        rows = sum(how["rows"] for batch in results for parts in batch for _, how, _ in parts.values())
        seconds = time.perf_counter() - start
        out[f"{runner} x{workers}"] = {"seconds": round(seconds, 2), "MB/s": round(size / seconds, 1), "rows": rows}
    one = out["serial x1"]["seconds"]
    out["speedup processes x2"] = round(one / out["processes x2"]["seconds"], 2)
    out["speedup dask x2"] = round(one / out["dask x2"]["seconds"], 2)
    return out


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
        result["ingest parse"] = speedup(corpus)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
