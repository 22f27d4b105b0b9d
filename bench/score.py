"""Batch inference: score@mnist over a scale inbox against a bare onnxruntime + pyarrow loop over
the same files, in the same run; then the cost of one more partition.

    python bench/score.py --publish data/mnist/publish [--rows 1000000] [--partitions 100]

Run from a checkout where `make run` has published the MNIST model. It writes, outside git
(a temp folder, or --scratch):

1. a scale inbox: MNIST's 70 000 images replicated (each copy shifted by one pixel, so no two
   partitions are equal) to --rows rows over --partitions Parquet files;
2. cold runs of `python -m flows score mnist --inbox ... --publish ... --out ...` with one
   worker (runner serial) and with two (processes), the datum store emptied before each;
3. the bare loop: per file, pyarrow reads the pixels, one onnxruntime session predicts,
   pyarrow writes key + predicted class (no cleaning, no quarantine, no lineage);
4. append: one more partition, and the same command again (the others reused).

Each is a child process (its wall time and GNU time's peak RSS). Prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BARE = """
import sys, pathlib, numpy as np, pyarrow as pa, pyarrow.parquet as pq, onnxruntime as ort
inbox, model, out = map(pathlib.Path, sys.argv[1:4]); out.mkdir(exist_ok=True)
options = ort.SessionOptions(); options.intra_op_num_threads = 1
session = ort.InferenceSession(model.read_bytes(), options, providers=["CPUExecutionProvider"])
for f in sorted(inbox.glob("*.parquet")):
    pixels = pq.read_table(f, columns=["pixels"]).column("pixels").combine_chunks()
    x = pixels.flatten().to_numpy().astype(np.float32).reshape(len(pixels), 784)
    p = session.run(["probabilities"], {"features": x})[0]
    keys = pa.array([f"{f.name}:{i}" for i in range(1, len(x) + 1)])
    pq.write_table(pa.table({"key": keys, "predicted": p.argmax(1)}), out / f.name, compression="zstd")
"""


def mnist_images() -> np.ndarray:
    import importlib.resources

    pkl = importlib.resources.files("mnist") / "data" / "mnist.pkl.gz"
    with gzip.open(pkl.open("rb")) as f:
        parts = pickle.load(f, encoding="latin1")
    return np.concatenate([images for images, _ in parts]).astype(np.float32)


def make_inbox(folder: Path, rows: int, partitions: int, start: int = 0) -> int:
    """``partitions`` Parquet files of ``rows`` images in all; returns their size in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    images = mnist_images()
    per = rows // partitions
    size = 0
    for i in range(start, start + partitions):
        take = np.roll(images[(np.arange(per) + i * per) % len(images)], i % 784, axis=1)
        pixels = pa.FixedSizeListArray.from_arrays(pa.array(take.ravel()), 784)
        path = folder / f"part-{i:04d}.parquet"
        pq.write_table(pa.table({"pixels": pixels}), path, compression="zstd")
        size += path.stat().st_size
    return size


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return round(seconds, 2), round(int(result.stderr.strip().splitlines()[-1]) / 1024, 1)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--publish", type=Path, default=Path("data/mnist/publish"))
    cli.add_argument("--rows", type=int, default=1_000_000)
    cli.add_argument("--partitions", type=int, default=100)
    cli.add_argument("--scratch", type=Path, help="default: a temp folder, removed after")
    args = cli.parse_args()
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="cairn-score-"))
    inbox, out = scratch / "inbox", scratch / "score"
    started = time.perf_counter()
    size = make_inbox(inbox, args.rows, args.partitions)
    print(f"inbox: {args.rows} rows in {args.partitions} files, {size / 2**20:.0f} MB "
          f"({time.perf_counter() - started:.0f} s to make)", flush=True)  # fmt: skip
    score = [sys.executable, "-m", "flows", "score", "mnist", "--inbox", str(inbox),
             "--publish", str(args.publish), "--out", str(out)]  # fmt: skip
    figures: dict = {"rows": args.rows, "partitions": args.partitions, "inbox_mb": round(size / 2**20)}
    for name, runner, workers in (("cairn, 1 worker", "serial", "1"), ("cairn, 2 workers", "processes", "2")):
        shutil.rmtree(".cairn/datums/score", ignore_errors=True)
        env = os.environ | {"CAIRN_RUNNER": runner, "CAIRN_WORKERS": workers}
        figures[name] = dict(zip(("seconds", "peak_rss_mb"), timed(score, env), strict=True))
        print(name, figures[name], flush=True)
    bare = timed([sys.executable, "-c", BARE, str(inbox), str(args.publish / "model.onnx"), str(scratch / "bare")])
    figures["bare loop"] = dict(zip(("seconds", "peak_rss_mb"), bare, strict=True))
    make_inbox(inbox, args.rows // args.partitions, 1, start=args.partitions)  # one more partition
    env = os.environ | {"CAIRN_RUNNER": "serial", "CAIRN_WORKERS": "1"}
    figures["append one partition"] = dict(zip(("seconds", "peak_rss_mb"), timed(score, env), strict=True))
    one = figures["cairn, 1 worker"]["seconds"]
    figures["rows/s, 1 worker"] = round(args.rows / one)
    figures["1 worker vs bare (throughput)"] = round(figures["bare loop"]["seconds"] / one, 2)
    figures["2 workers vs 1"] = round(one / figures["cairn, 2 workers"]["seconds"], 2)
    figures["append vs cold"] = round(figures["append one partition"]["seconds"] / one, 3)
    print(json.dumps(figures, indent=2))
    report = json.loads((out / "report.json").read_text())
    print("report.json:", json.dumps({k: report[k] for k in ("rows_in", "rows_scored", "rows_quarantined")}))
    if not args.scratch:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
