"""evaluate flow: the trained model on the test holdout -> metrics, details, plots.

Every workload writes the same files; what they hold follows the model's task:

- metrics.json: classification: accuracy, loss, macro F1 (with precision, recall, F1, ROC AUC
  for two classes); regression: RMSE, MAE, R² per solver; reconstruction: MSE.
- details.json: per class, confusion matrix, per slice (classification), else empty.
- predictions.csv: per test row its key, actual and predicted class with the class probabilities
  (a confusion plot) or value; for an autoencoder a sample of pixels.
- curve.csv: the ROC curve (classification), else errors by quantile.
- figure.png: confusion matrix, predicted vs actual, or originals over reconstructions.
- loss.png: loss per epoch.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from flows import config
from flows.storage.files import write_atomic, write_json
from flows.storage.model import load_model
from flows.storage.tables import read_table, require
from flows.tracking import report, stage_flow
from steps import evaluate as steps
from steps import figures, models
from steps.errors import BadInput

FILES = ("metrics.json", "details.json", "predictions.csv", "curve.csv", "figure.png", "loss.png")


def _classification(fitted, test, schema, settings: config.Evaluate, x, module, title) -> dict[str, bytes | str | dict]:
    classes, threshold = fitted.spec["classes"], fitted.spec.get("threshold")
    y = models.labels(test, schema["label"], classes)
    proba = module.predict(fitted, x)
    result = steps.metrics(y, proba, classes, threshold)
    details = {k: result.pop(k) for k in ("per_class", "confusion_matrix")}
    if settings.slice:
        if settings.slice not in test.column_names:  # features: null, and the slice changed since ingest
            kept = [n for n in test.column_names if n != "key"]
            raise BadInput(f"evaluate: evaluate.slice in params.yaml names column '{settings.slice}', which the "
                           f"test rows do not have; they have: {', '.join(kept)}")  # fmt: skip
        details["slices"] = {
            settings.slice: steps.slices(y, proba, test.column(settings.slice).to_pylist(), classes, threshold)
        }
    return {
        "metrics.json": result,
        "details.json": details,
        "predictions.csv": steps.predictions_csv(
            y, steps.decide(proba, threshold), classes, test.column("key").to_pylist(), proba
        ),
        "curve.csv": steps.roc_curve_csv(y, proba),
        "figure.png": figures.confusion_png(details["confusion_matrix"], classes, title),
    }


def _regression(fitted, test, schema, settings: config.Evaluate, x, module, title) -> dict[str, bytes | str | dict]:
    y = test.column(schema["label"]).to_numpy(zero_copy_only=False).astype(np.float64)
    main = fitted.spec["model"].get("solver")
    variants = module.predict_all(fitted, x) if hasattr(module, "predict_all") else {None: module.predict(fitted, x)}
    predicted = variants[main]
    return {
        "metrics.json": steps.regression(y, variants, main),
        "details.json": {},
        "predictions.csv": steps.predictions_csv(y, predicted, keys=test.column("key").to_pylist()),
        "curve.csv": steps.error_curve_csv(predicted - y),
        "figure.png": figures.scatter_png(y, predicted, title),
    }


def _reconstruction(fitted, test, schema, settings: config.Evaluate, x, module, title) -> dict[str, bytes | str | dict]:
    recon = module.predict(fitted, x)
    sample = np.random.default_rng(0).choice(x.size, size=min(2000, x.size), replace=False)
    return {
        "metrics.json": steps.reconstruction(x, recon),
        "details.json": {},
        "predictions.csv": steps.predictions_csv(x.ravel()[sample], recon.ravel()[sample]),
        "curve.csv": steps.error_curve_csv(((recon - x) ** 2).mean(axis=1)),
        "figure.png": figures.image_grid_png(x[:10], recon[:10], schema["image"]["shape"], title),
    }


TASKS = {"classification": _classification, "regression": _regression, "reconstruction": _reconstruction}


@stage_flow("evaluate")
def evaluate(workload: str, split: Path, train: Path, out: Path) -> dict:
    """Write ``out``/ metrics.json, details.json, predictions.csv, curve.csv, figure.png, loss.png."""
    params = config.workload(workload)
    schema = params.settings("schema")
    fitted = load_model(train)
    module = models.module(fitted.spec["model"]["name"])
    test = read_table(split / "test")
    x = models.features(test, schema, fitted.spec["encoding"])
    files = TASKS[fitted.spec["task"]](fitted, test, schema, params.evaluate, x, module, f"{workload}: test holdout")
    with open(require(train / "history.csv", "loss history"), newline="") as f:
        history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    files["loss.png"] = figures.loss_png(history, f"{workload}: loss per epoch")
    for name in FILES:
        content = files[name]
        if isinstance(content, dict):
            write_json(out / name, content)
        else:
            write_atomic(out / name, content)
    report(f"metrics-{workload}", f"evaluate@{workload}", files["metrics.json"])
    return files["metrics.json"]
