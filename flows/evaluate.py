"""evaluate flow: the trained model on the test holdout -> metrics, confusion matrix, loss curves."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from prefect import flow

from flows.common import load_params, read_table, report, require, write_atomic, write_json
from steps import evaluate as steps
from steps import models


def load_model(train: Path) -> tuple[dict, models.Classifier]:
    """The spec and native model a train stage wrote to ``train``."""
    spec = json.loads(require(train / "model.json", "model spec").read_text())
    return spec, models.from_bytes(spec, require(train / "model.safetensors", "model weights").read_bytes())


@flow(name="evaluate", flow_run_name="evaluate@{workload}", persist_result=False)
def evaluate(workload: str, split: Path, train: Path, out: Path) -> dict:
    """Write ``out``/metrics.json, per_class.json, predictions.csv, confusion.png and loss.png."""
    schema = load_params(workload)["schema"]
    spec, model = load_model(train)
    test = read_table(split / "test.parquet")
    y = models.labels(test, schema["label"], spec["classes"])
    proba = steps.predict(model, models.features(test, schema))
    result = steps.metrics(y, proba, spec["classes"])
    with open(require(train / "history.csv", "loss history"), newline="") as f:
        history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]

    # Scalars apart from the per-class table, so `dvc metrics show` stays readable.
    per_class = {k: result.pop(k) for k in ("per_class", "confusion_matrix")}
    write_json(out / "metrics.json", result)
    write_json(out / "per_class.json", per_class)
    write_atomic(out / "predictions.csv", steps.predictions_csv(y, proba, spec["classes"]))
    write_atomic(
        out / "confusion.png",
        steps.confusion_png(per_class["confusion_matrix"], spec["classes"], f"{workload}: test holdout"),
    )
    write_atomic(out / "loss.png", steps.loss_png(history, f"{workload}: loss per epoch"))
    report("metrics", f"evaluate@{workload}", result)
    return result
