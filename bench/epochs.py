"""Train one workload with changed train params into a temp folder and print its time and test
metrics: `python bench/epochs.py mnist-ae epochs=15 batch_size=128` in a checkout whose
data/<workload>/split exists (after `make run`). params.yaml is changed and put back."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import yaml


def main(workload: str, settings: list[str]) -> None:
    params_file = Path("params.yaml")
    original = params_file.read_text()
    params = yaml.safe_load(original)
    for setting in settings:
        key, value = setting.split("=", 1)
        params["workloads"][workload]["train"][key] = yaml.safe_load(value)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        from flows import evaluate, train

        split, folder = Path(f"data/{workload}/split"), Path(tempfile.mkdtemp())
        start = time.perf_counter()
        train.train.fn(workload, split, folder / "train")
        seconds = time.perf_counter() - start
        evaluate.evaluate.fn(workload, split, folder / "train", folder / "evaluate")
        metrics = json.loads((folder / "evaluate" / "metrics.json").read_text())
    finally:
        params_file.write_text(original)
    print(workload, settings, f"train {seconds:.1f} s", metrics)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
