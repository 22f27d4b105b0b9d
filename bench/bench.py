"""Benchmark: cairn against the bare anchors in ../shared/anchors, measured in the same run.

    python bench/bench.py [--anchor-epochs N] [--rounds R]

For the MNIST MLP (workload mnist) and autoencoder (mnist-ae): the train stage's median epoch
time against the bare loop's at the same batch size (per epoch, and per training image since
the stage trains on the ~55 000 images that split leaves after holding out validation, the
anchor on all 60 000); the test figure against the reference; and the time of a no-op
`dvc repro`. Runs alternate anchor / ours so that a machine busy with something else slows
both alike. Writes nothing that DVC tracks: the stage trains into a temporary folder.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ANCHORS = ROOT.parent / "shared" / "anchors"
REFERENCE_ACCURACY = 0.9816
REFERENCE_AE_MSE = 0.0069
ANCHOR_IMAGES = 60_000


def sh(cmd: list[str]) -> str:
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def anchor_epoch(script: str, pkl: Path, epochs: int, batch: int) -> float:
    out = sh([sys.executable, str(ANCHORS / script), str(pkl), str(epochs), str(batch)])
    times = [float(t) for t in re.findall(r"^epoch \d+ ([\d.]+)s", out, re.M)]
    return statistics.median(times[1:])  # the first epoch warms up allocators and caches


def ours_epoch(workload: str) -> tuple[float, float, int]:
    """(median epoch seconds, stage wall seconds per epoch, training images)."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        sh([sys.executable, "-m", "flows", "train", workload, "--split", f"data/{workload}/split", "--out", out])
        wall = time.perf_counter() - started
    record = json.loads((ROOT / f".cairn/runs/train@{workload}.json").read_text())
    seconds = record["epoch_seconds"]
    import pyarrow.parquet as pq

    images = sum(pq.read_metadata(f).num_rows for f in (ROOT / f"data/{workload}/split/train").glob("*.parquet"))
    return statistics.median(seconds[1:]), wall / len(seconds), images


def compare(workload: str, script: str, pkl: Path, epochs: int, rounds: int) -> None:
    batch = yaml.safe_load((ROOT / "params.yaml").read_text())["workloads"][workload]["train"]["batch_size"]
    anchors, ours, walls = [], [], []
    for r in range(rounds):
        anchors.append(anchor_epoch(script, pkl, epochs, batch))
        epoch, wall, images = ours_epoch(workload)
        ours.append(epoch)
        walls.append(wall)
        print(f"{workload} round {r + 1}: anchor {anchors[-1]:.3f} s/epoch, cairn train {ours[-1]:.3f} s/epoch "
              f"(stage process incl. start-up and I/O {wall:.3f} s/epoch)", flush=True)  # fmt: skip
    a, o = statistics.median(anchors), statistics.median(ours)
    per_image = (o / images) / (a / ANCHOR_IMAGES)
    print(f"{workload} train epoch: cairn {o:.3f} s vs anchor {a:.3f} s (batch {batch}) = {o / a:.2f}x per epoch, "
          f"{per_image:.2f}x per training image ({images} vs {ANCHOR_IMAGES} images)")  # fmt: skip
    print(f"{workload} train stage: {statistics.median(walls) / a:.2f}x the anchor's epoch, whole process per epoch")


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--anchor-epochs", type=int, default=8)
    args.add_argument("--rounds", type=int, default=2)
    opts = args.parse_args()
    if not ANCHORS.exists():
        sys.exit(f"bench: {ANCHORS} not found; the anchors live in ../shared/anchors")
    pkl = importlib.resources.files("mnist") / "data" / "mnist.pkl.gz"

    print("bench: bringing mnist and mnist-ae up to date (dvc repro)", flush=True)
    sh(["dvc", "repro", "publish@mnist", "publish@mnist-ae"])
    compare("mnist", "mnist_mlp_pure.py", Path(str(pkl)), opts.anchor_epochs, opts.rounds)
    compare("mnist-ae", "mnist_autoencoder_pure.py", Path(str(pkl)), opts.anchor_epochs, opts.rounds)

    metrics = json.loads((ROOT / "data/mnist/evaluate/metrics.json").read_text())
    print(
        f"mnist accuracy: {metrics['accuracy']:.4f} on {metrics['n_test']} test images (reference {REFERENCE_ACCURACY})"
    )
    ae = json.loads((ROOT / "data/mnist-ae/evaluate/metrics.json").read_text())
    print(f"mnist-ae test MSE: {ae['mse']:.5f} (anchor {REFERENCE_AE_MSE} after 10 epochs, bar 0.0065)")

    noop = []
    for _ in range(3):
        started = time.perf_counter()
        out = sh(["dvc", "repro"])
        noop.append(time.perf_counter() - started)
        if "Running stage" in out:
            print("bench: dvc repro ran a stage; the no-op figure below is not a no-op")
    print(f"dvc repro no-op: {statistics.median(noop):.2f} s (median of 3, all workloads)")


if __name__ == "__main__":
    main()
