"""Batch inference: score@mnist over a scale inbox against a bare onnxruntime + pyarrow loop over
the same files, in the same run; then the cost of one more partition.

    python bench/score.py [--workload mnist|loans] [--model data/mnist/promote] [--rows N] [--partitions 100]

Run from a checkout where `make run` has published the model. It writes, outside git (a temp
folder, or --scratch):

1. a scale inbox: for mnist, MNIST's 70 000 images replicated (each copy shifted by one pixel,
   so no two partitions are equal) to --rows rows (1 M) over --partitions Parquet files; for
   loans, bench/corpus.py's dirty loan exports, --rows rows (10 M) over --partitions CSVs;
2. cold runs of `python -m flows score <workload> --inbox ... --model ... --out ...` with one
   worker (runner serial) and with two (processes), the datum store and the remembered file
   hashes emptied before each;
3. for mnist, the bare loop: per file, pyarrow reads the pixels, one onnxruntime session
   predicts, pyarrow writes key + predicted class (no cleaning, no quarantine, no lineage);
4. append: one more partition after the cold runs, and the same command again, serial (the
   others reused).

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


def cold(score: list[str], runner: str, workers: str) -> dict:
    """``score`` from scratch: no stored datum, no remembered file hash."""
    shutil.rmtree(".cairn/datums/score", ignore_errors=True)
    Path(".cairn/state.sqlite").unlink(missing_ok=True)
    env = os.environ | {"CAIRN_RUNNER": runner, "CAIRN_WORKERS": workers}
    return dict(zip(("seconds", "peak_rss_mb"), timed(score, env), strict=True))


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--workload", choices=("mnist", "loans"), default="mnist")
    cli.add_argument("--model", type=Path, help="the model folder (default: data/<workload>/promote, the champion)")
    cli.add_argument("--rows", type=int, help="default: 1 000 000 (mnist), 10 000 000 (loans)")
    cli.add_argument("--partitions", type=int, default=100)
    cli.add_argument("--scratch", type=Path, help="default: a temp folder, removed after")
    args = cli.parse_args()
    model = args.model or Path(f"data/{args.workload}/promote")
    rows = args.rows or {"mnist": 1_000_000, "loans": 10_000_000}[args.workload]
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="cairn-score-"))
    inbox, out = scratch / "inbox", scratch / "score"
    started = time.perf_counter()
    if args.workload == "mnist":
        size = make_inbox(inbox, rows, args.partitions)
    else:
        corpus = [sys.executable, str(Path(__file__).parent / "corpus.py"), str(inbox), "--rows", str(rows)]
        subprocess.run([*corpus, "--partitions", str(args.partitions)], check=True)
        size = sum(f.stat().st_size for f in inbox.iterdir())
    print(f"inbox: {rows} rows in {args.partitions} files, {size / 2**20:.0f} MB "
          f"({time.perf_counter() - started:.0f} s to make)", flush=True)  # fmt: skip
    score = [sys.executable, "-m", "flows", "score", args.workload, "--inbox", str(inbox),
             "--model", str(model), "--out", str(out)]  # fmt: skip
    figures: dict = {"workload": args.workload, "rows": rows, "partitions": args.partitions,
                     "inbox_mb": round(size / 2**20)}  # fmt: skip
    for name, runner, workers in (("cairn, 1 worker", "serial", "1"), ("cairn, 2 workers", "processes", "2")):
        figures[name] = cold(score, runner, workers)
        print(name, figures[name], flush=True)
    if args.workload == "mnist":  # the bare loop reads images; dirty loan text needs cairn's rules
        bare = timed([sys.executable, "-c", BARE, str(inbox), str(model / "model.onnx"), str(scratch / "bare")])
        figures["bare loop"] = dict(zip(("seconds", "peak_rss_mb"), bare, strict=True))
    one = figures["cairn, 1 worker"]["seconds"]
    # The append: the files are scored (the last cold run stored them), one more lands.
    if args.workload == "mnist":
        make_inbox(inbox, rows // args.partitions, 1, start=args.partitions)  # one more partition
    else:
        extra = scratch / "extra"
        subprocess.run([*corpus[:2], str(extra), "--rows", str(rows // args.partitions), "--partitions", "1",
                        "--seed", "6"], check=True)  # fmt: skip
        (extra / "part-0000.csv").rename(inbox / "part-append.csv")
    env = os.environ | {"CAIRN_RUNNER": "serial", "CAIRN_WORKERS": "1"}
    figures["append one partition"] = dict(zip(("seconds", "peak_rss_mb"), timed(score, env), strict=True))
    figures["rows/s, 1 worker"] = round(rows / one)
    if "bare loop" in figures:
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
