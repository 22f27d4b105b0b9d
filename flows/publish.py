"""publish flow: ONNX model checked against the native one, weights, model card, lineage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from prefect import flow

from flows.common import git_revision, load_params, read_table, replace_dir, report, require, write_json
from flows.evaluate import load_model
from steps import models
from steps import publish as steps
from steps.evaluate import predict

LOCK_FILE = Path("dvc.lock")


@flow(name="publish", flow_run_name="publish@{workload}", persist_result=False)
def publish(workload: str, split: Path, train: Path, evaluate: Path, out: Path) -> dict:
    """Write ``out``/ model.onnx, model.safetensors, model.json, model_card.md, lineage.json.

    Refuses (PublishError, nothing written) when onnxruntime's predictions on the test set
    differ from the native model's beyond the params' tolerances.
    """
    params = load_params(workload)
    spec, model = load_model(train)
    test = read_table(split / "test.parquet")
    x = models.features(test, params["schema"])
    onnx_bytes = steps.to_onnx(model, spec["n_features"])
    check = steps.parity(predict(model, x), steps.onnx_predict(onnx_bytes, x))
    steps.check_parity(check, params["publish"]["min_label_agreement"], params["publish"]["max_probability_diff"])

    lock = yaml.safe_load(require(LOCK_FILE, "DVC lock file").read_text())
    lineage = steps.lineage(lock, workload, params, git_revision())
    metrics = json.loads(require(evaluate / "metrics.json", "metrics").read_text())
    metrics |= json.loads(require(evaluate / "per_class.json", "per-class metrics").read_text())
    split_report = json.loads(require(split / "report.json", "split report").read_text())
    with replace_dir(out) as tmp:
        (tmp / "model.onnx").write_bytes(onnx_bytes)
        shutil.copyfile(train / "model.safetensors", tmp / "model.safetensors")
        shutil.copyfile(train / "model.json", tmp / "model.json")
        write_json(tmp / "lineage.json", lineage | {"parity": check})
        (tmp / "model_card.md").write_text(steps.model_card(workload, spec, metrics, check, lineage, split_report))
    summary = {"onnx_bytes": len(onnx_bytes), **check}
    report("publish", f"publish@{workload}", summary)
    return summary
